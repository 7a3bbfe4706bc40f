//! `rds_instance`: an RDS DB instance (PostgreSQL or MySQL).
//!
//! Create and update wait until the instance is `available` again (one `Waiting` event per
//! status change, bounded by `wait_timeout` or the apply's `--wait-timeout`); delete
//! takes a final snapshot `<identifier>-final-<UTC %Y%m%d%H%M%S>` unless `final_snapshot =
//! false`, and waits until the instance is gone. The master password is write-only: sent on
//! create (and on update when the engine asks), never read back.
//!
//! The helpers shared by the three RDS kinds (tags, name checks) live here too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_rds::types::{DbInstance, Tag};
use serde_json::Value;

use super::schema::Default;
use super::{
    Attr, Aws, AwsError, ChangeNotes, Cx, Live, Provider, Result, Schema, SecretMode, Ty, aws_err,
    wait_for,
};
use crate::value::{Attrs, Desired, Resolved, map_value, normalize};

pub struct RdsInstance;

const ENGINES: &[&str] = &["postgres", "mysql"];
const STORAGE_TYPES: &[&str] = &["gp2", "gp3", "io1", "io2", "standard"];

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new(
            "identifier",
            Ty::String,
            "DB instance identifier: lowercase letters, digits and hyphens, starting with a letter, at most 63 characters.",
        )
        .required()
        .force_new(),
        Attr::new("engine", Ty::Enum(ENGINES), "Database engine.")
            .required()
            .force_new(),
        Attr::new(
            "engine_version",
            Ty::String,
            "Full engine version (\"16.3\"); changing it upgrades in place. AWS picks the default when unset.",
        ),
        Attr::new("instance_class", Ty::String, "Instance class, e.g. \"db.t4g.micro\".").required(),
        Attr::new(
            "allocated_storage",
            Ty::Int,
            "Storage in GiB. Grows in place (by at least 10%); it can never shrink.",
        )
        .required(),
        Attr::new(
            "max_allocated_storage",
            Ty::Int,
            "Upper limit in GiB for storage autoscaling; unset disables autoscaling.",
        ),
        Attr::new("storage_type", Ty::Enum(STORAGE_TYPES), "Storage type; AWS picks the default when unset."),
        Attr::new("storage_encrypted", Ty::Bool, "Encrypt storage at rest.")
            .force_new()
            .default(Default::Bool(true)),
        Attr::new(
            "kms_key_id",
            Ty::String,
            "KMS key ARN for storage encryption (give the ARN: AWS reports the ARN, and an alias or key id would read back different and replace the instance).",
        )
        .force_new(),
        Attr::new("multi_az", Ty::Bool, "Run a standby in another availability zone.").default(Default::Bool(false)),
        Attr::new("publicly_accessible", Ty::Bool, "Give the instance a public DNS name and address.")
            .default(Default::Bool(false)),
        Attr::new("backup_retention_days", Ty::Int, "Days automated backups are kept (0 disables them).")
            .default(Default::Int(7)),
        Attr::new(
            "preferred_backup_window",
            Ty::String,
            "Daily UTC backup window \"hh24:mi-hh24:mi\"; AWS picks one when unset.",
        ),
        Attr::new("deletion_protection", Ty::Bool, "Refuse to delete the instance while true.")
            .default(Default::Bool(false)),
        Attr::new("db_subnet_group", Ty::String, "Name of the DB subnet group (decides the VPC).").force_new(),
        Attr::new("parameter_group", Ty::String, "Name of the DB parameter group."),
        Attr::new(
            "vpc_security_group_ids",
            Ty::StringList,
            "Security groups of the instance, e.g. [\"${security_group.db.id}\"] (a set); AWS uses the VPC's default group when unset.",
        ),
        Attr::new("master_username", Ty::String, "Master user name.")
            .required()
            .force_new(),
        Attr::new(
            "master_password",
            Ty::String,
            "Master password, from a secret source; sent to AWS, never read back nor stored.",
        )
        .required()
        .secret(SecretMode::WriteOnly),
        Attr::new("db_name", Ty::String, "Name of the database created with the instance.").force_new(),
        Attr::new(
            "apply_immediately",
            Ty::Bool,
            "Apply modifications now rather than in the next maintenance window.",
        )
        .local()
        .default(Default::Bool(true)),
        Attr::new(
            "final_snapshot",
            Ty::Bool,
            "Take a final snapshot `<identifier>-final-<UTC timestamp>` when the instance is deleted.",
        )
        .local()
        .default(Default::Bool(true)),
        Attr::new(
            "wait_timeout",
            Ty::String,
            "How long to wait for the instance to settle (\"45m\", \"2h\"); overrides --wait-timeout.",
        )
        .local(),
        Attr::new("tags", Ty::StringMap, "Tags."),
    ],
    outputs: &["arn", "endpoint", "port", "resource_id", "status"],
};

