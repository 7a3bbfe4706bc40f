//! `ecs_cluster` and `ecs_service` (issue 9) against moto through the real binary, read
//! back independently with the ECS and IAM SDKs: apply then no changes, a new image as a
//! new revision with a readable diff, outside edits shown as drift and restored, the auto
//! execution role's exact policy, a circuit-breaker failure reported with ECS's reason,
//! bad input refused at plan time with its address, destroy in dependency order, a create
//! whose reply was lost adopted, and the moto patches the service needs (tests/README.md).

use aws_sdk_ecs::types::{Service, TaskDefinition, TaskDefinitionStatus};
use serde_json::{Value, json};

use crate::common::TestEnv;
use crate::common::proxy::Fault;

mod migration_task;

const SECRET: &str = "ecs-canary-secret-4b1f";

/// The app of the seeds: a FastAPI container on 8000 behind the blue target group, its
/// configuration and a secret from Parameter Store, logs to CloudWatch, the auto role.
/// `service_extra` is spliced into `[ecs_service.api]`, `container_extra` into the container.
fn stack(service_extra: &str, container_extra: &str) -> String {
    format!(
        r#"[stack]
name = "shop"
region = "us-east-1"

[vars]
image_tag = "1.0"

[data.vpc.main]
default = true

[data.subnets.default]
vpc = "${{data.vpc.main.id}}"

[security_group.app]
name = "shop-app"
description = "shop containers"
vpc = "${{data.vpc.main.id}}"

[alb_target_group.blue]
name = "shop-blue"
port = 8000
target_type = "ip"
vpc = "${{data.vpc.main.id}}"
health_check = {{ path = "/ready" }}

[cloudwatch_log_group.api]
name = "/ecs/shop-api"
retention_days = 7

[ssm_parameter.log_level]
name = "/shop/LOG_LEVEL"
type = "String"
value = "INFO"

[ssm_parameter.secret_key]
name = "/shop/SECRET_KEY"
type = "SecureString"
value = {{ from_env = "SHOP_SECRET_KEY" }}

[ecs_cluster.main]
name = "shop"
container_insights = "enabled"
tags = {{ app = "shop" }}

[ecs_service.api]
name = "api"
cluster = "${{ecs_cluster.main.name}}"
desired_count = 2
subnets = "${{data.subnets.default.ids}}"
security_groups = ["${{security_group.app.id}}"]
health_check_grace_period = 30
load_balancer = {{ target_group = "${{alb_target_group.blue.arn}}", container = "api", port = 8000 }}
tags = {{ app = "shop" }}
{service_extra}

[ecs_service.api.task]
family = "shop-api"
cpu = 256
memory = 512
execution_role = "auto"

[[ecs_service.api.task.container]]
name = "api"
image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/api:${{var.image_tag}}"
port = 8000
command = ["uvicorn", "app:app", "--host", "0.0.0.0", "--port", "8000"]
environment = {{ APP_ENV = "test", WORKERS = "2" }}
secrets = {{ SECRET_KEY = "${{ssm_parameter.secret_key.arn}}", LOG_LEVEL = "${{ssm_parameter.log_level.arn}}" }}
health_check = {{ command = ["CMD-SHELL", "curl -f http://localhost:8000/ready || exit 1"], start_period = 10 }}
log_group = "${{cloudwatch_log_group.api.name}}"
{container_extra}
"#
    )
}

const BREAKER: &str = "deployment = { minimum_healthy_percent = 50, maximum_percent = 200, circuit_breaker = { enable = true, rollback = true } }";

fn run_env(c: &mut assert_cmd::Command) {
    c.env("SHOP_SECRET_KEY", SECRET);
}

fn apply(env: &TestEnv, file: &str, extra: &[&str]) -> crate::common::Run {
    let mut args = vec!["apply", file, "--auto-approve"];
    args.extend_from_slice(extra);
    env.run_with(args, run_env)
}

fn plan(env: &TestEnv, file: &str, extra: &[&str]) -> crate::common::Run {
    let mut args = vec!["plan", file, "--detailed-exitcode"];
    args.extend_from_slice(extra);
    env.run_with(args, run_env)
}

async fn ecs(env: &TestEnv) -> aws_sdk_ecs::Client {
    aws_sdk_ecs::Client::new(&env.sdk_config().await)
}

async fn iam(env: &TestEnv) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&env.sdk_config().await)
}

