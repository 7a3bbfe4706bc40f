# The Terraform side of `cargo bench --bench plan_vs_terraform` (see docs/benchmarks.md).
# The bench copies this file into a temp dir and passes the moto endpoint in
# TF_VAR_endpoint. It must describe the same infrastructure as the Stackwright stack
# the bench generates: 20 versioned, tagged S3 buckets and 50 String SSM parameters.

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
  default = 20
}

variable "parameters" {
  type    = number
  default = 50
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
    s3  = var.endpoint
    ssm = var.endpoint
    sts = var.endpoint
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
  type  = "String"
  value = "v-${count.index + 1}"
}
