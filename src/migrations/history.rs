//! The history table, [`status`] and [`check`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};

use super::db::{self, db_error, quote_ident};
use super::{
    AppliedRow, Finding, HISTORY_TABLE, MigrationError, MigrationFile, RUNS_TABLE, Status,
};
use crate::secret::SecretString;

/// Columns read back as an [`AppliedRow`] (`applied_at` as epoch milliseconds, so no
/// chrono feature of tokio-postgres is needed).
pub(crate) const ROW_COLUMNS: &str = "version, name, checksum, \
     (extract(epoch FROM applied_at) * 1000)::bigint, duration_ms, snapshot_id, applied_by, \
     allowed, success";

fn create_history(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            version bigint PRIMARY KEY,
            name text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now(),
            duration_ms bigint NOT NULL,
            snapshot_id text,
            applied_by text NOT NULL,
            allowed text,
            success boolean NOT NULL
        )"
    )
}

fn create_runs(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now(),
            duration_ms bigint NOT NULL,
            snapshot_id text,
            applied_by text NOT NULL,
            exit_code integer,
            success boolean NOT NULL
        )"
    )
}

/// The schema-qualified name of `table` in the session's current schema.
async fn qualified(client: &impl GenericClient, table: &str) -> Result<String, MigrationError> {
    let schema: Option<String> = client
        .query_one("SELECT current_schema()", &[])
        .await
        .map_err(db_error("reading the current schema"))?
        .get(0);
    let schema = schema.ok_or_else(|| MigrationError::Database {
        what: format!("creating {table}"),
        message: "no schema on the search_path exists: create one, or set search_path for \
                  this user"
            .into(),
    })?;
    Ok(format!("{}.{}", quote_ident(&schema), quote_ident(table)))
}

/// Creates `stackwright_migrations` if needed; returns its qualified name.
pub(crate) async fn ensure_history(client: &impl GenericClient) -> Result<String, MigrationError> {
    let table = qualified(client, HISTORY_TABLE).await?;
    client
        .batch_execute(&create_history(&table))
        .await
        .map_err(db_error(
            "creating the history table stackwright_migrations",
        ))?;
    Ok(table)
}

/// Creates `stackwright_migration_runs` if needed; returns its qualified name.
pub(crate) async fn ensure_runs(client: &impl GenericClient) -> Result<String, MigrationError> {
    let table = qualified(client, RUNS_TABLE).await?;
    client
        .batch_execute(&create_runs(&table))
        .await
        .map_err(db_error(
            "creating the history table stackwright_migration_runs",
        ))?;
    Ok(table)
}

pub(crate) fn row_to_applied(row: &Row) -> AppliedRow {
    let millis: i64 = row.get(3);
    AppliedRow {
        version: row.get(0),
        name: row.get(1),
        checksum: row.get(2),
        applied_at: DateTime::<Utc>::from_timestamp_millis(millis).unwrap_or_default(),
        duration_ms: row.get(4),
        snapshot_id: row.get(5),
        applied_by: row.get(6),
        allowed: row.get(7),
        success: row.get(8),
    }
}

pub(crate) async fn read_history(
    client: &impl GenericClient,
    table: &str,
) -> Result<Vec<AppliedRow>, MigrationError> {
    let rows = client
        .query(
            &format!("SELECT {ROW_COLUMNS} FROM {table} ORDER BY version"),
            &[],
        )
        .await
        .map_err(db_error("reading stackwright_migrations"))?;
    Ok(rows.iter().map(row_to_applied).collect())
}

/// Compares the history table with the files. Read-only: a database without the history
/// table has everything pending.
pub async fn status(url: &SecretString, files: &[MigrationFile]) -> Result<Status, MigrationError> {
    let client = db::connect(url).await?;
    let exists: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&quote_ident(HISTORY_TABLE)],
        )
        .await
        .map_err(db_error("looking for stackwright_migrations"))?
        .get(0);
    let rows = if exists {
        read_history(&client, &quote_ident(HISTORY_TABLE)).await?
    } else {
        Vec::new()
    };
    Ok(compute_status(rows, files))
}

/// [`Status`] from history rows and files.
pub(crate) fn compute_status(rows: Vec<AppliedRow>, files: &[MigrationFile]) -> Status {
    let by_version: BTreeMap<i64, &MigrationFile> = files.iter().map(|f| (f.version, f)).collect();
    let mut status = Status::default();
    for row in rows {
        if !row.success {
            status.dirty.push(row);
            continue;
        }
        match by_version.get(&row.version) {
            None => status.missing.push(row.clone()),
            Some(file) if file.checksum != row.checksum => {
                status.modified.push((row.clone(), (*file).clone()));
            }
            Some(_) => {}
        }
        status.applied.push(row);
    }
    let recorded: Vec<i64> = status
        .applied
        .iter()
        .chain(&status.dirty)
        .map(|r| r.version)
        .collect();
    let latest = status.latest_applied();
    for file in files {
        if recorded.contains(&file.version) {
            continue;
        }
        match latest {
            Some(latest) if file.version < latest => status.out_of_order.push(file.clone()),
            _ => status.pending.push(file.clone()),
        }
    }
    status.pending.sort_by_key(|f| f.version);
    status.out_of_order.sort_by_key(|f| f.version);
    status
}

