//! Issue 3's "done means", end to end: RDS through moto, migrations through a real
//! PostgreSQL started by the harness (moto's RDS endpoints accept no connections, so the
//! stack's DATABASE_URL parameter points at the harness's server).

use crate::common::{Postgres, Run, TestEnv};

const DB_PASSWORD: &str = "MasterPw-canary-91c2";

fn stack(engine: &str, class: &str) -> String {
    format!(
        r#"
[stack]
name = "shop"
region = "us-east-1"
environments = ["dev"]

[data.vpc.main]
default = true

[data.subnets.all]
vpc = "${{data.vpc.main.id}}"

[rds_subnet_group.main]
name = "shop-${{env}}"
subnet_ids = "${{data.subnets.all.ids}}"

[rds_parameter_group.main]
name = "shop-${{env}}-pg"
family = "postgres16"
parameters = {{ log_min_duration_statement = "500" }}

[rds_instance.main]
identifier = "shop-${{env}}"
engine = "{engine}"
engine_version = "16.3"
instance_class = "{class}"
allocated_storage = 20
db_subnet_group = "${{rds_subnet_group.main.name}}"
parameter_group = "${{rds_parameter_group.main.name}}"
master_username = "shop"
master_password = {{ from_env = "DB_PASSWORD" }}

[ssm_parameter.database_url]
name = "/shop/${{env}}/DATABASE_URL"
type = "SecureString"
value = {{ from_env = "SHOP_DATABASE_URL" }}
depends_on = ["rds_instance.main"]

[migrations]
dir = "../migrations"
database = "rds_instance.main"
url = {{ ssm = "/shop/${{env}}/DATABASE_URL" }}
verify = ["SELECT 1", "SELECT count(*) FROM users"]
"#
    )
}

const M1: &str = "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE);\n";
const M2: &str = "CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint NOT NULL, total_cents bigint NOT NULL DEFAULT 0);\n";
const M3: &str = "ALTER TABLE users ADD COLUMN display_name text;\n";

struct Fixture {
    env: TestEnv,
    pg: Postgres,
    url: String,
}

impl Fixture {
    fn new() -> Self {
        let env = TestEnv::new();
        let pg = Postgres::start();
        let url = pg.create_database("shop");
        env.write("stacks/shop.toml", stack("postgres", "db.t4g.micro"));
        env.write("migrations/0001_users.sql", M1);
        env.write("migrations/0002_orders.sql", M2);
        Fixture { env, pg, url }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.env.run_with(args, |c| {
            c.env("DB_PASSWORD", DB_PASSWORD)
                .env("SHOP_DATABASE_URL", &self.url);
        })
    }

    fn apply(&self) -> Run {
        self.run(&[
            "apply",
            "stacks/shop.toml",
            "--env",
            "dev",
            "--auto-approve",
        ])
    }

    fn plan(&self) -> Run {
        self.run(&[
            "plan",
            "stacks/shop.toml",
            "--env",
            "dev",
            "--detailed-exitcode",
        ])
    }

    fn history(&self) -> String {
        self.pg.psql("shop", "SELECT string_agg(version::text || ':' || coalesce(snapshot_id, '-'), ',' ORDER BY version) FROM stackwright_migrations")
    }

    async fn snapshots(&self) -> Vec<String> {
        // Manual ones only: moto (like AWS) also lists an automated snapshot per instance.
        let out = self
            .env
            .rds()
            .await
            .describe_db_snapshots()
            .snapshot_type("manual")
            .send()
            .await
            .unwrap();
        let mut v: Vec<String> = out
            .db_snapshots()
            .iter()
            .filter_map(|s| s.db_snapshot_identifier().map(str::to_owned))
            .collect();
        v.sort();
        v
    }
}

