//! The migrations engine (src/migrations) against a real PostgreSQL: the demo schema in
//! `migrations/`, history and refusals, failures and their positions, lint blocking and
//! allow directives, the lock under concurrency, and command mode (a shell script with psql,
//! and a real Alembic project).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stackwright::events::{Activity, Event, Recorder};
use stackwright::migrations::{
    self, MigrationError, MigrationFile, MigrationSet, Mode, RunOptions, RunReport,
};
use stackwright::secret::SecretString;
use tempfile::TempDir;

use crate::common::{Postgres, repo_root, venv_bin};

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

fn demo_dir() -> PathBuf {
    repo_root().join("migrations")
}

/// A temp dir holding `migrations/` (a copy of `from`, or empty).
fn workspace(from: Option<&Path>) -> (TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("stackwright-mig-")
        .tempdir()
        .unwrap();
    let dir = tmp.path().join("migrations");
    fs::create_dir(&dir).unwrap();
    if let Some(from) = from {
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    (tmp, dir)
}

fn write(dir: &Path, name: &str, sql: &str) {
    fs::write(dir.join(name), sql).unwrap();
}

fn url(pg: &Postgres) -> SecretString {
    SecretString::new(pg.url())
}

fn opts(events: &Recorder) -> RunOptions<'_> {
    RunOptions {
        before_first: None,
        snapshot_id: Some("snap-before-migrate".into()),
        applied_by: "tester@ci".into(),
        allow_unsafe: false,
        events,
        address: "migrations".into(),
    }
}

fn events_json(events: &Recorder) -> Vec<String> {
    events
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect()
}

fn notes(events: &Recorder) -> Vec<String> {
    events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Note { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

async fn run(
    set: &MigrationSet,
    pg: &Postgres,
    files: &[MigrationFile],
) -> (Result<RunReport, MigrationError>, Recorder) {
    let events = Recorder::default();
    let result = migrations::run_sql(set, &url(pg), files, &opts(&events)).await;
    (result, events)
}

#[derive(Debug, PartialEq)]
struct HistoryRow {
    version: i64,
    name: String,
    checksum: String,
    success: bool,
    allowed: Option<String>,
    snapshot_id: Option<String>,
    applied_by: String,
}

async fn history(pg: &Postgres) -> Vec<HistoryRow> {
    let client = pg.client().await;
    client
        .query(
            "SELECT version, name, checksum, success, allowed, snapshot_id, applied_by \
             FROM stackwright_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| HistoryRow {
            version: r.get(0),
            name: r.get(1),
            checksum: r.get(2),
            success: r.get(3),
            allowed: r.get(4),
            snapshot_id: r.get(5),
            applied_by: r.get(6),
        })
        .collect()
}

async fn table_exists(pg: &Postgres, table: &str) -> bool {
    let client = pg.client().await;
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .unwrap()
        .get(0)
}

fn versions(report: &RunReport) -> Vec<i64> {
    report.applied.iter().map(|r| r.version).collect()
}

const DEMO_VERIFY: &[&str] = &[
    "SELECT count(*) = 0 FROM users WHERE display_name IS NULL",
    "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_user_id_idx'::regclass",
    "SELECT attnotnull FROM pg_attribute \
     WHERE attrelid = 'users'::regclass AND attname = 'display_name'",
];

// ---------------------------------------------------------------------------
// the demo schema
// ---------------------------------------------------------------------------

#[test]
fn demo_migrations_pass_lint() {
    let files = migrations::load_dir(&demo_dir()).unwrap();
    assert_eq!(
        files.iter().map(|f| f.version).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert!(
        files[2].no_transaction,
        "0003 builds its index concurrently"
    );
    for file in &files {
        for finding in migrations::lint(file) {
            assert!(
                finding.allowed.is_some(),
                "{}:{}:{}: {} {} (allowed: {:?})",
                finding.file,
                finding.line,
                finding.column,
                finding.rule,
                finding.message,
                finding.allowed
            );
        }
    }
    let allowed: Vec<_> = files.iter().flat_map(|f| f.allows.clone()).collect();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0].rule, "adding-not-nullable-field");
}