async fn service(env: &TestEnv) -> Option<Service> {
    let out = ecs(env)
        .await
        .describe_services()
        .cluster("shop")
        .services("api")
        .send()
        .await
        .unwrap();
    out.services()
        .iter()
        .find(|s| s.status() == Some("ACTIVE"))
        .cloned()
}

async fn task_def(env: &TestEnv, arn: &str) -> TaskDefinition {
    ecs(env)
        .await
        .describe_task_definition()
        .task_definition(arn)
        .send()
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .clone()
}

async fn active_revisions(env: &TestEnv) -> Vec<String> {
    ecs(env)
        .await
        .list_task_definitions()
        .family_prefix("shop-api")
        .status(TaskDefinitionStatus::Active)
        .send()
        .await
        .unwrap()
        .task_definition_arns()
        .to_vec()
}

/// The auto role's inline policy as IAM holds it (URL-decoded JSON), `None` when gone.
async fn role_policy(env: &TestEnv) -> Option<Value> {
    let out = iam(env)
        .await
        .get_role_policy()
        .role_name("shop-api-exec")
        .policy_name("stackwright")
        .send()
        .await
        .ok()?;
    let doc = urlencoding_decode(out.policy_document());
    Some(serde_json::from_str(&doc).unwrap())
}

fn urlencoding_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn state(env: &TestEnv) -> Value {
    serde_json::from_str(&env.read("state/shop.json")).unwrap()
}

fn statement<'a>(policy: &'a Value, sid: &str) -> &'a Value {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("no statement {sid} in {policy}"))
}

