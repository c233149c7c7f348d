# The values golos reads from its environment (docs/configuration.md).
output "golos_environment" {
  value = local.golos_environment
}

output "api_url" {
  value = module.api.api_url
}

output "calls_alb_dns_name" {
  description = "CNAME (or alias) the calls hostname of the ACM certificate to this."
  value       = module.media_pool.alb_dns_name
}

output "sip_address" {
  description = "The SIP front's Elastic IP: configure it at the trunk and on its IP allowlist."
  value       = module.sip_front.public_ip
}

output "ecr_repository_url" {
  description = "Push the worker image here (tag = var.worker_image_tag)."
  value       = module.media_pool.ecr_repository_url
}

output "recordings_bucket" {
  value = module.data.recordings_bucket
}

output "alarm_topic_arn" {
  value = module.observability.alarm_topic_arn
}

output "function_versions" {
  description = "Versions published by this apply; shift each function's live alias to its own with CodeDeploy (docs/deployment.md)."
  value       = module.functions.function_versions
}

output "functions_codedeploy_app" {
  value = module.functions.codedeploy_app
}