/// Below this size gp3 storage of PostgreSQL and MySQL has fixed IOPS, and AWS refuses an
/// `Iops` value ("You can't specify IOPS or storage throughput ... less than 400").
const GP3_IOPS_THRESHOLD_GIB: i64 = 400;

/// Statuses from which an instance will not reach `available` without help.
const FAILED_STATUSES: &[&str] = &[
    "failed",
    "incompatible-credentials",
    "incompatible-network",
    "incompatible-option-group",
    "incompatible-parameters",
    "incompatible-restore",
    "inaccessible-encryption-credentials",
    "inaccessible-encryption-credentials-recoverable",
    "restore-error",
    "storage-full",
];

#[async_trait]
impl Provider for RdsInstance {
    fn kind(&self) -> &'static str {
        "rds_instance"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn id_for(&self, desired: &BTreeMap<String, Desired>) -> Option<String> {
        super::toolkit::id_from(desired, "identifier")
    }

    fn canonical(&self, attr: &str, value: &Value) -> Value {
        match (attr, value) {
            // A set: AWS reports the groups in its own order.
            ("vpc_security_group_ids", Value::Array(ids)) => {
                let mut ids = ids.clone();
                ids.sort_by_key(|v| v.as_str().map(str::to_owned));
                ids.dedup();
                Value::Array(ids)
            }
            _ => value.clone(),
        }
    }

