//! `cloudwatch_alarm`: a CloudWatch metric alarm, on one metric or on metric math.
//!
//! The single-metric form names `namespace`, `metric`, `dimensions`, a `statistic` or
//! `extended_statistic` and a `period`; the metric-math form lists
//! `[[cloudwatch_alarm.x.query]]` blocks (metrics and expressions such as
//! `"100 * errors / requests"`), exactly one of which returns the alarm's data. Both are
//! validated at plan time, before any AWS call. PutMetricAlarm replaces an alarm's whole
//! configuration, so every update sends all of it; tags, which PutMetricAlarm takes only
//! on create, change through TagResource / UntagResource. The name is the id; a new name
//! is a new alarm, created before the old one is deleted.
//!
//! What AWS fills in is read back in the stack's spelling (`comparison = ">"`,
//! `treat_missing_data = "missing"`, `datapoints_to_alarm` equal to
//! `evaluation_periods`, `return_data = false`, whole-number thresholds as integers), so
//! a fresh apply plans to no changes.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricAlarm, MetricDataQuery, MetricStat, Statistic, Tag,
};
use serde_json::{Map, Value, json};

use super::schema::Default;
use super::toolkit::{read_back, tags_value};
use super::{
    Attr, Aws, AwsError, ChangeNotes, Cx, Live, PlannedChange, Provider, Result, Schema, Ty,
    aws_err,
};
use crate::value::{Attrs, Desired, Resolved, string_map};

pub struct CloudwatchAlarm;

crate::sdk_client!(aws_sdk_cloudwatch);

fn cw(aws: &Aws) -> aws_sdk_cloudwatch::Client {
    aws.client()
}

const STATISTICS: &[&str] = &["Average", "Sum", "Minimum", "Maximum", "SampleCount"];

/// The stack's comparison spellings and AWS's names for them.
const COMPARISONS: &[(&str, &str)] = &[
    (">", "GreaterThanThreshold"),
    (">=", "GreaterThanOrEqualToThreshold"),
    ("<", "LessThanThreshold"),
    ("<=", "LessThanOrEqualToThreshold"),
];

static QUERY: &[Attr] = &[
    Attr::new(
        "id",
        Ty::String,
        "Short name other queries' expressions use (starts with a lowercase letter).",
    )
    .required(),
    Attr::new(
        "metric",
        Ty::String,
        "Metric name (with namespace, stat and period), e.g. \"RequestCount\".",
    ),
    Attr::new("namespace", Ty::String, "The metric's namespace."),
    Attr::new("dimensions", Ty::StringMap, "The metric's dimensions."),
    Attr::new(
        "stat",
        Ty::String,
        "Statistic of the metric: Sum, Average, … or a percentile such as \"p95\".",
    ),
    Attr::new(
        "period",
        Ty::Int,
        "Seconds per datapoint (10, 30 or a multiple of 60).",
    ),
    Attr::new(
        "expression",
        Ty::String,
        "Metric math over other queries' ids, e.g. \"100 * errors / requests\".",
    ),
    Attr::new("label", Ty::String, "Label shown in the console."),
    Attr::new(
        "return_data",
        Ty::Bool,
        "Whether this query is the alarm's value (exactly one is).",
    )
    .default(Default::Bool(false)),
];

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new("name", Ty::String, "Alarm name, unique in the region.")
            .required()
            .force_new(),
        Attr::new("description", Ty::String, "The alarm's description."),
        Attr::new(
            "namespace",
            Ty::String,
            "Metric namespace, e.g. \"AWS/ApplicationELB\" (single-metric form).",
        ),
        Attr::new(
            "metric",
            Ty::String,
            "Metric name, e.g. \"TargetResponseTime\" (single-metric form).",
        ),
        Attr::new(
            "dimensions",
            Ty::StringMap,
            "Metric dimensions, e.g. { LoadBalancer = \"${alb.web.arn_suffix}\" }.",
        ),
        Attr::new(
            "statistic",
            Ty::Enum(STATISTICS),
            "Average, Sum, Minimum, Maximum or SampleCount (or extended_statistic).",
        ),
        Attr::new(
            "extended_statistic",
            Ty::String,
            "A percentile such as \"p95\" or \"p99.9\" (or statistic).",
        ),
        Attr::new(
            "period",
            Ty::Int,
            "Seconds per datapoint: 10, 30 or a multiple of 60 (single-metric form).",
        ),
        Attr::new(
            "evaluation_periods",
            Ty::Int,
            "How many recent periods are evaluated (1 or more).",
        )
        .required(),
        Attr::new(
            "datapoints_to_alarm",
            Ty::Int,
            "How many of them must breach (default: evaluation_periods).",
        ),
        Attr::new("threshold", Ty::Number, "The value compared with.").required(),
        Attr::new(
            "comparison",
            Ty::String,
            "\">\", \">=\", \"<\" or \"<=\": how the value compares with the threshold to alarm.",
        )
        .required(),
        Attr::new(
            "treat_missing_data",
            Ty::Enum(&["missing", "ignore", "breaching", "notBreaching"]),
            "How periods without data count.",
        )
        .default(Default::Str("missing")),
        Attr::new(
            "alarm_actions",
            Ty::StringList,
            "ARNs notified on entering ALARM (SNS topics, …).",
        ),
        Attr::new(
            "ok_actions",
            Ty::StringList,
            "ARNs notified on returning to OK.",
        ),
        Attr::new(
            "query",
            Ty::Blocks(QUERY),
            "Metric math: metrics and expressions, exactly one returning data.",
        ),
        Attr::new("tags", Ty::StringMap, "Tags."),
    ],
    outputs: &["arn"],
};

