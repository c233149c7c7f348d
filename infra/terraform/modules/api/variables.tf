variable "prefix" {
  type = string
}

variable "invoke_arns" {
  description = "Function key to invoke ARN (needs api and payments)."
  type        = map(string)
}

variable "alias_name" {
  description = "The alias API Gateway invokes (modules/functions' live alias)."
  type        = string
}

variable "function_names" {
  description = "Function key to function name (needs api and payments)."
  type        = map(string)
}

variable "kms_key_arn" {
  type = string
}

variable "log_retention_days" {
  type    = number
  default = 90
}

variable "throttle_rate" {
  description = "Requests per second the whole HTTP API accepts (default route throttling); golos's own per-key (200/min) and per-org (1000/min) limits apply below it."
  type        = number
  default     = 500
}

variable "throttle_burst" {
  type    = number
  default = 1000
}

variable "payments_throttle_rate" {
  description = "Requests per second for the payment webhooks route alone, so an API flood's throttling never refuses a payment notification first."
  type        = number
  default     = 50
}

variable "alb_arn" {
  description = "The media pool's ALB (WebSocket and HTTP calls entry), which the WAF web ACL protects."
  type        = string
}

variable "waf_rate_limit" {
  description = "Requests per 5 minutes one IP address may send to the ALB before WAF blocks it."
  type        = number
  default     = 2000
}
