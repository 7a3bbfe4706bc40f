//! Issue 6's fault tests: the real binary against real moto behind the test-side
//! [`FaultProxy`](crate::common::proxy::FaultProxy), which answers a share of requests with
//! throttling errors, HTML 500/503 pages or dropped connections. Results are read back
//! through the SDK straight from moto, never through the proxy.

use std::collections::BTreeMap;

use crate::common::TestEnv;
use crate::common::proxy::Fault;

const BUCKETS: usize = 8;
const PARAMS: usize = 16;
const SECRET: (&str, &str) = ("FAULT_SECRET", "fault-secret-value");

/// Buckets with versioning, encryption and tags (several calls each), parameters that
/// reference them, and a SecureString.
fn stack() -> String {
    let mut s = String::from("[stack]\nname = \"faults\"\nregion = \"us-east-1\"\n\n");
    for i in 0..BUCKETS {
        s.push_str(&format!(
            "[s3_bucket.b{i}]\nname = \"faults-b{i}\"\nversioning = true\ntags = {{ n = \"{i}\" }}\n\n"
        ));
    }
    s.push_str("[ssm_parameter.p0]\nname = \"/faults/p0\"\ntype = \"SecureString\"\nvalue = { from_env = \"FAULT_SECRET\" }\n\n");
    for i in 1..PARAMS {
        s.push_str(&format!(
            "[ssm_parameter.p{i}]\nname = \"/faults/p{i}\"\nvalue = \"${{s3_bucket.b{}.arn}}\"\ntags = {{ i = \"{i}\" }}\n\n",
            i % BUCKETS
        ));
    }
    s
}

fn setup() -> TestEnv {
    let env = TestEnv::new();
    env.write("faults.toml", stack());
    env
}

fn run(env: &TestEnv, args: &[&str], extra: &[(&str, &str)]) -> crate::common::Run {
    env.run_with(args, |c| {
        c.env(SECRET.0, SECRET.1);
        for (k, v) in extra {
            c.env(k, v);
        }
    })
}

/// What AWS holds, read through the SDK: bucket → (versioning, tags), parameter → (type,
/// value, tags). Equal for two accounts that got the same stack applied.
async fn account(env: &TestEnv) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let s3 = env.s3().await;
    for b in s3.list_buckets().send().await.unwrap().buckets() {
        let name = b.name().unwrap().to_owned();
        let v = s3
            .get_bucket_versioning()
            .bucket(&name)
            .send()
            .await
            .unwrap();
        let tags = s3.get_bucket_tagging().bucket(&name).send().await.unwrap();
        let tags: Vec<_> = tags
            .tag_set()
            .iter()
            .map(|t| format!("{}={}", t.key(), t.value()))
            .collect();
        out.insert(name, format!("{:?} {tags:?}", v.status()));
    }
    let ssm = env.ssm().await;
    let names: Vec<String> = (0..PARAMS).map(|i| format!("/faults/p{i}")).collect();
    for name in names {
        let Ok(p) = ssm
            .get_parameter()
            .name(&name)
            .with_decryption(true)
            .send()
            .await
        else {
            continue;
        };
        let p = p.parameter().unwrap();
        let tags = ssm
            .list_tags_for_resource()
            .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
            .resource_id(&name)
            .send()
            .await
            .unwrap();
        let tags: Vec<_> = tags
            .tag_list()
            .iter()
            .map(|t| format!("{}={}", t.key(), t.value()))
            .collect();
        out.insert(
            name,
            format!("{:?} {} {tags:?}", p.r#type(), p.value().unwrap()),
        );
    }
    out
}

/// The state's resources without what differs between two runs of the same stack.
fn state_resources(env: &TestEnv) -> serde_json::Value {
    let state: serde_json::Value = serde_json::from_str(&env.read("state/faults.json")).unwrap();
    state["resources"].clone()
}

#[tokio::test]
async fn twenty_percent_faults_apply_equals_a_fault_free_apply() {
    let clean = setup();
    run(&clean, &["apply", "faults.toml", "--auto-approve"], &[]).assert_success();

    let faulty = setup();
    let proxy = faulty.proxy();
    proxy.set_fault_rate(0.2);
    let applied = run(&faulty, &["apply", "faults.toml", "--auto-approve"], &[]);
    applied.assert_success();
    // The plan after it reads everything again, through the same faults.
    run(
        &faulty,
        &["plan", "faults.toml", "--detailed-exitcode"],
        &[],
    )
    .assert_code(0);
    let (requests, faults) = (proxy.requests(), proxy.faults());
    eprintln!(
        "faults: {requests} requests, {faults} answered with a fault ({:.0}%); apply and plan completed",
        100.0 * faults as f64 / requests as f64
    );
    assert!(faults >= 20, "too few faults to mean anything: {faults}");

    assert_eq!(account(&faulty).await, account(&clean).await);
    assert_eq!(state_resources(&faulty), state_resources(&clean));
    assert!(
        !applied.stderr().contains("DispatchFailure") && !applied.stdout().contains("<html>"),
        "{applied}"
    );
}