    fn check_attr(&self, attr: &str, value: &Value) -> std::result::Result<(), String> {
        let range = |lo: i64, hi: i64, unit: &str| match value.as_i64() {
            Some(n) if (lo..=hi).contains(&n) => Ok(()),
            _ => Err(format!(
                "{value} is out of range: AWS accepts {lo} to {hi}{unit}"
            )),
        };
        match attr {
            "identifier" => value.as_str().map_or(Ok(()), check_identifier),
            // General purpose and provisioned IOPS storage for PostgreSQL and MySQL.
            "allocated_storage" | "max_allocated_storage" => range(20, 65536, " GiB"),
            "backup_retention_days" => range(0, 35, " days"),
            "wait_timeout" => match value.as_str().map(crate::value::parse_duration) {
                Some(Ok(d)) if d.is_zero() => Err("must be longer than 0s".into()),
                Some(Err(e)) => Err(e),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    async fn read(&self, cx: &Cx<'_>, id: &str) -> Result<Option<Live>> {
        Ok(describe(cx.aws, id).await?.map(|db| live_of(&db)))
    }

    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live> {
        let id = required_str(input, "identifier")?;
        let password = input.plain_or_secret("master_password").ok_or_else(|| {
            AwsError::local(format!(
                "rds_instance {id}: master_password is required (e.g. master_password = {{ from_env = \"DB_PASSWORD\" }})"
            ))
        })?;
        let mut req = cx
            .aws
            .rds()
            .create_db_instance()
            .db_instance_identifier(id)
            .engine(required_str(input, "engine")?)
            .db_instance_class(required_str(input, "instance_class")?)
            .allocated_storage(to_i32(
                "allocated_storage",
                required_int(input, "allocated_storage")?,
            )?)
            .master_username(required_str(input, "master_username")?)
            .master_user_password(password)
            .set_engine_version(input.str("engine_version").map(str::to_owned))
            .set_max_allocated_storage(opt_i32(input, "max_allocated_storage")?)
            .set_storage_type(input.str("storage_type").map(str::to_owned))
            .set_storage_encrypted(input.bool("storage_encrypted"))
            .set_kms_key_id(input.str("kms_key_id").map(str::to_owned))
            .set_multi_az(input.bool("multi_az"))
            .set_publicly_accessible(input.bool("publicly_accessible"))
            .set_backup_retention_period(opt_i32(input, "backup_retention_days")?)
            .set_preferred_backup_window(input.str("preferred_backup_window").map(str::to_owned))
            .set_deletion_protection(input.bool("deletion_protection"))
            .set_db_subnet_group_name(input.str("db_subnet_group").map(str::to_owned))
            .set_db_parameter_group_name(input.str("parameter_group").map(str::to_owned))
            .set_vpc_security_group_ids(
                input
                    .attrs
                    .contains_key("vpc_security_group_ids")
                    .then(|| input.string_list("vpc_security_group_ids")),
            )
            .set_db_name(input.str("db_name").map(str::to_owned));
        for tag in tag_list(&input.string_map("tags")) {
            req = req.tags(tag);
        }
        super::toolkit::retried_create(
            req.send().await.map_err(aws_err),
            "DBInstanceAlreadyExists",
            id,
            created_by_us(cx.aws, id, input),
        )
        .await?;
        // Recorded before the (long) wait: a timeout or a kill mid-wait loses nothing.
        cx.created(id);

        let cx = with_timeout(cx, input.str("wait_timeout"));
        let db = wait_settled(&cx, id, Settle::Created).await?;
        Ok(live_of(&db))
    }

    async fn update(
        &self,
        cx: &Cx<'_>,
        id: &str,
        input: &Resolved,
        changed: &[String],
    ) -> Result<Live> {
        let apply_immediately = input.bool("apply_immediately").unwrap_or(true);
        let cx = with_timeout(cx, input.str("wait_timeout"));
        // AWS refuses modifications while the instance is busy (backing up, modifying):
        // the first poll normally settles at once and also gives the ARN and current tags.
        let current = wait_settled(&cx, id, Settle::Modifiable).await?;

        let mut req = cx
            .aws
            .rds()
            .modify_db_instance()
            .db_instance_identifier(id)
            .apply_immediately(apply_immediately);
        let mut modified = Vec::new();
        let mut tags_changed = false;
        for name in changed {
            let name = name.as_str();
            let attr = SCHEMA.attr(name).ok_or_else(|| {
                AwsError::local(format!("rds_instance {id}: unknown attribute {name:?}"))
            })?;
            if attr.local {
                continue;
            }
            if attr.force_new {
                return Err(AwsError::local(format!(
                    "rds_instance {id}: {name} cannot change in place (the instance must be replaced)"
                )));
            }
            match name {
                "engine_version" => {
                    if let Some(v) = input.str(name) {
                        // Harmless for a minor upgrade, required for a major one; the user asked for it.
                        req = req.engine_version(v).allow_major_version_upgrade(true);
                    }
                }
                "instance_class" => req = req.db_instance_class(required_str(input, name)?),
                "allocated_storage" => {
                    let size = required_int(input, name)?;
                    req = req.allocated_storage(to_i32(name, size)?);
                    // AWS requires Iops with a storage increase on provisioned-IOPS storage
                    // (the current value is accepted), but refuses it for gp3 below 400 GiB
                    // (PostgreSQL and MySQL), where IOPS are a fixed baseline.
                    let send_iops = match input.str("storage_type").or(current.storage_type()) {
                        Some("io1" | "io2") => true,
                        Some("gp3") => size >= GP3_IOPS_THRESHOLD_GIB,
                        _ => false,
                    };
                    if send_iops && let Some(iops) = current.iops() {
                        req = req.iops(iops);
                    }
                }
                "max_allocated_storage" => {
                    // Setting it to the allocated storage is how AWS turns autoscaling off.
                    let max = match input.int(name) {
                        Some(v) => to_i32(name, v)?,
                        None => current.allocated_storage().unwrap_or_default(),
                    };
                    req = req.max_allocated_storage(max);
                }
                "storage_type" => req = req.set_storage_type(input.str(name).map(str::to_owned)),
                "multi_az" => req = req.set_multi_az(input.bool(name)),
                "publicly_accessible" => req = req.set_publicly_accessible(input.bool(name)),
                "backup_retention_days" => {
                    req = req.set_backup_retention_period(opt_i32(input, name)?)
                }
                "preferred_backup_window" => {
                    req = req.set_preferred_backup_window(input.str(name).map(str::to_owned))
                }
                "deletion_protection" => req = req.set_deletion_protection(input.bool(name)),
                "parameter_group" => {
                    req = req.set_db_parameter_group_name(input.str(name).map(str::to_owned))
                }
                "vpc_security_group_ids" => {
                    req = req.set_vpc_security_group_ids(Some(input.string_list(name)))
                }
                "master_password" => {
                    req =
                        req.set_master_user_password(input.plain_or_secret(name).map(str::to_owned))
                }
                "tags" => {
                    tags_changed = true;
                    continue;
                }
                other => {
                    return Err(AwsError::local(format!(
                        "rds_instance {id}: {other} cannot be modified in place"
                    )));
                }
            }
            modified.push(name);
        }

        if tags_changed {
            let arn = current.db_instance_arn().ok_or_else(|| {
                AwsError::local(format!("rds_instance {id}: AWS reported no ARN"))
            })?;
            sync_tags(
                cx.aws,
                arn,
                &tag_map(current.tag_list()),
                &input.string_map("tags"),
            )
            .await?;
        }
        if modified.is_empty() {
            return self.read(&cx, id).await?.ok_or_else(|| {
                AwsError::local(format!("rds_instance {id} disappeared during update"))
            });
        }

        req.send().await.map_err(aws_err)?;
        let settle = if apply_immediately {
            Settle::Applied
        } else {
            let deferred: Vec<&str> = modified
                .iter()
                .copied()
                .filter(|m| DEFERRABLE.contains(m))
                .collect();
            if !deferred.is_empty() {
                cx.note(format!(
                    "{} will change in the next maintenance window (apply_immediately = false)",
                    deferred.join(", ")
                ));
            }
            Settle::Modifiable
        };
        let db = wait_settled(&cx, id, settle).await?;
        Ok(live_of(&db))
    }

    async fn delete(&self, cx: &Cx<'_>, id: &str, prior: &Attrs) -> Result<()> {
        if prior.get("deletion_protection").and_then(Value::as_bool) == Some(true) {
            return Err(AwsError::local(format!(
                "rds_instance {id} has deletion_protection = true and AWS refuses to delete it: \
                 set deletion_protection = false and apply, then delete"
            )));
        }
        let snapshot =
            take_final_snapshot(prior).then(|| final_snapshot_id(id, chrono::Utc::now()));
        let req = cx.aws.rds().delete_db_instance().db_instance_identifier(id);
        let req = match &snapshot {
            Some(snap) => req
                .skip_final_snapshot(false)
                .final_db_snapshot_identifier(snap),
            None => req.skip_final_snapshot(true),
        };
        match req.send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_db_instance_not_found_fault()) =>
            {
                return Ok(());
            }
            Err(e) => return Err(aws_err(e)),
        }
        match &snapshot {
            Some(snap) => cx.note(format!(
                "taking final snapshot {snap}; it is kept after the instance is deleted"
            )),
            None => cx.note("no final snapshot taken (final_snapshot = false)"),
        }

        let cx = with_timeout(cx, prior.get("wait_timeout").and_then(Value::as_str));
        let aws = cx.aws;
        wait_for(
            &cx,
            &format!("DB instance {id} to be deleted"),
            move || async move {
                Ok(describe(aws, id)
                    .await?
                    .map(|db| db.db_instance_status().unwrap_or("deleting").to_owned()))
            },
        )
        .await
    }

    fn check_change(
        &self,
        prior: Option<&Attrs>,
        desired: &BTreeMap<String, Desired>,
    ) -> std::result::Result<ChangeNotes, String> {
        let mut notes = ChangeNotes::default();
        if let Some(id) = known_str(desired, "identifier") {
            check_identifier(id)?;
        }
        let storage = known_int(desired, "allocated_storage");
        if let (Some(max), Some(storage)) = (known_int(desired, "max_allocated_storage"), storage)
            && max <= storage
        {
            return Err(format!(
                "max_allocated_storage ({max}) must be greater than allocated_storage ({storage}); \
                 remove max_allocated_storage to turn storage autoscaling off"
            ));
        }
        let Some(prior) = prior else {
            return Ok(notes);
        };

        if let (Some(old), Some(new)) = (
            prior.get("allocated_storage").and_then(Value::as_i64),
            storage,
        ) {
            if new < old {
                return Err(format!(
                    "cannot shrink allocated_storage from {old} to {new}: RDS storage only grows; \
                     keep allocated_storage = {old} (or more), or move the data to a new instance"
                ));
            }
            let min_growth = (old * 11 + 9) / 10; // 10% more, rounded up
            if new > old && new < min_growth {
                return Err(format!(
                    "allocated_storage can only grow by at least 10%: from {old} to at least {min_growth}, not {new} \
                     (AWS would round it up and the plan would never settle)"
                ));
            }
        }
        if let (Some(old), Some(new)) = (
            prior.get("engine_version").and_then(Value::as_str),
            known_str(desired, "engine_version"),
        ) && version_lt(new, old)
        {
            return Err(format!(
                "cannot downgrade engine_version from {old} to {new}: RDS only upgrades \
                 (AWS may have applied a minor version upgrade itself); set engine_version = \"{old}\""
            ));
        }
        if let (Some(old), Some(new)) = (
            prior.get("parameter_group").and_then(Value::as_str),
            known_str(desired, "parameter_group"),
        ) && old != new
        {
            notes.notes.push(format!(
                "static parameters of {new} take effect when the instance next reboots"
            ));
        }
        if known_bool(desired, "apply_immediately") != Some(false) {
            // apply_immediately defaults to true: say so where that means an outage now.
            for (attr, what) in [
                ("instance_class", "the instance reboots"),
                ("engine_version", "the engine upgrade restarts the database"),
            ] {
                if let (Some(old), Some(new)) = (
                    prior.get(attr).and_then(Value::as_str),
                    known_str(desired, attr),
                ) && old != new
                {
                    notes.warnings.push(format!(
                        "{attr} {old} -> {new}: {what} during this apply (apply_immediately defaults to true), \
                         a few minutes of downtime; set apply_immediately = false to wait for the maintenance window"
                    ));
                }
            }
        }
        if known_bool(desired, "apply_immediately") == Some(false) {
            let deferred = deferred_changes(prior, desired);
            if !deferred.is_empty() {
                notes.notes.push(format!(
                    "changes wait for the next maintenance window (apply_immediately = false): {}",
                    deferred.join(", ")
                ));
            }
        }
        Ok(notes)
    }

    fn delete_notes(&self, prior: &Attrs) -> ChangeNotes {
        let id = prior
            .get("identifier")
            .and_then(Value::as_str)
            .unwrap_or("<identifier>");
        let mut notes = ChangeNotes::default();
        if prior.get("deletion_protection").and_then(Value::as_bool) == Some(true) {
            notes.warnings.push(
                "deletion_protection = true: the delete will be refused until it is set to false and applied".into(),
            );
        }
        if take_final_snapshot(prior) {
            notes.warnings.push(format!(
                "final snapshot {id}-final-<UTC %Y%m%d%H%M%S> will be taken"
            ));
        } else {
            notes
                .warnings
                .push("NO final snapshot: final_snapshot = false".into());
        }
        notes
    }
}

/// The attributes whose modification waits for the maintenance window unless
/// ApplyImmediately is set; AWS applies the others (tags, deletion protection, backup
/// window, public access, parameter group name, autoscaling limit) at once regardless.
const DEFERRABLE: &[&str] = &[
    "engine_version",
    "instance_class",
    "allocated_storage",
    "storage_type",
    "multi_az",
    "backup_retention_days",
];

/// The deferrable attributes whose desired value differs from `prior`.
fn deferred_changes<'a>(prior: &Attrs, desired: &'a BTreeMap<String, Desired>) -> Vec<&'a str> {
    DEFERRABLE
        .iter()
        .filter_map(|name| desired.get_key_value(*name))
        .filter(|(name, want)| match want {
            Desired::Known(want) => {
                prior.get(name.as_str()).map(normalize) != Some(normalize(want))
            }
            _ => true,
        })
        .map(|(name, _)| name.as_str())
        .collect()
}

