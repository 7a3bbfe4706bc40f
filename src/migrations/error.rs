//! [`MigrationError`]: what happened, where, and what to do next.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::{AppliedRow, Finding, HISTORY_TABLE};

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{}: {reason}; migration files are named like 0001_create_users.sql \
         (a version number, an underscore, a name of letters, digits, `_` or `-`)",
        path.display()
    )]
    BadFileName { path: PathBuf, reason: String },

    #[error(
        "{} and {} both have version {version}: give one of them the next unused number",
        first.display(),
        second.display()
    )]
    DuplicateVersion {
        version: i64,
        first: PathBuf,
        second: PathBuf,
    },

    /// A malformed or misplaced `-- stackwright:` comment.
    #[error("{}:{line}: {message}", path.display())]
    BadDirective {
        path: PathBuf,
        line: usize,
        message: String,
    },

    /// Could not connect; the message never contains the URL or password.
    #[error("cannot connect to the database: {message}")]
    Connect { message: String },

    /// A database call of the runner itself (not a migration) failed.
    #[error("{what}: {message}")]
    Database { what: String, message: String },

    #[error(
        "another stackwright migration run holds the lock on this database; wait for it to \
         finish (waited {:.1}s)",
        waited.as_secs_f64()
    )]
    Locked { waited: Duration },

    #[error(
        "migration {} ({}) did not finish: it ran outside a transaction \
         (-- stackwright:no-transaction) and is marked failed in {HISTORY_TABLE}, so the \
         database may be partially changed; inspect and repair it by hand, then \
         `DELETE FROM {HISTORY_TABLE} WHERE version = {}` and run again",
        row.version,
        row.name,
        row.version
    )]
    Dirty { row: Box<AppliedRow> },

    #[error(
        "migration {} was applied with checksum {} but {} now has {checksum}: restore the \
         file, or write a new migration for the change",
        row.version,
        row.checksum,
        file.display()
    )]
    Modified {
        row: Box<AppliedRow>,
        file: PathBuf,
        checksum: String,
    },

    #[error(
        "migration {} ({}) was applied on {} but its file is missing from the migrations \
         directory: restore it (applied migrations must stay in the directory)",
        row.version,
        row.name,
        row.applied_at.format("%Y-%m-%d %H:%M UTC")
    )]
    Missing { row: Box<AppliedRow> },

    #[error(
        "{} (version {version}) has not been applied but is numbered below the latest \
         applied migration {latest}: renumber it above {latest} so it runs after what is \
         already applied",
        file.display()
    )]
    OutOfOrder {
        file: PathBuf,
        version: i64,
        latest: i64,
    },

    #[error("{}", UnsafeDisplay(findings))]
    Unsafe { findings: Vec<Finding> },

    /// Several of the problems above at once (from [`check`](super::check)).
    #[error("{}", SeveralDisplay(problems))]
    Refused { problems: Vec<MigrationError> },

    /// A migration file failed; carries the file so the caller can name the snapshot to
    /// restore.
    #[error("{0}")]
    Failed(Box<FailedMigration>),

    #[error("cannot run `{program}` (in {}): {source}", workdir.display())]
    CommandSpawn {
        program: String,
        workdir: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}", CommandFailedDisplay { command, code: *code, stderr_tail })]
    CommandFailed {
        command: String,
        code: Option<i32>,
        /// The last lines the tool wrote to stderr (URL redacted).
        stderr_tail: Vec<String>,
    },

    #[error("verify query `{query}` failed: {message}")]
    Verify { query: String, message: String },

    /// The migration set itself is unusable (an empty command, the wrong mode).
    #[error("{0}")]
    Invalid(String),
}

impl MigrationError {
    /// The failed migration, when this is [`MigrationError::Failed`].
    pub fn failed(&self) -> Option<&FailedMigration> {
        match self {
            MigrationError::Failed(f) => Some(f),
            _ => None,
        }
    }
}

/// Details of a migration file that failed to apply.
#[derive(Clone, Debug)]
pub struct FailedMigration {
    pub file: PathBuf,
    pub version: i64,
    /// Where the server said the error is, 1-based, when it said.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// SQLSTATE, e.g. `42P01`.
    pub code: Option<String>,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// The file's text on `line`, shown under the message with a caret at `column`.
    pub source_line: Option<String>,
    /// `false` for `-- stackwright:no-transaction` files: the database may be half-changed.
    pub in_transaction: bool,
    /// Versions this run applied before the failure.
    pub applied_before: Vec<i64>,
}

impl fmt::Display for FailedMigration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "migration {}", self.file.display())?;
        if let (Some(line), Some(col)) = (self.line, self.column) {
            write!(f, ":{line}:{col}")?;
        }
        f.write_str(" failed: ")?;
        if let Some(code) = &self.code {
            write!(f, "{code} ")?;
        }
        f.write_str(&self.message)?;
        if let (Some(line), Some(column), Some(text)) = (self.line, self.column, &self.source_line)
        {
            let gutter = " ".repeat(line.to_string().len());
            let pad: String = text
                .chars()
                .take(column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n  {line} | {text}\n  {gutter} | {pad}^")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, "\n  detail: {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        if self.in_transaction {
            write!(
                f,
                "\n  its transaction was rolled back (nothing from this file was applied) and \
                 no later migration ran; fix the file and run again"
            )
        } else {
            write!(
                f,
                "\n  it ran outside a transaction (-- stackwright:no-transaction), so the \
                 database may be partially changed; it is marked failed in {HISTORY_TABLE}: \
                 inspect and repair the database, then \
                 `DELETE FROM {HISTORY_TABLE} WHERE version = {}` and run again",
                self.version
            )
        }
    }
}

struct UnsafeDisplay<'a>(&'a [Finding]);

impl fmt::Display for UnsafeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} unsafe migration change{} blocked:",
            if n == 1 { "" } else { "s" }
        )?;
        for finding in self.0 {
            write!(
                f,
                "\n  {}:{}:{}: {}: {}",
                finding.file, finding.line, finding.column, finding.rule, finding.message
            )?;
            if let Some(help) = &finding.help {
                write!(f, "\n    help: {help}")?;
            }
        }
        let rule = match self.0.first() {
            Some(first) if self.0.iter().all(|f| f.rule == first.rule) => first.rule.as_str(),
            _ => "<rule>",
        };
        write!(
            f,
            "\n  make the change the safe way, or, if it is safe here, say why in the file: \
             `-- stackwright:allow {rule} because <reason>` (or pass --allow-unsafe)"
        )
    }
}

struct SeveralDisplay<'a>(&'a [MigrationError]);

impl fmt::Display for SeveralDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refusing to migrate, {} problems (nothing was run):",
            self.0.len()
        )?;
        for problem in self.0 {
            let text = problem.to_string().replace('\n', "\n    ");
            write!(f, "\n  - {text}")?;
        }
        Ok(())
    }
}

struct CommandFailedDisplay<'a> {
    command: &'a str,
    code: Option<i32>,
    stderr_tail: &'a [String],
}

impl fmt::Display for CommandFailedDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "`{}` exited with code {code}", self.command)?,
            None => write!(f, "`{}` was killed by a signal", self.command)?,
        }
        if self.stderr_tail.is_empty() {
            f.write_str(" (it wrote nothing to stderr)")?;
        } else {
            f.write_str("; the end of its stderr:")?;
            for line in self.stderr_tail {
                write!(f, "\n  | {line}")?;
            }
        }
        f.write_str(
            "\n  the tool's own transactions decide what was applied: check its history, fix \
             the cause and run again",
        )
    }
}
