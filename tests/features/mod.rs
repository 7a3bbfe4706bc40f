//! Issue 7, "tests that prove what the README promises": the features that had no test,
//! each through the real binary against a real moto_server (and a real PostgreSQL for
//! migrations), each outcome read back independently (SDK, psql, the state file).

use crate::common::{Postgres, Run, TestEnv, rds_stack};
use crate::foundation::STACK;

const SECRET: &str = "features-secret-3b8d";
const DB_PASSWORD: &str = "features-MasterPw-77a1";

/// `stackwright ARGS` with the S3/SSM stack's secret set.
fn run(env: &TestEnv, args: &[&str]) -> Run {
    env.run_with(args, |c| {
        c.env("WEBAPP_SECRET_KEY", SECRET);
    })
}

async fn param(env: &TestEnv, name: &str) -> Option<String> {
    match env
        .ssm()
        .await
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
    {
        Ok(out) => out.parameter().and_then(|p| p.value()).map(str::to_owned),
        Err(e) => {
            let e = e.into_service_error();
            assert!(e.is_parameter_not_found(), "{e:?}");
            None
        }
    }
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

async fn bucket_names(env: &TestEnv) -> Vec<String> {
    let out = env.s3().await.list_buckets().send().await.unwrap();
    out.buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect()
}

fn state_json(env: &TestEnv, rel: &str) -> serde_json::Value {
    serde_json::from_str(&env.read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn state_addresses(env: &TestEnv, rel: &str) -> Vec<String> {
    state_json(env, rel)["resources"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// The JSON lines of `apply --json`.
fn events(run: &Run) -> Vec<serde_json::Value> {
    run.stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{run}")))
        .collect()
}

// ---------------------------------------------------------------------------
// --var, --state, plan --destroy, --target, saved plans
// ---------------------------------------------------------------------------

/// `--var NAME=VALUE` beats both `[vars]` and `[env.E.vars]`; the override is not
/// remembered (a plan without it goes back to the file's value); a value may hold `=`; a
/// whole-string `"${var.x}"` keeps the variable's type when set from the command line.
#[tokio::test]
async fn var_overrides_vars_and_env_vars() {
    let env = TestEnv::new();
    env.write("stacks/webapp.toml", STACK);
    let apply = |e: &str, var: Option<&str>| {
        let mut args = vec!["apply", "stacks/webapp.toml", "--env", e, "--auto-approve"];
        if let Some(v) = var {
            args.extend(["--var", v]);
        }
        run(&env, &args).assert_success();
    };
    // prod: [env.prod.vars] says WARNING, --var says DEBUG.
    apply("prod", Some("log_level=DEBUG"));
    // dev: [vars] says INFO, --var says ERROR.
    apply("dev", Some("log_level=ERROR"));
    // staging: no override, [vars] holds.
    apply("staging", None);
    assert_eq!(
        param(&env, "/webapp/prod/LOG_LEVEL").await.as_deref(),
        Some("DEBUG")
    );
    assert_eq!(
        param(&env, "/webapp/dev/LOG_LEVEL").await.as_deref(),
        Some("ERROR")
    );
    assert_eq!(
        param(&env, "/webapp/staging/LOG_LEVEL").await.as_deref(),
        Some("INFO")
    );

    // The same override: no changes. Without it: back to the file's value.
    run(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "prod",
            "--var",
            "log_level=DEBUG",
            "--detailed-exitcode",
        ],
    )
    .assert_code(0);
    run(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "prod",
            "--detailed-exitcode",
        ],
    )
    .assert_code(2)
    .assert_stdout_contains("~ value = \"DEBUG\" -> \"WARNING\"");

    // Split at the first `=`: the rest is the value.
    apply("dev", Some("log_level=a=b"));
    assert_eq!(
        param(&env, "/webapp/dev/LOG_LEVEL").await.as_deref(),
        Some("a=b")
    );

    // A typed variable set from the command line: a boolean stays a boolean.
    env.write(
        "typed.toml",
        "[stack]\nname = \"typed\"\nregion = \"us-east-1\"\n\n[vars]\nversioned = false\n\n[s3_bucket.b]\nname = \"typed-b\"\nversioning = \"${var.versioned}\"\n",
    );
    env.ok([
        "apply",
        "typed.toml",
        "--var",
        "versioned=true",
        "--auto-approve",
    ]);
    let v = env
        .s3()
        .await
        .get_bucket_versioning()
        .bucket("typed-b")
        .send()
        .await
        .unwrap();
    assert_eq!(v.status().map(|s| s.as_str()), Some("Enabled"));
}

/// `--state FILE`: state goes there and nowhere else; the next plan with the same
/// `--state` has no changes; destroy through it empties AWS.
#[tokio::test]
async fn state_flag_puts_state_in_the_named_file() {
    let env = TestEnv::new();
    env.write("stacks/webapp.toml", STACK);
    let with_state = |cmd: &str, extra: &[&str]| {
        let mut args = vec![
            cmd,
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--state",
            "elsewhere/dev-state.json",
        ];
        args.extend(extra);
        run(&env, &args)
    };
    with_state("apply", &["--auto-approve"]).assert_success();
    assert!(!env.exists("state"), "{:?}", env.list_files_recursive());
    let files = env.list_files_recursive();
    assert!(
        files.contains(&"elsewhere/dev-state.json".to_owned()),
        "{files:?}"
    );
    // Lock and journal live beside the named file, not under state/.
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("elsewhere/") || f.starts_with("stacks/")),
        "{files:?}"
    );
    let json = state_json(&env, "elsewhere/dev-state.json");
    assert_eq!(json["stack"], "webapp");
    assert_eq!(json["serial"], 1);
    assert_eq!(
        state_addresses(&env, "elsewhere/dev-state.json"),
        [
            "s3_bucket.uploads",
            "ssm_parameter.log_level",
            "ssm_parameter.secret_key",
            "ssm_parameter.uploads_bucket"
        ]
    );
    with_state("plan", &["--detailed-exitcode"])
        .assert_code(0)
        .assert_stdout_contains("No changes.");
    // The default path holds no state: from there the bucket is someone else's.
    let default = run(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--detailed-exitcode",
        ],
    );
    default.assert_code(1).assert_stderr_contains(
        "s3_bucket `webapp-dev-uploads` already exists in AWS but is not in this stack's state",
    );
    assert!(!env.exists("state"));

    with_state("destroy", &["--auto-approve"]).assert_success();
    assert!(bucket_names(&env).await.is_empty());
    assert!(param_names(&env).await.is_empty());
    assert_eq!(
        state_json(&env, "elsewhere/dev-state.json")["resources"],
        serde_json::json!({})
    );
}

