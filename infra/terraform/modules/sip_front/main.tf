# The SIP front: the one address the trunk knows. A Kamailio dispatcher (its configuration is
# in infra/sip-front/) on one EC2 instance with an Elastic IP, in host networking, as an ECS
# service of the media pool's cluster placed on that instance only. Stateless: it
# Record-Routes, probes the workers with OPTIONS and fails over on timeout or 503 (a draining
# worker answers 503). RTP does not pass through it (modules/network).
#
# The Elastic IP is what goes on the trunk's IP allowlist (docs/deployment.md). One instance
# because a trunk allowlists addresses, not names: a second front means a second EIP there
# too (raise `count`s here, or run this module twice). If it dies, ECS restarts the task
# and EC2 auto-recovery restarts the instance with the same EIP.
#
# The container's contract (what infra/sip-front/Dockerfile's image reads):
#   SIP_FRONT_CONFIG          the Kamailio configuration file in the image (var.config_path)
#   SIP_FRONT_WORKERS_SRV     the SRV name listing every worker's private address and SIP port
#                             (Cloud Map, TTL 10 s; a drained or dead worker leaves it)
#   SIP_FRONT_PUBLIC_ADDRESS  the Elastic IP, to advertise in Via/Record-Route (the instance
#                             sees only its private address: 1:1 NAT)
#   SIP_FRONT_TRUNK_NETWORKS  the trunks' signalling CIDRs: the front answers anyone else 403
#                             (the security group already drops them; this is the second wall)
# The workers accept SIP from inside the VPC only (modules/media_pool).

data "aws_region" "current" {}

data "aws_ssm_parameter" "ecs_ami" {
  name = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
}

locals {
  name = "${var.prefix}-sip-front"
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
    "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
  ])
  role       = aws_iam_role.instance.name
  policy_arn = each.value
}

resource "aws_iam_instance_profile" "instance" {
  name = "${local.name}-instance"
  role = aws_iam_role.instance.name
}

resource "aws_security_group" "front" {
  #checkov:skip=CKV_AWS_382:the front forwards SIP to workers and answers trunks; egress is SIP and DNS in practice, but trunks' addresses are the operator's.
  name        = local.name
  description = "golos SIP front: SIP from the trunk"
  vpc_id      = var.vpc_id
  ingress {
    description = "SIP over UDP from the trunk"
    from_port   = 5060
    to_port     = 5060
    protocol    = "udp"
    cidr_blocks = var.trunk_signalling_cidrs
  }
  egress {
    description = "SIP to workers and trunks, DNS, ECS and AWS APIs"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_instance" "front" {
  ami                    = data.aws_ssm_parameter.ecs_ami.value
  instance_type          = var.instance_type
  subnet_id              = var.public_subnet_id
  vpc_security_group_ids = [aws_security_group.front.id]
  iam_instance_profile   = aws_iam_instance_profile.instance.name
  monitoring             = true
  ebs_optimized          = true
  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }
  root_block_device {
    volume_size = 30
    volume_type = "gp3"
    encrypted   = true
  }
  user_data = <<-EOT
    #!/bin/bash
    cat >> /etc/ecs/ecs.config <<CFG
    ECS_CLUSTER=${var.cluster_name}
    ECS_INSTANCE_ATTRIBUTES={"golos.role":"sip-front"}
    CFG
  EOT
  tags      = { Name = local.name }
}

resource "aws_eip" "front" {
  domain   = "vpc"
  instance = aws_instance.front.id
  tags     = { Name = local.name }
}

resource "aws_cloudwatch_log_group" "front" {
  #checkov:skip=CKV_AWS_338:retention is a variable (default 90 days).
  name              = "/golos/${var.prefix}/sip-front"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_ecs_task_definition" "front" {
  #checkov:skip=CKV_AWS_336:Kamailio writes its pid file and control FIFO at run time; whether its image can run read-only is infra/sip-front/'s choice.
  family                   = local.name
  requires_compatibilities = ["EC2"]
  network_mode             = "host"
  container_definitions = jsonencode([{
    name              = "kamailio"
    image             = var.image
    essential         = true
    memoryReservation = 256
    environment = [
      { name = "SIP_FRONT_CONFIG", value = var.config_path },
      { name = "SIP_FRONT_WORKERS_SRV", value = var.workers_srv_name },
      { name = "SIP_FRONT_PUBLIC_ADDRESS", value = aws_eip.front.public_ip },
      { name = "SIP_FRONT_TRUNK_NETWORKS", value = join(",", var.trunk_signalling_cidrs) },
    ]
    portMappings = [
      # UDP only: kamailio.cfg has disable_tcp=yes (trunks such as MTS Exolve signal over UDP).
      { containerPort = 5060, hostPort = 5060, protocol = "udp" },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.front.name
        awslogs-region        = data.aws_region.current.name
        awslogs-stream-prefix = "kamailio"
      }
    }
  }])
}

resource "aws_ecs_service" "front" {
  name            = local.name
  cluster         = var.cluster_arn
  task_definition = aws_ecs_task_definition.front.arn
  desired_count   = 1
  launch_type     = "EC2"
  # Host networking on one instance: the old task stops before the new one binds 5060.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  placement_constraints {
    type       = "memberOf"
    expression = "attribute:golos.role == sip-front"
  }
}
