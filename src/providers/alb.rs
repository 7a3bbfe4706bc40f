//! `alb`: an Application Load Balancer, and what the four ELBv2 kinds share — the client,
//! naming rules, tags and finding what an interrupted create left behind.
//!
//! The id is the ARN, which AWS assigns. Every create tags its object with the address
//! and the state's lineage ([`ADDRESS_TAG`], [`LINEAGE_TAG`]); a create whose reply was
//! lost, or that was killed before the ARN was recorded, is found by those tags and
//! adopted. Subnets and security groups are sets; idle timeout, deletion protection,
//! invalid-header dropping and access logs are load-balancer attributes
//! (ModifyLoadBalancerAttributes), read back with AWS's defaults filled in. A create waits
//! until the load balancer is `active`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    LoadBalancer, LoadBalancerAttribute, LoadBalancerSchemeEnum, LoadBalancerTypeEnum, Tag,
};
use serde_json::{Value, json};

use super::schema::Default;
use super::toolkit::{ADDRESS_TAG, LINEAGE_TAG, read_back, tags_value};
use super::{Attr, Aws, AwsError, Cx, Live, Provider, Result, Schema, Ty, aws_err};
use crate::value::{Attrs, Desired, Resolved};

pub struct Alb;

crate::sdk_client!(aws_sdk_elasticloadbalancingv2);

pub(super) fn elbv2(aws: &Aws) -> aws_sdk_elasticloadbalancingv2::Client {
    aws.client()
}

static ACCESS_LOGS: &[Attr] = &[
    Attr::new("bucket", Ty::String, "S3 bucket that receives the logs.").required(),
    Attr::new("prefix", Ty::String, "Key prefix inside the bucket."),
    Attr::new(
        "enabled",
        Ty::Bool,
        "Whether logs are written (default true).",
    )
    .default(Default::Bool(true)),
];

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new(
            "name",
            Ty::String,
            "Load balancer name: up to 32 letters, digits and hyphens.",
        )
        .required()
        .force_new(),
        Attr::new(
            "internal",
            Ty::Bool,
            "Internal (private addresses only) instead of internet-facing.",
        )
        .force_new()
        .default(Default::Bool(false)),
        Attr::new(
            "subnets",
            Ty::StringList,
            "Subnet ids in at least two zones, e.g. \"${data.subnets.default.ids}\".",
        )
        .required(),
        Attr::new(
            "security_groups",
            Ty::StringList,
            "Security group ids (default: the VPC's default group).",
        ),
        Attr::new(
            "idle_timeout",
            Ty::Int,
            "Seconds a connection may stay idle (1-4000).",
        )
        .default(Default::Int(60)),
        Attr::new(
            "deletion_protection",
            Ty::Bool,
            "Refuse deletes until turned off.",
        )
        .default(Default::Bool(false)),
        Attr::new(
            "drop_invalid_header_fields",
            Ty::Bool,
            "Drop HTTP headers with invalid names instead of forwarding them.",
        )
        .default(Default::Bool(false)),
        Attr::new(
            "access_logs",
            Ty::Table(ACCESS_LOGS),
            "Access logs to S3: { bucket = \"...\", prefix = \"...\" }.",
        ),
        Attr::new("tags", Ty::StringMap, "Tags."),
    ],
    outputs: &["arn", "arn_suffix", "dns_name", "zone_id", "vpc_id"],
};

#[async_trait]
impl Provider for Alb {
    fn kind(&self) -> &'static str {
        "alb"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    /// AWS assigns the ARN.
    fn id_for(&self, _desired: &BTreeMap<String, Desired>) -> Option<String> {
        None
    }

