//! Issue 6's crash-safety tests against the real binary, real moto and a real PostgreSQL:
//! SIGKILL at many points of an apply and of a destroy, each followed by a plain re-run with
//! no hand repair; two applies and one lock; SIGINT; import. Results are read back through
//! the SDK and psql.

use std::time::{Duration, Instant};

use crate::common::process::{self, Proc};
use crate::common::{CMD_TIMEOUT, Postgres, TestEnv};

const BUCKETS: usize = 15;
const PARAMS: usize = 25;
/// The RDS subnet group, parameter group and instance.
const RDS: usize = 3;
const MIGRATIONS: [(&str, &str); 3] = [
    (
        "0001_users.sql",
        "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE);\n",
    ),
    (
        "0002_orders.sql",
        "CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint NOT NULL);\n",
    ),
    (
        "0003_name.sql",
        "ALTER TABLE users ADD COLUMN display_name text;\n",
    ),
];

/// 44 resources and the migrations: buckets with versioning and tags (several calls each),
/// plain parameters, some referencing a bucket, a SecureString, an RDS subnet group,
/// parameter group and instance, the DATABASE_URL parameter and three migration files.
fn stack() -> String {
    let mut s = crate::common::rds_stack("crash", "CRASH_DB_PASSWORD");
    s.push_str(
        r#"[ssm_parameter.database_url]
name = "/crash/DATABASE_URL"
type = "SecureString"
value = { from_env = "CRASH_DATABASE_URL" }
depends_on = ["rds_instance.db"]

[migrations]
dir = "migrations"
database = "rds_instance.db"
url = { ssm = "/crash/DATABASE_URL" }

"#,
    );
    for i in 0..BUCKETS {
        s.push_str(&format!(
            "[s3_bucket.b{i}]\nname = \"crash-b{i}\"\nversioning = true\ntags = {{ n = \"{i}\" }}\n\n"
        ));
    }
    for i in 0..PARAMS {
        if i == 0 {
            s.push_str("[ssm_parameter.p0]\nname = \"/crash/p0\"\ntype = \"SecureString\"\nvalue = { from_env = \"CRASH_SECRET\" }\n\n");
        } else {
            s.push_str(&format!(
                "[ssm_parameter.p{i}]\nname = \"/crash/p{i}\"\nvalue = \"${{s3_bucket.b{}.arn}}\"\n\n",
                i % BUCKETS
            ));
        }
    }
    s
}

/// One kill-loop run: a fresh moto account and a database of its own on the shared server.
struct Crash {
    env: TestEnv,
    /// The database's name on the shared server, for reading the migration history.
    db: String,
    vars: Vec<(&'static str, String)>,
}

impl Crash {
    fn new(pg: &Postgres) -> Crash {
        let env = TestEnv::new();
        env.write("crash.toml", stack());
        for (file, sql) in MIGRATIONS {
            env.write(format!("migrations/{file}"), sql);
        }
        let db = format!("crash_{}", uuid::Uuid::new_v4().simple());
        let url = pg.create_database(&db);
        Crash {
            env,
            db,
            vars: vec![
                ("CRASH_SECRET", "crash-secret-value".into()),
                ("CRASH_DB_PASSWORD", "Crash-db-pw-7731".into()),
                ("CRASH_DATABASE_URL", url),
            ],
        }
    }

