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