#[tokio::test]
async fn demo_applies_verifies_and_records_history_then_rerun_is_a_no_op() {
    let pg = Postgres::start();
    let files = migrations::load_dir(&demo_dir()).unwrap();

    let status = migrations::status(&url(&pg), &files).await.unwrap();
    assert_eq!(
        status.pending.len(),
        6,
        "no history table: everything pending"
    );
    assert!(status.applied.is_empty());
    let findings: Vec<_> = files.iter().flat_map(migrations::lint).collect();
    migrations::check(&status, &findings, false).unwrap();

    let mut set = MigrationSet::new(demo_dir());
    set.verify = DEMO_VERIFY.iter().map(|s| s.to_string()).collect();
    let (result, events) = run(&set, &pg, &files).await;
    let report = result.unwrap();
    assert_eq!(versions(&report), [1, 2, 3, 4, 5, 6]);
    assert_eq!(report.verified.len(), 3);
    assert!(report.verified[0].ends_with("→ t"), "{:?}", report.verified);

    let rows = history(&pg).await;
    assert_eq!(rows.len(), 6);
    for (row, file) in rows.iter().zip(&files) {
        assert_eq!(row.version, file.version);
        assert_eq!(row.name, file.name);
        assert_eq!(row.checksum, file.checksum);
        assert_eq!(row.checksum.len(), 64);
        assert!(row.success);
        assert_eq!(row.snapshot_id.as_deref(), Some("snap-before-migrate"));
        assert_eq!(row.applied_by, "tester@ci");
    }
    let allowed = rows[5].allowed.as_deref().unwrap();
    assert!(
        allowed.starts_with("adding-not-nullable-field: users is small"),
        "{allowed}"
    );
    assert!(rows[..5].iter().all(|r| r.allowed.is_none()));

    let started: Vec<String> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::ActionStarted { action, .. } => Some(action.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(started[0], "migrate 0001_create_users.sql");
    assert_eq!(started.len(), 6);

    // The schema works as designed.
    let client = pg.client().await;
    client
        .batch_execute(
            "INSERT INTO users (email, password_hash, display_name) VALUES ('ada@example.com', 'x', 'Ada');
             INSERT INTO orders (user_id, total_cents) SELECT id, 1250 FROM users;",
        )
        .await
        .unwrap();
    let dup = client
        .batch_execute("INSERT INTO users (email, password_hash, display_name) VALUES ('ADA@example.com', 'y', 'A')")
        .await
        .unwrap_err();
    assert_eq!(
        dup.code().unwrap().code(),
        "23505",
        "email unique regardless of case"
    );

    // Second run: nothing pending, nothing applied, verify still runs.
    let status = migrations::status(&url(&pg), &files).await.unwrap();
    assert!(status.pending.is_empty());
    assert_eq!(status.applied.len(), 6);
    let (result, events) = run(&set, &pg, &files).await;
    let report = result.unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(report.verified.len(), 3);
    assert!(
        notes(&events).iter().any(|n| n.contains("up to date")),
        "{:?}",
        notes(&events)
    );
    assert_eq!(history(&pg).await.len(), 6);
}

#[tokio::test]
async fn demo_backfill_and_not_null_handle_existing_rows() {
    let pg = Postgres::start();
    let files = migrations::load_dir(&demo_dir()).unwrap();
    let set = MigrationSet::new(demo_dir());
    let (result, _) = run(&set, &pg, &files[..4]).await;
    assert_eq!(versions(&result.unwrap()), [1, 2, 3, 4]);

    let client = pg.client().await;
    client
        .batch_execute(
            "INSERT INTO users (email, password_hash) VALUES
               ('grace@example.com', 'x'), ('linus@example.org', 'y');
             INSERT INTO users (email, password_hash, display_name) VALUES
               ('ken@example.com', 'z', 'Ken T.');",
        )
        .await
        .unwrap();

    let (result, _) = run(&set, &pg, &files).await;
    assert_eq!(versions(&result.unwrap()), [5, 6]);
    let names: Vec<String> = client
        .query("SELECT display_name FROM users ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["grace", "linus", "Ken T."]);
    let err = client
        .batch_execute("INSERT INTO users (email, password_hash) VALUES ('n@x.io', 'p')")
        .await
        .unwrap_err();
    assert_eq!(
        err.code().unwrap().code(),
        "23502",
        "display_name is NOT NULL now"
    );
}

// ---------------------------------------------------------------------------
// refusals: modified, missing, out of order, dirty
// ---------------------------------------------------------------------------

#[tokio::test]
async fn edited_applied_file_is_refused_before_anything_runs() {
    let pg = Postgres::start();
    let (_tmp, dir) = workspace(Some(&demo_dir()));
    let set = MigrationSet::new(&dir);
    let (result, _) = run(&set, &pg, &migrations::load_dir(&dir).unwrap()).await;
    result.unwrap();

    let path = dir.join("0002_create_orders.sql");
    let mut text = fs::read_to_string(&path).unwrap();
    text.push_str("-- an innocent-looking edit\n");
    fs::write(&path, text).unwrap();
    write(
        &dir,
        "0007_create_carts.sql",
        "CREATE TABLE carts (id bigint PRIMARY KEY);\n",
    );
    let files = migrations::load_dir(&dir).unwrap();

    let status = migrations::status(&url(&pg), &files).await.unwrap();
    assert_eq!(status.modified.len(), 1);
    assert_eq!(status.pending.len(), 1);
    let err = migrations::check(&status, &[], false).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, MigrationError::Modified { .. }), "{text}");
    let old = &status.modified[0].0.checksum;
    let new = &status.modified[0].1.checksum;
    assert!(
        text.contains(&format!("migration 2 was applied with checksum {old} but"))
            && text.contains(&format!("now has {new}"))
            && text.contains("restore the file, or write a new migration"),
        "{text}"
    );

    // The runner repeats the check under the lock: nothing runs.
    let (result, events) = run(&set, &pg, &files).await;
    assert!(matches!(result, Err(MigrationError::Modified { .. })));
    assert!(!table_exists(&pg, "carts").await);
    assert_eq!(history(&pg).await.len(), 6);
    assert!(
        !events_json(&events)
            .iter()
            .any(|e| e.contains("action_started")),
        "nothing may start"
    );
}