/// The single-metric attributes, which `query` blocks replace.
const SINGLE_METRIC: &[&str] = &[
    "namespace",
    "metric",
    "dimensions",
    "statistic",
    "extended_statistic",
    "period",
];

#[async_trait]
impl Provider for CloudwatchAlarm {
    fn kind(&self) -> &'static str {
        "cloudwatch_alarm"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn canonical(&self, attr: &str, v: &Value) -> Value {
        match (attr, v) {
            ("threshold", Value::Number(_)) => number(v),
            ("comparison", Value::String(s)) => json!(comparison_symbol(s)),
            ("alarm_actions" | "ok_actions", Value::Array(items)) => {
                let set: BTreeSet<String> = items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect();
                json!(set)
            }
            ("query", Value::Array(_)) => canonical_queries(v),
            _ => v.clone(),
        }
    }

    fn check_attr(&self, attr: &str, value: &Value) -> std::result::Result<(), String> {
        match (attr, value) {
            ("name", Value::String(n)) => {
                if n.is_empty() || n.chars().count() > 255 {
                    return Err(format!(
                        "an alarm name has 1 to 255 characters, not {}",
                        n.chars().count()
                    ));
                }
                match n.chars().find(|c| c.is_control()) {
                    Some(c) => Err(format!(
                        "{c:?} is not allowed in an alarm name: control characters are refused"
                    )),
                    None => Ok(()),
                }
            }
            ("comparison", Value::String(s)) => check_comparison(s),
            ("extended_statistic", Value::String(s)) => check_extended_statistic(s),
            ("period", Value::Number(n)) => check_period(n.as_i64()),
            ("evaluation_periods", Value::Number(n)) => match n.as_i64() {
                Some(e) if e >= 1 => Ok(()),
                _ => Err(format!(
                    "{n} periods: an alarm evaluates at least 1 (evaluation_periods = 1 or more)"
                )),
            },
            ("datapoints_to_alarm", Value::Number(n)) => match n.as_i64() {
                Some(d) if d >= 1 => Ok(()),
                _ => Err(format!(
                    "{n} datapoints: at least 1 must breach (datapoints_to_alarm = 1 or more)"
                )),
            },
            ("threshold", Value::Number(n)) if n.as_f64().is_none_or(|f| !f.is_finite()) => {
                Err(format!("{n} is not a threshold CloudWatch can store"))
            }
            ("query", Value::Array(blocks)) => check_queries(blocks),
            _ => Ok(()),
        }
    }

    fn check_change(
        &self,
        _prior: Option<&Attrs>,
        desired: &BTreeMap<String, Desired>,
    ) -> std::result::Result<ChangeNotes, String> {
        check_form(desired)?;
        Ok(ChangeNotes::default())
    }

    fn plan_change(
        &self,
        prior: Option<&Attrs>,
        desired: &BTreeMap<String, Desired>,
        changed: &[String],
    ) -> std::result::Result<PlannedChange, String> {
        let notes = self.check_change(prior, desired)?;
        Ok(PlannedChange {
            // A new name is a second alarm beside the old one: create it first, so the
            // metric is never unwatched.
            create_before_destroy: changed.iter().any(|c| c == "name"),
            requires_replace: changed.iter().filter(|c| *c == "name").cloned().collect(),
            notes,
        })
    }

    async fn read(&self, cx: &Cx<'_>, id: &str) -> Result<Option<Live>> {
        let Some(alarm) = describe(cx.aws, id).await? else {
            return Ok(None);
        };
        let tags = match (cx.wants("tags"), alarm.alarm_arn()) {
            (true, Some(arn)) => Some(list_tags(cx.aws, arn).await?),
            _ => None,
        };
        Ok(Some(live_of(&alarm, tags.as_ref())))
    }

    /// DescribeAlarms takes up to 100 names; tags still take a call per alarm, so an alarm
    /// whose tags are managed is read alone.
    fn batch_size(&self) -> usize {
        100
    }

    fn batchable(&self, wanted: Option<&std::collections::BTreeSet<String>>) -> bool {
        wanted.is_some_and(|w| !w.contains("tags"))
    }