/// 1. Plan/apply/no-change plan; instance class is in place; an engine change is a
///    replacement that names the final snapshot.
#[tokio::test]
async fn rds_plan_apply_in_place_and_replacement() {
    let f = Fixture::new();
    let plan = f.plan();
    plan.assert_code(2)
        .assert_stdout_contains("<= data.vpc.main read")
        .assert_stdout_contains("# rds_subnet_group.main will be created")
        .assert_stdout_contains("# rds_parameter_group.main will be created")
        .assert_stdout_contains("# rds_instance.main will be created")
        .assert_stdout_contains("Migrations against rds_instance.main:")
        .assert_stdout_contains("+ 0001_users.sql");
    f.apply()
        .assert_success()
        .assert_stdout_contains("no snapshot: the database instance was created by this apply");

    let rds = f.env.rds().await;
    let db = rds
        .describe_db_instances()
        .db_instance_identifier("shop-dev")
        .send()
        .await
        .unwrap();
    let db = &db.db_instances()[0];
    assert_eq!(db.db_instance_class(), Some("db.t4g.micro"));
    assert_eq!(db.engine(), Some("postgres"));
    assert_eq!(
        db.db_subnet_group().and_then(|g| g.db_subnet_group_name()),
        Some("shop-dev")
    );
    let pg = rds
        .describe_db_parameter_groups()
        .db_parameter_group_name("shop-dev-pg")
        .send()
        .await
        .unwrap();
    assert_eq!(
        pg.db_parameter_groups()[0].db_parameter_group_family(),
        Some("postgres16")
    );
    assert_eq!(f.history(), "1:-,2:-");
    f.plan()
        .assert_code(0)
        .assert_stdout_contains("No changes.");

    // Instance class: in place.
    f.env
        .write("stacks/shop.toml", stack("postgres", "db.t4g.small"));
    f.plan()
        .assert_code(2)
        .assert_stdout_contains("# rds_instance.main will be updated in place")
        .assert_stdout_contains("~ instance_class = \"db.t4g.micro\" -> \"db.t4g.small\"")
        .assert_stdout_contains(
            "the instance reboots during this apply (apply_immediately defaults to true)",
        )
        .assert_stdout_contains("Plan: 0 to add, 1 to change, 0 to replace, 0 to destroy.");
    f.apply().assert_success();
    let db = rds
        .describe_db_instances()
        .db_instance_identifier("shop-dev")
        .send()
        .await
        .unwrap();
    assert_eq!(
        db.db_instances()[0].db_instance_class(),
        Some("db.t4g.small")
    );
    f.plan().assert_code(0);

    // Engine: replacement, with the final snapshot it will take.
    f.env
        .write("stacks/shop.toml", stack("mysql", "db.t4g.small"));
    f.plan()
        .assert_code(2)
        .assert_stdout_contains("# rds_instance.main must be replaced (because engine changed)")
        .assert_stdout_contains("final snapshot shop-dev-final-");

    // A replacement carried out (a new identifier): the old instance goes with a final
    // snapshot, read back through the SDK. (The harness's moto refuses a delete that makes
    // no snapshot choice, as AWS does.)
    let renamed = stack("postgres", "db.t4g.small").replace(
        "identifier = \"shop-${env}\"",
        "identifier = \"shop2-${env}\"",
    );
    f.env.write("stacks/shop.toml", &renamed);
    f.apply().assert_success();
    let finals = |id: &'static str| {
        let rds = rds.clone();
        async move {
            rds.describe_db_snapshots()
                .db_instance_identifier(id)
                .snapshot_type("manual")
                .send()
                .await
                .unwrap()
                .db_snapshots()
                .iter()
                .filter_map(|s| s.db_snapshot_identifier().map(str::to_owned))
                .filter(|s| s.starts_with(&format!("{id}-final-")))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        finals("shop-dev").await.len(),
        1,
        "final snapshot of the old instance"
    );
    let ids: Vec<String> = rds
        .describe_db_instances()
        .send()
        .await
        .unwrap()
        .db_instances()
        .iter()
        .filter_map(|d| d.db_instance_identifier().map(str::to_owned))
        .collect();
    assert_eq!(ids, ["shop2-dev"]);
    f.plan().assert_code(0);

    // Destroy through the CLI: everything goes, the instance with its final snapshot.
    f.run(&[
        "destroy",
        "stacks/shop.toml",
        "--env",
        "dev",
        "--auto-approve",
    ])
    .assert_success();
    assert_eq!(
        finals("shop2-dev").await.len(),
        1,
        "final snapshot on destroy"
    );
    assert!(
        rds.describe_db_instances()
            .send()
            .await
            .unwrap()
            .db_instances()
            .is_empty()
    );
}

