# golos's data layer: the single DynamoDB table (PITR, TTL on `ttl`, daily AWS Backup), the SQS
# queues each with its dead-letter queue, the KMS key (rotated) for envelope encryption and for
# every encrypted resource here, the Secrets Manager containers, and the recordings bucket.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

locals {
  # Queue names match golos-aws: "<GOLOS_QUEUE_PREFIX>-<name>" and "...-dlq". Each has a
  # consumer: call-events and webhooks are Lambda event sources (modules/functions).
  queues = {
    "call-events" = { max_receives = 5, visibility_seconds = 360 } # 6x the function timeout, as AWS advises
    "webhooks"    = { max_receives = 5, visibility_seconds = 180 } # 6x the webhooks function's 30 s timeout
  }
  account = data.aws_caller_identity.current.account_id
  region  = data.aws_region.current.name
}

# --- KMS ---

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_111:a key policy's "*" resource means this key only.
  #checkov:skip=CKV_AWS_356:a key policy's "*" resource means this key only.
  #checkov:skip=CKV_AWS_109:the account root statement is the default key policy (IAM policies then decide); without it the key is unmanageable.
  statement {
    sid       = "Account"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${local.account}:root"]
    }
  }
  statement {
    # The log groups of every function and task are encrypted with this key.
    sid       = "Logs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:aws:logs:${local.region}:${local.account}:log-group:*"]
    }
  }
  statement {
    # CloudWatch alarms and AWS Budgets publish to the (encrypted) alarm topic.
    sid       = "AlarmPublishers"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "budgets.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "golos" {
  description             = "golos envelope encryption (transcripts, recordings, provider keys) and encryption at rest"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "golos" {
  name          = "alias/${var.prefix}"
  target_key_id = aws_kms_key.golos.key_id
}

# --- DynamoDB ---

# One table; see docs/ARCHITECTURE.md for the item layout. gsi1 serves key listing per org,
# newest-first ledger history and the lease sweeper.
resource "aws_dynamodb_table" "golos" {
  name         = var.prefix
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

  # RPO 5 min (docs/disaster-recovery.md): restore to any second of the last 35 days.
  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.golos.arn
  }

  deletion_protection_enabled = var.deletion_protection
}

# Daily backups on top of PITR: they survive the table's deletion and can be kept longer.
resource "aws_backup_vault" "golos" {
  name        = var.prefix
  kms_key_arn = aws_kms_key.golos.arn
}

resource "aws_backup_plan" "golos" {
  name = var.prefix
  rule {
    rule_name         = "daily"
    target_vault_name = aws_backup_vault.golos.name
    schedule          = "cron(0 3 * * ? *)"
    lifecycle {
      delete_after = var.backup_retention_days
    }
  }
}

data "aws_iam_policy_document" "backup_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["backup.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "backup" {
  name               = "${var.prefix}-backup"
  assume_role_policy = data.aws_iam_policy_document.backup_assume.json
}

resource "aws_iam_role_policy_attachment" "backup" {
  for_each = toset([
    "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup",
    "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForRestores",
    # S3 (the recordings bucket) needs its own two.
    "arn:aws:iam::aws:policy/AWSBackupServiceRolePolicyForS3Backup",
    "arn:aws:iam::aws:policy/AWSBackupServiceRolePolicyForS3Restore",
  ])
  role       = aws_iam_role.backup.name
  policy_arn = each.value
}

resource "aws_backup_selection" "golos" {
  name         = var.prefix
  plan_id      = aws_backup_plan.golos.id
  iam_role_arn = aws_iam_role.backup.arn
  resources    = [aws_dynamodb_table.golos.arn, aws_s3_bucket.recordings.arn]
}

# --- SQS ---

resource "aws_sqs_queue" "dead_letter" {
  for_each                  = local.queues
  name                      = "${var.prefix}-${each.key}-dlq"
  message_retention_seconds = 1209600 # 14 days: time to inspect and redrive
  kms_master_key_id         = aws_kms_key.golos.key_id
}

resource "aws_sqs_queue" "main" {
  for_each                   = local.queues
  name                       = "${var.prefix}-${each.key}"
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

# --- Secrets Manager ---

# The platform's generated keys, each with one job: the API-key pepper (rotating it
# invalidates every API key), the call-token key (rotating it ends every call token), the
# key every org's function-tool signing key derives from, and the operator key. Terraform
# creates only the containers; `golos init-secrets --backend aws`, run once by the operator,
# generates the values, so they never pass through Terraform state.
resource "aws_secretsmanager_secret" "generated" {
  #checkov:skip=CKV2_AWS_57:golos generates these once; rotating the pepper would invalidate every API key, so rotation is a documented operator action (docs/security.md), not a schedule.
  for_each   = toset(["api-key-pepper", "call-token-key", "tool-signing-key", "operator-api-key"])
  name       = "${var.prefix}/${each.key}"
  kms_key_id = aws_kms_key.golos.arn
}

# Filled in by the operator (console or CLI), never by Terraform state. provider-<name> are
# the platform's own provider keys (used only at the providers' default endpoints);
# organisations store their own through the API.
resource "aws_secretsmanager_secret" "operator" {
  #checkov:skip=CKV2_AWS_57:third-party credentials (YooKassa, LLM/STT/TTS providers) are rotated at the provider, then put here by the operator; no Lambda can rotate them.
  for_each = toset([
    "yookassa", "payments-hmac", "provider-openai", "provider-anthropic", "provider-deepgram",
    "provider-elevenlabs", "provider-google",
  ])
  name       = "${var.prefix}/${each.key}"
  kms_key_id = aws_kms_key.golos.arn
}

# --- S3: call recordings (envelope-encrypted by golos, and SSE-KMS at rest) ---

resource "aws_s3_bucket" "recordings" {
  #checkov:skip=CKV_AWS_18:access logging needs a second log bucket per deployment; object access is already in CloudTrail data events when the operator enables them.
  #checkov:skip=CKV_AWS_144:cross-region replication is the region-loss plan's choice (docs/disaster-recovery.md), not a default cost.
  #checkov:skip=CKV2_AWS_62:nothing consumes bucket events; recordings are referenced from the table.
  bucket_prefix = "${var.prefix}-recordings-"
}

resource "aws_s3_bucket_public_access_block" "recordings" {
  bucket                  = aws_s3_bucket.recordings.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "recordings" {
  bucket = aws_s3_bucket.recordings.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "recordings" {
  bucket = aws_s3_bucket.recordings.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "recordings" {
  bucket = aws_s3_bucket.recordings.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.golos.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "recordings" {
  bucket = aws_s3_bucket.recordings.id
  rule {
    id     = "recordings"
    status = "Enabled"
    filter {}
    transition {
      days          = 30
      storage_class = "STANDARD_IA"
    }
    expiration {
      days = var.recordings_expire_days
    }
    # Versioning keeps an overwritten or erased (GDPR) recording recoverable for a week only.
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "recordings" {
  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.recordings.arn, "${aws_s3_bucket.recordings.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "recordings" {
  bucket = aws_s3_bucket.recordings.id
  policy = data.aws_iam_policy_document.recordings.json
}
