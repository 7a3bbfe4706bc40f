//! Issue 2's "done means", end to end: the real binary against a real moto_server, with
//! results read back independently through the AWS SDK.

use crate::common::proxy::Fault;
use crate::common::{Run, TestEnv};

const CANARY: &str = "canary-Sekr1t-7f3a9c";

/// A stack of S3 and SSM only (RDS has its own tests), with environments, vars, a secret
/// and a reference edge.
pub const STACK: &str = r#"
[stack]
name = "webapp"
region = "us-east-1"
environments = ["dev", "staging", "prod"]

[vars]
log_level = "INFO"
[env.prod.vars]
log_level = "WARNING"

[s3_bucket.uploads]
name = "${stack.name}-${env}-uploads"
versioning = true
encryption = "AES256"
block_public_access = true
tags = { app = "webapp", env = "${env}" }

[[s3_bucket.uploads.lifecycle_rule]]
id = "expire-noncurrent"
noncurrent_version_expiration_days = 30

[ssm_parameter.log_level]
name = "/${stack.name}/${env}/LOG_LEVEL"
type = "String"
value = "${var.log_level}"

[ssm_parameter.secret_key]
name = "/${stack.name}/${env}/SECRET_KEY"
type = "SecureString"
value = { from_env = "WEBAPP_SECRET_KEY" }

[ssm_parameter.uploads_bucket]
name = "/${stack.name}/${env}/S3_BUCKET"
type = "String"
value = "${s3_bucket.uploads.name}"
"#;

fn setup(env: &TestEnv) {
    env.write("stacks/webapp.toml", STACK);
}

fn run_secret(env: &TestEnv, args: &[&str], secret: &str) -> Run {
    env.run_with(args, |c| {
        c.env("WEBAPP_SECRET_KEY", secret);
    })
}

async fn bucket_names(env: &TestEnv) -> Vec<String> {
    let out = env.s3().await.list_buckets().send().await.unwrap();
    out.buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect()
}

async fn param_names(env: &TestEnv) -> Vec<String> {
    let out = env.ssm().await.describe_parameters().send().await.unwrap();
    let mut v: Vec<String> = out
        .parameters()
        .iter()
        .filter_map(|p| p.name().map(str::to_owned))
        .collect();
    v.sort();
    v
}

/// 1. plan exits 2 listing every resource; apply creates them; the next plan says no changes.
#[tokio::test]
async fn plan_apply_then_no_changes() {
    let env = TestEnv::new();
    setup(&env);
    let plan = run_secret(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--detailed-exitcode",
        ],
        CANARY,
    );
    plan.assert_code(2);
    // Every resource as a create, the secret as (sensitive), outputs known after apply.
    insta::assert_snapshot!("first_plan", env.scrub(plan.stdout()));
    assert!(!env.exists("state"), "plan must not write state");

    run_secret(
        &env,
        &[
            "apply",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
        ],
        CANARY,
    )
    .assert_success()
    .assert_stdout_contains(
        "Apply complete! Resources: 4 added, 0 changed, 0 replaced, 0 destroyed.",
    );

    // Read back independently.
    let s3 = env.s3().await;
    assert_eq!(bucket_names(&env).await, ["webapp-dev-uploads"]);
    let v = s3
        .get_bucket_versioning()
        .bucket("webapp-dev-uploads")
        .send()
        .await
        .unwrap();
    assert_eq!(v.status().map(|s| s.as_str()), Some("Enabled"));
    let tags = s3
        .get_bucket_tagging()
        .bucket("webapp-dev-uploads")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set().len(), 2);
    let lc = s3
        .get_bucket_lifecycle_configuration()
        .bucket("webapp-dev-uploads")
        .send()
        .await
        .unwrap();
    assert_eq!(lc.rules()[0].id(), Some("expire-noncurrent"));
    let ssm = env.ssm().await;
    let p = ssm
        .get_parameter()
        .name("/webapp/dev/S3_BUCKET")
        .send()
        .await
        .unwrap();
    assert_eq!(p.parameter().unwrap().value(), Some("webapp-dev-uploads"));
    let p = ssm
        .get_parameter()
        .name("/webapp/dev/LOG_LEVEL")
        .send()
        .await
        .unwrap();
    assert_eq!(p.parameter().unwrap().value(), Some("INFO"));
    let p = ssm
        .get_parameter()
        .name("/webapp/dev/SECRET_KEY")
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    assert_eq!(p.parameter().unwrap().value(), Some(CANARY));
    assert_eq!(
        p.parameter().unwrap().r#type().map(|t| t.as_str()),
        Some("SecureString")
    );

    // State: where the brief says, deterministic, complete.
    let state = env.read("state/webapp/dev.json");
    let json: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(json["format_version"], 1);
    // Each action is journaled (fsync'd) as it completes; the state file is written once,
    // when the run ends, by folding the journal in.
    assert_eq!(json["serial"], 1, "one state write per apply");
    assert!(
        !env.exists("state/webapp/dev.json.journal"),
        "the journal is folded in and removed"
    );
    assert_eq!(
        json["resources"]["ssm_parameter.uploads_bucket"]["depends_on"][0],
        "s3_bucket.uploads"
    );
    assert_eq!(
        json["resources"]["ssm_parameter.secret_key"]["sensitive_attributes"][0],
        "value"
    );

    let again = run_secret(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--detailed-exitcode",
        ],
        CANARY,
    );
    again.assert_code(0);
    insta::assert_snapshot!("no_changes_plan", env.scrub(again.stdout()));
    // A no-op apply leaves the state byte-identical.
    run_secret(
        &env,
        &[
            "apply",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
        ],
        CANARY,
    )
    .assert_success();
    assert_eq!(env.read("state/webapp/dev.json"), state);
}

