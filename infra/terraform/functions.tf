# The control-plane Lambda functions (issue #4): the API and the payment webhooks behind one
# API Gateway HTTP API, the call-events consumer on its SQS queue (partial batch failures),
# two functions on EventBridge schedules (issue #15): the lease sweeper every minute and
# reconciliation (balances and call debits) every hour, and the customer webhooks consumer on
# the webhooks queue (issue #18); the last three each with their own least-privilege role.
# Packages come from `cargo lambda build --release --output-format zip -p golos-fn-api
# -p golos-fn-payments -p golos-fn-call-events -p golos-fn-sweeper -p golos-fn-reconciliation
# -p golos-fn-webhooks` (target/lambda/<binary>/bootstrap.zip); see docs/deployment.md.

variable "lambda_package_dir" {
  description = "Directory holding <binary>/bootstrap.zip as cargo lambda writes them."
  type        = string
  default     = "../../target/lambda"
}

variable "yookassa_allowed_ips" {
  description = "Comma-separated networks YooKassa notifications may come from; empty keeps the published list."
  type        = string
  default     = ""
}

variable "egress_allow" {
  description = "GOLOS_EGRESS_ALLOW: the operator's exceptions to the egress policy (networks, hosts, host:port), for the API's agent validation and the workers' connections alike; empty allows only the public internet (docs/security.md)."
  type        = string
  default     = ""
}