    fn canonical(&self, attr: &str, v: &Value) -> Value {
        match (attr, v) {
            ("subnets" | "security_groups", Value::Array(items)) => {
                let mut items = items.clone();
                items.sort_by_key(|i| i.to_string());
                items.dedup();
                Value::Array(items)
            }
            ("access_logs", Value::Object(m)) => {
                let mut m = m.clone();
                if m.get("prefix").and_then(Value::as_str) == Some("") {
                    m.remove("prefix");
                }
                m.entry("enabled").or_insert(Value::Bool(true));
                Value::Object(m)
            }
            _ => v.clone(),
        }
    }

    fn check_attr(&self, attr: &str, value: &Value) -> std::result::Result<(), String> {
        match (attr, value) {
            ("name", Value::String(n)) => check_name("a load balancer", n),
            ("idle_timeout", Value::Number(n)) => match n.as_i64() {
                Some(1..=4000) => Ok(()),
                _ => Err(format!(
                    "idle_timeout {n} is out of range: use 1 to 4000 seconds"
                )),
            },
            ("subnets", Value::Array(items)) if items.len() < 2 => Err(format!(
                "an Application Load Balancer needs subnets in at least two zones, found {}; use \"${{data.subnets.NAME.ids}}\"",
                items.len()
            )),
            _ => Ok(()),
        }
    }

    async fn find_created(
        &self,
        cx: &Cx<'_>,
        address: &str,
        lineage: &str,
    ) -> Result<Option<Live>> {
        let arns = all_load_balancers(cx.aws)
            .await?
            .iter()
            .filter_map(|lb| lb.load_balancer_arn().map(str::to_owned))
            .collect::<Vec<_>>();
        match find_tagged(cx.aws, &arns, address, lineage).await? {
            Some(arn) => self.read(cx, &arn).await,
            None => Ok(None),
        }
    }

    async fn read(&self, cx: &Cx<'_>, id: &str) -> Result<Option<Live>> {
        let Some(lb) = describe(cx.aws, id).await? else {
            return Ok(None);
        };
        let attrs = if [
            "idle_timeout",
            "deletion_protection",
            "drop_invalid_header_fields",
            "access_logs",
        ]
        .iter()
        .any(|a| cx.wants(a))
        {
            Some(lb_attributes(cx.aws, id).await?)
        } else {
            None
        };
        let tags = if cx.wants("tags") {
            Some(user_tags(&tags_of(cx.aws, id).await?))
        } else {
            None
        };
        Ok(Some(live_of(&lb, attrs.as_ref(), tags.as_ref())))
    }

    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live> {
        let name = input
            .str("name")
            .ok_or_else(|| AwsError::local("alb: name is required"))?;
        let scheme = if input.bool("internal").unwrap_or(false) {
            LoadBalancerSchemeEnum::Internal
        } else {
            LoadBalancerSchemeEnum::InternetFacing
        };
        let sg = input.string_list("security_groups");
        let sent = elbv2(cx.aws)
            .create_load_balancer()
            .name(name)
            .r#type(LoadBalancerTypeEnum::Application)
            .scheme(scheme)
            .set_subnets(Some(input.string_list("subnets")))
            .set_security_groups((!sg.is_empty()).then_some(sg))
            .set_tags(Some(create_tags(cx, input)))
            .send()
            .await
            .map_err(aws_err);
        let arn = match sent {
            Ok(out) => out
                .load_balancers()
                .first()
                .and_then(|lb| lb.load_balancer_arn())
                .ok_or_else(|| {
                    AwsError::local(format!("CreateLoadBalancer {name} returned no ARN"))
                })?
                .to_owned(),
            // A retry after a lost reply (with other settings than AWS's idempotent
            // match) meets the name taken: ours only when it carries this address and lineage.
            Err(e) if e.is("DuplicateLoadBalancerName") => match ours_by_name(cx, name).await? {
                Some(arn) => arn,
                None => return Err(e),
            },
            Err(e) => return Err(e),
        };
        cx.created(&arn);
        let set = attribute_updates(input, None);
        if !set.is_empty() {
            modify_attributes(cx.aws, &arn, set).await?;
        }
        wait_active(cx, &arn).await?;
        read_back(self, cx, &arn).await
    }