/// 2. Drift is shown as changed outside Stackwright and restored; a changed secret is
///    `(sensitive value changed)`.
#[tokio::test]
async fn drift_and_sensitive_change() {
    let env = TestEnv::new();
    setup(&env);
    run_secret(
        &env,
        &[
            "apply",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
        ],
        CANARY,
    )
    .assert_success();

    let s3 = env.s3().await;
    s3.put_bucket_versioning()
        .bucket("webapp-dev-uploads")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let plan = run_secret(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--detailed-exitcode",
        ],
        "a-new-secret",
    );
    plan.assert_code(2);
    // Drift under "Changed outside Stackwright", then the update back, and the changed
    // secret as (sensitive value changed).
    insta::assert_snapshot!("drift_plan", env.scrub(plan.stdout()));
    assert!(!plan.stdout().contains("a-new-secret") && !plan.stdout().contains(CANARY));

    run_secret(
        &env,
        &[
            "apply",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
        ],
        "a-new-secret",
    )
    .assert_success();
    let v = s3
        .get_bucket_versioning()
        .bucket("webapp-dev-uploads")
        .send()
        .await
        .unwrap();
    assert_eq!(v.status().map(|s| s.as_str()), Some("Enabled"));
    let p = env
        .ssm()
        .await
        .get_parameter()
        .name("/webapp/dev/SECRET_KEY")
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    assert_eq!(p.parameter().unwrap().value(), Some("a-new-secret"));
    run_secret(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--detailed-exitcode",
        ],
        "a-new-secret",
    )
    .assert_code(0);
}

/// A name change is a replacement that says which attribute forces it.
#[tokio::test]
async fn name_change_replaces() {
    let env = TestEnv::new();
    setup(&env);
    run_secret(
        &env,
        &[
            "apply",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
        ],
        CANARY,
    )
    .assert_success();
    env.write(
        "stacks/webapp.toml",
        STACK.replace("/LOG_LEVEL\"", "/LOGLEVEL\""),
    );
    let plan = run_secret(
        &env,
        &["plan", "stacks/webapp.toml", "--env", "dev"],
        CANARY,
    );
    plan.assert_success();
    insta::assert_snapshot!("name_change_plan", env.scrub(plan.stdout()));
    run_secret(
        &env,
        &[
            "apply",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
        ],
        CANARY,
    )
    .assert_success();
    let names = param_names(&env).await;
    assert!(
        names.contains(&"/webapp/dev/LOGLEVEL".to_owned())
            && !names.contains(&"/webapp/dev/LOG_LEVEL".to_owned()),
        "{names:?}"
    );
}

