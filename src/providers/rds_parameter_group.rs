//! `rds_parameter_group`: a DB parameter group and the parameters the stack sets in it.
//!
//! Only user-set parameters (`Source = user`) are read back, so engine defaults never show
//! as drift. Parameters are set with ModifyDBParameterGroup (`immediate` for dynamic
//! parameters, `pending-reboot` for static ones and whenever AWS does not say) and removed
//! with ResetDBParameterGroup, 20 per call as AWS allows. Name, family and description
//! cannot change: any of them replaces the group.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_rds::types::{ApplyMethod, DbParameterGroup, Parameter};
use serde_json::Value;

use super::rds_instance::{
    check_lowercase_name, known_str, list_tags, required_str, sync_tags, tag_list, tags_value,
};
use super::schema::Default;
use super::{Attr, Aws, AwsError, ChangeNotes, Cx, Live, Provider, Result, Schema, Ty, aws_err};
use crate::value::{Attrs, Desired, Resolved, map_value, string_map};

pub struct RdsParameterGroup;

/// ModifyDBParameterGroup and ResetDBParameterGroup take at most 20 parameters per call.
const BATCH: usize = 20;

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new("name", Ty::String, "Parameter group name (lowercase).")
            .required()
            .force_new(),
        Attr::new(
            "family",
            Ty::String,
            "Parameter group family, e.g. \"postgres16\".",
        )
        .required()
        .force_new(),
        Attr::new(
            "description",
            Ty::String,
            "Description (AWS cannot change it: a new one replaces the group).",
        )
        .force_new()
        .default(Default::Str("Managed by Stackwright")),
        Attr::new(
            "parameters",
            Ty::StringMap,
            "Parameters to set; removing one resets it to the engine default.",
        ),
        Attr::new("tags", Ty::StringMap, "Tags."),
    ],
    outputs: &["arn"],
};