/// 2. Pending migrations on an existing database: the snapshot exists before the first
///    statement runs, then the migrations, then verify.
#[tokio::test]
async fn snapshot_is_taken_before_migrations() {
    let f = Fixture::new();
    f.apply().assert_success();
    assert!(f.snapshots().await.is_empty());

    f.env.write("migrations/0003_display_name.sql", M3);
    f.plan()
        .assert_code(2)
        .assert_stdout_contains("+ 0003_display_name.sql")
        .assert_stdout_contains(
            "shop-dev-pre-<last version>-<UTC time> is taken before the first statement",
        );
    let run = f.run(&[
        "apply",
        "stacks/shop.toml",
        "--env",
        "dev",
        "--auto-approve",
        "--json",
    ]);
    run.assert_success();
    // The event log proves the order: snapshot available, then SQL, then verify.
    let lines: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|e| {
                e["type"] == "note" && e["message"].as_str().unwrap_or("").contains(needle)
            })
            .unwrap_or_else(|| panic!("no note containing {needle:?} in {run}"))
    };
    let (snap, applied, verified) = (
        pos("is available; restore with"),
        pos("applied 0003"),
        pos("verify ok: SELECT count(*) FROM users"),
    );
    assert!(
        snap < applied && applied < verified,
        "order {snap} < {applied} < {verified}"
    );

    let snaps = f.snapshots().await;
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert!(snaps[0].starts_with("shop-dev-pre-0003-"), "{snaps:?}");
    // And from the database's side: the history row names the snapshot.
    assert_eq!(f.history(), format!("1:-,2:-,3:{}", snaps[0]));
    let state = f.env.read("state/shop/dev.json");
    assert!(
        state.contains(&snaps[0]),
        "the snapshot id is recorded in state"
    );
    f.plan().assert_code(0);
    f.run(&["migrate", "status", "stacks/shop.toml", "--env", "dev"])
        .assert_success()
        .assert_stdout_contains("applied   0003 display_name");

    // Rollback path: restore that snapshot into a new instance.
    f.run(&[
        "db",
        "restore",
        "stacks/shop.toml",
        "--env",
        "dev",
        "--snapshot",
        &snaps[0],
        "--to",
        "shop-dev-restored",
    ])
    .assert_success()
    .assert_stdout_contains("Restored snapshot")
    .assert_stdout_contains("--new-db-instance-identifier shop-dev");
    let rds = f.env.rds().await;
    let restored = rds
        .describe_db_instances()
        .db_instance_identifier("shop-dev-restored")
        .send()
        .await
        .unwrap();
    assert_eq!(
        restored.db_instances()[0].db_instance_class(),
        Some("db.t4g.micro")
    );
}

/// 3a. An edited applied migration is refused before any snapshot or SQL.
#[tokio::test]
async fn edited_migration_is_refused_before_anything_runs() {
    let f = Fixture::new();
    f.apply().assert_success();
    f.env
        .write("migrations/0002_orders.sql", format!("{M2}-- edited\n"));
    f.env.write("migrations/0003_display_name.sql", M3);
    f.plan().assert_failure().assert_stderr_contains("0002");
    f.apply().assert_failure();
    f.run(&["migrate", "up", "stacks/shop.toml", "--env", "dev"])
        .assert_failure();
    assert!(f.snapshots().await.is_empty(), "no snapshot may be taken");
    assert_eq!(f.history(), "1:-,2:-");
    assert_eq!(
        f.pg.psql(
            "shop",
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'display_name'"
        ),
        "0"
    );
}

/// 3b. A failing migration rolls back, later ones do not run, the snapshot and the restore
///     command are printed, exit 1.
#[tokio::test]
async fn failing_migration_rolls_back_and_names_the_snapshot() {
    let f = Fixture::new();
    f.apply().assert_success();
    f.env.write(
        "migrations/0003_broken.sql",
        "CREATE TABLE t3 (id int);\nSELECT no_such_column FROM users;\n",
    );
    f.env
        .write("migrations/0004_later.sql", "CREATE TABLE t4 (id int);\n");
    let run = f.apply();
    run.assert_code(1);
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(all.contains("0003_broken.sql"), "{run}");
    assert!(all.contains("no_such_column"), "{run}");
    assert!(
        all.contains(
            "stackwright db restore stacks/shop.toml --env dev --snapshot shop-dev-pre-0004-"
        ),
        "{run}"
    );
    assert_eq!(f.history(), "1:-,2:-");
    assert_eq!(
        f.pg.psql(
            "shop",
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('t3', 't4')"
        ),
        "0"
    );
    assert_eq!(f.snapshots().await.len(), 1);
}

/// 4. An unsafe migration is blocked with the squawk rule; with an allow comment it is
///    applied and the reason recorded.
#[tokio::test]
async fn unsafe_migration_needs_an_allow_comment() {
    let f = Fixture::new();
    f.apply().assert_success();
    f.env.write(
        "migrations/0003_drop_total.sql",
        "ALTER TABLE orders DROP COLUMN total_cents;\n",
    );
    f.plan()
        .assert_stdout_contains("ban-drop-column")
        .assert_stdout_contains("blocks apply");
    f.apply()
        .assert_failure()
        .assert_stderr_contains("ban-drop-column");
    assert_eq!(f.history(), "1:-,2:-");
    assert!(f.snapshots().await.is_empty());

    f.env.write(
        "migrations/0003_drop_total.sql",
        "-- stackwright:allow ban-drop-column because totals moved to the invoices table in release 41\nALTER TABLE orders DROP COLUMN total_cents;\n",
    );
    f.apply().assert_success();
    let allowed = f.pg.psql(
        "shop",
        "SELECT allowed FROM stackwright_migrations WHERE version = 3",
    );
    assert!(
        allowed.contains("totals moved to the invoices table"),
        "{allowed}"
    );
}

