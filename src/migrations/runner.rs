//! SQL mode: apply pending files under the lock, and the verify queries.

use std::ops::Range;
use std::time::{Duration, Instant};

use squawk_syntax::{SourceFile, SyntaxKind};
use tokio_postgres::error::ErrorPosition;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::db::{self, MigrationLock, db_error, db_message};
use super::files::{char_position_to_byte, line_col};
use super::history::{self, ROW_COLUMNS, check, compute_status, row_to_applied};
use super::lint::{allowed_summary, lint};
use super::{
    AppliedRow, FailedMigration, Finding, MigrationError, MigrationFile, MigrationSet, RunOptions,
    RunReport,
};
use crate::events::{Activity, Event};
use crate::secret::SecretString;

/// `statement_timeout` for each verify query.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// Applies the pending files of `files` (see the module documentation for the steps), then
/// runs `set.verify`. Refuses before running anything if the history disagrees with the
/// files or a pending file has a blocking finding that is not allowed (unless
/// `opts.allow_unsafe`). A failing file stops the run with [`MigrationError::Failed`].
pub async fn run_sql(
    set: &MigrationSet,
    url: &SecretString,
    files: &[MigrationFile],
    opts: &RunOptions<'_>,
) -> Result<RunReport, MigrationError> {
    let lock = MigrationLock::acquire(url, set.lock_timeout, opts.events, &opts.address).await?;
    let result = apply_locked(set, url, files, opts).await;
    lock.release().await;
    let mut report = result?;
    report.verified = verify(url, &set.verify).await?;
    Ok(report)
}

async fn apply_locked(
    set: &MigrationSet,
    url: &SecretString,
    files: &[MigrationFile],
    opts: &RunOptions<'_>,
) -> Result<RunReport, MigrationError> {
    let mut client = db::connect(url).await?;
    let table = history::ensure_history(&client).await?;
    let rows = history::read_history(&client, &table).await?;
    let status = compute_status(rows, files);
    let findings: Vec<Finding> = status.pending.iter().flat_map(lint).collect();
    check(&status, &findings, opts.allow_unsafe)?;

    let mut report = RunReport::default();
    if status.pending.is_empty() {
        opts.events.emit(Event::Note {
            address: opts.address.clone(),
            message: format!(
                "database is up to date: {} migration{} applied, none pending",
                status.applied.len(),
                if status.applied.len() == 1 { "" } else { "s" }
            ),
        });
        return Ok(report);
    }
    let opts = &opts.snapshot_first(&status.pending).await?;

    for file in &status.pending {
        let path = file.path.display().to_string();
        let file_findings: Vec<Finding> = findings
            .iter()
            .filter(|f| f.file == path)
            .cloned()
            .collect();
        let allowed = allowed_summary(&file_findings, opts.allow_unsafe);
        let action = Activity::Migrate(file.file_name().to_string());
        opts.events.emit(Event::ActionStarted {
            address: opts.address.clone(),
            action: action.clone(),
        });
        if let Some(allowed) = &allowed {
            opts.events.emit(Event::Note {
                address: opts.address.clone(),
                message: format!("{}: allowed {allowed}", file.file_name()),
            });
        }
        let started = Instant::now();
        let applied_before: Vec<i64> = report.applied.iter().map(|r| r.version).collect();
        let result = if file.no_transaction {
            apply_outside_transaction(&client, &table, set, file, allowed, opts, applied_before)
                .await
        } else {
            apply_in_transaction(
                &mut client,
                &table,
                set,
                file,
                allowed,
                opts,
                applied_before,
            )
            .await
        };
        opts.events.emit(Event::ActionFinished {
            address: opts.address.clone(),
            action,
            elapsed: started.elapsed(),
            error: result.as_ref().err().map(|e| match e {
                MigrationError::Failed(f) => {
                    format!("{} {}", f.code.as_deref().unwrap_or(""), f.message)
                        .trim()
                        .to_string()
                }
                other => other.to_string(),
            }),
        });
        report.applied.push(result?);
    }
    Ok(report)
}

fn interval(d: Duration) -> String {
    format!("'{}ms'", d.as_millis())
}

const INSERT_COLUMNS: &str =
    "version, name, checksum, duration_ms, snapshot_id, applied_by, allowed, success";