    fn vars(&self) -> Vec<(&str, &str)> {
        self.vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    fn run(&self, args: &[&str]) -> crate::common::Run {
        self.env.run_with(args, |c| {
            for (k, v) in &self.vars {
                c.env(k, v);
            }
        })
    }

    fn run_ok(&self, args: &[&str]) {
        self.run(args).assert_success();
    }

    fn spawn(&self, args: &[&str]) -> Proc {
        process::spawn(&self.env, args, &self.vars())
    }

    fn spawn_apply(&self, extra: &[&str]) -> Proc {
        let mut args = apply_args();
        args.extend_from_slice(extra);
        self.spawn(&args)
    }

    /// Checks convergence after a kill: plain apply, then no changes, then exactly the
    /// stack's resources in AWS and each migration applied once. Returns (duplicates,
    /// orphans).
    async fn converge(&self, pg: &Postgres) -> (usize, usize) {
        self.run_ok(&apply_args());
        self.run(&["plan", "crash.toml", "--detailed-exitcode"])
            .assert_code(0);
        let live = Live::read(&self.env).await;
        let expected = Live::expected();
        let mut unique = live.names.clone();
        unique.sort();
        unique.dedup();
        let duplicates = live.names.len() - unique.len();
        let orphans = unique.iter().filter(|n| !expected.contains(n)).count();
        assert_eq!(
            unique, expected,
            "AWS must hold exactly the stack's resources"
        );
        assert_eq!(self.history(pg), "1,2,3", "each migration applied once");
        // The state's history still verifies: a killed run wrote no record, or one the
        // audit shows as interrupted; the recovery is a record of its own.
        self.run(&["audit", "crash.toml"]).assert_code(0);
        (duplicates, orphans)
    }

    /// The versions in the migration history table, in order (duplicates would show).
    fn history(&self, pg: &Postgres) -> String {
        pg.psql(
            &self.db,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM stackwright_migrations",
        )
        .trim()
        .to_owned()
    }
}

fn apply_args() -> Vec<&'static str> {
    // One action at a time: the run is long enough to kill at many points.
    vec![
        "apply",
        "crash.toml",
        "--auto-approve",
        "--concurrency",
        "1",
    ]
}

fn destroy_args() -> Vec<&'static str> {
    vec![
        "destroy",
        "crash.toml",
        "--auto-approve",
        "--concurrency",
        "1",
    ]
}

/// What exists in AWS, read through the SDK, every object named once per copy (so a
/// duplicate shows twice): buckets, parameters, and the RDS groups and instances.
struct Live {
    names: Vec<String>,
}

