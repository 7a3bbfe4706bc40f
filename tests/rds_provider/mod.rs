//! The RDS providers (`rds_instance`, `rds_subnet_group`, `rds_parameter_group`) and the
//! `data.vpc` / `data.subnets` data sources, called directly (no engine) against a real
//! moto_server, with independent read-back through the plain SDK clients; plus
//! `providers::wait_for` against scripted statuses.
//!
//! moto deviates from AWS in ways these tests run into; each deviation is pinned by a
//! `moto_deviation_*` test (or a commented assertion) so that a moto upgrade or a harness
//! patch that fixes it shows up as a failure to revisit.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_rds::types::ApplyMethod;
use serde_json::{Value, json};
use stackwright::events::{Event, Recorder};
use stackwright::providers::{Aws, Cx, DataSource, Provider, registry, wait_for};
use stackwright::secret::SecretString;
use stackwright::value::{Attrs, Desired, Resolved};
use tokio::time::Instant;

use crate::common::{ACCOUNT_ID, REGION, TestEnv};

const PASSWORD: &str = "not-a-real-Passw0rd-7f3a";

/// A moto, an `Aws` on it and an event recorder.
struct Rig {
    env: TestEnv,
    aws: Aws,
    events: Recorder,
}

impl Rig {
    async fn new() -> Rig {
        let env = TestEnv::new();
        let aws = Aws::from_config(env.sdk_config().await);
        Rig {
            env,
            aws,
            events: Recorder::default(),
        }
    }

    /// An `Aws` whose calls are not retried (moto answers some calls with HTTP 500).
    async fn aws_without_retries(&self) -> Aws {
        let config = self
            .env
            .sdk_config()
            .await
            .into_builder()
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        Aws::from_config(config)
    }

    fn cx<'a>(&'a self, address: &'a str) -> Cx<'a> {
        Cx {
            poll_interval: Duration::from_millis(50),
            ..Cx::new(&self.aws, address, &self.events, Duration::from_secs(60))
        }
    }

    fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.0.lock().unwrap())
    }
}

fn provider(kind: &str) -> &'static dyn Provider {
    registry()
        .provider(kind)
        .unwrap_or_else(|| panic!("no provider {kind}"))
}

fn data_source(kind: &str) -> &'static dyn DataSource {
    registry()
        .data_source(kind)
        .unwrap_or_else(|| panic!("no data source {kind}"))
}

/// What the engine hands a provider: `attrs` plus the schema defaults, secrets apart.
fn resolved(kind: &str, attrs: Value, secrets: &[(&str, &str)]) -> Resolved {
    let mut out: Attrs = match attrs {
        Value::Object(m) => m.into_iter().collect(),
        other => panic!("attrs must be an object, not {other}"),
    };
    for attr in provider(kind).schema().attrs {
        if let Some(d) = attr.default.value() {
            out.entry(attr.name.to_owned()).or_insert(d);
        }
    }
    Resolved {
        attrs: out,
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), SecretString::new(*v)))
            .collect(),
    }
}

fn args(attrs: Value) -> Resolved {
    Resolved {
        attrs: attrs
            .as_object()
            .expect("object")
            .clone()
            .into_iter()
            .collect(),
        secrets: BTreeMap::new(),
    }
}

/// `desired` as the engine passes it to `check_change`.
fn desired(attrs: Value) -> BTreeMap<String, Desired> {
    attrs
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (k.clone(), Desired::Known(v.clone())))
        .collect()
}

/// Asserts that every attribute the kind manages (not local, not write-only) reads back
/// exactly as given.
#[track_caller]
fn assert_managed_eq(kind: &str, live: &Attrs, input: &Resolved) {
    for attr in provider(kind).schema().attrs {
        if attr.local || attr.secret == stackwright::providers::SecretMode::WriteOnly {
            assert!(
                !live.contains_key(attr.name),
                "{kind}: {} must not be read back",
                attr.name
            );
            continue;
        }
        if let Some(want) = input.attrs.get(attr.name) {
            assert_eq!(
                live.get(attr.name),
                Some(want),
                "{kind}.{} read back differently",
                attr.name
            );
        }
    }
}

fn waiting(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Waiting { status, .. } => Some(status.clone()),
            _ => None,
        })
        .collect()
}

