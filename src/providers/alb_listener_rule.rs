//! `alb_listener_rule`: a prioritised rule of a listener — conditions and an action.
//!
//! Conditions (`path_pattern`, `host_header`, `http_header`) are sets: values are sorted and
//! AWS's order of conditions never shows as a diff. The action has the listener's shape
//! (`alb_listener.rs`). Priority changes through SetRulePriorities, conditions and action
//! through ModifyRule; the listener replaces. Priorities must be unique per listener,
//! which the stack checks across resources (src/stack/checks.rs). The ARN is AWS's; the
//! create tags it for adoption like every ELBv2 kind (see `alb.rs`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    HostHeaderConditionConfig, HttpHeaderConditionConfig, PathPatternConditionConfig, Rule,
    RuleCondition, RulePriorityPair,
};
use serde_json::{Value, json};

use super::alb::{create_tags, elbv2, find_tagged, sync_tags, tags_of, user_tags};
use super::alb_listener::{
    ACTION, action_of, actions_value, all_listeners, canonical_action, check_action,
};
use super::toolkit::{read_back, tags_value};
use super::{Attr, Aws, AwsError, Cx, Live, Provider, Result, Schema, Ty, aws_err};
use crate::value::{Attrs, Desired, Resolved};

pub struct AlbListenerRule;

/// AWS counts every value of every condition; a rule holds at most five.
const MAX_VALUES: usize = 5;

static HTTP_HEADER: &[Attr] = &[
    Attr::new("name", Ty::String, "Header name, e.g. \"X-Canary\".").required(),
    Attr::new(
        "values",
        Ty::StringList,
        "Values that match (wildcards * and ?).",
    )
    .required(),
];

static CONDITIONS: &[Attr] = &[
    Attr::new(
        "path_pattern",
        Ty::StringList,
        "Paths that match, e.g. [\"/api/*\"].",
    ),
    Attr::new(
        "host_header",
        Ty::StringList,
        "Host names that match, e.g. [\"api.example.com\"].",
    ),
    Attr::new(
        "http_header",
        Ty::Blocks(HTTP_HEADER),
        "Headers that match: [{ name = \"X-Canary\", values = [\"1\"] }].",
    ),
];

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new(
            "listener",
            Ty::String,
            "The listener's ARN: \"${alb_listener.NAME.arn}\".",
        )
        .required()
        .force_new(),
        Attr::new(
            "priority",
            Ty::Int,
            "1-50000, unique per listener; lower is evaluated first.",
        )
        .required(),
        Attr::new(
            "conditions",
            Ty::Table(CONDITIONS),
            "When the rule applies: { path_pattern = [...], host_header = [...], http_header = [...] }; all must match.",
        )
        .required(),
        Attr::new(
            "action",
            Ty::Table(ACTION),
            "What matching requests get, as a listener's default_action.",
        )
        .required(),
        Attr::new("tags", Ty::StringMap, "Tags."),
    ],
    outputs: &["arn"],
};

