# The control-plane Lambda functions (issue #4): the API and the payment webhooks behind one
# API Gateway HTTP API, the call-events consumer on its SQS queue (partial batch failures)
# and on a schedule (lease sweeper). Packages come from `cargo lambda build --release
# --output-format zip -p golos-fn-api -p golos-fn-payments -p golos-fn-call-events`
# (target/lambda/<binary>/bootstrap.zip); see docs/deployment.md.

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
    "ANY /v1/{proxy+}"                  = "api"
    "GET /health"                       = "api"
    "GET /openapi.json"                 = "api"
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

# --- call-events: the SQS queue, and a schedule for the lease sweeper ---

resource "aws_lambda_event_source_mapping" "call_events" {
  event_source_arn                   = aws_sqs_queue.main["call-events"].arn
  function_name                      = aws_lambda_function.golos["call-events"].arn
  batch_size                         = 10
  maximum_batching_window_in_seconds = 1
  function_response_types            = ["ReportBatchItemFailures"]
}

resource "aws_cloudwatch_event_rule" "lease_sweeper" {
  name                = "${local.prefix}-lease-sweeper"
  description         = "Frees admission leases of media workers that stopped heartbeating."
  schedule_expression = "rate(1 minute)"
}

resource "aws_cloudwatch_event_target" "lease_sweeper" {
  rule = aws_cloudwatch_event_rule.lease_sweeper.name
  arn  = aws_lambda_function.golos["call-events"].arn
}

resource "aws_lambda_permission" "lease_sweeper" {
  statement_id  = "lease-sweeper-schedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.golos["call-events"].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.lease_sweeper.arn
}

output "api_url" {
  value = aws_apigatewayv2_api.golos.api_endpoint
}