#[tokio::test]
async fn apply_reads_back_as_written_then_a_new_image_is_a_new_revision() {
    let env = TestEnv::new();
    env.write("shop.toml", stack(BREAKER, ""));
    let first = apply(&env, "shop.toml", &[]);
    first.assert_success();
    // Before the first apply the parameters' ARNs are unknown: the plan names them by
    // reference.
    assert!(
        first.stdout().contains(
            "execution role shop-api-exec (auto, trusted by ecs-tasks.amazonaws.com) allows: ssm:GetParameters on ${ssm_parameter.log_level.arn}, ${ssm_parameter.secret_key.arn}"
        ),
        "the plan shows the auto role's grants:\n{first}"
    );

    // The cluster and the service as ECS holds them (deploymentConfiguration and the grace
    // period read back only through the harness patch, tests/README.md).
    let cl = ecs(&env)
        .await
        .describe_clusters()
        .clusters("shop")
        .include(aws_sdk_ecs::types::ClusterField::Settings)
        .send()
        .await
        .unwrap();
    let settings = cl.clusters()[0].settings();
    assert!(
        settings.iter().any(|s| s.value() == Some("enabled")
            && s.name().map(|n| n.as_str()) == Some("containerInsights")),
        "{settings:?}"
    );
    let svc = service(&env).await.expect("service api");
    assert_eq!(svc.desired_count(), 2);
    assert_eq!(svc.running_count(), 2);
    assert_eq!(svc.health_check_grace_period_seconds(), Some(30));
    let dc = svc.deployment_configuration().unwrap();
    assert_eq!(dc.minimum_healthy_percent(), Some(50));
    assert_eq!(dc.maximum_percent(), Some(200));
    let cb = dc.deployment_circuit_breaker().unwrap();
    assert!(cb.enable() && cb.rollback());
    let lb = &svc.load_balancers()[0];
    assert_eq!(lb.container_name(), Some("api"));
    assert_eq!(lb.container_port(), Some(8000));
    assert!(
        lb.target_group_arn()
            .unwrap()
            .contains(":targetgroup/shop-blue/")
    );
    let vpc = svc
        .network_configuration()
        .unwrap()
        .awsvpc_configuration()
        .unwrap();
    assert_eq!(vpc.security_groups().len(), 1);
    assert!(!vpc.subnets().is_empty());
    let td_arn = svc.task_definition().unwrap().to_owned();
    assert!(td_arn.ends_with(":task-definition/shop-api:1"), "{td_arn}");

    let td = task_def(&env, &td_arn).await;
    assert_eq!(td.cpu(), Some("256"));
    assert_eq!(td.memory(), Some("512"));
    let c = &td.container_definitions()[0];
    assert_eq!(
        c.image(),
        Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/api:1.0")
    );
    assert_eq!(c.port_mappings()[0].container_port(), Some(8000));
    let mut envs: Vec<(String, String)> = c
        .environment()
        .iter()
        .map(|kv| (kv.name().unwrap().into(), kv.value().unwrap().into()))
        .collect();
    envs.sort();
    assert_eq!(
        envs,
        [
            ("APP_ENV".into(), "test".into()),
            ("WORKERS".into(), "2".into())
        ]
    );
    let mut secrets: Vec<(String, String)> = c
        .secrets()
        .iter()
        .map(|s| (s.name().into(), s.value_from().into()))
        .collect();
    secrets.sort();
    assert_eq!(
        secrets,
        [
            (
                "LOG_LEVEL".into(),
                "arn:aws:ssm:us-east-1:123456789012:parameter/shop/LOG_LEVEL".into()
            ),
            (
                "SECRET_KEY".into(),
                "arn:aws:ssm:us-east-1:123456789012:parameter/shop/SECRET_KEY".into()
            ),
        ]
    );
    let hc = c.health_check().unwrap();
    assert_eq!(hc.start_period(), Some(10));
    let logs = c.log_configuration().unwrap();
    assert_eq!(logs.log_driver().as_str(), "awslogs");
    assert_eq!(
        logs.options()
            .unwrap()
            .get("awslogs-group")
            .map(String::as_str),
        Some("/ecs/shop-api")
    );
    assert_eq!(
        td.execution_role_arn(),
        Some("arn:aws:iam::123456789012:role/shop-api-exec")
    );

    // The auto role grants exactly what the task references, nothing more.
    let policy = role_policy(&env).await.expect("the auto role's policy");
    let mut sids: Vec<&str> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Sid"].as_str().unwrap())
        .collect();
    sids.sort();
    assert_eq!(
        sids,
        ["PullImages", "PullImagesToken", "ReadSecrets", "WriteLogs"],
        "{policy}"
    );
    assert_eq!(
        statement(&policy, "ReadSecrets")["Resource"],
        json!([
            "arn:aws:ssm:us-east-1:123456789012:parameter/shop/LOG_LEVEL",
            "arn:aws:ssm:us-east-1:123456789012:parameter/shop/SECRET_KEY"
        ])
    );
    assert_eq!(
        statement(&policy, "WriteLogs")["Resource"],
        json!(["arn:aws:logs:us-east-1:123456789012:log-group:/ecs/shop-api:*"])
    );
    assert_eq!(
        statement(&policy, "PullImages")["Resource"],
        json!(["arn:aws:ecr:us-east-1:123456789012:repository/shop/api"])
    );
    let trust = iam(&env)
        .await
        .get_role()
        .role_name("shop-api-exec")
        .send()
        .await
        .unwrap();
    let trust = urlencoding_decode(trust.role().unwrap().assume_role_policy_document().unwrap());
    assert!(trust.contains("ecs-tasks.amazonaws.com"), "{trust}");

    // No perpetual diff: the task as ECS stores it (cpu 0, essential, empty lists, hostPort,
    // health-check defaults) compares equal to the file.
    plan(&env, "shop.toml", &[]).assert_code(0);
    let st = env.read("state/shop.json");
    assert!(!st.contains(SECRET), "no secret in state");

    // A new image: a new revision, shown as a diff of the container definitions.
    let p = plan(&env, "shop.toml", &["--var", "image_tag=1.1"]);
    p.assert_code(2);
    let out = p.stdout();
    assert!(
        out.contains("a new task definition revision is registered (after revision 1) because"),
        "{p}"
    );
    assert!(out.contains("image"), "{p}");
    assert!(
        out.contains("ssm:GetParameters on /shop/LOG_LEVEL, /shop/SECRET_KEY"),
        "known now, the grants name the parameters:\n{p}"
    );
    assert!(
        out.contains("shop/api:1.0") && out.contains("shop/api:1.1"),
        "{p}"
    );
    assert!(
        out.contains("0 to add, 1 to change, 0 to replace, 0 to destroy"),
        "{p}"
    );
    apply(&env, "shop.toml", &["--var", "image_tag=1.1"]).assert_success();
    let svc = service(&env).await.unwrap();
    assert!(
        svc.task_definition().unwrap().ends_with("shop-api:2"),
        "the service runs the new revision: {svc:?}"
    );
    let d = &svc.deployments()[0];
    assert_eq!(d.rollout_state().map(|r| r.as_str()), Some("COMPLETED"));
    assert_eq!(d.running_count(), 2);
    plan(&env, "shop.toml", &["--var", "image_tag=1.1"]).assert_code(0);
    let kept = &state(&env)["resources"]["ecs_service.api"]["private"]["revisions"];
    let kept: Vec<&str> = kept
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept[0].ends_with("shop-api:1") && kept[1].ends_with("shop-api:2"));
    // Both revisions stay registered: the older one is what `rollback` redeploys.
    assert_eq!(active_revisions(&env).await.len(), 2);
}