async fn apply_in_transaction(
    client: &mut Client,
    table: &str,
    set: &MigrationSet,
    file: &MigrationFile,
    allowed: Option<String>,
    opts: &RunOptions<'_>,
    applied_before: Vec<i64>,
) -> Result<AppliedRow, MigrationError> {
    let started = Instant::now();
    let tx = client
        .transaction()
        .await
        .map_err(db_error("starting a transaction"))?;
    let mut settings = format!("SET LOCAL lock_timeout = {};", interval(set.lock_timeout));
    if let Some(st) = set.statement_timeout {
        settings.push_str(&format!(" SET LOCAL statement_timeout = {};", interval(st)));
    }
    tx.batch_execute(&settings)
        .await
        .map_err(db_error("setting the migration timeouts"))?;
    for range in transaction_chunks(&file.sql) {
        if let Err(e) = tx.batch_execute(&file.sql[range.clone()]).await {
            let _ = tx.rollback().await;
            return Err(failure(file, &e, range, true, applied_before));
        }
    }
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO {table} ({INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, true) \
                 RETURNING {ROW_COLUMNS}"
            ),
            &[
                &file.version,
                &file.name,
                &file.checksum,
                &duration_ms,
                &opts.snapshot_id,
                &opts.applied_by,
                &allowed,
            ],
        )
        .await
        .map_err(db_error(
            "recording the migration in stackwright_migrations",
        ))?;
    tx.commit()
        .await
        .map_err(db_error("committing the migration"))?;
    Ok(row_to_applied(&row))
}

/// `-- stackwright:no-transaction`: the row goes in first with `success = false`, each
/// statement runs on its own, and the row is marked successful at the end. A failure (or a
/// crash) leaves the row marked failed: the database is dirty until a human looks.
async fn apply_outside_transaction(
    client: &Client,
    table: &str,
    set: &MigrationSet,
    file: &MigrationFile,
    allowed: Option<String>,
    opts: &RunOptions<'_>,
    applied_before: Vec<i64>,
) -> Result<AppliedRow, MigrationError> {
    let started = Instant::now();
    client
        .execute(
            &format!(
                "INSERT INTO {table} ({INSERT_COLUMNS}) VALUES ($1, $2, $3, 0, $4, $5, $6, false)"
            ),
            &[
                &file.version,
                &file.name,
                &file.checksum,
                &opts.snapshot_id,
                &opts.applied_by,
                &allowed,
            ],
        )
        .await
        .map_err(db_error(
            "recording the migration in stackwright_migrations",
        ))?;
    let mut settings = format!("SET lock_timeout = {};", interval(set.lock_timeout));
    if let Some(st) = set.statement_timeout {
        settings.push_str(&format!(" SET statement_timeout = {};", interval(st)));
    }
    client
        .batch_execute(&settings)
        .await
        .map_err(db_error("setting the migration timeouts"))?;
    let reset = "RESET lock_timeout; RESET statement_timeout;";
    for range in statements(&file.sql) {
        if let Err(e) = client.batch_execute(&file.sql[range.clone()]).await {
            let _ = client.batch_execute(reset).await;
            return Err(failure(file, &e, range, false, applied_before));
        }
    }
    client
        .batch_execute(reset)
        .await
        .map_err(db_error("resetting the migration timeouts"))?;
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let row = client
        .query_one(
            &format!(
                "UPDATE {table} SET success = true, duration_ms = $2, applied_at = now() \
                 WHERE version = $1 RETURNING {ROW_COLUMNS}"
            ),
            &[&file.version, &duration_ms],
        )
        .await
        .map_err(db_error(
            "recording the migration in stackwright_migrations",
        ))?;
    Ok(row_to_applied(&row))
}

/// [`MigrationError::Failed`] for an error from the statement at `range` of the file.
fn failure(
    file: &MigrationFile,
    error: &tokio_postgres::Error,
    range: Range<usize>,
    in_transaction: bool,
    applied_before: Vec<i64>,
) -> MigrationError {
    let statement = &file.sql[range.clone()];
    let (code, message, detail, hint, offset) = match error.as_db_error() {
        Some(db) => {
            let offset = match db.position() {
                Some(ErrorPosition::Original(p)) => {
                    range.start + char_position_to_byte(statement, *p as usize)
                }
                // Inside a function body or a generated query: point at the statement.
                _ => range.start,
            };
            (
                Some(db.code().code().to_string()),
                db.message().to_string(),
                db.detail().map(str::to_string),
                db.hint().map(str::to_string),
                offset,
            )
        }
        None => (None, error.to_string(), None, None, range.start),
    };
    let (line, column) = line_col(&file.sql, offset);
    let source_line = file
        .sql
        .lines()
        .nth(line - 1)
        .map(|l| l.trim_end_matches('\r').to_string());
    MigrationError::Failed(Box::new(FailedMigration {
        file: file.path.clone(),
        version: file.version,
        line: Some(line),
        column: Some(column),
        code,
        message,
        detail,
        hint,
        source_line,
        in_transaction,
        applied_before,
    }))
}