#[tokio::test]
async fn missing_applied_file_is_refused() {
    let pg = Postgres::start();
    let (_tmp, dir) = workspace(Some(&demo_dir()));
    let set = MigrationSet::new(&dir);
    run(&set, &pg, &migrations::load_dir(&dir).unwrap())
        .await
        .0
        .unwrap();
    fs::remove_file(dir.join("0005_backfill_display_name.sql")).unwrap();
    let files = migrations::load_dir(&dir).unwrap();
    let status = migrations::status(&url(&pg), &files).await.unwrap();
    assert_eq!(status.missing.len(), 1);
    assert_eq!(status.missing[0].version, 5);
    let err = migrations::check(&status, &[], false).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, MigrationError::Missing { .. })
            && text.contains("migration 5 (backfill_display_name) was applied on"),
        "{text}"
    );
    assert!(matches!(
        run(&set, &pg, &files).await.0,
        Err(MigrationError::Missing { .. })
    ));
}

#[tokio::test]
async fn new_file_numbered_below_the_latest_applied_is_refused() {
    let pg = Postgres::start();
    let (_tmp, dir) = workspace(None);
    write(
        &dir,
        "0001_a.sql",
        "CREATE TABLE a (id bigint PRIMARY KEY);\n",
    );
    write(
        &dir,
        "0003_c.sql",
        "CREATE TABLE c (id bigint PRIMARY KEY);\n",
    );
    let set = MigrationSet::new(&dir);
    run(&set, &pg, &migrations::load_dir(&dir).unwrap())
        .await
        .0
        .unwrap();

    write(
        &dir,
        "0002_b.sql",
        "CREATE TABLE b (id bigint PRIMARY KEY);\n",
    );
    write(
        &dir,
        "0004_d.sql",
        "CREATE TABLE d (id bigint PRIMARY KEY);\n",
    );
    let files = migrations::load_dir(&dir).unwrap();
    let status = migrations::status(&url(&pg), &files).await.unwrap();
    assert_eq!(
        status
            .out_of_order
            .iter()
            .map(|f| f.version)
            .collect::<Vec<_>>(),
        [2]
    );
    assert_eq!(
        status.pending.iter().map(|f| f.version).collect::<Vec<_>>(),
        [4]
    );
    let err = migrations::check(&status, &[], false).unwrap_err();
    assert!(
        err.to_string()
            .contains("0002_b.sql (version 2) has not been applied but is numbered below the latest applied migration 3"),
        "{err}"
    );
    let (result, _) = run(&set, &pg, &files).await;
    assert!(matches!(
        result,
        Err(MigrationError::OutOfOrder { version: 2, .. })
    ));
    assert!(!table_exists(&pg, "b").await);
    assert!(
        !table_exists(&pg, "d").await,
        "nothing runs after a refusal"
    );
}

// ---------------------------------------------------------------------------
// failures
// ---------------------------------------------------------------------------

#[tokio::test]
async fn failing_migration_rolls_back_and_stops_with_file_and_position() {
    let pg = Postgres::start();
    let (_tmp, dir) = workspace(None);
    write(
        &dir,
        "0001_ok.sql",
        "CREATE TABLE ok (id bigint PRIMARY KEY);\n",
    );
    // The error is on line 5, column 29 (`nme`); the accented comment checks that the
    // server's character position is converted, not taken as a byte offset.
    write(
        &dir,
        "0002_broken.sql",
        "-- Crée la table des étiquettes (ça échoue exprès)\n\
         CREATE TABLE labels (id bigint PRIMARY KEY, name text);\n\
         INSERT INTO labels VALUES (1, 'été');\n\
         \n\
         SELECT id FROM labels WHERE nme = 'x';\n",
    );
    write(
        &dir,
        "0003_after.sql",
        "CREATE TABLE after_broken (id bigint PRIMARY KEY);\n",
    );
    let files = migrations::load_dir(&dir).unwrap();
    let set = MigrationSet::new(&dir);
    let (result, events) = run(&set, &pg, &files).await;
    let err = result.unwrap_err();
    let failed = err
        .failed()
        .unwrap_or_else(|| panic!("expected Failed, got {err}"));
    assert_eq!(failed.file, dir.join("0002_broken.sql"));
    assert_eq!(failed.version, 2);
    assert_eq!((failed.line, failed.column), (Some(5), Some(29)));
    assert_eq!(failed.code.as_deref(), Some("42703"));
    assert!(failed.in_transaction);
    assert_eq!(failed.applied_before, [1]);
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "migration {}:5:29 failed: 42703 column \"nme\" does not exist",
            dir.join("0002_broken.sql").display()
        )),
        "{text}"
    );
    assert!(text.contains("rolled back"), "{text}");
    assert!(
        failed.hint.is_some(),
        "postgres suggests `name`: {failed:?}"
    );

    assert!(table_exists(&pg, "ok").await);
    assert!(!table_exists(&pg, "labels").await, "rolled back");
    assert!(
        !table_exists(&pg, "after_broken").await,
        "later files do not run"
    );
    let rows = history(&pg).await;
    assert_eq!(rows.iter().map(|r| r.version).collect::<Vec<_>>(), [1]);
    let finished_with_error = events.0.lock().unwrap().iter().any(|e| {
        matches!(e, Event::ActionFinished { action: Activity::Migrate(file), error: Some(msg), .. }
            if file == "0002_broken.sql" && msg.contains("42703"))
    });
    assert!(finished_with_error);

    // Fixing the file lets the run continue where it stopped.
    let fixed = fs::read_to_string(dir.join("0002_broken.sql"))
        .unwrap()
        .replace("nme", "name");
    write(&dir, "0002_broken.sql", &fixed);
    let (result, _) = run(&set, &pg, &migrations::load_dir(&dir).unwrap()).await;
    assert_eq!(versions(&result.unwrap()), [2, 3]);
}

