//! Database migrations: this module owns everything between a `migrations/` directory and
//! a PostgreSQL database. It loads and checksums the files, lints them with squawk, reads
//! and writes the history table, holds the cross-process lock, runs the SQL files (or the
//! user's own migration tool) and checks the result with verify queries.
//!
//! The design follows `sqlx-core/src/migrate`. A run always takes the same steps, in this
//! order, and stops at the first one that fails:
//!
//! 1. **lock**: `pg_try_advisory_lock` on a fixed key (the first 8 bytes of
//!    `sha256("stackwright_migrations")`), polled until [`MigrationSet::lock_timeout`], on a
//!    dedicated session held for the whole run. A second run waits, or gives up with
//!    "another stackwright migration run holds the lock on this database; wait for it to
//!    finish"; two runs never apply migrations at the same time. If the process dies, the
//!    session ends and PostgreSQL releases the lock.
//! 2. **ensure the history table** `stackwright_migrations` exists (in the schema that is
//!    current when the run starts; later statements name it schema-qualified, so a migration
//!    that changes `search_path` cannot make the runner lose it).
//! 3. **refuse dirty**: a row with `success = false` is a file that ran outside a transaction
//!    (`-- stackwright:no-transaction`) and did not finish; the database may be half-changed,
//!    so a human has to look before anything else runs.
//! 4. **every applied version is still present** in the directory.
//! 5. **checksums match**: an applied file that was edited is refused (write a new one).
//!    New files numbered below the latest applied version are refused as out of order.
//! 6. **apply pending** files in version order, each in its own transaction with
//!    `SET LOCAL lock_timeout` (and `statement_timeout` when configured), the history row
//!    inserted in the same transaction. A failure rolls the file back and stops the run.
//! 7. **unlock**, then run the verify queries.
//!
//! [`status`] and [`check`] do steps 2–5 read-only and without the lock so `plan` can report
//! problems before anything runs; the runner repeats them under the lock.
//!
//! # Files
//!
//! `NNNN_name.sql` (any number of digits, an underscore, a name of letters, digits, `_`, `-`).
//! Other `*.sql` names are an error, other files are ignored. Directives are SQL comments:
//!
//! - `-- stackwright:no-transaction` as the **first line**: the file runs outside a
//!   transaction, one statement at a time (needed for `CREATE INDEX CONCURRENTLY`). Its
//!   history row is written as `success = false` before it starts and flipped to `true` when
//!   it finishes, so a crash or failure leaves the database marked dirty (step 3).
//! - `-- stackwright:allow <rule> because <reason>` anywhere: accept a lint finding of that
//!   rule in this file. The reasons are recorded in the history row (`allowed`).
//!
//! # Lint
//!
//! squawk-linter 2.68 with its default rules, except `require-lock-timeout` and
//! `require-statement-timeout`: the runner sets both itself (step 6). Transactional files are
//! linted with squawk's `assume_in_transaction`. `-- squawk-ignore` comments are not honoured
//! (they would skip a blocking rule without a recorded reason); use an allow directive.
//!
//! These rules **block** (data loss, or a long lock on a table that is in use):
//! `ban-drop-column`, `ban-drop-table`, `ban-drop-database`, `ban-drop-schema`,
//! `ban-truncate-cascade`, `adding-required-field`, `adding-not-nullable-field`,
//! `adding-field-with-default` (squawk only reports volatile defaults and generated columns
//! on PostgreSQL 11+), `adding-serial-primary-key-field`, `adding-foreign-key-constraint`
//! (scans the table holding `SHARE ROW EXCLUSIVE` on both tables: add it `NOT VALID`, then
//! `VALIDATE` in a later file), `constraint-missing-not-valid`, `disallowed-unique-constraint`,
//! `changing-column-type`, `renaming-column`, `renaming-table`,
//! `require-concurrent-index-creation`, `require-concurrent-index-deletion`,
//! `require-concurrent-reindex`, `require-concurrent-partition-detach`, and the ones that
//! break the runner's one-transaction-per-file guarantee or would fail anyway:
//! `transaction-nesting`, `ban-uncommitted-transaction`,
//! `ban-concurrent-index-creation-in-transaction`. Every other rule is a warning.
//!
//! # Command mode
//!
//! [`Mode::Command`] runs the user's tool (alembic, a script) instead: same lock, one row per
//! run in a separate table, `stackwright_migration_runs` (id, name = `command: <argv>`,
//! checksum = [`dir_digest`], applied_at, duration_ms, snapshot_id, applied_by, exit_code,
//! success), kept apart so SQL-mode history never mistakes a run for a missing file. The URL
//! is passed only in the environment variable [`MigrationSet::url_env`]; the tool's output is
//! streamed as [`Event::Note`](crate::events::Event::Note)s with the URL and password
//! replaced by `***`. `PGOPTIONS` gets `-c lock_timeout=…` (and `statement_timeout`) appended
//! so libpq-based tools (psycopg2) get the same timeouts.
//!
//! # Connections
//!
//! `sslmode=require`, `verify-ca` or `verify-full` in the URL connect with rustls (aws-lc-rs)
//! and verify the server certificate and host name against the Mozilla roots
//! (webpki-roots) plus the PEM file named by `sslrootcert` (needed for RDS, whose CA is not
//! public). Any other sslmode connects without TLS. Error messages never contain the URL or
//! the password.

