//! `alb_listener`: a port of a load balancer and its default action, and the action shape
//! listener rules share.
//!
//! An action is exactly one of: `target_group` (forward to one group), `forward` (weighted,
//! up to five groups), `redirect` or `fixed_response`. It is compared in one canonical form
//! ([`canonical_action`]), applied alike to the stack and to what AWS reports: a forward is
//! a sorted table of `{ target_group, weight }` with weights defaulting to 1, whether AWS
//! stored it as `TargetGroupArn`, as `ForwardConfig` or both; a redirect has AWS's `#{…}`
//! defaults filled in. So a fresh apply plans to no change and a changed weight shows as a
//! before/after of that table. Port, protocol, certificate and action change in place
//! (ModifyListener); the load balancer replaces. The ARN is AWS's; the create tags it for
//! adoption like every ELBv2 kind (see `alb.rs`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, FixedResponseActionConfig, ForwardActionConfig, Listener,
    ProtocolEnum, RedirectActionConfig, RedirectActionStatusCodeEnum, TargetGroupTuple,
};
use serde_json::{Value, json};

use super::alb::{
    all_load_balancers, create_tags, elbv2, find_tagged, sync_tags, tags_of, user_tags,
};
use super::schema::Default;
use super::toolkit::{read_back, tags_value};
use super::{Attr, Aws, AwsError, ChangeNotes, Cx, Live, Provider, Result, Schema, Ty, aws_err};
use crate::value::{Attrs, Desired, Resolved};

pub struct AlbListener;

/// At most this many target groups in one forward (AWS's limit).
const MAX_FORWARD: usize = 5;
const MAX_WEIGHT: i64 = 999;

static FORWARD: &[Attr] = &[
    Attr::new(
        "target_group",
        Ty::String,
        "The group's ARN: \"${alb_target_group.NAME.arn}\".",
    )
    .required(),
    Attr::new("weight", Ty::Int, "Share of requests, 0-999 (default 1)."),
];

static REDIRECT: &[Attr] = &[
    Attr::new(
        "protocol",
        Ty::String,
        "\"HTTP\", \"HTTPS\" or \"#{protocol}\" (default: unchanged).",
    ),
    Attr::new("port", Ty::Int, "Port to redirect to (default: unchanged)."),
    Attr::new("host", Ty::String, "Host (default \"#{host}\")."),
    Attr::new("path", Ty::String, "Path (default \"/#{path}\")."),
    Attr::new("query", Ty::String, "Query (default \"#{query}\")."),
    Attr::new(
        "status_code",
        Ty::Enum(&["HTTP_301", "HTTP_302"]),
        "Permanent (HTTP_301, default) or temporary (HTTP_302).",
    ),
];

static FIXED_RESPONSE: &[Attr] = &[
    Attr::new("status_code", Ty::String, "HTTP status, 2XX, 4XX or 5XX.").required(),
    Attr::new(
        "content_type",
        Ty::Enum(&[
            "text/plain",
            "text/css",
            "text/html",
            "application/javascript",
            "application/json",
        ]),
        "Content type of the body.",
    ),
    Attr::new("message_body", Ty::String, "Body, up to 1024 characters."),
];

/// An action, shared by listeners (`default_action`) and rules (`action`).
pub(super) static ACTION: &[Attr] = &[
    Attr::new(
        "target_group",
        Ty::String,
        "Forward every request to one group: \"${alb_target_group.NAME.arn}\".",
    ),
    Attr::new(
        "forward",
        Ty::Blocks(FORWARD),
        "Weighted forward: [{ target_group = \"…\", weight = 100 }, …], up to 5 groups.",
    ),
    Attr::new(
        "redirect",
        Ty::Table(REDIRECT),
        "Redirect, e.g. { protocol = \"HTTPS\", port = 443 }.",
    ),
    Attr::new(
        "fixed_response",
        Ty::Table(FIXED_RESPONSE),
        "Fixed response: { status_code = \"404\", content_type = \"text/plain\", message_body = \"…\" }.",
    ),
];

