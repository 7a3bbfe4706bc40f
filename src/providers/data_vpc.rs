//! `data.vpc`: one existing VPC, found by `default = true`, `id` or `tags` (all given
//! selectors must match). Exactly one VPC must match, else the error says how many did
//! and with which filter.

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, Vpc as Ec2Vpc};
use serde_json::Value;

use super::{Attr, Aws, AwsError, DataSource, Result, Schema, Ty, aws_err};
use crate::value::{Attrs, Resolved};

pub struct Vpc;

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new(
            "default",
            Ty::Bool,
            "Select the region's default VPC (true) or only non-default ones (false).",
        ),
        Attr::new("id", Ty::String, "Select the VPC with this id."),
        Attr::new(
            "tags",
            Ty::StringMap,
            "Select the VPC carrying all these tags.",
        ),
    ],
    outputs: &["id", "cidr_block", "arn", "is_default"],
};

/// How many matching ids an error lists at most.
const SHOWN: usize = 5;

#[async_trait]
impl DataSource for Vpc {
    fn kind(&self) -> &'static str {
        "vpc"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn check_args(&self, set: &[&str]) -> std::result::Result<(), String> {
        if set.contains(&"default") && set.contains(&"id") {
            return Err(
                "`default` and `id` both select the VPC: keep one (an id names exactly one VPC)"
                    .into(),
            );
        }
        if set.is_empty() {
            return Err(
                "needs a selector: default = true, id = \"vpc-...\" or tags = { ... }".into(),
            );
        }
        Ok(())
    }

    async fn read(&self, aws: &Aws, args: &Resolved) -> Result<Attrs> {
        let mut filters = Vec::new();
        if let Some(default) = args.bool("default") {
            filters.push(("isDefault".to_owned(), default.to_string()));
        }
        if let Some(id) = args.str("id") {
            // A filter rather than VpcIds: an unknown id then counts as 0 matches instead of
            // failing with InvalidVpcID.NotFound.
            filters.push(("vpc-id".to_owned(), id.to_owned()));
        }
        for (k, v) in args.string_map("tags") {
            filters.push((format!("tag:{k}"), v));
        }
        if filters.is_empty() {
            return Err(AwsError::local(
                "data.vpc needs a selector: default = true, id = \"vpc-...\" or tags = { ... }",
            ));
        }
        let shown = filters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");

        let mut pages = aws
            .ec2()
            .describe_vpcs()
            .set_filters(Some(
                filters
                    .into_iter()
                    .map(|(name, value)| Filter::builder().name(name).values(value).build())
                    .collect(),
            ))
            .into_paginator()
            .items()
            .send();
        let mut vpcs: Vec<Ec2Vpc> = Vec::new();
        while let Some(vpc) = pages.try_next().await.map_err(aws_err)? {
            vpcs.push(vpc);
        }
        let [vpc] = vpcs.as_slice() else {
            let mut ids: Vec<&str> = vpcs.iter().filter_map(|v| v.vpc_id()).collect();
            ids.sort_unstable();
            let listed = if ids.is_empty() {
                String::new()
            } else {
                let more = ids.len().saturating_sub(SHOWN);
                let mut s = format!(" ({}", ids[..ids.len().min(SHOWN)].join(", "));
                if more > 0 {
                    s.push_str(&format!(" and {more} more"));
                }
                s.push(')');
                s
            };
            return Err(AwsError::local(format!(
                "data.vpc must match exactly one VPC, but {} matched the filter {shown}{listed}",
                vpcs.len()
            )));
        };

        let id = vpc.vpc_id().unwrap_or_default();
        let mut out = Attrs::new();
        out.insert("id".into(), Value::from(id));
        if let Some(cidr) = vpc.cidr_block() {
            out.insert("cidr_block".into(), Value::from(cidr));
        }
        out.insert(
            "is_default".into(),
            Value::from(vpc.is_default().unwrap_or(false)),
        );
        if let (Some(owner), Some(region)) = (vpc.owner_id(), aws.config.region()) {
            let region = region.as_ref();
            out.insert(
                "arn".into(),
                Value::from(format!(
                    "arn:{}:ec2:{region}:{owner}:vpc/{id}",
                    partition(region)
                )),
            );
        }
        Ok(out)
    }
}

fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}
