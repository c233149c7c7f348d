variable "prefix" {
  type = string
}

variable "vpc_id" {
  type = string
}

variable "public_subnet_id" {
  description = "The subnet of the SIP front's instance (its Elastic IP is the trunk's one address)."
  type        = string
}

variable "cluster_name" {
  description = "The ECS cluster (the media pool's) the SIP front's instance joins."
  type        = string
}

variable "cluster_arn" {
  type = string
}

variable "image" {
  description = "The SIP front's container image (Kamailio with the configuration of infra/sip-front/)."
  type        = string
}

variable "config_path" {
  description = "Where the image's run writes Kamailio's configuration (a kamailio.cfg in a directory Kamailio's user owns); passed to the container as SIP_FRONT_CONFIG."
  type        = string
  default     = "/var/lib/sip-front/kamailio.cfg"
}

variable "workers_srv_name" {
  description = "SRV name of the media workers (the media pool's Cloud Map service), for the dispatcher; passed as SIP_FRONT_WORKERS_SRV."
  type        = string
}

variable "instance_type" {
  type    = string
  default = "t3.small"
}

variable "trunk_signalling_cidrs" {
  description = "Networks the trunk sends SIP from; narrow to your trunk's signalling addresses."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "kms_key_arn" {
  type = string
}

variable "log_retention_days" {
  type    = number
  default = 90
}