mod command;
mod db;
mod error;
mod files;
mod history;
mod lint;
mod runner;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::events::EventSink;

pub use command::run_command;
pub use error::{FailedMigration, MigrationError};
pub use files::{dir_digest, line_col, load_dir, parse_file_name};
pub use history::{check, status};
pub use lint::{BLOCKING_RULES, lint};
pub use runner::{run_sql, verify};

/// Name of the SQL-mode history table.
pub const HISTORY_TABLE: &str = "stackwright_migrations";
/// Name of the command-mode history table (one row per run of the user's tool).
pub const RUNS_TABLE: &str = "stackwright_migration_runs";

/// One `migrations` block of a stack: where the files are and how to run them.
#[derive(Clone, Debug)]
pub struct MigrationSet {
    /// The migrations directory.
    pub dir: PathBuf,
    pub mode: Mode,
    /// Queries run after migrating; each must return a row whose first column is not
    /// `false` or NULL (see [`verify`]).
    pub verify: Vec<String>,
    /// Command mode: the environment variable the tool reads the URL from.
    pub url_env: String,
    /// How long to wait for the migration lock, and `lock_timeout` for every migration.
    pub lock_timeout: Duration,
    /// `statement_timeout` for every migration statement (none by default).
    pub statement_timeout: Option<Duration>,
    /// Command mode: the tool's working directory (where `alembic.ini` lives).
    pub workdir: PathBuf,
}

impl MigrationSet {
    /// Defaults: SQL mode, `DATABASE_URL`, 5 s lock timeout, no statement timeout,
    /// `workdir` = the parent of `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let workdir = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        MigrationSet {
            dir,
            mode: Mode::Sql,
            verify: Vec::new(),
            url_env: "DATABASE_URL".into(),
            lock_timeout: Duration::from_secs(5),
            statement_timeout: None,
            workdir,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Stackwright runs the `NNNN_name.sql` files itself.
    Sql,
    /// Stackwright runs this argv (e.g. `["alembic", "upgrade", "head"]`).
    Command(Vec<String>),
}

/// One `NNNN_name.sql` file, read and checksummed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationFile {
    pub version: i64,
    /// The part after the version: `create_users` for `0001_create_users.sql`.
    pub name: String,
    pub path: PathBuf,
    pub sql: String,
    /// sha256 of the file's bytes, lowercase hex.
    pub checksum: String,
    /// The first line is `-- stackwright:no-transaction`.
    pub no_transaction: bool,
    pub allows: Vec<Allow>,
}

impl MigrationFile {
    /// The file name, e.g. `0001_create_users.sql`.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("{:04}_{}.sql", self.version, self.name))
    }
}