#[tokio::test]
async fn a_permanent_fault_skips_dependants_and_the_next_apply_converges() {
    let env = setup();
    let proxy = env.proxy();
    // Every write to bucket b3 fails with an HTML 500, on every attempt (its reads pass,
    // so the plan is made and the failure happens in the apply).
    proxy.fail_matching("PUT /faults-b3", Fault::Html500);
    let attempts = [("AWS_MAX_ATTEMPTS", "2")];
    let failed = run(&env, &["apply", "faults.toml", "--auto-approve"], &attempts);
    failed.assert_code(1);
    // The message is one line naming the status, not the SDK's debug dump.
    failed
        .assert_stderr_contains("s3_bucket.b3")
        .assert_stderr_contains("HTTP 500");
    assert!(!failed.stderr().contains("DispatchFailure"), "{failed}");
    assert!(!failed.stderr().contains("<html>"), "{failed}");
    let live = account(&env).await;
    assert!(!live.contains_key("faults-b3"), "{live:?}");
    // Parameters 3 and 11 reference b3: skipped. Everything independent completed.
    for i in 0..PARAMS {
        let name = format!("/faults/p{i}");
        assert_eq!(
            live.contains_key(&name),
            i % BUCKETS != 3,
            "{name}: {failed}"
        );
    }
    assert_eq!(
        live.keys().filter(|k| k.starts_with("faults-b")).count(),
        BUCKETS - 1
    );
    failed.assert_stdout_contains("skipped");
    // CI reads the same failure, typed, from the JSON summary.
    let json = run(
        &env,
        &["apply", "faults.toml", "--auto-approve", "--json"],
        &attempts,
    );
    json.assert_code(1);
    let summary: serde_json::Value = json
        .stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .expect("a summary line");
    assert_eq!(
        summary["failed"],
        serde_json::json!([{
            "address": "s3_bucket.b3",
            "operation": "create",
            "error": summary["failed"][0]["error"],
            "error_kind": "transient",
        }]),
        "{summary}"
    );

    proxy.clear_faults();
    run(&env, &["apply", "faults.toml", "--auto-approve"], &[]).assert_success();
    run(&env, &["plan", "faults.toml", "--detailed-exitcode"], &[]).assert_code(0);
    assert_eq!(account(&env).await.len(), BUCKETS + PARAMS);
}

/// Each RDS create's first reply is lost after moto carried it out (the hard case: the
/// client cannot tell whether it happened); the SDK's retry meets "already exists". The
/// providers recognise their own first attempt by reading it back, so the apply completes
/// with one of each, and a plan after it has nothing to do.
#[tokio::test]
async fn lost_replies_of_rds_creates_are_adopted() {
    let env = TestEnv::new();
    env.write(
        "rds.toml",
        crate::common::rds_stack("lost", "LOST_DB_PASSWORD"),
    );
    let proxy = env.proxy();
    for action in [
        "Action=CreateDBSubnetGroup",
        "Action=CreateDBParameterGroup",
        "Action=CreateDBInstance",
    ] {
        proxy.fail_once_matching(action, Fault::DropAfter);
    }
    let pw = [("LOST_DB_PASSWORD", "Lost-reply-pw-5521")];
    let applied = run(&env, &["apply", "rds.toml", "--auto-approve"], &pw);
    applied.assert_success();
    assert_eq!(proxy.faults(), 3, "every create lost its first reply");
    run(&env, &["plan", "rds.toml", "--detailed-exitcode"], &pw).assert_code(0);

    let rds = env.rds().await;
    let groups = rds.describe_db_subnet_groups().send().await.unwrap();
    let names: Vec<_> = groups
        .db_subnet_groups()
        .iter()
        .filter_map(|g| g.db_subnet_group_name())
        .collect();
    assert_eq!(names, ["lost-db"]);
    let pg = rds
        .describe_db_parameters()
        .db_parameter_group_name("lost-db-pg")
        .send()
        .await
        .unwrap();
    assert!(
        pg.parameters()
            .iter()
            .any(|p| p.parameter_name() == Some("log_min_duration_statement")
                && p.parameter_value() == Some("500")),
        "the parameters were set after the adopted create"
    );
    let dbs = rds.describe_db_instances().send().await.unwrap();
    let ids: Vec<_> = dbs
        .db_instances()
        .iter()
        .filter_map(|d| d.db_instance_identifier())
        .collect();
    assert_eq!(ids, ["lost-db"]);
    let state: serde_json::Value = serde_json::from_str(&env.read("state/lost.json")).unwrap();
    assert_eq!(state["resources"]["rds_instance.db"]["id"], "lost-db");
}

/// A group of the same name that is not what the stack sent is someone else's: a create
/// that meets it fails, naming it, and adopts nothing.
#[tokio::test]
async fn a_foreign_rds_group_met_at_create_is_not_adopted() {
    let env = TestEnv::new();
    env.write(
        "pg.toml",
        "[stack]\nname = \"foreign\"\nregion = \"us-east-1\"\n\n[rds_parameter_group.db]\nname = \"foreign-pg\"\nfamily = \"postgres16\"\n",
    );
    // Saved before the other group exists, so the apply meets it only at create time.
    run(&env, &["plan", "pg.toml", "--out", "foreign.plan"], &[]).assert_success();
    env.rds()
        .await
        .create_db_parameter_group()
        .db_parameter_group_name("foreign-pg")
        .db_parameter_group_family("postgres15")
        .description("someone else's")
        .send()
        .await
        .unwrap();
    let applied = run(&env, &["apply", "foreign.plan", "--auto-approve"], &[]);
    applied
        .assert_code(1)
        .assert_stderr_contains("rds_parameter_group.db")
        .assert_stderr_contains("DBParameterGroupAlreadyExists");
    let state: serde_json::Value =
        serde_json::from_str(&env.read("state/foreign.json")).unwrap_or_default();
    assert!(
        state["resources"].get("rds_parameter_group.db").is_none(),
        "{state}"
    );
}