#[async_trait]
impl Provider for RdsParameterGroup {
    fn kind(&self) -> &'static str {
        "rds_parameter_group"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    async fn read(&self, cx: &Cx<'_>, id: &str) -> Result<Option<Live>> {
        let Some(group) = describe(cx.aws, id).await? else {
            return Ok(None);
        };
        let params = user_parameters(cx.aws, id).await?;
        let tags = match group.db_parameter_group_arn() {
            Some(arn) => list_tags(cx.aws, arn).await?,
            None => BTreeMap::new(),
        };
        let mut a = Attrs::new();
        let name = group.db_parameter_group_name().unwrap_or(id).to_owned();
        a.insert("name".into(), Value::from(name.clone()));
        if let Some(f) = group.db_parameter_group_family() {
            a.insert("family".into(), Value::from(f));
        }
        if let Some(d) = group.description() {
            a.insert("description".into(), Value::from(d));
        }
        // `{}` when none are set, like tags: an empty table in the stack compares equal.
        a.insert("parameters".into(), map_value(params));
        a.insert("tags".into(), tags_value(&tags));
        if let Some(arn) = group.db_parameter_group_arn() {
            a.insert("arn".into(), Value::from(arn));
        }
        Ok(Some(Live {
            id: name,
            attrs: a,
            private: None,
        }))
    }

    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live> {
        let name = required_str(input, "name")?;
        let family = required_str(input, "family")?;
        let description = input.str("description").unwrap_or("Managed by Stackwright");
        let sent = cx
            .aws
            .rds()
            .create_db_parameter_group()
            .db_parameter_group_name(name)
            .db_parameter_group_family(family)
            .description(description)
            .set_tags(Some(tag_list(&input.string_map("tags"))))
            .send()
            .await
            .map_err(aws_err);
        // Its parameters are set below either way.
        super::toolkit::retried_create(sent, "DBParameterGroupAlreadyExists", name, async {
            describe(cx.aws, name)
                .await
                .ok()
                .flatten()
                .is_some_and(|g| {
                    g.db_parameter_group_family() == Some(family)
                        && g.description() == Some(description)
                })
        })
        .await?;
        cx.created(name);
        set_parameters(
            cx.aws,
            name,
            &BTreeMap::new(),
            &input.string_map("parameters"),
        )
        .await?;
        self.read(cx, name).await?.ok_or_else(|| {
            AwsError::local(format!(
                "DB parameter group {name} not found right after it was created"
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
        for name in changed {
            match name.as_str() {
                "parameters" => {
                    let current = user_parameters(cx.aws, id).await?;
                    set_parameters(cx.aws, id, &current, &input.string_map("parameters")).await?;
                }
                "tags" => {
                    let group = describe(cx.aws, id).await?.ok_or_else(|| {
                        AwsError::local(format!("DB parameter group {id} no longer exists"))
                    })?;
                    let arn = group.db_parameter_group_arn().ok_or_else(|| {
                        AwsError::local(format!("DB parameter group {id}: AWS reported no ARN"))
                    })?;
                    let current = list_tags(cx.aws, arn).await?;
                    sync_tags(cx.aws, arn, &current, &input.string_map("tags")).await?;
                }
                other => {
                    return Err(AwsError::local(format!(
                        "rds_parameter_group {id}: {other} cannot change in place (the group must be replaced)"
                    )));
                }
            }
        }
        self.read(cx, id).await?.ok_or_else(|| {
            AwsError::local(format!("DB parameter group {id} disappeared during update"))
        })
    }

    async fn delete(&self, cx: &Cx<'_>, id: &str, _prior: &Attrs) -> Result<()> {
        match cx
            .aws
            .rds()
            .delete_db_parameter_group()
            .db_parameter_group_name(id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_db_parameter_group_not_found_fault()) =>
            {
                Ok(())
            }
            Err(e) => Err(aws_err(e)),
        }
    }

    fn check_attr(&self, attr: &str, value: &Value) -> std::result::Result<(), String> {
        match (attr, value) {
            ("name", Value::String(name)) => check_lowercase_name("rds_parameter_group", name),
            _ => Ok(()),
        }
    }

    fn check_change(
        &self,
        prior: Option<&Attrs>,
        desired: &BTreeMap<String, Desired>,
    ) -> std::result::Result<ChangeNotes, String> {
        if let Some(name) = known_str(desired, "name") {
            check_lowercase_name("rds_parameter_group", name)?;
        }
        let mut notes = ChangeNotes::default();
        if let Some(prior) = prior
            && let Some(new) = desired.get("parameters").and_then(Desired::known)
            && string_map(prior.get("parameters")) != string_map(Some(new))
        {
            notes.notes.push(
                "dynamic parameters apply at once; static ones when each instance using the group reboots".into(),
            );
        }
        Ok(notes)
    }
}

/// DescribeDBParameterGroups for one name; `None` when it does not exist.
async fn describe(aws: &Aws, name: &str) -> Result<Option<DbParameterGroup>> {
    match aws
        .rds()
        .describe_db_parameter_groups()
        .db_parameter_group_name(name)
        .send()
        .await
    {
        // An empty list also means "not found" (moto answers so; AWS raises the fault).
        Ok(out) => Ok(out.db_parameter_groups().first().cloned()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_db_parameter_group_not_found_fault()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws_err(e)),
    }
}

/// The parameters set by a user (`Source = user`), name → value.
async fn user_parameters(aws: &Aws, group: &str) -> Result<BTreeMap<String, String>> {
    let mut pages = aws
        .rds()
        .describe_db_parameters()
        .db_parameter_group_name(group)
        .source("user")
        .into_paginator()
        .items()
        .send();
    let mut out = BTreeMap::new();
    while let Some(p) = pages.try_next().await.map_err(aws_err)? {
        // The request already filters on `user`; a reply without Source (moto) counts as user.
        if p.source().is_some_and(|s| s != "user") {
            continue;
        }
        if let (Some(name), Some(value)) = (p.parameter_name(), p.parameter_value()) {
            out.insert(name.to_owned(), value.to_owned());
        }
    }
    Ok(out)
}

/// Which of `names` are dynamic (may apply `immediate`), from the group's own listing.
/// Stops paging as soon as every name has been seen.
async fn dynamic_parameters(
    aws: &Aws,
    group: &str,
    names: &BTreeSet<&str>,
) -> Result<BTreeSet<String>> {
    let mut dynamic = BTreeSet::new();
    if names.is_empty() {
        return Ok(dynamic);
    }
    let mut seen = 0;
    let mut pages = aws
        .rds()
        .describe_db_parameters()
        .db_parameter_group_name(group)
        .into_paginator()
        .items()
        .send();
    while let Some(p) = pages.try_next().await.map_err(aws_err)? {
        let Some(name) = p.parameter_name() else {
            continue;
        };
        if !names.contains(name) {
            continue;
        }
        if p.apply_type() == Some("dynamic") {
            dynamic.insert(name.to_owned());
        }
        seen += 1;
        if seen == names.len() {
            break;
        }
    }
    Ok(dynamic)
}

/// Brings the group's user parameters from `current` to `desired`.
async fn set_parameters(
    aws: &Aws,
    group: &str,
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> Result<()> {
    let set: Vec<(&str, &str)> = desired
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let reset: Vec<&str> = current
        .keys()
        .filter(|k| !desired.contains_key(*k))
        .map(String::as_str)
        .collect();
    if set.is_empty() && reset.is_empty() {
        return Ok(());
    }
    let names: BTreeSet<&str> = set
        .iter()
        .map(|(k, _)| *k)
        .chain(reset.iter().copied())
        .collect();
    let dynamic = dynamic_parameters(aws, group, &names).await?;
    let method = |name: &str| {
        if dynamic.contains(name) {
            ApplyMethod::Immediate
        } else {
            ApplyMethod::PendingReboot
        }
    };

    for chunk in set.chunks(BATCH) {
        let params = chunk
            .iter()
            .map(|(k, v)| {
                Parameter::builder()
                    .parameter_name(*k)
                    .parameter_value(*v)
                    .apply_method(method(k))
                    .build()
            })
            .collect();
        aws.rds()
            .modify_db_parameter_group()
            .db_parameter_group_name(group)
            .set_parameters(Some(params))
            .send()
            .await
            .map_err(aws_err)?;
    }
    for chunk in reset.chunks(BATCH) {
        let params = chunk
            .iter()
            .map(|k| {
                Parameter::builder()
                    .parameter_name(*k)
                    .apply_method(method(k))
                    .build()
            })
            .collect();
        aws.rds()
            .reset_db_parameter_group()
            .db_parameter_group_name(group)
            .reset_all_parameters(false)
            .set_parameters(Some(params))
            .send()
            .await
            .map_err(aws_err)?;
    }
    Ok(())
}