/// 5. Two concurrent `migrate up`: never both run a migration. The test holds the
///    migration advisory lock itself until both runs say they wait for it, so they really
///    overlap; then both succeed (one migrates, the other waits and finds nothing pending),
///    one snapshot is taken, and each version is applied once.
#[tokio::test]
async fn concurrent_migrate_up_never_both_run() {
    use crate::common::process;
    let f = Fixture::new();
    f.apply().assert_success();
    f.env.write("migrations/0003_display_name.sql", M3);
    // The key the product uses: the first 8 bytes of sha256("stackwright_migrations").
    let key = "('x' || left(encode(sha256('stackwright_migrations'::bytea), 'hex'), 16))::bit(64)::bigint";
    let holder = f.pg.client_for("shop").await;
    holder
        .execute(&format!("SELECT pg_advisory_lock({key})"), &[])
        .await
        .unwrap();
    let extra = [
        ("DB_PASSWORD", DB_PASSWORD),
        ("SHOP_DATABASE_URL", f.url.as_str()),
    ];
    let args = ["migrate", "up", "stacks/shop.toml", "--env", "dev"];
    let mut runs = [
        process::spawn(&f.env, &args, &extra),
        process::spawn(&f.env, &args, &extra),
    ];
    for p in &mut runs {
        let waiting = p.wait_for(crate::common::CMD_TIMEOUT, |out, _| {
            out.contains("waiting for another migration run to release the lock")
        });
        assert!(
            waiting,
            "both runs wait for the lock held by the test:\n{}{}",
            p.stdout(),
            p.stderr()
        );
    }
    assert!(
        f.snapshots().await.is_empty(),
        "no snapshot before the lock"
    );
    holder
        .execute(&format!("SELECT pg_advisory_unlock({key})"), &[])
        .await
        .unwrap();
    let [a, b] = runs.map(|p| p.wait(crate::common::CMD_TIMEOUT));
    // Neither fails: the one that got the lock second waited, then had nothing to do.
    a.assert_success();
    b.assert_success();
    let (migrated, idle) = match (
        a.stdout().contains("applied 0003"),
        b.stdout().contains("applied 0003"),
    ) {
        (true, false) => (&a, &b),
        (false, true) => (&b, &a),
        _ => panic!("exactly one run applies 0003:{a}{b}"),
    };
    idle.assert_stdout_contains("no pending migrations");
    assert!(!idle.stdout().contains("snapshot"), "{idle}");
    let snaps = f.snapshots().await;
    assert_eq!(
        snaps.len(),
        1,
        "one snapshot, by the run that migrated: {snaps:?}"
    );
    assert!(snaps[0].starts_with("shop-dev-pre-0003-"), "{snaps:?}");
    migrated.assert_stdout_contains(&snaps[0]);
    assert_eq!(f.history(), format!("1:-,2:-,3:{}", snaps[0]));
    assert_eq!(
        f.pg.psql(
            "shop",
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'display_name'"
        ),
        "1"
    );
}

/// 6. The database URL and the master password appear in no file, plan or output.
#[tokio::test]
async fn database_secrets_reach_no_file_and_no_output() {
    let f = Fixture::new();
    let password = f
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_owned();
    let mut out = String::new();
    for args in [
        vec![
            "plan",
            "stacks/shop.toml",
            "--env",
            "dev",
            "--out",
            "shop.plan",
        ],
        vec!["apply", "shop.plan"],
        vec!["plan", "stacks/shop.toml", "--env", "dev", "--json"],
        vec!["-vv", "plan", "stacks/shop.toml", "--env", "dev"],
        vec!["migrate", "status", "stacks/shop.toml", "--env", "dev"],
        vec!["show", "shop.plan", "--json"],
    ] {
        let run = f.run(&args);
        run.assert_success();
        out.push_str(run.stdout());
        out.push_str(run.stderr());
    }
    for secret in [DB_PASSWORD, f.url.as_str(), password.as_str()] {
        assert!(!out.contains(secret), "{secret} leaked to output");
        for file in f.env.list_files_recursive() {
            let text =
                String::from_utf8_lossy(&std::fs::read(f.env.path(&file)).unwrap()).into_owned();
            assert!(!text.contains(secret), "{secret} leaked into {file}");
        }
    }
    // It did reach AWS, where it belongs.
    let p = f
        .env
        .ssm()
        .await
        .get_parameter()
        .name("/shop/dev/DATABASE_URL")
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    assert_eq!(p.parameter().unwrap().value(), Some(f.url.as_str()));
}

