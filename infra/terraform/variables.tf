variable "region" {
  description = "AWS region, e.g. eu-central-1."
  type        = string
  default     = "eu-central-1"
}

variable "environment" {
  description = "Name of the deployment (dev, staging, prod); prefixes every resource."
  type        = string
  default     = "dev"
}

variable "lambda_package_dir" {
  description = "Directory holding <binary>/bootstrap.zip as cargo lambda writes them."
  type        = string
  default     = "../../target/lambda"
}

variable "worker_image_tag" {
  description = "Tag of the media worker image pushed to the ECR repository (output ecr_repository_url)."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate in this region for the calls hostname (WebSocket/HTTP calls, the ALB)."
  type        = string
}

variable "sip_front_image" {
  description = "The SIP front's image (Kamailio with infra/sip-front/'s configuration), e.g. <account>.dkr.ecr.<region>.amazonaws.com/golos-sip-front:<tag>."
  type        = string
}

variable "trunk_signalling_cidrs" {
  description = "Networks the SIP trunk sends signalling from (the SIP front accepts SIP only from these)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "trunk_media_cidrs" {
  description = "Networks the SIP trunk's media servers send RTP from (the workers' RTP ports accept only these)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
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

variable "reconcile_call_window_days" {
  description = "Reconciliation checks the debits of calls that started in this many last days."
  type        = number
  default     = 7
}

variable "log_retention_days" {
  description = "How long the functions', workers' and API's logs are kept."
  type        = number
  default     = 90
}

variable "media_min_tasks" {
  type    = number
  default = 2
}

variable "media_max_tasks" {
  type    = number
  default = 10
}

variable "alarm_emails" {
  description = "Who gets the alarms (each address confirms its subscription)."
  type        = list(string)
  default     = []
}

variable "monthly_budget_usd" {
  description = "Unusual spend: AWS Budgets alerts at 80 % of this (actual) and 100 % (forecast)."
  type        = number
  default     = 500
}

variable "spend_anomaly_usd" {
  description = "Cost Anomaly Detection alerts on a spend anomaly of golos's tagged resources with at least this total impact (USD)."
  type        = number
  default     = 50
}
