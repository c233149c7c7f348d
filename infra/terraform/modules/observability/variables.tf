variable "prefix" {
  type = string
}

variable "kms_key_arn" {
  description = "Encrypts the alarm topic."
  type        = string
}

variable "alarm_emails" {
  description = "Addresses subscribed to the alarm topic (each confirms by email)."
  type        = list(string)
  default     = []
}

variable "table_name" {
  description = "Reconciliation's metrics carry it as their Deployment dimension."
  type        = string
}

variable "function_names" {
  description = "Function key to Lambda function name."
  type        = map(string)
}

variable "dead_letter_names" {
  description = "Main queue name to its dead-letter queue's name."
  type        = map(string)
}

variable "api_id" {
  type = string
}

variable "api_stage" {
  type = string
}

variable "cluster_name" {
  type = string
}

variable "service_name" {
  type = string
}

variable "alb_arn_suffix" {
  type = string
}

variable "monthly_budget_usd" {
  description = "AWS Budgets alerts at 80 % (actual) and 100 % (forecast) of this monthly spend."
  type        = number
  default     = 500
}

variable "spend_anomaly_usd" {
  description = "Cost Anomaly Detection alerts when a spend anomaly's total impact reaches this many USD."
  type        = number
  default     = 50
}
