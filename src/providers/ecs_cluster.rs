//! `ecs_cluster`: where the Fargate services run.
//!
//! The id is the name the stack gives it. CreateCluster is idempotent on a name in AWS (a
//! second call answers with the existing cluster), so a create whose reply was lost is
//! simply repeated. Container Insights and tags change in place (UpdateClusterSettings,
//! TagResource); a deleted cluster stays visible as INACTIVE for a while, which reads as
//! gone. The engine deletes the services (they reference the cluster) before it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ecs::types::{Cluster, ClusterField, ClusterSetting, ClusterSettingName, Tag};
use serde_json::{Value, json};

use super::toolkit::{read_back, tag_changes, tags_value};
use super::{Attr, Aws, AwsError, Cx, Live, Provider, Result, Schema, Ty, aws_err};
use crate::value::{Attrs, Resolved};

pub struct EcsCluster;

crate::sdk_client!(aws_sdk_ecs);

pub(crate) fn ecs(aws: &Aws) -> aws_sdk_ecs::Client {
    aws.client()
}

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new(
            "name",
            Ty::String,
            "Cluster name: up to 255 letters, digits, hyphens and underscores.",
        )
        .required()
        .force_new(),
        Attr::new(
            "container_insights",
            Ty::Enum(&["enabled", "enhanced", "disabled"]),
            "CloudWatch Container Insights (metrics per task); unset: the account's default.",
        ),
        Attr::new("tags", Ty::StringMap, "Tags."),
    ],
    outputs: &["arn"],
};

#[async_trait]
impl Provider for EcsCluster {
    fn kind(&self) -> &'static str {
        "ecs_cluster"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn check_attr(&self, attr: &str, value: &Value) -> std::result::Result<(), String> {
        match (attr, value) {
            ("name", Value::String(n)) => check_name("a cluster", n),
            _ => Ok(()),
        }
    }

    async fn read(&self, cx: &Cx<'_>, id: &str) -> Result<Option<Live>> {
        Ok(describe(cx.aws, id).await?.map(|c| live_of(&c)))
    }

    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live> {
        let name = input
            .str("name")
            .ok_or_else(|| AwsError::local("ecs_cluster: name is required"))?;
        ecs(cx.aws)
            .create_cluster()
            .cluster_name(name)
            .set_settings(settings(input))
            .set_tags(Some(ecs_tags(&input.string_map("tags"))).filter(|t| !t.is_empty()))
            .send()
            .await
            .map_err(aws_err)?;
        cx.created(name);
        read_back(self, cx, name).await
    }

    async fn update(
        &self,
        cx: &Cx<'_>,
        id: &str,
        input: &Resolved,
        changed: &[String],
    ) -> Result<Live> {
        for attr in changed {
            match attr.as_str() {
                "container_insights" => {
                    if let Some(s) = settings(input) {
                        ecs(cx.aws)
                            .update_cluster_settings()
                            .cluster(id)
                            .set_settings(Some(s))
                            .send()
                            .await
                            .map_err(aws_err)?;
                    }
                }
                "tags" => {
                    let c = describe(cx.aws, id)
                        .await?
                        .ok_or_else(|| AwsError::local(format!("cluster {id} no longer exists")))?;
                    let arn = c.cluster_arn().unwrap_or_default();
                    sync_tags(cx.aws, arn, &tags_of(c.tags()), &input.string_map("tags")).await?;
                }
                other => {
                    return Err(AwsError::local(format!(
                        "ecs_cluster {id}: {other} cannot change in place (the cluster must be replaced)"
                    )));
                }
            }
        }
        read_back(self, cx, id).await
    }

    async fn delete(&self, cx: &Cx<'_>, id: &str, _prior: &Attrs) -> Result<()> {
        // Services just deleted may still count for a moment (ClusterContainsServices…);
        // AWS drains them within seconds.
        let aws = cx.aws;
        super::wait_for(cx, &format!("cluster {id} to be empty"), || async move {
            match ecs(aws).delete_cluster().cluster(id).send().await {
                Ok(_) => Ok(None),
                Err(e) => match aws_err(e) {
                    e if e.is("ClusterNotFoundException") => Ok(None),
                    e if e.is("ClusterContainsServicesException")
                        || e.is("ClusterContainsTasksException") =>
                    {
                        Ok(Some("still holds services or tasks".to_owned()))
                    }
                    e => Err(e),
                },
            }
        })
        .await
    }
}

/// ECS's rule for cluster and service names.
pub(crate) fn check_name(what: &str, n: &str) -> std::result::Result<(), String> {
    if n.is_empty() || n.len() > 255 {
        return Err(format!(
            "{what} name has 1 to 255 characters, not {}",
            n.len()
        ));
    }
    match n
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        Some(c) => Err(format!(
            "{c:?} is not allowed in {what} name: use letters, digits, - and _"
        )),
        None => Ok(()),
    }
}

fn settings(input: &Resolved) -> Option<Vec<ClusterSetting>> {
    input.str("container_insights").map(|v| {
        vec![
            ClusterSetting::builder()
                .name(ClusterSettingName::ContainerInsights)
                .value(v)
                .build(),
        ]
    })
}

/// The cluster by name or ARN; `None` when absent or INACTIVE (deleted).
pub(crate) async fn describe(aws: &Aws, id: &str) -> Result<Option<Cluster>> {
    let out = ecs(aws)
        .describe_clusters()
        .clusters(id)
        .include(ClusterField::Tags)
        .include(ClusterField::Settings)
        .send()
        .await
        .map_err(aws_err)?;
    Ok(out
        .clusters()
        .iter()
        .find(|c| c.status() == Some("ACTIVE"))
        .cloned())
}

fn live_of(c: &Cluster) -> Live {
    let name = c.cluster_name().unwrap_or_default().to_owned();
    let mut a = Attrs::new();
    a.insert("name".into(), json!(name));
    if let Some(s) = c
        .settings()
        .iter()
        .find(|s| s.name() == Some(&ClusterSettingName::ContainerInsights))
        .and_then(|s| s.value())
    {
        a.insert("container_insights".into(), json!(s));
    }
    a.insert("tags".into(), tags_value(&tags_of(c.tags())));
    a.insert("arn".into(), json!(c.cluster_arn().unwrap_or_default()));
    Live {
        id: name,
        attrs: a,
        private: None,
    }
}

pub(crate) fn ecs_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub(crate) fn tags_of(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// TagResource / UntagResource to take `have` to `want` (ECS tags by ARN).
pub(crate) async fn sync_tags(
    aws: &Aws,
    arn: &str,
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> Result<()> {
    let (set, unset) = tag_changes(have, want);
    if !set.is_empty() {
        ecs(aws)
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(
                set.into_iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .send()
            .await
            .map_err(aws_err)?;
    }
    if !unset.is_empty() {
        ecs(aws)
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(unset))
            .send()
            .await
            .map_err(aws_err)?;
    }
    Ok(())
}