/// `plan --destroy` lists every resource in state as a delete and changes nothing: AWS
/// and the state file are as before. Its saved plan then destroys exactly that.
#[tokio::test]
async fn plan_destroy_lists_everything_and_changes_nothing() {
    let env = TestEnv::new();
    env.write("stacks/webapp.toml", STACK);
    run(
        &env,
        &[
            "apply",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
        ],
    )
    .assert_success();
    let state = env.read("state/webapp/dev.json");
    let params = param_names(&env).await;
    assert_eq!(params.len(), 3);

    let text = run(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--destroy",
            "--detailed-exitcode",
        ],
    );
    text.assert_code(2);
    insta::assert_snapshot!("plan_destroy", env.scrub(text.stdout()));

    let json = run(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--destroy",
            "--json",
        ],
    );
    json.assert_success();
    let plan = json.stdout_json();
    let mut deletes: Vec<(&str, &str)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["address"].as_str().unwrap(),
                c["action"].as_str().unwrap(),
            )
        })
        .collect();
    deletes.sort();
    assert_eq!(
        deletes,
        [
            ("s3_bucket.uploads", "delete"),
            ("ssm_parameter.log_level", "delete"),
            ("ssm_parameter.secret_key", "delete"),
            ("ssm_parameter.uploads_bucket", "delete"),
        ]
    );
    assert_eq!(plan["summary"]["destroy"], 4, "{plan}");

    run(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--destroy",
            "--out",
            "destroy.plan",
        ],
    )
    .assert_success();
    // Nothing changed by any of the three.
    assert_eq!(env.read("state/webapp/dev.json"), state);
    assert_eq!(bucket_names(&env).await, ["webapp-dev-uploads"]);
    assert_eq!(param_names(&env).await, params);

    run(&env, &["apply", "destroy.plan"])
        .assert_success()
        .assert_stdout_contains("4 destroyed");
    assert!(bucket_names(&env).await.is_empty());
    assert!(param_names(&env).await.is_empty());
}