/// Tool mode: the app's own Alembic migrations run through apply, after a snapshot once the
/// database exists, again only when the folder changes; the URL travels in the environment.
#[tokio::test]
async fn alembic_tool_mode_through_apply() {
    use crate::migrations_engine::{ALEMBIC_0001, ALEMBIC_0002, ALEMBIC_ENV, ALEMBIC_INI};
    let f = Fixture::new();
    std::fs::remove_dir_all(f.env.path("migrations")).unwrap();
    f.env.write(
        "stacks/shop.toml",
        stack("postgres", "db.t4g.micro").replace(
            "verify = [\"SELECT 1\", \"SELECT count(*) FROM users\"]",
            "command = [\"alembic\", \"upgrade\", \"head\"]\nverify = [\"SELECT count(*) FROM products\"]",
        ),
    );
    f.env.write("alembic.ini", ALEMBIC_INI);
    f.env.write("migrations/env.py", ALEMBIC_ENV);
    f.env
        .write("migrations/versions/0001_create_products.py", ALEMBIC_0001);

    f.plan()
        .assert_code(2)
        .assert_stdout_contains("run `alembic upgrade head` (never run by Stackwright)");
    let run = f.apply();
    run.assert_success();
    assert!(!run.stdout().contains(&f.url) && !run.stderr().contains(&f.url));
    assert_eq!(
        f.pg.psql("shop", "SELECT version_num FROM alembic_version"),
        "0001"
    );
    f.plan()
        .assert_code(0)
        .assert_stdout_contains("No changes.");

    f.env
        .write("migrations/versions/0002_add_price.py", ALEMBIC_0002);
    f.plan()
        .assert_code(2)
        .assert_stdout_contains("migrations changed: digest");
    f.apply()
        .assert_success()
        .assert_stdout_contains("shop-dev-pre-tool-");
    assert_eq!(
        f.pg.psql("shop", "SELECT version_num FROM alembic_version"),
        "0002"
    );
    assert_eq!(f.snapshots().await.len(), 1);
    f.plan().assert_code(0);
}

/// Issue 6, test 6: migrations SIGKILLed between two files. The plan says where they
/// stopped; the next plain apply resumes under the snapshot already taken (no second one)
/// and the history holds each file once.
#[tokio::test]
async fn migrations_killed_between_two_files_resume_without_a_second_snapshot() {
    use crate::common::process;
    let f = Fixture::new();
    f.apply().assert_success();
    f.env.write("migrations/0003_display_name.sql", M3);
    // Long enough to be killed in: 0003 has committed, 0004 is running.
    f.env.write(
        "migrations/0004_slow.sql",
        "SELECT pg_sleep(3);\nCREATE TABLE slow_done (id int);\n",
    );
    let mut p = process::spawn(
        &f.env,
        &[
            "apply",
            "stacks/shop.toml",
            "--env",
            "dev",
            "--auto-approve",
        ],
        &[("DB_PASSWORD", DB_PASSWORD), ("SHOP_DATABASE_URL", &f.url)],
    );
    let t0 = std::time::Instant::now();
    while f.pg.psql(
        "shop",
        "SELECT count(*) FROM stackwright_migrations WHERE version = 3",
    ) != "1"
    {
        assert!(
            p.running(),
            "apply ended before 0003 committed: {}",
            p.stderr()
        );
        assert!(
            t0.elapsed() < crate::common::CMD_TIMEOUT,
            "0003 never committed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    p.kill();
    // The killed session's pg_sleep ends on its own; its transaction rolls back.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let snaps = f.snapshots().await;
    assert_eq!(snaps.len(), 1, "{snaps:?}");

    f.plan()
        .assert_code(2)
        .assert_stdout_contains("interrupted after 0003")
        .assert_stdout_contains(&snaps[0]);
    f.apply().assert_success();
    assert_eq!(f.snapshots().await, snaps, "no second snapshot");
    assert_eq!(
        f.history(),
        format!("1:-,2:-,3:{s},4:{s}", s = snaps[0]),
        "each file once, both under the one snapshot"
    );
    f.plan().assert_code(0);
}