fn take_final_snapshot(prior: &Attrs) -> bool {
    prior.get("final_snapshot").and_then(Value::as_bool) != Some(false)
}

/// `<identifier>-final-<UTC %Y%m%d%H%M%S>`.
pub(crate) fn final_snapshot_id(identifier: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    format!("{identifier}-final-{}", at.format("%Y%m%d%H%M%S"))
}

/// Whether the existing instance `id` has the engine, class, storage and master user the
/// create sent (the values a different author would hardly match by chance).
async fn created_by_us(aws: &Aws, id: &str, input: &Resolved) -> bool {
    let Ok(Some(db)) = describe(aws, id).await else {
        return false;
    };
    db.engine() == input.str("engine")
        && db.db_instance_class() == input.str("instance_class")
        && db.master_username() == input.str("master_username")
        && db.allocated_storage().map(i64::from) == input.int("allocated_storage")
}

/// DescribeDBInstances for one identifier; `None` when it does not exist.
async fn describe(aws: &Aws, id: &str) -> Result<Option<DbInstance>> {
    match aws
        .rds()
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out.db_instances().first().cloned()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_db_instance_not_found_fault()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws_err(e)),
    }
}

fn live_of(db: &DbInstance) -> Live {
    fn put_str(a: &mut Attrs, k: &str, v: Option<&str>) {
        if let Some(v) = v {
            a.insert(k.into(), Value::from(v));
        }
    }
    let mut a = Attrs::new();
    let id = db.db_instance_identifier().unwrap_or_default().to_owned();
    a.insert("identifier".into(), Value::from(id.clone()));
    put_str(&mut a, "engine", db.engine());
    put_str(&mut a, "engine_version", db.engine_version());
    put_str(&mut a, "instance_class", db.db_instance_class());
    if let Some(v) = db.allocated_storage() {
        a.insert("allocated_storage".into(), Value::from(v));
    }
    if let Some(v) = db.max_allocated_storage() {
        a.insert("max_allocated_storage".into(), Value::from(v));
    }
    put_str(&mut a, "storage_type", db.storage_type());
    a.insert(
        "storage_encrypted".into(),
        Value::from(db.storage_encrypted().unwrap_or(false)),
    );
    put_str(&mut a, "kms_key_id", db.kms_key_id());
    a.insert(
        "multi_az".into(),
        Value::from(db.multi_az().unwrap_or(false)),
    );
    a.insert(
        "publicly_accessible".into(),
        Value::from(db.publicly_accessible().unwrap_or(false)),
    );
    if let Some(v) = db.backup_retention_period() {
        a.insert("backup_retention_days".into(), Value::from(v));
    }
    put_str(
        &mut a,
        "preferred_backup_window",
        db.preferred_backup_window(),
    );
    a.insert(
        "deletion_protection".into(),
        Value::from(db.deletion_protection().unwrap_or(false)),
    );
    put_str(
        &mut a,
        "db_subnet_group",
        db.db_subnet_group().and_then(|g| g.db_subnet_group_name()),
    );
    put_str(
        &mut a,
        "parameter_group",
        db.db_parameter_groups()
            .first()
            .and_then(|g| g.db_parameter_group_name()),
    );
    let mut groups: Vec<&str> = db
        .vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id())
        .collect();
    groups.sort_unstable();
    a.insert("vpc_security_group_ids".into(), Value::from(groups));
    put_str(&mut a, "master_username", db.master_username());
    put_str(&mut a, "db_name", db.db_name());
    a.insert("tags".into(), tags_value(&tag_map(db.tag_list())));
    put_str(&mut a, "arn", db.db_instance_arn());
    if let Some(endpoint) = db.endpoint() {
        put_str(&mut a, "endpoint", endpoint.address());
        if let Some(port) = endpoint.port() {
            a.insert("port".into(), Value::from(port));
        }
    }
    put_str(&mut a, "resource_id", db.dbi_resource_id());
    put_str(&mut a, "status", db.db_instance_status());
    Live {
        id,
        attrs: a,
        private: None,
    }
}

