# Alarms of the reviews, a dashboard and the topic they notify.
#
# | the reviews' alert      | alarm here                                                        |
# |-------------------------|-------------------------------------------------------------------|
# | error rate > 1 %        | calls: the workers' call_error_rate > 0.01 (5 min); API: 5xx / requests > 1 %; each function: Errors / Invocations > 1 % |
# | p99 latency > 500 ms    | API Gateway p99 Latency > 500 ms (the voice path's p99 lives in the worker's histogram; docs/runbook.md has its PromQL) |
# | payment webhook > 10 s  | the payments function's p99 Duration > 10 s                        |
# | DLQ depth > 0           | ApproximateNumberOfMessagesVisible > 0 on every dead-letter queue  |
# | ledger drift            | reconciliation's ledger_drift_orgs (and unbilled_calls) > 0        |
# | trunk breaker open      | golos_sip_trunk_breaker_open == 1 for 2 min on any worker          |
# | (scale-in protection)   | golos_scale_in_protection_failures_total rising for 10 min         |
# | unusual spend           | AWS Budgets: 80 % of the monthly budget spent, or 100 % forecast;  |
# |                         | Cost Anomaly Detection on golos's tagged spend (impact >= $N/day)  |
#
# The workers' metrics reach CloudWatch through the media pool's metrics sidecar (namespace
# golos/media); reconciliation's through Embedded Metric Format (namespace golos).

resource "aws_sns_topic" "alarms" {
  name              = "${var.prefix}-alarms"
  kms_master_key_id = var.kms_key_arn
}

