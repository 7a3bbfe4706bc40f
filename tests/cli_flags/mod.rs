//! Names, units and machine output of the command line (issue 7, item 9): `destroy
//! --target` takes what depends on the targets with them, `apply --json` announces its
//! format and always ends with a summary, and durations have one spelling everywhere.

use crate::common::TestEnv;

const STACK: &str = r#"[stack]
name = "flags"
region = "us-east-1"

[s3_bucket.data]
name = "flags-data"

[ssm_parameter.data_bucket]
name = "/flags/DATA_BUCKET"
value = "${s3_bucket.data.name}"

[ssm_parameter.data_arn]
name = "/flags/DATA_ARN"
value = "${s3_bucket.data.arn}"
depends_on = ["ssm_parameter.data_bucket"]

[s3_bucket.other]
name = "flags-other"

[ssm_parameter.other]
name = "/flags/OTHER"
value = "${s3_bucket.other.name}"
"#;

async fn parameters(env: &TestEnv) -> Vec<String> {
    let out = env.ssm().await.describe_parameters().send().await.unwrap();
    let mut names: Vec<String> = out
        .parameters()
        .iter()
        .filter_map(|p| p.name().map(str::to_owned))
        .collect();
    names.sort();
    names
}

async fn buckets(env: &TestEnv) -> Vec<String> {
    let out = env.s3().await.list_buckets().send().await.unwrap();
    let mut names: Vec<String> = out
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn destroy_target_takes_what_depends_on_it_and_nothing_else() {
    let env = TestEnv::new();
    env.write("s.toml", STACK);
    env.ok(["apply", "s.toml", "--auto-approve"]);
    let plan = env
        .ok([
            "plan",
            "s.toml",
            "--destroy",
            "--target",
            "s3_bucket.data",
            "--json",
        ])
        .stdout_json();
    let mut deletes: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "delete")
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    deletes.sort();
    assert_eq!(
        deletes,
        [
            "s3_bucket.data",
            "ssm_parameter.data_arn",
            "ssm_parameter.data_bucket"
        ]
    );
    env.ok([
        "destroy",
        "s.toml",
        "--target",
        "s3_bucket.data",
        "--auto-approve",
    ])
    .assert_stdout_contains("3 destroyed");
    assert_eq!(buckets(&env).await, ["flags-other"]);
    assert_eq!(parameters(&env).await, ["/flags/OTHER"]);
    let state: serde_json::Value = serde_json::from_str(&env.read("state/flags.json")).unwrap();
    let mut left: Vec<&String> = state["resources"].as_object().unwrap().keys().collect();
    left.sort();
    assert_eq!(left, ["s3_bucket.other", "ssm_parameter.other"]);
    // The next plan recreates exactly what went.
    let plan = env.ok(["plan", "s.toml", "--json"]).stdout_json();
    assert_eq!(plan["summary"]["add"], 3, "{plan}");
}

#[test]
fn apply_json_announces_its_format_and_always_ends_with_a_summary() {
    let env = TestEnv::new();
    env.write("s.toml", STACK);
    for round in ["changes", "nothing to do"] {
        let run = env.ok(["apply", "s.toml", "--auto-approve", "--json"]);
        let lines: Vec<serde_json::Value> = run
            .stdout()
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{round}: not JSON ({e}): {l}"))
            })
            .collect();
        assert_eq!(lines[0]["type"], "version", "{round}: {run}");
        assert_eq!(lines[0]["format"], 1);
        let last = lines.last().unwrap();
        assert_eq!(last["type"], "summary", "{round}: {run}");
        assert_eq!(last["ok"], true);
        let completed = last["completed"].as_array().unwrap().len();
        match round {
            "changes" => assert_eq!(completed, 5, "{run}"),
            _ => assert_eq!(completed, 0, "{run}"),
        }
    }
}

#[test]
fn durations_are_checked_in_flags_and_stack_files() {
    let env = TestEnv::new();
    env.write("s.toml", STACK);
    env.run(["apply", "s.toml", "--wait-timeout", "soon"])
        .assert_code(1)
        .assert_stderr_contains("`soon` is not a duration");
    env.write(
        "db.toml",
        r#"[stack]
name = "flags"
region = "us-east-1"

[rds_instance.db]
identifier = "flags"
engine = "postgres"
instance_class = "db.t4g.micro"
allocated_storage = 20
master_username = "app"
master_password = { from_env = "FLAGS_PW" }
wait_timeout = "45 minutes"
"#,
    );
    env.run(["validate", "db.toml"])
        .assert_code(1)
        .assert_stderr_contains(
            "db.toml:12:16: `wait_timeout` of `rds_instance.db`: unknown unit ` minutes`",
        );
    env.write(
        "db.toml",
        env.read("db.toml").replace("\"45 minutes\"", "\"0s\""),
    );
    env.run(["validate", "db.toml"])
        .assert_code(1)
        .assert_stderr_contains("`wait_timeout` of `rds_instance.db`: must be longer than 0s");
    env.write("db.toml", env.read("db.toml").replace("\"0s\"", "\"45m\""));
    env.ok(["validate", "db.toml"]);
}

#[test]
fn a_secure_string_set_with_var_on_the_command_line_is_not_called_plain_text() {
    let env = TestEnv::new();
    env.write(
        "v.toml",
        r#"[stack]
name = "flags"
region = "us-east-1"

[vars]
key = "in-the-file"

[ssm_parameter.key]
name = "/flags/KEY"
type = "SecureString"
value = "${var.key}"
"#,
    );
    // The default is written in the file: warned about.
    env.ok(["validate", "v.toml"])
        .assert_stderr_contains("`value` of `ssm_parameter.key` is a secret written in plain text");
    // Given with --var, the secret never was in the file.
    let run = env.ok(["validate", "v.toml", "--var", "key=from-ci"]);
    assert!(!run.stderr().contains("plain text"), "{run}");
    assert!(!run.stderr().contains("from-ci"), "{run}");
}