fn notes(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Note { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// The default VPC and its subnet ids, sorted, straight from EC2.
async fn default_vpc(env: &TestEnv) -> (String, Vec<String>) {
    let ec2 = env.ec2().await;
    let vpcs = ec2
        .describe_vpcs()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("isDefault")
                .values("true")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let vpc = vpcs.vpcs()[0].vpc_id().unwrap().to_owned();
    let subnets = ec2
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(&vpc)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut ids: Vec<String> = subnets
        .subnets()
        .iter()
        .map(|s| s.subnet_id().unwrap().to_owned())
        .collect();
    ids.sort();
    (vpc, ids)
}

// ---------------------------------------------------------------------------
// Data sources
// ---------------------------------------------------------------------------

#[tokio::test]
async fn data_vpc_default_and_its_subnets() {
    let rig = Rig::new().await;
    let (vpc_id, subnet_ids) = default_vpc(&rig.env).await;
    assert!(
        subnet_ids.len() >= 2,
        "moto's default VPC has a subnet per AZ"
    );

    let vpc = data_source("vpc")
        .read(&rig.aws, &args(json!({ "default": true })))
        .await
        .unwrap();
    assert_eq!(vpc["id"], json!(vpc_id));
    assert_eq!(vpc["cidr_block"], json!("172.31.0.0/16"));
    assert_eq!(vpc["is_default"], json!(true));
    assert_eq!(
        vpc["arn"],
        json!(format!("arn:aws:ec2:{REGION}:{ACCOUNT_ID}:vpc/{vpc_id}"))
    );

    let subnets = data_source("subnets")
        .read(&rig.aws, &args(json!({ "vpc": vpc_id })))
        .await
        .unwrap();
    assert_eq!(subnets["ids"], json!(subnet_ids));
    let zones = subnets["availability_zones"].as_array().unwrap();
    assert!(zones.len() >= 2, "{zones:?}");
    assert!(
        zones.windows(2).all(|w| w[0].as_str() < w[1].as_str()),
        "sorted, distinct: {zones:?}"
    );
    assert!(
        zones
            .iter()
            .all(|z| z.as_str().unwrap().starts_with(REGION))
    );
}

#[tokio::test]
async fn data_vpc_by_id_or_tags_must_match_exactly_one() {
    let rig = Rig::new().await;
    let ec2 = rig.env.ec2().await;
    let mut ids = Vec::new();
    for cidr in ["10.1.0.0/16", "10.2.0.0/16"] {
        let vpc = ec2.create_vpc().cidr_block(cidr).send().await.unwrap();
        let id = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
        let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
        ec2.create_tags()
            .resources(&id)
            .tags(tag("team", "web"))
            .tags(tag("Name", cidr))
            .send()
            .await
            .unwrap();
        ids.push(id);
    }
    let read = |a: Value| {
        let aws = &rig.aws;
        async move { data_source("vpc").read(aws, &args(a)).await }
    };

    let by_tag = read(json!({ "tags": { "Name": "10.2.0.0/16" } }))
        .await
        .unwrap();
    assert_eq!(by_tag["id"], json!(ids[1]));
    assert_eq!(by_tag["cidr_block"], json!("10.2.0.0/16"));
    assert_eq!(by_tag["is_default"], json!(false));
    let by_id = read(json!({ "id": ids[0] })).await.unwrap();
    assert_eq!(by_id["cidr_block"], json!("10.1.0.0/16"));

    let two = read(json!({ "tags": { "team": "web" } }))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        two.contains("exactly one VPC, but 2 matched the filter tag:team=web"),
        "{two}"
    );
    assert!(two.contains(&ids[0]) && two.contains(&ids[1]), "{two}");
    let none = read(json!({ "id": "vpc-0000000000" }))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        none.contains("but 0 matched the filter vpc-id=vpc-0000000000"),
        "{none}"
    );
    let both = read(json!({ "default": true, "tags": { "team": "web" } }))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        both.contains("0 matched the filter isDefault=true, tag:team=web"),
        "{both}"
    );
    let nothing = read(json!({})).await.unwrap_err().to_string();
    assert!(nothing.contains("needs a selector"), "{nothing}");

    // A VPC without subnets: data.subnets says so rather than returning an empty list.
    let err = data_source("subnets")
        .read(&rig.aws, &args(json!({ "vpc": ids[0] })))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("no subnet matched the filter vpc-id={}", ids[0])),
        "{err}"
    );
}

