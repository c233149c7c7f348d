output "cluster_name" {
  value = aws_ecs_cluster.media.name
}

output "cluster_arn" {
  value = aws_ecs_cluster.media.arn
}

output "service_name" {
  value = aws_ecs_service.worker.name
}

output "ecr_repository_url" {
  value = aws_ecr_repository.worker.repository_url
}

output "alb_arn" {
  value = aws_lb.media.arn
}

output "alb_arn_suffix" {
  value = aws_lb.media.arn_suffix
}

output "alb_dns_name" {
  description = "Point the calls hostname (the ACM certificate's name) here with a CNAME or alias."
  value       = aws_lb.media.dns_name
}

output "alb_zone_id" {
  value = aws_lb.media.zone_id
}

output "log_group_name" {
  value = aws_cloudwatch_log_group.worker.name
}

output "worker_security_group_id" {
  value = aws_security_group.worker.id
}

output "instance_profile_name" {
  value = aws_iam_instance_profile.instance.name
}

output "workers_srv_name" {
  description = "SRV name listing every worker's address and SIP port, for the SIP front's dispatcher."
  value       = "media.${var.prefix}.internal"
}