/// `-- stackwright:allow <rule> because <reason>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Allow {
    pub rule: String,
    pub reason: String,
    /// 1-based line of the comment.
    pub line: usize,
}

/// One lint finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Finding {
    /// The migration file's path, as given to [`load_dir`].
    pub file: String,
    /// squawk's rule id (`ban-drop-column`), or `syntax-error`, `squawk-ignore`,
    /// `unused-allow` for the module's own checks.
    pub rule: String,
    pub message: String,
    pub help: Option<String>,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// The rule is one of [`BLOCKING_RULES`].
    pub blocking: bool,
    /// The reason from the file's allow directive, when there is one for this rule.
    pub allowed: Option<String>,
}

impl Finding {
    /// Stops the run unless `--allow-unsafe`.
    pub fn blocks(&self) -> bool {
        self.blocking && self.allowed.is_none()
    }
}

/// One row of the history table (or of the runs table in command mode, with `version` =
/// the run id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppliedRow {
    pub version: i64,
    pub name: String,
    pub checksum: String,
    #[serde(serialize_with = "rfc3339")]
    pub applied_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub snapshot_id: Option<String>,
    pub applied_by: String,
    /// Allow reasons recorded when it ran: `rule: reason; rule: reason`.
    pub allowed: Option<String>,
    pub success: bool,
}

fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Where the database stands relative to the files.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// Rows of successfully applied migrations, by version.
    pub applied: Vec<AppliedRow>,
    /// Files not yet applied, numbered above the latest applied version.
    pub pending: Vec<MigrationFile>,
    /// Applied, but the file's checksum changed since.
    pub modified: Vec<(AppliedRow, MigrationFile)>,
    /// Applied, but the file is gone.
    pub missing: Vec<AppliedRow>,
    /// Not applied, numbered below the latest applied version.
    pub out_of_order: Vec<MigrationFile>,
    /// Rows with `success = false`: a no-transaction file that did not finish.
    pub dirty: Vec<AppliedRow>,
}

impl Status {
    /// The highest successfully applied version.
    pub fn latest_applied(&self) -> Option<i64> {
        self.applied.iter().map(|r| r.version).max()
    }
}

/// Called under the migration lock, after every check passed and only when something is
/// pending, before the first statement: takes the pre-migration snapshot and returns its id.
/// Running it under the lock means two runs can never both snapshot and migrate.
pub type BeforeFirst<'a> = dyn Fn(&[MigrationFile]) -> futures::future::BoxFuture<'a, Result<Option<String>, String>>
    + Send
    + Sync
    + 'a;

pub struct RunOptions<'a> {
    /// The snapshot taken before migrating, recorded in each history row (when
    /// `before_first` is not given).
    pub snapshot_id: Option<String>,
    pub before_first: Option<&'a BeforeFirst<'a>>,
    pub applied_by: String,
    /// Run blocking lint findings that have no allow directive.
    pub allow_unsafe: bool,
    pub events: &'a dyn EventSink,
    /// The address used in events, e.g. `migrations`.
    pub address: String,
}

#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// Rows written by this run (in command mode: the run's row).
    pub applied: Vec<AppliedRow>,
    /// The verify queries that passed, with the value they returned.
    pub verified: Vec<String>,
}

impl<'a> RunOptions<'a> {
    /// Runs `before_first` (if any) and returns options that record its snapshot id.
    pub(crate) async fn snapshot_first(
        &self,
        pending: &[MigrationFile],
    ) -> Result<RunOptions<'a>, MigrationError> {
        let snapshot_id = match self.before_first {
            Some(hook) => hook(pending).await.map_err(MigrationError::Invalid)?,
            None => self.snapshot_id.clone(),
        };
        Ok(RunOptions {
            snapshot_id,
            before_first: None,
            applied_by: self.applied_by.clone(),
            allow_unsafe: self.allow_unsafe,
            events: self.events,
            address: self.address.clone(),
        })
    }
}
