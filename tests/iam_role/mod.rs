//! `iam_role` (issue 9) against moto through the real binary, read back independently
//! with boto3 (which, like the AWS CLI, decodes IAM's URL-encoded policy documents): apply
//! then no changes, outside edits shown as drift and restored, in-place changes, bad input
//! refused before any AWS call with the address, destroy, a create cut short adopted, and
//! the moto patch for AWS managed policies.

use std::process::Command;

use serde_json::{Value, json};

use crate::common::proxy::Fault;
use crate::common::{TestEnv, venv_bin};

const EXEC_POLICY: &str = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";
const EXTRA_POLICY: &str = "arn:aws:iam::123456789012:policy/roles-extra";

fn stack(services: &str, managed: &[&str], extra_action: &str) -> String {
    let managed: Vec<String> = managed.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        r#"[stack]
name = "roles"
region = "us-east-1"

[iam_role.task]
name = "roles-api-task"
description = "API task role"
assume_role_service = {services}
managed_policy_arns = [{managed}]
max_session_duration = 7200
tags = {{ app = "api" }}

[[iam_role.task.statement]]
sid = "ReadConfig"
actions = ["ssm:GetParameters", "ssm:GetParameter", "ssm:GetParameters"{extra_action}]
resources = ["arn:aws:ssm:us-east-1:123456789012:parameter/roles/*"]

[[iam_role.task.statement]]
effect = "Deny"
actions = ["s3:DeleteObject"]
resources = ["*"]

[[iam_role.task.statement.condition]]
test = "Bool"
variable = "aws:SecureTransport"
values = ["false"]

[ssm_parameter.role_arn]
name = "/roles/TASK_ROLE_ARN"
value = "${{iam_role.task.arn}}"
"#,
        managed = managed.join(", ")
    )
}

