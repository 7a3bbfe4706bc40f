//! `ssm_parameter`: one SSM Parameter Store parameter.
//!
//! `read` decrypts (`WithDecryption`) so that a `SecureString` value can be compared in
//! memory; the engine strips sensitive values before anything is stored. The value never
//! reaches an error message: AWS validation errors that echo it are redacted.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::{
    Parameter, ParameterMetadata, ParameterStringFilter, ParameterTier, ParameterType,
    ResourceTypeForTagging, Tag,
};
use serde_json::Value;

use super::schema::Default as D;
use super::{
    Attr, AwsError, ChangeNotes, Cx, Live, Provider, Result, Schema, SecretMode, Ty, aws_err,
};
use crate::value::{Attrs, Desired, Resolved, map_value};

pub struct SsmParameter;

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new("name", Ty::String, "Parameter name, e.g. \"/app/env/KEY\". Changing it replaces the parameter.")
            .required()
            .force_new(),
        Attr::new(
            "type",
            Ty::Enum(&["String", "StringList", "SecureString"]),
            "Parameter type. Changed in place (PutParameter with Overwrite), keeping the parameter's history.",
        )
        .default(D::Str("String")),
        Attr::new(
            "value",
            Ty::String,
            "The value; may come from { from_env = \"VAR\" } or { from_file = \"path\" }. Sensitive when type is SecureString.",
        )
        .required()
        .secret(SecretMode::Allowed),
        Attr::new("description", Ty::String, "Description shown in the console."),
        Attr::new(
            "tier",
            Ty::Enum(&["Standard", "Advanced"]),
            "Storage tier (AWS uses Standard when unset). An Advanced parameter cannot go back to Standard.",
        ),
        Attr::new(
            "key_id",
            Ty::String,
            "KMS key (id, ARN or alias) encrypting a SecureString; alias/aws/ssm when unset.",
        ),
        Attr::new("tags", Ty::StringMap, "Parameter tags."),
    ],
    outputs: &["arn", "version"],
};

/// Attributes that PutParameter (Overwrite) sets.
const PUT_ATTRS: &[&str] = &["value", "type", "description", "tier", "key_id"];

#[async_trait]
impl Provider for SsmParameter {
    fn kind(&self) -> &'static str {
        "ssm_parameter"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn is_sensitive(&self, attr: &str, desired: &BTreeMap<String, Desired>) -> bool {
        attr == "value"
            && match desired.get("type") {
                Some(Desired::Known(t)) => t.as_str() == Some("SecureString"),
                // Not known yet: assume the worst.
                Some(Desired::Unknown | Desired::Secret(_)) => true,
                None => false,
            }
    }

    fn check_attr(&self, attr: &str, value: &Value) -> std::result::Result<(), String> {
        match (attr, value) {
            ("name", Value::String(name)) => check_parameter_name(name),
            _ => Ok(()),
        }
    }

    fn check_change(
        &self,
        prior: Option<&Attrs>,
        desired: &BTreeMap<String, Desired>,
    ) -> std::result::Result<ChangeNotes, String> {
        let prior_tier = prior.and_then(|p| p.get("tier")).and_then(Value::as_str);
        let tier = desired
            .get("tier")
            .and_then(Desired::known)
            .and_then(Value::as_str);
        if prior_tier == Some("Advanced") && tier == Some("Standard") {
            return Err(
                "an Advanced parameter cannot be moved back to the Standard tier; keep tier = \"Advanced\" \
                 or give the parameter a new name (which replaces it)"
                    .into(),
            );
        }
        let ty = desired
            .get("type")
            .and_then(Desired::known)
            .and_then(Value::as_str);
        if desired.get("key_id").and_then(Desired::known).is_some()
            && matches!(ty, Some(t) if t != "SecureString")
        {
            return Err("key_id applies only to type = \"SecureString\"".into());
        }
        Ok(ChangeNotes::default())
    }

    async fn read(&self, cx: &Cx<'_>, id: &str) -> Result<Option<Live>> {
        read_parameter(&cx.aws.ssm(), id, &|a| cx.wants(a)).await
    }

    /// GetParameters takes at most 10 names.
    fn batch_size(&self) -> usize {
        10
    }

    fn batchable(&self, wanted: Option<&BTreeSet<String>>) -> bool {
        value_only(wanted)
    }

