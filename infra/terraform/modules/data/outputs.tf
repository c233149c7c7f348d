output "table_name" {
  value = aws_dynamodb_table.golos.name
}

output "table_arn" {
  value = aws_dynamodb_table.golos.arn
}

output "kms_key_id" {
  value = aws_kms_key.golos.key_id
}

output "kms_key_arn" {
  value = aws_kms_key.golos.arn
}

output "queue_arns" {
  description = "Queue name (call-events, webhooks) to the main queue's ARN."
  value       = { for k, q in aws_sqs_queue.main : k => q.arn }
}

output "dead_letter_arns" {
  value = { for k, q in aws_sqs_queue.dead_letter : k => q.arn }
}

output "dead_letter_names" {
  value = { for k, q in aws_sqs_queue.dead_letter : k => q.name }
}

output "secret_arns" {
  description = "Secret short name (api-key-pepper, yookassa, …) to its ARN."
  value = merge(
    { for k, s in aws_secretsmanager_secret.generated : k => s.arn },
    { for k, s in aws_secretsmanager_secret.operator : k => s.arn },
  )
}

output "recordings_bucket" {
  value = aws_s3_bucket.recordings.bucket
}

output "recordings_bucket_arn" {
  value = aws_s3_bucket.recordings.arn
}