const ACTION_KINDS: [&str; 4] = ["target_group", "forward", "redirect", "fixed_response"];

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new(
            "load_balancer",
            Ty::String,
            "The load balancer's ARN: \"${alb.NAME.arn}\".",
        )
        .required()
        .force_new(),
        Attr::new("port", Ty::Int, "Port it listens on, e.g. 80 or 443.").required(),
        Attr::new("protocol", Ty::Enum(&["HTTP", "HTTPS"]), "Protocol.")
            .default(Default::Str("HTTP")),
        Attr::new(
            "certificate_arn",
            Ty::String,
            "ACM certificate ARN; required for HTTPS.",
        ),
        Attr::new(
            "ssl_policy",
            Ty::String,
            "TLS policy for HTTPS, e.g. \"ELBSecurityPolicy-TLS13-1-2-2021-06\" (default: AWS's).",
        ),
        Attr::new(
            "default_action",
            Ty::Table(ACTION),
            "What requests no rule matches get: { target_group = … }, { forward = [...] }, { redirect = {...} } or { fixed_response = {...} }.",
        )
        .required(),
        Attr::new("tags", Ty::StringMap, "Tags."),
    ],
    outputs: &["arn"],
};

#[async_trait]
impl Provider for AlbListener {
    fn kind(&self) -> &'static str {
        "alb_listener"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    /// AWS assigns the ARN.
    fn id_for(&self, _desired: &BTreeMap<String, Desired>) -> Option<String> {
        None
    }

    fn canonical(&self, attr: &str, v: &Value) -> Value {
        match attr {
            "default_action" => canonical_action(v),
            _ => v.clone(),
        }
    }

    fn check_attr(&self, attr: &str, value: &Value) -> std::result::Result<(), String> {
        match (attr, value) {
            ("port", Value::Number(n)) => match n.as_i64() {
                Some(1..=65535) => Ok(()),
                _ => Err(format!("port {n} is out of range: use 1 to 65535")),
            },
            ("certificate_arn", Value::String(c)) if !c.starts_with("arn:") => Err(format!(
                "\"{c}\" is not a certificate ARN: give the full arn:aws:acm:… of the certificate"
            )),
            ("default_action", v) => check_action(v),
            _ => Ok(()),
        }
    }

    fn check_change(
        &self,
        _prior: Option<&Attrs>,
        desired: &BTreeMap<String, Desired>,
    ) -> std::result::Result<ChangeNotes, String> {
        let known = |k: &str| desired.get(k).and_then(Desired::known);
        let set = |k: &str| {
            desired
                .get(k)
                .is_some_and(|d| d.known() != Some(&Value::Null))
        };
        let https = known("protocol").and_then(Value::as_str) == Some("HTTPS");
        if https && !set("certificate_arn") {
            return Err(
                "an HTTPS listener needs a certificate: add certificate_arn = \"arn:aws:acm:…\" (an ACM certificate for its domain), or use protocol = \"HTTP\""
                    .into(),
            );
        }
        if !https {
            for k in ["certificate_arn", "ssl_policy"] {
                if set(k) {
                    return Err(format!(
                        "{k} is only for HTTPS listeners: set protocol = \"HTTPS\" or remove {k}"
                    ));
                }
            }
        }
        Ok(ChangeNotes::default())
    }

    async fn find_created(
        &self,
        cx: &Cx<'_>,
        address: &str,
        lineage: &str,
    ) -> Result<Option<Live>> {
        let arns: Vec<String> = all_listeners(cx.aws)
            .await?
            .iter()
            .filter_map(|l| l.listener_arn().map(str::to_owned))
            .collect();
        match find_tagged(cx.aws, &arns, address, lineage).await? {
            Some(arn) => self.read(cx, &arn).await,
            None => Ok(None),
        }
    }