/// What "settled" means for one wait.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// After create: `available` (the instance may briefly be invisible to Describe).
    Created,
    /// Ready to take a modification, or done with one applied later.
    Modifiable,
    /// After a modification applied immediately: `available` with nothing pending.
    Applied,
}

/// Polls DescribeDBInstances until the instance settles; returns its last description.
async fn wait_settled(cx: &Cx<'_>, id: &str, settle: Settle) -> Result<DbInstance> {
    let last: Mutex<Option<DbInstance>> = Mutex::new(None);
    let (aws, slot) = (cx.aws, &last);
    let what = format!("DB instance {id} to become available");
    wait_for(cx, &what, move || async move {
        let Some(db) = describe(aws, id).await? else {
            return match settle {
                Settle::Created => Ok(Some("creating".to_owned())),
                _ => Err(AwsError::local(format!("DB instance {id} disappeared while waiting for it"))),
            };
        };
        let status = db.db_instance_status().unwrap_or("unknown").to_owned();
        if FAILED_STATUSES.contains(&status.as_str()) {
            return Err(AwsError::local(format!(
                "DB instance {id} is in status {status:?} and will not become available without intervention"
            )));
        }
        // `storage-optimization` follows a storage change and can last hours; the
        // instance is usable (and modifiable, except its storage) meanwhile.
        let ready = status == "available" || status == "storage-optimization";
        let waiting = if !ready {
            Some(status)
        } else if settle == Settle::Applied && has_pending(&db) {
            Some(format!("{status}, modification pending"))
        } else {
            None
        };
        *slot.lock().expect("wait slot") = Some(db);
        Ok(waiting)
    })
    .await?;
    last.into_inner()
        .expect("wait slot")
        .ok_or_else(|| AwsError::local(format!("DB instance {id}: no description received")))
}