    async fn read_many(
        &self,
        cx: &Cx<'_>,
        items: &[(&str, Option<&std::collections::BTreeSet<String>>)],
    ) -> Result<Vec<Option<Live>>> {
        let mut found: BTreeMap<String, MetricAlarm> = BTreeMap::new();
        let mut pages = cw(cx.aws)
            .describe_alarms()
            .set_alarm_names(Some(items.iter().map(|(n, _)| (*n).to_owned()).collect()))
            .max_records(100)
            .into_paginator()
            .send();
        while let Some(page) = pages.try_next().await.map_err(aws_err)? {
            for a in page.metric_alarms() {
                if let Some(n) = a.alarm_name() {
                    found.insert(n.to_owned(), a.clone());
                }
            }
        }
        futures::future::try_join_all(items.iter().map(|(name, wanted)| {
            let alarm = found.get(*name);
            async move {
                let Some(alarm) = alarm else {
                    return Ok(None);
                };
                let wants_tags = wanted.is_none_or(|w| w.contains("tags"));
                let tags = match (wants_tags, alarm.alarm_arn()) {
                    (true, Some(arn)) => Some(list_tags(cx.aws, arn).await?),
                    _ => None,
                };
                Ok(Some(live_of(alarm, tags.as_ref())))
            }
        }))
        .await
    }

    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live> {
        let name = input
            .str("name")
            .ok_or_else(|| AwsError::local("cloudwatch_alarm: name is required"))?;
        // PutMetricAlarm overwrites an alarm of that name without a word: never take over
        // one that appeared since the plan. (A retry of the put after a lost reply is the
        // same upsert again, so it converges with no check of its own.)
        if describe(cx.aws, name).await?.is_some() {
            return Err(AwsError::new(
                Some("AlarmAlreadyExists"),
                format!(
                    "alarm {name} already exists but is not {}'s: import it (stackwright import … {} {name}) or choose another name",
                    cx.address, cx.address
                ),
            ));
        }
        let tags: Vec<Tag> = input
            .string_map("tags")
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        put_alarm(cx.aws, input)?
            .set_tags((!tags.is_empty()).then_some(tags))
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
        if changed.iter().any(|c| c == "name") {
            return Err(AwsError::local(format!(
                "cloudwatch_alarm {id}: the name cannot change in place (the alarm must be replaced)"
            )));
        }
        if changed.iter().any(|c| c != "tags") {
            put_alarm(cx.aws, input)?.send().await.map_err(aws_err)?;
        }
        if changed.iter().any(|c| c == "tags") {
            let alarm = describe(cx.aws, id)
                .await?
                .ok_or_else(|| AwsError::local(format!("alarm {id} no longer exists")))?;
            let arn = alarm.alarm_arn().unwrap_or_default();
            let have = list_tags(cx.aws, arn).await?;
            sync_tags(cx.aws, arn, &have, &input.string_map("tags")).await?;
        }
        read_back(self, cx, id).await
    }

    async fn delete(&self, cx: &Cx<'_>, id: &str, _prior: &Attrs) -> Result<()> {
        match cw(cx.aws).delete_alarms().alarm_names(id).send().await {
            Ok(_) => Ok(()),
            Err(e) => match aws_err(e) {
                e if e.is("ResourceNotFound") => Ok(()),
                e => Err(e),
            },
        }
    }
}

/// A number in one form: whole values as integers (5 and 5.0 are one threshold).
fn number(v: &Value) -> Value {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => json!(f as i64),
        Some(f) => json!(f),
        None => v.clone(),
    }
}

fn comparison_symbol(s: &str) -> &str {
    COMPARISONS
        .iter()
        .find(|(_, aws)| *aws == s)
        .map_or(s, |(sym, _)| sym)
}

fn comparison_aws(s: &str) -> Option<&'static str> {
    COMPARISONS
        .iter()
        .find(|(sym, _)| *sym == s)
        .map(|(_, aws)| *aws)
}

fn check_comparison(s: &str) -> std::result::Result<(), String> {
    if comparison_aws(s).is_some() {
        return Ok(());
    }
    let suggestion = match s {
        "=>" | "≥" => Some(">="),
        "=<" | "≤" => Some("<="),
        "gt" => Some(">"),
        "lt" => Some("<"),
        _ => COMPARISONS
            .iter()
            .find(|(_, aws)| aws.eq_ignore_ascii_case(s))
            .map(|(sym, _)| *sym),
    };
    let known = "write \">\", \">=\", \"<\" or \"<=\"";
    match suggestion {
        Some(sym) => Err(format!(
            "\"{s}\" is not a comparison: {known} (did you mean \"{sym}\"?)"
        )),
        None => Err(format!("\"{s}\" is not a comparison: {known}")),
    }
}