/// Refuses, before anything runs, when the history and the files disagree (dirty,
/// modified, missing, out of order) or a pending file has a blocking finding that is not
/// allowed (unless `allow_unsafe`). Findings for files that are not pending are ignored:
/// what is applied is applied.
pub fn check(
    status: &Status,
    findings: &[Finding],
    allow_unsafe: bool,
) -> Result<(), MigrationError> {
    let mut problems: Vec<MigrationError> = Vec::new();
    for row in &status.dirty {
        problems.push(MigrationError::Dirty {
            row: Box::new(row.clone()),
        });
    }
    for (row, file) in &status.modified {
        problems.push(MigrationError::Modified {
            row: Box::new(row.clone()),
            file: file.path.clone(),
            checksum: file.checksum.clone(),
        });
    }
    for row in &status.missing {
        problems.push(MigrationError::Missing {
            row: Box::new(row.clone()),
        });
    }
    let latest = status.latest_applied().unwrap_or_default();
    for file in &status.out_of_order {
        problems.push(MigrationError::OutOfOrder {
            file: file.path.clone(),
            version: file.version,
            latest,
        });
    }
    if !allow_unsafe {
        let pending: Vec<String> = status
            .pending
            .iter()
            .map(|f| f.path.display().to_string())
            .collect();
        let blocked: Vec<Finding> = findings
            .iter()
            .filter(|f| f.blocks() && pending.contains(&f.file))
            .cloned()
            .collect();
        if !blocked.is_empty() {
            problems.push(MigrationError::Unsafe { findings: blocked });
        }
    }
    match problems.len() {
        0 => Ok(()),
        1 => Err(problems.remove(0)),
        _ => Err(MigrationError::Refused { problems }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn file(version: i64, checksum: &str) -> MigrationFile {
        MigrationFile {
            version,
            name: format!("m{version}"),
            path: PathBuf::from(format!("migrations/{version:04}_m{version}.sql")),
            sql: String::new(),
            checksum: checksum.into(),
            no_transaction: false,
            allows: vec![],
        }
    }

    fn row(version: i64, checksum: &str, success: bool) -> AppliedRow {
        AppliedRow {
            version,
            name: format!("m{version}"),
            checksum: checksum.into(),
            applied_at: DateTime::<Utc>::from_timestamp_millis(0).unwrap(),
            duration_ms: 1,
            snapshot_id: None,
            applied_by: "me".into(),
            allowed: None,
            success,
        }
    }

    #[test]
    fn status_classifies() {
        let files = vec![
            file(1, "a"),
            file(2, "B"),
            file(4, "d"),
            file(6, "f"),
            file(3, "c"),
        ];
        let rows = vec![row(1, "a", true), row(2, "b", true), row(5, "e", true)];
        let s = compute_status(rows, &files);
        assert_eq!(s.applied.len(), 3);
        assert_eq!(s.modified.len(), 1);
        assert_eq!(s.modified[0].0.version, 2);
        assert_eq!(s.missing.iter().map(|r| r.version).collect::<Vec<_>>(), [5]);
        assert_eq!(
            s.out_of_order.iter().map(|f| f.version).collect::<Vec<_>>(),
            [3, 4]
        );
        assert_eq!(s.pending.iter().map(|f| f.version).collect::<Vec<_>>(), [6]);

        let err = check(&s, &[], false).unwrap_err();
        let MigrationError::Refused { problems } = &err else {
            panic!("{err}")
        };
        assert_eq!(problems.len(), 4);
        let text = err.to_string();
        assert!(
            text.contains("migration 2 was applied with checksum b but"),
            "{text}"
        );
        assert!(
            text.contains("restore the file, or write a new migration"),
            "{text}"
        );
    }

    #[test]
    fn dirty_rows_are_not_pending_and_refuse() {
        let files = vec![file(1, "a"), file(2, "b")];
        let s = compute_status(vec![row(1, "a", true), row(2, "b", false)], &files);
        assert!(s.pending.is_empty());
        assert_eq!(s.dirty.len(), 1);
        let err = check(&s, &[], true).unwrap_err();
        assert!(matches!(err, MigrationError::Dirty { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("DELETE FROM stackwright_migrations WHERE version = 2")
        );
    }

    #[test]
    fn only_pending_findings_block() {
        let files = vec![file(1, "a"), file(2, "b")];
        let s = compute_status(vec![row(1, "a", true)], &files);
        let finding = |f: &str, allowed: Option<&str>| Finding {
            file: f.into(),
            rule: "ban-drop-table".into(),
            message: "m".into(),
            help: None,
            line: 1,
            column: 1,
            blocking: true,
            allowed: allowed.map(Into::into),
        };
        let old = finding("migrations/0001_m1.sql", None);
        assert!(check(&s, std::slice::from_ref(&old), false).is_ok());
        let new = finding("migrations/0002_m2.sql", None);
        let err = check(&s, &[old, new.clone()], false).unwrap_err();
        assert!(matches!(&err, MigrationError::Unsafe { findings } if findings.len() == 1));
        assert!(
            err.to_string()
                .contains("migrations/0002_m2.sql:1:1: ban-drop-table")
        );
        assert!(check(&s, std::slice::from_ref(&new), true).is_ok());
        assert!(check(&s, &[finding("migrations/0002_m2.sql", Some("why"))], false).is_ok());
    }
}