/// Whether a modification is still queued (right after ModifyDBInstance AWS may still
/// report `available` with the change in PendingModifiedValues).
fn has_pending(db: &DbInstance) -> bool {
    db.pending_modified_values().is_some_and(|p| {
        p.db_instance_class().is_some()
            || p.allocated_storage().is_some()
            || p.engine_version().is_some()
            || p.multi_az().is_some()
            || p.backup_retention_period().is_some()
            || p.storage_type().is_some()
            || p.master_user_password().is_some()
            || p.iops().is_some()
            || p.storage_throughput().is_some()
            || p.db_subnet_group_name().is_some()
    })
}

/// A copy of `cx` whose timeout is the resource's `wait_timeout` when set.
fn with_timeout<'a>(cx: &Cx<'a>, timeout: Option<&str>) -> Cx<'a> {
    let wait_timeout = match timeout.map(crate::value::parse_duration) {
        Some(Ok(d)) if !d.is_zero() => d,
        _ => cx.wait_timeout,
    };
    Cx {
        wait_timeout,
        ..*cx
    }
}

/// Refuses an identifier AWS would reject or store differently (it lowercases them).
fn check_identifier(id: &str) -> std::result::Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "identifier {id:?} is not a valid DB instance identifier: {why}"
        ))
    };
    if id.is_empty() || id.len() > 63 {
        return bad("it must have 1 to 63 characters");
    }
    if id.chars().any(|c| c.is_ascii_uppercase()) {
        return bad("AWS stores it in lowercase, so write it in lowercase");
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        return bad("it must start with a letter");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return bad("only lowercase letters, digits and hyphens are allowed");
    }
    if id.ends_with('-') || id.contains("--") {
        return bad("it must not end with a hyphen or contain two consecutive hyphens");
    }
    Ok(())
}