#[tokio::test]
async fn data_subnets_filter_by_tags() {
    let rig = Rig::new().await;
    let (vpc_id, subnet_ids) = default_vpc(&rig.env).await;
    let ec2 = rig.env.ec2().await;
    // Tag two subnets, in reverse order, to check `ids` comes back sorted.
    for id in subnet_ids[..2].iter().rev() {
        ec2.create_tags()
            .resources(id)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("tier")
                    .value("private")
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let subnets = data_source("subnets")
        .read(
            &rig.aws,
            &args(json!({ "vpc": vpc_id, "tags": { "tier": "private" } })),
        )
        .await
        .unwrap();
    assert_eq!(subnets["ids"], json!(subnet_ids[..2]));
    assert_eq!(subnets["availability_zones"].as_array().unwrap().len(), 2);
}

// ---------------------------------------------------------------------------
// rds_subnet_group
// ---------------------------------------------------------------------------

#[tokio::test]
async fn subnet_group_create_read_update_delete() {
    let rig = Rig::new().await;
    let (vpc_id, subnets) = default_vpc(&rig.env).await;
    let p = provider("rds_subnet_group");
    let cx = rig.cx("rds_subnet_group.main");
    let input = resolved(
        "rds_subnet_group",
        json!({ "name": "webapp-dev", "subnet_ids": subnets[..2], "tags": { "env": "dev" } }),
        &[],
    );
    assert_eq!(
        p.id_for(&desired(json!({ "name": "webapp-dev" })))
            .as_deref(),
        Some("webapp-dev")
    );

    let created = p.create(&cx, &input).await.unwrap();
    assert_eq!(created.id, "webapp-dev");
    assert_eq!(
        created.attrs["description"],
        json!("Managed by Stackwright")
    );
    assert_managed_eq("rds_subnet_group", &created.attrs, &input);
    assert_eq!(created.attrs["vpc_id"], json!(vpc_id));
    assert_eq!(
        created.attrs["arn"],
        json!(format!(
            "arn:aws:rds:{REGION}:{ACCOUNT_ID}:subgrp:webapp-dev"
        ))
    );
    assert_eq!(
        p.read(&cx, "webapp-dev").await.unwrap(),
        Some(created.clone())
    );

    // Independent read-back.
    let rds = rig.env.rds().await;
    let out = rds
        .describe_db_subnet_groups()
        .db_subnet_group_name("webapp-dev")
        .send()
        .await
        .unwrap();
    let group = &out.db_subnet_groups()[0];
    assert_eq!(
        group.db_subnet_group_description(),
        Some("Managed by Stackwright")
    );
    let mut got: Vec<&str> = group
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_identifier())
        .collect();
    got.sort();
    assert_eq!(
        got,
        subnets[..2].iter().map(String::as_str).collect::<Vec<_>>()
    );

    // Tags only: no ModifyDBSubnetGroup call.
    let input = resolved(
        "rds_subnet_group",
        json!({ "name": "webapp-dev", "subnet_ids": subnets[..2], "tags": { "owner": "web" } }),
        &[],
    );
    let live = p
        .update(&cx, "webapp-dev", &input, &["tags".into()])
        .await
        .unwrap();
    assert_eq!(live.attrs["tags"], json!({ "owner": "web" }));
    let tags = rds
        .list_tags_for_resource()
        .resource_name(created.attrs["arn"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_list().len(), 1);
    assert_eq!(tags.tag_list()[0].key(), Some("owner"));

    // Description and subnets in place.
    let input = resolved(
        "rds_subnet_group",
        json!({
            "name": "webapp-dev",
            "description": "webapp database subnets",
            "subnet_ids": subnets[..3],
            "tags": { "owner": "web" },
        }),
        &[],
    );
    let live = p
        .update(
            &cx,
            "webapp-dev",
            &input,
            &["description".into(), "subnet_ids".into()],
        )
        .await
        .unwrap();
    assert_managed_eq("rds_subnet_group", &live.attrs, &input);
    // (Reading it back here is impossible on moto: see
    // moto_deviation_modify_db_subnet_group_loses_the_group.)

    p.delete(&cx, "webapp-dev", &live.attrs).await.unwrap();
    assert_eq!(p.read(&cx, "webapp-dev").await.unwrap(), None);
    // Deleting what is already gone is not an error.
    p.delete(&cx, "webapp-dev", &live.attrs).await.unwrap();
    // Only the id reported right after the create call (for the apply's journal).
    let events = rig.take_events();
    assert!(
        events
            .iter()
            .all(|e| matches!(e, Event::Created { id, .. } if id == "webapp-dev")),
        "{events:?}"
    );
}

#[test]
fn subnet_group_names_must_be_lowercase() {
    let p = provider("rds_subnet_group");
    let err = p
        .check_change(None, &desired(json!({ "name": "WebApp" })))
        .unwrap_err();
    assert!(
        err.contains("must be lowercase") && err.contains("\"webapp\""),
        "{err}"
    );
    assert!(
        p.check_change(None, &desired(json!({ "name": "default" })))
            .is_err()
    );
    assert!(
        p.check_change(None, &desired(json!({ "name": "webapp" })))
            .is_ok()
    );
}

// ---------------------------------------------------------------------------
// rds_parameter_group
// ---------------------------------------------------------------------------

#[tokio::test]
async fn parameter_group_create_read_update_delete() {
    let rig = Rig::new().await;
    let p = provider("rds_parameter_group");
    let cx = rig.cx("rds_parameter_group.main");
    let input = resolved(
        "rds_parameter_group",
        json!({
            "name": "webapp-dev-pg16",
            "family": "postgres16",
            "parameters": { "log_min_duration_statement": "500", "rds.force_ssl": "1" },
            "tags": { "env": "dev" },
        }),
        &[],
    );
    let created = p.create(&cx, &input).await.unwrap();
    assert_eq!(created.id, "webapp-dev-pg16");
    assert_managed_eq("rds_parameter_group", &created.attrs, &input);
    assert_eq!(
        created.attrs["description"],
        json!("Managed by Stackwright")
    );
    assert_eq!(
        created.attrs["arn"],
        json!(format!(
            "arn:aws:rds:{REGION}:{ACCOUNT_ID}:pg:webapp-dev-pg16"
        ))
    );
    assert_eq!(
        p.read(&cx, "webapp-dev-pg16").await.unwrap(),
        Some(created.clone())
    );

    // Independent read-back. moto knows no ApplyType (it lists only what was set), so the
    // provider fell back to pending-reboot; on AWS both parameters are dynamic (immediate).
    let rds = rig.env.rds().await;
    let params = rds
        .describe_db_parameters()
        .db_parameter_group_name("webapp-dev-pg16")
        .send()
        .await
        .unwrap();
    let got: BTreeMap<&str, (&str, Option<&ApplyMethod>)> = params
        .parameters()
        .iter()
        .map(|p| {
            (
                p.parameter_name().unwrap(),
                (p.parameter_value().unwrap(), p.apply_method()),
            )
        })
        .collect();
    assert_eq!(
        got,
        BTreeMap::from([
            (
                "log_min_duration_statement",
                ("500", Some(&ApplyMethod::PendingReboot))
            ),
            ("rds.force_ssl", ("1", Some(&ApplyMethod::PendingReboot))),
        ])
    );

    // Change one parameter, add one, replace the tags.
    let input = resolved(
        "rds_parameter_group",
        json!({
            "name": "webapp-dev-pg16",
            "family": "postgres16",
            "parameters": {
                "log_min_duration_statement": "1000",
                "rds.force_ssl": "1",
                "work_mem": "8192",
            },
            "tags": { "owner": "web" },
        }),
        &[],
    );
    let prior = created.attrs.clone();
    let notes = p
        .check_change(
            Some(&prior),
            &desired(Value::Object(input.attrs.clone().into_iter().collect())),
        )
        .unwrap();
    assert_eq!(notes.notes.len(), 1, "{notes:?}");
    let live = p
        .update(
            &cx,
            "webapp-dev-pg16",
            &input,
            &["parameters".into(), "tags".into()],
        )
        .await
        .unwrap();
    assert_managed_eq("rds_parameter_group", &live.attrs, &input);
    assert_eq!(
        p.read(&cx, "webapp-dev-pg16").await.unwrap(),
        Some(live.clone())
    );

    // Force-new attributes are refused in place.
    let err = p
        .update(&cx, "webapp-dev-pg16", &input, &["family".into()])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("family cannot change in place"),
        "{err}"
    );

    p.delete(&cx, "webapp-dev-pg16", &live.attrs).await.unwrap();
    assert_eq!(p.read(&cx, "webapp-dev-pg16").await.unwrap(), None);
    p.delete(&cx, "webapp-dev-pg16", &live.attrs).await.unwrap();
}