/// What a transactional file is sent as: statement by statement (so an error without a
/// server position still points at its statement), or, when squawk cannot parse the file,
/// the whole file in one batch, so a statement squawk does not know can never be split
/// differently from how PostgreSQL reads it.
#[allow(clippy::single_range_in_vec_init)] // one chunk: the whole file
fn transaction_chunks(sql: &str) -> Vec<Range<usize>> {
    if SourceFile::parse(sql).errors().is_empty() {
        statements(sql)
    } else {
        vec![0..sql.len()]
    }
}

/// Byte ranges of the file's top-level statements (each with its `;`), found with squawk's
/// lexer and parser, so `;` inside strings, comments, dollar quotes and `BEGIN ATOMIC`
/// bodies does not split. Whitespace and comments between statements are left out; a file
/// of only comments has none.
pub(crate) fn statements(sql: &str) -> Vec<Range<usize>> {
    let parse = SourceFile::parse(sql);
    let root = parse.syntax_node();
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0;
    for element in root.children_with_tokens() {
        if element.kind().is_trivia() {
            continue;
        }
        let range = element.text_range();
        start.get_or_insert(usize::from(range.start()));
        end = usize::from(range.end());
        let ends_statement = match element.as_node() {
            None => element.kind() == SyntaxKind::SEMICOLON,
            Some(node) => node
                .descendants_with_tokens()
                .filter_map(|e| e.into_token())
                .filter(|t| !t.kind().is_trivia())
                .last()
                .is_some_and(|t| t.kind() == SyntaxKind::SEMICOLON),
        };
        if ends_statement && let Some(s) = start.take() {
            out.push(s..end);
        }
    }
    if let Some(s) = start {
        out.push(s..end);
    }
    out
}

/// Runs each query in a read-only transaction (30 s statement timeout). A query passes when
/// it returns at least one row whose first column is not `false` or NULL; returns
/// `"<query> → <value>"` for each. Writes fail: the transaction is read-only.
pub async fn verify(url: &SecretString, queries: &[String]) -> Result<Vec<String>, MigrationError> {
    if queries.is_empty() {
        return Ok(Vec::new());
    }
    let mut client = db::connect(url).await?;
    let mut passed = Vec::new();
    for query in queries {
        let fail = |message: String| MigrationError::Verify {
            query: query.clone(),
            message,
        };
        let tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(|e| fail(db_message(&e)))?;
        tx.batch_execute(&format!(
            "SET LOCAL statement_timeout = {}",
            interval(VERIFY_TIMEOUT)
        ))
        .await
        .map_err(|e| fail(db_message(&e)))?;
        let messages = tx
            .simple_query(query)
            .await
            .map_err(|e| fail(db_message(&e)))?;
        let _ = tx.rollback().await;
        let first = messages.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        });
        let Some(row) = first else {
            return Err(fail(
                "it returned no rows (it must return a true value)".into(),
            ));
        };
        match row.get(0) {
            None => return Err(fail("it returned NULL".into())),
            Some("f") | Some("false") => return Err(fail("it returned false".into())),
            Some(value) => passed.push(format!("{query} → {value}")),
        }
    }
    Ok(passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        statements(sql).into_iter().map(|r| &sql[r]).collect()
    }

    #[test]
    fn splits_top_level_statements() {
        let sql = "-- stackwright:no-transaction\n\
                   CREATE INDEX CONCURRENTLY a ON t (x);\n\
                   /* ; */ SELECT ';', $$ ; $$;\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\n\
                   DO $body$ BEGIN PERFORM 1; END $body$;\n\
                   SELECT 2";
        assert_eq!(
            texts(sql),
            vec![
                "CREATE INDEX CONCURRENTLY a ON t (x);",
                "SELECT ';', $$ ; $$;",
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;",
                "DO $body$ BEGIN PERFORM 1; END $body$;",
                "SELECT 2",
            ]
        );
        assert!(statements("-- only a comment\n\n").is_empty());
        // Unparseable text still splits on top-level semicolons.
        assert_eq!(
            texts("SELEC broken; SELECT 1;"),
            vec!["SELEC broken;", "SELECT 1;"]
        );
    }
}