    async fn read(&self, cx: &Cx<'_>, id: &str) -> Result<Option<Live>> {
        let Some(l) = describe(cx.aws, id).await? else {
            return Ok(None);
        };
        let tags = if cx.wants("tags") {
            Some(user_tags(&tags_of(cx.aws, id).await?))
        } else {
            None
        };
        Ok(Some(live_of(&l, tags.as_ref())))
    }

    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live> {
        let lb = input
            .str("load_balancer")
            .ok_or_else(|| AwsError::local("alb_listener: load_balancer is required"))?;
        let action = action_of(input, "default_action")?;
        let out = elbv2(cx.aws)
            .create_listener()
            .load_balancer_arn(lb)
            .port(port_of(input)?)
            .protocol(ProtocolEnum::from(input.str("protocol").unwrap_or("HTTP")))
            .set_certificates(certificates(input))
            .set_ssl_policy(input.str("ssl_policy").map(str::to_owned))
            .default_actions(action)
            .set_tags(Some(create_tags(cx, input)))
            .send()
            .await
            .map_err(aws_err);
        let port = port_of(input)?;
        let arn = match out {
            Ok(out) => out
                .listeners()
                .first()
                .and_then(|l| l.listener_arn())
                .ok_or_else(|| AwsError::local("CreateListener returned no ARN"))?
                .to_owned(),
            // A retry after a lost reply meets its own first attempt on the port: ours only
            // when it carries this address and lineage.
            Err(e) if e.is("DuplicateListener") => {
                let on_port: Vec<String> = listeners_of(cx.aws, lb)
                    .await?
                    .iter()
                    .filter(|l| l.port() == Some(port))
                    .filter_map(|l| l.listener_arn().map(str::to_owned))
                    .collect();
                match find_tagged(cx.aws, &on_port, cx.address, cx.lineage).await? {
                    Some(arn) => arn,
                    None => {
                        return Err(AwsError::local(format!(
                            "{lb} already has a listener on port {port} that this stack did not create: import it (stackwright import) or choose another port ({e})"
                        )));
                    }
                }
            }
            Err(e) => return Err(e),
        };
        cx.created(&arn);
        read_back(self, cx, &arn).await
    }

    async fn update(
        &self,
        cx: &Cx<'_>,
        id: &str,
        input: &Resolved,
        changed: &[String],
    ) -> Result<Live> {
        let listener_changed = changed
            .iter()
            .any(|c| c != "tags" && SCHEMA.attr(c).is_some());
        if listener_changed {
            elbv2(cx.aws)
                .modify_listener()
                .listener_arn(id)
                .port(port_of(input)?)
                .protocol(ProtocolEnum::from(input.str("protocol").unwrap_or("HTTP")))
                .set_certificates(certificates(input))
                .set_ssl_policy(input.str("ssl_policy").map(str::to_owned))
                .default_actions(action_of(input, "default_action")?)
                .send()
                .await
                .map_err(aws_err)?;
        }
        if changed.iter().any(|c| c == "tags") {
            let have = user_tags(&tags_of(cx.aws, id).await?);
            sync_tags(cx.aws, id, &have, &input.string_map("tags")).await?;
        }
        read_back(self, cx, id).await
    }

    async fn delete(&self, cx: &Cx<'_>, id: &str, _prior: &Attrs) -> Result<()> {
        match elbv2(cx.aws)
            .delete_listener()
            .listener_arn(id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match aws_err(e) {
                e if e.is("ListenerNotFound") => Ok(()),
                e => Err(e),
            },
        }
    }
}

fn port_of(input: &Resolved) -> Result<i32> {
    input
        .int("port")
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| AwsError::local("alb_listener: port is required"))
}

fn certificates(input: &Resolved) -> Option<Vec<Certificate>> {
    input
        .str("certificate_arn")
        .map(|c| vec![Certificate::builder().certificate_arn(c).build()])
}

async fn describe(aws: &Aws, arn: &str) -> Result<Option<Listener>> {
    match elbv2(aws)
        .describe_listeners()
        .listener_arns(arn)
        .send()
        .await
    {
        Ok(out) => Ok(out.listeners().first().cloned()),
        Err(e) => match aws_err(e) {
            e if e.is("ListenerNotFound") || e.is("ValidationError") => Ok(None),
            e => Err(e),
        },
    }
}