resource "aws_sns_topic_subscription" "email" {
  for_each  = toset(var.alarm_emails)
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

data "aws_iam_policy_document" "alarms" {
  statement {
    sid       = "Publishers"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "budgets.amazonaws.com", "costalerts.amazonaws.com"]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms.json
}

locals {
  actions = [aws_sns_topic.alarms.arn]
  worker_dimensions = {
    ClusterName = var.cluster_name
    ServiceName = var.service_name
  }
}

# --- Money ---

# Reconciliation publishes its findings as metrics (Embedded Metric Format); anything above
# zero is an incident (docs/runbook.md, Money).
resource "aws_cloudwatch_metric_alarm" "reconciliation" {
  for_each            = toset(["ledger_drift_orgs", "unbilled_calls"])
  alarm_name          = "${var.prefix}-${each.key}"
  alarm_description   = "golos reconciliation found ${each.key} > 0; see docs/runbook.md (Money)."
  namespace           = "golos"
  metric_name         = each.key
  dimensions          = { Deployment = var.table_name }
  statistic           = "Maximum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
}

resource "aws_cloudwatch_metric_alarm" "payments_latency" {
  alarm_name          = "${var.prefix}-payment-webhook-latency"
  alarm_description   = "Payment notifications take more than 10 s (p99) to process; providers retry, balances lag."
  namespace           = "AWS/Lambda"
  metric_name         = "Duration"
  dimensions          = { FunctionName = var.function_names["payments"] }
  extended_statistic  = "p99"
  period              = 300
  evaluation_periods  = 1
  threshold           = 10000
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
}

resource "aws_budgets_budget" "monthly" {
  name         = "${var.prefix}-monthly"
  budget_type  = "COST"
  limit_amount = tostring(var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"
  cost_filter {
    name   = "TagKeyValue"
    values = ["user:project$golos"]
  }
  notification {
    comparison_operator       = "GREATER_THAN"
    threshold                 = 80
    threshold_type            = "PERCENTAGE"
    notification_type         = "ACTUAL"
    subscriber_sns_topic_arns = local.actions
  }
  notification {
    comparison_operator       = "GREATER_THAN"
    threshold                 = 100
    threshold_type            = "PERCENTAGE"
    notification_type         = "FORECASTED"
    subscriber_sns_topic_arns = local.actions
  }
}

# A budget catches a month that runs over; an anomaly monitor catches a day that does not
# look like the others (a toll-fraud burst, a runaway loop of calls) long before. A custom
# monitor on the `project` cost allocation tag: the account may hold other workloads, and
# an account has room for only one monitor of all AWS services.
resource "aws_ce_anomaly_monitor" "spend" {
  name         = "${var.prefix}-spend"
  monitor_type = "CUSTOM"
  monitor_specification = jsonencode({
    Tags = { Key = "project", Values = ["golos"], MatchOptions = ["EQUALS"] }
  })
}

resource "aws_ce_anomaly_subscription" "spend" {
  name             = "${var.prefix}-spend"
  frequency        = "IMMEDIATE"
  monitor_arn_list = [aws_ce_anomaly_monitor.spend.arn]
  subscriber {
    type    = "SNS"
    address = aws_sns_topic.alarms.arn
  }
  threshold_expression {
    dimension {
      key           = "ANOMALY_TOTAL_IMPACT_ABSOLUTE"
      match_options = ["GREATER_THAN_OR_EQUAL"]
      values        = [tostring(var.spend_anomaly_usd)]
    }
  }
  depends_on = [aws_sns_topic_policy.alarms]
}

# --- Queues ---

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  for_each            = var.dead_letter_names
  alarm_name          = "${var.prefix}-${each.key}-dlq"
  alarm_description   = "Messages in the ${each.key} dead-letter queue; see docs/runbook.md (inspect and redrive)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
}

# --- Errors and latency ---

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each            = var.function_names
  alarm_name          = "${var.prefix}-${each.key}-error-rate"
  alarm_description   = "More than 1 % of ${each.key} invocations failed in 5 minutes."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0.01
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  metric_query {
    id          = "rate"
    expression  = "IF(invocations > 0, errors / invocations, 0)"
    label       = "error rate"
    return_data = true
  }
  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Errors"
      dimensions  = { FunctionName = each.value }
      stat        = "Sum"
      period      = 300
    }
  }
  metric_query {
    id = "invocations"
    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Invocations"
      dimensions  = { FunctionName = each.value }
      stat        = "Sum"
      period      = 300
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "api_errors" {
  alarm_name          = "${var.prefix}-api-error-rate"
  alarm_description   = "More than 1 % of API requests answered 5xx in 5 minutes."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0.01
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  metric_query {
    id          = "rate"
    expression  = "IF(requests > 0, errors / requests, 0)"
    label       = "5xx rate"
    return_data = true
  }
  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/ApiGateway"
      metric_name = "5xx"
      dimensions  = { ApiId = var.api_id, Stage = var.api_stage }
      stat        = "Sum"
      period      = 300
    }
  }
  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApiGateway"
      metric_name = "Count"
      dimensions  = { ApiId = var.api_id, Stage = var.api_stage }
      stat        = "Sum"
      period      = 300
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "api_latency" {
  alarm_name          = "${var.prefix}-api-p99-latency"
  alarm_description   = "API p99 latency above 500 ms for 5 minutes."
  namespace           = "AWS/ApiGateway"
  metric_name         = "Latency"
  dimensions          = { ApiId = var.api_id, Stage = var.api_stage }
  extended_statistic  = "p99"
  period              = 300
  evaluation_periods  = 1
  threshold           = 500
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
}

resource "aws_cloudwatch_metric_alarm" "call_errors" {
  alarm_name          = "${var.prefix}-call-error-rate"
  alarm_description   = "More than 1 % of calls on a worker failed in the last 5 minutes (call_error_rate)."
  namespace           = "golos/media"
  metric_name         = "call_error_rate"
  dimensions          = local.worker_dimensions
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = 0.01
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
}

# --- Telephony ---

resource "aws_cloudwatch_metric_alarm" "trunk_breaker" {
  alarm_name          = "${var.prefix}-sip-trunk-breaker-open"
  alarm_description   = "A SIP trunk's circuit breaker is open (golos answers its calls 503); see docs/runbook.md (SIP trunks)."
  namespace           = "golos/media"
  metric_name         = "golos_sip_trunk_breaker_open"
  dimensions          = local.worker_dimensions
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
}