/// Whether version `a` sorts before `b`, comparing dot-separated numeric parts.
fn version_lt(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Option<Vec<u64>> { v.split('.').map(|p| p.parse().ok()).collect() };
    match (parts(a), parts(b)) {
        (Some(a), Some(b)) => a < b,
        _ => false,
    }
}

fn opt_i32(input: &Resolved, name: &str) -> Result<Option<i32>> {
    input.int(name).map(|v| to_i32(name, v)).transpose()
}

fn to_i32(name: &str, v: i64) -> Result<i32> {
    i32::try_from(v).map_err(|_| AwsError::local(format!("{name} = {v} is out of range")))
}

// ---------------------------------------------------------------------------
// Shared by the RDS kinds
// ---------------------------------------------------------------------------

pub(super) fn required_str<'a>(input: &'a Resolved, name: &str) -> Result<&'a str> {
    input
        .str(name)
        .ok_or_else(|| AwsError::local(format!("{name} is required")))
}

fn required_int(input: &Resolved, name: &str) -> Result<i64> {
    input
        .int(name)
        .ok_or_else(|| AwsError::local(format!("{name} is required")))
}

pub(super) fn known_str<'a>(desired: &'a BTreeMap<String, Desired>, name: &str) -> Option<&'a str> {
    desired
        .get(name)
        .and_then(Desired::known)
        .and_then(Value::as_str)
}

