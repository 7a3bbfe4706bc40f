//! `alb_target_group`: where a listener forwards (Fargate tasks register by IP).
//!
//! The id is the ARN; the create tags it like every ELBv2 kind (see `alb.rs`). Name, port,
//! protocol, target type and VPC cannot change: a new name is created beside the old group
//! and the old one goes only after every listener and rule forwarding to it moved
//! (create-before-destroy), since AWS refuses to delete a group in use. The health check
//! changes in place (ModifyTargetGroup); deregistration delay and stickiness are
//! target-group attributes. `health_check` and `stickiness` are compared with AWS's
//! defaults filled in, so writing only `path` plans to no change once applied.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Matcher, ProtocolEnum, TargetGroup, TargetGroupAttribute, TargetTypeEnum,
};
use serde_json::{Value, json};

use super::alb::{
    arn_suffix, check_name, create_tags, elbv2, find_tagged, sync_tags, tags_of, user_tags,
};
use super::schema::Default;
use super::toolkit::{read_back, tags_value};
use super::{
    Attr, Aws, AwsError, ChangeNotes, Cx, Live, PlannedChange, Provider, Result, Schema, Ty,
    aws_err,
};
use crate::value::{Attrs, Desired, Resolved};

pub struct AlbTargetGroup;

/// AWS's health-check defaults for an HTTP or HTTPS group of instances or IPs.
const HC_DEFAULTS: &[(&str, HcDefault)] = &[
    ("path", HcDefault::Str("/")),
    ("interval", HcDefault::Int(30)),
    ("timeout", HcDefault::Int(5)),
    ("healthy_threshold", HcDefault::Int(5)),
    ("unhealthy_threshold", HcDefault::Int(2)),
    ("matcher", HcDefault::Str("200")),
];

enum HcDefault {
    Str(&'static str),
    Int(i64),
}

static HEALTH_CHECK: &[Attr] = &[
    Attr::new(
        "path",
        Ty::String,
        "Path requested, e.g. \"/ready\" (default \"/\").",
    ),
    Attr::new(
        "interval",
        Ty::Int,
        "Seconds between checks, 5-300 (default 30).",
    ),
    Attr::new(
        "timeout",
        Ty::Int,
        "Seconds before a check fails, 2-120 (default 5).",
    ),
    Attr::new(
        "healthy_threshold",
        Ty::Int,
        "Passes before a target is healthy, 2-10 (default 5).",
    ),
    Attr::new(
        "unhealthy_threshold",
        Ty::Int,
        "Failures before a target is unhealthy, 2-10 (default 2).",
    ),
    Attr::new(
        "matcher",
        Ty::String,
        "HTTP codes that pass: \"200\", \"200,204\" or \"200-299\" (default \"200\").",
    ),
];

static STICKINESS: &[Attr] = &[
    Attr::new(
        "enabled",
        Ty::Bool,
        "Load-balancer cookie stickiness on or off.",
    )
    .default(Default::Bool(true)),
    Attr::new(
        "duration",
        Ty::Int,
        "Seconds a client sticks to its target, 1-604800 (default 86400).",
    )
    .default(Default::Int(86400)),
];

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new(
            "name",
            Ty::String,
            "Target group name: up to 32 letters, digits and hyphens.",
        )
        .required()
        .force_new(),
        Attr::new("port", Ty::Int, "Port the targets listen on, e.g. 8000.")
            .required()
            .force_new(),
        Attr::new(
            "protocol",
            Ty::Enum(&["HTTP", "HTTPS"]),
            "Protocol to the targets.",
        )
        .force_new()
        .default(Default::Str("HTTP")),
        Attr::new(
            "target_type",
            Ty::Enum(&["instance", "ip"]),
            "\"ip\" for Fargate tasks, \"instance\" for EC2 instances.",
        )
        .force_new()
        .default(Default::Str("instance")),
        Attr::new("vpc", Ty::String, "VPC id, e.g. \"${data.vpc.main.id}\".")
            .required()
            .force_new(),
        Attr::new(
            "health_check",
            Ty::Table(HEALTH_CHECK),
            "Health check: { path, interval, timeout, healthy_threshold, unhealthy_threshold, matcher }.",
        ),
        Attr::new(
            "deregistration_delay",
            Ty::Int,
            "Seconds a deregistering target keeps its connections, 0-3600.",
        )
        .default(Default::Int(300)),
        Attr::new(
            "stickiness",
            Ty::Table(STICKINESS),
            "Cookie stickiness: { enabled = true, duration = 3600 } (default off).",
        ),
        Attr::new("tags", Ty::StringMap, "Tags."),
    ],
    outputs: &["arn", "arn_suffix"],
};