#[tokio::test]
async fn outside_edits_show_as_drift_and_apply_restores_them() {
    let env = TestEnv::new();
    env.write("shop.toml", stack("", ""));
    apply(&env, "shop.toml", &[]).assert_success();
    let client = ecs(&env).await;
    let svc = service(&env).await.unwrap();
    let td = task_def(&env, svc.task_definition().unwrap()).await;

    // Someone scales the service and deploys a hand-edited revision (WORKERS = 8).
    let mut c = td.container_definitions()[0].clone();
    let env_vars: Vec<_> = c
        .environment()
        .iter()
        .map(|kv| {
            let v = if kv.name() == Some("WORKERS") {
                "8"
            } else {
                kv.value().unwrap()
            };
            aws_sdk_ecs::types::KeyValuePair::builder()
                .name(kv.name().unwrap())
                .value(v)
                .build()
        })
        .collect();
    c.environment = Some(env_vars);
    let edited = client
        .register_task_definition()
        .family("shop-api")
        .set_requires_compatibilities(Some(td.requires_compatibilities().to_vec()))
        .set_network_mode(td.network_mode().cloned())
        .set_cpu(td.cpu().map(Into::into))
        .set_memory(td.memory().map(Into::into))
        .set_execution_role_arn(td.execution_role_arn().map(Into::into))
        .container_definitions(c)
        .send()
        .await
        .unwrap();
    let edited = edited
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_owned();
    client
        .update_service()
        .cluster("shop")
        .service("api")
        .desired_count(5)
        .task_definition(&edited)
        .send()
        .await
        .unwrap();
    // …and widens the execution role.
    iam(&env)
        .await
        .put_role_policy()
        .role_name("shop-api-exec")
        .policy_name("stackwright")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();

    let p = plan(&env, "shop.toml", &[]);
    p.assert_code(2);
    let out = p.stdout();
    assert!(out.contains("desired_count"), "{p}");
    assert!(out.contains("WORKERS") && out.contains("\"8\""), "{p}");
    assert!(
        out.contains("execution_role")
            && out.contains("the auto execution role no longer grants exactly what the task needs: apply rewrites its policy"),
        "the widened role is drift:\n{p}"
    );
    assert!(out.contains("0 to add, 1 to change"), "{p}");

    apply(&env, "shop.toml", &[]).assert_success();
    let svc = service(&env).await.unwrap();
    assert_eq!(svc.desired_count(), 2);
    let td = task_def(&env, svc.task_definition().unwrap()).await;
    assert_ne!(td.task_definition_arn(), Some(edited.as_str()));
    let workers = td.container_definitions()[0]
        .environment()
        .iter()
        .find(|kv| kv.name() == Some("WORKERS"))
        .and_then(|kv| kv.value())
        .map(str::to_owned);
    assert_eq!(workers.as_deref(), Some("2"));
    let policy = role_policy(&env).await.unwrap();
    assert!(!policy.to_string().contains("ssm:*"), "{policy}");
    assert_eq!(
        statement(&policy, "ReadSecrets")["Action"],
        json!(["ssm:GetParameters"])
    );
    plan(&env, "shop.toml", &[]).assert_code(0);
}

#[tokio::test]
async fn a_circuit_breaker_failure_fails_the_apply_with_ecs_reason() {
    // The harness hook: every deployment of a service with its breaker on fails.
    let env = TestEnv::with_moto_env(&[("MOTO_ECS_SERVICE_FAILED_TASKS", "2")]);
    // A first deployment without the breaker succeeds (and takes the VPC's default
    // security group: no `security_groups`, the patched moto answers as AWS does).
    let no_groups = stack("", "").replace("security_groups = [\"${security_group.app.id}\"]\n", "");
    env.write("shop.toml", &no_groups);
    apply(&env, "shop.toml", &[]).assert_success();
    let svc = service(&env).await.unwrap();
    let groups = svc
        .network_configuration()
        .unwrap()
        .awsvpc_configuration()
        .unwrap()
        .security_groups()
        .to_vec();
    let default = env
        .ec2()
        .await
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values("default")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(groups, [default.security_groups()[0].group_id().unwrap()]);
    plan(&env, "shop.toml", &[]).assert_code(0);

    let with_breaker =
        stack(BREAKER, "").replace("security_groups = [\"${security_group.app.id}\"]\n", "");
    env.write("shop.toml", &with_breaker);
    let run = apply(&env, "shop.toml", &["--var", "image_tag=2.0"]);
    assert_eq!(run.code(), Some(1), "{run}");
    let err = run.stderr();
    assert!(err.contains("ecs_service.api"), "{run}");
    assert!(
        err.contains("ECS deployment circuit breaker: tasks failed to start."),
        "{run}"
    );
    assert!(err.contains("rolled the service back to"), "{run}");
    assert!(err.contains("shop-api:1"), "{run}");
    // ECS went back to revision 1; the stack still asks for 2.0, and the next plan says so.
    let svc = service(&env).await.unwrap();
    assert!(svc.task_definition().unwrap().ends_with("shop-api:1"));
    let p = plan(&env, "shop.toml", &["--var", "image_tag=2.0"]);
    p.assert_code(2);
    assert!(p.stdout().contains("shop/api:2.0"), "{p}");
}

