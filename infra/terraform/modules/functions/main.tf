# Every Lambda function of the workspace (functions/*, one binary each), each with its own
# least-privilege role and log group:
# - api and payments behind the HTTP API (modules/api),
# - call-events and webhooks consuming their SQS queues (partial batch failures),
# - sweeper (every minute) and reconciliation (every hour) on EventBridge schedules.
# Packages come from `cargo lambda build --release --output-format zip` (see
# docs/deployment.md): target/lambda/<binary>/bootstrap.zip.
#
# Egress: the functions run outside any VPC (Lambda's default, with internet egress): webhooks
# POSTs to customers' URLs, payments fetches from YooKassa, and every AWS API they call is
# public. Which destinations are allowed is the egress policy in the code (golos-egress,
# docs/security.md), not the network's.
#
# tests/tests/infra.rs reads this file: every binary of functions/* must be in
# local.functions, the policy document named after each function (call-events:
# call_events) must allow the AWS actions that function's adapters call, and its environment
# must carry the GOLOS_* variables golos needs in AWS mode.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  functions = {
    api = {
      binary      = "golos-api"
      memory      = 256
      timeout     = 15
      description = "The control-plane API: /v1/*, /health, /openapi.json."
      environment = {}
    }
    payments = {
      binary      = "golos-payments"
      memory      = 256
      timeout     = 15
      description = "Payment provider notifications: /webhooks/payments/{provider}."
      environment = var.yookassa_allowed_ips == "" ? {} : { GOLOS_YOOKASSA_ALLOWED_IPS = var.yookassa_allowed_ips }
    }
    call-events = {
      binary      = "golos-call-events"
      memory      = 256
      timeout     = 60
      description = "Call events from the media pool: ledger debits, usage, lease release."
      environment = {}
    }
    webhooks = {
      # timeout: a batch of 10 events delivered concurrently, each HTTP request at most 10 s.
      binary      = "golos-webhooks"
      memory      = 256
      timeout     = 30
      description = "Delivers customer webhooks from the webhooks queue: signed, retried, dead-lettered."
      environment = {}
    }
    sweeper = {
      binary      = "golos-sweeper"
      memory      = 256
      timeout     = 60
      description = "Frees (and bills) the admission leases of media workers that stopped heartbeating."
      environment = {}
    }
    reconciliation = {
      binary      = "golos-reconciliation"
      memory      = 256
      timeout     = 900
      description = "Checks every balance against its ledger and every ended call against its one debit."
      environment = { GOLOS_RECONCILE_CALL_WINDOW_DAYS = tostring(var.reconcile_call_window_days) }
    }
  }
  # The queue consumers: the event source mappings below. Every queue has one; the media pool
  # consumes none (it only sends).
  consumers = {
    call-events = "call-events"
    webhooks    = "webhooks"
  }
  schedules = {
    sweeper        = "rate(1 minute)"
    reconciliation = "rate(1 hour)"
  }
  policies = {
    api            = data.aws_iam_policy_document.api.json
    payments       = data.aws_iam_policy_document.payments.json
    call-events    = data.aws_iam_policy_document.call_events.json
    webhooks       = data.aws_iam_policy_document.webhooks.json
    sweeper        = data.aws_iam_policy_document.sweeper.json
    reconciliation = data.aws_iam_policy_document.reconciliation.json
  }
  table_resources = [var.table_arn, "${var.table_arn}/index/*"]
  all_queue_arns  = concat(values(var.queue_arns), values(var.dead_letter_arns))
  # The platform's secrets: the declared ones and those the operator adds under the prefix
  # (payments-hmac-<provider>, one per signed payment provider).
  platform_secrets = "arn:aws:secretsmanager:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:secret:${var.prefix}/*"
  log_group_arn    = "arn:aws:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:/aws/lambda/${var.prefix}"
}

