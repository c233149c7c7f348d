variable "prefix" {
  description = "Name prefix, golos-<environment>."
  type        = string
}

variable "golos_environment" {
  description = "The GOLOS_* variables every binary reads in AWS mode (the root's golos_environment output)."
  type        = map(string)
}

variable "lambda_package_dir" {
  description = "Directory holding <binary>/bootstrap.zip as cargo lambda writes them."
  type        = string
}

variable "table_arn" {
  type = string
}

variable "kms_key_arn" {
  type = string
}

variable "queue_arns" {
  description = "Main queue name to ARN (call-events, webhooks)."
  type        = map(string)
}

variable "dead_letter_arns" {
  description = "Dead-letter queue of each main queue, by the main queue's name."
  type        = map(string)
}

variable "secret_arns" {
  description = "Secret short name to ARN."
  type        = map(string)
}

variable "yookassa_allowed_ips" {
  description = "Comma-separated networks YooKassa notifications may come from; empty keeps the published list."
  type        = string
  default     = ""
}

variable "reconcile_call_window_days" {
  description = "Reconciliation checks the debits of calls that started in this many last days."
  type        = number
  default     = 7
}

variable "log_retention_days" {
  description = "How long the functions' logs are kept."
  type        = number
  default     = 90
}

variable "reserved_concurrency" {
  description = "Reserved concurrency per function. payments and call-events keep theirs whatever the API does; the API's is also its cap, so a flood cannot take the account's whole pool. The sum must leave 100 unreserved in the account (Lambda's rule), so the account's concurrency quota must be above sum + 100."
  type        = map(number)
  default = {
    api            = 200
    payments       = 20
    call-events    = 20
    webhooks       = 20
    sweeper        = 1 # one sweep at a time
    reconciliation = 1 # one reconciliation at a time
  }
}