// ---------------------------------------------------------------------------
// rds_instance
// ---------------------------------------------------------------------------

/// Creates the subnet and parameter groups an instance uses; returns their names.
async fn instance_groups(rig: &Rig) -> (String, String) {
    let (_, subnets) = default_vpc(&rig.env).await;
    let sg = provider("rds_subnet_group")
        .create(
            &rig.cx("rds_subnet_group.main"),
            &resolved(
                "rds_subnet_group",
                json!({ "name": "webapp-dev", "subnet_ids": subnets[..2] }),
                &[],
            ),
        )
        .await
        .unwrap();
    let pg = provider("rds_parameter_group")
        .create(
            &rig.cx("rds_parameter_group.main"),
            &resolved(
                "rds_parameter_group",
                json!({ "name": "webapp-dev-pg16", "family": "postgres16" }),
                &[],
            ),
        )
        .await
        .unwrap();
    (sg.id, pg.id)
}

fn instance_input(extra: Value) -> Resolved {
    let mut attrs = json!({
        "identifier": "webapp-dev",
        "engine": "postgres",
        "engine_version": "16.3",
        "instance_class": "db.t4g.micro",
        "allocated_storage": 20,
        "max_allocated_storage": 100,
        "storage_type": "gp3",
        "preferred_backup_window": "03:00-04:00",
        "master_username": "app",
        "db_name": "app",
        "tags": { "env": "dev" },
    });
    for (k, v) in extra.as_object().unwrap() {
        attrs[k] = v.clone();
    }
    resolved("rds_instance", attrs, &[("master_password", PASSWORD)])
}

