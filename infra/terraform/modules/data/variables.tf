variable "prefix" {
  description = "Name prefix of every resource, golos-<environment>; also GOLOS_QUEUE_PREFIX and GOLOS_SECRETS_PREFIX."
  type        = string
}

variable "deletion_protection" {
  description = "Protect the table from deletion (on in prod)."
  type        = bool
  default     = true
}

variable "backup_retention_days" {
  description = "How long AWS Backup keeps the table's daily backups (PITR covers the last 35 days to the second anyway)."
  type        = number
  default     = 35
}

variable "recordings_expire_days" {
  description = "Recordings are deleted this many days after upload (a per-org retention can only be shorter)."
  type        = number
  default     = 365
}