/// `p95`, `p99.9`, and the trimmed forms `tm90`, `wm99`, `tc(10:90)`, `TM(2%:98%)`, `IQM`.
fn check_extended_statistic(s: &str) -> std::result::Result<(), String> {
    let bad = || {
        format!(
            "\"{s}\" is not an extended statistic: write a percentile such as \"p95\" or \"p99.9\" (Average, Sum, … go in statistic)"
        )
    };
    if s.eq_ignore_ascii_case("iqm") {
        return Ok(());
    }
    let lower = s.to_ascii_lowercase();
    let rest = ["tm", "wm", "tc", "ts", "pr", "p"]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
        .ok_or_else(bad)?;
    if rest.starts_with('(') && rest.ends_with(')') {
        return Ok(());
    }
    match rest.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) && !rest.starts_with(['+', '-']) => Ok(()),
        _ => Err(bad()),
    }
}

fn check_period(p: Option<i64>) -> std::result::Result<(), String> {
    match p {
        Some(10 | 30) => Ok(()),
        Some(p) if p > 0 && p % 60 == 0 => Ok(()),
        _ => Err(format!(
            "{} seconds is not a period CloudWatch evaluates: use 10, 30 or a multiple of 60",
            p.map_or("?".into(), |p| p.to_string())
        )),
    }
}

/// A query's stat: a basic statistic or an extended one.
fn check_stat(s: &str) -> std::result::Result<(), String> {
    if STATISTICS.contains(&s) {
        return Ok(());
    }
    check_extended_statistic(s).map_err(|_| {
        format!("\"{s}\" is not a statistic: use Average, Sum, Minimum, Maximum, SampleCount or a percentile such as \"p95\"")
    })
}

/// Whether an id may name a query: a lowercase letter, then letters, digits and `_`.
fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The query ids an expression refers to: identifiers starting with a lowercase letter
/// (functions such as `SUM` and `FILL` are upper case), outside quoted strings.
fn expression_refs(expr: &str) -> Vec<String> {
    let mut refs = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' || c == '"' {
            for d in chars.by_ref() {
                if d == c {
                    break;
                }
            }
        } else if c.is_ascii_digit() || c == '.' {
            // A number, exponent included (1e3).
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '.')
            {
                chars.next();
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut word = c.to_string();
            while let Some(d) = chars
                .peek()
                .filter(|d| d.is_ascii_alphanumeric() || **d == '_')
            {
                word.push(*d);
                chars.next();
            }
            if c.is_ascii_lowercase() {
                refs.push(word);
            }
        }
    }
    refs
}

/// The `[[query]]` blocks' shape, with references as `null` at load and resolved at plan.
fn check_queries(blocks: &[Value]) -> std::result::Result<(), String> {
    if blocks.is_empty() {
        return Err(
            "metric math needs at least one [[query]] block (or drop query for the single-metric form)"
                .into(),
        );
    }
    let mut ids: Vec<&str> = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let Some(m) = b.as_object() else { continue };
        let at = |why: String| format!("query {}: {why}", i + 1);
        let Some(id) = m.get("id").and_then(Value::as_str) else {
            continue;
        };
        if !valid_id(id) {
            return Err(at(format!(
                "id \"{id}\" must start with a lowercase letter and hold only letters, digits and _ (e.g. \"errors\")"
            )));
        }
        if ids.contains(&id) {
            return Err(at(format!(
                "id \"{id}\" is used twice: give each query its own id"
            )));
        }
        ids.push(id);
        let metric = m.contains_key("metric");
        let expression = m.contains_key("expression");
        match (metric, expression) {
            (true, true) => {
                return Err(at(format!(
                    "\"{id}\" has both metric and expression: a query is one or the other"
                )));
            }
            (false, false) => {
                return Err(at(format!(
                    "\"{id}\" needs metric (with namespace, stat and period) or expression"
                )));
            }
            (true, false) => {
                for k in ["namespace", "stat", "period"] {
                    if !m.contains_key(k) {
                        return Err(at(format!("metric query \"{id}\" needs {k}")));
                    }
                }
                if let Some(Value::String(s)) = m.get("stat") {
                    check_stat(s).map_err(&at)?;
                }
            }
            (false, true) => {
                for k in ["namespace", "stat", "dimensions"] {
                    if m.contains_key(k) {
                        return Err(at(format!(
                            "{k} belongs to a metric query; expression \"{id}\" computes from other queries' ids"
                        )));
                    }
                }
            }
        }
        if let Some(Value::Number(p)) = m.get("period") {
            check_period(p.as_i64()).map_err(&at)?;
        }
    }
    for (i, b) in blocks.iter().enumerate() {
        let Some(Value::String(expr)) = b.get("expression") else {
            continue;
        };
        let own = b.get("id").and_then(Value::as_str).unwrap_or("");
        for r in expression_refs(expr) {
            if r == own {
                return Err(format!(
                    "query {}: expression \"{expr}\" refers to its own id \"{own}\"",
                    i + 1
                ));
            }
            if !ids.contains(&r.as_str()) {
                return Err(format!(
                    "query {}: expression \"{expr}\" refers to \"{r}\", which no query has as id (ids: {})",
                    i + 1,
                    ids.join(", ")
                ));
            }
        }
    }
    let returning: Vec<&str> = blocks
        .iter()
        .filter(|b| b.get("return_data").and_then(Value::as_bool) == Some(true))
        .filter_map(|b| b.get("id").and_then(Value::as_str))
        .collect();
    match returning.as_slice() {
        [_] => Ok(()),
        [] => Err(
            "no query has return_data = true: mark the one whose value the alarm compares (usually the expression)"
                .into(),
        ),
        many => Err(format!(
            "{} queries have return_data = true ({}): exactly one is the alarm's value",
            many.len(),
            many.join(", ")
        )),
    }
}

