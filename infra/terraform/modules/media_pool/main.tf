# The media pool: long-lived workers (`golos serve`, the worker image from ECR) on ECS with EC2
# capacity, each owning its live calls.
#
# Why EC2 and not Fargate:
# - Stop timeout. A worker drains for up to GOLOS_DRAIN_SECS (600 s) after SIGTERM and exits
#   at most 15 s later. Fargate caps a container's stopTimeout at 120 s. On EC2 the task
#   definition leaves stopTimeout unset and the ECS agent's ECS_CONTAINER_STOP_TIMEOUT (set
#   in the instances' user data below to drain + 60 s) applies: SIGKILL comes only after
#   the drain.
# - Addresses. RTP must reach the worker's own public address (modules/network), which host
#   networking on an instance with a public IPv4 gives; each instance writes that address
#   into /etc/golos/instance.toml at boot, the task mounts it as its GOLOS_CONFIG file
#   (`[sip] public_address`), so SDP answers carry it.
# Host networking means fixed ports, so one task per instance (distinctInstance); the
# capacity provider's managed scaling adds an instance for every task the service wants.
#
# Never killed with calls on it:
# - SIGTERM drains (stop taking calls, /ready 503, call.shutdown_initiated, wait, then end
#   the rest with forced_shutdown); the stop timeout above covers it.
# - While it has live calls the worker sets ECS task scale-in protection on itself through
#   the ECS agent's task-protection endpoint ($ECS_AGENT_URI/task-protection/v1/state), and
#   clears it when idle, so autoscaling scale-in picks idle tasks only. The task role below
#   grants ecs:UpdateTaskProtection and ecs:GetTaskProtection for that. The capacity
#   provider's managed termination protection keeps an instance while it runs a task.
#
# Autoscaling on active calls per task: the worker exports concurrent_calls_active on
# /metrics (Prometheus). A CloudWatch agent sidecar scrapes it every 15 s and writes it as an
# Embedded Metric Format custom metric (namespace golos/media, dimensions ClusterName and
# ServiceName: one data point per task). Target tracking on the Average of that metric is the
# average of live calls per task, which it keeps at var.calls_per_task_target. No metric math
# is needed: averaging the per-task data points is the per-task load.
#
# The secrets: the worker reads the platform's secrets (pepper, call-token key, operator key,
# provider-* keys) itself through Secrets Manager (GetSecretValue on the task role), like the
# functions, rather than as container `secrets` injected into its environment: they stay out
# of the task's environment (docker inspect on the host), and a rotated provider key is read
# without restarting tasks that hold live calls.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  region     = data.aws_region.current.name
  account    = data.aws_caller_identity.current.account_id
  name       = "${var.prefix}-media"
  stop_after = var.drain_secs + 60
  # The worker's environment: the shared GOLOS_* set and what only a worker reads.
  # GOLOS_SIP_PUBLIC_ADDRESS comes from the GOLOS_CONFIG file the instance writes (above).
  worker_environment = merge(var.golos_environment, {
    GOLOS_BACKEND             = "aws"
    GOLOS_CONFIG              = "/etc/golos/instance.toml"
    GOLOS_LISTEN              = "0.0.0.0:8080"
    GOLOS_OPS_LISTEN          = "0.0.0.0:9464"
    GOLOS_TRUST_FORWARDED_FOR = "true" # only the ALB reaches :8080, and it appends X-Forwarded-For
    GOLOS_SIP_LISTEN          = "0.0.0.0:5060"
    GOLOS_RTP_PORTS           = var.rtp_ports
    GOLOS_DRAIN_SECS          = tostring(var.drain_secs)
    GOLOS_LOG_FORMAT          = "json"
  })
  rtp_from = tonumber(split("-", var.rtp_ports)[0])
  rtp_to   = tonumber(split("-", var.rtp_ports)[1])
  prometheus_config = yamlencode({
    global = { scrape_interval = "15s", scrape_timeout = "5s" }
    scrape_configs = [{
      job_name       = "golos-worker"
      static_configs = [{ targets = ["127.0.0.1:9464"], labels = { ClusterName = aws_ecs_cluster.media.name, ServiceName = local.name } }]
    }]
  })
  cwagent_config = jsonencode({
    logs = {
      metrics_collected = {
        prometheus = {
          log_group_name         = aws_cloudwatch_log_group.metrics.name
          prometheus_config_path = "env:PROMETHEUS_CONFIG_CONTENT"
          emf_processor = {
            metric_namespace = "golos/media"
            metric_declaration = [{
              source_labels = ["job"]
              label_matcher = "^golos-worker$"
              dimensions    = [["ClusterName", "ServiceName"]]
              metric_selectors = [
                "^concurrent_calls_active$", "^call_error_rate$", "^golos_worker_draining$",
                "^golos_sip_trunk_breaker_open$", "^golos_ws_connections$",
                "^golos_worker_scale_in_protected$", "^golos_scale_in_protection_failures_total$",
              ]
            }]
          }
        }
      }
      force_flush_interval = 5
    }
  })
}