#[tokio::test]
async fn instance_create_read_modify_delete_with_final_snapshot() {
    let rig = Rig::new().await;
    let (sg, pg) = instance_groups(&rig).await;
    rig.take_events();
    let p = provider("rds_instance");
    let cx = rig.cx("rds_instance.main");
    let input = instance_input(json!({ "db_subnet_group": sg, "parameter_group": pg }));
    assert_eq!(
        input.attrs["backup_retention_days"],
        json!(7),
        "schema default"
    );
    assert_eq!(
        input.attrs["storage_encrypted"],
        json!(true),
        "schema default"
    );

    let created = p.create(&cx, &input).await.unwrap();
    // moto deviation: the instance is `available` the moment CreateDBInstance returns
    // (AWS: `creating`, then `backing-up`, for minutes), so no Waiting event is emitted.
    let events = rig.take_events();
    assert_eq!(waiting(&events), Vec::<String>::new());
    assert_eq!(created.id, "webapp-dev");
    assert_managed_eq("rds_instance", &created.attrs, &input);
    let a = &created.attrs;
    assert_eq!(
        a["arn"],
        json!(format!("arn:aws:rds:{REGION}:{ACCOUNT_ID}:db:webapp-dev"))
    );
    assert!(
        a["endpoint"].as_str().unwrap().starts_with("webapp-dev."),
        "{a:?}"
    );
    assert_eq!(a["port"], json!(5432));
    assert!(
        a["resource_id"].as_str().unwrap().starts_with("db-"),
        "{a:?}"
    );
    assert_eq!(a["status"], json!("available"));
    assert!(!format!("{created:?}").contains(PASSWORD));
    assert_eq!(
        p.read(&cx, "webapp-dev").await.unwrap(),
        Some(created.clone())
    );

    // Independent read-back.
    let rds = rig.env.rds().await;
    let describe = || async {
        rds.describe_db_instances()
            .db_instance_identifier("webapp-dev")
            .send()
            .await
            .unwrap()
            .db_instances()[0]
            .clone()
    };
    let db = describe().await;
    assert_eq!(db.engine(), Some("postgres"));
    assert_eq!(db.engine_version(), Some("16.3"));
    assert_eq!(db.db_instance_class(), Some("db.t4g.micro"));
    assert_eq!(db.allocated_storage(), Some(20));
    assert_eq!(db.max_allocated_storage(), Some(100));
    assert_eq!(db.storage_encrypted(), Some(true));
    assert_eq!(db.backup_retention_period(), Some(7));
    assert_eq!(db.master_username(), Some("app"));
    assert_eq!(db.db_name(), Some("app"));
    assert_eq!(
        db.db_subnet_group().and_then(|g| g.db_subnet_group_name()),
        Some("webapp-dev")
    );
    assert_eq!(
        db.db_parameter_groups()[0].db_parameter_group_name(),
        Some("webapp-dev-pg16")
    );
    assert_eq!(db.tag_list().len(), 1);

    // Modify the instance class (applied immediately).
    let input = instance_input(json!({
        "db_subnet_group": sg, "parameter_group": pg, "instance_class": "db.t4g.small",
    }));
    // The plan warns that the default apply_immediately = true means a reboot now.
    let reboot = p
        .check_change(
            Some(&created.attrs),
            &desired(Value::Object(input.attrs.clone().into_iter().collect())),
        )
        .unwrap();
    assert_eq!(
        reboot.warnings,
        vec![
            "instance_class db.t4g.micro -> db.t4g.small: the instance reboots during this apply (apply_immediately defaults to true), a few minutes of downtime; set apply_immediately = false to wait for the maintenance window".to_string()
        ]
    );
    let live = p
        .update(&cx, "webapp-dev", &input, &["instance_class".into()])
        .await
        .unwrap();
    assert_eq!(live.attrs["instance_class"], json!("db.t4g.small"));
    assert_managed_eq("rds_instance", &live.attrs, &input);
    assert_eq!(describe().await.db_instance_class(), Some("db.t4g.small"));

    // apply_immediately = false: the provider notes the maintenance window.
    let input = instance_input(json!({
        "db_subnet_group": sg, "parameter_group": pg, "instance_class": "db.t4g.medium",
        "allocated_storage": 30, "apply_immediately": false,
    }));
    let prior = live.attrs.clone();
    let plan_notes = p
        .check_change(
            Some(&prior),
            &desired(Value::Object(input.attrs.clone().into_iter().collect())),
        )
        .unwrap();
    assert_eq!(
        plan_notes.notes,
        vec![
            "changes wait for the next maintenance window (apply_immediately = false): instance_class, allocated_storage".to_string()
        ]
    );
    assert!(plan_notes.warnings.is_empty(), "{plan_notes:?}");
    rig.take_events();
    p.update(
        &cx,
        "webapp-dev",
        &input,
        &["instance_class".into(), "allocated_storage".into()],
    )
    .await
    .unwrap();
    let events = rig.take_events();
    assert_eq!(
        notes(&events),
        vec![
            "instance_class, allocated_storage will change in the next maintenance window (apply_immediately = false)"
                .to_string()
        ]
    );
    // moto deviation: ApplyImmediately=false is applied at once, with nothing in
    // PendingModifiedValues (AWS keeps db.t4g.small and lists the change as pending).
    let db = describe().await;
    assert_eq!(db.db_instance_class(), Some("db.t4g.medium"));
    assert_eq!(db.allocated_storage(), Some(30));
    assert!(db.pending_modified_values().is_none());

    // Tags: one removed, one added; local-only attributes need no call.
    let input = instance_input(json!({
        "db_subnet_group": sg, "parameter_group": pg, "instance_class": "db.t4g.medium",
        "allocated_storage": 30, "tags": { "owner": "web" }, "final_snapshot": true,
    }));
    let live = p
        .update(
            &cx,
            "webapp-dev",
            &input,
            &["tags".into(), "final_snapshot".into()],
        )
        .await
        .unwrap();
    assert_eq!(live.attrs["tags"], json!({ "owner": "web" }));
    let db = describe().await;
    let tags: Vec<(&str, &str)> = db
        .tag_list()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(tags, vec![("owner", "web")]);

    // Force-new attributes are refused in place.
    let err = p
        .update(&cx, "webapp-dev", &input, &["engine".into()])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("engine cannot change in place"),
        "{err}"
    );

    // Delete with a final snapshot.
    let mut prior = live.attrs.clone();
    prior.insert("final_snapshot".into(), json!(true));
    let warnings = p.delete_notes(&prior).warnings;
    assert_eq!(
        warnings,
        vec!["final snapshot webapp-dev-final-<UTC %Y%m%d%H%M%S> will be taken".to_string()]
    );
    rig.take_events();
    p.delete(&cx, "webapp-dev", &prior).await.unwrap();
    assert_eq!(p.read(&cx, "webapp-dev").await.unwrap(), None);
    let events = rig.take_events();
    let snaps = rds
        .describe_db_snapshots()
        .db_instance_identifier("webapp-dev")
        .snapshot_type("manual")
        .send()
        .await
        .unwrap();
    assert_eq!(snaps.db_snapshots().len(), 1);
    let snap = snaps.db_snapshots()[0].db_snapshot_identifier().unwrap();
    let stamp = snap.strip_prefix("webapp-dev-final-").expect(snap);
    assert!(
        stamp.len() == 14 && stamp.bytes().all(|b| b.is_ascii_digit()),
        "{snap}"
    );
    assert_eq!(
        notes(&events),
        vec![format!(
            "taking final snapshot {snap}; it is kept after the instance is deleted"
        )]
    );
    // Deleting what is already gone is not an error.
    p.delete(&cx, "webapp-dev", &prior).await.unwrap();

    let all = format!("{:?}", rig.events.0.lock().unwrap());
    assert!(!all.contains(PASSWORD));
}

