//! The repository's demo stack, `stacks/webapp.toml` with its `migrations/`, as a test:
//! the whole stack (S3, SSM, security groups, the ALB with blue/green target groups and
//! its listener, a log group, three alarms through the CloudWatch CBOR adapter, RDS and
//! the migrations against a real PostgreSQL) applies to moto, re-plans to no changes, reads
//! back through the SDKs, and its history verifies. `scripts/demo.sh` runs the same steps.

use std::path::Path;

use crate::common::{Postgres, TestEnv, repo_root};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The demo's `api` service and the task definition it runs, as ECS reports them.
async fn api_service(
    ecs: &aws_sdk_ecs::Client,
) -> (
    aws_sdk_ecs::types::Service,
    aws_sdk_ecs::types::TaskDefinition,
) {
    let svc = ecs
        .describe_services()
        .cluster("webapp-dev")
        .services("api")
        .send()
        .await
        .unwrap()
        .services()[0]
        .clone();
    let td = ecs
        .describe_task_definition()
        .task_definition(svc.task_definition().unwrap())
        .send()
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .clone();
    (svc, td)
}

#[tokio::test]
async fn the_demo_stack_applies_replans_to_no_changes_and_reads_back() {
    let env = TestEnv::new();
    let pg = Postgres::start();
    let url = pg.create_database("webapp");
    env.write(
        "stacks/webapp.toml",
        std::fs::read_to_string(repo_root().join("stacks/webapp.toml")).unwrap(),
    );
    copy_dir(&repo_root().join("migrations"), &env.path("migrations"));
    let secrets = |c: &mut assert_cmd::Command| {
        c.env("WEBAPP_SECRET_KEY", "demo-test-secret")
            .env("WEBAPP_DB_PASSWORD", pg.password())
            .env("WEBAPP_DATABASE_URL", &url);
    };
    let stack = ["stacks/webapp.toml", "--env", "dev"];
    let cmd = |verb: &str, extra: &[&str]| {
        let mut args = vec![verb];
        args.extend(stack);
        args.extend(extra);
        env.run_with(args, secrets)
    };

    cmd("plan", &["--detailed-exitcode"]).assert_code(2);
    // The pull-request comment: summary first, a row and a collapsible block per resource,
    // the migrations with the snapshot taken first, and no secret.
    let md = cmd("plan", &["--markdown"]);
    md.assert_success();
    let md = md.stdout();
    assert!(md.starts_with("### Stackwright plan: `webapp` (dev)\n\n**21 to add, 0 to change, 0 to replace, 0 to destroy.**"), "{md}");
    assert!(!md.contains("[!WARNING]"), "nothing is deleted: {md}");
    assert_eq!(md.matches("<details><summary><code>").count(), 21, "{md}");
    assert!(md.contains("| `+` create | `alb_listener.http` |"), "{md}");
    assert!(
        md.contains("#### Migrations against `rds_instance.main`"),
        "{md}"
    );
    for secret in ["demo-test-secret", pg.password(), url.as_str()] {
        assert!(!md.contains(secret), "a secret in the markdown plan");
    }
    cmd("apply", &["--auto-approve"])
        .assert_success()
        .assert_stdout_contains("Apply complete! Resources: 21 added");
    cmd("plan", &["--detailed-exitcode"])
        .assert_success()
        .assert_stdout_contains("No changes.");

    // Read back, independently of the binary.
    let conf = env.sdk_config().await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let lb = elb
        .describe_load_balancers()
        .names("webapp-dev")
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .clone();
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(lb.load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    let l = &listeners.listeners()[0];
    assert_eq!(l.port(), Some(80));
    let forward = l.default_actions()[0].forward_config().unwrap();
    let mut weights: Vec<(String, i32)> = forward
        .target_groups()
        .iter()
        .map(|t| {
            let arn = t.target_group_arn().unwrap();
            (
                arn.split('/').nth(1).unwrap().to_owned(),
                t.weight().unwrap_or(1),
            )
        })
        .collect();
    weights.sort();
    assert_eq!(
        weights,
        [
            ("webapp-dev-blue".to_owned(), 100),
            ("webapp-dev-green".to_owned(), 0)
        ]
    );

    // The app runs on Fargate behind the blue group, its secrets read from Parameter Store
    // through the execution role Stackwright wrote.
    let ecs = aws_sdk_ecs::Client::new(&conf);
    let (svc, td) = api_service(&ecs).await;
    assert_eq!((svc.desired_count(), svc.running_count()), (1, 1));
    assert!(
        svc.load_balancers()[0]
            .target_group_arn()
            .unwrap()
            .contains("/webapp-dev-blue/")
    );
    let td = &td;
    assert_eq!(
        td.execution_role_arn(),
        Some("arn:aws:iam::123456789012:role/webapp-dev-api-exec")
    );
    let mut secret_names: Vec<&str> = td.container_definitions()[0]
        .secrets()
        .iter()
        .map(|s| s.name())
        .collect();
    secret_names.sort();
    assert_eq!(
        secret_names,
        ["DATABASE_URL", "LOG_LEVEL", "S3_BUCKET", "SECRET_KEY"]
    );

    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    let alarms = cw
        .describe_alarms()
        .alarm_name_prefix("webapp-dev-")
        .send()
        .await
        .unwrap();
    let mut names: Vec<&str> = alarms
        .metric_alarms()
        .iter()
        .filter_map(|a| a.alarm_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "webapp-dev-db-free-storage",
            "webapp-dev-target-5xx-rate",
            "webapp-dev-target-latency-p95"
        ]
    );
    let rate = alarms
        .metric_alarms()
        .iter()
        .find(|a| a.alarm_name() == Some("webapp-dev-target-5xx-rate"))
        .unwrap();
    let expr = rate
        .metrics()
        .iter()
        .find(|m| m.return_data() == Some(true))
        .and_then(|m| m.expression());
    assert_eq!(expr, Some("100 * errors / requests"));
    let lb_suffix = lb
        .load_balancer_arn()
        .unwrap()
        .split_once(":loadbalancer/")
        .unwrap()
        .1;
    let dims: Vec<(&str, &str)> = rate.metrics()[0]
        .metric_stat()
        .and_then(|s| s.metric())
        .map(|m| {
            m.dimensions()
                .iter()
                .map(|d| (d.name().unwrap(), d.value().unwrap()))
                .collect()
        })
        .unwrap_or_default();
    assert!(dims.contains(&("LoadBalancer", lb_suffix)), "{dims:?}");

    // The database is reachable only from the app's group.
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let groups = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values("webapp-dev-db")
                .values("webapp-dev-app")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let id_of = |n: &str| {
        groups
            .security_groups()
            .iter()
            .find(|g| g.group_name() == Some(n))
            .and_then(|g| g.group_id())
            .unwrap()
            .to_owned()
    };
    let db = groups
        .security_groups()
        .iter()
        .find(|g| g.group_name() == Some("webapp-dev-db"))
        .unwrap();
    let sources: Vec<&str> = db
        .ip_permissions()
        .iter()
        .flat_map(|p| p.user_id_group_pairs())
        .filter_map(|p| p.group_id())
        .collect();
    assert_eq!(sources, [id_of("webapp-dev-app").as_str()]);
    assert!(db.ip_permissions().iter().all(|p| p.ip_ranges().is_empty()));

    // Migrations ran against the real PostgreSQL.
    assert!(
        pg.psql("webapp", "SELECT count(*) FROM users")
            .contains('0')
    );

    // The next release: a new image tag is a new revision, deployed, then no changes.
    let release = ["--var", "image_tag=1.1.0"];
    cmd("plan", &release)
        .assert_success()
        .assert_stdout_contains("# ecs_service.api will be updated in place")
        .assert_stdout_contains(":1.1.0");
    cmd("apply", &[&["--auto-approve"][..], &release].concat())
        .assert_success()
        .assert_stdout_contains("Resources: 0 added, 1 changed");
    cmd("plan", &[&["--detailed-exitcode"][..], &release].concat())
        .assert_success()
        .assert_stdout_contains("No changes.");
    let (_, td) = api_service(&ecs).await;
    let image = td.container_definitions()[0].image().unwrap().to_owned();
    assert!(image.ends_with(":1.1.0"), "{image}");
    assert_eq!(td.revision(), 2);

    env.run_with(["audit", "stacks/webapp.toml", "--env", "dev"], secrets)
        .assert_success()
        .assert_stdout_contains("The history verifies");
}