/// 3. A saved plan is refused once the state moved on; a first plan cannot be applied twice.
#[tokio::test]
async fn stale_plans_are_refused() {
    let env = TestEnv::new();
    setup(&env);
    run_secret(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--out",
            "first.plan",
        ],
        CANARY,
    )
    .assert_success();
    let first = env.read("first.plan");
    assert!(first.contains("\"no_state_yet\""), "{first}");
    run_secret(&env, &["apply", "first.plan"], CANARY)
        .assert_success()
        .assert_stdout_contains("4 added");
    // The same first plan again: refused, nothing applied twice.
    let stale = run_secret(&env, &["apply", "first.plan"], CANARY);
    stale.assert_code(1);
    insta::assert_snapshot!("stale_first_plan", env.scrub(stale.stderr()));

    // A plan, then another apply changes the state, then the old plan: stale.
    env.write(
        "stacks/webapp.toml",
        STACK.replace("log_level = \"INFO\"", "log_level = \"DEBUG\""),
    );
    run_secret(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--out",
            "second.plan",
        ],
        CANARY,
    )
    .assert_success();
    run_secret(
        &env,
        &[
            "apply",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
        ],
        CANARY,
    )
    .assert_success();
    let serial_before = env.read("state/webapp/dev.json");
    let stale = run_secret(&env, &["apply", "second.plan"], CANARY);
    stale.assert_code(1);
    insta::assert_snapshot!("stale_serial", env.scrub(stale.stderr()));
    assert_eq!(env.read("state/webapp/dev.json"), serial_before);

    // A secret that differs from the one planned is refused.
    env.write(
        "stacks/webapp.toml",
        STACK.replace("log_level = \"INFO\"", "log_level = \"ERROR\""),
    );
    run_secret(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--out",
            "third.plan",
        ],
        "planned-secret",
    )
    .assert_success();
    let changed = run_secret(&env, &["apply", "third.plan"], "other-secret");
    changed.assert_code(1);
    insta::assert_snapshot!("secret_changed_since_plan", env.scrub(changed.stderr()));
    assert!(
        !changed.stderr().contains("other-secret") && !changed.stderr().contains("planned-secret")
    );
    run_secret(&env, &["apply", "third.plan"], "planned-secret").assert_success();
    let p = env
        .ssm()
        .await
        .get_parameter()
        .name("/webapp/dev/LOG_LEVEL")
        .send()
        .await
        .unwrap();
    assert_eq!(p.parameter().unwrap().value(), Some("ERROR"));
    // show renders the saved plan.
    env.ok(["show", "third.plan"])
        .assert_stdout_contains("ssm_parameter.log_level");
}

/// 4. Each kind of bad input: exit 1, a message with its location, no AWS write, no file.
#[tokio::test]
async fn bad_input_is_refused_with_a_location() {
    let env = TestEnv::new();
    // (what, stack text, extra args); every message is in the snapshot below.
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown key",
            STACK.replace("versioning = true", "versionning = true"),
            vec![],
        ),
        (
            "did you mean",
            STACK.replace("versioning = true", "versionning = true"),
            vec![],
        ),
        (
            "wrong type",
            STACK.replace("versioning = true", "versioning = \"yes\""),
            vec![],
        ),
        (
            "missing required",
            STACK.replace("name = \"/${stack.name}/${env}/LOG_LEVEL\"\n", ""),
            vec![],
        ),
        (
            "unknown reference",
            STACK.replace("${s3_bucket.uploads.name}", "${s3_bucket.upload.name}"),
            vec![],
        ),
        (
            "unknown attribute",
            STACK.replace("${s3_bucket.uploads.name}", "${s3_bucket.uploads.nmae}"),
            vec![],
        ),
        ("unknown env", STACK.to_owned(), vec!["--env", "qa"]),
        ("missing env", STACK.to_owned(), vec![]),
        (
            "unset from_env",
            STACK.replace("WEBAPP_SECRET_KEY", "NOT_SET_ANYWHERE"),
            vec![],
        ),
        (
            "unknown kind",
            format!("{STACK}\n[s3_bukket.x]\nname = \"x\"\n"),
            vec![],
        ),
        ("invalid toml", format!("{STACK}\n[oops\n"), vec![]),
        (
            "cycle",
            STACK
                .replace(
                    "value = \"${var.log_level}\"",
                    "value = \"${ssm_parameter.uploads_bucket.value}\"",
                )
                .replace(
                    "value = \"${s3_bucket.uploads.name}\"",
                    "value = \"${ssm_parameter.log_level.value}\"",
                ),
            vec![],
        ),
    ];
    let mut report = String::new();
    for (what, text, extra) in cases {
        env.write("bad.toml", &text);
        let before = env.list_files_recursive();
        let mut first: Option<String> = None;
        for cmd in ["validate", "plan", "apply"] {
            let mut args = vec![cmd, "bad.toml"];
            if !extra.contains(&"--env") && what != "missing env" {
                args.extend(["--env", "dev"]);
            }
            args.extend(extra.iter().copied());
            if cmd == "apply" {
                args.push("--auto-approve");
            }
            if cmd == "plan" {
                args.extend(["--out", "bad.plan"]);
            }
            let run = run_secret(&env, &args, CANARY);
            if what == "unset from_env" && cmd == "validate" {
                // validate is offline: it checks a secret source's shape, not its value.
                run.assert_success();
                continue;
            }
            assert_eq!(run.code(), Some(1), "{what} ({cmd}): {run}");
            // validate, plan and apply refuse with the same message.
            match &first {
                None => {
                    report.push_str(&format!("## {what}\n{}\n", env.scrub(run.stderr())));
                    first = Some(run.stderr().to_owned());
                }
                Some(f) => assert_eq!(run.stderr(), f, "{what} ({cmd}): {run}"),
            }
            assert_eq!(
                env.list_files_recursive(),
                before,
                "{what} ({cmd}) wrote a file"
            );
        }
    }
    insta::assert_snapshot!("bad_input_errors", report);
    assert!(bucket_names(&env).await.is_empty());
    assert!(param_names(&env).await.is_empty());
}

