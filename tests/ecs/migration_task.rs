//! Migrations as a one-off task (issue 9): `[migrations] task = { service, command }` runs
//! the service's new revision once with the command, after the snapshot and before the
//! service moves, and requires exit code 0. Read back through ECS (the task's overrides and
//! revision) and RDS (the snapshot); the exit code comes from the harness hook
//! `STACKWRIGHT_MOTO_TASK_EXIT_CODE` (tests/README.md row 33).

use serde_json::Value;

use super::{ecs, service, stack};
use crate::common::TestEnv;

const DB: &str = r#"
[rds_instance.db]
identifier = "shop-db"
engine = "postgres"
instance_class = "db.t4g.micro"
allocated_storage = 20
master_username = "shop"
master_password = { from_env = "SHOP_DB_PASSWORD" }
final_snapshot = false
"#;

const MIGRATIONS: &str = r#"
[migrations]
database = "rds_instance.db"
task = { service = "ecs_service.api", command = ["alembic", "upgrade", "head"] }
"#;

fn with_db(migrations: bool) -> String {
    let mut s = stack("", "");
    s.push_str(DB);
    if migrations {
        s.push_str(MIGRATIONS);
    }
    s
}

fn env_vars(c: &mut assert_cmd::Command) {
    super::run_env(c);
    c.env("SHOP_DB_PASSWORD", "db-password-not-in-state-91c2");
}

fn json_apply(env: &TestEnv, tag: &str) -> crate::common::Run {
    env.run_with(
        [
            "apply",
            "shop.toml",
            "--auto-approve",
            "--json",
            "--var",
            &format!("image_tag={tag}"),
        ],
        env_vars,
    )
}

fn plan_tag(env: &TestEnv, tag: &str) -> crate::common::Run {
    let var = format!("image_tag={tag}");
    env.run_with(
        ["plan", "shop.toml", "--detailed-exitcode", "--var", &var],
        env_vars,
    )
}

fn apply_tag(env: &TestEnv, tag: &str) -> crate::common::Run {
    let var = format!("image_tag={tag}");
    env.run_with(
        ["apply", "shop.toml", "--auto-approve", "--var", &var],
        env_vars,
    )
}

