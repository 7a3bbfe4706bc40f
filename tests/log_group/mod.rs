//! `cloudwatch_log_group` (issue 8) against moto: apply then no changes, outside edits
//! shown as drift and restored, retention and key changed in place, bad input refused
//! before any AWS call, destroy warned about, and a create cut short adopted.

use crate::common::TestEnv;
use crate::common::proxy::Fault;

const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555";

fn stack(retention: u32, key: &str) -> String {
    format!(
        r#"[stack]
name = "logs"
region = "us-east-1"

[cloudwatch_log_group.api]
name = "/ecs/logs-api"
retention_days = {retention}
kms_key = "{key}"
tags = {{ app = "api" }}

[ssm_parameter.log_group]
name = "/logs/LOG_GROUP_ARN"
value = "${{cloudwatch_log_group.api.arn}}"
"#
    )
}

async fn group(env: &TestEnv) -> Option<aws_sdk_cloudwatchlogs::types::LogGroup> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&env.sdk_config().await);
    let out = logs
        .describe_log_groups()
        .log_group_name_prefix("/ecs/logs-api")
        .send()
        .await
        .unwrap();
    out.log_groups().first().cloned()
}

async fn tags(env: &TestEnv, arn: &str) -> Vec<(String, String)> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&env.sdk_config().await);
    let out = logs
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .unwrap();
    let mut t: Vec<(String, String)> = out
        .tags()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    t.sort();
    t
}

#[tokio::test]
async fn apply_edit_outside_and_restore() {
    let env = TestEnv::new();
    env.write("l.toml", stack(30, KEY));
    env.ok(["apply", "l.toml", "--auto-approve"]);
    let g = group(&env).await.expect("created");
    assert_eq!(g.retention_in_days(), Some(30));
    assert_eq!(g.kms_key_id(), Some(KEY));
    let arn = g.log_group_arn().unwrap().trim_end_matches(":*").to_owned();
    assert_eq!(tags(&env, &arn).await, [("app".into(), "api".into())]);
    // The arn output is the one without ":*", as IAM policies and tagging take it.
    let ssm = env.ssm().await;
    let value = ssm
        .get_parameter()
        .name("/logs/LOG_GROUP_ARN")
        .send()
        .await
        .unwrap()
        .parameter
        .unwrap()
        .value
        .unwrap();
    assert_eq!(value, arn);
    env.ok(["plan", "l.toml", "--detailed-exitcode"]);

    // Someone shortens the retention and tags the group by hand.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&env.sdk_config().await);
    logs.put_retention_policy()
        .log_group_name("/ecs/logs-api")
        .retention_in_days(1)
        .send()
        .await
        .unwrap();
    logs.tag_resource()
        .resource_arn(&arn)
        .tags("owner", "someone")
        .send()
        .await
        .unwrap();
    env.run(["plan", "l.toml", "--detailed-exitcode"])
        .assert_code(2)
        .assert_stdout_contains("Changed outside Stackwright:")
        .assert_stdout_contains("retention_days = 30 -> 1");
    env.ok(["apply", "l.toml", "--auto-approve"]);
    assert_eq!(group(&env).await.unwrap().retention_in_days(), Some(30));
    assert_eq!(tags(&env, &arn).await, [("app".into(), "api".into())]);

    // Retention and key change in place: same group, new values.
    let born = group(&env).await.unwrap().creation_time();
    let key2 = KEY.replace("5555", "6666");
    env.write("l.toml", stack(90, &key2));
    env.run(["plan", "l.toml", "--detailed-exitcode"])
        .assert_code(2)
        .assert_stdout_contains("1 to change, 0 to replace");
    env.ok(["apply", "l.toml", "--auto-approve"]);
    let g = group(&env).await.unwrap();
    assert_eq!(
        (g.retention_in_days(), g.kms_key_id()),
        (Some(90), Some(key2.as_str()))
    );
    assert_eq!(g.creation_time(), born, "changed in place, not recreated");
    env.ok(["plan", "l.toml", "--detailed-exitcode"]);

    // Destroy says what goes with the group, and removes it.
    env.ok(["plan", "l.toml", "--destroy"])
        .assert_stdout_contains("every log event in /ecs/logs-api is deleted with it");
    env.ok(["destroy", "l.toml", "--auto-approve"]);
    assert!(group(&env).await.is_none());
}

#[test]
fn bad_input_is_refused_before_any_aws_call() {
    let env = TestEnv::new();
    env.write(
        "bad.toml",
        r#"[stack]
name = "logs"
region = "us-east-1"

[cloudwatch_log_group.a]
name = "/ecs/my app"
retention_days = 10
kms_key = "alias/logs"
"#,
    );
    let proxy = env.proxy();
    env.run(["plan", "bad.toml"])
        .assert_code(1)
        .assert_stderr_contains("bad.toml:6:8: `name` of `cloudwatch_log_group.a`: ' ' is not allowed")
        .assert_stderr_contains("bad.toml:7:18: `retention_days` of `cloudwatch_log_group.a`: 10 is not a retention CloudWatch Logs offers")
        .assert_stderr_contains("bad.toml:8:11: `kms_key` of `cloudwatch_log_group.a`: \"alias/logs\" is not a key ARN")
        .assert_stderr_contains("3 errors found");
    assert_eq!(proxy.requests(), 0);
}

#[tokio::test]
async fn a_create_whose_reply_was_lost_is_adopted_and_a_foreign_group_is_not() {
    let env = TestEnv::new();
    env.write("l.toml", stack(30, KEY));
    let proxy = env.proxy();
    // Every reply of CreateLogGroup lost, one attempt: the apply fails with the intent
    // open while AWS holds the group.
    proxy.fail_matching("CreateLogGroup", Fault::DropAfter);
    let run = env.run_with(["apply", "l.toml", "--auto-approve"], |c| {
        c.env("AWS_MAX_ATTEMPTS", "1");
    });
    assert_eq!(run.code(), Some(1), "{run}");
    assert!(group(&env).await.is_some());
    proxy.clear_faults();
    env.run(["plan", "l.toml"])
        .assert_stdout_contains("adopted");
    env.ok(["apply", "l.toml", "--auto-approve"]);
    assert_eq!(group(&env).await.unwrap().retention_in_days(), Some(30));
    env.ok(["plan", "l.toml", "--detailed-exitcode"]);

    // A group of that name made by someone else is never taken over.
    let other = TestEnv::new();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&other.sdk_config().await);
    logs.create_log_group()
        .log_group_name("/ecs/logs-api")
        .send()
        .await
        .unwrap();
    other.write("l.toml", stack(30, KEY));
    other
        .run(["plan", "l.toml"])
        .assert_code(1)
        .assert_stderr_contains("cloudwatch_log_group `/ecs/logs-api` already exists in AWS but is not in this stack's state")
        .assert_stderr_contains("stackwright import");
}