/// The alarm's form as a whole: single metric xor metric math, and the counts.
fn check_form(desired: &BTreeMap<String, Desired>) -> std::result::Result<(), String> {
    let set = |k: &str| desired.contains_key(k);
    let known = |k: &str| desired.get(k).and_then(Desired::known);
    if set("query") {
        if let Some(k) = SINGLE_METRIC.iter().find(|k| set(k)) {
            return Err(format!(
                "{k} is part of the single-metric form, and this alarm uses [[query]] blocks: move it into a query (or drop the queries)"
            ));
        }
    } else {
        if !set("metric") {
            return Err(
                "the alarm watches nothing: set metric (with namespace, statistic and period) or add [[query]] blocks for metric math"
                    .into(),
            );
        }
        for k in ["namespace", "period"] {
            if !set(k) {
                return Err(format!("the single-metric form needs {k}"));
            }
        }
        match (set("statistic"), set("extended_statistic")) {
            (true, true) => {
                return Err(
                    "statistic and extended_statistic are both set: keep one (statistic = \"Average\", or extended_statistic = \"p95\")"
                        .into(),
                );
            }
            (false, false) => {
                return Err(
                    "the alarm needs statistic (Average, Sum, Minimum, Maximum, SampleCount) or extended_statistic (\"p95\")"
                        .into(),
                );
            }
            _ => {}
        }
    }
    if let (Some(d), Some(e)) = (
        known("datapoints_to_alarm").and_then(Value::as_i64),
        known("evaluation_periods").and_then(Value::as_i64),
    ) && d > e
    {
        return Err(format!(
            "datapoints_to_alarm {d} is above evaluation_periods {e}: at most {e} of the last {e} periods can breach"
        ));
    }
    Ok(())
}

/// Queries sorted by id, each with its defaults spelled out and empty parts dropped.
fn canonical_queries(v: &Value) -> Value {
    let Value::Array(blocks) = v else {
        return v.clone();
    };
    let mut out: Vec<Value> = blocks
        .iter()
        .map(|b| {
            let Some(m) = b.as_object() else {
                return b.clone();
            };
            // Keys sorted, as the plan shows the stack's side.
            let mut q = BTreeMap::new();
            for (k, v) in m {
                let empty = match v {
                    Value::Null => true,
                    Value::String(s) => s.is_empty() && k == "label",
                    Value::Object(o) => o.is_empty(),
                    _ => false,
                };
                if !empty {
                    q.insert(k.clone(), v.clone());
                }
            }
            let rd = m
                .get("return_data")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            q.insert("return_data".into(), json!(rd));
            Value::Object(q.into_iter().collect())
        })
        .collect();
    out.sort_by(|a, b| {
        let id = |v: &Value| v.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
        id(a).cmp(&id(b))
    });
    Value::Array(out)
}

fn dimensions(v: Option<&Value>) -> Vec<Dimension> {
    string_map(v)
        .into_iter()
        .map(|(k, v)| Dimension::builder().name(k).value(v).build())
        .collect()
}

fn int32(v: Option<&Value>, what: &str) -> Result<Option<i32>> {
    v.and_then(Value::as_i64)
        .map(|n| {
            i32::try_from(n).map_err(|_| AwsError::local(format!("{what} {n} is out of range")))
        })
        .transpose()
}

fn queries(input: &Resolved) -> Result<Option<Vec<MetricDataQuery>>> {
    let Some(Value::Array(blocks)) = input.attrs.get("query") else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for b in blocks {
        let s = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_owned);
        let period = int32(b.get("period"), "period")?;
        let mut q = MetricDataQuery::builder()
            .set_id(s("id"))
            .set_label(s("label"))
            .return_data(
                b.get("return_data")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            );
        if let Some(metric) = s("metric") {
            q = q.metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .metric_name(metric)
                            .set_namespace(s("namespace"))
                            .set_dimensions(Some(dimensions(b.get("dimensions"))))
                            .build(),
                    )
                    .set_period(period)
                    .set_stat(s("stat"))
                    .build(),
            );
        } else {
            q = q.set_expression(s("expression")).set_period(period);
        }
        out.push(q.build());
    }
    Ok(Some(out))
}