/// 5. A canary secret set through from_env appears in no state file, plan file or output.
#[tokio::test]
async fn secrets_reach_no_file_and_no_output() {
    let env = TestEnv::new();
    setup(&env);
    let mut outputs = String::new();
    for args in [
        vec![
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--out",
            "dev.plan",
        ],
        vec!["plan", "stacks/webapp.toml", "--env", "dev", "--json"],
        vec!["show", "dev.plan", "--json"],
        vec!["apply", "dev.plan", "--json"],
        vec!["plan", "stacks/webapp.toml", "--env", "dev", "--markdown"],
        vec!["-vv", "plan", "stacks/webapp.toml", "--env", "dev"],
        vec![
            "destroy",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
        ],
    ] {
        let run = run_secret(&env, &args, CANARY);
        run.assert_success();
        outputs.push_str(run.stdout());
        outputs.push_str(run.stderr());
    }
    assert!(outputs.contains("(sensitive)"), "{outputs}");
    assert!(!outputs.contains(CANARY), "secret leaked to output");
    // -vv did log (so the check above covered the logs too).
    assert!(outputs.contains("refresh done"), "{outputs}");
    for f in env.list_files_recursive() {
        if f.starts_with("stacks/") {
            continue;
        }
        let text = std::fs::read(env.path(&f)).unwrap();
        assert!(
            !String::from_utf8_lossy(&text).contains(CANARY),
            "secret leaked into {f}"
        );
    }
    assert!(env.exists("dev.plan") && env.exists("state/webapp/dev.json"));
}