#[tokio::test]
async fn runtime_error_without_a_server_position_points_at_the_statement() {
    let pg = Postgres::start();
    let (_tmp, dir) = workspace(None);
    write(
        &dir,
        "0001_t.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY, v text);\nINSERT INTO t VALUES (1, NULL);\n",
    );
    write(
        &dir,
        "0002_not_null.sql",
        "-- stackwright:allow adding-not-nullable-field because t is tiny\n\
         UPDATE t SET v = 'x' WHERE id = 2;\n    ALTER TABLE t ALTER COLUMN v SET NOT NULL;\n",
    );
    let set = MigrationSet::new(&dir);
    let (result, _) = run(&set, &pg, &migrations::load_dir(&dir).unwrap()).await;
    let err = result.unwrap_err();
    let failed = err.failed().expect("Failed");
    assert_eq!(failed.code.as_deref(), Some("23502"));
    assert_eq!((failed.line, failed.column), (Some(3), Some(5)));
}

#[tokio::test]
async fn no_transaction_file_runs_statement_by_statement_and_failure_leaves_it_dirty() {
    let pg = Postgres::start();
    let (_tmp, dir) = workspace(None);
    write(
        &dir,
        "0001_t.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY, a text, b text);\n",
    );
    // Two concurrent index builds in one file: each must be sent on its own.
    write(
        &dir,
        "0002_indexes.sql",
        "-- stackwright:no-transaction\n\
         CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a_idx ON t (a);\n\
         CREATE INDEX CONCURRENTLY IF NOT EXISTS t_b_idx ON t (b);\n",
    );
    let set = MigrationSet::new(&dir);
    let (result, _) = run(&set, &pg, &migrations::load_dir(&dir).unwrap()).await;
    assert_eq!(versions(&result.unwrap()), [1, 2]);
    assert!(table_exists(&pg, "t_a_idx").await && table_exists(&pg, "t_b_idx").await);

    write(
        &dir,
        "0003_half.sql",
        "-- stackwright:no-transaction\n\
         CREATE INDEX CONCURRENTLY IF NOT EXISTS t_ab_idx ON t (a, b);\n\
         CREATE INDEX CONCURRENTLY IF NOT EXISTS nope_idx ON nope (x);\n",
    );
    write(
        &dir,
        "0004_later.sql",
        "CREATE TABLE later (id bigint PRIMARY KEY);\n",
    );
    let files = migrations::load_dir(&dir).unwrap();
    let (result, _) = run(&set, &pg, &files).await;
    let err = result.unwrap_err();
    let failed = err.failed().expect("Failed");
    assert!(!failed.in_transaction);
    assert_eq!(failed.code.as_deref(), Some("42P01"));
    // The server gives no position for this error: the statement's start is reported.
    assert_eq!((failed.line, failed.column), (Some(3), Some(1)));
    assert!(
        err.to_string().contains("may be partially changed"),
        "{err}"
    );
    assert!(
        table_exists(&pg, "t_ab_idx").await,
        "the first statement stays applied"
    );
    assert!(!table_exists(&pg, "later").await);
    let rows = history(&pg).await;
    assert_eq!(rows.len(), 3);
    assert!(!rows[2].success, "recorded as failed");

    // The next run refuses until a human has looked.
    let status = migrations::status(&url(&pg), &files).await.unwrap();
    assert_eq!(status.dirty.len(), 1);
    assert!(status.pending.iter().all(|f| f.version != 3));
    let (result, _) = run(&set, &pg, &files).await;
    let err = result.unwrap_err();
    assert!(matches!(err, MigrationError::Dirty { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("DELETE FROM stackwright_migrations WHERE version = 3"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// lint blocking and allow directives
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unsafe_migration_is_blocked_until_allowed_with_a_reason() {
    let pg = Postgres::start();
    let (_tmp, dir) = workspace(None);
    write(
        &dir,
        "0001_users.sql",
        "CREATE TABLE users (id bigint PRIMARY KEY, legacy_flag boolean);\n",
    );
    write(
        &dir,
        "0002_drop_legacy.sql",
        "ALTER TABLE users DROP COLUMN legacy_flag;\n",
    );
    let set = MigrationSet::new(&dir);
    let files = migrations::load_dir(&dir).unwrap();

    let findings: Vec<_> = files.iter().flat_map(migrations::lint).collect();
    let status = migrations::status(&url(&pg), &files).await.unwrap();
    let err = migrations::check(&status, &findings, false).unwrap_err();
    let MigrationError::Unsafe { findings: blocked } = &err else {
        panic!("{err}")
    };
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].rule, "ban-drop-column");
    assert_eq!((blocked[0].line, blocked[0].column), (1, 19));
    let text = err.to_string();
    assert!(
        text.contains("0002_drop_legacy.sql:1:19: ban-drop-column"),
        "{text}"
    );
    assert!(
        text.contains("-- stackwright:allow ban-drop-column because <reason>"),
        "{text}"
    );

    // The runner refuses too, before running 0001.
    let (result, _) = run(&set, &pg, &files).await;
    assert!(matches!(result, Err(MigrationError::Unsafe { .. })));
    assert!(!table_exists(&pg, "users").await);

    write(
        &dir,
        "0002_drop_legacy.sql",
        "-- stackwright:allow ban-drop-column because nothing has read legacy_flag since v2.4\n\
         ALTER TABLE users DROP COLUMN legacy_flag;\n",
    );
    let files = migrations::load_dir(&dir).unwrap();
    let findings: Vec<_> = files.iter().flat_map(migrations::lint).collect();
    migrations::check(&status, &findings, false).unwrap();
    let (result, events) = run(&set, &pg, &files).await;
    assert_eq!(versions(&result.unwrap()), [1, 2]);
    let rows = history(&pg).await;
    assert_eq!(
        rows[1].allowed.as_deref(),
        Some("ban-drop-column: nothing has read legacy_flag since v2.4")
    );
    assert!(
        notes(&events)
            .iter()
            .any(|n| n.contains("0002_drop_legacy.sql: allowed ban-drop-column")),
        "{:?}",
        notes(&events)
    );
}

#[tokio::test]
async fn allow_unsafe_runs_blocked_changes_and_records_it() {
    let pg = Postgres::start();
    let (_tmp, dir) = workspace(None);
    write(
        &dir,
        "0001_t.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY);\n",
    );
    write(&dir, "0002_drop.sql", "DROP TABLE t;\n");
    let set = MigrationSet::new(&dir);
    let files = migrations::load_dir(&dir).unwrap();
    let events = Recorder::default();
    let mut options = opts(&events);
    options.allow_unsafe = true;
    let report = migrations::run_sql(&set, &url(&pg), &files, &options)
        .await
        .unwrap();
    assert_eq!(versions(&report), [1, 2]);
    assert_eq!(
        history(&pg).await[1].allowed.as_deref(),
        Some("ban-drop-table: --allow-unsafe")
    );
}

#[test]
fn malformed_allow_comment_names_file_and_line() {
    let (_tmp, dir) = workspace(None);
    write(
        &dir,
        "0001_x.sql",
        "CREATE TABLE x (id bigint);\n-- stackwright:allow ban-drop-table since it is fine\n",
    );
    let err = migrations::load_dir(&dir).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "{}:2: malformed allow comment",
            dir.join("0001_x.sql").display()
        )),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// the lock
// ---------------------------------------------------------------------------

/// A slow migration keeps the lock long enough for the second run to find it taken.
fn slow_dir() -> (TempDir, PathBuf) {
    let (tmp, dir) = workspace(Some(&demo_dir()));
    write(&dir, "0007_slow.sql", "SELECT pg_sleep(1.5);\n");
    (tmp, dir)
}

#[tokio::test]
async fn concurrent_runs_one_waits_and_applies_nothing() {
    let pg = Postgres::start();
    let (_tmp, dir) = slow_dir();
    let files = migrations::load_dir(&dir).unwrap();
    let mut set = MigrationSet::new(&dir);
    set.lock_timeout = Duration::from_secs(20);
    let (a, b) = tokio::join!(run(&set, &pg, &files), run(&set, &pg, &files));
    let (a, a_events) = a;
    let (b, b_events) = b;
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut all: Vec<i64> = versions(&a).into_iter().chain(versions(&b)).collect();
    all.sort();
    assert_eq!(
        all,
        [1, 2, 3, 4, 5, 6, 7],
        "each version applied exactly once"
    );
    assert!(
        a.applied.is_empty() || b.applied.is_empty(),
        "one run applied everything, the other nothing"
    );
    let waited = |ev: &Recorder| {
        ev.0.lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::Waiting { .. }))
    };
    let idle_events = if a.applied.is_empty() {
        &a_events
    } else {
        &b_events
    };
    assert!(waited(idle_events), "the second run waited for the lock");
    let rows = history(&pg).await;
    assert_eq!(
        rows.iter().map(|r| r.version).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );
}