fn known_int(desired: &BTreeMap<String, Desired>, name: &str) -> Option<i64> {
    desired
        .get(name)
        .and_then(Desired::known)
        .and_then(Value::as_i64)
}

fn known_bool(desired: &BTreeMap<String, Desired>, name: &str) -> Option<bool> {
    desired
        .get(name)
        .and_then(Desired::known)
        .and_then(Value::as_bool)
}

/// Refuses a group name with uppercase letters: AWS stores RDS group names in lowercase,
/// so the name read back would differ and the group would be replaced on every apply.
pub(super) fn check_lowercase_name(what: &str, name: &str) -> std::result::Result<(), String> {
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "{what} name {name:?} must be lowercase: AWS stores it as {:?}",
            name.to_ascii_lowercase()
        ));
    }
    Ok(())
}

/// User tags from an AWS tag list; `aws:` tags belong to AWS and are never managed.
pub(super) fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .filter(|(k, _)| !k.starts_with("aws:"))
        .collect()
}

/// Tags as an attribute value: an empty table when there are none, so that `tags = {}` in
/// a stack compares equal (a stack without `tags` leaves them unmanaged).
pub(super) fn tags_value(tags: &BTreeMap<String, String>) -> Value {
    map_value(tags.clone())
}

pub(super) fn tag_list(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub(super) async fn list_tags(aws: &Aws, arn: &str) -> Result<BTreeMap<String, String>> {
    let out = aws
        .rds()
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(aws_err)?;
    Ok(tag_map(out.tag_list()))
}

/// Brings the tags of `arn` from `current` to `desired` (removals first, then additions).
pub(super) async fn sync_tags(
    aws: &Aws,
    arn: &str,
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> Result<()> {
    let remove: BTreeSet<&String> = current
        .keys()
        .filter(|k| !desired.contains_key(*k))
        .collect();
    if !remove.is_empty() {
        aws.rds()
            .remove_tags_from_resource()
            .resource_name(arn)
            .set_tag_keys(Some(remove.into_iter().cloned().collect()))
            .send()
            .await
            .map_err(aws_err)?;
    }
    let add: BTreeMap<String, String> = desired
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !add.is_empty() {
        aws.rds()
            .add_tags_to_resource()
            .resource_name(arn)
            .set_tags(Some(tag_list(&add)))
            .send()
            .await
            .map_err(aws_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn desired(pairs: &[(&str, Value)]) -> BTreeMap<String, Desired> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Desired::Known(v.clone())))
            .collect()
    }

    #[test]
    fn final_snapshot_name_is_utc_timestamped() {
        let at = chrono::Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        assert_eq!(
            final_snapshot_id("webapp-dev", at),
            "webapp-dev-final-20260304050607"
        );
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_lt("16.3", "16.10"));
        assert!(version_lt("8.0.35", "8.0.36"));
        assert!(!version_lt("16.4", "16.3"));
        assert!(!version_lt("16", "16"));
        assert!(!version_lt("16.3-beta", "16.4"));
    }

    #[test]
    fn identifiers_are_checked() {
        assert!(check_identifier("webapp-dev").is_ok());
        for bad in ["WebApp", "1db", "db--x", "db-", "", &"a".repeat(64), "db_x"] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn storage_growth_rules() {
        let prior: Attrs = [("allocated_storage".to_string(), Value::from(50))].into();
        let check = |n: i64| {
            RdsInstance.check_change(Some(&prior), &desired(&[("allocated_storage", n.into())]))
        };
        assert!(
            check(20)
                .unwrap_err()
                .starts_with("cannot shrink allocated_storage from 50 to 20")
        );
        assert!(check(52).unwrap_err().contains("at least 55"));
        assert!(check(55).is_ok());
        assert!(check(50).is_ok());
    }

    #[test]
    fn schema_is_consistent() {
        for a in SCHEMA.attrs {
            assert!(!(a.local && a.force_new), "{}", a.name);
            assert!(!(a.required && a.default.value().is_some()), "{}", a.name);
        }
    }
}