/// 6. Destroy removes everything, dependants first; prevent_destroy holds even after the
///    block is deleted from the file.
#[tokio::test]
async fn destroy_order_and_prevent_destroy() {
    let env = TestEnv::new();
    let protected = STACK.replace(
        "tags = { app = \"webapp\", env = \"${env}\" }\n",
        "tags = { app = \"webapp\", env = \"${env}\" }\nlifecycle = { prevent_destroy = true }\n",
    );
    env.write("stacks/webapp.toml", &protected);
    run_secret(
        &env,
        &[
            "apply",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
        ],
        CANARY,
    )
    .assert_success();
    let state = env.read("state/webapp/dev.json");
    assert!(state.contains("\"prevent_destroy\": true"));

    // The block is gone from the file, but state remembers it: no change to plan, and an
    // ordinary apply keeps it.
    env.write("stacks/webapp.toml", STACK);
    run_secret(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--detailed-exitcode",
        ],
        CANARY,
    )
    .assert_code(0);
    let tagged = STACK.replace("app = \"webapp\"", "app = \"webapp2\"");
    assert_ne!(tagged, STACK);
    env.write("stacks/webapp.toml", &tagged);
    run_secret(
        &env,
        &[
            "apply",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
        ],
        CANARY,
    )
    .assert_success();
    let state = env.read("state/webapp/dev.json");
    assert!(state.contains("\"prevent_destroy\": true"), "{state}");
    // A replacement (a new bucket name) of a protected resource is refused like a destroy.
    env.write(
        "stacks/webapp.toml",
        tagged.replace("-uploads\"", "-uploads2\""),
    );
    run_secret(
        &env,
        &["plan", "stacks/webapp.toml", "--env", "dev"],
        CANARY,
    )
    .assert_code(1)
    .assert_stderr_contains("refusing to replace `s3_bucket.uploads`");
    env.write("stacks/webapp.toml", STACK);
    let run = run_secret(
        &env,
        &[
            "destroy",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
        ],
        CANARY,
    );
    run.assert_code(1);
    insta::assert_snapshot!("prevent_destroy_refused", env.scrub(run.stderr()));
    assert_eq!(bucket_names(&env).await, ["webapp-dev-uploads"]);
    assert_eq!(param_names(&env).await.len(), 3);

    // Explicitly lifting it is a state-only change, shown as a warning; then destroy goes
    // through.
    env.write(
        "stacks/webapp.toml",
        protected.replace("prevent_destroy = true", "prevent_destroy = false"),
    );
    run_secret(
        &env,
        &["plan", "stacks/webapp.toml", "--env", "dev"],
        CANARY,
    )
    .assert_success()
    .assert_stdout_contains("lifecycle.prevent_destroy: true -> false: the protection is lifted");
    run_secret(
        &env,
        &[
            "apply",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
        ],
        CANARY,
    )
    .assert_success()
    .assert_stdout_contains("1 changed");
    let run = run_secret(
        &env,
        &[
            "destroy",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
            "--concurrency",
            "1",
        ],
        CANARY,
    );
    run.assert_success().assert_stdout_contains("4 destroyed");
    let out = run.stdout();
    let param = out
        .find("ssm_parameter.uploads_bucket: Destruction complete")
        .expect("param destroyed");
    let bucket = out
        .find("s3_bucket.uploads: Destroying")
        .expect("bucket destroyed");
    assert!(
        param < bucket,
        "a dependant must be destroyed before what it depends on:\n{out}"
    );
    assert!(bucket_names(&env).await.is_empty());
    assert!(param_names(&env).await.is_empty());
    let json: serde_json::Value = serde_json::from_str(&env.read("state/webapp/dev.json")).unwrap();
    assert_eq!(json["resources"], serde_json::json!({}));
}

/// Non-empty buckets survive destroy unless force_destroy = true.
#[tokio::test]
async fn non_empty_bucket_needs_force_destroy() {
    let env = TestEnv::new();
    env.write(
        "s.toml",
        "[stack]\nname = \"b\"\n[s3_bucket.data]\nname = \"b-data\"\nversioning = true\n",
    );
    env.ok(["apply", "s.toml", "--auto-approve"]);
    let s3 = env.s3().await;
    s3.put_object()
        .bucket("b-data")
        .key("k")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    env.fail(["destroy", "s.toml", "--auto-approve"])
        .assert_stderr_contains("BucketNotEmpty");
    assert_eq!(bucket_names(&env).await, ["b-data"]);
    env.write("s.toml", "[stack]\nname = \"b\"\n[s3_bucket.data]\nname = \"b-data\"\nversioning = true\nforce_destroy = true\n");
    env.ok(["apply", "s.toml", "--auto-approve"]);
    env.ok(["destroy", "s.toml", "--auto-approve"]);
    assert!(bucket_names(&env).await.is_empty());
}

/// CI contract: no prompt without a terminal, JSON plans, --target, --refresh=false.
#[tokio::test]
async fn ci_contract() {
    let env = TestEnv::new();
    setup(&env);
    run_secret(
        &env,
        &["apply", "stacks/webapp.toml", "--env", "dev"],
        CANARY,
    )
    .assert_failure()
    .assert_stderr_contains("stdin is not a terminal");
    assert!(bucket_names(&env).await.is_empty());

    let run = run_secret(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--json",
            "--target",
            "ssm_parameter.uploads_bucket",
        ],
        CANARY,
    );
    run.assert_success();
    let plan = run.stdout_json();
    let mut creates: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "create")
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    creates.sort();
    assert_eq!(
        creates,
        ["s3_bucket.uploads", "ssm_parameter.uploads_bucket"]
    );
    assert_eq!(plan["summary"]["add"], 2);

    run_secret(
        &env,
        &[
            "apply",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
        ],
        CANARY,
    )
    .assert_success();
    // Without refresh, state is trusted: out-of-band drift is not seen.
    env.ssm()
        .await
        .put_parameter()
        .name("/webapp/dev/LOG_LEVEL")
        .value("DEBUG")
        .overwrite(true)
        .send()
        .await
        .unwrap();
    run_secret(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--detailed-exitcode",
            "--refresh=false",
        ],
        CANARY,
    )
    .assert_code(0);
    run_secret(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--detailed-exitcode",
        ],
        CANARY,
    )
    .assert_code(2);
}