#[tokio::test]
async fn concurrent_runs_with_a_short_lock_timeout_one_refuses() {
    let pg = Postgres::start();
    let (_tmp, dir) = slow_dir();
    let files = migrations::load_dir(&dir).unwrap();
    let mut set = MigrationSet::new(&dir);
    set.lock_timeout = Duration::from_millis(300);
    let (a, b) = tokio::join!(run(&set, &pg, &files), async {
        // Start once the first run holds the lock.
        let client = pg.client().await;
        for _ in 0..500 {
            let held: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if held > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        run(&set, &pg, &files).await
    });
    let report = a.0.unwrap();
    assert_eq!(report.applied.len(), 7);
    let err = b.0.unwrap_err();
    assert!(matches!(err, MigrationError::Locked { .. }), "{err}");
    assert!(
        err.to_string().starts_with(
            "another stackwright migration run holds the lock on this database; wait for it to finish"
        ),
        "{err}"
    );
    let rows = history(&pg).await;
    assert_eq!(rows.len(), 7);
}

// ---------------------------------------------------------------------------
// connections and verify
// ---------------------------------------------------------------------------

#[tokio::test]
async fn connection_errors_do_not_leak_the_url() {
    let pg = Postgres::start();
    let password = pg.password().to_string();
    // The test server has no TLS: sslmode=require must fail, not fall back.
    let tls = SecretString::new(format!("{}?sslmode=require", pg.url()));
    let err = migrations::status(&tls, &[]).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, MigrationError::Connect { .. }), "{text}");
    assert!(
        !text.contains(&password) && !text.contains(&pg.url()),
        "{text}"
    );

    let wrong = SecretString::new(pg.url().replace(&password, "wrong-password-123"));
    let text = migrations::status(&wrong, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!text.contains("wrong-password-123"), "{text}");

    let verify_full = SecretString::new(format!(
        "{}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        pg.url()
    ));
    let text = migrations::status(&verify_full, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("/nonexistent/ca.pem") && !text.contains(&password),
        "{text}"
    );
}

