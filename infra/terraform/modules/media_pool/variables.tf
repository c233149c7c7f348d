variable "prefix" {
  type = string
}

variable "golos_environment" {
  description = "The GOLOS_* variables every binary reads in AWS mode (the root's golos_environment output)."
  type        = map(string)
}

variable "vpc_id" {
  type = string
}

variable "vpc_cidr" {
  description = "SIP from inside the VPC only (the SIP front); the trunk reaches the workers for RTP alone."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets of the workers (public addresses for RTP) and of the ALB; 2+ zones."
  type        = list(string)
}

variable "table_arn" {
  type = string
}

variable "kms_key_arn" {
  type = string
}

variable "queue_arns" {
  type = map(string)
}

variable "dead_letter_arns" {
  type = map(string)
}

variable "recordings_bucket_arn" {
  type = string
}

variable "image_tag" {
  description = "Tag of the worker image in the ECR repository (immutable tags: one per build)."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate (in this region) for the ALB's HTTPS listener, e.g. for calls.example.com."
  type        = string
}

variable "instance_type" {
  description = "EC2 type of the media workers (one task per instance: host networking)."
  type        = string
  default     = "c6i.xlarge"
}

variable "min_tasks" {
  type    = number
  default = 2
}

variable "max_tasks" {
  type    = number
  default = 10
}

variable "calls_per_task_target" {
  description = "Target tracking keeps the average of concurrent_calls_active per task at this; below the worker's tested maximum (docs/performance.md)."
  type        = number
  default     = 40
}

variable "rtp_ports" {
  description = "GOLOS_RTP_PORTS: the UDP range the trunk's media servers send RTP to."
  type        = string
  default     = "20000-20999"
}

variable "trunk_media_cidrs" {
  description = "Networks the trunk's media servers send RTP from; narrow this to your trunk's (MTS Exolve publishes its media networks)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "drain_secs" {
  description = "GOLOS_DRAIN_SECS: how long live calls may go on after SIGTERM (the reviews' 10 minutes)."
  type        = number
  default     = 600
}

variable "log_retention_days" {
  type    = number
  default = 90
}

variable "alb_deletion_protection" {
  type    = bool
  default = true
}