    async fn read_many(
        &self,
        cx: &Cx<'_>,
        items: &[(&str, Option<&BTreeSet<String>>)],
    ) -> Result<Vec<Option<Live>>> {
        read_parameters(&cx.aws.ssm(), items).await
    }

    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live> {
        let name = input
            .str("name")
            .ok_or_else(|| AwsError::local("ssm_parameter: name is required"))?;
        let ssm = &cx.aws.ssm();
        let tags = input
            .string_map("tags")
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(build_err))
            .collect::<Result<Vec<_>>>()?;
        super::toolkit::retried_create(
            put_parameter(ssm, name, input, false, tags).await,
            "ParameterAlreadyExists",
            name,
            written_by_us(ssm, name, input),
        )
        .await?;
        cx.created(name);
        read_back(ssm, name).await
    }

    async fn update(
        &self,
        cx: &Cx<'_>,
        id: &str,
        input: &Resolved,
        changed: &[String],
    ) -> Result<Live> {
        let ssm = &cx.aws.ssm();
        if changed.iter().any(|c| PUT_ATTRS.contains(&c.as_str())) {
            put_parameter(ssm, id, input, true, Vec::new()).await?;
        }
        if changed.iter().any(|c| c == "tags") {
            update_tags(ssm, id, &input.string_map("tags")).await?;
        }
        read_back(ssm, id).await
    }

    async fn delete(&self, cx: &Cx<'_>, id: &str, _prior: &Attrs) -> Result<()> {
        match cx
            .aws
            .ssm()
            .delete_parameter()
            .name(id)
            .send()
            .await
            .map_err(aws_err)
        {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

fn is_not_found(e: &AwsError) -> bool {
    e.is("ParameterNotFound")
}

fn build_err(e: aws_smithy_types::error::operation::BuildError) -> AwsError {
    AwsError::local(format!("invalid SSM request: {e}"))
}

/// Removes a value from an AWS error message: validation errors may quote it
/// ("Value '...' at 'value' failed to satisfy constraint").
fn redact(mut err: AwsError, value: &str) -> AwsError {
    if !value.is_empty() && err.message.contains(value) {
        err.message = err.message.replace(value, "(sensitive)");
    }
    err
}

async fn put_parameter(
    ssm: &Client,
    name: &str,
    input: &Resolved,
    overwrite: bool,
    tags: Vec<Tag>,
) -> Result<()> {
    let value = input
        .plain_or_secret("value")
        .ok_or_else(|| AwsError::local("ssm_parameter: value is required"))?;
    let ty = input.str("type").unwrap_or("String");
    let mut req = ssm
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(ParameterType::from(ty))
        .tier(ParameterTier::from(input.str("tier").unwrap_or("Standard")))
        .set_description(input.str("description").map(str::to_owned))
        .overwrite(overwrite);
    if ty == "SecureString" {
        req = req.set_key_id(input.str("key_id").map(str::to_owned));
    } else if input.str("key_id").is_some() {
        return Err(AwsError::local(
            "key_id applies only to type = \"SecureString\"",
        ));
    }
    if !tags.is_empty() {
        // AWS refuses tags together with Overwrite; only create sends them.
        req = req.set_tags(Some(tags));
    }
    req.send().await.map_err(|e| redact(aws_err(e), value))?;
    Ok(())
}

/// Whether `name` holds exactly the type and value this create sent (the plan saw no
/// such parameter, so an equal one is our own earlier attempt).
async fn written_by_us(ssm: &Client, name: &str, input: &Resolved) -> bool {
    let Some(value) = input.plain_or_secret("value") else {
        return false;
    };
    let ty = input.str("type").unwrap_or("String");
    match ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
    {
        Ok(out) => out.parameter().is_some_and(|p| {
            p.value() == Some(value) && p.r#type().map(|t| t.as_str()) == Some(ty)
        }),
        Err(_) => false,
    }
}

async fn update_tags(ssm: &Client, name: &str, desired: &BTreeMap<String, String>) -> Result<()> {
    let current = ssm
        .list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await
        .map_err(aws_err)?;
    let stale: Vec<String> = current
        .tag_list()
        .iter()
        .map(|t| t.key().to_owned())
        .filter(|k| !desired.contains_key(k))
        .collect();
    if !stale.is_empty() {
        ssm.remove_tags_from_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .set_tag_keys(Some(stale))
            .send()
            .await
            .map_err(aws_err)?;
    }
    if !desired.is_empty() {
        let tags = desired
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(build_err))
            .collect::<Result<Vec<_>>>()?;
        ssm.add_tags_to_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(aws_err)?;
    }
    Ok(())
}

async fn read_back(ssm: &Client, name: &str) -> Result<Live> {
    read_parameter(ssm, name, &|_| true).await?.ok_or_else(|| {
        AwsError::new(
            Some("ParameterNotFound"),
            format!("parameter {name} not found after it was written"),
        )
    })
}

/// Reads the parameter, calling DescribeParameters and ListTagsForResource only when an
/// attribute behind them is wanted.
async fn read_parameter(
    ssm: &Client,
    name: &str,
    wants: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Option<Live>> {
    let want_meta = wants("tier") || wants("description") || wants("key_id");
    let want_tags = wants("tags");
    let describe = async {
        if !want_meta {
            return Ok(None);
        }
        // DescribeParameters filters after paginating, so a page may come back empty with a
        // next token: walk the pages until the parameter shows up.
        let mut pages = ssm
            .describe_parameters()
            .parameter_filters(
                ParameterStringFilter::builder()
                    .key("Name")
                    .option("Equals")
                    .values(name)
                    .build()
                    .map_err(build_err)?,
            )
            .into_paginator()
            .send();
        while let Some(page) = pages.try_next().await.map_err(aws_err)? {
            if let Some(item) = page.parameters().iter().find(|p| p.name() == Some(name)) {
                return Ok(Some(item.clone()));
            }
        }
        Ok(None)
    };
    let tags = async {
        if want_tags {
            Some(
                ssm.list_tags_for_resource()
                    .resource_type(ResourceTypeForTagging::Parameter)
                    .resource_id(name)
                    .send()
                    .await,
            )
        } else {
            None
        }
    };
    let (param, meta, tags) = tokio::join!(
        ssm.get_parameter().name(name).with_decryption(true).send(),
        describe,
        tags
    );
    let param = match param.map_err(aws_err) {
        Ok(out) => match out.parameter {
            Some(p) => p,
            None => return Ok(None),
        },
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta: Option<_> = match meta {
        Ok(m) => m,
        // Deleted between the calls.
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let tags = match tags.map(|t| t.map_err(aws_err)).transpose() {
        Ok(None) => None,
        Ok(Some(t)) => Some(
            t.tag_list()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect::<Vec<_>>(),
        ),
        Err(e)
            if matches!(
                e.code.as_deref(),
                Some("InvalidResourceId" | "ParameterNotFound")
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    Ok(Some(live_of(
        name,
        &param,
        want_meta.then_some(meta.as_ref()),
        tags,
    )))
}

/// What a read reports: `meta` is `Some` when DescribeParameters was asked (its answer,
/// `None` when it did not list the parameter), `tags` when ListTagsForResource was.
fn live_of(
    name: &str,
    param: &Parameter,
    meta: Option<Option<&ParameterMetadata>>,
    tags: Option<Vec<(String, String)>>,
) -> Live {
    let mut attrs = Attrs::new();
    attrs.insert("name".into(), Value::from(name));
    let ty = param.r#type().map(|t| t.as_str()).unwrap_or("String");
    attrs.insert("type".into(), Value::from(ty));
    attrs.insert("value".into(), Value::from(param.value().unwrap_or("")));
    if let Some(meta) = meta {
        let tier = meta
            .as_ref()
            .and_then(|m| m.tier())
            .map(|t| t.as_str())
            .unwrap_or("Standard");
        attrs.insert("tier".into(), Value::from(tier));
        // No description reads as "", so that `description = ""` (the way to clear one) diffs clean.
        let description = meta.as_ref().and_then(|m| m.description()).unwrap_or("");
        attrs.insert("description".into(), Value::from(description));
        if let Some(k) = meta.as_ref().and_then(|m| m.key_id()) {
            attrs.insert("key_id".into(), Value::from(k));
        }
    }
    if let Some(tags) = tags {
        attrs.insert("tags".into(), map_value(tags));
    }
    if let Some(arn) = param.arn() {
        attrs.insert("arn".into(), Value::from(arn));
    }
    attrs.insert("version".into(), Value::from(param.version()));
    Live {
        id: name.to_owned(),
        attrs,
        private: None,
    }
}

/// Whether a read of these attributes needs only GetParameter(s): no tier, description,
/// key or tags, which take a call per parameter anyway.
fn value_only(wanted: Option<&BTreeSet<String>>) -> bool {
    wanted.is_some_and(|w| {
        !["tier", "description", "key_id", "tags"]
            .iter()
            .any(|a| w.contains(*a))
    })
}

/// Up to 10 parameters in one GetParameters call (with decryption); those whose read
/// needs more are read one by one, concurrently.
async fn read_parameters(
    ssm: &Client,
    items: &[(&str, Option<&BTreeSet<String>>)],
) -> Result<Vec<Option<Live>>> {
    let names: Vec<String> = items
        .iter()
        .filter(|(_, w)| value_only(*w))
        .map(|(id, _)| (*id).to_owned())
        .collect();
    let mut got: BTreeMap<String, Parameter> = BTreeMap::new();
    if !names.is_empty() {
        let out = ssm
            .get_parameters()
            .set_names(Some(names))
            .with_decryption(true)
            .send()
            .await
            .map_err(aws_err)?;
        // Names that do not exist come back in `InvalidParameters`: they are gone.
        for p in out.parameters() {
            if let Some(n) = p.name() {
                got.insert(n.to_owned(), p.clone());
            }
        }
    }
    let rest = futures::future::try_join_all(items.iter().filter(|(_, w)| !value_only(*w)).map(
        |(id, w)| async move {
            let wants = |a: &str| w.is_none_or(|w| w.contains(a));
            read_parameter(ssm, id, &wants).await.map(|l| (*id, l))
        },
    ))
    .await?;
    let mut rest: BTreeMap<&str, Option<Live>> = rest.into_iter().collect();
    Ok(items
        .iter()
        .map(|(id, w)| {
            if value_only(*w) {
                got.get(*id).map(|p| live_of(id, p, None, None))
            } else {
                rest.remove(id).flatten()
            }
        })
        .collect())
}

/// AWS's rules for parameter names.
fn check_parameter_name(name: &str) -> std::result::Result<(), String> {
    let bad = |why: &str| Err(format!("parameter name {name:?} is not valid: {why}"));
    if name.is_empty() || name.len() > 1011 {
        return bad("it must have 1 to 1011 characters");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')))
    {
        return bad(&format!(
            "{c:?} is not allowed (letters, digits, '_', '.', '-' and '/' only)"
        ));
    }
    if name.contains('/') && !name.starts_with('/') {
        return bad(&format!(
            "a hierarchical name must start with '/', e.g. \"/{name}\""
        ));
    }
    if name.contains("//") || (name.len() > 1 && name.ends_with('/')) {
        return bad("it must not contain an empty path segment");
    }
    if name.matches('/').count() > 15 {
        return bad("a hierarchy has at most 15 levels");
    }
    let first = name.trim_start_matches('/').to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return bad("names beginning with \"aws\" or \"ssm\" are reserved");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;
    use serde_json::json;

    fn desired(pairs: Value) -> BTreeMap<String, Desired> {
        pairs
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), Desired::Known(v.clone())))
            .collect()
    }

    #[test]
    fn value_is_sensitive_only_for_secure_strings() {
        let p = SsmParameter;
        assert!(p.is_sensitive("value", &desired(json!({"type": "SecureString"}))));
        assert!(!p.is_sensitive("value", &desired(json!({"type": "String"}))));
        assert!(!p.is_sensitive("description", &desired(json!({"type": "SecureString"}))));
        let mut d = desired(json!({}));
        d.insert("type".into(), Desired::Unknown);
        assert!(p.is_sensitive("value", &d));
    }

    #[test]
    fn id_is_the_known_name() {
        let p = SsmParameter;
        assert_eq!(
            p.id_for(&desired(json!({"name": "/a/b"}))).as_deref(),
            Some("/a/b")
        );
        let mut d = desired(json!({}));
        assert_eq!(p.id_for(&d), None);
        d.insert("name".into(), Desired::Secret(SecretString::new("/x")));
        assert_eq!(p.id_for(&d), None);
    }

    #[test]
    fn tier_cannot_go_back_to_standard() {
        let p = SsmParameter;
        let prior: Attrs = [("tier".to_owned(), json!("Advanced"))]
            .into_iter()
            .collect();
        let err = p
            .check_change(Some(&prior), &desired(json!({"tier": "Standard"})))
            .unwrap_err();
        assert!(err.contains("Advanced"), "{err}");
        assert!(
            p.check_change(Some(&prior), &desired(json!({"tier": "Advanced"})))
                .is_ok()
        );
        assert!(
            p.check_change(None, &desired(json!({"tier": "Standard"})))
                .is_ok()
        );
        assert!(
            p.check_change(
                None,
                &desired(json!({"type": "String", "key_id": "alias/k"}))
            )
            .is_err()
        );
    }

    #[test]
    fn redact_hides_the_value() {
        let e = AwsError::new(
            Some("ValidationException"),
            "1 validation error detected: Value 's3cr3t' at 'value' failed to satisfy constraint",
        );
        let r = redact(e, "s3cr3t");
        assert!(!r.message.contains("s3cr3t"));
        assert!(r.message.contains("(sensitive)"));
        assert_eq!(r.code.as_deref(), Some("ValidationException"));
    }

    #[test]
    fn schema_defaults() {
        assert_eq!(
            SCHEMA.attr("type").unwrap().default.value(),
            Some(json!("String"))
        );
        // Unset tier is not managed (and costs no DescribeParameters call on refresh).
        assert_eq!(SCHEMA.attr("tier").unwrap().default.value(), None);
        assert_eq!(SCHEMA.attr("value").unwrap().secret, SecretMode::Allowed);
        assert!(SCHEMA.attr("name").unwrap().force_new);
    }
}