    async fn update(
        &self,
        cx: &Cx<'_>,
        id: &str,
        input: &Resolved,
        changed: &[String],
    ) -> Result<Live> {
        let client = elbv2(cx.aws);
        let mut attrs_changed = Vec::new();
        for attr in changed {
            match attr.as_str() {
                "subnets" => {
                    client
                        .set_subnets()
                        .load_balancer_arn(id)
                        .set_subnets(Some(input.string_list("subnets")))
                        .send()
                        .await
                        .map_err(aws_err)?;
                }
                "security_groups" => {
                    client
                        .set_security_groups()
                        .load_balancer_arn(id)
                        .set_security_groups(Some(input.string_list("security_groups")))
                        .send()
                        .await
                        .map_err(aws_err)?;
                }
                "idle_timeout"
                | "deletion_protection"
                | "drop_invalid_header_fields"
                | "access_logs" => attrs_changed.push(attr.as_str()),
                "tags" => {
                    let have = user_tags(&tags_of(cx.aws, id).await?);
                    sync_tags(cx.aws, id, &have, &input.string_map("tags")).await?;
                }
                other => {
                    return Err(AwsError::local(format!(
                        "alb {id}: {other} cannot change in place (the load balancer must be replaced)"
                    )));
                }
            }
        }
        if !attrs_changed.is_empty() {
            let set = attribute_updates(input, Some(&attrs_changed));
            modify_attributes(cx.aws, id, set).await?;
        }
        read_back(self, cx, id).await
    }

    async fn delete(&self, cx: &Cx<'_>, id: &str, _prior: &Attrs) -> Result<()> {
        match elbv2(cx.aws)
            .delete_load_balancer()
            .load_balancer_arn(id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) => match aws_err(e) {
                e if e.is("LoadBalancerNotFound") => return Ok(()),
                e if e.is("OperationNotPermitted") => {
                    return Err(AwsError::local(format!(
                        "{id} has deletion protection on: set deletion_protection = false and apply before destroying it ({e})"
                    )));
                }
                e => return Err(e),
            },
        }
        // Deleting releases the network interfaces a little later; its security groups
        // wait that out themselves (DependencyViolation).
        let aws = cx.aws;
        super::wait_for(
            cx,
            &format!("load balancer {id} to be deleted"),
            || async move { Ok(describe(aws, id).await?.map(|_| "deleting".to_owned())) },
        )
        .await
    }
}

/// AWS's rule for load balancer and target group names.
pub(super) fn check_name(what: &str, n: &str) -> std::result::Result<(), String> {
    if n.is_empty() || n.len() > 32 {
        return Err(format!(
            "{what} name has 1 to 32 characters, not {} (\"{n}\")",
            n.len()
        ));
    }
    if let Some(c) = n
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(format!(
            "{c:?} is not allowed in {what} name: use letters, digits and hyphens"
        ));
    }
    if n.starts_with('-') || n.ends_with('-') {
        return Err(format!(
            "\"{n}\" starts or ends with a hyphen, which AWS refuses: drop it"
        ));
    }
    if n.to_ascii_lowercase().starts_with("internal-") {
        return Err(format!(
            "\"{n}\" starts with internal-, which AWS reserves: choose another name"
        ));
    }
    Ok(())
}

/// The part of an ELBv2 ARN CloudWatch uses as a dimension: `app/name/id` of
/// `arn:…:loadbalancer/app/name/id`, `targetgroup/name/id` of a target group.
pub(super) fn arn_suffix(arn: &str) -> String {
    match arn.split_once(":loadbalancer/") {
        Some((_, s)) => s.to_owned(),
        None => arn
            .rsplit_once(':')
            .map(|(_, s)| s.to_owned())
            .unwrap_or_default(),
    }
}