/// Makes a CA and a server certificate for 127.0.0.1 with the openssl CLI (installed with
/// PostgreSQL's `ssl-cert` dependency) in `dir`: ca.pem, server.crt, server.key.
fn make_certs(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("openssl is needed for the TLS test: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req", "-x509", "-days", "2", "-keyout", "ca.key", "-out", "ca.pem",
    ];
    ca.extend(ec);
    ca.extend([
        "-subj",
        "/CN=stackwright test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&ca);
    let mut csr = vec![
        "req",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ];
    csr.extend(ec);
    openssl(&csr);
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.crt",
        "-extfile",
        "ext.cnf",
    ]);
}

#[tokio::test]
async fn tls_connections_verify_the_server_certificate() {
    let pg = Postgres::start();
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let ca = certs.path().join("ca.pem");
    // Turn TLS on in the running server. PostgreSQL accepts a key owned by the server
    // user with mode 0600, or owned by root with mode 0640 and its group.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let client = pg.client().await;
    let data_dir: String = client
        .query_one("SHOW data_directory", &[])
        .await
        .unwrap()
        .get(0);
    let server = fs::metadata(&data_dir).unwrap();
    let key_path = certs.path().join("server.key");
    if fs::metadata("/proc/self").unwrap().uid() == 0 {
        std::os::unix::fs::chown(&key_path, Some(0), Some(server.gid())).unwrap();
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o640)).unwrap();
    } else {
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
    }
    fs::set_permissions(certs.path(), fs::Permissions::from_mode(0o755)).unwrap();
    for sql in [
        format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}'",
            certs.path().join("server.crt").display()
        ),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", key_path.display()),
    ] {
        client.batch_execute(&sql).await.unwrap();
    }
    for sql in ["ALTER SYSTEM SET ssl = on", "SELECT pg_reload_conf()"] {
        client.batch_execute(sql).await.unwrap();
    }
    let mut on = String::new();
    for _ in 0..50 {
        on = pg
            .client()
            .await
            .query_one("SHOW ssl", &[])
            .await
            .unwrap()
            .get(0);
        if on == "on" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(on, "on", "server log:\n{}", pg.log());

    let in_tls = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()".to_string();
    let verified = SecretString::new(format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url(),
        ca.display()
    ));
    let ok = migrations::verify(&verified, std::slice::from_ref(&in_tls))
        .await
        .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", pg.log()));
    assert_eq!(ok, [format!("{in_tls} → t")]);

    // The same URL runs migrations over TLS.
    let (_tmp, dir) = workspace(None);
    write(
        &dir,
        "0001_t.sql",
        "CREATE TABLE over_tls (id bigint PRIMARY KEY);\n",
    );
    let events = Recorder::default();
    let report = migrations::run_sql(
        &MigrationSet::new(&dir),
        &verified,
        &migrations::load_dir(&dir).unwrap(),
        &opts(&events),
    )
    .await
    .unwrap();
    assert_eq!(versions(&report), [1]);

    // Without the CA the certificate is not trusted: require verifies too.
    let unverified = SecretString::new(format!("{}?sslmode=require", pg.url()));
    let err = migrations::status(&unverified, &[]).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, MigrationError::Connect { .. }) && text.contains("UnknownIssuer"),
        "{text}"
    );
    assert!(!text.contains(pg.password()), "{text}");
}