/// The PutMetricAlarm of the alarm's whole configuration (what is not sent is reset).
fn put_alarm(
    aws: &Aws,
    input: &Resolved,
) -> Result<aws_sdk_cloudwatch::operation::put_metric_alarm::builders::PutMetricAlarmFluentBuilder>
{
    let name = input
        .str("name")
        .ok_or_else(|| AwsError::local("cloudwatch_alarm: name is required"))?;
    let comparison = input.str("comparison").unwrap_or_default();
    let operator = comparison_aws(comparison).ok_or_else(|| {
        AwsError::local(format!(
            "alarm {name}: comparison \"{comparison}\" is not >, >=, < or <="
        ))
    })?;
    let threshold = input
        .attrs
        .get("threshold")
        .and_then(Value::as_f64)
        .ok_or_else(|| AwsError::local(format!("alarm {name}: threshold is required")))?;
    let metrics = queries(input)?;
    let mut req = cw(aws)
        .put_metric_alarm()
        .alarm_name(name)
        .set_alarm_description(input.str("description").map(str::to_owned))
        .evaluation_periods(
            int32(input.attrs.get("evaluation_periods"), "evaluation_periods")?.unwrap_or(1),
        )
        .set_datapoints_to_alarm(int32(
            input.attrs.get("datapoints_to_alarm"),
            "datapoints_to_alarm",
        )?)
        .threshold(threshold)
        .comparison_operator(ComparisonOperator::from(operator))
        .set_treat_missing_data(input.str("treat_missing_data").map(str::to_owned))
        // Always sent: an empty list clears actions a previous version had.
        .set_alarm_actions(Some(input.string_list("alarm_actions")))
        .set_ok_actions(Some(input.string_list("ok_actions")));
    if metrics.is_some() {
        req = req.set_metrics(metrics);
    } else {
        req = req
            .set_namespace(input.str("namespace").map(str::to_owned))
            .set_metric_name(input.str("metric").map(str::to_owned))
            .set_statistic(input.str("statistic").map(Statistic::from))
            .set_extended_statistic(input.str("extended_statistic").map(str::to_owned))
            .set_period(int32(input.attrs.get("period"), "period")?)
            .set_dimensions(Some(dimensions(input.attrs.get("dimensions"))));
    }
    Ok(req)
}

async fn describe(aws: &Aws, name: &str) -> Result<Option<MetricAlarm>> {
    let out = cw(aws)
        .describe_alarms()
        .alarm_names(name)
        .send()
        .await
        .map_err(aws_err)?;
    Ok(out
        .metric_alarms()
        .iter()
        .find(|a| a.alarm_name() == Some(name))
        .cloned())
}

async fn list_tags(aws: &Aws, arn: &str) -> Result<BTreeMap<String, String>> {
    let out = cw(aws)
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(aws_err)?;
    Ok(out
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
        .collect())
}

async fn sync_tags(
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
        cw(aws)
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(set))
            .send()
            .await
            .map_err(aws_err)?;
    }
    if !unset.is_empty() {
        cw(aws)
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(unset))
            .send()
            .await
            .map_err(aws_err)?;
    }
    Ok(())
}

fn dimensions_value(dims: &[Dimension]) -> Value {
    crate::value::map_value(dims.iter().filter_map(|d| {
        Some((
            d.name()?.to_owned(),
            d.value().unwrap_or_default().to_owned(),
        ))
    }))
}

fn query_value(q: &MetricDataQuery) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(q.id().unwrap_or_default()));
    if let Some(stat) = q.metric_stat() {
        if let Some(metric) = stat.metric() {
            if let Some(n) = metric.metric_name() {
                m.insert("metric".into(), json!(n));
            }
            if let Some(ns) = metric.namespace() {
                m.insert("namespace".into(), json!(ns));
            }
            if !metric.dimensions().is_empty() {
                m.insert("dimensions".into(), dimensions_value(metric.dimensions()));
            }
        }
        if let Some(s) = stat.stat() {
            m.insert("stat".into(), json!(s));
        }
        if let Some(p) = stat.period() {
            m.insert("period".into(), json!(p));
        }
    }
    if let Some(e) = q.expression() {
        m.insert("expression".into(), json!(e));
    }
    if let Some(p) = q.period() {
        m.insert("period".into(), json!(p));
    }
    if let Some(l) = q.label().filter(|l| !l.is_empty()) {
        m.insert("label".into(), json!(l));
    }
    // GetMetricData's default is true, but this provider always sends it, so an absent
    // value is an alarm made elsewhere; false keeps one returning query the rule.
    m.insert(
        "return_data".into(),
        json!(q.return_data().unwrap_or(false)),
    );
    Value::Object(m)
}