#[tokio::test]
async fn instance_delete_without_final_snapshot_and_deletion_protection() {
    let rig = Rig::new().await;
    let p = provider("rds_instance");
    let cx = rig.cx("rds_instance.main");
    let input = instance_input(json!({ "deletion_protection": true, "final_snapshot": false }));
    let live = p.create(&cx, &input).await.unwrap();
    assert_eq!(live.attrs["deletion_protection"], json!(true));
    // No subnet or parameter group given: AWS (and moto) report the defaults.
    assert_eq!(live.attrs.get("db_subnet_group"), None);
    assert_eq!(live.attrs["parameter_group"], json!("default.postgres16"));

    let mut prior = live.attrs.clone();
    prior.insert("final_snapshot".into(), json!(false));
    assert_eq!(
        p.delete_notes(&prior).warnings,
        vec![
            "deletion_protection = true: the delete will be refused until it is set to false and applied"
                .to_string(),
            "NO final snapshot: final_snapshot = false".to_string(),
        ]
    );
    let err = p.delete(&cx, "webapp-dev", &prior).await.unwrap_err();
    assert!(
        err.to_string().contains("deletion_protection = true"),
        "{err}"
    );
    assert!(
        p.read(&cx, "webapp-dev").await.unwrap().is_some(),
        "refused: still there"
    );

    let input = instance_input(json!({ "deletion_protection": false, "final_snapshot": false }));
    let live = p
        .update(&cx, "webapp-dev", &input, &["deletion_protection".into()])
        .await
        .unwrap();
    assert_eq!(live.attrs["deletion_protection"], json!(false));
    let mut prior = live.attrs.clone();
    prior.insert("final_snapshot".into(), json!(false));
    rig.take_events();
    p.delete(&cx, "webapp-dev", &prior).await.unwrap();
    assert_eq!(
        notes(&rig.take_events()),
        vec!["no final snapshot taken (final_snapshot = false)".to_string()]
    );
    assert_eq!(p.read(&cx, "webapp-dev").await.unwrap(), None);
    let snaps = rig
        .env
        .rds()
        .await
        .describe_db_snapshots()
        .snapshot_type("manual")
        .send()
        .await
        .unwrap();
    assert!(snaps.db_snapshots().is_empty(), "{snaps:?}");
}

#[test]
fn instance_check_change_refuses_impossible_changes() {
    let p = provider("rds_instance");
    let prior: Attrs = [
        ("identifier".to_string(), json!("webapp-dev")),
        ("allocated_storage".to_string(), json!(50)),
        ("engine_version".to_string(), json!("16.4")),
    ]
    .into();
    let check = |d: Value| p.check_change(Some(&prior), &desired(d));

    let err = check(json!({ "allocated_storage": 20 })).unwrap_err();
    assert!(
        err.starts_with("cannot shrink allocated_storage from 50 to 20: RDS storage only grows; "),
        "{err}"
    );
    assert!(check(json!({ "allocated_storage": 50 })).is_ok());
    assert!(check(json!({ "allocated_storage": 100 })).is_ok());
    let err = check(json!({ "allocated_storage": 52 })).unwrap_err();
    assert!(err.contains("from 50 to at least 55"), "{err}");
    // A value not yet known (an interpolation) is not judged.
    let unknown: BTreeMap<String, Desired> =
        [("allocated_storage".to_string(), Desired::Unknown)].into();
    assert!(p.check_change(Some(&prior), &unknown).is_ok());

    let err = check(json!({ "engine_version": "16.3" })).unwrap_err();
    assert!(
        err.starts_with("cannot downgrade engine_version from 16.4 to 16.3"),
        "{err}"
    );
    assert!(check(json!({ "engine_version": "17.1" })).is_ok());

    let err = check(json!({ "allocated_storage": 100, "max_allocated_storage": 100 })).unwrap_err();
    assert!(
        err.contains("max_allocated_storage (100) must be greater"),
        "{err}"
    );
    let err = p
        .check_change(None, &desired(json!({ "identifier": "WebApp-Dev" })))
        .unwrap_err();
    assert!(err.contains("lowercase"), "{err}");

    // The maintenance-window note only for an in-place change to an existing instance.
    let lazy = json!({ "apply_immediately": false, "allocated_storage": 100 });
    assert_eq!(
        check(lazy.clone()).unwrap().notes,
        vec![
            "changes wait for the next maintenance window (apply_immediately = false): allocated_storage".to_string()
        ]
    );
    assert!(
        p.check_change(None, &desired(lazy))
            .unwrap()
            .notes
            .is_empty()
    );
    let unchanged = json!({ "apply_immediately": false, "allocated_storage": 50 });
    assert!(check(unchanged).unwrap().notes.is_empty());
    let now = json!({ "apply_immediately": true, "allocated_storage": 100 });
    assert!(check(now).unwrap().notes.is_empty());
    // AWS applies deletion protection at once whatever apply_immediately says.
    let at_once = json!({ "apply_immediately": false, "deletion_protection": true });
    assert!(check(at_once).unwrap().notes.is_empty());
}