#[tokio::test]
async fn bad_input_is_refused_at_plan_time_with_its_address() {
    let env = TestEnv::new();
    let cases: Vec<(String, &str)> = vec![
        (
            stack("", "").replace(
                "container = \"api\", port = 8000",
                "container = \"web\", port = 8000",
            ),
            "load_balancer.container \"web\" is not a container of the task",
        ),
        (
            stack("", "")
                .replace(
                    "container = \"api\", port = 8000",
                    "container = \"api\", port = 5000",
                )
                .replace("port = 8000\ncommand", "port = 5000\ncommand"),
            "but `alb_target_group.blue` forwards to port 8000",
        ),
        (
            stack("", "").replace(
                "memory = 512\nexecution_role",
                "memory = 4096\nexecution_role",
            ),
            "task.cpu 256 / task.memory 4096 is not a valid Fargate pair",
        ),
        (
            stack("", "").replace(
                "SECRET_KEY = \"${ssm_parameter.secret_key.arn}\"",
                "SECRET_KEY = \"arn:aws:ssm:us-east-1:123456789012:parameter/shop/MISSING\"",
            ),
            "/shop/MISSING",
        ),
        (
            stack("", "").replace("execution_role = \"auto\"\n", ""),
            "execution_role",
        ),
    ];
    for (text, needle) in cases {
        env.write("bad.toml", &text);
        let run = plan(&env, "bad.toml", &[]);
        assert_eq!(run.code(), Some(1), "{needle}: {run}");
        let err = run.stderr();
        assert!(err.contains("ecs_service.api"), "{needle}: {run}");
        assert!(err.contains(needle), "{needle}: {run}");
        let run = apply(&env, "bad.toml", &[]);
        assert_eq!(run.code(), Some(1), "{needle}: {run}");
        assert!(!env.exists("state/shop.json"), "{needle}: nothing written");
    }
    let clusters = ecs(&env).await.list_clusters().send().await.unwrap();
    assert!(clusters.cluster_arns().is_empty(), "nothing created");
}

#[tokio::test]
async fn destroy_removes_the_service_before_its_cluster_and_leaves_nothing() {
    let env = TestEnv::new();
    env.write("shop.toml", stack("", ""));
    apply(&env, "shop.toml", &[]).assert_success();
    apply(&env, "shop.toml", &["--var", "image_tag=1.1"]).assert_success();
    assert_eq!(active_revisions(&env).await.len(), 2);
    let run = env.run_with(["destroy", "shop.toml", "--auto-approve"], run_env);
    run.assert_success();
    let out = run.stdout();
    let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("no {s:?} in\n{out}"));
    let service_done = at("ecs_service.api: Destruction complete");
    assert!(
        service_done < at("ecs_cluster.main: Destroying..."),
        "{out}"
    );
    assert!(
        service_done < at("alb_target_group.blue: Destroying..."),
        "{out}"
    );
    assert!(
        service_done < at("ssm_parameter.secret_key: Destroying..."),
        "{out}"
    );
    assert!(
        service_done < at("cloudwatch_log_group.api: Destroying..."),
        "{out}"
    );
    assert!(service(&env).await.is_none());
    assert!(
        active_revisions(&env).await.is_empty(),
        "every revision deregistered"
    );
    let cl = ecs(&env)
        .await
        .describe_clusters()
        .clusters("shop")
        .send()
        .await
        .unwrap();
    assert!(cl.clusters().iter().all(|c| c.status() == Some("INACTIVE")));
    let role = iam(&env)
        .await
        .get_role()
        .role_name("shop-api-exec")
        .send()
        .await;
    assert!(role.is_err(), "the auto role is deleted with its service");
}

