# The values golos reads from its environment (docs/configuration.md).
output "golos_environment" {
  value = {
    GOLOS_BACKEND        = "aws"
    GOLOS_AWS_REGION     = var.region
    GOLOS_TABLE          = aws_dynamodb_table.golos.name
    GOLOS_QUEUE_PREFIX   = local.prefix
    GOLOS_KMS_KEY_ID     = aws_kms_key.golos.key_id
    GOLOS_SECRETS_PREFIX = local.prefix
  }
}

output "data_policy_arn" {
  value = aws_iam_policy.golos_data.arn
}