/// Every listener of every load balancer (for adoption by tags).
pub(super) async fn all_listeners(aws: &Aws) -> Result<Vec<Listener>> {
    let mut out = Vec::new();
    for lb in all_load_balancers(aws).await? {
        if let Some(arn) = lb.load_balancer_arn() {
            out.extend(listeners_of(aws, arn).await?);
        }
    }
    Ok(out)
}

async fn listeners_of(aws: &Aws, lb: &str) -> Result<Vec<Listener>> {
    let mut out = Vec::new();
    let mut pages = elbv2(aws)
        .describe_listeners()
        .load_balancer_arn(lb)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        out.extend(page.map_err(aws_err)?.listeners().iter().cloned());
    }
    Ok(out)
}

fn live_of(l: &Listener, tags: Option<&BTreeMap<String, String>>) -> Live {
    let arn = l.listener_arn().unwrap_or_default().to_owned();
    let mut a = Attrs::new();
    a.insert(
        "load_balancer".into(),
        json!(l.load_balancer_arn().unwrap_or_default()),
    );
    if let Some(p) = l.port() {
        a.insert("port".into(), json!(p));
    }
    let protocol = l.protocol().map(|p| p.as_str()).unwrap_or("HTTP");
    a.insert("protocol".into(), json!(protocol));
    if let Some(c) = l.certificates().first().and_then(|c| c.certificate_arn()) {
        a.insert("certificate_arn".into(), json!(c));
    }
    if protocol == "HTTPS"
        && let Some(p) = l.ssl_policy()
    {
        a.insert("ssl_policy".into(), json!(p));
    }
    a.insert("default_action".into(), actions_value(l.default_actions()));
    if let Some(tags) = tags {
        a.insert("tags".into(), tags_value(tags));
    }
    a.insert("arn".into(), json!(arn));
    Live {
        id: arn,
        attrs: a,
        private: None,
    }
}