locals {
  functions = {
    api         = { binary = "golos-api", memory = 256, timeout = 15 }
    payments    = { binary = "golos-payments", memory = 256, timeout = 15 }
    call-events = { binary = "golos-call-events", memory = 256, timeout = 60 }
  }
  function_environment = merge(
    {
      GOLOS_AWS_REGION     = var.region
      GOLOS_TABLE          = aws_dynamodb_table.golos.name
      GOLOS_QUEUE_PREFIX   = local.prefix
      GOLOS_KMS_KEY_ID     = aws_kms_key.golos.key_id
      GOLOS_SECRETS_PREFIX = local.prefix
      GOLOS_LOG_FORMAT     = "json"
    },
    var.yookassa_allowed_ips == "" ? {} : { GOLOS_YOOKASSA_ALLOWED_IPS = var.yookassa_allowed_ips },
    var.egress_allow == "" ? {} : { GOLOS_EGRESS_ALLOW = var.egress_allow },
  )
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

resource "aws_iam_role" "function" {
  name               = "${local.prefix}-functions"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy_attachment" "function_data" {
  role       = aws_iam_role.function.name
  policy_arn = aws_iam_policy.golos_data.arn
}

resource "aws_iam_role_policy_attachment" "function_logs" {
  role       = aws_iam_role.function.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
}

resource "aws_lambda_function" "golos" {
  for_each         = local.functions
  function_name    = "${local.prefix}-${each.key}"
  role             = aws_iam_role.function.arn
  runtime          = "provided.al2023"
  architectures    = ["x86_64"]
  handler          = "bootstrap"
  filename         = "${var.lambda_package_dir}/${each.value.binary}/bootstrap.zip"
  source_code_hash = filebase64sha256("${var.lambda_package_dir}/${each.value.binary}/bootstrap.zip")
  memory_size      = each.value.memory
  timeout          = each.value.timeout
  environment {
    variables = local.function_environment
  }
}

# --- HTTP: /v1/*, /health, /openapi.json → api; /webhooks/payments/* → payments ---

resource "aws_apigatewayv2_api" "golos" {
  name          = local.prefix
  protocol_type = "HTTP"
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.golos.id
  name        = "$default"
  auto_deploy = true
}

resource "aws_apigatewayv2_integration" "golos" {
  for_each               = toset(["api", "payments"])
  api_id                 = aws_apigatewayv2_api.golos.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.golos[each.key].invoke_arn
  payload_format_version = "2.0"
}

resource "aws_apigatewayv2_route" "golos" {
  for_each = {
    "ANY /v1/{proxy+}"                   = "api"
    "GET /health"                        = "api"
    "GET /openapi.json"                  = "api"
    "POST /webhooks/payments/{provider}" = "payments"
  }
  api_id    = aws_apigatewayv2_api.golos.id
  route_key = each.key
  target    = "integrations/${aws_apigatewayv2_integration.golos[each.value].id}"
}

resource "aws_lambda_permission" "api_gateway" {
  for_each      = toset(["api", "payments"])
  statement_id  = "api-gateway"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.golos[each.key].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.golos.execution_arn}/*/*"
}

# --- call-events: the SQS queue ---

resource "aws_lambda_event_source_mapping" "call_events" {
  event_source_arn                   = aws_sqs_queue.main["call-events"].arn
  function_name                      = aws_lambda_function.golos["call-events"].arn
  batch_size                         = 10
  maximum_batching_window_in_seconds = 1
  function_response_types            = ["ReportBatchItemFailures"]
}

# --- Scheduled functions: the lease sweeper and reconciliation ---

variable "reconcile_call_window_days" {
  description = "Reconciliation checks the debits of calls that started in this many last days."
  type        = number
  default     = 7
}

variable "scheduled_log_retention_days" {
  description = "How long the scheduled functions' logs (and their alerts) are kept."
  type        = number
  default     = 90
}

locals {
  scheduled = {
    sweeper = {
      binary      = "golos-sweeper"
      memory      = 256
      timeout     = 60
      schedule    = "rate(1 minute)"
      description = "Frees (and bills) the admission leases of media workers that stopped heartbeating."
    }
    reconciliation = {
      binary      = "golos-reconciliation"
      memory      = 256
      timeout     = 900
      schedule    = "rate(1 hour)"
      description = "Checks every balance against its ledger and every ended call against its one debit."
    }
  }
  scheduled_policies = {
    sweeper        = data.aws_iam_policy_document.sweeper.json
    reconciliation = data.aws_iam_policy_document.reconciliation.json
  }
  all_queue_arns = concat([for q in aws_sqs_queue.main : q.arn], [for q in aws_sqs_queue.dead_letter : q.arn])
}

resource "aws_cloudwatch_log_group" "scheduled" {
  for_each          = local.scheduled
  name              = "/aws/lambda/${local.prefix}-${each.key}"
  retention_in_days = var.scheduled_log_retention_days
}

# Start-up (golos-bootstrap) reads the platform secrets and looks up both queues; the rest is
# what each function does.
data "aws_iam_policy_document" "sweeper" {
  statement {
    sid = "Leases"
    # sweep: the expired leases by gsi1, each freed by a transaction; billing a lost worker's
    # call (issue #15) applies its debit and ends its call record.
    actions = [
      "dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
      "dynamodb:TransactWriteItems", "dynamodb:ConditionCheckItem",
    ]
    resources = [aws_dynamodb_table.golos.arn, "${aws_dynamodb_table.golos.arn}/index/*"]
  }
  statement {
    sid       = "QueueLookup"
    actions   = ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = local.all_queue_arns
  }
  statement {
    # Webhooks of the calls it bills; call-events for the outbox entries it relays.
    sid       = "Queues"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.main["webhooks"].arn, aws_sqs_queue.main["call-events"].arn]
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
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.scheduled["sweeper"].arn}:*"]
  }
}

# Reconciliation only reads: balances, ledger entries, organisations and call records.
data "aws_iam_policy_document" "reconciliation" {
  statement {
    sid       = "ReadTable"
    actions   = ["dynamodb:GetItem", "dynamodb:Query"]
    resources = [aws_dynamodb_table.golos.arn, "${aws_dynamodb_table.golos.arn}/index/*"]
  }
  statement {
    sid       = "QueueLookup"
    actions   = ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = local.all_queue_arns
  }
  statement {
    sid       = "Secrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = ["arn:aws:secretsmanager:${var.region}:*:secret:${local.prefix}/*"]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.scheduled["reconciliation"].arn}:*"]
  }
}

resource "aws_iam_role" "scheduled" {
  for_each           = local.scheduled
  name               = "${local.prefix}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy" "scheduled" {
  for_each = local.scheduled
  name     = "${local.prefix}-${each.key}"
  role     = aws_iam_role.scheduled[each.key].id
  policy   = local.scheduled_policies[each.key]
}

resource "aws_lambda_function" "scheduled" {
  for_each         = local.scheduled
  function_name    = "${local.prefix}-${each.key}"
  description      = each.value.description
  role             = aws_iam_role.scheduled[each.key].arn
  runtime          = "provided.al2023"
  architectures    = ["x86_64"]
  handler          = "bootstrap"
  filename         = "${var.lambda_package_dir}/${each.value.binary}/bootstrap.zip"
  source_code_hash = filebase64sha256("${var.lambda_package_dir}/${each.value.binary}/bootstrap.zip")
  memory_size      = each.value.memory
  timeout          = each.value.timeout
  environment {
    variables = merge(local.function_environment, {
      GOLOS_RECONCILE_CALL_WINDOW_DAYS = tostring(var.reconcile_call_window_days)
    })
  }
  depends_on = [aws_cloudwatch_log_group.scheduled, aws_iam_role_policy.scheduled]
}

resource "aws_cloudwatch_event_rule" "scheduled" {
  for_each            = local.scheduled
  name                = "${local.prefix}-${each.key}"
  description         = each.value.description
  schedule_expression = each.value.schedule
}

resource "aws_cloudwatch_event_target" "scheduled" {
  for_each = local.scheduled
  rule     = aws_cloudwatch_event_rule.scheduled[each.key].name
  arn      = aws_lambda_function.scheduled[each.key].arn
}

resource "aws_lambda_permission" "scheduled" {
  for_each      = local.scheduled
  statement_id  = "${each.key}-schedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.scheduled[each.key].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.scheduled[each.key].arn
}

# Reconciliation publishes its findings as metrics (Embedded Metric Format); anything above
# zero is an incident (docs/runbook.md, Money).
resource "aws_cloudwatch_metric_alarm" "reconciliation" {
  for_each            = toset(["ledger_drift_orgs", "unbilled_calls"])
  alarm_name          = "${local.prefix}-${each.key}"
  alarm_description   = "golos reconciliation found ${each.key} > 0; see docs/runbook.md (Money)."
  namespace           = "golos"
  metric_name         = each.key
  dimensions          = { Deployment = aws_dynamodb_table.golos.name }
  statistic           = "Maximum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_topic_arn == "" ? [] : [var.alarm_topic_arn]
}

variable "alarm_topic_arn" {
  description = "SNS topic notified by the reconciliation alarms; empty: the alarms only show in CloudWatch."
  type        = string
  default     = ""
}

output "api_url" {
  value = aws_apigatewayv2_api.golos.api_endpoint
}

# --- webhooks: customer webhook deliveries (issue #18) ---
#
# Reads the `webhooks` queue in batches and POSTs each event, signed, to the org's endpoints;
# a failed delivery is re-queued with its own delay (SendMessage on the webhooks queue) or, for
# a permanent failure or after the last attempt, sent to the dead-letter queue. Partial batch
# failures: one slow or failing endpoint never re-delivers the rest of the batch.
#
# Egress: the function POSTs to customers' URLs on the public internet, so it runs outside any
# VPC (Lambda's default, which has internet egress). Put into a VPC it would need a NAT gateway.
# Which destinations are allowed (HTTPS, no private or metadata addresses) is the egress policy
# in the code (golos-egress, docs/security.md), not the network's.

variable "webhooks_log_retention_days" {
  description = "How long the webhooks consumer's logs are kept (deliveries themselves are kept 30 days in the table)."
  type        = number
  default     = 30
}

locals {
  # timeout: a batch of 10 events delivered concurrently, each HTTP request at most 10 s.
  webhooks_function = { binary = "golos-webhooks", memory = 256, timeout = 30 }
}

resource "aws_cloudwatch_log_group" "webhooks" {
  name              = "/aws/lambda/${local.prefix}-webhooks"
  retention_in_days = var.webhooks_log_retention_days
}

data "aws_iam_policy_document" "webhooks" {
  statement {
    # Endpoints and their encrypted secrets, call records (transcripts), delivery records
    # (written in batches), the failure counts that disable an endpoint and its audit entry.
    sid = "Table"
    actions = [
      "dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem",
    ]
    resources = [aws_dynamodb_table.golos.arn, "${aws_dynamodb_table.golos.arn}/index/*"]
  }
  statement {
    # Start-up (golos-bootstrap) looks up both queues.
    sid       = "QueueLookup"
    actions   = ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = local.all_queue_arns
  }
  statement {
    # The event source mapping receives and deletes; the function re-queues a retry with its
    # delay and extends a slow message's visibility.
    sid = "WebhooksQueue"
    actions = [
      "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage",
    ]
    resources = [aws_sqs_queue.main["webhooks"].arn]
  }
  statement {
    # Permanent failures (400, 401, 403, 404, 410, invalid URLs) and the last attempt's.
    sid       = "WebhooksDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letter["webhooks"].arn]
  }
  statement {
    # Decrypt: transcripts and endpoint signing secrets (envelope-encrypted), and messages of
    # the KMS-encrypted queues. GenerateDataKey: sending to those queues (SQS encrypts with it).
    sid       = "Envelope"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.golos.arn]
  }
  statement {
    # Only what start-up reads: the key pepper, the call-token key and the operator key.
    sid       = "Secrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for name in ["api-key-pepper", "call-token-key", "operator-api-key"] : aws_secretsmanager_secret.generated[name].arn]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.webhooks.arn}:*"]
  }
}

resource "aws_iam_role" "webhooks" {
  name               = "${local.prefix}-webhooks"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy" "webhooks" {
  name   = "${local.prefix}-webhooks"
  role   = aws_iam_role.webhooks.id
  policy = data.aws_iam_policy_document.webhooks.json
}

resource "aws_lambda_function" "webhooks" {
  function_name    = "${local.prefix}-webhooks"
  description      = "Delivers customer webhooks from the webhooks queue: signed, retried, dead-lettered."
  role             = aws_iam_role.webhooks.arn
  runtime          = "provided.al2023"
  architectures    = ["x86_64"]
  handler          = "bootstrap"
  filename         = "${var.lambda_package_dir}/${local.webhooks_function.binary}/bootstrap.zip"
  source_code_hash = filebase64sha256("${var.lambda_package_dir}/${local.webhooks_function.binary}/bootstrap.zip")
  memory_size      = local.webhooks_function.memory
  timeout          = local.webhooks_function.timeout
  environment {
    variables = local.function_environment
  }
  depends_on = [aws_cloudwatch_log_group.webhooks, aws_iam_role_policy.webhooks]
}

resource "aws_lambda_event_source_mapping" "webhooks" {
  event_source_arn                   = aws_sqs_queue.main["webhooks"].arn
  function_name                      = aws_lambda_function.webhooks.arn
  batch_size                         = 10
  maximum_batching_window_in_seconds = 1
  function_response_types            = ["ReportBatchItemFailures"]
}
