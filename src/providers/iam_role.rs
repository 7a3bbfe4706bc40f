//! `iam_role`: an IAM role that AWS services assume (ECS tasks, Lambda), with managed
//! policies attached and the stack's own statements as one inline policy.
//!
//! What it owns: the role; its trust policy, generated from `assume_role_service`; the
//! attachments of `managed_policy_arns`; and every inline policy — the stack's statements go
//! in one named [`INLINE_POLICY`], and any other inline policy on the role is drift, shown
//! and deleted. IAM (and moto) return policy documents URL-encoded; both sides are compared
//! in [`canonical_policy`] form, so a freshly applied role plans to no changes.
//!
//! The name is the id (the stack decides it), so an interrupted create is adopted by the
//! engine through the recorded intent, like a bucket or a log group.
//!
//! IAM is eventually consistent: a role created (or given a policy) seconds ago may not yet
//! be assumable everywhere. ECS CreateService/RunTask with a brand-new task or execution
//! role can fail with "unable to assume role" during that window; nothing here waits for it
//! (the place for a retry is the caller, e.g. `ecs_service`).
//!
//! [`put_role`], [`read_role`] and [`delete_role`] are also the crate-internal API through
//! which `ecs_service` manages the execution role it generates inside its own resource; the
//! provider is built on the same functions ([`converge`]), so both share one code path.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_iam::types::{Role, Tag};
use serde_json::{Map, Value, json};

use super::schema::Default;
use super::toolkit::ADDRESS_TAG;
use super::{
    Attr, AwsError, ChangeNotes, Cx, Live, PlannedChange, Provider, Result, Schema, Ty, aws_err,
};
use crate::value::{Attrs, Desired, Resolved, normalize};

pub struct IamRole;

crate::sdk_client!(aws_sdk_iam);

fn iam(cx: &Cx<'_>) -> aws_sdk_iam::Client {
    cx.aws.client::<aws_sdk_iam::Client>()
}

/// The inline policy that holds the stack's statements.
pub(crate) const INLINE_POLICY: &str = "stackwright";
const VERSION: &str = "2012-10-17";

static CONDITION: &[Attr] = &[
    Attr::new(
        "test",
        Ty::String,
        "Condition operator, e.g. \"StringEquals\", \"ArnLike\".",
    )
    .required(),
    Attr::new(
        "variable",
        Ty::String,
        "Context key, e.g. \"aws:SourceAccount\".",
    )
    .required(),
    Attr::new("values", Ty::StringList, "Values (any one matches).").required(),
];

static STATEMENT: &[Attr] = &[
    Attr::new("sid", Ty::String, "Statement id (letters and digits)."),
    Attr::new("effect", Ty::Enum(&["Allow", "Deny"]), "Allow or Deny.")
        .default(Default::Str("Allow")),
    Attr::new(
        "actions",
        Ty::StringList,
        "Actions, \"service:Action\" (wildcards allowed: \"s3:Get*\").",
    )
    .required(),
    Attr::new(
        "resources",
        Ty::StringList,
        "Resource ARNs, or \"*\"; e.g. [\"${ssm_parameter.db_url.arn}\"].",
    )
    .required(),
    Attr::new(
        "condition",
        Ty::Blocks(CONDITION),
        "Conditions, all of which must hold.",
    ),
];

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new(
            "name",
            Ty::String,
            "Role name (1–64 of letters, digits and +=,.@_-). Changing it replaces the role.",
        )
        .required()
        .force_new(),
        Attr::new(
            "path",
            Ty::String,
            "Path, \"/\" or \"/a/b/\". Changing it replaces the role.",
        )
        .force_new()
        .default(Default::Str("/")),
        Attr::new("description", Ty::String, "Description (up to 1000 characters)."),
        Attr::new(
            "assume_role_service",
            Ty::StringList,
            "Service principal(s) that may assume the role, e.g. \"ecs-tasks.amazonaws.com\" (one string or a list); the trust policy is generated from it.",
        )
        .required()
        .one_or_many(),
        Attr::new(
            "managed_policy_arns",
            Ty::StringList,
            "Managed policies to attach (a set), e.g. \"arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy\".",
        ),
        Attr::new(
            "statement",
            Ty::Blocks(STATEMENT),
            "The role's own permissions, one inline policy named \"stackwright\" (a set; `statement = []` for none). When written, any other inline policy is removed.",
        ),
        Attr::new(
            "max_session_duration",
            Ty::Int,
            "Longest session, in seconds (3600 to 43200).",
        ),
        Attr::new("tags", Ty::StringMap, "Tags."),
    ],
    outputs: &["arn", "unique_id"],
};

#[async_trait]
impl Provider for IamRole {
    fn kind(&self) -> &'static str {
        "iam_role"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn canonical(&self, attr: &str, v: &Value) -> Value {
        match attr {
            "assume_role_service" | "managed_policy_arns" => string_set(v),
            "statement" => match v {
                Value::Array(blocks) => statements_value(&canonical_policy(&json!({
                    "Statement": blocks.iter().map(statement_of_block).collect::<Vec<_>>()
                }))),
                _ => v.clone(),
            },
            _ => v.clone(),
        }
    }

