//! `data.security_group`: one existing security group owned elsewhere, found by `id`, or by
//! `name` (with `vpc`, since names are unique only within a VPC). Exactly one must match.

use async_trait::async_trait;
use aws_sdk_ec2::types::Filter;
use serde_json::Value;

use super::{Attr, Aws, AwsError, DataSource, Result, Schema, Ty, aws_err};
use crate::value::{Attrs, Resolved};

pub struct SecurityGroup;

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new("id", Ty::String, "Select the group with this id (sg-…)."),
        Attr::new(
            "name",
            Ty::String,
            "Select the group with this name (with `vpc`).",
        ),
        Attr::new(
            "vpc",
            Ty::String,
            "The VPC the named group is in, e.g. \"${data.vpc.main.id}\".",
        ),
    ],
    outputs: &["id", "arn", "name", "vpc_id", "description"],
};

#[async_trait]
impl DataSource for SecurityGroup {
    fn kind(&self) -> &'static str {
        "security_group"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn check_args(&self, set: &[&str]) -> std::result::Result<(), String> {
        match (
            set.contains(&"id"),
            set.contains(&"name"),
            set.contains(&"vpc"),
        ) {
            (true, true, _) => Err("`id` and `name` both select the group: keep one".into()),
            (false, false, _) => Err(
                "needs a selector: id = \"sg-...\", or name = \"...\" with vpc = \"...\"".into(),
            ),
            (false, true, false) => Err(
                "a group name is unique only within its VPC: add vpc = \"${data.vpc.main.id}\""
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    async fn read(&self, aws: &Aws, args: &Resolved) -> Result<Attrs> {
        let mut filters = Vec::new();
        // Filters rather than GroupIds: an unknown id is then "0 matched", not an error.
        for (arg, filter) in [
            ("id", "group-id"),
            ("name", "group-name"),
            ("vpc", "vpc-id"),
        ] {
            if let Some(v) = args.str(arg) {
                filters.push(Filter::builder().name(filter).values(v).build());
            }
        }
        let shown = ["id", "name", "vpc"]
            .iter()
            .filter_map(|k| args.str(k).map(|v| format!("{k} = {v}")))
            .collect::<Vec<_>>()
            .join(", ");
        let out = aws
            .ec2()
            .describe_security_groups()
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(aws_err)?;
        let [g] = out.security_groups() else {
            return Err(AwsError::local(format!(
                "data.security_group must match exactly one group, but {} matched {shown}",
                out.security_groups().len()
            )));
        };
        let mut a = Attrs::new();
        let put = |a: &mut Attrs, k: &str, v: Option<&str>| {
            if let Some(v) = v {
                a.insert(k.to_owned(), Value::from(v));
            }
        };
        put(&mut a, "id", g.group_id());
        put(&mut a, "arn", g.security_group_arn());
        put(&mut a, "name", g.group_name());
        put(&mut a, "vpc_id", g.vpc_id());
        put(&mut a, "description", g.description());
        Ok(a)
    }
}
