//! `cloudwatch_log_group`: where the containers' logs go.
//!
//! Retention, the KMS key and tags change in place (PutRetentionPolicy, AssociateKmsKey,
//! TagResource); the name replaces. `retention_days` and `kms_key` are managed only when
//! written: an unset retention is AWS's "never expire", left as it is. Deleting a group
//! deletes its log events, which the plan says in red.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::types::LogGroup;
use serde_json::{Value, json};

use super::toolkit::{read_back, retried_create, tags_value};
use super::{Attr, Aws, AwsError, ChangeNotes, Cx, Live, Provider, Result, Schema, Ty, aws_err};
use crate::value::{Attrs, Resolved};

pub struct CloudwatchLogGroup;

crate::sdk_client!(aws_sdk_cloudwatchlogs);

fn logs(aws: &Aws) -> aws_sdk_cloudwatchlogs::Client {
    aws.client()
}

/// The values PutRetentionPolicy accepts.
const RETENTION_DAYS: &[i64] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new(
            "name",
            Ty::String,
            "Log group name, e.g. \"/ecs/webapp-dev\".",
        )
        .required()
        .force_new(),
        Attr::new(
            "retention_days",
            Ty::Int,
            "Days to keep log events (1, 3, 5, 7, 14, 30, 60, 90, … 3653); unset: never expire.",
        ),
        Attr::new(
            "kms_key",
            Ty::String,
            "ARN of the KMS key that encrypts the events.",
        ),
        Attr::new("tags", Ty::StringMap, "Tags."),
    ],
    outputs: &["arn"],
};

#[async_trait]
impl Provider for CloudwatchLogGroup {
    fn kind(&self) -> &'static str {
        "cloudwatch_log_group"
    }

    fn service(&self) -> &'static str {
        "logs"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn check_attr(&self, attr: &str, value: &Value) -> std::result::Result<(), String> {
        match (attr, value) {
            ("name", Value::String(n)) => {
                if n.is_empty() || n.len() > 512 {
                    return Err(format!(
                        "a log group name has 1 to 512 characters, not {}",
                        n.len()
                    ));
                }
                match n
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || "._-/#".contains(*c)))
                {
                    Some(c) => Err(format!(
                        "{c:?} is not allowed in a log group name: use letters, digits and ._-/#"
                    )),
                    None => Ok(()),
                }
            }
            ("retention_days", Value::Number(n)) => match n.as_i64() {
                Some(d) if RETENTION_DAYS.contains(&d) => Ok(()),
                _ => Err(format!(
                    "{n} is not a retention CloudWatch Logs offers: use one of {}",
                    RETENTION_DAYS
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            },
            ("kms_key", Value::String(k)) if !k.starts_with("arn:") => Err(format!(
                "\"{k}\" is not a key ARN: CloudWatch Logs takes the full arn:aws:kms:… of the key"
            )),
            _ => Ok(()),
        }
    }

    async fn read(&self, cx: &Cx<'_>, id: &str) -> Result<Option<Live>> {
        let Some(group) = describe(cx.aws, id).await? else {
            return Ok(None);
        };
        let arn = arn_of(&group);
        let tags = if cx.wants("tags") {
            Some(list_tags(cx.aws, &arn).await?)
        } else {
            None
        };
        Ok(Some(live_of(&group, tags.as_ref())))
    }

    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live> {
        let name = input
            .str("name")
            .ok_or_else(|| AwsError::local("cloudwatch_log_group: name is required"))?;
        let tags = input.string_map("tags");
        let sent = logs(cx.aws)
            .create_log_group()
            .log_group_name(name)
            .set_kms_key_id(input.str("kms_key").map(str::to_owned))
            .set_tags((!tags.is_empty()).then(|| tags.clone().into_iter().collect()))
            .send()
            .await
            .map(|_| ())
            .map_err(aws_err);
        retried_create(sent, "ResourceAlreadyExistsException", name, async {
            // Ours when it holds exactly what this create sent (the plan saw no group).
            match describe(cx.aws, name).await {
                Ok(Some(g)) => {
                    g.kms_key_id() == input.str("kms_key")
                        && list_tags(cx.aws, &arn_of(&g)).await.ok().as_ref() == Some(&tags)
                }
                _ => false,
            }
        })
        .await?;
        cx.created(name);
        if let Some(days) = input.int("retention_days") {
            put_retention(cx.aws, name, days).await?;
        }
        read_back(self, cx, name).await
    }

    async fn update(
        &self,
        cx: &Cx<'_>,
        id: &str,
        input: &Resolved,
        changed: &[String],
    ) -> Result<Live> {
        let logs = logs(cx.aws);
        for attr in changed {
            match attr.as_str() {
                "retention_days" => match input.int("retention_days") {
                    Some(days) => put_retention(cx.aws, id, days).await?,
                    None => {
                        logs.delete_retention_policy()
                            .log_group_name(id)
                            .send()
                            .await
                            .map_err(aws_err)?;
                    }
                },
                "kms_key" => match input.str("kms_key") {
                    Some(key) => {
                        logs.associate_kms_key()
                            .log_group_name(id)
                            .kms_key_id(key)
                            .send()
                            .await
                            .map_err(aws_err)?;
                    }
                    None => {
                        logs.disassociate_kms_key()
                            .log_group_name(id)
                            .send()
                            .await
                            .map_err(aws_err)?;
                    }
                },
                "tags" => {
                    let group = describe(cx.aws, id).await?.ok_or_else(|| {
                        AwsError::local(format!("log group {id} no longer exists"))
                    })?;
                    let arn = arn_of(&group);
                    let have = list_tags(cx.aws, &arn).await?;
                    sync_tags(cx.aws, &arn, &have, &input.string_map("tags")).await?;
                }
                other => {
                    return Err(AwsError::local(format!(
                        "cloudwatch_log_group {id}: {other} cannot change in place (the group must be replaced)"
                    )));
                }
            }
        }
        read_back(self, cx, id).await
    }

    async fn delete(&self, cx: &Cx<'_>, id: &str, _prior: &Attrs) -> Result<()> {
        match logs(cx.aws)
            .delete_log_group()
            .log_group_name(id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match aws_err(e) {
                e if e.is("ResourceNotFoundException") => Ok(()),
                e => Err(e),
            },
        }
    }

    fn delete_notes(&self, prior: &Attrs) -> ChangeNotes {
        let name = prior.get("name").and_then(Value::as_str).unwrap_or("?");
        ChangeNotes {
            notes: Vec::new(),
            warnings: vec![format!("every log event in {name} is deleted with it")],
        }
    }
}