/// The canonical form of an action: one key, a forward as a sorted table with weights.
pub(super) fn canonical_action(v: &Value) -> Value {
    let Value::Object(m) = v else {
        return v.clone();
    };
    let kinds: Vec<&str> = ACTION_KINDS
        .into_iter()
        .filter(|k| m.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    let [kind] = kinds[..] else {
        return v.clone();
    };
    let str_or = |o: &serde_json::Map<String, Value>, k: &str, d: &str| -> Value {
        match o.get(k) {
            Some(Value::String(s)) => json!(s),
            Some(Value::Number(n)) => json!(n.to_string()),
            Some(Value::Null) | None => json!(d),
            Some(other) => other.clone(),
        }
    };
    match kind {
        "target_group" => {
            json!({ "forward": [{ "target_group": m["target_group"], "weight": 1 }] })
        }
        "forward" => {
            let Value::Array(items) = &m["forward"] else {
                return v.clone();
            };
            let mut targets: Vec<Value> = items
                .iter()
                .map(|t| {
                    json!({
                        "target_group": t.get("target_group").cloned().unwrap_or(Value::Null),
                        "weight": t.get("weight").filter(|w| !w.is_null()).cloned().unwrap_or(json!(1)),
                    })
                })
                .collect();
            // All traffic goes to a lone group whatever its weight; AWS may report 1.
            if let [only] = &mut targets[..] {
                only["weight"] = json!(1);
            }
            targets.sort_by_key(|t| t["target_group"].to_string());
            json!({ "forward": targets })
        }
        "redirect" => {
            let Value::Object(r) = &m["redirect"] else {
                return v.clone();
            };
            json!({ "redirect": {
                "protocol": str_or(r, "protocol", "#{protocol}"),
                "port": str_or(r, "port", "#{port}"),
                "host": str_or(r, "host", "#{host}"),
                "path": str_or(r, "path", "/#{path}"),
                "query": str_or(r, "query", "#{query}"),
                "status_code": str_or(r, "status_code", "HTTP_301"),
            } })
        }
        _ => {
            let Value::Object(f) = &m["fixed_response"] else {
                return v.clone();
            };
            let mut out = serde_json::Map::new();
            out.insert("status_code".into(), str_or(f, "status_code", ""));
            for k in ["content_type", "message_body"] {
                if let Some(Value::String(s)) = f.get(k)
                    && !s.is_empty()
                {
                    out.insert(k.into(), json!(s));
                }
            }
            json!({ "fixed_response": out })
        }
    }
}

/// AWS's rules for an action, on what is known (references are `null` at load).
pub(super) fn check_action(v: &Value) -> std::result::Result<(), String> {
    let Value::Object(m) = v else {
        return Ok(());
    };
    let kinds: Vec<&str> = ACTION_KINDS
        .into_iter()
        .filter(|k| m.contains_key(*k))
        .collect();
    if kinds.len() != 1 {
        return Err(format!(
            "an action is exactly one of target_group, forward, redirect or fixed_response; found {}",
            if kinds.is_empty() {
                "none".to_owned()
            } else {
                kinds.join(" and ")
            }
        ));
    }
    match kinds[0] {
        "forward" => {
            let Some(items) = m["forward"].as_array() else {
                return Ok(());
            };
            if items.is_empty() {
                return Err("forward needs at least one target group".into());
            }
            if items.len() > MAX_FORWARD {
                return Err(format!(
                    "forward takes at most {MAX_FORWARD} target groups, found {}: drop some, or use listener rules",
                    items.len()
                ));
            }
            let mut weights = Vec::new();
            let mut seen = Vec::new();
            for (i, t) in items.iter().enumerate() {
                if let Some(w) = t.get("weight").and_then(Value::as_i64) {
                    if !(0..=MAX_WEIGHT).contains(&w) {
                        return Err(format!(
                            "forward target {}: weight {w} is out of range: use 0 to {MAX_WEIGHT}",
                            i + 1
                        ));
                    }
                    weights.push(w);
                } else if t.get("weight").is_none() {
                    weights.push(1);
                }
                if let Some(g) = t.get("target_group").and_then(Value::as_str) {
                    if seen.contains(&g) {
                        return Err(format!(
                            "forward lists target group {g} twice: give each group once"
                        ));
                    }
                    seen.push(g);
                }
            }
            if weights.len() == items.len() && weights.iter().all(|w| *w == 0) {
                return Err(
                    "every forward weight is 0, so no request could be served: give at least one target group a weight above 0"
                        .into(),
                );
            }
            Ok(())
        }
        "fixed_response" => {
            let f = &m["fixed_response"];
            if let Some(Value::String(c)) = f.get("status_code") {
                let ok = c.len() == 3
                    && matches!(c.as_bytes()[0], b'2' | b'4' | b'5')
                    && c.bytes().all(|b| b.is_ascii_digit());
                if !ok {
                    return Err(format!(
                        "fixed_response status_code \"{c}\" is not 2XX, 4XX or 5XX (e.g. \"404\")"
                    ));
                }
            }
            if let Some(Value::String(b)) = f.get("message_body")
                && b.chars().count() > 1024
            {
                return Err("fixed_response message_body has at most 1024 characters".into());
            }
            Ok(())
        }
        "redirect" => {
            let r = &m["redirect"];
            if let Some(Value::String(p)) = r.get("protocol")
                && !matches!(p.as_str(), "HTTP" | "HTTPS" | "#{protocol}")
            {
                return Err(format!(
                    "redirect protocol \"{p}\" must be \"HTTP\", \"HTTPS\" or \"#{{protocol}}\""
                ));
            }
            if let Some(p) = r.get("port").and_then(Value::as_i64)
                && !(1..=65535).contains(&p)
            {
                return Err(format!("redirect port {p} is out of range: use 1 to 65535"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The SDK action for a resolved action attribute.
pub(super) fn action_of(input: &Resolved, attr: &str) -> Result<Action> {
    let v = input
        .attrs
        .get(attr)
        .ok_or_else(|| AwsError::local(format!("{attr} is required")))?;
    let c = canonical_action(v);
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    if let Some(Value::Array(targets)) = c.get("forward") {
        let a = Action::builder().r#type(ActionTypeEnum::Forward);
        return Ok(match &targets[..] {
            [only] => a.set_target_group_arn(s(only, "target_group")),
            many => a.forward_config(
                ForwardActionConfig::builder()
                    .set_target_groups(Some(
                        many.iter()
                            .map(|t| {
                                TargetGroupTuple::builder()
                                    .set_target_group_arn(s(t, "target_group"))
                                    .weight(t["weight"].as_i64().unwrap_or(1) as i32)
                                    .build()
                            })
                            .collect(),
                    ))
                    .build(),
            ),
        }
        .build());
    }
    if let Some(r) = c.get("redirect") {
        return Ok(Action::builder()
            .r#type(ActionTypeEnum::Redirect)
            .redirect_config(
                RedirectActionConfig::builder()
                    .set_protocol(s(r, "protocol"))
                    .set_port(s(r, "port"))
                    .set_host(s(r, "host"))
                    .set_path(s(r, "path"))
                    .set_query(s(r, "query"))
                    .status_code(RedirectActionStatusCodeEnum::from(
                        s(r, "status_code").as_deref().unwrap_or("HTTP_301"),
                    ))
                    .build(),
            )
            .build());
    }
    if let Some(f) = c.get("fixed_response") {
        return Ok(Action::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .fixed_response_config(
                FixedResponseActionConfig::builder()
                    .set_status_code(s(f, "status_code"))
                    .set_content_type(s(f, "content_type"))
                    .set_message_body(s(f, "message_body"))
                    .build(),
            )
            .build());
    }
    Err(AwsError::local(format!(
        "{attr} must be exactly one of target_group, forward, redirect or fixed_response"
    )))
}

/// What AWS reports, in the canonical form (the last action is the one that answers).
pub(super) fn actions_value(actions: &[Action]) -> Value {
    let Some(a) = actions.iter().max_by_key(|a| a.order().unwrap_or(0)) else {
        return Value::Null;
    };
    let raw = match a.r#type() {
        Some(ActionTypeEnum::Forward) => {
            let tuples = a
                .forward_config()
                .map(|f| f.target_groups())
                .unwrap_or_default();
            if tuples.is_empty() {
                json!({ "target_group": a.target_group_arn().unwrap_or_default() })
            } else {
                json!({ "forward": tuples.iter().map(|t| json!({
                    "target_group": t.target_group_arn().unwrap_or_default(),
                    "weight": t.weight().unwrap_or(1),
                })).collect::<Vec<_>>() })
            }
        }
        Some(ActionTypeEnum::Redirect) => {
            let r = a.redirect_config();
            json!({ "redirect": {
                "protocol": r.and_then(|r| r.protocol()),
                "port": r.and_then(|r| r.port()),
                "host": r.and_then(|r| r.host()),
                "path": r.and_then(|r| r.path()),
                "query": r.and_then(|r| r.query()),
                "status_code": r.and_then(|r| r.status_code()).map(|c| c.as_str()),
            } })
        }
        Some(ActionTypeEnum::FixedResponse) => {
            let f = a.fixed_response_config();
            json!({ "fixed_response": {
                "status_code": f.and_then(|f| f.status_code()),
                "content_type": f.and_then(|f| f.content_type()),
                "message_body": f.and_then(|f| f.message_body()),
            } })
        }
        other => json!({ "unsupported": other.map(|t| t.as_str()).unwrap_or("?") }),
    };
    canonical_action(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLUE: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/blue/1";
    const GREEN: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/green/2";

    #[test]
    fn every_spelling_of_a_forward_is_one_table() {
        let one = json!({ "forward": [{ "target_group": BLUE, "weight": 1 }] });
        assert_eq!(canonical_action(&json!({ "target_group": BLUE })), one);
        assert_eq!(
            canonical_action(&json!({ "forward": [{ "target_group": BLUE }] })),
            one
        );
        assert_eq!(
            canonical_action(&json!({ "forward": [{ "target_group": BLUE, "weight": 100 }] })),
            one
        );
        // AWS's report of a single-group forward: TargetGroupArn plus ForwardConfig.
        let reported = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(BLUE)
            .forward_config(
                ForwardActionConfig::builder()
                    .target_groups(
                        TargetGroupTuple::builder()
                            .target_group_arn(BLUE)
                            .weight(1)
                            .build(),
                    )
                    .build(),
            )
            .build();
        assert_eq!(actions_value(&[reported]), one);
        let weighted = json!({ "forward": [
            { "target_group": GREEN, "weight": 0 },
            { "target_group": BLUE, "weight": 100 },
        ] });
        assert_eq!(
            canonical_action(&weighted),
            json!({ "forward": [
                { "target_group": BLUE, "weight": 100 },
                { "target_group": GREEN, "weight": 0 },
            ] })
        );
    }

    #[test]
    fn a_redirect_has_aws_defaults_filled_in() {
        assert_eq!(
            canonical_action(&json!({ "redirect": { "protocol": "HTTPS", "port": 443 } })),
            json!({ "redirect": { "protocol": "HTTPS", "port": "443", "host": "#{host}", "path": "/#{path}", "query": "#{query}", "status_code": "HTTP_301" } })
        );
    }

    #[test]
    fn actions_are_checked() {
        let err = |v: Value| check_action(&v).unwrap_err();
        assert!(err(json!({})).contains("found none"));
        assert!(
            err(json!({ "target_group": BLUE, "redirect": {} }))
                .contains("target_group and redirect")
        );
        let six: Vec<Value> = (0..6)
            .map(|i| json!({ "target_group": format!("tg{i}") }))
            .collect();
        assert!(err(json!({ "forward": six })).contains("at most 5"));
        assert!(
            err(json!({ "forward": [{ "target_group": BLUE, "weight": 1000 }] }))
                .contains("0 to 999")
        );
        assert!(
            err(json!({ "forward": [
            { "target_group": BLUE, "weight": 0 }, { "target_group": GREEN, "weight": 0 },
        ] }))
            .contains("every forward weight is 0")
        );
        // An unknown weight (a reference) may be anything: not "all zero".
        assert!(
            check_action(&json!({ "forward": [
            { "target_group": null, "weight": 0 }, { "target_group": null, "weight": null },
        ] }))
            .is_ok()
        );
        assert!(
            err(json!({ "forward": [{ "target_group": BLUE }, { "target_group": BLUE }] }))
                .contains("twice")
        );
        assert!(err(json!({ "fixed_response": { "status_code": "302" } })).contains("2XX"));
        assert!(err(json!({ "redirect": { "protocol": "FTP" } })).contains("HTTPS"));
    }

    #[test]
    fn https_needs_a_certificate() {
        let p = AlbListener;
        let d = |pairs: &[(&str, Value)]| -> BTreeMap<String, Desired> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Desired::Known(v.clone())))
                .collect()
        };
        assert!(
            p.check_change(None, &d(&[("protocol", json!("HTTPS"))]))
                .unwrap_err()
                .contains("certificate_arn")
        );
        assert!(
            p.check_change(
                None,
                &d(&[
                    ("protocol", json!("HTTPS")),
                    ("certificate_arn", json!("arn:aws:acm:x"))
                ])
            )
            .is_ok()
        );
        let mut unknown = d(&[("protocol", json!("HTTPS"))]);
        unknown.insert("certificate_arn".into(), Desired::Unknown);
        assert!(p.check_change(None, &unknown).is_ok());
        assert!(
            p.check_change(
                None,
                &d(&[("protocol", json!("HTTP")), ("ssl_policy", json!("x"))])
            )
            .unwrap_err()
            .contains("only for HTTPS")
        );
    }
}
