# golos data layer on AWS: the single DynamoDB table, the SQS queues with their dead-letter
# queues, the KMS key for envelope encryption, the Secrets Manager entries, and the IAM
# policy every golos function and worker needs. The Lambda functions are in functions.tf; the
# ECS media pool comes with issue #6 and attaches `aws_iam_policy.golos_data` too.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = { project = "golos", environment = var.environment }
  }
}

locals {
  prefix = "golos-${var.environment}"
  # Queue names match golos-aws: "<GOLOS_QUEUE_PREFIX>-<name>" and "...-dlq".
  queues = {
    "call-events" = { max_receives = 5, visibility_seconds = 360 } # 6x the function timeout, as AWS advises
    "webhooks"    = { max_receives = 5, visibility_seconds = 180 } # 6x the webhooks function's 30 s timeout
  }
}

resource "aws_kms_key" "golos" {
  description             = "golos envelope encryption (transcripts, recordings, provider keys)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
}

resource "aws_kms_alias" "golos" {
  name          = "alias/${local.prefix}"
  target_key_id = aws_kms_key.golos.key_id
}

# One table; see docs/ARCHITECTURE.md for the item layout. gsi1 serves key listing per org,
# newest-first ledger history and the lease sweeper.
resource "aws_dynamodb_table" "golos" {
  name         = local.prefix
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  range_key    = "sk"

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "S"
  }
  attribute {
    name = "gsi1pk"
    type = "S"
  }
  attribute {
    name = "gsi1sk"
    type = "S"
  }

  global_secondary_index {
    name            = "gsi1"
    hash_key        = "gsi1pk"
    range_key       = "gsi1sk"
    projection_type = "ALL"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.golos.arn
  }

  deletion_protection_enabled = var.environment == "prod"
}

resource "aws_sqs_queue" "dead_letter" {
  for_each                  = local.queues
  name                      = "${local.prefix}-${each.key}-dlq"
  message_retention_seconds = 1209600 # 14 days: time to inspect and redrive
  kms_master_key_id         = aws_kms_key.golos.key_id
}

resource "aws_sqs_queue" "main" {
  for_each                   = local.queues
  name                       = "${local.prefix}-${each.key}"
  visibility_timeout_seconds = each.value.visibility_seconds
  message_retention_seconds  = 345600 # 4 days
  kms_master_key_id          = aws_kms_key.golos.key_id
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter[each.key].arn
    maxReceiveCount     = each.value.max_receives
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dead_letter" {
  for_each  = local.queues
  queue_url = aws_sqs_queue.dead_letter[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.main[each.key].arn]
  })
}

# The platform's generated keys, each with one job: the API-key pepper (rotating it
# invalidates every API key), the call-token key (rotating it ends every call token), the
# key every org's function-tool signing key derives from, and the operator key. Terraform creates only the containers; `golos init-secrets --backend aws`,
# run once by the operator, generates the values, so they never pass through Terraform state.
resource "aws_secretsmanager_secret" "generated" {
  for_each   = toset(["api-key-pepper", "call-token-key", "tool-signing-key", "operator-api-key"])
  name       = "${local.prefix}/${each.key}"
  kms_key_id = aws_kms_key.golos.arn
}

# Filled in by the operator (console or CLI), never by Terraform state. provider-<name> are
# the platform's own provider keys (used only at the providers' default endpoints);
# organisations store their own through the API.
resource "aws_secretsmanager_secret" "operator" {
  for_each = toset([
    "yookassa", "payments-hmac", "provider-openai", "provider-anthropic", "provider-deepgram",
    "provider-elevenlabs", "provider-google",
  ])
  name       = "${local.prefix}/${each.key}"
  kms_key_id = aws_kms_key.golos.arn
}

data "aws_iam_policy_document" "golos_data" {
  statement {
    sid = "Table"
    actions = [
      "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
      "dynamodb:Query", "dynamodb:TransactWriteItems", "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable",
    ]
    resources = [aws_dynamodb_table.golos.arn, "${aws_dynamodb_table.golos.arn}/index/*"]
  }
  statement {
    sid = "Queues"
    actions = [
      "sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
      "sqs:GetQueueUrl", "sqs:GetQueueAttributes",
    ]
    resources = concat([for q in aws_sqs_queue.main : q.arn], [for q in aws_sqs_queue.dead_letter : q.arn])
  }
  statement {
    sid       = "Envelope"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.golos.arn]
  }
  statement {
    sid       = "Secrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = ["arn:aws:secretsmanager:${var.region}:*:secret:${local.prefix}/*"]
  }
}

resource "aws_iam_policy" "golos_data" {
  name   = "${local.prefix}-data"
  policy = data.aws_iam_policy_document.golos_data.json
}