#[tokio::test]
async fn verify_queries_must_return_true_and_cannot_write() {
    let pg = Postgres::start();
    let u = url(&pg);
    let ok = migrations::verify(&u, &["SELECT 1 + 1".into()])
        .await
        .unwrap();
    assert_eq!(ok, ["SELECT 1 + 1 → 2"]);
    for (query, expect) in [
        ("SELECT false", "returned false"),
        ("SELECT NULL", "returned NULL"),
        ("SELECT 1 WHERE false", "no rows"),
        ("SELECT * FROM missing_table", "42P01"),
        ("CREATE TABLE sneaky (id int)", "25006"),
    ] {
        let err = migrations::verify(&u, &[query.into()]).await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, MigrationError::Verify { .. }) && text.contains(expect),
            "{query}: {text}"
        );
    }
    assert!(!table_exists(&pg, "sneaky").await);
}

// ---------------------------------------------------------------------------
// command mode
// ---------------------------------------------------------------------------

const SCRIPT: &str = r#"#!/bin/sh
set -eu
echo "connecting to $APP_DB_URL"
psql "$APP_DB_URL" -X -q -v ON_ERROR_STOP=1 -c "CREATE TABLE IF NOT EXISTS from_script (id int)"
echo "lock_timeout=$(psql "$APP_DB_URL" -X -A -t -c 'SHOW lock_timeout')"
echo "cwd=$(pwd)"
echo "args=$*"
echo "to stderr with $APP_DB_URL" >&2
if [ -f fail ]; then
  echo "something went wrong" >&2
  echo "last words" >&2
  exit 3
fi
"#;

fn command_set(workdir: &Path, argv: &[&str]) -> MigrationSet {
    let mut set = MigrationSet::new(workdir.join("migrations"));
    set.mode = Mode::Command(argv.iter().map(|s| s.to_string()).collect());
    set.url_env = "APP_DB_URL".into();
    set
}

async fn runs(pg: &Postgres) -> Vec<(i64, String, String, bool, Option<i32>)> {
    pg.client()
        .await
        .query(
            "SELECT id, name, checksum, success, exit_code FROM stackwright_migration_runs ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

#[tokio::test]
async fn command_mode_passes_the_url_in_the_environment_only() {
    let pg = Postgres::start();
    let (tmp, dir) = workspace(None);
    fs::write(tmp.path().join("migrate.sh"), SCRIPT).unwrap();
    fs::write(dir.join("README"), "the tool's files").unwrap();
    let set = command_set(tmp.path(), &["sh", "migrate.sh", "upgrade"]);
    let digest = migrations::dir_digest(&dir).unwrap();
    let events = Recorder::default();
    let report = migrations::run_command(&set, &url(&pg), &digest, &opts(&events))
        .await
        .unwrap();
    assert!(table_exists(&pg, "from_script").await);

    let notes = notes(&events);
    assert!(
        notes.contains(&"connecting to ***".to_string()),
        "{notes:?}"
    );
    assert!(
        notes.contains(&"to stderr with ***".to_string()),
        "{notes:?}"
    );
    assert!(
        notes.contains(&"lock_timeout=5s".to_string()),
        "PGOPTIONS: {notes:?}"
    );
    assert!(
        notes.contains(&format!("cwd={}", tmp.path().display())),
        "{notes:?}"
    );
    assert!(notes.contains(&"args=upgrade".to_string()), "{notes:?}");
    for event in events_json(&events) {
        assert!(
            !event.contains(&pg.url()) && !event.contains(pg.password()),
            "URL leaked: {event}"
        );
    }

    assert_eq!(report.applied.len(), 1);
    let row = &report.applied[0];
    assert_eq!(row.name, "command: sh migrate.sh upgrade");
    assert_eq!(row.checksum, digest);
    assert!(row.success);
    assert_eq!(row.snapshot_id.as_deref(), Some("snap-before-migrate"));
    let recorded = runs(&pg).await;
    assert_eq!(
        recorded,
        [(row.version, row.name.clone(), digest.clone(), true, Some(0))]
    );

    // A failing tool: exit code and the end of stderr, recorded as a failed run.
    fs::write(tmp.path().join("fail"), "").unwrap();
    let events = Recorder::default();
    let err = migrations::run_command(&set, &url(&pg), &digest, &opts(&events))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, MigrationError::CommandFailed { code: Some(3), .. }),
        "{text}"
    );
    assert!(
        text.contains("`sh migrate.sh upgrade` exited with code 3"),
        "{text}"
    );
    assert!(
        text.contains("| something went wrong\n  | last words"),
        "{text}"
    );
    assert!(!text.contains(pg.password()), "{text}");
    let recorded = runs(&pg).await;
    assert_eq!(recorded.len(), 2);
    assert_eq!((recorded[1].3, recorded[1].4), (false, Some(3)));
}