#[async_trait]
impl Provider for AlbListenerRule {
    fn kind(&self) -> &'static str {
        "alb_listener_rule"
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
            "action" => canonical_action(v),
            "conditions" => canonical_conditions(v),
            _ => v.clone(),
        }
    }

    fn check_attr(&self, attr: &str, value: &Value) -> std::result::Result<(), String> {
        match (attr, value) {
            ("priority", Value::Number(n)) => match n.as_i64() {
                Some(1..=50000) => Ok(()),
                _ => Err(format!("priority {n} is out of range: use 1 to 50000")),
            },
            ("action", v) => check_action(v),
            ("conditions", Value::Object(m)) => {
                let lists = |k: &str| m.get(k).and_then(Value::as_array).map(Vec::len);
                let headers = m.get("http_header").and_then(Value::as_array);
                let mut count =
                    lists("path_pattern").unwrap_or(0) + lists("host_header").unwrap_or(0);
                for h in headers.into_iter().flatten() {
                    let n = h
                        .get("values")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    if n == 0 {
                        return Err("an http_header condition needs at least one value".into());
                    }
                    count += n;
                }
                for k in ["path_pattern", "host_header"] {
                    if lists(k) == Some(0) {
                        return Err(format!(
                            "{k} = [] matches nothing: give values or remove it"
                        ));
                    }
                }
                if count == 0 {
                    return Err(
                        "a rule needs at least one condition: path_pattern, host_header or http_header"
                            .into(),
                    );
                }
                if count > MAX_VALUES {
                    return Err(format!(
                        "a rule matches at most {MAX_VALUES} values across its conditions, found {count}: split it into several rules"
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn find_created(
        &self,
        cx: &Cx<'_>,
        address: &str,
        lineage: &str,
    ) -> Result<Option<Live>> {
        let mut arns = Vec::new();
        for l in all_listeners(cx.aws).await? {
            let Some(l) = l.listener_arn() else { continue };
            let out = elbv2(cx.aws)
                .describe_rules()
                .listener_arn(l)
                .send()
                .await
                .map_err(aws_err)?;
            arns.extend(
                out.rules()
                    .iter()
                    .filter(|r| r.is_default() != Some(true))
                    .filter_map(|r| r.rule_arn().map(str::to_owned)),
            );
        }
        match find_tagged(cx.aws, &arns, address, lineage).await? {
            Some(arn) => self.read(cx, &arn).await,
            None => Ok(None),
        }
    }

    async fn read(&self, cx: &Cx<'_>, id: &str) -> Result<Option<Live>> {
        let Some(rule) = describe(cx.aws, id).await? else {
            return Ok(None);
        };
        let tags = if cx.wants("tags") {
            Some(user_tags(&tags_of(cx.aws, id).await?))
        } else {
            None
        };
        Ok(Some(live_of(&rule, id, tags.as_ref())))
    }

    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live> {
        let listener = input
            .str("listener")
            .ok_or_else(|| AwsError::local("alb_listener_rule: listener is required"))?;
        let out = elbv2(cx.aws)
            .create_rule()
            .listener_arn(listener)
            .priority(priority_of(input)?)
            .set_conditions(Some(conditions_of(input)))
            .actions(action_of(input, "action")?)
            .set_tags(Some(create_tags(cx, input)))
            .send()
            .await
            .map_err(aws_err);
        let arn = match out {
            Ok(out) => out
                .rules()
                .first()
                .and_then(|r| r.rule_arn())
                .ok_or_else(|| AwsError::local("CreateRule returned no ARN"))?
                .to_owned(),
            // A retry after a lost reply meets its own first attempt at the priority: ours
            // only when it carries this address and lineage.
            Err(e) if e.is("PriorityInUse") => {
                let priority = priority_of(input)?.to_string();
                let out = elbv2(cx.aws)
                    .describe_rules()
                    .listener_arn(listener)
                    .send()
                    .await
                    .map_err(aws_err)?;
                let taken: Vec<String> = out
                    .rules()
                    .iter()
                    .filter(|r| r.priority() == Some(priority.as_str()))
                    .filter_map(|r| r.rule_arn().map(str::to_owned))
                    .collect();
                match find_tagged(cx.aws, &taken, cx.address, cx.lineage).await? {
                    Some(arn) => arn,
                    None => {
                        return Err(AwsError::local(format!(
                            "priority {priority} of listener {listener} is taken by a rule this stack did not create: choose another priority or import that rule ({e})"
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
        let has = |a: &str| changed.iter().any(|c| c == a);
        if has("priority") {
            elbv2(cx.aws)
                .set_rule_priorities()
                .rule_priorities(
                    RulePriorityPair::builder()
                        .rule_arn(id)
                        .priority(priority_of(input)?)
                        .build(),
                )
                .send()
                .await
                .map_err(aws_err)?;
        }
        if has("conditions") || has("action") {
            elbv2(cx.aws)
                .modify_rule()
                .rule_arn(id)
                .set_conditions(Some(conditions_of(input)))
                .actions(action_of(input, "action")?)
                .send()
                .await
                .map_err(aws_err)?;
        }
        if has("tags") {
            let have = user_tags(&tags_of(cx.aws, id).await?);
            sync_tags(cx.aws, id, &have, &input.string_map("tags")).await?;
        }
        if let Some(other) = changed.iter().find(|c| c.as_str() == "listener") {
            return Err(AwsError::local(format!(
                "alb_listener_rule {id}: {other} cannot change in place (the rule must be replaced)"
            )));
        }
        read_back(self, cx, id).await
    }

    async fn delete(&self, cx: &Cx<'_>, id: &str, _prior: &Attrs) -> Result<()> {
        match elbv2(cx.aws).delete_rule().rule_arn(id).send().await {
            Ok(_) => Ok(()),
            Err(e) => match aws_err(e) {
                e if e.is("RuleNotFound") || e.is("ListenerNotFound") => Ok(()),
                e => Err(e),
            },
        }
    }
}

fn priority_of(input: &Resolved) -> Result<i32> {
    input
        .int("priority")
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| AwsError::local("alb_listener_rule: priority is required"))
}

fn sorted_strings(v: Option<&Value>) -> Vec<Value> {
    let mut out: Vec<String> = v
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    out.sort();
    out.dedup();
    out.into_iter().map(Value::String).collect()
}

/// Conditions as a set: only the kinds given, values sorted, headers by name.
fn canonical_conditions(v: &Value) -> Value {
    let Value::Object(m) = v else {
        return v.clone();
    };
    // An unknown value (a reference at load) keeps its shape.
    if m.values()
        .any(|v| v.as_array().is_some_and(|a| a.iter().any(Value::is_null)))
    {
        return v.clone();
    }
    let mut out = serde_json::Map::new();
    for k in ["path_pattern", "host_header"] {
        let values = sorted_strings(m.get(k));
        if !values.is_empty() {
            out.insert(k.into(), Value::Array(values));
        }
    }
    if let Some(Value::Array(headers)) = m.get("http_header") {
        let mut hs: Vec<Value> = headers
            .iter()
            .map(|h| {
                json!({
                    "name": h.get("name").cloned().unwrap_or(Value::Null),
                    "values": sorted_strings(h.get("values")),
                })
            })
            .collect();
        hs.sort_by_key(|h| h.to_string());
        if !hs.is_empty() {
            out.insert("http_header".into(), Value::Array(hs));
        }
    }
    Value::Object(out)
}

fn conditions_of(input: &Resolved) -> Vec<RuleCondition> {
    let c = canonical_conditions(input.attrs.get("conditions").unwrap_or(&json!({})));
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let mut out = Vec::new();
    if let Some(p) = c.get("path_pattern") {
        out.push(
            RuleCondition::builder()
                .field("path-pattern")
                .path_pattern_config(
                    PathPatternConditionConfig::builder()
                        .set_values(Some(strings(p)))
                        .build(),
                )
                .build(),
        );
    }
    if let Some(h) = c.get("host_header") {
        out.push(
            RuleCondition::builder()
                .field("host-header")
                .host_header_config(
                    HostHeaderConditionConfig::builder()
                        .set_values(Some(strings(h)))
                        .build(),
                )
                .build(),
        );
    }
    for h in c
        .get("http_header")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(
            RuleCondition::builder()
                .field("http-header")
                .http_header_config(
                    HttpHeaderConditionConfig::builder()
                        .set_http_header_name(h["name"].as_str().map(str::to_owned))
                        .set_values(Some(strings(&h["values"])))
                        .build(),
                )
                .build(),
        );
    }
    out
}

/// AWS's conditions in the stack's shape; a value may sit in the config or in `Values`.
fn conditions_value(conds: &[RuleCondition]) -> Value {
    let mut paths = Vec::new();
    let mut hosts = Vec::new();
    let mut headers = Vec::new();
    for c in conds {
        let plain = c.values().to_vec();
        match c.field() {
            Some("path-pattern") => paths.extend(
                c.path_pattern_config()
                    .map(|p| p.values().to_vec())
                    .filter(|v| !v.is_empty())
                    .unwrap_or(plain),
            ),
            Some("host-header") => hosts.extend(
                c.host_header_config()
                    .map(|h| h.values().to_vec())
                    .filter(|v| !v.is_empty())
                    .unwrap_or(plain),
            ),
            Some("http-header") => {
                if let Some(h) = c.http_header_config() {
                    headers.push(json!({
                        "name": h.http_header_name().unwrap_or_default(),
                        "values": h.values(),
                    }));
                }
            }
            _ => {}
        }
    }
    canonical_conditions(&json!({
        "path_pattern": paths,
        "host_header": hosts,
        "http_header": headers,
    }))
}

async fn describe(aws: &Aws, arn: &str) -> Result<Option<Rule>> {
    match elbv2(aws).describe_rules().rule_arns(arn).send().await {
        Ok(out) => Ok(out.rules().first().cloned()),
        Err(e) => match aws_err(e) {
            e if e.is("RuleNotFound") || e.is("ListenerNotFound") || e.is("ValidationError") => {
                Ok(None)
            }
            e => Err(e),
        },
    }
}

fn live_of(r: &Rule, arn: &str, tags: Option<&BTreeMap<String, String>>) -> Live {
    let mut a = Attrs::new();
    // A rule's ARN is its listener's with `listener-rule` and one more path segment.
    if let Some((listener, _)) = arn
        .replacen(":listener-rule/", ":listener/", 1)
        .rsplit_once('/')
    {
        a.insert("listener".into(), json!(listener));
    }
    if let Some(p) = r.priority().and_then(|p| p.parse::<i64>().ok()) {
        a.insert("priority".into(), json!(p));
    }
    a.insert("conditions".into(), conditions_value(r.conditions()));
    a.insert("action".into(), actions_value(r.actions()));
    if let Some(tags) = tags {
        a.insert("tags".into(), tags_value(tags));
    }
    a.insert("arn".into(), json!(arn));
    Live {
        id: arn.to_owned(),
        attrs: a,
        private: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_a_set() {
        let p = AlbListenerRule;
        let written = json!({ "path_pattern": ["/b/*", "/a/*"], "http_header": [
            { "name": "X-Z", "values": ["2", "1"] }, { "name": "X-A", "values": ["1"] },
        ] });
        let reported = conditions_value(&[
            RuleCondition::builder()
                .field("http-header")
                .http_header_config(
                    HttpHeaderConditionConfig::builder()
                        .http_header_name("X-A")
                        .values("1")
                        .build(),
                )
                .build(),
            RuleCondition::builder()
                .field("path-pattern")
                .values("/a/*")
                .values("/b/*")
                .build(),
            RuleCondition::builder()
                .field("http-header")
                .http_header_config(
                    HttpHeaderConditionConfig::builder()
                        .http_header_name("X-Z")
                        .values("1")
                        .values("2")
                        .build(),
                )
                .build(),
        ]);
        assert_eq!(p.canonical("conditions", &written), reported);
    }

    #[test]
    fn priorities_and_conditions_are_checked() {
        let p = AlbListenerRule;
        assert!(
            p.check_attr("priority", &json!(0))
                .unwrap_err()
                .contains("1 to 50000")
        );
        assert!(p.check_attr("priority", &json!(50001)).is_err());
        assert!(p.check_attr("priority", &json!(100)).is_ok());
        assert!(
            p.check_attr("conditions", &json!({}))
                .unwrap_err()
                .contains("at least one condition")
        );
        assert!(
            p.check_attr("conditions", &json!({ "path_pattern": [] }))
                .is_err()
        );
        let six = json!({ "path_pattern": ["/1", "/2", "/3"], "host_header": ["a", "b", "c"] });
        assert!(
            p.check_attr("conditions", &six)
                .unwrap_err()
                .contains("at most 5")
        );
        assert!(
            p.check_attr("conditions", &json!({ "path_pattern": [null] }))
                .is_ok()
        );
    }
}
