# The values golos reads from its environment (docs/configuration.md).
output "golos_environment" {
  value = merge(
    {
      GOLOS_BACKEND        = "aws"
      GOLOS_AWS_REGION     = var.region
      GOLOS_TABLE          = aws_dynamodb_table.golos.name
      GOLOS_QUEUE_PREFIX   = local.prefix
      GOLOS_KMS_KEY_ID     = aws_kms_key.golos.key_id
      GOLOS_SECRETS_PREFIX = local.prefix
    },
    # The workers connect under the same exceptions the API validated agents against.
    var.egress_allow == "" ? {} : { GOLOS_EGRESS_ALLOW = var.egress_allow },
  )
}

output "data_policy_arn" {
  value = aws_iam_policy.golos_data.arn
}