fn live_of(a: &MetricAlarm, tags: Option<&BTreeMap<String, String>>) -> Live {
    let name = a.alarm_name().unwrap_or_default().to_owned();
    let mut m = Attrs::new();
    m.insert("name".into(), json!(name));
    if let Some(d) = a.alarm_description().filter(|d| !d.is_empty()) {
        m.insert("description".into(), json!(d));
    }
    if a.metrics().is_empty() {
        if let Some(ns) = a.namespace() {
            m.insert("namespace".into(), json!(ns));
        }
        if let Some(metric) = a.metric_name() {
            m.insert("metric".into(), json!(metric));
        }
        m.insert("dimensions".into(), dimensions_value(a.dimensions()));
        if let Some(s) = a.statistic() {
            m.insert("statistic".into(), json!(s.as_str()));
        }
        if let Some(s) = a.extended_statistic() {
            m.insert("extended_statistic".into(), json!(s));
        }
        if let Some(p) = a.period() {
            m.insert("period".into(), json!(p));
        }
    } else {
        let qs: Vec<Value> = a.metrics().iter().map(query_value).collect();
        m.insert("query".into(), canonical_queries(&Value::Array(qs)));
    }
    let evaluation = a.evaluation_periods().unwrap_or(1);
    m.insert("evaluation_periods".into(), json!(evaluation));
    // Unset, AWS alarms on every evaluated period breaching.
    m.insert(
        "datapoints_to_alarm".into(),
        json!(a.datapoints_to_alarm().unwrap_or(evaluation)),
    );
    if let Some(t) = a.threshold() {
        m.insert("threshold".into(), number(&json!(t)));
    }
    if let Some(op) = a.comparison_operator() {
        m.insert("comparison".into(), json!(comparison_symbol(op.as_str())));
    }
    m.insert(
        "treat_missing_data".into(),
        json!(a.treat_missing_data().unwrap_or("missing")),
    );
    let set = |v: &[String]| json!(v.iter().cloned().collect::<BTreeSet<_>>());
    m.insert("alarm_actions".into(), set(a.alarm_actions()));
    m.insert("ok_actions".into(), set(a.ok_actions()));
    if let Some(tags) = tags {
        m.insert("tags".into(), tags_value(tags));
    }
    if let Some(arn) = a.alarm_arn() {
        m.insert("arn".into(), json!(arn));
    }
    Live {
        id: name,
        attrs: m,
        private: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn desired(v: Value) -> BTreeMap<String, Desired> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), Desired::Known(v.clone())))
            .collect()
    }

    fn error_rate() -> Value {
        json!([
            { "id": "errors", "metric": "HTTPCode_Target_5XX_Count", "namespace": "AWS/ApplicationELB",
              "stat": "Sum", "period": 60, "return_data": false },
            { "id": "requests", "metric": "RequestCount", "namespace": "AWS/ApplicationELB",
              "stat": "Sum", "period": 60, "return_data": false },
            { "id": "rate", "expression": "100 * errors / requests", "label": "5xx %",
              "return_data": true },
        ])
    }

    #[test]
    fn comparisons_map_both_ways_and_misspellings_get_a_hint() {
        for (sym, aws) in COMPARISONS {
            assert_eq!(comparison_aws(sym), Some(*aws));
            assert_eq!(comparison_symbol(aws), *sym);
            assert!(check_comparison(sym).is_ok());
        }
        // An operator this kind does not write (anomaly bands) shows as AWS names it.
        assert_eq!(
            comparison_symbol("LessThanLowerThreshold"),
            "LessThanLowerThreshold"
        );
        let e = check_comparison("=>").unwrap_err();
        assert!(e.contains("did you mean \">=\""), "{e}");
        let e = check_comparison("GreaterThanThreshold").unwrap_err();
        assert!(e.contains("did you mean \">\""), "{e}");
        assert!(
            check_comparison("==")
                .unwrap_err()
                .contains("\">\", \">=\"")
        );
        let p = CloudwatchAlarm;
        assert_eq!(
            p.canonical("comparison", &json!("GreaterThanOrEqualToThreshold")),
            json!(">=")
        );
    }

    #[test]
    fn thresholds_and_action_lists_compare_in_one_form() {
        let p = CloudwatchAlarm;
        assert_eq!(p.canonical("threshold", &json!(5.0)), json!(5));
        assert_eq!(p.canonical("threshold", &json!(5)), json!(5));
        assert_eq!(p.canonical("threshold", &json!(0.5)), json!(0.5));
        assert_eq!(
            p.canonical("alarm_actions", &json!(["b", "a", "b"])),
            json!(["a", "b"])
        );
    }

    #[test]
    fn queries_compare_by_id_with_defaults_spelled_out() {
        let p = CloudwatchAlarm;
        let mut reordered = error_rate().as_array().unwrap().clone();
        reordered.reverse();
        // AWS leaves out a false return_data and empty dimensions.
        reordered[1].as_object_mut().unwrap().remove("return_data");
        reordered[1]
            .as_object_mut()
            .unwrap()
            .insert("dimensions".into(), json!({}));
        assert_eq!(
            p.canonical("query", &Value::Array(reordered)),
            p.canonical("query", &error_rate())
        );
    }

    #[test]
    fn statistics_and_periods_are_checked() {
        for ok in [
            "p95",
            "p99.9",
            "p0",
            "p100",
            "tm90",
            "TM(2%:98%)",
            "IQM",
            "wm99",
        ] {
            assert!(check_extended_statistic(ok).is_ok(), "{ok}");
        }
        for bad in ["95", "p101", "Average", "p-1", "px"] {
            let e = check_extended_statistic(bad).unwrap_err();
            assert!(e.contains("\"p95\""), "{bad}: {e}");
        }
        for ok in [10, 30, 60, 300, 86400] {
            assert!(check_period(Some(ok)).is_ok(), "{ok}");
        }
        for bad in [0, 45, 90, -60] {
            let e = check_period(Some(bad)).unwrap_err();
            assert!(e.contains("multiple of 60"), "{bad}: {e}");
        }
        let p = CloudwatchAlarm;
        assert!(p.check_attr("evaluation_periods", &json!(0)).is_err());
        assert!(p.check_attr("datapoints_to_alarm", &json!(0)).is_err());
        assert!(p.check_attr("evaluation_periods", &json!(3)).is_ok());
    }

    #[test]
    fn queries_are_checked_for_shape() {
        let p = CloudwatchAlarm;
        assert!(p.check_attr("query", &error_rate()).is_ok());
        let with = |i: usize, k: &str, v: Value| {
            let mut q = error_rate();
            q[i].as_object_mut().unwrap().insert(k.into(), v);
            p.check_attr("query", &q).unwrap_err()
        };
        assert!(with(0, "id", json!("Errors")).contains("lowercase letter"));
        assert!(with(1, "id", json!("errors")).contains("used twice"));
        assert!(with(0, "return_data", json!(true)).contains("2 queries have return_data"));
        assert!(with(2, "return_data", json!(false)).contains("no query has return_data"));
        assert!(with(2, "expression", json!("errors / reqs")).contains("refers to \"reqs\""));
        assert!(with(2, "expression", json!("rate * 2")).contains("its own id"));
        assert!(with(2, "metric", json!("X")).contains("both metric and expression"));
        assert!(with(0, "stat", json!("Mean")).contains("not a statistic"));
        assert!(with(0, "period", json!(45)).contains("multiple of 60"));
        // Functions and quoted search terms are no ids; references are null at load.
        assert_eq!(
            expression_refs(
                "FILL(m1, 0) + SUM(METRICS()) * 1e3 + SEARCH('{AWS/EC2} cpu', 'Average', 60)"
            ),
            ["m1"]
        );
        let mut q = error_rate();
        q[0]["dimensions"] = json!({ "LoadBalancer": null });
        assert!(p.check_attr("query", &q).is_ok());
        let mut q = error_rate();
        q[0].as_object_mut().unwrap().remove("period");
        assert!(
            p.check_attr("query", &q)
                .unwrap_err()
                .contains("needs period")
        );
    }

    #[test]
    fn one_form_per_alarm() {
        let p = CloudwatchAlarm;
        let single = json!({
            "name": "a", "namespace": "AWS/ApplicationELB", "metric": "TargetResponseTime",
            "extended_statistic": "p95", "period": 60, "evaluation_periods": 3,
            "threshold": 0.5, "comparison": ">",
        });
        assert!(p.check_change(None, &desired(single.clone())).is_ok());
        let mut both = single.clone();
        both["statistic"] = json!("Average");
        let e = p.check_change(None, &desired(both)).unwrap_err();
        assert!(e.contains("keep one"), "{e}");
        let mut neither = single.clone();
        neither
            .as_object_mut()
            .unwrap()
            .remove("extended_statistic");
        assert!(p.check_change(None, &desired(neither)).is_err());
        let mut mixed = single.clone();
        mixed["query"] = error_rate();
        let e = p.check_change(None, &desired(mixed)).unwrap_err();
        assert!(e.contains("single-metric form"), "{e}");
        let math = json!({
            "name": "a", "query": error_rate(), "evaluation_periods": 3,
            "threshold": 5, "comparison": ">",
        });
        assert!(p.check_change(None, &desired(math)).is_ok());
        let mut dp = single;
        dp["datapoints_to_alarm"] = json!(4);
        let e = p.check_change(None, &desired(dp)).unwrap_err();
        assert!(e.contains("above evaluation_periods 3"), "{e}");
        let bare =
            json!({ "name": "a", "evaluation_periods": 1, "threshold": 1, "comparison": ">" });
        assert!(
            p.check_change(None, &desired(bare))
                .unwrap_err()
                .contains("watches nothing")
        );
    }

    #[test]
    fn a_new_name_is_created_before_the_old_alarm_goes() {
        let p = CloudwatchAlarm;
        let d = desired(json!({
            "name": "b", "query": error_rate(), "evaluation_periods": 1,
            "threshold": 5, "comparison": ">",
        }));
        let c = p
            .plan_change(None, &d, &["name".into(), "threshold".into()])
            .unwrap();
        assert_eq!(c.requires_replace, ["name"]);
        assert!(c.create_before_destroy);
        let c = p.plan_change(None, &d, &["threshold".into()]).unwrap();
        assert!(c.requires_replace.is_empty());
    }
}