/// The stack's tags plus the ownership tags, for a create.
pub(super) fn create_tags(cx: &Cx<'_>, input: &Resolved) -> Vec<Tag> {
    let mut tags: Vec<Tag> = input
        .string_map("tags")
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    tags.push(Tag::builder().key(ADDRESS_TAG).value(cx.address).build());
    tags.push(Tag::builder().key(LINEAGE_TAG).value(cx.lineage).build());
    tags
}

/// Every tag of one resource, ownership tags included.
pub(super) async fn tags_of(aws: &Aws, arn: &str) -> Result<BTreeMap<String, String>> {
    Ok(tags_of_many(aws, &[arn.to_owned()])
        .await?
        .remove(arn)
        .unwrap_or_default())
}

/// Tags of many resources, 20 ARNs a call (DescribeTags' limit).
async fn tags_of_many(
    aws: &Aws,
    arns: &[String],
) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let mut out = BTreeMap::new();
    for chunk in arns.chunks(20) {
        let page = elbv2(aws)
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(aws_err)?;
        for d in page.tag_descriptions() {
            let tags = d
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
                .collect();
            out.insert(d.resource_arn().unwrap_or_default().to_owned(), tags);
        }
    }
    Ok(out)
}

/// The stack's tags: everything but Stackwright's ownership tags.
pub(super) fn user_tags(all: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    all.iter()
        .filter(|(k, _)| !k.starts_with("stackwright:"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The first of `arns` carrying this address and lineage.
pub(super) async fn find_tagged(
    aws: &Aws,
    arns: &[String],
    address: &str,
    lineage: &str,
) -> Result<Option<String>> {
    let tags = tags_of_many(aws, arns).await?;
    Ok(arns
        .iter()
        .find(|a| {
            tags.get(*a).is_some_and(|t| {
                t.get(ADDRESS_TAG).map(String::as_str) == Some(address)
                    && t.get(LINEAGE_TAG).map(String::as_str) == Some(lineage)
            })
        })
        .cloned())
}

pub(super) async fn sync_tags(
    aws: &Aws,
    arn: &str,
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> Result<()> {
    let (set, unset) = super::toolkit::tag_changes(have, want);
    let set: Vec<Tag> = set
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    if !set.is_empty() {
        elbv2(aws)
            .add_tags()
            .resource_arns(arn)
            .set_tags(Some(set))
            .send()
            .await
            .map_err(aws_err)?;
    }
    if !unset.is_empty() {
        elbv2(aws)
            .remove_tags()
            .resource_arns(arn)
            .set_tag_keys(Some(unset))
            .send()
            .await
            .map_err(aws_err)?;
    }
    Ok(())
}

/// Every load balancer of the account and region (pages followed).
pub(super) async fn all_load_balancers(aws: &Aws) -> Result<Vec<LoadBalancer>> {
    let mut out = Vec::new();
    let mut pages = elbv2(aws).describe_load_balancers().into_paginator().send();
    while let Some(page) = pages.next().await {
        out.extend(page.map_err(aws_err)?.load_balancers().iter().cloned());
    }
    Ok(out)
}

async fn describe(aws: &Aws, arn: &str) -> Result<Option<LoadBalancer>> {
    match elbv2(aws)
        .describe_load_balancers()
        .load_balancer_arns(arn)
        .send()
        .await
    {
        Ok(out) => Ok(out.load_balancers().first().cloned()),
        Err(e) => match aws_err(e) {
            e if e.is("LoadBalancerNotFound") || e.is("ValidationError") => Ok(None),
            e => Err(e),
        },
    }
}

async fn ours_by_name(cx: &Cx<'_>, name: &str) -> Result<Option<String>> {
    let out = elbv2(cx.aws)
        .describe_load_balancers()
        .names(name)
        .send()
        .await
        .map_err(aws_err)?;
    let arns: Vec<String> = out
        .load_balancers()
        .iter()
        .filter_map(|lb| lb.load_balancer_arn().map(str::to_owned))
        .collect();
    find_tagged(cx.aws, &arns, cx.address, cx.lineage).await
}

async fn wait_active(cx: &Cx<'_>, arn: &str) -> Result<()> {
    let aws = cx.aws;
    super::wait_for(
        cx,
        &format!("load balancer {arn} to be active"),
        || async move {
            let lb = describe(aws, arn).await?.ok_or_else(|| {
                AwsError::local(format!(
                    "load balancer {arn} disappeared while it was created"
                ))
            })?;
            let state = lb
                .state()
                .and_then(|s| s.code())
                .map(|c| c.as_str().to_owned())
                .unwrap_or_else(|| "provisioning".to_owned());
            match state.as_str() {
                "active" => Ok(None),
                "failed" => Err(AwsError::local(format!(
                    "load balancer {arn} failed to provision: {}",
                    lb.state()
                        .and_then(|s| s.reason())
                        .unwrap_or("no reason given")
                ))),
                _ => Ok(Some(state)),
            }
        },
    )
    .await
}

async fn lb_attributes(aws: &Aws, arn: &str) -> Result<BTreeMap<String, String>> {
    let out = elbv2(aws)
        .describe_load_balancer_attributes()
        .load_balancer_arn(arn)
        .send()
        .await
        .map_err(aws_err)?;
    Ok(out
        .attributes()
        .iter()
        .filter_map(|a| Some((a.key()?.to_owned(), a.value().unwrap_or("").to_owned())))
        .collect())
}

/// The attribute writes for the given stack attributes (all when `only` is `None`).
fn attribute_updates(input: &Resolved, only: Option<&[&str]>) -> Vec<(String, String)> {
    let wants = |a: &str| input.attrs.contains_key(a) && only.is_none_or(|o| o.contains(&a));
    let mut set = Vec::new();
    if wants("idle_timeout")
        && let Some(t) = input.int("idle_timeout")
    {
        set.push(("idle_timeout.timeout_seconds".into(), t.to_string()));
    }
    if wants("deletion_protection") {
        let on = input.bool("deletion_protection").unwrap_or(false);
        set.push(("deletion_protection.enabled".into(), on.to_string()));
    }
    if wants("drop_invalid_header_fields") {
        let on = input.bool("drop_invalid_header_fields").unwrap_or(false);
        set.push((
            "routing.http.drop_invalid_header_fields.enabled".into(),
            on.to_string(),
        ));
    }
    if wants("access_logs")
        && let Some(Value::Object(m)) = input.attrs.get("access_logs")
    {
        let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let on = m.get("enabled").and_then(Value::as_bool).unwrap_or(true);
        set.push(("access_logs.s3.enabled".into(), on.to_string()));
        set.push(("access_logs.s3.bucket".into(), s("bucket")));
        set.push(("access_logs.s3.prefix".into(), s("prefix")));
    }
    set
}

async fn modify_attributes(aws: &Aws, arn: &str, set: Vec<(String, String)>) -> Result<()> {
    elbv2(aws)
        .modify_load_balancer_attributes()
        .load_balancer_arn(arn)
        .set_attributes(Some(
            set.into_iter()
                .map(|(k, v)| LoadBalancerAttribute::builder().key(k).value(v).build())
                .collect(),
        ))
        .send()
        .await
        .map_err(aws_err)?;
    Ok(())
}

fn live_of(
    lb: &LoadBalancer,
    attrs: Option<&BTreeMap<String, String>>,
    tags: Option<&BTreeMap<String, String>>,
) -> Live {
    let arn = lb.load_balancer_arn().unwrap_or_default().to_owned();
    let mut a = Attrs::new();
    a.insert(
        "name".into(),
        json!(lb.load_balancer_name().unwrap_or_default()),
    );
    a.insert(
        "internal".into(),
        json!(lb.scheme() == Some(&LoadBalancerSchemeEnum::Internal)),
    );
    let mut subnets: Vec<&str> = lb
        .availability_zones()
        .iter()
        .filter_map(|z| z.subnet_id())
        .collect();
    subnets.sort();
    a.insert("subnets".into(), json!(subnets));
    let mut groups: Vec<&str> = lb.security_groups().iter().map(String::as_str).collect();
    groups.sort();
    a.insert("security_groups".into(), json!(groups));
    if let Some(attrs) = attrs {
        // AWS reports every attribute; a missing one (moto omits some) is AWS's default.
        let get = |k: &str| attrs.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let on = |k: &str| get(k) == Some("true");
        a.insert(
            "idle_timeout".into(),
            json!(
                get("idle_timeout.timeout_seconds")
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(60)
            ),
        );
        a.insert(
            "deletion_protection".into(),
            json!(on("deletion_protection.enabled")),
        );
        a.insert(
            "drop_invalid_header_fields".into(),
            json!(on("routing.http.drop_invalid_header_fields.enabled")),
        );
        if let Some(bucket) = get("access_logs.s3.bucket") {
            let mut logs = serde_json::Map::new();
            logs.insert("bucket".into(), json!(bucket));
            if let Some(p) = get("access_logs.s3.prefix") {
                logs.insert("prefix".into(), json!(p));
            }
            logs.insert("enabled".into(), json!(on("access_logs.s3.enabled")));
            a.insert("access_logs".into(), Value::Object(logs));
        }
    }
    if let Some(tags) = tags {
        a.insert("tags".into(), tags_value(tags));
    }
    a.insert("arn".into(), json!(arn));
    a.insert("arn_suffix".into(), json!(arn_suffix(&arn)));
    a.insert("dns_name".into(), json!(lb.dns_name().unwrap_or_default()));
    a.insert(
        "zone_id".into(),
        json!(lb.canonical_hosted_zone_id().unwrap_or_default()),
    );
    if let Some(vpc) = lb.vpc_id() {
        a.insert("vpc_id".into(), json!(vpc));
    }
    Live {
        id: arn,
        attrs: a,
        private: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_aws_rules() {
        assert!(check_name("a load balancer", "web-dev-1").is_ok());
        let long = "a".repeat(33);
        assert!(
            check_name("a load balancer", &long)
                .unwrap_err()
                .contains("1 to 32")
        );
        assert!(
            check_name("a load balancer", "web_dev")
                .unwrap_err()
                .contains("'_'")
        );
        assert!(
            check_name("a load balancer", "-web")
                .unwrap_err()
                .contains("hyphen")
        );
        assert!(
            check_name("a load balancer", "web-")
                .unwrap_err()
                .contains("hyphen")
        );
        assert!(
            check_name("a load balancer", "internal-web")
                .unwrap_err()
                .contains("internal-")
        );
    }

    #[test]
    fn arn_suffixes_are_what_cloudwatch_takes() {
        assert_eq!(
            arn_suffix(
                "arn:aws:elasticloadbalancing:us-east-1:123:loadbalancer/app/web/50dc6c495c0c9188"
            ),
            "app/web/50dc6c495c0c9188"
        );
        assert_eq!(
            arn_suffix(
                "arn:aws:elasticloadbalancing:us-east-1:123:targetgroup/blue/73e2d6bc24d8a067"
            ),
            "targetgroup/blue/73e2d6bc24d8a067"
        );
    }

    #[test]
    fn subnets_are_a_set_and_access_logs_fill_aws_defaults() {
        let p = Alb;
        assert_eq!(
            p.canonical("subnets", &json!(["subnet-b", "subnet-a"])),
            json!(["subnet-a", "subnet-b"])
        );
        assert_eq!(
            p.canonical("access_logs", &json!({ "bucket": "logs", "prefix": "" })),
            json!({ "bucket": "logs", "enabled": true })
        );
        assert!(p.check_attr("subnets", &json!(["subnet-a"])).is_err());
        assert!(p.check_attr("idle_timeout", &json!(0)).is_err());
    }
}