fn events(run: &crate::common::Run) -> Vec<Value> {
    run.stdout()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Index of the first event matching `pred`, panicking with the stream when none does.
fn position(evs: &[Value], what: &str, pred: impl Fn(&Value) -> bool) -> usize {
    evs.iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no event {what} in {evs:#?}"))
}

fn note_with(evs: &[Value], text: &str) -> usize {
    position(evs, text, |e| {
        e["type"] == "note" && e["message"].as_str().is_some_and(|m| m.contains(text))
    })
}

fn service_started(evs: &[Value]) -> usize {
    position(evs, "ecs_service.api started", |e| {
        e["type"] == "action_started" && e["address"] == "ecs_service.api"
    })
}

/// The one-off tasks the migrations started, as ECS reports them.
async fn migration_tasks(env: &TestEnv) -> Vec<aws_sdk_ecs::types::Task> {
    let ecs = ecs(env).await;
    let mut arns = Vec::new();
    for status in [
        aws_sdk_ecs::types::DesiredStatus::Running,
        aws_sdk_ecs::types::DesiredStatus::Stopped,
    ] {
        let out = ecs
            .list_tasks()
            .cluster("shop")
            .started_by("stackwright-migrations")
            .desired_status(status)
            .send()
            .await
            .unwrap();
        arns.extend(out.task_arns().iter().cloned());
    }
    if arns.is_empty() {
        return Vec::new();
    }
    ecs.describe_tasks()
        .cluster("shop")
        .set_tasks(Some(arns))
        .send()
        .await
        .unwrap()
        .tasks()
        .to_vec()
}

async fn snapshots(env: &TestEnv) -> Vec<String> {
    let rds = aws_sdk_rds::Client::new(&env.sdk_config().await);
    rds.describe_db_snapshots()
        .db_instance_identifier("shop-db")
        .snapshot_type("manual") // moto also takes an automated one at create
        .send()
        .await
        .unwrap()
        .db_snapshots()
        .iter()
        .filter_map(|s| s.db_snapshot_identifier().map(str::to_owned))
        .collect()
}

fn command_of(t: &aws_sdk_ecs::types::Task) -> Vec<String> {
    t.overrides()
        .map(|o| o.container_overrides())
        .unwrap_or_default()
        .iter()
        .find(|c| c.name() == Some("api"))
        .map(|c| c.command().to_vec())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_new_revision_runs_the_migrations_after_the_snapshot_and_before_the_service_moves() {
    let env = TestEnv::new();
    env.write("shop.toml", with_db(true));

    // First deploy: the database is new (no snapshot, nothing to protect), the task still
    // runs before the service is created so the first containers find their schema.
    let p = env.run_with(["plan", "shop.toml", "--var", "image_tag=1.0"], env_vars);
    p.assert_success().assert_stdout_contains(
        "run `alembic upgrade head` in a one-off task of ecs_service.api's new revision (ecs_service.api is created by this apply)",
    );
    let first = json_apply(&env, "1.0");
    first.assert_success();
    let evs = events(&first);
    assert!(
        note_with(&evs, "exited 0") < service_started(&evs),
        "the task ends before the service starts: {evs:#?}"
    );
    assert!(
        snapshots(&env).await.is_empty(),
        "a fresh database gets no snapshot"
    );
    let tasks = migration_tasks(&env).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(command_of(&tasks[0]), ["alembic", "upgrade", "head"]);
    let svc = service(&env).await.expect("service created");
    assert_eq!(
        tasks[0].task_definition_arn(),
        svc.task_definition(),
        "the service runs the revision the migrations ran"
    );
    // Nothing changes: no task runs again, and the plan says so.
    let again = plan_tag(&env, "1.0");
    again.assert_code(0);
    assert!(!again.stdout().contains("one-off task"), "{again}");

    // A new image: snapshot → task of revision 2 → service update, in that order.
    let second = json_apply(&env, "2.0");
    second.assert_success();
    let evs = events(&second);
    let snap = note_with(&evs, "taking snapshot shop-db-pre-task-");
    let started = note_with(&evs, "started task");
    let exited = note_with(&evs, "exited 0");
    let moved = service_started(&evs);
    assert!(
        snap < started && started < exited && exited < moved,
        "{evs:#?}"
    );
    let snaps = snapshots(&env).await;
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert!(snaps[0].starts_with("shop-db-pre-task-"), "{snaps:?}");

    let tasks = migration_tasks(&env).await;
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let svc = service(&env).await.unwrap();
    let rev2 = svc.task_definition().unwrap().to_owned();
    assert!(rev2.ends_with(":2"), "{rev2}");
    assert!(
        tasks
            .iter()
            .any(|t| t.task_definition_arn() == Some(rev2.as_str())
                && command_of(t) == ["alembic", "upgrade", "head"]),
        "the migrations ran on revision 2: {tasks:?}"
    );
    // The service reused the revision the task registered: no third one.
    assert_eq!(super::active_revisions(&env).await.len(), 2);
    let st: Value = serde_json::from_str(&env.read("state/shop.json")).unwrap();
    assert_eq!(
        st["records"]["migrations.last_snapshot"].as_str(),
        Some(snaps[0].as_str()),
        "{st:#}"
    );
    assert!(
        st["records"].get("operations.migrations").is_none(),
        "{st:#}"
    );
    plan_tag(&env, "2.0").assert_code(0);
    assert!(
        !env.read("state/shop.json")
            .contains("db-password-not-in-state")
    );
}

#[tokio::test]
async fn a_failing_migration_task_stops_the_apply_before_the_service_moves() {
    let env = TestEnv::with_moto_env(&[("STACKWRIGHT_MOTO_TASK_EXIT_CODE", "3")]);
    // The service and its database exist first, without migrations.
    env.write("shop.toml", with_db(false));
    apply_tag(&env, "1.0").assert_success();
    let before = service(&env).await.unwrap();
    let rev1 = before.task_definition().unwrap().to_owned();

    env.write("shop.toml", with_db(true));
    let run = apply_tag(&env, "2.0");
    run.assert_code(1);
    let out = format!("{}{}", run.stdout(), run.stderr());
    let tasks = migration_tasks(&env).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let task_arn = tasks[0].task_arn().unwrap();
    assert!(
        out.contains(&format!("migration task {task_arn}")) && out.contains("exited with code 3"),
        "the error names the task and its exit code:\n{out}"
    );
    let snaps = snapshots(&env).await;
    assert_eq!(snaps.len(), 1, "the snapshot was taken first: {snaps:?}");
    assert!(
        out.contains(&format!(
            "restore the pre-migration snapshot with: stackwright db restore shop.toml --snapshot {}",
            snaps[0]
        )),
        "{out}"
    );
    // The service did not move: still revision 1, as state says too.
    let after = service(&env).await.unwrap();
    assert_eq!(after.task_definition(), Some(rev1.as_str()));
    let st: Value = serde_json::from_str(&env.read("state/shop.json")).unwrap();
    assert_eq!(
        st["resources"]["ecs_service.api"]["attributes"]["task_definition_arn"].as_str(),
        Some(rev1.as_str()),
    );
    // The next plan still has both the task and the new revision to do.
    let p = plan_tag(&env, "2.0");
    p.assert_code(2)
        .assert_stdout_contains(
            "in a one-off task of ecs_service.api's new revision (its task changes)",
        )
        .assert_stdout_contains(&format!(
            "did not finish (snapshot {}); apply runs it again under the same snapshot",
            snaps[0]
        ));
    // The next apply fails the same way, under that same snapshot: no second one.
    apply_tag(&env, "2.0")
        .assert_code(1)
        .assert_stdout_contains(&format!("reusing snapshot {}", snaps[0]));
    assert_eq!(snapshots(&env).await.len(), 1);
    assert_eq!(migration_tasks(&env).await.len(), 2, "the task ran again");
}

#[test]
fn bad_task_migrations_are_refused_with_their_location() {
    let env = TestEnv::new();
    let cases = [
        (
            "task = { service = \"ecs_service.web\", command = [\"alembic\", \"upgrade\", \"head\"] }",
            "`task.service` names `ecs_service.web`, which is not declared",
        ),
        (
            "task = { service = \"ecs_service.api\", command = [] }",
            "`task.command` is empty",
        ),
        (
            "task = { service = \"ecs_service.api\", command = [\"x\"], container = \"worker\" }",
            "`task.container` names `worker`, which ecs_service.api's task does not declare",
        ),
        (
            "task = { service = \"rds_instance.db\", command = [\"x\"] }",
            "`task.service` must name an ecs_service, but `rds_instance.db` is a rds_instance",
        ),
        (
            "dir = \".\"\ntask = { service = \"ecs_service.api\", command = [\"x\"] }",
            "`dir` cannot be used with `task`",
        ),
    ];
    for (body, want) in cases {
        let mut s = stack("", "");
        s.push_str(DB);
        s.push_str(&format!(
            "\n[migrations]\ndatabase = \"rds_instance.db\"\n{body}\n"
        ));
        env.write("bad.toml", s);
        let run = env.run_with(["plan", "bad.toml"], env_vars);
        run.assert_code(1).assert_stderr_contains(want);
        assert!(
            run.stderr().contains("bad.toml:"),
            "the error names the file and line: {run}"
        );
    }
    assert!(!env.path("state/bad.json").exists(), "nothing was written");
}