impl Live {
    async fn read(env: &TestEnv) -> Live {
        let mut names: Vec<String> = env
            .s3()
            .await
            .list_buckets()
            .send()
            .await
            .unwrap()
            .buckets()
            .iter()
            .filter_map(|b| b.name().map(|n| format!("bucket {n}")))
            .collect();
        let ssm = env.ssm().await;
        let mut token = None;
        loop {
            let out = ssm
                .describe_parameters()
                .set_next_token(token)
                .send()
                .await
                .unwrap();
            for p in out.parameters() {
                names.push(format!("parameter {}", p.name().unwrap()));
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        let rds = env.rds().await;
        let groups = rds.describe_db_subnet_groups().send().await.unwrap();
        names.extend(
            groups
                .db_subnet_groups()
                .iter()
                .filter_map(|g| g.db_subnet_group_name())
                .map(|n| format!("subnet group {n}")),
        );
        let pgs = rds.describe_db_parameter_groups().send().await.unwrap();
        names.extend(
            pgs.db_parameter_groups()
                .iter()
                .filter_map(|g| g.db_parameter_group_name())
                // moto lists the engines' default groups too.
                .filter(|n| !n.starts_with("default."))
                .map(|n| format!("parameter group {n}")),
        );
        let dbs = rds.describe_db_instances().send().await.unwrap();
        names.extend(
            dbs.db_instances()
                .iter()
                .filter_map(|d| d.db_instance_identifier())
                .map(|n| format!("instance {n}")),
        );
        Live { names }
    }

    fn expected() -> Vec<String> {
        let mut e: Vec<String> = (0..BUCKETS)
            .map(|i| format!("bucket crash-b{i}"))
            .chain((0..PARAMS).map(|i| format!("parameter /crash/p{i}")))
            .chain([
                "parameter /crash/DATABASE_URL".to_owned(),
                "subnet group crash-db".to_owned(),
                "parameter group crash-db-pg".to_owned(),
                "instance crash-db".to_owned(),
            ])
            .collect();
        e.sort();
        e
    }

    fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Resources in the stack (the migrations step is not one).
const RESOURCES: usize = BUCKETS + PARAMS + 1 + RDS;

#[tokio::test]
async fn kill_loop_apply_converges() {
    let pg = Postgres::start();
    // An uninterrupted run gives the length to spread the kills over.
    let probe = Crash::new(&pg);
    let t0 = Instant::now();
    probe.run_ok(&apply_args());
    let length = t0.elapsed();
    drop(probe);

    let points = 10;
    let (mut converged, mut duplicates, mut orphans, mut mid_run) = (0, 0, 0, 0);
    for k in 1..=points {
        let run = Crash::new(&pg);
        let mut p = run.spawn_apply(&[]);
        std::thread::sleep(length.mul_f64(k as f64 / (points + 1) as f64));
        if p.running() {
            mid_run += 1;
        }
        p.kill();
        let (d, o) = run.converge(&pg).await;
        converged += 1;
        duplicates += d;
        orphans += o;
    }
    eprintln!(
        "kill loop (apply, {RESOURCES} resources + {} migrations, uninterrupted {:.1}s): kills tried {points}, killed mid-run {mid_run}, converged {converged}, duplicates {duplicates}, orphans {orphans}",
        MIGRATIONS.len(),
        length.as_secs_f64()
    );
    assert_eq!((converged, duplicates, orphans), (points, 0, 0));
    assert!(mid_run >= points / 2, "most kills must land mid-run");
}

/// Kills timed inside single requests: moto behind the fault proxy with 40 ms added to every
/// request, so that most kill points fall while a call is in flight (counted by the proxy:
/// the request reached the proxy and had no reply yet).
#[tokio::test]
async fn kill_loop_mid_request_converges() {
    const DELAY: Duration = Duration::from_millis(40);
    let pg = Postgres::start();
    let probe = Crash::new(&pg);
    probe.env.proxy().set_delay(DELAY);
    let t0 = Instant::now();
    probe.run_ok(&apply_args());
    let length = t0.elapsed();
    drop(probe);

    let points = 5;
    let (mut converged, mut duplicates, mut orphans, mut in_request) = (0, 0, 0, 0);
    for k in 1..=points {
        let run = Crash::new(&pg);
        let proxy = run.env.proxy();
        proxy.set_delay(DELAY);
        let mut p = run.spawn_apply(&[]);
        std::thread::sleep(length.mul_f64(k as f64 / (points + 1) as f64));
        if proxy.in_flight() > 0 {
            in_request += 1;
        }
        p.kill();
        proxy.set_delay(Duration::ZERO);
        let (d, o) = run.converge(&pg).await;
        converged += 1;
        duplicates += d;
        orphans += o;
    }
    eprintln!(
        "kill loop (apply, mid-request, {} ms a request, uninterrupted {:.1}s): kills tried {points}, inside a request {in_request}, converged {converged}, duplicates {duplicates}, orphans {orphans}",
        DELAY.as_millis(),
        length.as_secs_f64()
    );
    assert_eq!((converged, duplicates, orphans), (points, 0, 0));
    assert!(
        in_request >= points / 2,
        "most kills must land inside a request"
    );
}

#[tokio::test]
async fn kill_loop_destroy_converges() {
    let pg = Postgres::start();
    let probe = Crash::new(&pg);
    probe.run_ok(&apply_args());
    let t0 = Instant::now();
    probe.run_ok(&destroy_args());
    let length = t0.elapsed();
    drop(probe);
    let points = 5;
    for k in 1..=points {
        let run = Crash::new(&pg);
        run.run_ok(&apply_args());
        let mut p = run.spawn(&destroy_args());
        std::thread::sleep(length.mul_f64(k as f64 / (points + 1) as f64));
        p.kill();
        run.run_ok(&["destroy", "crash.toml", "--auto-approve"]);
        let live = Live::read(&run.env).await;
        assert!(live.is_empty(), "left behind: {:?}", live.names);
        let state: serde_json::Value =
            serde_json::from_str(&run.env.read("state/crash.json")).unwrap();
        assert_eq!(state["resources"], serde_json::json!({}), "{state}");
    }
    eprintln!(
        "kill loop (destroy, {RESOURCES} resources): kills tried {points}, converged {points}, left behind 0"
    );
}

#[tokio::test]
async fn two_applies_one_lock_and_a_dead_holder_never_blocks() {
    let pg = Postgres::start();
    let run = Crash::new(&pg);
    let mut holder = run.spawn_apply(&[]);
    assert!(
        holder.wait_for(CMD_TIMEOUT, |out, _| out.contains("Creating...")),
        "the holder must be applying: {}",
        holder.stdout()
    );
    run.run(&apply_args())
        .assert_code(1)
        .assert_stderr_contains(&format!("locked by apply (pid {}", holder.pid()));
    // A waiter proceeds once the holder is gone, even when it dies without cleaning up.
    let mut waiter = run.spawn_apply(&["--lock-timeout", "60s"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        waiter.running(),
        "the waiter must wait: {}",
        waiter.stderr()
    );
    holder.kill();
    waiter.wait(CMD_TIMEOUT).assert_success();
    run.run(&["plan", "crash.toml", "--detailed-exitcode"])
        .assert_code(0);
}

#[tokio::test]
async fn sigint_finishes_running_calls_and_exits_130() {
    let pg = Postgres::start();
    let run = Crash::new(&pg);
    let mut p = run.spawn_apply(&[]);
    assert!(p.wait_for(CMD_TIMEOUT, |out, _| out.contains("Creation complete")));
    p.interrupt();
    let out = p.wait(CMD_TIMEOUT);
    out.assert_code(130)
        .assert_stderr_contains("Apply interrupted.")
        .assert_stderr_contains("Interrupt received (SIGINT)");
    // Everything that completed is in state; the lock is free at once.
    let state: serde_json::Value = serde_json::from_str(&run.env.read("state/crash.json")).unwrap();
    let recorded = state["resources"].as_object().unwrap().len();
    assert!(recorded > 0 && recorded < RESOURCES, "{recorded}");
    assert!(!run.env.exists("state/crash.json.lock"), "lock released");
    assert_eq!(run.converge(&pg).await, (0, 0));
}

#[tokio::test]
async fn import_command_and_table_adopt_existing_resources() {
    let env = TestEnv::new();
    let s3 = env.s3().await;
    for b in ["legacy-one", "legacy-two"] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    env.ssm()
        .await
        .put_parameter()
        .name("/legacy/p")
        .value("v1")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let body = "[stack]\nname = \"imp\"\nregion = \"us-east-1\"\n\n[s3_bucket.one]\nname = \"legacy-one\"\ntags = { team = \"a\" }\n\n[s3_bucket.two]\nname = \"legacy-two\"\nblock_public_access = false\n\n[ssm_parameter.p]\nname = \"/legacy/p\"\nvalue = \"v1\"\n";
    env.write("imp.toml", body);
    // Not ours, and no intent explains it: refused, naming the import command.
    env.fail(["plan", "imp.toml"])
        .assert_stderr_contains("stackwright import imp.toml s3_bucket.one legacy-one");
    env.ok(["import", "imp.toml", "s3_bucket.one", "legacy-one"]);
    env.ok(["import", "imp.toml", "ssm_parameter.p", "/legacy/p"]);
    // Reviewed through plan: the [[import]] table.
    env.write(
        "imp.toml",
        format!("{body}\n[[import]]\nto = \"s3_bucket.two\"\nid = \"legacy-two\"\n"),
    );
    let plan = env.run(["plan", "imp.toml", "--detailed-exitcode"]);
    plan.assert_code(2)
        .assert_stdout_contains("imported: `legacy-two` exists in AWS")
        .assert_stdout_contains("= {} -> { team = \"a\" }")
        .assert_stdout_contains("Plan: 0 to add, 1 to change, 0 to replace, 0 to destroy.")
        .assert_stdout_contains("State: 1 to adopt");
    env.ok(["apply", "imp.toml", "--auto-approve"]);
    env.run(["plan", "imp.toml", "--detailed-exitcode"])
        .assert_code(0);
    let tags = s3
        .get_bucket_tagging()
        .bucket("legacy-one")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set()[0].key(), "team");
    // An id that does not exist is refused at plan time, with the address.
    env.write(
        "bad.toml",
        "[stack]\nname = \"bad\"\n[s3_bucket.x]\nname = \"nope\"\n[[import]]\nto = \"s3_bucket.x\"\nid = \"nope\"\n",
    );
    env.fail(["plan", "bad.toml"])
        .assert_stderr_contains("s3_bucket.x: cannot import `nope`");
}