resource "aws_cloudwatch_log_group" "function" {
  #checkov:skip=CKV_AWS_338:retention is a variable (default 90 days): a year of logs that may hold callers' numbers is the operator's GDPR call, not a default.
  for_each          = local.functions
  name              = "/aws/lambda/${var.prefix}-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

# --- One policy per function ---

# What every function's start-up (golos-bootstrap) does: look up both queues.
data "aws_iam_policy_document" "startup" {
  statement {
    sid       = "QueueLookup"
    actions   = ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = local.all_queue_arns
  }
}

# The API does everything a tenant or the operator can ask: agents, keys, ledger, leases,
# webhook endpoints, DLQ inspection and redrive (receive, delete, send back).
data "aws_iam_policy_document" "api" {
  source_policy_documents = [data.aws_iam_policy_document.startup.json]
  statement {
    sid = "Table"
    actions = [
      "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query",
      "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable",
    ]
    resources = local.table_resources
  }
  statement {
    sid = "Queues"
    actions = [
      "sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
    ]
    resources = local.all_queue_arns
  }
  statement {
    sid       = "Envelope"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
  statement {
    sid       = "Secrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.platform_secrets]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.log_group_arn}-api:*"]
  }
}

# Payments: the credit transaction, its idempotency record and the balance.low/credited
# webhooks it queues; YooKassa's shop credentials and the HMAC provider's secret.
data "aws_iam_policy_document" "payments" {
  source_policy_documents = [data.aws_iam_policy_document.startup.json]
  statement {
    sid = "Table"
    actions = [
      "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query",
      "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable",
    ]
    resources = local.table_resources
  }
  statement {
    sid       = "Queues"
    actions   = ["sqs:SendMessage"]
    resources = values(var.queue_arns)
  }
  statement {
    sid       = "Envelope"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
  statement {
    sid       = "Secrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.platform_secrets]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.log_group_arn}-payments:*"]
  }
}

# call-events: debits, usage, lease release and the customer webhooks of each call event.
data "aws_iam_policy_document" "call_events" {
  source_policy_documents = [data.aws_iam_policy_document.startup.json]
  statement {
    sid = "Table"
    actions = [
      "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query",
      "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable",
    ]
    resources = local.table_resources
  }
  statement {
    # The event source mapping receives and deletes (with the function's role).
    sid       = "CallEventsQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
    resources = [var.queue_arns["call-events"]]
  }
  statement {
    sid       = "Send"
    actions   = ["sqs:SendMessage"]
    resources = values(var.queue_arns)
  }
  statement {
    sid       = "Envelope"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
  statement {
    sid       = "Secrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.platform_secrets]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.log_group_arn}-call-events:*"]
  }
}

data "aws_iam_policy_document" "webhooks" {
  source_policy_documents = [data.aws_iam_policy_document.startup.json]
  statement {
    # Endpoints and their encrypted secrets, call records (transcripts), delivery records
    # (written in batches), the failure counts that disable an endpoint and its audit entry.
    sid = "Table"
    actions = [
      "dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem",
    ]
    resources = local.table_resources
  }
  statement {
    # The event source mapping receives and deletes; the function re-queues a retry with its
    # delay and extends a slow message's visibility.
    sid = "WebhooksQueue"
    actions = [
      "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage",
    ]
    resources = [var.queue_arns["webhooks"]]
  }
  statement {
    # Permanent failures (400, 401, 403, 404, 410, invalid URLs) and the last attempt's.
    sid       = "WebhooksDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [var.dead_letter_arns["webhooks"]]
  }
  statement {
    # Decrypt: transcripts and endpoint signing secrets (envelope-encrypted), and messages of
    # the KMS-encrypted queues. GenerateDataKey: sending to those queues (SQS encrypts with it).
    sid       = "Envelope"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
  statement {
    # Only what start-up reads: the key pepper, the call-token key and the operator key.
    sid       = "Secrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for name in ["api-key-pepper", "call-token-key", "operator-api-key"] : var.secret_arns[name]]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.log_group_arn}-webhooks:*"]
  }
}

data "aws_iam_policy_document" "sweeper" {
  source_policy_documents = [data.aws_iam_policy_document.startup.json]
  statement {
    sid = "Leases"
    # sweep: the expired leases by gsi1, each freed by a transaction; billing a lost worker's
    # call (issue #15) applies its debit and ends its call record.
    actions = [
      "dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
      "dynamodb:ConditionCheckItem",
    ]
    resources = local.table_resources
  }
  statement {
    # Webhooks of the calls it bills; call-events for the outbox entries it relays.
    sid       = "Queues"
    actions   = ["sqs:SendMessage"]
    resources = values(var.queue_arns)
  }
  statement {
    sid       = "Envelope"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
  statement {
    sid       = "Secrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.platform_secrets]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.log_group_arn}-sweeper:*"]
  }
}

# Reconciliation only reads: balances, ledger entries, organisations and call records.
data "aws_iam_policy_document" "reconciliation" {
  source_policy_documents = [data.aws_iam_policy_document.startup.json]
  statement {
    sid       = "ReadTable"
    actions   = ["dynamodb:GetItem", "dynamodb:Query"]
    resources = local.table_resources
  }
  statement {
    sid       = "Secrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.platform_secrets]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.log_group_arn}-reconciliation:*"]
  }
}

resource "aws_iam_role" "function" {
  for_each           = local.functions
  name               = "${var.prefix}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions
  name     = "${var.prefix}-${each.key}"
  role     = aws_iam_role.function[each.key].id
  policy   = local.policies[each.key]
}