/// One IAM call through boto3 from the venv, straight to moto: `Ok(reply)` or `Err(stderr)`.
fn iam(env: &TestEnv, op: &str, input: Value) -> Result<Value, String> {
    let mut cmd = Command::new(venv_bin("python"));
    cmd.args([
        "-c",
        "import boto3, json, sys\n\
         c = boto3.client('iam', endpoint_url=sys.argv[1], region_name='us-east-1')\n\
         out = getattr(c, sys.argv[2])(**json.loads(sys.argv[3]))\n\
         out.pop('ResponseMetadata', None)\n\
         print(json.dumps(out, default=str))",
    ])
    .arg(env.moto().endpoint())
    .arg(op)
    .arg(input.to_string());
    for (k, v) in env.envs() {
        cmd.env(k, v);
    }
    cmd.env_remove("AWS_ENDPOINT_URL");
    let out = cmd.output().unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn ok(env: &TestEnv, op: &str, input: Value) -> Value {
    iam(env, op, input.clone()).unwrap_or_else(|e| panic!("iam {op} {input}: {e}"))
}

fn role(env: &TestEnv) -> Option<Value> {
    match iam(env, "get_role", json!({ "RoleName": "roles-api-task" })) {
        Ok(v) => Some(v["Role"].clone()),
        Err(e) if e.contains("NoSuchEntity") => None,
        Err(e) => panic!("get_role: {e}"),
    }
}

fn attached(env: &TestEnv) -> Vec<String> {
    let out = ok(
        env,
        "list_attached_role_policies",
        json!({ "RoleName": "roles-api-task" }),
    );
    let mut arns: Vec<String> = out["AttachedPolicies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["PolicyArn"].as_str().unwrap().to_owned())
        .collect();
    arns.sort();
    arns
}

fn inline_names(env: &TestEnv) -> Vec<String> {
    let out = ok(
        env,
        "list_role_policies",
        json!({ "RoleName": "roles-api-task" }),
    );
    serde_json::from_value(out["PolicyNames"].clone()).unwrap()
}

fn inline(env: &TestEnv) -> Value {
    ok(
        env,
        "get_role_policy",
        json!({ "RoleName": "roles-api-task", "PolicyName": "stackwright" }),
    )["PolicyDocument"]
        .clone()
}

fn tags(env: &TestEnv) -> Value {
    ok(
        env,
        "list_role_tags",
        json!({ "RoleName": "roles-api-task" }),
    )["Tags"]
        .clone()
}

fn create_extra_policy(env: &TestEnv) {
    ok(
        env,
        "create_policy",
        json!({
            "PolicyName": "roles-extra",
            "PolicyDocument": json!({
                "Version": "2012-10-17",
                "Statement": [{ "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*" }]
            }).to_string(),
        }),
    );
}

#[tokio::test]
async fn apply_reads_back_plans_clean_restores_drift_and_destroys() {
    let env = TestEnv::new();
    create_extra_policy(&env);
    env.write(
        "r.toml",
        stack(
            "\"ecs-tasks.amazonaws.com\"",
            &[EXEC_POLICY, EXTRA_POLICY],
            "",
        ),
    );
    env.ok(["apply", "r.toml", "--auto-approve"]);

    // Read back, independently: trust, policies, inline statements, tags, settings.
    let r = role(&env).expect("created");
    assert_eq!(r["Path"], "/");
    assert_eq!(r["Description"], "API task role");
    assert_eq!(r["MaxSessionDuration"], 7200);
    let trust = &r["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(trust["Principal"]["Service"], "ecs-tasks.amazonaws.com");
    assert_eq!(trust["Action"], "sts:AssumeRole");
    assert_eq!(attached(&env), [EXTRA_POLICY, EXEC_POLICY]);
    assert_eq!(inline_names(&env), ["stackwright"]);
    let doc = inline(&env);
    assert_eq!(doc["Version"], "2012-10-17");
    let stmts = doc["Statement"].as_array().unwrap();
    assert_eq!(stmts.len(), 2, "{doc}");
    let read = stmts.iter().find(|s| s["Sid"] == "ReadConfig").unwrap();
    // De-duplicated and sorted as sent.
    assert_eq!(
        read["Action"],
        json!(["ssm:GetParameter", "ssm:GetParameters"])
    );
    let deny = stmts.iter().find(|s| s["Effect"] == "Deny").unwrap();
    assert_eq!(
        deny["Condition"],
        json!({ "Bool": { "aws:SecureTransport": ["false"] } })
    );
    assert_eq!(tags(&env), json!([{ "Key": "app", "Value": "api" }]));
    // The arn output reaches a dependent.
    let arn = r["Arn"].as_str().unwrap().to_owned();
    assert_eq!(arn, "arn:aws:iam::123456789012:role/roles-api-task");
    let ssm = env.ssm().await;
    let value = ssm
        .get_parameter()
        .name("/roles/TASK_ROLE_ARN")
        .send()
        .await
        .unwrap()
        .parameter
        .unwrap()
        .value
        .unwrap();
    assert_eq!(value, arn);
    // No perpetual diff: URL-encoded documents, one string vs a list, duplicates, order.
    env.ok(["plan", "r.toml", "--detailed-exitcode"]);

    // Outside edits: another inline policy, a detached policy, a tag, a trust principal.
    ok(
        &env,
        "put_role_policy",
        json!({
            "RoleName": "roles-api-task",
            "PolicyName": "added-by-hand",
            "PolicyDocument": json!({ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow", "Action": "iam:*", "Resource": "*" }] }).to_string(),
        }),
    );
    ok(
        &env,
        "detach_role_policy",
        json!({ "RoleName": "roles-api-task", "PolicyArn": EXTRA_POLICY }),
    );
    ok(
        &env,
        "tag_role",
        json!({ "RoleName": "roles-api-task", "Tags": [{ "Key": "owner", "Value": "someone" }] }),
    );
    ok(
        &env,
        "update_assume_role_policy",
        json!({
            "RoleName": "roles-api-task",
            "PolicyDocument": json!({ "Version": "2012-10-17", "Statement": [
                { "Effect": "Allow", "Principal": { "Service": "ecs-tasks.amazonaws.com" }, "Action": "sts:AssumeRole" },
                { "Effect": "Allow", "Principal": { "AWS": "arn:aws:iam::123456789012:root" }, "Action": "sts:AssumeRole" },
            ]}).to_string(),
        }),
    );
    let plan = env.run(["plan", "r.toml", "--detailed-exitcode"]);
    plan.assert_code(2)
        .assert_stdout_contains("Changed outside Stackwright:")
        .assert_stdout_contains("iam:*")
        .assert_stdout_contains("owner")
        .assert_stdout_contains("arn:aws:iam::123456789012:root");
    assert!(
        plan.stdout().contains("managed_policy_arns"),
        "{}",
        plan.stdout()
    );
    env.ok(["apply", "r.toml", "--auto-approve"]);
    assert_eq!(inline_names(&env), ["stackwright"]);
    assert_eq!(attached(&env), [EXTRA_POLICY, EXEC_POLICY]);
    assert_eq!(tags(&env), json!([{ "Key": "app", "Value": "api" }]));
    let r2 = role(&env).unwrap();
    assert_eq!(
        r2["AssumeRolePolicyDocument"]["Statement"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    env.ok(["plan", "r.toml", "--detailed-exitcode"]);

    // In place: a second service, one policy fewer, one action more; same role.
    env.write(
        "r.toml",
        stack(
            "[\"lambda.amazonaws.com\", \"ecs-tasks.amazonaws.com\"]",
            &[EXEC_POLICY],
            ", \"kms:Decrypt\"",
        ),
    );
    env.run(["plan", "r.toml", "--detailed-exitcode"])
        .assert_code(2)
        .assert_stdout_contains("1 to change, 0 to replace");
    env.ok(["apply", "r.toml", "--auto-approve"]);
    let r3 = role(&env).unwrap();
    assert_eq!(r3["RoleId"], r["RoleId"], "changed in place, not recreated");
    let mut services: Vec<String> = serde_json::from_value(
        r3["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"].clone(),
    )
    .unwrap();
    services.sort();
    assert_eq!(
        services,
        ["ecs-tasks.amazonaws.com", "lambda.amazonaws.com"]
    );
    assert_eq!(attached(&env), [EXEC_POLICY]);
    assert!(inline(&env).to_string().contains("kms:Decrypt"));
    env.ok(["plan", "r.toml", "--detailed-exitcode"]);

    // Destroy: detach, delete the inline policy, delete the role; the policy stays.
    env.ok(["destroy", "r.toml", "--auto-approve"]);
    assert!(role(&env).is_none());
    ok(&env, "get_policy", json!({ "PolicyArn": EXTRA_POLICY }));
}

#[test]
fn bad_input_is_refused_at_plan_with_its_address() {
    let env = TestEnv::new();
    env.write(
        "bad.toml",
        r#"[stack]
name = "roles"
region = "us-east-1"

[iam_role.a]
name = "my role"
assume_role_service = "ecs-tasks.amazonaws.com"

[iam_role.b]
name = "b"
assume_role_service = "ecs-tasks.amazonaws.com"

[[iam_role.b.statement]]
actions = []
resources = ["*"]

[iam_role.c]
name = "c"
assume_role_service = "ecs-tasks.amazonaws.com"

[[iam_role.c.statement]]
actions = ["GetObject"]
resources = ["*"]

[iam_role.d]
name = "d"
assume_role_service = "ecs-tasks.amazonaws.com"
managed_policy_arns = ["AmazonECSTaskExecutionRolePolicy"]
"#,
    );
    let proxy = env.proxy();
    let run = env.run(["plan", "bad.toml"]);
    run.assert_code(1)
        .assert_stderr_contains("`name` of `iam_role.a`: ' ' is not allowed in a role name")
        .assert_stderr_contains("`statement` of `iam_role.b`: statement 1: no actions")
        .assert_stderr_contains(
            "`statement` of `iam_role.c`: statement 1: \"GetObject\" is not an action: write service:Action",
        )
        .assert_stderr_contains(
            "`managed_policy_arns` of `iam_role.d`: \"AmazonECSTaskExecutionRolePolicy\" is not a managed policy ARN",
        )
        .assert_stderr_contains("4 errors found");
    // A type error (an effect IAM does not know) stops the load on its own.
    env.write(
        "effect.toml",
        r#"[stack]
name = "roles"
region = "us-east-1"

[iam_role.e]
name = "e"
assume_role_service = "ecs-tasks.amazonaws.com"

[[iam_role.e.statement]]
effect = "Permit"
actions = ["s3:GetObject"]
resources = ["*"]
"#,
    );
    env.run(["plan", "effect.toml"]).assert_code(1).assert_stderr_contains(
        "effect.toml:10:10: `effect` in `statement` of `iam_role.e` must be one of \"Allow\", \"Deny\", found \"Permit\"",
    );
    assert_eq!(proxy.requests(), 0, "{run}");
}

#[tokio::test]
async fn a_create_whose_reply_was_lost_is_adopted_and_a_foreign_role_is_not() {
    let env = TestEnv::new();
    create_extra_policy(&env);
    let text = stack("\"ecs-tasks.amazonaws.com\"", &[EXEC_POLICY], "");
    env.write("r.toml", &text);
    let proxy = env.proxy();
    // Every reply of CreateRole lost, one attempt: the apply fails with the intent open
    // while IAM holds a role without its policies.
    proxy.fail_matching("Action=CreateRole", Fault::DropAfter);
    let run = env.run_with(["apply", "r.toml", "--auto-approve"], |c| {
        c.env("AWS_MAX_ATTEMPTS", "1");
    });
    assert_eq!(run.code(), Some(1), "{run}");
    assert!(role(&env).is_some());
    assert!(attached(&env).is_empty());
    proxy.clear_faults();
    env.run(["plan", "r.toml"])
        .assert_stdout_contains("adopted");
    env.ok(["apply", "r.toml", "--auto-approve"]);
    assert_eq!(attached(&env), [EXEC_POLICY]);
    assert_eq!(inline_names(&env), ["stackwright"]);
    env.ok(["plan", "r.toml", "--detailed-exitcode"]);

    // A role of that name made by someone else is never taken over.
    let other = TestEnv::new();
    ok(
        &other,
        "create_role",
        json!({
            "RoleName": "roles-api-task",
            "AssumeRolePolicyDocument": json!({ "Statement": [{ "Effect": "Allow",
                "Principal": { "Service": "ecs-tasks.amazonaws.com" }, "Action": "sts:AssumeRole" }]}).to_string(),
        }),
    );
    other.write("r.toml", &text);
    other
        .run(["plan", "r.toml"])
        .assert_code(1)
        .assert_stderr_contains(
            "iam_role `roles-api-task` already exists in AWS but is not in this stack's state",
        )
        .assert_stderr_contains("stackwright import");
}

/// tests/README.md row 28: moto knows AWS managed policies only through the launcher's
/// `iam_aws_managed_policies_on_demand` patch.
#[test]
fn moto_deviation_aws_managed_policies_are_attachable() {
    let env = TestEnv::new();
    ok(
        &env,
        "create_role",
        json!({
            "RoleName": "roles-api-task",
            "AssumeRolePolicyDocument": json!({ "Statement": [{ "Effect": "Allow",
                "Principal": { "Service": "ecs-tasks.amazonaws.com" }, "Action": "sts:AssumeRole" }]}).to_string(),
        }),
    );
    ok(
        &env,
        "attach_role_policy",
        json!({ "RoleName": "roles-api-task", "PolicyArn": EXEC_POLICY }),
    );
    assert_eq!(attached(&env), [EXEC_POLICY]);
    let policy = ok(&env, "get_policy", json!({ "PolicyArn": EXEC_POLICY }));
    assert_eq!(policy["Policy"]["Path"], "/service-role/");
    // An ARN naming no AWS policy is still refused, as on AWS.
    let err = iam(
        &env,
        "attach_role_policy",
        json!({ "RoleName": "roles-api-task", "PolicyArn": "arn:aws:iam::aws:policy/NoSuchPolicy" }),
    )
    .unwrap_err();
    assert!(err.contains("NoSuchEntity"), "{err}");
}

/// tests/README.md row 29, not patched (the product always writes `Version`): moto refuses
/// a policy document without `Version`, which AWS reads as 2008-10-17. Fails once moto
/// accepts it.
#[test]
fn moto_deviation_policy_documents_need_a_version() {
    let env = TestEnv::new();
    ok(
        &env,
        "create_role",
        json!({
            "RoleName": "roles-api-task",
            "AssumeRolePolicyDocument": json!({ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow",
                "Principal": { "Service": "ecs-tasks.amazonaws.com" }, "Action": "sts:AssumeRole" }]}).to_string(),
        }),
    );
    let err = iam(
        &env,
        "put_role_policy",
        json!({
            "RoleName": "roles-api-task",
            "PolicyName": "no-version",
            "PolicyDocument": json!({ "Statement": [{ "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*" }] }).to_string(),
        }),
    )
    .unwrap_err();
    assert!(err.contains("MalformedPolicyDocument"), "{err}");
}