# --- Image ---

resource "aws_ecr_repository" "worker" {
  name                 = "${var.prefix}-worker"
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }
}

resource "aws_ecr_lifecycle_policy" "worker" {
  repository = aws_ecr_repository.worker.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the last 30 images (rollbacks)"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 30 }
      action       = { type = "expire" }
    }]
  })
}

# --- Cluster and EC2 capacity ---

resource "aws_ecs_cluster" "media" {
  name = local.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

data "aws_ssm_parameter" "ecs_ami" {
  name = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "instance" {
  name               = "${local.name}-instance"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy_attachment" "instance" {
  for_each = toset([
    "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role",
    "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore", # shell access without SSH
  ])
  role       = aws_iam_role.instance.name
  policy_arn = each.value
}

resource "aws_iam_instance_profile" "instance" {
  name = "${local.name}-instance"
  role = aws_iam_role.instance.name
}

resource "aws_security_group" "alb" {
  name        = "${local.name}-alb"
  description = "golos media pool ALB: HTTPS from anywhere"
  vpc_id      = var.vpc_id
  ingress {
    description = "HTTPS: browser WebSocket calls, Twilio-style media streams"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
  egress {
    description = "to the workers (HTTP and health checks)"
    from_port   = 8080
    to_port     = 9464
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }
}

resource "aws_security_group" "worker" {
  #checkov:skip=CKV_AWS_382:workers call LLM/STT/TTS providers, customers' tool endpoints (checked by golos's egress policy) and trunks anywhere on the internet.
  name        = "${local.name}-worker"
  description = "golos media workers"
  vpc_id      = var.vpc_id
  ingress {
    description     = "calls over HTTP/WebSocket, from the ALB only"
    from_port       = 8080
    to_port         = 8080
    protocol        = "tcp"
    security_groups = [aws_security_group.alb.id]
  }
  ingress {
    description     = "/ready and /metrics (GOLOS_OPS_LISTEN), ALB health checks only"
    from_port       = 9464
    to_port         = 9464
    protocol        = "tcp"
    security_groups = [aws_security_group.alb.id]
  }
  ingress {
    description = "SIP from the SIP front (inside the VPC)"
    from_port   = 5060
    to_port     = 5060
    protocol    = "udp"
    cidr_blocks = [var.vpc_cidr]
  }
  ingress {
    description = "SIP over TCP from the SIP front"
    from_port   = 5060
    to_port     = 5060
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }
  ingress {
    description = "RTP/RTCP from the trunk's media servers"
    from_port   = local.rtp_from
    to_port     = local.rtp_to
    protocol    = "udp"
    cidr_blocks = var.trunk_media_cidrs
  }
  egress {
    description = "providers, tool endpoints, trunks, AWS APIs"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_launch_template" "worker" {
  name_prefix            = "${local.name}-"
  image_id               = data.aws_ssm_parameter.ecs_ami.value
  instance_type          = var.instance_type
  vpc_security_group_ids = [aws_security_group.worker.id]
  iam_instance_profile {
    arn = aws_iam_instance_profile.instance.arn
  }
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1          # host networking: tasks are one hop like the host
  }
  monitoring {
    enabled = true
  }
  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = 30
      volume_type = "gp3"
      # The account's EBS key: a customer key would need a key-policy grant for the Auto
      # Scaling service-linked role, which may not exist before the first group. The root
      # volume holds images and nothing of the calls.
      encrypted = true
    }
  }
  user_data = base64encode(<<-EOT
    #!/bin/bash
    set -euo pipefail
    cat >> /etc/ecs/ecs.config <<CFG
    ECS_CLUSTER=${aws_ecs_cluster.media.name}
    ECS_CONTAINER_STOP_TIMEOUT=${local.stop_after}s
    ECS_ENABLE_TASK_IAM_ROLE=true
    ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true
    ECS_INSTANCE_ATTRIBUTES={"golos.role":"media"}
    CFG
    token=$(curl -sf -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')
    address=$(curl -sf -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/public-ipv4)
    mkdir -p /etc/golos
    printf '[sip]\npublic_address = "%s"\n' "$address" > /etc/golos/instance.toml
  EOT
  )
  tag_specifications {
    resource_type = "instance"
    tags          = { Name = local.name }
  }
}

resource "aws_autoscaling_group" "worker" {
  name                  = local.name
  vpc_zone_identifier   = var.public_subnet_ids
  min_size              = var.min_tasks
  max_size              = var.max_tasks + 1 # room for one replacement during a deployment
  protect_from_scale_in = true              # the capacity provider's managed termination protection decides
  launch_template {
    id      = aws_launch_template.worker.id
    version = "$Latest"
  }
  tag {
    key                 = "AmazonECSManaged"
    value               = "true"
    propagate_at_launch = true
  }
  lifecycle {
    ignore_changes = [desired_capacity]
  }
}

resource "aws_ecs_capacity_provider" "worker" {
  name = local.name
  auto_scaling_group_provider {
    auto_scaling_group_arn         = aws_autoscaling_group.worker.arn
    managed_termination_protection = "ENABLED"
    managed_draining               = "ENABLED"
    managed_scaling {
      status          = "ENABLED"
      target_capacity = 100
    }
  }
}

resource "aws_ecs_cluster_capacity_providers" "media" {
  cluster_name       = aws_ecs_cluster.media.name
  capacity_providers = [aws_ecs_capacity_provider.worker.name]
  default_capacity_provider_strategy {
    capacity_provider = aws_ecs_capacity_provider.worker.name
    weight            = 1
  }
}

# --- Task ---

data "aws_iam_policy_document" "task_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${local.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.task_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

# What a worker does: admission and leases, context snapshots, call records (the table); call
# events and webhooks (the queues; it consumes none); envelope encryption of transcripts and
# recordings; the platform's secrets; its own scale-in protection; the metrics sidecar's
# EMF log group. tests/tests/infra.rs checks it allows every action the AWS adapters call.
data "aws_iam_policy_document" "task" {
  statement {
    sid = "Table"
    actions = [
      "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query",
      "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable",
    ]
    resources = [var.table_arn, "${var.table_arn}/index/*"]
  }
  statement {
    sid = "Queues"
    actions = [
      "sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
      "sqs:GetQueueUrl", "sqs:GetQueueAttributes",
    ]
    resources = concat(values(var.queue_arns), values(var.dead_letter_arns))
  }
  statement {
    sid       = "Envelope"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
  statement {
    sid       = "Secrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = ["arn:aws:secretsmanager:${local.region}:${local.account}:secret:${var.prefix}/*"] # provider-* keys the operator adds too
  }
  statement {
    sid       = "Recordings"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${var.recordings_bucket_arn}/*"]
  }
  statement {
    # The worker protects itself from scale-in while it has live calls (see the top).
    sid       = "ScaleInProtection"
    actions   = ["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"]
    resources = ["arn:aws:ecs:${local.region}:${local.account}:task/${aws_ecs_cluster.media.name}/*"]
  }
  statement {
    sid       = "MetricsSidecar"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.metrics.arn}:*"]
  }
}

resource "aws_iam_role" "task" {
  name               = "${local.name}-task"
  assume_role_policy = data.aws_iam_policy_document.task_assume.json
}

resource "aws_iam_role_policy" "task" {
  name   = "${local.name}-task"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

resource "aws_cloudwatch_log_group" "worker" {
  #checkov:skip=CKV_AWS_338:retention is a variable (default 90 days), the operator's GDPR call.
  name              = "/golos/${var.prefix}/media"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_cloudwatch_log_group" "metrics" {
  #checkov:skip=CKV_AWS_338:EMF records only feed the custom metrics; a week is plenty.
  name              = "/golos/${var.prefix}/media-metrics"
  retention_in_days = 7
  kms_key_id        = var.kms_key_arn
}

resource "aws_ecs_task_definition" "worker" {
  family                   = local.name
  requires_compatibilities = ["EC2"]
  network_mode             = "host"
  task_role_arn            = aws_iam_role.task.arn
  execution_role_arn       = aws_iam_role.execution.arn
  volume {
    name      = "instance-config"
    host_path = "/etc/golos"
  }
  container_definitions = jsonencode([
    {
      name              = "worker"
      image             = "${aws_ecr_repository.worker.repository_url}:${var.image_tag}"
      essential         = true
      memoryReservation = 2048
      # No stopTimeout: on EC2 the agent's ECS_CONTAINER_STOP_TIMEOUT (drain + 60 s) applies.
      environment = [for name, value in local.worker_environment : { name = name, value = value }]
      portMappings = [
        { containerPort = 8080, hostPort = 8080, protocol = "tcp" },
        { containerPort = 9464, hostPort = 9464, protocol = "tcp" },
        { containerPort = 5060, hostPort = 5060, protocol = "udp" },
        { containerPort = 5060, hostPort = 5060, protocol = "tcp" },
      ]
      mountPoints = [{ sourceVolume = "instance-config", containerPath = "/etc/golos", readOnly = true }]
      ulimits     = [{ name = "nofile", softLimit = 65536, hardLimit = 65536 }]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.worker.name
          awslogs-region        = local.region
          awslogs-stream-prefix = "worker"
        }
      }
    },
    {
      name              = "metrics"
      image             = "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:latest"
      essential         = false
      memoryReservation = 128
      environment = [
        { name = "CW_CONFIG_CONTENT", value = local.cwagent_config },
        { name = "PROMETHEUS_CONFIG_CONTENT", value = local.prometheus_config },
      ]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.worker.name
          awslogs-region        = local.region
          awslogs-stream-prefix = "metrics"
        }
      }
    },
  ])
}

# --- Entry: ALB with TLS for WebSocket and HTTP calls ---

resource "aws_lb" "media" {
  #checkov:skip=CKV_AWS_150:deletion protection is var.alb_deletion_protection, on in prod (the root sets it).
  #checkov:skip=CKV2_AWS_28:the WAF web ACL is associated in modules/api (aws_wafv2_web_acl_association.alb), which checkov does not follow across modules.
  #checkov:skip=CKV_AWS_91:ALB access logs need an S3 bucket with an ELB delivery policy per region; WAF logs (modules/api) already record every request with its source.
  name                       = local.name
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  idle_timeout               = 300 # a WebSocket call between two turns can be quiet for a while
  enable_deletion_protection = var.alb_deletion_protection
}

resource "aws_lb_target_group" "worker" {
  name        = local.name
  port        = 8080
  protocol    = "HTTP"
  target_type = "instance" # host networking
  vpc_id      = var.vpc_id
  # A draining worker keeps its open WebSockets for the whole drain.
  deregistration_delay = var.drain_secs
  health_check {
    # /ready answers 503 while the worker drains, so the ALB sends it no new calls.
    path                = "/ready"
    port                = "9464"
    matcher             = "200"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.media.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.worker.arn
  }
}

# --- Service ---

# The SIP front finds the workers here: SRV records (host networking allows only SRV) of
# each task's instance address and SIP port.
resource "aws_service_discovery_private_dns_namespace" "golos" {
  name = "${var.prefix}.internal"
  vpc  = var.vpc_id
}

resource "aws_service_discovery_service" "worker" {
  name = "media"
  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.golos.id
    routing_policy = "MULTIVALUE"
    dns_records {
      type = "SRV"
      ttl  = 10
    }
  }
  health_check_custom_config {
    failure_threshold = 1
  }
}

resource "aws_ecs_service" "worker" {
  name                              = local.name
  cluster                           = aws_ecs_cluster.media.id
  task_definition                   = aws_ecs_task_definition.worker.arn
  desired_count                     = var.min_tasks
  health_check_grace_period_seconds = 60
  enable_ecs_managed_tags           = true
  propagate_tags                    = "SERVICE"
  # A new task per instance first, then the old one drains: calls are never cut by a deploy.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  capacity_provider_strategy {
    capacity_provider = aws_ecs_capacity_provider.worker.name
    weight            = 1
  }
  placement_constraints {
    type = "distinctInstance"
  }
  placement_constraints {
    type       = "memberOf"
    expression = "attribute:golos.role == media" # not on the SIP front's instance
  }
  load_balancer {
    target_group_arn = aws_lb_target_group.worker.arn
    container_name   = "worker"
    container_port   = 8080
  }
  service_registries {
    registry_arn   = aws_service_discovery_service.worker.arn
    container_name = "worker"
    container_port = 5060
  }
  lifecycle {
    ignore_changes = [desired_count] # autoscaling owns it
  }
  depends_on = [aws_lb_listener.https, aws_ecs_cluster_capacity_providers.media]
}

# --- Autoscaling on active calls per task ---

resource "aws_appautoscaling_target" "worker" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.media.name}/${aws_ecs_service.worker.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_tasks
  max_capacity       = var.max_tasks
}

resource "aws_appautoscaling_policy" "calls_per_task" {
  name               = "${local.name}-calls-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  resource_id        = aws_appautoscaling_target.worker.resource_id
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension
  target_tracking_scaling_policy_configuration {
    target_value       = var.calls_per_task_target
    scale_out_cooldown = 60
    # Scale-in stops only unprotected (idle) tasks; waiting 10 min avoids churn after a peak.
    scale_in_cooldown = 600
    customized_metric_specification {
      namespace   = "golos/media"
      metric_name = "concurrent_calls_active"
      statistic   = "Average"
      dimensions {
        name  = "ClusterName"
        value = aws_ecs_cluster.media.name
      }
      dimensions {
        name  = "ServiceName"
        value = local.name
      }
    }
  }
}
