# The Terraform side of `cargo bench --bench plan_vs_terraform` (see docs/benchmarks.md and
# docs/performance.md). The bench copies this file into a temp dir per size and passes the
# moto endpoint and the counts in TF_VAR_*. It must describe the same infrastructure as the
# Stackwright stack the bench generates for that size:
#   buckets         versioned, tagged S3 buckets (aws_s3_bucket + aws_s3_bucket_versioning)
#   parameters      SSM parameters, every fifth a SecureString
#   security_groups security groups in the default VPC, one ingress rule each
#   log_groups      CloudWatch log groups with a 30-day retention
#   alarms          single-metric CloudWatch alarms
# edit_first = true changes the first parameter's value: the bench's "one change" plan.

terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "= 5.100.0"
    }
  }
}

variable "endpoint" {
  type        = string
  description = "The moto endpoint, e.g. http://127.0.0.1:5000"
}

variable "buckets" {
  type    = number
  default = 7
}

variable "parameters" {
  type    = number
  default = 42
}

variable "security_groups" {
  type    = number
  default = 7
}

variable "log_groups" {
  type    = number
  default = 7
}

variable "alarms" {
  type    = number
  default = 7
}

variable "secret" {
  type      = string
  sensitive = true
  default   = "bench-secret"
}

variable "edit_first" {
  type    = bool
  default = false
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  s3_use_path_style           = true
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  skip_region_validation      = true

  endpoints {
    s3         = var.endpoint
    ssm        = var.endpoint
    sts        = var.endpoint
    ec2        = var.endpoint
    logs       = var.endpoint
    cloudwatch = var.endpoint
  }
}

resource "aws_s3_bucket" "b" {
  count  = var.buckets
  bucket = "tf-bench-${count.index + 1}"
  tags = {
    bench = "plan_vs_terraform"
    index = tostring(count.index + 1)
  }
}

resource "aws_s3_bucket_versioning" "b" {
  count  = var.buckets
  bucket = aws_s3_bucket.b[count.index].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_ssm_parameter" "p" {
  count = var.parameters
  name  = "/tfbench/p${count.index + 1}"
  # At 2,000 resources the provider retried two PutParameter calls that moto had already
  # carried out (cause not diagnosed), and the apply failed with ParameterAlreadyExists;
  # overwrite makes such a retry harmless. It changes nothing the plans read.
  overwrite = true
  type      = count.index % 5 == 4 ? "SecureString" : "String"
  value = (count.index % 5 == 4 ? var.secret
  : count.index == 0 && var.edit_first ? "v-1-edited" : "v-${count.index + 1}")
}

resource "aws_security_group" "g" {
  count       = var.security_groups
  name        = "tf-bench-${count.index + 1}"
  description = "bench group ${count.index + 1}"
  ingress {
    description = "https"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["10.0.0.0/8"]
  }
}

resource "aws_cloudwatch_log_group" "l" {
  count             = var.log_groups
  name              = "/tfbench/l${count.index + 1}"
  retention_in_days = 30
}

resource "aws_cloudwatch_metric_alarm" "a" {
  count               = var.alarms
  alarm_name          = "tf-bench-${count.index + 1}"
  namespace           = "Bench"
  metric_name         = "Errors${count.index + 1}"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 10
  comparison_operator = "GreaterThanThreshold"
}