#[tokio::test]
async fn a_create_whose_reply_was_lost_is_adopted_not_duplicated() {
    let env = TestEnv::new();
    env.write("shop.toml", stack("", ""));
    let proxy = env.proxy();
    proxy.fail_matching(
        "AmazonEC2ContainerServiceV20141113.CreateService",
        Fault::DropAfter,
    );
    let run = env.run_with(["apply", "shop.toml", "--auto-approve"], |c| {
        run_env(c);
        c.env("AWS_MAX_ATTEMPTS", "1");
    });
    assert_eq!(run.code(), Some(1), "{run}");
    assert!(
        service(&env).await.is_some(),
        "ECS created it, the reply was lost"
    );
    proxy.clear_faults();
    let p = plan(&env, "shop.toml", &[]);
    assert!(p.stdout().contains("adopted"), "{p}");
    apply(&env, "shop.toml", &[]).assert_success();
    let services = ecs(&env)
        .await
        .list_services()
        .cluster("shop")
        .send()
        .await
        .unwrap();
    assert_eq!(services.service_arns().len(), 1);
    plan(&env, "shop.toml", &[]).assert_code(0);
}

#[tokio::test]
async fn rollback_redeploys_the_previous_revision_and_the_next_plan_shows_the_file() {
    let env = TestEnv::new();
    env.write("shop.toml", stack("", ""));
    apply(&env, "shop.toml", &[]).assert_success();
    apply(&env, "shop.toml", &["--var", "image_tag=1.1"]).assert_success();
    assert!(
        service(&env)
            .await
            .unwrap()
            .task_definition()
            .unwrap()
            .ends_with("shop-api:2")
    );

    let bad = env.run_with(
        ["rollback", "shop.toml", "ecs_service.api", "--to", "7"],
        run_env,
    );
    assert_eq!(bad.code(), Some(1), "{bad}");
    bad.assert_stderr_contains("kept: shop-api:1, shop-api:2");
    env.run_with(
        ["rollback", "shop.toml", "ssm_parameter.log_level"],
        run_env,
    )
    .assert_code(1)
    .assert_stderr_contains("is a ssm_parameter");

    let run = env.run_with(["rollback", "shop.toml", "ecs_service.api"], run_env);
    run.assert_success();
    run.assert_stdout_contains("rolling back from shop-api:2 to shop-api:1");
    let svc = service(&env).await.unwrap();
    assert!(
        svc.task_definition().unwrap().ends_with("shop-api:1"),
        "{svc:?}"
    );
    assert_eq!(svc.deployments().len(), 1);
    assert_eq!(
        state(&env)["resources"]["ecs_service.api"]["attributes"]["revision"],
        json!(1)
    );
    // The file still names 1.1: the plan says so instead of hiding the difference.
    let p = plan(&env, "shop.toml", &["--var", "image_tag=1.1"]);
    p.assert_code(2);
    assert!(
        p.stdout().contains("shop/api:1.0") && p.stdout().contains("shop/api:1.1"),
        "{p}"
    );
    // …and with the file back at 1.0 there is nothing to do.
    plan(&env, "shop.toml", &[]).assert_code(0);
    // The rollback is in the verified history.
    let audit = env.run_with(["audit", "shop.toml", "--json"], run_env);
    audit.assert_success();
    let records = audit.stdout_json()["records"].clone();
    let last = records.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["command"], "rollback", "{last}");
    assert!(
        last.to_string()
            .contains("rollback from shop-api:2 to shop-api:1"),
        "{last}"
    );
}

#[tokio::test]
async fn an_existing_role_of_the_auto_name_is_not_taken_over() {
    let env = TestEnv::new();
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    iam(&env)
        .await
        .create_role()
        .role_name("shop-api-exec")
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap();
    env.write("shop.toml", stack("", ""));
    let run = apply(&env, "shop.toml", &[]);
    run.assert_code(1).assert_stderr_contains(
        "IAM role shop-api-exec already exists and is not Stackwright's for ecs_service.api (its stackwright:address tag is absent)",
    );
    assert!(service(&env).await.is_none(), "no service without its role");
    // The role is left as it was: no policy written into it.
    let inline = iam(&env)
        .await
        .list_role_policies()
        .role_name("shop-api-exec")
        .send()
        .await
        .unwrap();
    assert!(inline.policy_names().is_empty(), "{inline:?}");
}