resource "aws_lambda_function" "golos" {
  #checkov:skip=CKV_AWS_116:the queue consumers' failures go to their queues' DLQs (redrive policy); api and payments are invoked synchronously, where a Lambda DLQ never applies.
  #checkov:skip=CKV_AWS_117:outside a VPC on purpose: the functions need internet egress (customer webhooks, YooKassa) and talk only to public AWS APIs; a VPC would add a NAT gateway and nothing else.
  #checkov:skip=CKV_AWS_173:the environment holds names only (table, queue and secret prefixes, the key id); secrets are read from Secrets Manager. Lambda's default key encrypts it at rest.
  #checkov:skip=CKV_AWS_272:code signing needs an AWS Signer profile in the operator's account; the packages are built from this repository by cargo lambda in CI.
  for_each                       = local.functions
  function_name                  = "${var.prefix}-${each.key}"
  description                    = each.value.description
  role                           = aws_iam_role.function[each.key].arn
  runtime                        = "provided.al2023"
  architectures                  = ["x86_64"]
  handler                        = "bootstrap"
  filename                       = "${var.lambda_package_dir}/${each.value.binary}/bootstrap.zip"
  source_code_hash               = filebase64sha256("${var.lambda_package_dir}/${each.value.binary}/bootstrap.zip")
  memory_size                    = each.value.memory
  timeout                        = each.value.timeout
  reserved_concurrent_executions = var.reserved_concurrency[each.key]
  environment {
    variables = merge(var.golos_environment, { GOLOS_LOG_FORMAT = "json" }, each.value.environment)
  }
  tracing_config {
    mode = "PassThrough"
  }
  publish    = true # each apply with a new package publishes a version; the alias moves by canary
  depends_on = [aws_cloudwatch_log_group.function, aws_iam_role_policy.function]
}

# --- Upgrades: the `live` alias, moved by CodeDeploy canaries ---
#
# Everything invokes a function through its `live` alias (API Gateway, the queues, the
# schedules). `terraform apply` publishes a new version but does not move the alias (after
# the first apply); the operator's deploy step asks CodeDeploy to shift the alias from its
# version to the new one (output function_versions): 10 % of invocations for 5 minutes,
# then all, rolled back automatically if the function's error-rate alarm
# (modules/observability, "<prefix>-<function>-error-rate") fires. docs/deployment.md has
# the command.

resource "aws_lambda_alias" "live" {
  for_each         = local.functions
  name             = "live"
  function_name    = aws_lambda_function.golos[each.key].function_name
  function_version = aws_lambda_function.golos[each.key].version
  lifecycle {
    ignore_changes = [function_version, routing_config] # CodeDeploy moves them
  }
}

resource "aws_codedeploy_app" "functions" {
  name             = "${var.prefix}-functions"
  compute_platform = "Lambda"
}

data "aws_iam_policy_document" "codedeploy_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["codedeploy.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "codedeploy" {
  name               = "${var.prefix}-functions-deploy"
  assume_role_policy = data.aws_iam_policy_document.codedeploy_assume.json
}

resource "aws_iam_role_policy_attachment" "codedeploy" {
  role       = aws_iam_role.codedeploy.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSCodeDeployRoleForLambdaLimited"
}

resource "aws_codedeploy_deployment_group" "function" {
  for_each               = local.functions
  app_name               = aws_codedeploy_app.functions.name
  deployment_group_name  = each.key
  service_role_arn       = aws_iam_role.codedeploy.arn
  deployment_config_name = "CodeDeployDefault.LambdaCanary10Percent5Minutes"
  deployment_style {
    deployment_type   = "BLUE_GREEN"
    deployment_option = "WITH_TRAFFIC_CONTROL"
  }
  auto_rollback_configuration {
    enabled = true
    events  = ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"]
  }
  alarm_configuration {
    enabled = true
    alarms  = ["${var.prefix}-${each.key}-error-rate"]
  }
}

# --- Queue consumers ---

resource "aws_lambda_event_source_mapping" "consumer" {
  for_each                           = local.consumers
  event_source_arn                   = var.queue_arns[each.value]
  function_name                      = aws_lambda_alias.live[each.key].arn
  batch_size                         = 10
  maximum_batching_window_in_seconds = 1
  function_response_types            = ["ReportBatchItemFailures"]
}

# --- Schedules ---

resource "aws_cloudwatch_event_rule" "schedule" {
  for_each            = local.schedules
  name                = "${var.prefix}-${each.key}"
  description         = local.functions[each.key].description
  schedule_expression = each.value
}

resource "aws_cloudwatch_event_target" "schedule" {
  for_each = local.schedules
  rule     = aws_cloudwatch_event_rule.schedule[each.key].name
  arn      = aws_lambda_alias.live[each.key].arn
}

resource "aws_lambda_permission" "schedule" {
  for_each      = local.schedules
  statement_id  = "${each.key}-schedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.golos[each.key].function_name
  qualifier     = aws_lambda_alias.live[each.key].name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.schedule[each.key].arn
}
