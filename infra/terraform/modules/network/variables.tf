variable "prefix" {
  type = string
}

variable "cidr" {
  description = "The VPC's address range; split into one public and one private /20 per zone."
  type        = string
  default     = "10.40.0.0/16"
}

variable "az_count" {
  description = "Availability zones to spread over (2 or more)."
  type        = number
  default     = 2
  validation {
    condition     = var.az_count >= 2
    error_message = "golos spreads over at least 2 availability zones."
  }
}

variable "nat_gateway" {
  description = "One NAT gateway per zone for the private subnets. Nothing golos runs needs it (media workers and the SIP front are in the public subnets for their public addresses; the functions run outside the VPC); turn it on for what you add there."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "Encrypts the flow log group."
  type        = string
}

variable "flow_log_retention_days" {
  type    = number
  default = 30
}
