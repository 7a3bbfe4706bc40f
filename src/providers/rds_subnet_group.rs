//! `rds_subnet_group`: the subnets (hence the VPC) an RDS instance may live in.
//!
//! Description and subnets change in place (ModifyDBSubnetGroup); the name replaces.
//! `subnet_ids` is a set: read back sorted, as the engine sorts the desired list.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_rds::types::DbSubnetGroup;
use serde_json::Value;

use super::rds_instance::{
    check_lowercase_name, known_str, list_tags, required_str, sync_tags, tag_list, tags_value,
};
use super::schema::Default;
use super::toolkit::retried_create;
use super::{Attr, Aws, AwsError, ChangeNotes, Cx, Live, Provider, Result, Schema, Ty, aws_err};
use crate::value::{Attrs, Desired, Resolved};

pub struct RdsSubnetGroup;

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new("name", Ty::String, "Subnet group name (lowercase).")
            .required()
            .force_new(),
        Attr::new("description", Ty::String, "Description.").default(Default::Str("Managed by Stackwright")),
        Attr::new(
            "subnet_ids",
            Ty::StringList,
            "Subnets of one VPC, in at least two availability zones (a set: order does not matter).",
        )
        .required(),
        Attr::new("tags", Ty::StringMap, "Tags."),
    ],
    outputs: &["arn", "vpc_id"],
};

#[async_trait]
impl Provider for RdsSubnetGroup {
    fn kind(&self) -> &'static str {
        "rds_subnet_group"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    async fn read(&self, cx: &Cx<'_>, id: &str) -> Result<Option<Live>> {
        let Some(group) = describe(cx.aws, id).await? else {
            return Ok(None);
        };
        let tags = match group.db_subnet_group_arn() {
            Some(arn) => list_tags(cx.aws, arn).await?,
            None => BTreeMap::new(),
        };
        Ok(Some(live_of(&group, &tags)))
    }

    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live> {
        let name = required_str(input, "name")?;
        let sent = cx
            .aws
            .rds()
            .create_db_subnet_group()
            .db_subnet_group_name(name)
            .db_subnet_group_description(description(input))
            .set_subnet_ids(Some(input.string_list("subnet_ids")))
            .set_tags(Some(tag_list(&input.string_map("tags"))))
            .send()
            .await
            .map_err(aws_err);
        retried_create(
            sent,
            "DBSubnetGroupAlreadyExists",
            name,
            created_by_us(cx.aws, name, input),
        )
        .await?;
        cx.created(name);
        self.read(cx, name).await?.ok_or_else(|| {
            AwsError::local(format!(
                "DB subnet group {name} not found right after it was created"
            ))
        })
    }

    async fn update(
        &self,
        cx: &Cx<'_>,
        id: &str,
        input: &Resolved,
        changed: &[String],
    ) -> Result<Live> {
        let group = describe(cx.aws, id)
            .await?
            .ok_or_else(|| AwsError::local(format!("DB subnet group {id} no longer exists")))?;
        let arn = group
            .db_subnet_group_arn()
            .ok_or_else(|| AwsError::local(format!("DB subnet group {id}: AWS reported no ARN")))?;
        let mut tags = list_tags(cx.aws, arn).await?;
        let mut modify = false;
        for name in changed {
            match name.as_str() {
                "description" | "subnet_ids" => modify = true,
                "tags" => {
                    let desired = input.string_map("tags");
                    sync_tags(cx.aws, arn, &tags, &desired).await?;
                    tags = desired;
                }
                other => {
                    return Err(AwsError::local(format!(
                        "rds_subnet_group {id}: {other} cannot change in place (the group must be replaced)"
                    )));
                }
            }
        }
        if !modify {
            return Ok(live_of(&group, &tags));
        }
        // ModifyDBSubnetGroup always takes the full subnet list; its reply is the group as
        // modified, so no second Describe is needed.
        let out = cx
            .aws
            .rds()
            .modify_db_subnet_group()
            .db_subnet_group_name(id)
            .db_subnet_group_description(description(input))
            .set_subnet_ids(Some(input.string_list("subnet_ids")))
            .send()
            .await
            .map_err(aws_err)?;
        let group = out.db_subnet_group().ok_or_else(|| {
            AwsError::local(format!(
                "DB subnet group {id}: ModifyDBSubnetGroup returned no group"
            ))
        })?;
        Ok(live_of(group, &tags))
    }

    async fn delete(&self, cx: &Cx<'_>, id: &str, _prior: &Attrs) -> Result<()> {
        match cx
            .aws
            .rds()
            .delete_db_subnet_group()
            .db_subnet_group_name(id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_db_subnet_group_not_found_fault()) =>
            {
                Ok(())
            }
            Err(e) => Err(aws_err(e)),
        }
    }

    fn check_attr(&self, attr: &str, value: &Value) -> std::result::Result<(), String> {
        match (attr, value) {
            ("name", Value::String(name)) => check_lowercase_name("rds_subnet_group", name),
            _ => Ok(()),
        }
    }

    fn check_change(
        &self,
        _prior: Option<&Attrs>,
        desired: &BTreeMap<String, Desired>,
    ) -> std::result::Result<ChangeNotes, String> {
        if let Some(name) = known_str(desired, "name") {
            check_lowercase_name("rds_subnet_group", name)?;
            if name == "default" {
                return Err(
                    "rds_subnet_group name must not be \"default\" (reserved by AWS)".into(),
                );
            }
        }
        Ok(ChangeNotes::default())
    }
}

fn description(input: &Resolved) -> &str {
    input.str("description").unwrap_or("Managed by Stackwright")
}

/// Whether the existing group `name` has the description and subnets `input` asks for.
async fn created_by_us(aws: &Aws, name: &str, input: &Resolved) -> bool {
    let Ok(Some(group)) = describe(aws, name).await else {
        return false;
    };
    let mut want = input.string_list("subnet_ids");
    want.sort();
    let mut have: Vec<String> = group
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_identifier().map(str::to_owned))
        .collect();
    have.sort();
    group.db_subnet_group_description() == Some(description(input)) && have == want
}

async fn describe(aws: &Aws, name: &str) -> Result<Option<DbSubnetGroup>> {
    match aws
        .rds()
        .describe_db_subnet_groups()
        .db_subnet_group_name(name)
        .send()
        .await
    {
        Ok(out) => Ok(out.db_subnet_groups().first().cloned()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_db_subnet_group_not_found_fault()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws_err(e)),
    }
}

fn live_of(group: &DbSubnetGroup, tags: &BTreeMap<String, String>) -> Live {
    let id = group.db_subnet_group_name().unwrap_or_default().to_owned();
    let mut subnets: Vec<&str> = group
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_identifier())
        .collect();
    subnets.sort_unstable();
    subnets.dedup();
    let mut a = Attrs::new();
    a.insert("name".into(), Value::from(id.clone()));
    if let Some(d) = group.db_subnet_group_description() {
        a.insert("description".into(), Value::from(d));
    }
    a.insert("subnet_ids".into(), Value::from(subnets));
    a.insert("tags".into(), tags_value(tags));
    if let Some(arn) = group.db_subnet_group_arn() {
        a.insert("arn".into(), Value::from(arn));
    }
    if let Some(vpc) = group.vpc_id() {
        a.insert("vpc_id".into(), Value::from(vpc));
    }
    Live {
        id,
        attrs: a,
        private: None,
    }
}