    fn check_attr(&self, attr: &str, value: &Value) -> std::result::Result<(), String> {
        let strings = |v: &Value| -> Vec<String> {
            match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            }
        };
        match (attr, value) {
            ("name", Value::String(n)) => check_name(n),
            ("path", Value::String(p)) => check_path(p),
            ("description", Value::String(d)) if d.chars().count() > 1000 => Err(format!(
                "a role description has at most 1000 characters, not {}",
                d.chars().count()
            )),
            ("max_session_duration", Value::Number(n)) => match n.as_i64() {
                Some(s) if (3600..=43200).contains(&s) => Ok(()),
                _ => Err(format!(
                    "{n} is out of range: a session lasts 3600 to 43200 seconds (1 to 12 hours)"
                )),
            },
            ("assume_role_service", v) => {
                if matches!(v, Value::Array(a) if a.is_empty()) {
                    return Err(
                        "name at least one service, e.g. \"ecs-tasks.amazonaws.com\"".into(),
                    );
                }
                strings(v).iter().try_for_each(|s| check_service(s))
            }
            ("managed_policy_arns", v) => strings(v).iter().try_for_each(|a| check_policy_arn(a)),
            ("statement", Value::Array(blocks)) => {
                for (i, b) in blocks.iter().enumerate() {
                    check_statement(b).map_err(|e| format!("statement {}: {e}", i + 1))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn read(&self, cx: &Cx<'_>, id: &str) -> Result<Option<Live>> {
        let read = fetch(
            cx,
            id,
            cx.wants("managed_policy_arns"),
            cx.wants("statement"),
        )
        .await?;
        Ok(read.as_ref().map(|r| live_of(r, cx)))
    }

    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live> {
        let want = want_of(input)?;
        create_role(cx, &want, false).await?;
        let read = converge(cx, &want).await?;
        Ok(live_of(&read, cx))
    }

    async fn update(
        &self,
        cx: &Cx<'_>,
        _id: &str,
        input: &Resolved,
        _changed: &[String],
    ) -> Result<Live> {
        // Converging compares every managed part with AWS and calls only for what differs.
        let read = converge(cx, &want_of(input)?).await?;
        Ok(live_of(&read, cx))
    }

    async fn delete(&self, cx: &Cx<'_>, id: &str, _prior: &Attrs) -> Result<()> {
        delete_role(cx, id).await
    }

    fn plan_change(
        &self,
        _prior: Option<&Attrs>,
        _desired: &BTreeMap<String, Desired>,
        changed: &[String],
    ) -> std::result::Result<PlannedChange, String> {
        Ok(PlannedChange {
            requires_replace: changed
                .iter()
                .filter(|c| SCHEMA.attr(c).is_some_and(|a| a.force_new))
                .cloned()
                .collect(),
            // A role of a new name can live beside the old one: create it first, so that
            // services and tasks referencing it move over before the old one goes.
            create_before_destroy: changed.iter().any(|c| c == "name"),
            notes: ChangeNotes::default(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// The crate-internal API (ecs_service's generated execution role) and the shared code path
// ---------------------------------------------------------------------------------------

/// A role managed exactly as given: trust for `services`, exactly these managed policies,
/// exactly this one inline policy (`None`: no inline policy at all) and exactly these tags.
pub(crate) struct RoleSpec<'a> {
    pub name: &'a str,
    pub services: &'a [String],
    pub managed_policy_arns: &'a [String],
    /// A full policy document (`{"Version": …, "Statement": […]}`), put as [`INLINE_POLICY`].
    pub inline_policy: Option<Value>,
    pub tags: &'a BTreeMap<String, String>,
}

/// A role as IAM holds it, decoded and canonical.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RoleRead {
    pub arn: String,
    pub name: String,
    pub path: String,
    pub unique_id: String,
    pub description: Option<String>,
    pub max_session_duration: Option<i32>,
    /// The services the trust policy lets assume the role, sorted. A trust statement not
    /// of the form Stackwright writes shows as `"other: {…}"`, so that it is a difference.
    pub services: Vec<String>,
    /// Sorted; empty when not read.
    pub managed_policy_arns: Vec<String>,
    /// Every inline policy's statements merged into one canonical document; `None` when the
    /// role has no inline policy (or they were not read).
    pub inline_policy: Option<Value>,
    pub tags: BTreeMap<String, String>,
}

/// Creates the role named `spec.name`, or converges an existing one to exactly `spec`;
/// returns its ARN. Safe to call again after any failure.
pub(crate) async fn put_role(cx: &Cx<'_>, spec: &RoleSpec<'_>) -> Result<String> {
    let want = Want {
        name: spec.name,
        path: "/",
        description: None,
        max_session_duration: None,
        trust: trust_policy(spec.services),
        managed: Some(sorted(spec.managed_policy_arns)),
        inline: Some(spec.inline_policy.as_ref().map(canonical_policy)),
        tags: Some(spec.tags.clone()),
    };
    match get_role(cx, spec.name).await? {
        None => create_role(cx, &want, true).await?,
        // Converging someone else's role would rewrite its policies (and destroy would
        // delete it): only a role carrying the same address tag is ours.
        Some(role) => {
            let tag = |r: &Role| {
                r.tags()
                    .iter()
                    .find(|t| t.key() == ADDRESS_TAG)
                    .map(|t| t.value().to_owned())
            };
            let want_tag = spec.tags.get(ADDRESS_TAG).cloned();
            if want_tag.is_some() && tag(&role) != want_tag {
                return Err(AwsError::local(format!(
                    "IAM role {} already exists and is not Stackwright's for {} (its {ADDRESS_TAG} tag is {}); delete or rename that role, or name it as the task's execution_role",
                    spec.name,
                    cx.address,
                    tag(&role).map_or("absent".to_owned(), |t| format!("`{t}`")),
                )));
            }
        }
    }
    Ok(converge(cx, &want).await?.arn)
}

/// The role called `name`, everything read; `None` when it does not exist.
pub(crate) async fn read_role(cx: &Cx<'_>, name: &str) -> Result<Option<RoleRead>> {
    fetch(cx, name, true, true).await
}

/// Detaches the managed policies, deletes the inline ones, then the role (IAM refuses to
/// delete a role with either). `Ok` when it does not exist.
pub(crate) async fn delete_role(cx: &Cx<'_>, name: &str) -> Result<()> {
    let iam = iam(cx);
    // Someone attaching a policy meanwhile makes DeleteRole say DeleteConflict: go again.
    for attempt in 1..=3 {
        let gone = |e: &AwsError| e.is("NoSuchEntity");
        match attached(cx, name).await {
            Ok(arns) => {
                for arn in arns {
                    let r = iam
                        .detach_role_policy()
                        .role_name(name)
                        .policy_arn(&arn)
                        .send()
                        .await
                        .map_err(aws_err);
                    match r {
                        Err(e) if !gone(&e) => return Err(e),
                        _ => {}
                    }
                }
            }
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
        match inline_names(cx, name).await {
            Ok(names) => {
                for p in names {
                    let r = iam
                        .delete_role_policy()
                        .role_name(name)
                        .policy_name(&p)
                        .send()
                        .await
                        .map_err(aws_err);
                    match r {
                        Err(e) if !gone(&e) => return Err(e),
                        _ => {}
                    }
                }
            }
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
        match iam
            .delete_role()
            .role_name(name)
            .send()
            .await
            .map_err(aws_err)
        {
            Ok(_) => return Ok(()),
            Err(e) if gone(&e) => return Ok(()),
            Err(e) if e.is("DeleteConflict") && attempt < 3 => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("the last attempt returns")
}

/// A policy document in one spelling: `Version` filled in, `Statement` always a list,
/// each statement's actions, resources, principals and condition values sorted,
/// de-duplicated lists (one string == a list of one), empty `Sid`s dropped, statements
/// sorted and de-duplicated, keys sorted. Equal documents in any spelling come out equal.
pub(crate) fn canonical_policy(doc: &Value) -> Value {
    let Value::Object(m) = doc else {
        return doc.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        if k != "Statement" {
            out.insert(k.clone(), v.clone());
        }
    }
    out.entry("Version").or_insert_with(|| json!(VERSION));
    let stmts: Vec<Value> = match m.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(s @ Value::Object(_)) => vec![s.clone()],
        _ => Vec::new(),
    };
    // Keys sorted first (serde_json keeps insertion order), so that the sort sees one spelling.
    let mut stmts: Vec<Value> = stmts
        .iter()
        .map(|s| normalize(&canonical_statement(s)))
        .collect();
    stmts.sort_by_key(Value::to_string);
    stmts.dedup();
    out.insert("Statement".into(), Value::Array(stmts));
    normalize(&Value::Object(out))
}

fn canonical_statement(s: &Value) -> Value {
    let Value::Object(m) = s else {
        return s.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let v = match k.as_str() {
            "Sid" if v.as_str() == Some("") => continue,
            "Action" | "NotAction" | "Resource" | "NotResource" => string_set(v),
            "Principal" | "NotPrincipal" => match v {
                Value::Object(p) => Value::Object(
                    p.iter()
                        .map(|(kind, ids)| (kind.clone(), string_set(ids)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "Condition" => match v {
                Value::Object(ops) => Value::Object(
                    ops.iter()
                        .map(|(op, keys)| {
                            let keys = match keys {
                                Value::Object(ks) => Value::Object(
                                    ks.iter()
                                        .map(|(key, vals)| (key.clone(), string_set(vals)))
                                        .collect(),
                                ),
                                other => other.clone(),
                            };
                            (op.clone(), keys)
                        })
                        .collect(),
                ),
                other => other.clone(),
            },
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

/// A string or a list of scalars as a sorted set of strings (`true` and `"true"` are one).
fn string_set(v: &Value) -> Value {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    };
    let set: BTreeSet<String> = match v {
        Value::Array(a) => {
            if a.iter().any(|i| text(i).is_none()) {
                return v.clone(); // an unknown (null) item: leave as written
            }
            a.iter().filter_map(text).collect()
        }
        other => match text(other) {
            Some(s) => [s].into(),
            None => return v.clone(),
        },
    };
    Value::Array(set.into_iter().map(Value::String).collect())
}

/// What a converge makes true; `None` leaves that part as it is (not in the stack).
struct Want<'a> {
    name: &'a str,
    path: &'a str,
    description: Option<&'a str>,
    max_session_duration: Option<i32>,
    /// The full trust policy document.
    trust: Value,
    managed: Option<Vec<String>>,
    /// `Some(None)`: no inline policy at all. Canonical.
    inline: Option<Option<Value>>,
    tags: Option<BTreeMap<String, String>>,
}

fn want_of(input: &Resolved) -> Result<Want<'_>> {
    let name = input
        .str("name")
        .ok_or_else(|| AwsError::local("iam_role: name is required"))?;
    let max_session_duration =
        match input.int("max_session_duration") {
            Some(s) => Some(i32::try_from(s).map_err(|_| {
                AwsError::local(format!("max_session_duration {s} is out of range"))
            })?),
            None => None,
        };
    let inline = input.attrs.get("statement").map(|v| match v {
        Value::Array(blocks) if !blocks.is_empty() => Some(canonical_policy(&json!({
            "Version": VERSION,
            "Statement": blocks.iter().map(statement_of_block).collect::<Vec<_>>(),
        }))),
        _ => None,
    });
    Ok(Want {
        name,
        path: input.str("path").unwrap_or("/"),
        description: input.str("description"),
        max_session_duration,
        trust: trust_policy(&input.string_list("assume_role_service")),
        managed: input
            .attrs
            .contains_key("managed_policy_arns")
            .then(|| sorted(&input.string_list("managed_policy_arns"))),
        inline,
        tags: input
            .attrs
            .contains_key("tags")
            .then(|| input.string_map("tags")),
    })
}

fn sorted(items: &[String]) -> Vec<String> {
    let set: BTreeSet<&String> = items.iter().collect();
    set.into_iter().cloned().collect()
}

/// The trust policy that lets `services` assume the role.
fn trust_policy(services: &[String]) -> Value {
    let services = sorted(services);
    let principal = match services.as_slice() {
        [one] => json!(one),
        _ => json!(services),
    };
    json!({
        "Version": VERSION,
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": principal },
            "Action": "sts:AssumeRole",
        }],
    })
}

/// The services a (canonical) trust policy names; statements of another form as
/// `"other: {…}"`.
fn services_of(trust: &Value) -> Vec<String> {
    let mut out = BTreeSet::new();
    for s in trust
        .get("Statement")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let services = s
            .pointer("/Principal/Service")
            .and_then(Value::as_array)
            .filter(|_| {
                let keys: Vec<&str> = s
                    .as_object()
                    .map(|m| m.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                s.get("Effect").and_then(Value::as_str) == Some("Allow")
                    && s.get("Action") == Some(&json!(["sts:AssumeRole"]))
                    && s.get("Principal").and_then(Value::as_object).map(Map::len) == Some(1)
                    && keys
                        .iter()
                        .all(|k| ["Effect", "Action", "Principal", "Sid"].contains(k))
            });
        match services {
            Some(list) => out.extend(list.iter().filter_map(|v| v.as_str().map(str::to_owned))),
            None => {
                out.insert(format!("other: {s}"));
            }
        }
    }
    out.into_iter().collect()
}

/// A `[[statement]]` block as a policy statement.
fn statement_of_block(b: &Value) -> Value {
    let Value::Object(m) = b else {
        return b.clone();
    };
    let mut s = Map::new();
    for (k, v) in m {
        match k.as_str() {
            "sid" => {
                s.insert("Sid".into(), v.clone());
            }
            "effect" => {
                s.insert("Effect".into(), v.clone());
            }
            "actions" => {
                s.insert("Action".into(), v.clone());
            }
            "resources" => {
                s.insert("Resource".into(), v.clone());
            }
            "condition" => {
                let mut ops: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
                for c in v.as_array().into_iter().flatten() {
                    let (Some(test), Some(var)) = (
                        c.get("test").and_then(Value::as_str),
                        c.get("variable").and_then(Value::as_str),
                    ) else {
                        continue;
                    };
                    let vals = c.get("values").cloned().unwrap_or(json!([]));
                    ops.entry(test.to_owned())
                        .or_default()
                        .insert(var.to_owned(), vals);
                }
                if !ops.is_empty() {
                    s.insert("Condition".into(), json!(ops));
                }
            }
            // Keys a block never has (what AWS holds beyond the stack's vocabulary).
            other => {
                s.insert(other.to_owned(), v.clone());
            }
        }
    }
    s.entry("Effect").or_insert_with(|| json!("Allow"));
    Value::Object(s)
}

/// A canonical policy's statements as `[[statement]]` blocks, the stack's vocabulary. Keys
/// the blocks cannot say (NotAction, Principal) are kept as IAM spells them, so that they
/// show as a difference rather than vanish.
fn statements_value(doc: &Value) -> Value {
    let blocks: Vec<Value> = doc
        .get("Statement")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| {
            let mut b = Map::new();
            for (k, v) in s.as_object().into_iter().flatten() {
                let key = match k.as_str() {
                    "Sid" => "sid",
                    "Effect" => "effect",
                    "Action" => "actions",
                    "Resource" => "resources",
                    "Condition" => {
                        let mut conds = Vec::new();
                        for (test, keys) in v.as_object().into_iter().flatten() {
                            for (var, vals) in keys.as_object().into_iter().flatten() {
                                conds
                                    .push(json!({ "test": test, "variable": var, "values": vals }));
                            }
                        }
                        b.insert("condition".into(), Value::Array(conds));
                        continue;
                    }
                    other => other,
                };
                b.insert(key.to_owned(), v.clone());
            }
            Value::Object(b)
        })
        .collect();
    normalize(&Value::Array(blocks))
}

async fn get_role(cx: &Cx<'_>, name: &str) -> Result<Option<Role>> {
    match iam(cx).get_role().role_name(name).send().await {
        Ok(out) => Ok(out.role().cloned()),
        Err(e) => match aws_err(e) {
            e if e.is("NoSuchEntity") => Ok(None),
            e => Err(e),
        },
    }
}

async fn attached(cx: &Cx<'_>, name: &str) -> Result<Vec<String>> {
    let mut pages = iam(cx)
        .list_attached_role_policies()
        .role_name(name)
        .into_paginator()
        .items()
        .send();
    let mut out = BTreeSet::new();
    while let Some(p) = pages.try_next().await.map_err(aws_err)? {
        out.extend(p.policy_arn().map(str::to_owned));
    }
    Ok(out.into_iter().collect())
}

async fn inline_names(cx: &Cx<'_>, name: &str) -> Result<Vec<String>> {
    let mut pages = iam(cx)
        .list_role_policies()
        .role_name(name)
        .into_paginator()
        .items()
        .send();
    let mut out = Vec::new();
    while let Some(p) = pages.try_next().await.map_err(aws_err)? {
        out.push(p);
    }
    Ok(out)
}

/// One inline policy's document, decoded and canonical.
async fn inline_doc(cx: &Cx<'_>, role: &str, policy: &str) -> Result<Value> {
    let out = iam(cx)
        .get_role_policy()
        .role_name(role)
        .policy_name(policy)
        .send()
        .await
        .map_err(aws_err)?;
    Ok(canonical_policy(&decode_document(out.policy_document())?))
}

/// IAM returns policy documents URL-encoded (RFC 3986, as moto does too).
fn decode_document(raw: &str) -> Result<Value> {
    let text = if raw.trim_start().starts_with('{') {
        raw.to_owned()
    } else {
        percent_decode(raw)
    };
    serde_json::from_str(&text).map_err(|e| {
        AwsError::local(format!(
            "IAM returned a policy document that is not JSON: {e}"
        ))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads the role; `managed` and `inline` say whether to list its policies (each costs
/// calls a refresh may skip).
async fn fetch(cx: &Cx<'_>, name: &str, managed: bool, inline: bool) -> Result<Option<RoleRead>> {
    let Some(role) = get_role(cx, name).await? else {
        return Ok(None);
    };
    let trust = match role.assume_role_policy_document() {
        Some(d) => canonical_policy(&decode_document(d)?),
        None => canonical_policy(&json!({})),
    };
    let managed_policy_arns = if managed {
        attached(cx, name).await?
    } else {
        Vec::new()
    };
    let inline_policy = if inline {
        let mut statements = Vec::new();
        for p in inline_names(cx, name).await? {
            match inline_doc(cx, name, &p).await {
                Ok(doc) => statements.extend(
                    doc.get("Statement")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                ),
                // Deleted between the list and the get.
                Err(e) if e.is("NoSuchEntity") => {}
                Err(e) => return Err(e),
            }
        }
        (!statements.is_empty())
            .then(|| canonical_policy(&json!({ "Version": VERSION, "Statement": statements })))
    } else {
        None
    };
    Ok(Some(RoleRead {
        arn: role.arn().to_owned(),
        name: role.role_name().to_owned(),
        path: role.path().to_owned(),
        unique_id: role.role_id().to_owned(),
        description: role.description().map(str::to_owned),
        max_session_duration: role.max_session_duration(),
        services: services_of(&trust),
        managed_policy_arns,
        inline_policy,
        tags: tags_of(&role),
    }))
}

fn tags_of(role: &Role) -> BTreeMap<String, String> {
    role.tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect()
}

fn iam_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| AwsError::local(format!("tag {k}: {e}")))
        })
        .collect()
}

/// CreateRole with the trust policy, path, description, session length and tags. An
/// `EntityAlreadyExists` is an SDK retry meeting its own first attempt when the role holds
/// exactly what was sent; with `take_existing` (the caller owns the name) any role is taken.
async fn create_role(cx: &Cx<'_>, want: &Want<'_>, take_existing: bool) -> Result<()> {
    let tags = want.tags.clone().unwrap_or_default();
    let sent = iam(cx)
        .create_role()
        .role_name(want.name)
        .path(want.path)
        .assume_role_policy_document(want.trust.to_string())
        .set_description(want.description.map(str::to_owned))
        .set_max_session_duration(want.max_session_duration)
        .set_tags((!tags.is_empty()).then(|| iam_tags(&tags)).transpose()?)
        .send()
        .await
        .map(|_| ())
        .map_err(aws_err);
    if take_existing && sent.as_ref().is_err_and(|e| e.is("EntityAlreadyExists")) {
        return Ok(());
    }
    super::toolkit::retried_create(sent, "EntityAlreadyExists", want.name, async {
        match fetch(cx, want.name, false, false).await {
            Ok(Some(r)) => {
                r.path == want.path
                    && r.services == services_of(&canonical_policy(&want.trust))
                    && r.tags == tags
            }
            _ => false,
        }
    })
    .await?;
    // Through put_role the role belongs to another resource (an ECS service's execution
    // role), whose own id is what an interrupted create must be found by.
    if !take_existing {
        cx.created(want.name);
    }
    Ok(())
}

/// Makes the existing role what `want` says, calling IAM only for what differs, and
/// returns it as read afterwards.
async fn converge(cx: &Cx<'_>, want: &Want<'_>) -> Result<RoleRead> {
    let iam = iam(cx);
    let name = want.name;
    let role = get_role(cx, name)
        .await?
        .ok_or_else(|| AwsError::local(format!("IAM role {name} no longer exists")))?;
    let trust = canonical_policy(&want.trust);
    let have_trust = match role.assume_role_policy_document() {
        Some(d) => canonical_policy(&decode_document(d)?),
        None => Value::Null,
    };
    if have_trust != trust {
        iam.update_assume_role_policy()
            .role_name(name)
            .policy_document(want.trust.to_string())
            .send()
            .await
            .map_err(aws_err)?;
    }
    let description_differs = want
        .description
        .is_some_and(|d| role.description().unwrap_or("") != d);
    let session_differs = want
        .max_session_duration
        .is_some_and(|s| role.max_session_duration() != Some(s));
    if description_differs || session_differs {
        // UpdateRole sets both: the one not managed keeps its current value.
        iam.update_role()
            .role_name(name)
            .set_description(want.description.or(role.description()).map(str::to_owned))
            .set_max_session_duration(want.max_session_duration.or(role.max_session_duration()))
            .send()
            .await
            .map_err(aws_err)?;
    }
    if let Some(tags) = &want.tags {
        let (set, unset) = super::toolkit::tag_changes(&tags_of(&role), tags);
        if !set.is_empty() {
            let set: BTreeMap<String, String> = set
                .into_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            iam.tag_role()
                .role_name(name)
                .set_tags(Some(iam_tags(&set)?))
                .send()
                .await
                .map_err(aws_err)?;
        }
        if !unset.is_empty() {
            iam.untag_role()
                .role_name(name)
                .set_tag_keys(Some(unset))
                .send()
                .await
                .map_err(aws_err)?;
        }
    }
    if let Some(managed) = &want.managed {
        let have = attached(cx, name).await?;
        for arn in managed.iter().filter(|a| !have.contains(a)) {
            iam.attach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(aws_err)?;
        }
        for arn in have.iter().filter(|a| !managed.contains(a)) {
            match iam
                .detach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(aws_err)
            {
                Err(e) if !e.is("NoSuchEntity") => return Err(e),
                _ => {}
            }
        }
    }
    if let Some(inline) = &want.inline {
        let names = inline_names(cx, name).await?;
        if let Some(doc) = inline {
            let current = if names.iter().any(|n| n == INLINE_POLICY) {
                Some(inline_doc(cx, name, INLINE_POLICY).await?)
            } else {
                None
            };
            if current.as_ref() != Some(doc) {
                iam.put_role_policy()
                    .role_name(name)
                    .policy_name(INLINE_POLICY)
                    .policy_document(doc.to_string())
                    .send()
                    .await
                    .map_err(aws_err)?;
            }
        }
        // Every other inline policy (and ours when there should be none) goes.
        for p in names
            .iter()
            .filter(|n| inline.is_none() || n.as_str() != INLINE_POLICY)
        {
            match iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(p)
                .send()
                .await
                .map_err(aws_err)
            {
                Err(e) if !e.is("NoSuchEntity") => return Err(e),
                _ => {}
            }
        }
    }
    fetch(cx, name, true, true).await?.ok_or_else(|| {
        AwsError::local(format!(
            "IAM role {name} was not found right after it was written"
        ))
    })
}

fn live_of(r: &RoleRead, cx: &Cx<'_>) -> Live {
    let mut a = Attrs::new();
    a.insert("name".into(), json!(r.name));
    a.insert("path".into(), json!(r.path));
    if let Some(d) = &r.description {
        a.insert("description".into(), json!(d));
    }
    if let Some(s) = r.max_session_duration {
        a.insert("max_session_duration".into(), json!(s));
    }
    a.insert("assume_role_service".into(), json!(r.services));
    if cx.wants("managed_policy_arns") {
        a.insert("managed_policy_arns".into(), json!(r.managed_policy_arns));
    }
    if cx.wants("statement") {
        let doc = r
            .inline_policy
            .clone()
            .unwrap_or_else(|| json!({ "Statement": [] }));
        a.insert("statement".into(), statements_value(&doc));
    }
    a.insert("tags".into(), super::toolkit::tags_value(&r.tags));
    a.insert("arn".into(), json!(r.arn));
    a.insert("unique_id".into(), json!(r.unique_id));
    Live {
        id: r.name.clone(),
        attrs: a,
        private: None,
    }
}

// ---------------------------------------------------------------------------------------
// Checks: AWS's rules, refused at load (or at plan for values known only then)
// ---------------------------------------------------------------------------------------

fn check_name(n: &str) -> std::result::Result<(), String> {
    let len = n.chars().count();
    if !(1..=64).contains(&len) {
        return Err(format!("a role name has 1 to 64 characters, not {len}"));
    }
    match n
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_+=,.@-".contains(*c)))
    {
        Some(c) => Err(format!(
            "{c:?} is not allowed in a role name: use letters, digits and _+=,.@-"
        )),
        None => Ok(()),
    }
}

fn check_path(p: &str) -> std::result::Result<(), String> {
    if p.len() > 512 || !p.starts_with('/') || !p.ends_with('/') {
        return Err(format!(
            "\"{p}\" is not a role path: it starts and ends with / (\"/\" or \"/services/\"), at most 512 characters"
        ));
    }
    match p.chars().find(|c| !('\u{21}'..='\u{7e}').contains(c)) {
        Some(c) => Err(format!("{c:?} is not allowed in a role path")),
        None => Ok(()),
    }
}

fn check_service(s: &str) -> std::result::Result<(), String> {
    let ok = (s.ends_with(".amazonaws.com") || s.ends_with(".amazonaws.com.cn"))
        && s.split('.').next().is_some_and(|p| !p.is_empty())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{s}\" is not a service principal: write the service's host name, e.g. \"ecs-tasks.amazonaws.com\""
        ))
    }
}

fn check_policy_arn(a: &str) -> std::result::Result<(), String> {
    let parts: Vec<&str> = a.splitn(6, ':').collect();
    let ok = matches!(parts.as_slice(),
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
            && (*account == "aws" || (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())))
            && resource.strip_prefix("policy/").is_some_and(|n| !n.is_empty() && !n.ends_with('/')));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{a}\" is not a managed policy ARN: write arn:aws:iam::aws:policy/NAME (AWS managed) or arn:aws:iam::ACCOUNT:policy/NAME"
        ))
    }
}

fn check_action(a: &str) -> std::result::Result<(), String> {
    if a == "*" {
        return Ok(());
    }
    let bad = || {
        format!(
            "\"{a}\" is not an action: write service:Action, e.g. \"s3:GetObject\" or \"ssm:Get*\""
        )
    };
    let (service, action) = a.split_once(':').ok_or_else(bad)?;
    let service_ok = !service.is_empty()
        && service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    let action_ok = !action.is_empty()
        && action
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?');
    if service_ok && action_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

fn check_statement(b: &Value) -> std::result::Result<(), String> {
    let Value::Object(m) = b else {
        return Err("a statement must be a table".into());
    };
    let list = |k: &str| m.get(k).and_then(Value::as_array);
    match list("actions") {
        Some(a) if a.is_empty() => {
            return Err("no actions: list at least one, e.g. actions = [\"s3:GetObject\"]".into());
        }
        Some(a) => {
            for act in a.iter().filter_map(Value::as_str) {
                check_action(act)?;
            }
        }
        None => {}
    }
    match list("resources") {
        Some(r) if r.is_empty() => {
            return Err("no resources: list at least one ARN, or \"*\"".into());
        }
        Some(r) => {
            for res in r.iter().filter_map(Value::as_str) {
                if res != "*" && !res.starts_with("arn:") {
                    return Err(format!(
                        "\"{res}\" is not a resource: write an ARN (arn:aws:…) or \"*\""
                    ));
                }
            }
        }
        None => {}
    }
    if let Some(Value::String(sid)) = m.get("sid")
        && !sid.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(format!("sid \"{sid}\" may hold only letters and digits"));
    }
    if let Some(e) = m.get("effect").and_then(Value::as_str)
        && !["Allow", "Deny"].contains(&e)
    {
        return Err(format!("effect \"{e}\" must be \"Allow\" or \"Deny\""));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_policies_in_any_spelling_are_one_canonical_policy() {
        let a = json!({
            "Statement": {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "*",
                "Sid": "",
            }
        });
        let b = json!({
            "Statement": [
                { "Resource": ["*"], "Action": ["s3:GetObject", "s3:GetObject"], "Effect": "Allow" },
            ],
            "Version": "2012-10-17",
        });
        assert_eq!(canonical_policy(&a), canonical_policy(&b));
        assert_eq!(
            canonical_policy(&a).to_string(),
            r#"{"Statement":[{"Action":["s3:GetObject"],"Effect":"Allow","Resource":["*"]}],"Version":"2012-10-17"}"#
        );
        // Statement order and duplicate statements do not matter; actions are sorted.
        let two = |x: &str, y: &str| {
            json!({ "Statement": [
                { "Effect": "Allow", "Action": [x, "a:B"], "Resource": "*" },
                { "Effect": "Deny", "Action": y, "Resource": "arn:aws:s3:::b" },
            ]})
        };
        let swapped = json!({ "Statement": [
            { "Effect": "Deny", "Action": "ssm:*", "Resource": ["arn:aws:s3:::b"] },
            { "Effect": "Allow", "Action": ["a:B", "z:Y"], "Resource": "*" },
            { "Effect": "Deny", "Action": "ssm:*", "Resource": ["arn:aws:s3:::b"] },
        ]});
        assert_eq!(
            canonical_policy(&two("z:Y", "ssm:*")),
            canonical_policy(&swapped)
        );
        // Condition values and principals are sets too; a bool is its string.
        let c1 = json!({ "Statement": [{ "Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": { "Service": "ecs-tasks.amazonaws.com" },
            "Condition": { "Bool": { "aws:SecureTransport": true } } }]});
        let c2 = json!({ "Statement": [{ "Effect": "Allow", "Action": ["sts:AssumeRole"],
            "Principal": { "Service": ["ecs-tasks.amazonaws.com"] },
            "Condition": { "Bool": { "aws:SecureTransport": ["true"] } } }]});
        assert_eq!(canonical_policy(&c1), canonical_policy(&c2));
    }

    #[test]
    fn documents_are_url_decoded_as_iam_returns_them() {
        // As moto (and IAM) return GetRolePolicy's PolicyDocument.
        let raw = "%7B%22Version%22%3A%20%222012-10-17%22%2C%20%22Statement%22%3A%20%5B%7B%22Effect%22%3A%20%22Allow%22%2C%20%22Action%22%3A%20%22s3%3AGetObject%22%2C%20%22Resource%22%3A%20%22%2A%22%7D%5D%7D";
        let doc = decode_document(raw).unwrap();
        assert_eq!(doc["Statement"][0]["Resource"], json!("*"));
        assert_eq!(
            decode_document(r#"{"Statement":[]}"#).unwrap(),
            json!({"Statement": []})
        );
        assert_eq!(percent_decode("a%2Bb+c%zz%4"), "a+b+c%zz%4");
        assert!(decode_document("%7Bnot json").is_err());
    }

    #[test]
    fn blocks_and_documents_meet_in_one_form() {
        let p = IamRole;
        let written = json!([
            { "effect": "Allow", "actions": ["ssm:GetParameters", "ssm:GetParameters"], "resources": ["*"] },
            { "sid": "Logs", "effect": "Allow", "actions": ["logs:PutLogEvents", "logs:CreateLogStream"],
              "resources": ["arn:aws:logs:us-east-1:1:log-group:/a:*"],
              "condition": [{ "test": "StringEquals", "variable": "aws:SourceAccount", "values": ["1"] }] },
        ]);
        let doc = json!({ "Version": "2012-10-17", "Statement": [
            { "Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
              "Resource": "arn:aws:logs:us-east-1:1:log-group:/a:*",
              "Condition": { "StringEquals": { "aws:SourceAccount": "1" } } },
            { "Effect": "Allow", "Action": "ssm:GetParameters", "Resource": "*" },
        ]});
        let live = statements_value(&canonical_policy(&doc));
        assert_eq!(p.canonical("statement", &written), live);
        assert_eq!(p.canonical("statement", &live), live);
        // What blocks cannot say stays visible.
        let odd =
            json!({ "Statement": [{ "Effect": "Allow", "NotAction": "iam:*", "Resource": "*" }]});
        assert_eq!(
            statements_value(&canonical_policy(&odd)),
            json!([{ "NotAction": ["iam:*"], "effect": "Allow", "resources": ["*"] }])
        );
        assert_eq!(
            p.canonical("assume_role_service", &json!("ecs-tasks.amazonaws.com")),
            json!(["ecs-tasks.amazonaws.com"])
        );
    }

    #[test]
    fn trust_policies_name_their_services_and_flag_the_rest() {
        let t = canonical_policy(&trust_policy(&[
            "lambda.amazonaws.com".into(),
            "ecs-tasks.amazonaws.com".into(),
        ]));
        assert_eq!(
            services_of(&t),
            ["ecs-tasks.amazonaws.com", "lambda.amazonaws.com"]
        );
        let edited = canonical_policy(&json!({ "Statement": [
            { "Effect": "Allow", "Principal": { "Service": "ecs-tasks.amazonaws.com" }, "Action": "sts:AssumeRole" },
            { "Effect": "Allow", "Principal": { "AWS": "arn:aws:iam::1:root" }, "Action": "sts:AssumeRole" },
        ]}));
        let s = services_of(&edited);
        assert_eq!(s[0], "ecs-tasks.amazonaws.com");
        assert!(
            s[1].starts_with("other: ") && s[1].contains("arn:aws:iam::1:root"),
            "{s:?}"
        );
    }

    #[test]
    fn aws_rules_are_checked() {
        let p = IamRole;
        assert!(p.check_attr("name", &json!("api-task_role+=,.@")).is_ok());
        assert!(p.check_attr("name", &json!("my role")).is_err());
        assert!(p.check_attr("name", &json!("x".repeat(65))).is_err());
        assert!(p.check_attr("name", &json!("")).is_err());
        assert!(p.check_attr("path", &json!("/svc/")).is_ok());
        assert!(p.check_attr("path", &json!("svc")).is_err());
        assert!(p.check_attr("max_session_duration", &json!(100)).is_err());
        let arn = |a: &str| p.check_attr("managed_policy_arns", &json!([a]));
        assert!(
            arn("arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy").is_ok()
        );
        assert!(arn("arn:aws:iam::123456789012:policy/mine").is_ok());
        assert!(arn("arn:aws:s3:::bucket").is_err());
        assert!(arn("AmazonECSTaskExecutionRolePolicy").is_err());
        assert!(arn("arn:aws:iam::123456789012:role/x").is_err());
        let st = |s: Value| p.check_attr("statement", &json!([s]));
        assert!(
            st(json!({ "effect": "Allow", "actions": ["s3:Get*", "*"], "resources": ["*", null] }))
                .is_ok()
        );
        assert!(
            st(json!({ "actions": [], "resources": ["*"] }))
                .unwrap_err()
                .contains("no actions")
        );
        assert!(
            st(json!({ "actions": ["GetObject"], "resources": ["*"] }))
                .unwrap_err()
                .contains("service:Action")
        );
        assert!(st(json!({ "actions": ["s3:Get Object"], "resources": ["*"] })).is_err());
        assert!(st(json!({ "actions": ["s3:GetObject"], "resources": ["bucket"] })).is_err());
        assert!(
            st(json!({ "effect": "Permit", "actions": ["s3:GetObject"], "resources": ["*"] }))
                .is_err()
        );
        assert!(
            p.check_attr("assume_role_service", &json!("ecs-tasks.amazonaws.com"))
                .is_ok()
        );
        assert!(
            p.check_attr("assume_role_service", &json!(["ecs-tasks"]))
                .is_err()
        );
        assert!(p.check_attr("assume_role_service", &json!([])).is_err());
    }
}