// ---------------------------------------------------------------------------
// wait_for
// ---------------------------------------------------------------------------

fn bare_aws() -> Aws {
    Aws::from_config(aws_config::SdkConfig::builder().build())
}

/// The production poll interval (`Cx::new`'s 5 s). The waiter tests below run on tokio's
/// paused clock (`start_paused`): `wait_for` sleeps and measures on tokio's clock, so
/// minutes of scripted statuses take no real time and every elapsed time is exact. They
/// make no HTTP call (`bare_aws` is never used to send), so no hyper or SDK timeout can
/// fire early under the paused clock.
fn wait_cx<'a>(aws: &'a Aws, events: &'a Recorder, timeout: Duration) -> Cx<'a> {
    let cx = Cx::new(aws, "rds_instance.main", events, timeout);
    assert_eq!(cx.poll_interval, Duration::from_secs(5));
    cx
}

fn waiting_elapsed(events: &[Event]) -> Vec<Duration> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Waiting { elapsed, .. } => Some(*elapsed),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn wait_for_emits_one_waiting_event_per_status_change() {
    let (aws, events) = (bare_aws(), Recorder::default());
    let cx = wait_cx(&aws, &events, Duration::from_secs(600));
    let script = Mutex::new(VecDeque::from(["creating", "creating", "modifying"]));
    let polls = Mutex::new(0);
    let (script, count) = (&script, &polls);
    let start = Instant::now();
    wait_for(&cx, "the scripted instance", move || async move {
        *count.lock().unwrap() += 1;
        Ok(script.lock().unwrap().pop_front().map(str::to_owned))
    })
    .await
    .unwrap();
    assert_eq!(*polls.lock().unwrap(), 4);
    // Three sleeps of one poll interval between the four polls, none after the last.
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    let events = events.0.into_inner().unwrap();
    assert_eq!(waiting(&events), vec!["creating", "modifying"]);
    assert_eq!(
        waiting_elapsed(&events),
        [Duration::ZERO, Duration::from_secs(10)]
    );
    for e in &events {
        let Event::Waiting { address, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(address, "rds_instance.main");
    }
}

#[tokio::test(start_paused = true)]
async fn wait_for_follows_a_timed_status_sequence() {
    // An instance that is `creating` for 4 minutes, then `backing-up` for 2, as on AWS:
    // polled every 5 s, many polls per status, one event each, at the exact times.
    let (aws, events) = (bare_aws(), Recorder::default());
    let cx = wait_cx(&aws, &events, Duration::from_secs(3600));
    let start = Instant::now();
    let polls = Mutex::new(0u32);
    let count = &polls;
    wait_for(&cx, "the timed instance", move || async move {
        *count.lock().unwrap() += 1;
        Ok(match start.elapsed().as_secs() {
            0..240 => Some("creating".to_owned()),
            240..360 => Some("backing-up".to_owned()),
            _ => None,
        })
    })
    .await
    .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(360));
    // Polls at 0, 5, ..., 360 s.
    assert_eq!(*polls.lock().unwrap(), 73);
    let events = events.0.into_inner().unwrap();
    assert_eq!(waiting(&events), vec!["creating", "backing-up"]);
    assert_eq!(
        waiting_elapsed(&events),
        [Duration::ZERO, Duration::from_secs(240)]
    );
}

#[tokio::test(start_paused = true)]
async fn wait_for_times_out_with_the_last_status() {
    let (aws, events) = (bare_aws(), Recorder::default());
    let cx = wait_cx(&aws, &events, Duration::from_secs(40 * 60));
    let start = Instant::now();
    let polls = Mutex::new(0u32);
    let count = &polls;
    let err = wait_for(
        &cx,
        "DB instance stuck to become available",
        move || async move {
            *count.lock().unwrap() += 1;
            Ok(Some("creating".to_owned()))
        },
    )
    .await
    .unwrap_err();
    // It gives up at the first poll at or past the timeout, not a poll later.
    assert_eq!(start.elapsed(), Duration::from_secs(40 * 60));
    assert_eq!(*polls.lock().unwrap(), 40 * 60 / 5 + 1);
    let msg = err.to_string();
    assert!(msg.contains("timed out after 2400s"), "{msg}");
    assert!(
        msg.contains("DB instance stuck to become available (last status: creating)"),
        "{msg}"
    );
    assert_eq!(waiting(&events.0.into_inner().unwrap()), vec!["creating"]);
}

#[tokio::test]
async fn wait_for_passes_a_poll_error_through() {
    let (aws, events) = (bare_aws(), Recorder::default());
    let cx = wait_cx(&aws, &events, Duration::from_secs(10));
    let err = wait_for(&cx, "anything", || async {
        Err(stackwright::providers::AwsError::new(
            Some("Throttling"),
            "slow down",
        ))
    })
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "Throttling: slow down");
}

