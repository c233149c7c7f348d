# golos on AWS: the root module is the example deployment; it wires the modules together and
# holds nothing else. Copy this directory (or call the modules from your own root) for
# another environment: `terraform -chdir=infra/terraform apply -var environment=prod ...`
# with its own state (see docs/deployment.md).
#
#   modules/network        VPC over 2+ zones, public/private subnets, flow logs
#   modules/data           DynamoDB (PITR, TTL, AWS Backup), SQS + DLQs, KMS, secrets, S3 recordings
#   modules/functions      the six Lambda functions, their roles, logs, queues and schedules
#   modules/api            HTTP API (throttled) and the WAF web ACL (on the ALB)
#   modules/media_pool     ECR, ECS on EC2 (host networking), ALB with TLS, autoscaling
#   modules/sip_front      Kamailio dispatcher with the trunk's one Elastic IP
#   modules/observability  alarms, dashboard, budget, SNS topic
#
# tests/tests/infra.rs reads these files and fails when the code and this disagree.

locals {
  prefix = "golos-${var.environment}"
  # The values golos reads from its environment in AWS mode (docs/configuration.md), for
  # every function and every worker; also the golos_environment output.
  golos_environment = merge(
    {
      GOLOS_BACKEND        = "aws"
      GOLOS_AWS_REGION     = var.region
      GOLOS_TABLE          = module.data.table_name
      GOLOS_QUEUE_PREFIX   = local.prefix
      GOLOS_KMS_KEY_ID     = module.data.kms_key_id
      GOLOS_SECRETS_PREFIX = local.prefix
    },
    # The workers connect under the same exceptions the API validated agents against.
    var.egress_allow == "" ? {} : { GOLOS_EGRESS_ALLOW = var.egress_allow },
  )
}

module "network" {
  source      = "./modules/network"
  prefix      = local.prefix
  kms_key_arn = module.data.kms_key_arn
}

module "data" {
  source              = "./modules/data"
  prefix              = local.prefix
  deletion_protection = var.environment == "prod"
}

module "functions" {
  source                     = "./modules/functions"
  prefix                     = local.prefix
  golos_environment          = local.golos_environment
  lambda_package_dir         = var.lambda_package_dir
  table_arn                  = module.data.table_arn
  kms_key_arn                = module.data.kms_key_arn
  queue_arns                 = module.data.queue_arns
  dead_letter_arns           = module.data.dead_letter_arns
  secret_arns                = module.data.secret_arns
  yookassa_allowed_ips       = var.yookassa_allowed_ips
  reconcile_call_window_days = var.reconcile_call_window_days
  log_retention_days         = var.log_retention_days
}

module "media_pool" {
  source                  = "./modules/media_pool"
  prefix                  = local.prefix
  golos_environment       = local.golos_environment
  vpc_id                  = module.network.vpc_id
  vpc_cidr                = module.network.vpc_cidr
  public_subnet_ids       = module.network.public_subnet_ids
  table_arn               = module.data.table_arn
  kms_key_arn             = module.data.kms_key_arn
  queue_arns              = module.data.queue_arns
  dead_letter_arns        = module.data.dead_letter_arns
  recordings_bucket_arn   = module.data.recordings_bucket_arn
  image_tag               = var.worker_image_tag
  certificate_arn         = var.certificate_arn
  trunk_media_cidrs       = var.trunk_media_cidrs
  min_tasks               = var.media_min_tasks
  max_tasks               = var.media_max_tasks
  log_retention_days      = var.log_retention_days
  alb_deletion_protection = var.environment == "prod"
}

module "api" {
  source             = "./modules/api"
  prefix             = local.prefix
  invoke_arns        = module.functions.invoke_arns
  function_names     = module.functions.function_names
  alias_name         = module.functions.alias_name
  kms_key_arn        = module.data.kms_key_arn
  alb_arn            = module.media_pool.alb_arn
  log_retention_days = var.log_retention_days
}

module "sip_front" {
  source                 = "./modules/sip_front"
  prefix                 = local.prefix
  vpc_id                 = module.network.vpc_id
  public_subnet_id       = module.network.public_subnet_ids[0]
  cluster_name           = module.media_pool.cluster_name
  cluster_arn            = module.media_pool.cluster_arn
  image                  = var.sip_front_image
  workers_srv_name       = module.media_pool.workers_srv_name
  trunk_signalling_cidrs = var.trunk_signalling_cidrs
  kms_key_arn            = module.data.kms_key_arn
  log_retention_days     = var.log_retention_days
}

module "observability" {
  source             = "./modules/observability"
  prefix             = local.prefix
  kms_key_arn        = module.data.kms_key_arn
  alarm_emails       = var.alarm_emails
  monthly_budget_usd = var.monthly_budget_usd
  spend_anomaly_usd  = var.spend_anomaly_usd
  table_name         = module.data.table_name
  function_names     = module.functions.function_names
  dead_letter_names  = module.data.dead_letter_names
  api_id             = module.api.api_id
  api_stage          = module.api.stage_name
  cluster_name       = module.media_pool.cluster_name
  service_name       = module.media_pool.service_name
  alb_arn_suffix     = module.media_pool.alb_arn_suffix
}