#[tokio::test]
async fn command_mode_reports_a_missing_program() {
    let pg = Postgres::start();
    let (tmp, _dir) = workspace(None);
    let set = command_set(tmp.path(), &["definitely-not-a-migration-tool"]);
    let events = Recorder::default();
    let err = migrations::run_command(&set, &url(&pg), "digest", &opts(&events))
        .await
        .unwrap_err();
    assert!(
        matches!(err, MigrationError::CommandSpawn { .. })
            && err.to_string().contains("definitely-not-a-migration-tool"),
        "{err}"
    );
    let empty = command_set(tmp.path(), &[]);
    let err = migrations::run_command(&empty, &url(&pg), "digest", &opts(&events))
        .await
        .unwrap_err();
    assert!(matches!(err, MigrationError::Invalid(_)), "{err}");
    assert!(
        runs(&pg).await.is_empty(),
        "a tool that never ran is not recorded"
    );
}

pub(crate) const ALEMBIC_INI: &str = "[alembic]
script_location = %(here)s/migrations

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console
qualname =

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
";

pub(crate) const ALEMBIC_ENV: &str = r#"import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)

url = os.environ["DATABASE_URL"].replace("postgres://", "postgresql+psycopg2://", 1)


def run_migrations_online():
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
"#;

pub(crate) const ALEMBIC_0001: &str = r#""""create products

Revision ID: 0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "products",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
    )


def downgrade():
    op.drop_table("products")
"#;

pub(crate) const ALEMBIC_0002: &str = r#""""add products.price_cents

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("products", sa.Column("price_cents", sa.BigInteger, nullable=True))


def downgrade():
    op.drop_column("products", "price_cents")
"#;

#[tokio::test]
async fn command_mode_runs_a_real_alembic_project() {
    let alembic = venv_bin("alembic");
    assert!(
        alembic.exists(),
        "{} is missing: run scripts/setup.sh",
        alembic.display()
    );
    let pg = Postgres::start();
    let (tmp, dir) = workspace(None);
    fs::write(tmp.path().join("alembic.ini"), ALEMBIC_INI).unwrap();
    fs::write(dir.join("env.py"), ALEMBIC_ENV).unwrap();
    fs::create_dir(dir.join("versions")).unwrap();
    fs::write(dir.join("versions/0001_create_products.py"), ALEMBIC_0001).unwrap();

    let mut set = MigrationSet::new(&dir);
    set.mode = Mode::Command(vec![
        alembic.display().to_string(),
        "upgrade".into(),
        "head".into(),
    ]);
    set.verify = vec!["SELECT version_num = '0001' FROM alembic_version".into()];
    assert_eq!(
        set.workdir,
        tmp.path(),
        "workdir defaults to the parent of dir"
    );
    let digest1 = migrations::dir_digest(&dir).unwrap();
    let events = Recorder::default();
    let report = migrations::run_command(&set, &url(&pg), &digest1, &opts(&events))
        .await
        .unwrap();
    assert_eq!(report.verified.len(), 1);
    assert!(table_exists(&pg, "products").await);
    let notes = notes(&events);
    assert!(
        notes.iter().any(|n| n.contains("Running upgrade  -> 0001")),
        "{notes:?}"
    );
    for event in events_json(&events) {
        assert!(!event.contains(pg.password()), "URL leaked: {event}");
    }

    // Python caches do not change the digest; a new revision does, and runs.
    assert_eq!(migrations::dir_digest(&dir).unwrap(), digest1);
    fs::write(dir.join("versions/0002_add_price.py"), ALEMBIC_0002).unwrap();
    let digest2 = migrations::dir_digest(&dir).unwrap();
    assert_ne!(digest2, digest1);
    set.verify = vec!["SELECT version_num = '0002' FROM alembic_version".into()];
    let events = Recorder::default();
    migrations::run_command(&set, &url(&pg), &digest2, &opts(&events))
        .await
        .unwrap();
    let recorded = runs(&pg).await;
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].2, digest1);
    assert_eq!(recorded[1].2, digest2);
    assert!(recorded.iter().all(|r| r.3));
}