#[async_trait]
impl Provider for AlbTargetGroup {
    fn kind(&self) -> &'static str {
        "alb_target_group"
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
            ("health_check", Value::Object(m)) => {
                let mut m = m.clone();
                for (k, d) in HC_DEFAULTS {
                    if m.get(*k).is_none_or(Value::is_null) {
                        m.insert(
                            (*k).to_owned(),
                            match d {
                                HcDefault::Str(s) => json!(s),
                                HcDefault::Int(i) => json!(i),
                            },
                        );
                    }
                }
                Value::Object(m)
            }
            // Off is off, whatever duration AWS keeps.
            ("stickiness", Value::Object(m)) => {
                if m.get("enabled").and_then(Value::as_bool) == Some(false) {
                    json!({ "enabled": false })
                } else {
                    let mut m = m.clone();
                    m.entry("enabled").or_insert(json!(true));
                    m.entry("duration").or_insert(json!(86400));
                    Value::Object(m)
                }
            }
            _ => v.clone(),
        }
    }

    fn check_attr(&self, attr: &str, value: &Value) -> std::result::Result<(), String> {
        let range = |what: &str, v: &Value, lo: i64, hi: i64| match v.as_i64() {
            Some(n) if (lo..=hi).contains(&n) => Ok(()),
            Some(n) => Err(format!("{what} {n} is out of range: use {lo} to {hi}")),
            None => Ok(()),
        };
        match (attr, value) {
            ("name", Value::String(n)) => check_name("a target group", n),
            ("port", v) => range("port", v, 1, 65535),
            ("deregistration_delay", v) => range("deregistration_delay", v, 0, 3600),
            ("health_check", Value::Object(m)) => {
                for (k, lo, hi) in [
                    ("interval", 5, 300),
                    ("timeout", 2, 120),
                    ("healthy_threshold", 2, 10),
                    ("unhealthy_threshold", 2, 10),
                ] {
                    if let Some(v) = m.get(k) {
                        range(&format!("health_check.{k}"), v, lo, hi)?;
                    }
                }
                if let (Some(t), Some(i)) = (
                    m.get("timeout").and_then(Value::as_i64),
                    m.get("interval").and_then(Value::as_i64),
                ) && t >= i
                {
                    return Err(format!(
                        "health_check.timeout {t} must be shorter than its interval {i}"
                    ));
                }
                if let Some(Value::String(p)) = m.get("path")
                    && !p.starts_with('/')
                {
                    return Err(format!("health_check.path \"{p}\" must start with /"));
                }
                if let Some(Value::String(c)) = m.get("matcher")
                    && !valid_matcher(c)
                {
                    return Err(format!(
                        "health_check.matcher \"{c}\" is not a list or range of HTTP codes: write \"200\", \"200,204\" or \"200-299\""
                    ));
                }
                Ok(())
            }
            ("stickiness", Value::Object(m)) => match m.get("duration") {
                Some(v) => range("stickiness.duration", v, 1, 604_800),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    async fn find_created(
        &self,
        cx: &Cx<'_>,
        address: &str,
        lineage: &str,
    ) -> Result<Option<Live>> {
        let arns: Vec<String> = all_target_groups(cx.aws)
            .await?
            .iter()
            .filter_map(|g| g.target_group_arn().map(str::to_owned))
            .collect();
        match find_tagged(cx.aws, &arns, address, lineage).await? {
            Some(arn) => self.read(cx, &arn).await,
            None => Ok(None),
        }
    }

    async fn read(&self, cx: &Cx<'_>, id: &str) -> Result<Option<Live>> {
        let Some(group) = describe(cx.aws, id).await? else {
            return Ok(None);
        };
        let attrs = if cx.wants("deregistration_delay") || cx.wants("stickiness") {
            Some(group_attributes(cx.aws, id).await?)
        } else {
            None
        };
        let tags = if cx.wants("tags") {
            Some(user_tags(&tags_of(cx.aws, id).await?))
        } else {
            None
        };
        Ok(Some(live_of(&group, attrs.as_ref(), tags.as_ref())))
    }

    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live> {
        let name = input
            .str("name")
            .ok_or_else(|| AwsError::local("alb_target_group: name is required"))?;
        let protocol = ProtocolEnum::from(input.str("protocol").unwrap_or("HTTP"));
        let hc = health_check(input);
        let port = i32::try_from(input.int("port").unwrap_or(80))
            .map_err(|_| AwsError::local("alb_target_group: port is out of range"))?;
        let sent = elbv2(cx.aws)
            .create_target_group()
            .name(name)
            .port(port)
            .protocol(protocol.clone())
            .target_type(TargetTypeEnum::from(
                input.str("target_type").unwrap_or("instance"),
            ))
            .set_vpc_id(input.str("vpc").map(str::to_owned))
            .health_check_protocol(protocol)
            .health_check_path(hc.path)
            .health_check_interval_seconds(hc.interval)
            .health_check_timeout_seconds(hc.timeout)
            .healthy_threshold_count(hc.healthy)
            .unhealthy_threshold_count(hc.unhealthy)
            .matcher(Matcher::builder().http_code(hc.matcher).build())
            .set_tags(Some(create_tags(cx, input)))
            .send()
            .await
            .map_err(aws_err);
        let arn = match sent {
            Ok(out) => out
                .target_groups()
                .first()
                .and_then(|g| g.target_group_arn())
                .ok_or_else(|| {
                    AwsError::local(format!("CreateTargetGroup {name} returned no ARN"))
                })?
                .to_owned(),
            // AWS answers a retried identical create with the same group; one that meets
            // the name taken is ours only when it carries this address and lineage.
            Err(e) if e.is("DuplicateTargetGroupName") => {
                let arns: Vec<String> = by_name(cx.aws, name)
                    .await?
                    .iter()
                    .filter_map(|g| g.target_group_arn().map(str::to_owned))
                    .collect();
                match find_tagged(cx.aws, &arns, cx.address, cx.lineage).await? {
                    Some(arn) => arn,
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        cx.created(&arn);
        let set = attribute_updates(input, None);
        if !set.is_empty() {
            modify_attributes(cx.aws, &arn, set).await?;
        }
        read_back(self, cx, &arn).await
    }

    async fn update(
        &self,
        cx: &Cx<'_>,
        id: &str,
        input: &Resolved,
        changed: &[String],
    ) -> Result<Live> {
        let mut attrs_changed = Vec::new();
        for attr in changed {
            match attr.as_str() {
                "health_check" => {
                    let hc = health_check(input);
                    elbv2(cx.aws)
                        .modify_target_group()
                        .target_group_arn(id)
                        .health_check_path(hc.path)
                        .health_check_interval_seconds(hc.interval)
                        .health_check_timeout_seconds(hc.timeout)
                        .healthy_threshold_count(hc.healthy)
                        .unhealthy_threshold_count(hc.unhealthy)
                        .matcher(Matcher::builder().http_code(hc.matcher).build())
                        .send()
                        .await
                        .map_err(aws_err)?;
                }
                "deregistration_delay" | "stickiness" => attrs_changed.push(attr.as_str()),
                "tags" => {
                    let have = user_tags(&tags_of(cx.aws, id).await?);
                    sync_tags(cx.aws, id, &have, &input.string_map("tags")).await?;
                }
                other => {
                    return Err(AwsError::local(format!(
                        "alb_target_group {id}: {other} cannot change in place (the group must be replaced)"
                    )));
                }
            }
        }
        if !attrs_changed.is_empty() {
            modify_attributes(cx.aws, id, attribute_updates(input, Some(&attrs_changed))).await?;
        }
        read_back(self, cx, id).await
    }

    async fn delete(&self, cx: &Cx<'_>, id: &str, _prior: &Attrs) -> Result<()> {
        // A listener or rule just moved off the group may still count as using it for a
        // moment: AWS says ResourceInUse, which passes.
        let aws = cx.aws;
        super::wait_for(
            cx,
            &format!("target group {id} to be released"),
            || async move {
                match elbv2(aws)
                    .delete_target_group()
                    .target_group_arn(id)
                    .send()
                    .await
                {
                    Ok(_) => Ok(None),
                    Err(e) => match aws_err(e) {
                        e if e.is("TargetGroupNotFound") => Ok(None),
                        e if e.is("ResourceInUse") => Ok(Some(
                            "in use by a listener or rule (ResourceInUse)".to_owned(),
                        )),
                        e => Err(e),
                    },
                }
            },
        )
        .await
    }

    fn plan_change(
        &self,
        _prior: Option<&Attrs>,
        _desired: &BTreeMap<String, Desired>,
        changed: &[String],
    ) -> std::result::Result<PlannedChange, String> {
        let requires_replace: Vec<String> = changed
            .iter()
            .filter(|c| SCHEMA.attr(c).is_some_and(|a| a.force_new))
            .cloned()
            .collect();
        let renamed = changed.iter().any(|c| c == "name");
        let mut notes = ChangeNotes::default();
        if !requires_replace.is_empty() && !renamed {
            notes.notes.push(
                "the name stays, so the old group is deleted before the new one is created; if a listener forwards to it, rename it too (e.g. a -v2 suffix) so the new group is created beside it and the listener moves first"
                    .to_owned(),
            );
        }
        Ok(PlannedChange {
            // A new name can live beside the old one: listeners move to it before the old
            // group goes (AWS refuses to delete a group in use).
            create_before_destroy: renamed,
            requires_replace,
            notes,
        })
    }
}

/// `200`, `200,204`, `200-299`: codes 200 to 499.
fn valid_matcher(c: &str) -> bool {
    let code = |s: &str| s.len() == 3 && s.parse::<u16>().is_ok_and(|n| (200..=499).contains(&n));
    !c.is_empty()
        && c.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => code(a) && code(b) && a <= b,
            None => code(part),
        })
}

struct HealthCheck {
    path: String,
    interval: i32,
    timeout: i32,
    healthy: i32,
    unhealthy: i32,
    matcher: String,
}

/// The stack's health check with AWS's defaults for what it leaves out.
fn health_check(input: &Resolved) -> HealthCheck {
    let hc = AlbTargetGroup.canonical(
        "health_check",
        input.attrs.get("health_check").unwrap_or(&json!({})),
    );
    let int = |k: &str| hc.get(k).and_then(Value::as_i64).unwrap_or(0) as i32;
    let s = |k: &str| hc.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    HealthCheck {
        path: s("path"),
        interval: int("interval"),
        timeout: int("timeout"),
        healthy: int("healthy_threshold"),
        unhealthy: int("unhealthy_threshold"),
        matcher: s("matcher"),
    }
}

fn attribute_updates(input: &Resolved, only: Option<&[&str]>) -> Vec<(String, String)> {
    let wants = |a: &str| input.attrs.contains_key(a) && only.is_none_or(|o| o.contains(&a));
    let mut set = Vec::new();
    if wants("deregistration_delay")
        && let Some(d) = input.int("deregistration_delay")
    {
        set.push(("deregistration_delay.timeout_seconds".into(), d.to_string()));
    }
    if wants("stickiness")
        && let Some(s) = input.attrs.get("stickiness")
    {
        let s = AlbTargetGroup.canonical("stickiness", s);
        let on = s.get("enabled").and_then(Value::as_bool).unwrap_or(false);
        set.push(("stickiness.enabled".into(), on.to_string()));
        if on {
            set.push(("stickiness.type".into(), "lb_cookie".into()));
            let d = s.get("duration").and_then(Value::as_i64).unwrap_or(86400);
            set.push((
                "stickiness.lb_cookie.duration_seconds".into(),
                d.to_string(),
            ));
        }
    }
    set
}

async fn modify_attributes(aws: &Aws, arn: &str, set: Vec<(String, String)>) -> Result<()> {
    elbv2(aws)
        .modify_target_group_attributes()
        .target_group_arn(arn)
        .set_attributes(Some(
            set.into_iter()
                .map(|(k, v)| TargetGroupAttribute::builder().key(k).value(v).build())
                .collect(),
        ))
        .send()
        .await
        .map_err(aws_err)?;
    Ok(())
}

async fn group_attributes(aws: &Aws, arn: &str) -> Result<BTreeMap<String, String>> {
    let out = elbv2(aws)
        .describe_target_group_attributes()
        .target_group_arn(arn)
        .send()
        .await
        .map_err(aws_err)?;
    Ok(out
        .attributes()
        .iter()
        .filter_map(|a| Some((a.key()?.to_owned(), a.value().unwrap_or("").to_owned())))
        .collect())
}

async fn describe(aws: &Aws, arn: &str) -> Result<Option<TargetGroup>> {
    match elbv2(aws)
        .describe_target_groups()
        .target_group_arns(arn)
        .send()
        .await
    {
        Ok(out) => Ok(out.target_groups().first().cloned()),
        Err(e) => match aws_err(e) {
            e if e.is("TargetGroupNotFound") || e.is("ValidationError") => Ok(None),
            e => Err(e),
        },
    }
}

async fn by_name(aws: &Aws, name: &str) -> Result<Vec<TargetGroup>> {
    match elbv2(aws).describe_target_groups().names(name).send().await {
        Ok(out) => Ok(out.target_groups().to_vec()),
        Err(e) => match aws_err(e) {
            e if e.is("TargetGroupNotFound") => Ok(Vec::new()),
            e => Err(e),
        },
    }
}

async fn all_target_groups(aws: &Aws) -> Result<Vec<TargetGroup>> {
    let mut out = Vec::new();
    let mut pages = elbv2(aws).describe_target_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        out.extend(page.map_err(aws_err)?.target_groups().iter().cloned());
    }
    Ok(out)
}

fn live_of(
    g: &TargetGroup,
    attrs: Option<&BTreeMap<String, String>>,
    tags: Option<&BTreeMap<String, String>>,
) -> Live {
    let arn = g.target_group_arn().unwrap_or_default().to_owned();
    let mut a = Attrs::new();
    a.insert(
        "name".into(),
        json!(g.target_group_name().unwrap_or_default()),
    );
    if let Some(p) = g.port() {
        a.insert("port".into(), json!(p));
    }
    if let Some(p) = g.protocol() {
        a.insert("protocol".into(), json!(p.as_str()));
    }
    if let Some(t) = g.target_type() {
        a.insert("target_type".into(), json!(t.as_str()));
    }
    if let Some(v) = g.vpc_id() {
        a.insert("vpc".into(), json!(v));
    }
    let mut hc = serde_json::Map::new();
    if let Some(p) = g.health_check_path() {
        hc.insert("path".into(), json!(p));
    }
    for (k, v) in [
        ("interval", g.health_check_interval_seconds()),
        ("timeout", g.health_check_timeout_seconds()),
        ("healthy_threshold", g.healthy_threshold_count()),
        ("unhealthy_threshold", g.unhealthy_threshold_count()),
    ] {
        if let Some(v) = v {
            hc.insert(k.into(), json!(v));
        }
    }
    if let Some(m) = g.matcher().and_then(|m| m.http_code()) {
        hc.insert("matcher".into(), json!(m));
    }
    a.insert(
        "health_check".into(),
        AlbTargetGroup.canonical("health_check", &Value::Object(hc)),
    );
    if let Some(attrs) = attrs {
        let get = |k: &str| attrs.get(k).map(String::as_str);
        a.insert(
            "deregistration_delay".into(),
            json!(
                get("deregistration_delay.timeout_seconds")
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(300)
            ),
        );
        let on = get("stickiness.enabled") == Some("true");
        let duration = get("stickiness.lb_cookie.duration_seconds")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(86400);
        a.insert(
            "stickiness".into(),
            AlbTargetGroup.canonical(
                "stickiness",
                &json!({ "enabled": on, "duration": duration }),
            ),
        );
    }
    if let Some(tags) = tags {
        a.insert("tags".into(), tags_value(tags));
    }
    a.insert("arn".into(), json!(arn));
    a.insert("arn_suffix".into(), json!(arn_suffix(&arn)));
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
    fn health_check_compares_with_aws_defaults_filled_in() {
        let p = AlbTargetGroup;
        assert_eq!(
            p.canonical("health_check", &json!({ "path": "/ready" })),
            json!({ "path": "/ready", "interval": 30, "timeout": 5, "healthy_threshold": 5, "unhealthy_threshold": 2, "matcher": "200" })
        );
        assert_eq!(
            p.canonical(
                "stickiness",
                &json!({ "enabled": false, "duration": 86400 })
            ),
            json!({ "enabled": false })
        );
        assert_eq!(
            p.canonical("stickiness", &json!({ "enabled": true })),
            json!({ "enabled": true, "duration": 86400 })
        );
    }

    #[test]
    fn health_checks_and_names_are_checked() {
        let p = AlbTargetGroup;
        assert!(
            p.check_attr(
                "health_check",
                &json!({ "path": "/ready", "matcher": "200-299" })
            )
            .is_ok()
        );
        assert!(
            p.check_attr("health_check", &json!({ "path": "ready" }))
                .unwrap_err()
                .contains("start with /")
        );
        assert!(
            p.check_attr("health_check", &json!({ "timeout": 30, "interval": 10 }))
                .unwrap_err()
                .contains("shorter")
        );
        assert!(
            p.check_attr("health_check", &json!({ "matcher": "ok" }))
                .unwrap_err()
                .contains("HTTP codes")
        );
        assert!(
            p.check_attr("health_check", &json!({ "path": null }))
                .is_ok()
        );
        assert!(p.check_attr("name", &json!("blue_tg")).is_err());
        assert!(p.check_attr("port", &json!(0)).is_err());
        assert!(valid_matcher("200,204"));
        assert!(!valid_matcher("299-200"));
    }

    #[test]
    fn only_a_rename_is_created_beside_the_old_group() {
        let p = AlbTargetGroup;
        let d = BTreeMap::new();
        let renamed = p
            .plan_change(None, &d, &["name".into(), "tags".into()])
            .unwrap();
        assert!(renamed.create_before_destroy);
        assert_eq!(renamed.requires_replace, ["name"]);
        let port = p.plan_change(None, &d, &["port".into()]).unwrap();
        assert!(!port.create_before_destroy);
        assert!(port.notes.notes[0].contains("rename it too"));
    }
}