/// `apply --target ADDRESS` creates that resource and what it depends on, nothing else.
#[tokio::test]
async fn targeted_apply_creates_only_the_target_and_its_dependencies() {
    let env = TestEnv::new();
    env.write("stacks/webapp.toml", STACK);
    run(
        &env,
        &[
            "apply",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
            "--target",
            "ssm_parameter.uploads_bucket",
        ],
    )
    .assert_success()
    .assert_stdout_contains("Resources: 2 added");
    assert_eq!(bucket_names(&env).await, ["webapp-dev-uploads"]);
    assert_eq!(param_names(&env).await, ["/webapp/dev/S3_BUCKET"]);
    assert_eq!(
        state_addresses(&env, "state/webapp/dev.json"),
        ["s3_bucket.uploads", "ssm_parameter.uploads_bucket"]
    );
    // The rest is still to do.
    run(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--detailed-exitcode",
        ],
    )
    .assert_code(2)
    .assert_stdout_contains("Plan: 2 to add, 0 to change, 0 to replace, 0 to destroy.");
    // A target with no dependencies: only itself.
    run(
        &env,
        &[
            "apply",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
            "--target",
            "ssm_parameter.log_level",
        ],
    )
    .assert_success()
    .assert_stdout_contains("Resources: 1 added");
    assert_eq!(
        param_names(&env).await,
        ["/webapp/dev/LOG_LEVEL", "/webapp/dev/S3_BUCKET"]
    );
    // A target that names nothing is refused, and changes nothing.
    let bad = run(
        &env,
        &[
            "apply",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--auto-approve",
            "--target",
            "ssm_parameter.secret_kye",
        ],
    );
    bad.assert_code(1);
    insta::assert_snapshot!("target_unknown", env.scrub(bad.stderr()));
    assert_eq!(param(&env, "/webapp/dev/SECRET_KEY").await, None);
}

/// A saved plan applied after the stack file changed is refused with a clear message, and
/// nothing changes; the same plan goes through once the file is as planned again.
#[tokio::test]
async fn saved_plan_is_refused_after_the_stack_file_changed() {
    let env = TestEnv::new();
    env.write("stacks/webapp.toml", STACK);
    run(
        &env,
        &[
            "plan",
            "stacks/webapp.toml",
            "--env",
            "dev",
            "--out",
            "dev.plan",
        ],
    )
    .assert_success();
    env.write(
        "stacks/webapp.toml",
        STACK.replace("log_level = \"INFO\"", "log_level = \"DEBUG\""),
    );
    let refused = run(&env, &["apply", "dev.plan"]);
    refused.assert_code(1);
    insta::assert_snapshot!("saved_plan_stack_changed", env.scrub(refused.stderr()));
    assert_eq!(refused.stdout(), "", "{refused}");
    assert!(bucket_names(&env).await.is_empty());
    assert!(param_names(&env).await.is_empty());
    assert!(!env.exists("state"), "{:?}", env.list_files_recursive());

    // Back as planned: applied exactly as planned.
    env.write("stacks/webapp.toml", STACK);
    run(&env, &["apply", "dev.plan"])
        .assert_success()
        .assert_stdout_contains("4 added");
    assert_eq!(
        param(&env, "/webapp/dev/LOG_LEVEL").await.as_deref(),
        Some("INFO")
    );
}

// ---------------------------------------------------------------------------
// Migrations: depends_on = ["migrations"], --allow-unsafe-migrations
// ---------------------------------------------------------------------------

