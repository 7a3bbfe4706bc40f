//! `[output.NAME]` (issue 7, item 10): computed after apply from what AWS returned, kept
//! in state, printed after apply (sensitive ones hidden), read back by `stackwright
//! output` with no AWS call, planned as changes of their own, refused when they would
//! carry a secret, and removed by destroy.

use crate::common::TestEnv;

const STACK: &str = r#"[stack]
name = "outs"
region = "us-east-1"
environments = ["dev"]

[s3_bucket.assets]
name = "outs-${env}-assets"

[ssm_parameter.bucket]
name = "/outs/${env}/BUCKET"
value = "${s3_bucket.assets.name}"

[output.bucket]
value = "${s3_bucket.assets.name}"
description = "the assets bucket"

[output.parameter_arn]
value = "${ssm_parameter.bucket.arn}"
sensitive = true

[output.url]
value = "https://${s3_bucket.assets.name}.s3.amazonaws.com/${ssm_parameter.bucket.version}"
"#;

fn apply(env: &TestEnv, file: &str) -> crate::common::Run {
    env.ok(["apply", file, "--env", "dev", "--auto-approve"])
}

#[tokio::test]
async fn outputs_are_recorded_shown_and_read_back_without_aws() {
    let env = TestEnv::new();
    env.write("s.toml", STACK);
    let plan = env.run(["plan", "s.toml", "--env", "dev"]);
    plan.assert_stdout_contains("Changes to outputs:")
        .assert_stdout_contains("+ bucket = \"outs-dev-assets\"")
        .assert_stdout_contains("+ url = (known after apply)")
        .assert_stdout_contains("+ parameter_arn = (known after apply)");

    let run = apply(&env, "s.toml");
    run.assert_stdout_contains(
        "Outputs:\n  bucket = \"outs-dev-assets\"\n  parameter_arn = (sensitive)\n",
    );
    // The value is what AWS holds, read back independently.
    let arn = env
        .ssm()
        .await
        .get_parameter()
        .name("/outs/dev/BUCKET")
        .send()
        .await
        .unwrap()
        .parameter
        .unwrap()
        .arn
        .unwrap();
    assert!(
        !run.stdout().contains(&arn),
        "a sensitive output is hidden after apply"
    );
    let state: serde_json::Value = serde_json::from_str(&env.read("state/outs/dev.json")).unwrap();
    assert_eq!(state["outputs"]["bucket"]["value"], "outs-dev-assets");
    assert_eq!(state["outputs"]["parameter_arn"]["value"], arn.as_str());
    assert_eq!(state["outputs"]["parameter_arn"]["sensitive"], true);
    assert_eq!(
        state["outputs"]["url"]["value"],
        "https://outs-dev-assets.s3.amazonaws.com/1"
    );

    // No changes afterwards: outputs do not make a perpetual diff.
    env.ok(["plan", "s.toml", "--env", "dev", "--detailed-exitcode"])
        .assert_stdout_contains("No changes.");

    // `output` reads state only: it works with the AWS endpoint unreachable.
    let offline = |args: &[&str]| {
        env.run_with(args.iter().copied(), |c| {
            c.env("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
        })
    };
    let all = offline(&["output", "s.toml", "--env", "dev"]);
    all.assert_success();
    assert_eq!(
        all.stdout(),
        "bucket = \"outs-dev-assets\"\nparameter_arn = (sensitive)\nurl = \"https://outs-dev-assets.s3.amazonaws.com/1\"\n"
    );
    let one = offline(&["output", "s.toml", "--env", "dev", "bucket"]);
    assert_eq!(one.stdout(), "outs-dev-assets\n", "raw, for $(...)");
    let secret = offline(&["output", "s.toml", "--env", "dev", "parameter_arn"]);
    assert_eq!(
        secret.stdout().trim(),
        arn,
        "asked for by name, it is printed"
    );
    let json = offline(&["output", "s.toml", "--env", "dev", "--json"]);
    json.assert_success();
    let v = json.stdout_json();
    assert_eq!(v["bucket"]["value"], "outs-dev-assets");
    assert_eq!(v["parameter_arn"]["sensitive"], true);
    assert_eq!(v["parameter_arn"]["value"], arn.as_str());

    offline(&["output", "s.toml", "--env", "dev", "buckt"])
        .assert_code(1)
        .assert_stderr_contains("no output `buckt`")
        .assert_stderr_contains("did you mean `bucket`?");
}

#[test]
fn a_changed_output_is_planned_and_applied_on_its_own() {
    let env = TestEnv::new();
    env.write("s.toml", STACK);
    apply(&env, "s.toml");
    let changed = STACK.replace(
        "value = \"${s3_bucket.assets.name}\"\ndescription",
        "value = \"s3://${s3_bucket.assets.name}\"\ndescription",
    ) + "\n[output.region]\nvalue = \"${s3_bucket.assets.region}\"\n";
    env.write("s.toml", &changed);
    let plan = env.run(["plan", "s.toml", "--env", "dev", "--detailed-exitcode"]);
    plan.assert_code(2)
        .assert_stdout_contains("~ bucket = \"outs-dev-assets\" -> \"s3://outs-dev-assets\"")
        .assert_stdout_contains("+ region = \"us-east-1\"")
        .assert_stdout_contains("0 to add, 0 to change, 0 to replace, 0 to destroy");
    let json = env
        .run(["plan", "s.toml", "--env", "dev", "--json"])
        .stdout_json();
    let bucket = json["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "bucket")
        .unwrap()
        .clone();
    assert_eq!(bucket["action"], "update");
    assert_eq!(bucket["after"]["value"], "s3://outs-dev-assets");
    let secret = json["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "parameter_arn")
        .unwrap()
        .clone();
    assert!(
        secret.get("before").is_none() && secret["after"]["kind"] == "sensitive",
        "a sensitive output's value stays out of the plan: {secret}"
    );

    // Dropping an output removes it from state.
    let dropped = changed.replace("[output.url]", "[output.gone_url]");
    env.write("s.toml", &dropped);
    apply(&env, "s.toml").assert_stdout_contains("0 added, 0 changed");
    let out = env.ok(["output", "s.toml", "--env", "dev"]);
    assert!(
        !out.stdout().lines().any(|l| l.starts_with("url = ")),
        "{out}"
    );
    assert!(out.stdout().contains("\ngone_url = "), "{out}");
    assert!(
        out.stdout().contains("bucket = \"s3://outs-dev-assets\""),
        "{out}"
    );
    env.ok(["plan", "s.toml", "--env", "dev", "--detailed-exitcode"]);
    // CI reads them from the JSON summary; a sensitive value stays out of that log.
    let run = env.ok([
        "apply",
        "s.toml",
        "--env",
        "dev",
        "--auto-approve",
        "--json",
    ]);
    let summary: serde_json::Value =
        serde_json::from_str(run.stdout().lines().last().unwrap()).unwrap();
    assert_eq!(
        summary["outputs"]["bucket"]["value"],
        "s3://outs-dev-assets"
    );
    assert_eq!(summary["outputs"]["parameter_arn"]["sensitive"], true);
    assert!(
        summary["outputs"]["parameter_arn"]["value"].is_null(),
        "{summary}"
    );
    assert!(!run.stdout().contains("arn:aws:ssm"), "{run}");
}

#[test]
fn destroy_removes_the_outputs_of_what_it_destroys() {
    let env = TestEnv::new();
    env.write("s.toml", STACK);
    apply(&env, "s.toml");
    env.ok(["destroy", "s.toml", "--env", "dev", "--auto-approve"]);
    let state: serde_json::Value = serde_json::from_str(&env.read("state/outs/dev.json")).unwrap();
    assert!(state.get("outputs").is_none(), "{state}");
    env.ok(["output", "s.toml", "--env", "dev"])
        .assert_stderr_contains("No outputs in state.");
}

#[test]
fn outputs_that_would_carry_a_secret_or_are_malformed_are_refused() {
    let env = TestEnv::new();
    // A SecureString's value: known to be secret only once the type is read, at plan time,
    // before any change.
    env.write(
        "s.toml",
        r#"[stack]
name = "outs"
region = "us-east-1"

[ssm_parameter.key]
name = "/outs/KEY"
type = "SecureString"
value = { from_env = "OUTS_KEY" }

[output.key]
value = "${ssm_parameter.key.value}"
"#,
    );
    let proxy = env.proxy();
    let run = env.run_with(["plan", "s.toml"], |c| {
        c.env("OUTS_KEY", "canary-6f1e");
    });
    run.assert_code(1)
        .assert_stderr_contains("s.toml:11:9")
        .assert_stderr_contains("`output.key` would carry a secret");
    assert!(!run.stderr().contains("canary-6f1e") && !run.stdout().contains("canary-6f1e"));
    // Only the account check and the read of the (absent) parameter: nothing changed.
    assert!(!env.exists("state/outs.json"));
    assert!(proxy.requests() <= 3, "{}", proxy.requests());

    // A write-only secret (an RDS password) and malformed tables: at load, all at once.
    env.write(
        "bad.toml",
        r#"[stack]
name = "outs"
region = "us-east-1"

[rds_instance.db]
identifier = "outs"
engine = "postgres"
instance_class = "db.t4g.micro"
allocated_storage = 20
master_username = "app"
master_password = { from_env = "OUTS_PW" }

[output.password]
value = "${rds_instance.db.master_password}"

[output.typo]
valeu = "x"

[output.nothing]
description = "no value"

[output.missing]
value = "${rds_instance.dbb.endpoint}"
"#,
    );
    let run = env.run(["validate", "bad.toml"]);
    run.assert_code(1)
        .assert_stderr_contains("bad.toml:14:9: `output.password` would carry the secret `rds_instance.db.master_password`")
        .assert_stderr_contains("bad.toml:17:1: unknown key `valeu`")
        .assert_stderr_contains("bad.toml:19:9: `output.nothing` has no `value`")
        .assert_stderr_contains("bad.toml:23:9: `output.missing` refers to `rds_instance.dbb`")
        .assert_stderr_contains("did you mean `rds_instance.db`?");
}