// ---------------------------------------------------------------------------
// moto deviations (each would fail, or behave differently, on AWS)
// ---------------------------------------------------------------------------

/// AWS refuses DeleteDBInstance unless it says FinalDBSnapshotIdentifier or
/// SkipFinalSnapshot=true (InvalidParameterCombination); moto 5.2.1 deleted without a
/// snapshot, so the harness patches it (tests/README.md row 4).
#[tokio::test]
async fn moto_deviation_delete_db_instance_without_a_snapshot_choice() {
    let rig = Rig::new().await;
    provider("rds_instance")
        .create(&rig.cx("rds_instance.main"), &instance_input(json!({})))
        .await
        .unwrap();
    let rds = rig.env.rds().await;
    // Patched in the harness (rds_delete_needs_a_snapshot_choice): refused, as AWS does.
    let err = rds
        .delete_db_instance()
        .db_instance_identifier("webapp-dev")
        .send()
        .await
        .expect_err("a delete without a final-snapshot choice is refused");
    assert_eq!(
        aws_sdk_rds::error::ProvideErrorMetadata::code(&err),
        Some("InvalidParameterCombination"),
        "{err:?}"
    );
    assert_eq!(
        rds.describe_db_instances()
            .send()
            .await
            .unwrap()
            .db_instances()
            .len(),
        1,
        "the instance is still there"
    );
}

/// AWS refuses to shrink storage; moto shrinks it (hence check_change refuses at plan time).
#[tokio::test]
async fn moto_deviation_allocated_storage_shrinks() {
    let rig = Rig::new().await;
    provider("rds_instance")
        .create(&rig.cx("rds_instance.main"), &instance_input(json!({})))
        .await
        .unwrap();
    let out = rig
        .env
        .rds()
        .await
        .modify_db_instance()
        .db_instance_identifier("webapp-dev")
        .allocated_storage(10)
        .apply_immediately(true)
        .send()
        .await
        .expect("moto accepts a shrink that AWS refuses");
    assert_eq!(out.db_instance().unwrap().allocated_storage(), Some(10));
}

/// moto 5.2.1's ModifyDBSubnetGroup takes the group out of its table and never puts it
/// back: the reply is right, but the group is gone afterwards (AWS keeps it, modified).
#[tokio::test]
async fn moto_deviation_modify_db_subnet_group_loses_the_group() {
    let rig = Rig::new().await;
    let (_, subnets) = default_vpc(&rig.env).await;
    let rds = rig.env.rds().await;
    rds.create_db_subnet_group()
        .db_subnet_group_name("lost")
        .db_subnet_group_description("before")
        .set_subnet_ids(Some(subnets[..2].to_vec()))
        .send()
        .await
        .unwrap();
    let out = rds
        .modify_db_subnet_group()
        .db_subnet_group_name("lost")
        .db_subnet_group_description("after")
        .set_subnet_ids(Some(subnets[..2].to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.db_subnet_group().unwrap().db_subnet_group_description(),
        Some("after")
    );
    let err = rds
        .describe_db_subnet_groups()
        .db_subnet_group_name("lost")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.into_service_error()
            .is_db_subnet_group_not_found_fault()
    );
}

/// moto 5.2.1 does not implement ResetDBParameterGroup (HTTP 500), so removing a parameter
/// from `parameters` fails there; on AWS it resets the parameter to the engine default.
/// Also: DescribeDBParameterGroups with an unknown name answers an empty list (AWS:
/// DBParameterGroupNotFound), which the provider reads as "missing" either way.
#[tokio::test]
async fn moto_deviation_reset_db_parameter_group_is_unimplemented() {
    let rig = Rig::new().await;
    let aws = rig.aws_without_retries().await;
    let cx = Cx {
        aws: &aws,
        ..rig.cx("rds_parameter_group.main")
    };
    let p = provider("rds_parameter_group");
    let with = |params: Value| {
        resolved(
            "rds_parameter_group",
            json!({ "name": "pg", "family": "postgres16", "parameters": params }),
            &[],
        )
    };
    p.create(
        &cx,
        &with(json!({ "work_mem": "8192", "rds.force_ssl": "1" })),
    )
    .await
    .unwrap();
    let err = p
        .update(
            &cx,
            "pg",
            &with(json!({ "rds.force_ssl": "1" })),
            &["parameters".into()],
        )
        .await
        .unwrap_err();
    assert!(!err.to_string().is_empty());
    let live = p.read(&cx, "pg").await.unwrap().unwrap();
    assert_eq!(
        live.attrs["parameters"],
        json!({ "rds.force_ssl": "1", "work_mem": "8192" })
    );
    // No tags: read as an empty table (a stack's `tags = {}` compares equal).
    assert_eq!(live.attrs["tags"], json!({}));

    let out = rig
        .env
        .rds()
        .await
        .describe_db_parameter_groups()
        .db_parameter_group_name("missing")
        .send()
        .await
        .expect("moto answers an empty list where AWS raises DBParameterGroupNotFound");
    assert!(out.db_parameter_groups().is_empty());
    assert_eq!(p.read(&cx, "missing").await.unwrap(), None);
}
