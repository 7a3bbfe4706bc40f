//! `data.subnets`: the subnets of a VPC, optionally narrowed by tags. `ids` is sorted, so
//! it compares equal however AWS orders its reply; `availability_zones` lists the distinct
//! zones those subnets cover, sorted.

use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_sdk_ec2::types::Filter;
use serde_json::Value;

use super::{Attr, Aws, AwsError, DataSource, Result, Schema, Ty, aws_err};
use crate::value::{Attrs, Resolved};

pub struct Subnets;

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new("vpc", Ty::String, "Id of the VPC whose subnets to list.").required(),
        Attr::new(
            "tags",
            Ty::StringMap,
            "Only subnets carrying all these tags.",
        ),
    ],
    outputs: &["ids", "availability_zones"],
};

#[async_trait]
impl DataSource for Subnets {
    fn kind(&self) -> &'static str {
        "subnets"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    async fn read(&self, aws: &Aws, args: &Resolved) -> Result<Attrs> {
        let vpc = args
            .str("vpc")
            .ok_or_else(|| AwsError::local("data.subnets: vpc is required"))?;
        let mut filters = vec![("vpc-id".to_owned(), vpc.to_owned())];
        for (k, v) in args.string_map("tags") {
            filters.push((format!("tag:{k}"), v));
        }
        let shown = filters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");

        let mut pages = aws
            .ec2()
            .describe_subnets()
            .set_filters(Some(
                filters
                    .into_iter()
                    .map(|(name, value)| Filter::builder().name(name).values(value).build())
                    .collect(),
            ))
            .into_paginator()
            .items()
            .send();
        let mut ids = BTreeSet::new();
        let mut zones = BTreeSet::new();
        while let Some(subnet) = pages.try_next().await.map_err(aws_err)? {
            if let Some(id) = subnet.subnet_id() {
                ids.insert(id.to_owned());
            }
            if let Some(az) = subnet.availability_zone() {
                zones.insert(az.to_owned());
            }
        }
        if ids.is_empty() {
            return Err(AwsError::local(format!(
                "data.subnets: no subnet matched the filter {shown}"
            )));
        }
        let mut out = Attrs::new();
        out.insert(
            "ids".into(),
            Value::from(ids.into_iter().collect::<Vec<_>>()),
        );
        out.insert(
            "availability_zones".into(),
            Value::from(zones.into_iter().collect::<Vec<_>>()),
        );
        Ok(out)
    }
}
