# The public HTTP entries and their flood protection.
#
# - API Gateway HTTP API: /v1/*, /health, /openapi.json → the api function;
#   /webhooks/payments/{provider} → payments. Stage-wide default route throttling, and a
#   route of its own for payments so that throttling an API flood never refuses a payment.
# - WAFv2 (REGIONAL) web ACL with a rate-based rule per source IP, on the media pool's ALB
#   (the browser WebSocket / Twilio media-stream entry).
#
# Why WAF is on the ALB and not in front of the HTTP API: WAF cannot attach to an API
# Gateway HTTP API (only to REST APIs, ALBs, CloudFront, AppSync, Cognito, App Runner,
# Verified Access). Putting CloudFront in front of the HTTP API would change the source
# address every request arrives from, and the payments function accepts YooKassa's unsigned
# notifications only from YooKassa's published networks (docs/security.md); a REST API would
# change the event format and cost more per request. The HTTP API is bounded instead by the
# stage throttling here, the reserved (capped) concurrency of the api function, and golos's
# own per-key, per-org and failed-authentication-per-IP limits.

resource "aws_cloudwatch_log_group" "access" {
  #checkov:skip=CKV_AWS_338:retention is a variable (default 90 days), the operator's GDPR call.
  name              = "/aws/apigateway/${var.prefix}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_apigatewayv2_api" "golos" {
  name          = var.prefix
  protocol_type = "HTTP"
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.golos.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit  = var.throttle_rate
    throttling_burst_limit = var.throttle_burst
    # Per-route latency and 5xx metrics for the alarms (modules/observability).
    detailed_metrics_enabled = true
  }

  route_settings {
    route_key              = "POST /webhooks/payments/{provider}"
    throttling_rate_limit  = var.payments_throttle_rate
    throttling_burst_limit = var.payments_throttle_rate * 2
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.access.arn
    format = jsonencode({
      requestId = "$context.requestId", ip = "$context.identity.sourceIp", routeKey = "$context.routeKey",
      status    = "$context.status", latencyMs = "$context.responseLatency", integrationError = "$context.integrationErrorMessage"
    })
  }

  depends_on = [aws_apigatewayv2_route.golos]
}

resource "aws_apigatewayv2_integration" "golos" {
  for_each               = toset(["api", "payments"])
  api_id                 = aws_apigatewayv2_api.golos.id
  integration_type       = "AWS_PROXY"
  integration_uri        = var.invoke_arns[each.key]
  payload_format_version = "2.0"
}

resource "aws_apigatewayv2_route" "golos" {
  #checkov:skip=CKV_AWS_309:golos authenticates every /v1 request itself (X-API-Key, roles); /health and /openapi.json are public; payment notifications are checked by source network and by confirming with the provider, or by HMAC.
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
  function_name = var.function_names[each.key]
  qualifier     = var.alias_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.golos.execution_arn}/*/*"
}

# --- WAF on the ALB ---

resource "aws_wafv2_web_acl" "edge" {
  name  = "${var.prefix}-edge"
  scope = "REGIONAL"

  default_action {
    allow {}
  }

  rule {
    name     = "rate-per-ip"
    priority = 1
    action {
      block {}
    }
    statement {
      rate_based_statement {
        limit              = var.waf_rate_limit
        aggregate_key_type = "IP"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.prefix}-rate-per-ip"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "known-bad-inputs"
    priority = 2
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
        vendor_name = "AWS"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.prefix}-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.prefix}-edge"
    sampled_requests_enabled   = true
  }
}

resource "aws_wafv2_web_acl_association" "alb" {
  resource_arn = var.alb_arn
  web_acl_arn  = aws_wafv2_web_acl.edge.arn
}

resource "aws_cloudwatch_log_group" "waf" {
  #checkov:skip=CKV_AWS_338:retention is a variable (default 90 days), the operator's GDPR call.
  name              = "aws-waf-logs-${var.prefix}" # WAF requires the aws-waf-logs- prefix
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_wafv2_web_acl_logging_configuration" "edge" {
  resource_arn            = aws_wafv2_web_acl.edge.arn
  log_destination_configs = [aws_cloudwatch_log_group.waf.arn]
}