# A worker that cannot protect its task can be scaled in mid-call (the drain then cuts calls
# at ECS_CONTAINER_STOP_TIMEOUT). The agent turns the counter into a per-scrape delta, so a
# Sum above zero in each of two 5-minute periods is a failure that persists, not one retry.
resource "aws_cloudwatch_metric_alarm" "scale_in_protection" {
  alarm_name          = "${var.prefix}-scale-in-protection-failing"
  alarm_description   = "Workers with live calls cannot set ECS task scale-in protection; see docs/runbook.md (Drain and shutdown)."
  namespace           = "golos/media"
  metric_name         = "golos_scale_in_protection_failures_total"
  dimensions          = local.worker_dimensions
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 2
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
}

# --- Dashboard ---

resource "aws_cloudwatch_dashboard" "golos" {
  dashboard_name = var.prefix
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title  = "Live calls per worker (average) and workers"
          region = data.aws_region.current.name
          metrics = [
            ["golos/media", "concurrent_calls_active", "ClusterName", var.cluster_name, "ServiceName", var.service_name, { stat = "Average" }],
            ["golos/media", "concurrent_calls_active", "ClusterName", var.cluster_name, "ServiceName", var.service_name, { stat = "SampleCount", label = "workers reporting" }],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title  = "Call error rate (max over workers) and trunk breakers"
          region = data.aws_region.current.name
          metrics = [
            ["golos/media", "call_error_rate", "ClusterName", var.cluster_name, "ServiceName", var.service_name, { stat = "Maximum" }],
            ["golos/media", "golos_sip_trunk_breaker_open", "ClusterName", var.cluster_name, "ServiceName", var.service_name, { stat = "Maximum" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title  = "API: requests, 5xx, p99 latency"
          region = data.aws_region.current.name
          metrics = [
            ["AWS/ApiGateway", "Count", "ApiId", var.api_id, "Stage", var.api_stage, { stat = "Sum" }],
            ["AWS/ApiGateway", "5xx", "ApiId", var.api_id, "Stage", var.api_stage, { stat = "Sum" }],
            ["AWS/ApiGateway", "Latency", "ApiId", var.api_id, "Stage", var.api_stage, { stat = "p99", yAxis = "right" }],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 6, width = 12, height = 6
        properties = {
          title   = "Functions: errors"
          region  = data.aws_region.current.name
          metrics = [for k, name in var.function_names : ["AWS/Lambda", "Errors", "FunctionName", name, { stat = "Sum", label = k }]]
        }
      },
      {
        type = "metric", x = 0, y = 12, width = 12, height = 6
        properties = {
          title   = "Dead-letter queues"
          region  = data.aws_region.current.name
          metrics = [for k, name in var.dead_letter_names : ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", name, { stat = "Maximum", label = k }]]
        }
      },
      {
        type = "metric", x = 12, y = 12, width = 12, height = 6
        properties = {
          title  = "Money: ledger drift, unbilled calls, payments p99"
          region = data.aws_region.current.name
          metrics = [
            ["golos", "ledger_drift_orgs", "Deployment", var.table_name, { stat = "Maximum" }],
            ["golos", "unbilled_calls", "Deployment", var.table_name, { stat = "Maximum" }],
            ["AWS/Lambda", "Duration", "FunctionName", var.function_names["payments"], { stat = "p99", yAxis = "right" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 18, width = 12, height = 6
        properties = {
          title  = "Calls entry (ALB)"
          region = data.aws_region.current.name
          metrics = [
            ["AWS/ApplicationELB", "ActiveConnectionCount", "LoadBalancer", var.alb_arn_suffix, { stat = "Sum" }],
            ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", var.alb_arn_suffix, { stat = "Sum" }],
          ]
        }
      },
    ]
  })
}

data "aws_region" "current" {}