async fn describe(aws: &Aws, name: &str) -> Result<Option<LogGroup>> {
    // A prefix search: the exact name is among the first results, but page until found.
    let mut pages = logs(aws)
        .describe_log_groups()
        .log_group_name_prefix(name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws_err)?;
        if let Some(g) = page
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name))
        {
            return Ok(Some(g.clone()));
        }
    }
    Ok(None)
}

/// The group's ARN without the `:*` DescribeLogGroups appends (the form tagging takes).
fn arn_of(g: &LogGroup) -> String {
    g.log_group_arn()
        .or(g.arn())
        .unwrap_or_default()
        .trim_end_matches(":*")
        .to_owned()
}

async fn list_tags(aws: &Aws, arn: &str) -> Result<BTreeMap<String, String>> {
    let out = logs(aws)
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(aws_err)?;
    Ok(out
        .tags()
        .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default())
}

async fn sync_tags(
    aws: &Aws,
    arn: &str,
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> Result<()> {
    let (set, unset) = super::toolkit::tag_changes(have, want);
    let set: std::collections::HashMap<String, String> = set
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !set.is_empty() {
        logs(aws)
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(set))
            .send()
            .await
            .map_err(aws_err)?;
    }
    if !unset.is_empty() {
        logs(aws)
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(unset))
            .send()
            .await
            .map_err(aws_err)?;
    }
    Ok(())
}

async fn put_retention(aws: &Aws, name: &str, days: i64) -> Result<()> {
    let days = i32::try_from(days)
        .map_err(|_| AwsError::local(format!("retention_days {days} is out of range")))?;
    logs(aws)
        .put_retention_policy()
        .log_group_name(name)
        .retention_in_days(days)
        .send()
        .await
        .map_err(aws_err)?;
    Ok(())
}

fn live_of(g: &LogGroup, tags: Option<&BTreeMap<String, String>>) -> Live {
    let name = g.log_group_name().unwrap_or_default().to_owned();
    let mut a = Attrs::new();
    a.insert("name".into(), json!(name));
    if let Some(days) = g.retention_in_days() {
        a.insert("retention_days".into(), json!(days));
    }
    if let Some(key) = g.kms_key_id() {
        a.insert("kms_key".into(), json!(key));
    }
    if let Some(tags) = tags {
        a.insert("tags".into(), tags_value(tags));
    }
    a.insert("arn".into(), json!(arn_of(g)));
    Live {
        id: name,
        attrs: a,
        private: None,
    }
}