/// The examples/ stacks and the demo stack all validate.
#[test]
fn examples_validate() {
    let env = TestEnv::new();
    let root = crate::common::repo_root();
    let run = |args: &[&str]| {
        env.run_with(args, |c| {
            c.current_dir(root)
                .env("WEBAPP_SECRET_KEY", "x")
                .env("WEBAPP_DB_PASSWORD", "x")
                .env("WEBAPP_DATABASE_URL", "postgres://x")
                .env("APP_API_TOKEN", "x")
                .env("DB_PASSWORD", "x")
                .env("DATABASE_URL", "postgres://x");
        })
    };
    run(&["validate", "stacks/webapp.toml", "--env", "dev"]).assert_success();
    run(&["validate", "stacks/webapp.toml", "--env", "prod"]).assert_success();
    let mut n = 0;
    for e in std::fs::read_dir(root.join("examples")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let mut args = vec!["validate", rel.as_str()];
            let env_flag = text.contains("environments = [").then(|| {
                let envs = text.split("environments = [\"").nth(1).unwrap();
                envs.split('"').next().unwrap().to_owned()
            });
            if let Some(e) = &env_flag {
                args.extend(["--env", e.as_str()]);
            }
            run(&args).assert_success();
            n += 1;
        }
    }
    assert!(n >= 3, "expected at least three examples, found {n}");
}

/// A failure half-way: the failed action's dependants do not start, independent work
/// finishes and is recorded, exit 1 with a summary; after the fix a re-plan converges.
#[tokio::test]
async fn partial_failure_keeps_what_succeeded_and_converges() {
    let env = TestEnv::new();
    let stack = |bucket: &str| {
        format!(
            "[stack]\nname = \"pf\"\n\n[s3_bucket.data]\nname = \"{bucket}\"\n\n[ssm_parameter.bucket]\nname = \"/pf/BUCKET\"\nvalue = \"${{s3_bucket.data.arn}}\"\n\n[ssm_parameter.independent]\nname = \"/pf/INDEPENDENT\"\nvalue = \"x\"\n"
        )
    };
    // S3 refuses the bucket's create (the fault proxy answers as IAM would; a bad name is
    // now refused at load time), SSM is unaffected.
    env.write("s.toml", stack("pf-data"));
    let proxy = env.proxy();
    proxy.fail_matching("PUT /pf-data", Fault::AccessDenied);
    let run = env.run(["apply", "s.toml", "--auto-approve"]);
    run.assert_code(1);
    // The summary: what failed, what did not start and why, what was done.
    insta::assert_snapshot!("partial_failure_summary", env.scrub(run.stderr()));
    assert_eq!(param_names(&env).await, ["/pf/INDEPENDENT"]);
    let state: serde_json::Value = serde_json::from_str(&env.read("state/pf.json")).unwrap();
    let recorded: Vec<&String> = state["resources"].as_object().unwrap().keys().collect();
    assert_eq!(recorded, ["ssm_parameter.independent"]);

    proxy.clear_faults();
    env.run(["plan", "s.toml", "--detailed-exitcode"])
        .assert_code(2)
        .assert_stdout_contains("Plan: 2 to add, 0 to change, 0 to replace, 0 to destroy.");
    env.ok(["apply", "s.toml", "--auto-approve"]);
    env.run(["plan", "s.toml", "--detailed-exitcode"])
        .assert_code(0);
    let p = env
        .ssm()
        .await
        .get_parameter()
        .name("/pf/BUCKET")
        .send()
        .await
        .unwrap();
    assert_eq!(p.parameter().unwrap().value(), Some("arn:aws:s3:::pf-data"));
}
