# The VPC: 2+ availability zones, a public and a private subnet in each.
#
# Public addresses for SIP/RTP. A phone call's media cannot go through a load balancer that
# rewrites addresses: the SDP a worker answers with names the address RTP must reach. So:
# - SIP signalling has ONE stable address, the SIP front's Elastic IP (modules/sip_front):
#   that is what the trunk (MTS Exolve) sends INVITEs to and what goes on its IP allowlist.
#   Kamailio there dispatches each call to a worker and stays on the signalling path
#   (Record-Route).
# - RTP goes directly between the trunk and the worker that owns the call: workers run on EC2
#   container instances in the public subnets with a public IPv4 address each, in host
#   network mode, and put that address in their SDP (GOLOS_SIP_PUBLIC_ADDRESS, read from the
#   instance metadata when the task starts; modules/media_pool). An instance's address is
#   stable for the instance's life, which is longer than any call on it.
# The private subnets hold nothing of golos's today; they are there for what an operator adds
# (databases, a self-hosted LLM) and get NAT only with var.nat_gateway.

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:only the first var.az_count zones are used, and a new zone sorts after the existing ones, so the slice does not change.
  state = "available"
}

locals {
  zones = slice(data.aws_availability_zones.available.names, 0, var.az_count)
}

resource "aws_vpc" "golos" {
  cidr_block           = var.cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = var.prefix }
}

# Nothing uses the default security group; it allows nothing.
resource "aws_default_security_group" "default" {
  vpc_id = aws_vpc.golos.id
}

resource "aws_internet_gateway" "golos" {
  vpc_id = aws_vpc.golos.id
  tags   = { Name = var.prefix }
}

resource "aws_subnet" "public" {
  #checkov:skip=CKV_AWS_130:the media workers and the SIP front need public addresses: RTP flows directly between the trunk and the worker (see above).
  count                   = var.az_count
  vpc_id                  = aws_vpc.golos.id
  availability_zone       = local.zones[count.index]
  cidr_block              = cidrsubnet(var.cidr, 4, count.index)
  map_public_ip_on_launch = true
  tags                    = { Name = "${var.prefix}-public-${local.zones[count.index]}", tier = "public" }
}

resource "aws_subnet" "private" {
  count             = var.az_count
  vpc_id            = aws_vpc.golos.id
  availability_zone = local.zones[count.index]
  cidr_block        = cidrsubnet(var.cidr, 4, 8 + count.index)
  tags              = { Name = "${var.prefix}-private-${local.zones[count.index]}", tier = "private" }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.golos.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.golos.id
  }
  tags = { Name = "${var.prefix}-public" }
}

resource "aws_route_table_association" "public" {
  count          = var.az_count
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_eip" "nat" {
  count  = var.nat_gateway ? var.az_count : 0
  domain = "vpc"
  tags   = { Name = "${var.prefix}-nat-${local.zones[count.index]}" }
}

resource "aws_nat_gateway" "golos" {
  count         = var.nat_gateway ? var.az_count : 0
  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id
  tags          = { Name = "${var.prefix}-${local.zones[count.index]}" }
}

resource "aws_route_table" "private" {
  count  = var.az_count
  vpc_id = aws_vpc.golos.id
  tags   = { Name = "${var.prefix}-private-${local.zones[count.index]}" }
}

resource "aws_route" "private_nat" {
  count                  = var.nat_gateway ? var.az_count : 0
  route_table_id         = aws_route_table.private[count.index].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.golos[count.index].id
}

resource "aws_route_table_association" "private" {
  count          = var.az_count
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

# --- Flow logs (rejected traffic is what an incident needs) ---

resource "aws_cloudwatch_log_group" "flow" {
  #checkov:skip=CKV_AWS_338:retention is a variable (default 30 days).
  name              = "/golos/${var.prefix}/vpc-flow"
  retention_in_days = var.flow_log_retention_days
  kms_key_id        = var.kms_key_arn
}

data "aws_iam_policy_document" "flow_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "flow" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow.arn}:*"]
  }
}

resource "aws_iam_role" "flow" {
  name               = "${var.prefix}-vpc-flow"
  assume_role_policy = data.aws_iam_policy_document.flow_assume.json
}

resource "aws_iam_role_policy" "flow" {
  name   = "${var.prefix}-vpc-flow"
  role   = aws_iam_role.flow.id
  policy = data.aws_iam_policy_document.flow.json
}

resource "aws_flow_log" "golos" {
  vpc_id          = aws_vpc.golos.id
  traffic_type    = "REJECT"
  log_destination = aws_cloudwatch_log_group.flow.arn
  iam_role_arn    = aws_iam_role.flow.arn
}