/// An RDS stack (`common::rds_stack`) whose migrations run against the harness's
/// PostgreSQL, found through a SecureString parameter the stack writes.
fn db_stack(name: &str, extra: &str) -> String {
    format!(
        "{}\n[ssm_parameter.database_url]\nname = \"/{name}/DATABASE_URL\"\ntype = \"SecureString\"\nvalue = {{ from_env = \"FEATURES_DATABASE_URL\" }}\ndepends_on = [\"rds_instance.db\"]\n\n[migrations]\ndir = \"migrations\"\ndatabase = \"rds_instance.db\"\nurl = {{ ssm = \"/{name}/DATABASE_URL\" }}\n{extra}",
        rds_stack(name, "FEATURES_DB_PASSWORD")
    )
}

struct Db {
    env: TestEnv,
    pg: Postgres,
    url: String,
}

impl Db {
    fn new(name: &str, extra: &str) -> Db {
        let env = TestEnv::new();
        let pg = Postgres::start();
        let url = pg.create_database("app");
        env.write("stack.toml", db_stack(name, extra));
        env.write(
            "migrations/0001_users.sql",
            "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL);\n",
        );
        Db { env, pg, url }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.env.run_with(args, |c| {
            c.env("FEATURES_DB_PASSWORD", DB_PASSWORD)
                .env("FEATURES_DATABASE_URL", &self.url);
        })
    }

    fn history(&self) -> String {
        self.pg.psql(
            "app",
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM stackwright_migrations",
        )
    }

    async fn manual_snapshots(&self) -> usize {
        self.env
            .rds()
            .await
            .describe_db_snapshots()
            .snapshot_type("manual")
            .send()
            .await
            .unwrap()
            .db_snapshots()
            .len()
    }
}

