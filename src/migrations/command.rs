//! Command mode: run the user's migration tool under the lock and record the run.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::db::{self, MigrationLock, Redactor, db_error};
use super::history::{self, row_to_applied};
use super::runner::verify;
use super::{MigrationError, MigrationSet, Mode, RunOptions, RunReport};
use crate::events::{Activity, Event, EventSink};
use crate::secret::SecretString;

/// Lines of stderr kept for the error message.
const STDERR_TAIL: usize = 15;

/// Runs `set.mode`'s argv in `set.workdir` with the URL in `$url_env` (never on the command
/// line or in events), under the migration lock; streams its output as notes (URL and
/// password redacted) and records the run in `stackwright_migration_runs` with `digest`
/// (see [`dir_digest`](super::dir_digest)). Then runs `set.verify`.
pub async fn run_command(
    set: &MigrationSet,
    url: &SecretString,
    digest: &str,
    opts: &RunOptions<'_>,
) -> Result<RunReport, MigrationError> {
    let argv = match &set.mode {
        Mode::Command(argv) if !argv.is_empty() => argv.clone(),
        Mode::Command(_) => {
            return Err(MigrationError::Invalid(
                "the migration command is empty: give the program and its arguments, e.g. \
                 [\"alembic\", \"upgrade\", \"head\"]"
                    .into(),
            ));
        }
        Mode::Sql => {
            return Err(MigrationError::Invalid(
                "run_command needs a migration set in command mode; this one runs SQL files".into(),
            ));
        }
    };
    let lock = MigrationLock::acquire(url, set.lock_timeout, opts.events, &opts.address).await?;
    let result = run_locked(set, url, &argv, digest, opts).await;
    lock.release().await;
    let mut report = result?;
    report.verified = verify(url, &set.verify).await?;
    Ok(report)
}

async fn run_locked(
    set: &MigrationSet,
    url: &SecretString,
    argv: &[String],
    digest: &str,
    opts: &RunOptions<'_>,
) -> Result<RunReport, MigrationError> {
    // Create the runs table before the tool starts: a permission problem shows up before
    // anything changes, not after.
    {
        let client = db::connect(url).await?;
        history::ensure_runs(&client).await?;
    }
    let opts = &opts.snapshot_first(&[]).await?;
    let redactor = Redactor::new(url.expose());
    let command = redactor.apply(&argv.join(" "));
    let action = Activity::Command(command.clone());
    opts.events.emit(Event::ActionStarted {
        address: opts.address.clone(),
        action: action.clone(),
    });
    let started = Instant::now();
    let outcome = run_tool(set, url, argv, &redactor, opts).await;
    let elapsed = started.elapsed();
    let (code, stderr_tail) = match outcome {
        Ok(done) => done,
        Err(e) => {
            opts.events.emit(Event::ActionFinished {
                address: opts.address.clone(),
                action,
                elapsed,
                error: Some(e.to_string()),
            });
            return Err(e);
        }
    };
    let success = code == Some(0);

    let client = db::connect(url).await?;
    let table = history::ensure_runs(&client).await?;
    let duration_ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
    let name = format!("command: {command}");
    let row = client
        .query_one(
            &format!(
                "INSERT INTO {table} (name, checksum, duration_ms, snapshot_id, applied_by, \
                 exit_code, success) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 RETURNING id, name, checksum, (extract(epoch FROM applied_at) * 1000)::bigint, \
                 duration_ms, snapshot_id, applied_by, NULL::text, success"
            ),
            &[
                &name,
                &digest,
                &duration_ms,
                &opts.snapshot_id,
                &opts.applied_by,
                &code,
                &success,
            ],
        )
        .await
        .map_err(db_error("recording the run in stackwright_migration_runs"))?;
    let failure = (!success).then(|| MigrationError::CommandFailed {
        command: command.clone(),
        code,
        stderr_tail,
    });
    opts.events.emit(Event::ActionFinished {
        address: opts.address.clone(),
        action,
        elapsed,
        error: failure.as_ref().map(|e| match code {
            Some(c) => format!("exited with code {c}"),
            None => e.to_string(),
        }),
    });
    if let Some(failure) = failure {
        return Err(failure);
    }
    Ok(RunReport {
        applied: vec![row_to_applied(&row)],
        verified: Vec::new(),
    })
}

/// `PGOPTIONS` for the tool: the caller's, plus our lock and statement timeouts, so
/// libpq-based tools (psycopg2, psql) get the same limits as SQL mode.
fn pg_options(set: &MigrationSet) -> String {
    let mut options = std::env::var("PGOPTIONS").unwrap_or_default();
    options.push_str(&format!(
        " -c lock_timeout={}",
        set.lock_timeout.as_millis()
    ));
    if let Some(st) = set.statement_timeout {
        options.push_str(&format!(" -c statement_timeout={}", st.as_millis()));
    }
    options.trim().to_string()
}

/// Spawns the tool and streams its output; returns its exit code and the end of stderr.
async fn run_tool(
    set: &MigrationSet,
    url: &SecretString,
    argv: &[String],
    redactor: &Redactor,
    opts: &RunOptions<'_>,
) -> Result<(Option<i32>, Vec<String>), MigrationError> {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&set.workdir)
        .env(&set.url_env, url.expose())
        .env("PGOPTIONS", pg_options(set))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| MigrationError::CommandSpawn {
        program: argv[0].clone(),
        workdir: set.workdir.clone(),
        source,
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut tail: VecDeque<String> = VecDeque::new();
    let events = opts.events;
    let address = &opts.address;
    let out_task = forward(stdout, redactor, events, address, None);
    let err_task = forward(stderr, redactor, events, address, Some(&mut tail));
    let (_, _, status) = tokio::join!(out_task, err_task, child.wait());
    let status = status.map_err(|source| MigrationError::CommandSpawn {
        program: argv[0].clone(),
        workdir: set.workdir.clone(),
        source,
    })?;
    Ok((status.code(), tail.into_iter().collect()))
}

/// Emits each line of `stream` as a note (redacted), keeping the last lines in `tail`.
async fn forward(
    stream: Option<impl AsyncRead + Unpin>,
    redactor: &Redactor,
    events: &dyn EventSink,
    address: &str,
    mut tail: Option<&mut VecDeque<String>>,
) {
    let Some(stream) = stream else { return };
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = redactor.apply(line.trim_end_matches(['\n', '\r']));
        if let Some(tail) = tail.as_deref_mut() {
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line.clone());
        }
        events.emit(Event::Note {
            address: address.to_string(),
            message: line,
        });
    }
}