/// `depends_on = ["migrations"]`: the resource is created only after the migrations ran
/// (event order of `apply --json`), and not at all when they fail.
#[tokio::test]
async fn depends_on_migrations_waits_for_them() {
    let f = Db::new(
        "dm",
        "\n[ssm_parameter.schema]\nname = \"/dm/SCHEMA_VERSION\"\nvalue = \"2\"\ndepends_on = [\"migrations\"]\n",
    );
    f.env.write(
        "migrations/0002_broken.sql",
        "SELECT no_such_column FROM users;\n",
    );
    let failed = f.run(&["apply", "stack.toml", "--auto-approve", "--json"]);
    failed.assert_code(1);
    let ev = events(&failed);
    let summary = ev.last().unwrap_or_else(|| panic!("no events: {failed}"));
    assert_eq!(summary["type"], "summary", "{failed}");
    assert_eq!(summary["failed"][0]["address"], "migrations", "{failed}");
    assert_eq!(
        summary["skipped"],
        serde_json::json!([{"address": "ssm_parameter.schema", "reason": "migrations failed"}]),
        "{failed}"
    );
    // Read back: the database and its URL exist, the dependant does not.
    assert_eq!(param(&f.env, "/dm/SCHEMA_VERSION").await, None);
    assert!(param(&f.env, "/dm/DATABASE_URL").await.is_some());
    assert_eq!(f.history(), "1");
    assert!(!state_addresses(&f.env, "state/dm.json").contains(&"ssm_parameter.schema".into()));

    f.env.write(
        "migrations/0002_broken.sql",
        "ALTER TABLE users ADD COLUMN name text;\n",
    );
    let ok = f.run(&["apply", "stack.toml", "--auto-approve", "--json"]);
    ok.assert_success();
    let ev = events(&ok);
    let pos = |kind: &str, address: &str, action: &str| {
        ev.iter()
            .position(|e| e["type"] == kind && e["address"] == address && e["action"] == action)
            .unwrap_or_else(|| panic!("no {kind} {action} of {address} in {ok}"))
    };
    // The operation as a whole ("run"; each file is an action of its own inside it).
    let migrated = pos("action_finished", "migrations", "run");
    assert_eq!(ev[migrated]["error"], serde_json::Value::Null, "{ok}");
    let applied = ev
        .iter()
        .position(|e| {
            e["type"] == "note" && e["message"].as_str().unwrap_or("").contains("applied 0002")
        })
        .unwrap_or_else(|| panic!("no note of 0002 in {ok}"));
    let started = pos("action_started", "ssm_parameter.schema", "create");
    assert!(
        applied < migrated && migrated < started,
        "0002 applied at {applied}, migrations finished at {migrated}, the dependant started at {started}: {ok}"
    );
    assert_eq!(f.history(), "1,2");
    assert_eq!(
        param(&f.env, "/dm/SCHEMA_VERSION").await.as_deref(),
        Some("2")
    );
    let state = state_json(&f.env, "state/dm.json");
    assert_eq!(
        state["resources"]["ssm_parameter.schema"]["depends_on"],
        serde_json::json!(["migrations"]),
        "{state}"
    );
    // The history: the failed run records the failed step and no migration; the next one
    // the migration it ran, the snapshot taken first and the dependant it created.
    let history: Vec<serde_json::Value> = f
        .env
        .read("state/dm.history.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(history.len(), 2, "{history:#?}");
    let failed_step = history[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "migrations")
        .cloned();
    assert_eq!(
        failed_step.map(|c| c["outcome"].clone()),
        Some("failed".into())
    );
    assert_eq!(history[0].get("migrations"), None);
    let ran = history[1]["migrations"].as_array().unwrap();
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert!(ran[0].as_str().unwrap().contains("0002"), "{ran:?}");
    assert_eq!(history[1]["snapshots"].as_array().map(Vec::len), Some(1));
    assert_eq!(history[1]["changes"][0]["address"], "ssm_parameter.schema");
    f.env
        .ok(["audit", "stack.toml"])
        .assert_stdout_contains("2 records");
}

/// Migrations squawk flags as unsafe (a non-concurrent index build, a NOT NULL column
/// without a default) are refused before any snapshot or SQL without
/// `--allow-unsafe-migrations`, and applied with it, from a stack or from a saved plan.
#[tokio::test]
async fn allow_unsafe_migrations_is_needed_for_unsafe_files() {
    let f = Db::new("um", "");
    f.run(&["apply", "stack.toml", "--auto-approve"])
        .assert_success();
    f.env.write(
        "migrations/0002_email_index.sql",
        "CREATE INDEX users_email_idx ON users (email);\n",
    );
    f.env.write(
        "migrations/0003_age.sql",
        "ALTER TABLE users ADD COLUMN age integer NOT NULL;\n",
    );
    let index = || {
        f.pg.psql(
            "app",
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email_idx'",
        )
    };
    let age = || {
        f.pg.psql(
            "app",
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'age'",
        )
    };

    let refused = f.run(&["apply", "stack.toml", "--auto-approve"]);
    refused.assert_code(1);
    insta::assert_snapshot!("unsafe_migrations_refused", f.env.scrub(refused.stderr()));
    f.run(&["plan", "stack.toml", "--out", "um.plan"])
        .assert_success();
    f.run(&["apply", "um.plan"])
        .assert_code(1)
        .assert_stderr_contains("--allow-unsafe-migrations");
    f.run(&["migrate", "up", "stack.toml"])
        .assert_code(1)
        .assert_stderr_contains("require-concurrent-index-creation");
    assert_eq!(
        (index(), age(), f.history()),
        ("0".into(), "0".into(), "1".into())
    );
    assert_eq!(f.manual_snapshots().await, 0, "refused before any snapshot");

    f.run(&["apply", "um.plan", "--allow-unsafe-migrations"])
        .assert_success();
    assert_eq!(
        (index(), age(), f.history()),
        ("1".into(), "1".into(), "1,2,3".into())
    );
    assert_eq!(f.manual_snapshots().await, 1, "one snapshot before 0002");
}

// ---------------------------------------------------------------------------
// db restore
// ---------------------------------------------------------------------------

/// `db restore` restores into a new instance with the stack's subnet group, parameter
/// group and instance class (read back through the RDS SDK), leaves the stack's own
/// instance and state alone, and a missing snapshot is one error line.
#[tokio::test]
async fn db_restore_keeps_the_stacks_groups() {
    let env = TestEnv::new();
    env.write("stack.toml", rds_stack("rs", "RS_PASSWORD"));
    let run = |args: &[&str]| {
        env.run_with(args, |c| {
            c.env("RS_PASSWORD", DB_PASSWORD);
        })
    };
    run(&["apply", "stack.toml", "--auto-approve"]).assert_success();
    let rds = env.rds().await;
    rds.create_db_snapshot()
        .db_instance_identifier("rs-db")
        .db_snapshot_identifier("rs-db-by-hand")
        .send()
        .await
        .unwrap();
    let state = env.read("state/rs.json");

    let restored = run(&[
        "db",
        "restore",
        "stack.toml",
        "--snapshot",
        "rs-db-by-hand",
        "--to",
        "rs-db-restored",
    ]);
    restored.assert_success();
    insta::assert_snapshot!("db_restore", env.scrub(restored.stdout()));
    let out = rds
        .describe_db_instances()
        .db_instance_identifier("rs-db-restored")
        .send()
        .await
        .unwrap();
    let db = &out.db_instances()[0];
    assert_eq!(db.db_instance_class(), Some("db.t4g.micro"));
    assert_eq!(db.engine(), Some("postgres"));
    assert_eq!(
        db.db_subnet_group().and_then(|g| g.db_subnet_group_name()),
        Some("rs-db")
    );
    let groups: Vec<&str> = db
        .db_parameter_groups()
        .iter()
        .filter_map(|g| g.db_parameter_group_name())
        .collect();
    assert_eq!(groups, ["rs-db-pg"]);
    // The stack's instance is untouched, state is unchanged, and the plan does not adopt
    // or replace anything.
    assert_eq!(env.read("state/rs.json"), state);
    let ids: Vec<String> = rds
        .describe_db_instances()
        .send()
        .await
        .unwrap()
        .db_instances()
        .iter()
        .filter_map(|d| d.db_instance_identifier().map(str::to_owned))
        .collect();
    assert_eq!(ids, ["rs-db", "rs-db-restored"]);
    run(&["plan", "stack.toml", "--detailed-exitcode"]).assert_code(0);

    // Without --to: `<identifier>-restored-<timestamp>`.
    run(&["db", "restore", "stack.toml", "--snapshot", "rs-db-by-hand"]).assert_success();
    let ids: Vec<String> = rds
        .describe_db_instances()
        .send()
        .await
        .unwrap()
        .db_instances()
        .iter()
        .filter_map(|d| d.db_instance_identifier().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids[2].starts_with("rs-db-restored-"), "{ids:?}");

    let missing = run(&["db", "restore", "stack.toml", "--snapshot", "rs-db-nope"]);
    missing.assert_code(1);
    insta::assert_snapshot!("db_restore_missing_snapshot", env.scrub(missing.stderr()));
}

/// A saved plan lists the pending migrations it was made with; `apply PLANFILE` after the
/// migrations folder changed (a pending file edited, a new file added) must not run SQL
/// nobody reviewed: refused like a changed stack file, nothing applied.
#[tokio::test]
async fn saved_plan_is_refused_after_the_migrations_changed() {
    let f = Db::new("sp", "");
    f.run(&["apply", "stack.toml", "--auto-approve"])
        .assert_success();
    f.env.write(
        "migrations/0002_a.sql",
        "CREATE TABLE planned_a (id int);\n",
    );
    f.run(&["plan", "stack.toml", "--out", "sp.plan"])
        .assert_success()
        .assert_stdout_contains("+ 0002_a.sql");
    f.env
        .write("migrations/0002_a.sql", "CREATE TABLE edited_a (id int);\n");
    f.env.write(
        "migrations/0003_b.sql",
        "CREATE TABLE unplanned_b (id int);\n",
    );
    let run = f.run(&["apply", "sp.plan"]);
    let tables = f.pg.psql(
        "app",
        "SELECT coalesce(string_agg(tablename, ',' ORDER BY tablename), '') FROM pg_tables WHERE tablename IN ('planned_a', 'edited_a', 'unplanned_b')",
    );
    assert_eq!((tables.as_str(), f.history().as_str()), ("", "1"), "{run}");
    run.assert_code(1);
    insta::assert_snapshot!("saved_plan_migrations_changed", f.env.scrub(run.stderr()));
    assert_eq!(f.manual_snapshots().await, 0, "{run}");
}
