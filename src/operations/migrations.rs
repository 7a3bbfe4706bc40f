//! Database migrations as an operation of apply: the plan's migrations section, and the
//! step (snapshot → migrate → verify) slotted into the graph after the database, with a
//! checkpoint in state after the snapshot and after every file, so an interrupted run is
//! reported by the next plan ("interrupted after 0003") and resumed by the next apply under
//! the same snapshot.
//!
//! Three modes: SQL files run by Stackwright, the app's own tool run locally (`command`),
//! and the app's own tool run as a one-off ECS task of the service's new revision
//! (`task`): after the snapshot, before the service moves, exit code 0 required.

use std::time::Duration;

use anyhow::anyhow;
use serde_json::Value;

use crate::apply::{Extra, Records};
use crate::events::{Activity, Event, EventSink};
use crate::migrations::{self, MigrationFile, MigrationSet, Mode, RunOptions};
use crate::plan::{Action, MigrationsPlan, Plan};
use crate::providers::{Aws, Cx, aws_err};
use crate::secret::SecretString;
use crate::stack::{MigrationsDecl, SnapshotPolicy, Stack, UrlSource};
use crate::state::State;

/// What the command line says about migrations.
#[derive(Clone, Copy, Debug, Default)]
pub struct MigrateFlags {
    pub allow_unsafe: bool,
    pub force: bool,
}

pub(crate) const DIGEST_RECORD: &str = "migrations.command_digest";
pub(crate) const SNAPSHOT_RECORD: &str = "migrations.last_snapshot";
/// The checkpoint of a migrations run in progress: its snapshot and the files applied so
/// far. Written (journaled) as each step completes, removed when the run succeeds.
const CHECKPOINT_RECORD: &str = "operations.migrations";

/// A migrations run that started and did not finish, as its checkpoint records it.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The snapshot taken before the first statement (it protects everything after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Versions applied by that run, in order.
    #[serde(default)]
    pub applied: Vec<String>,
    pub since: String,
}

/// The checkpoint an interrupted run left in state, if any.
pub fn checkpoint(state: Option<&State>) -> Option<Checkpoint> {
    state
        .and_then(|s| s.records.get(CHECKPOINT_RECORD))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Journals a checkpoint through the apply's event stream (the executor records it).
fn emit_checkpoint(events: &dyn EventSink, c: &Checkpoint) {
    events.emit(Event::Checkpoint {
        key: CHECKPOINT_RECORD.into(),
        value: serde_json::to_value(c).expect("checkpoint json"),
    });
}

/// Forwards the runner's events and checkpoints each migration file as it completes.
struct Checkpointing<'a> {
    inner: &'a dyn EventSink,
    state: std::sync::Mutex<Checkpoint>,
}

impl EventSink for Checkpointing<'_> {
    fn emit(&self, event: Event) {
        if let Event::ActionFinished {
            action: Activity::Migrate(file),
            error: None,
            ..
        } = &event
        {
            let mut c = self.state.lock().expect("checkpoint lock");
            c.applied
                .push(file.split('_').next().unwrap_or(file).to_owned());
            emit_checkpoint(self.inner, &c);
        }
        self.inner.emit(event);
    }
}

pub(crate) fn set_for(m: &MigrationsDecl) -> MigrationSet {
    MigrationSet {
        dir: m.dir.clone(),
        mode: match &m.command {
            Some(argv) => Mode::Command(argv.clone()),
            None => Mode::Sql,
        },
        verify: m.verify.clone(),
        url_env: m.url_env.clone(),
        lock_timeout: Duration::from_secs(30),
        statement_timeout: None,
        workdir: std::env::current_dir().unwrap_or_default(),
    }
}

/// The database URL, from SSM (decrypted, in memory only) or the environment.
pub(crate) async fn database_url(
    m: &MigrationsDecl,
    aws: &Aws,
) -> Result<Option<SecretString>, String> {
    match &m.url {
        None => Ok(None),
        Some(UrlSource::Env(_, s)) => Ok(Some(s.clone())),
        Some(UrlSource::Ssm(name)) => match aws
            .ssm()
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .parameter()
                .and_then(|p| p.value())
                .map(SecretString::new)),
            Err(e) => {
                let e = aws_err(e);
                if e.is("ParameterNotFound") {
                    Ok(None)
                } else {
                    Err(format!(
                        "reading the database URL from SSM parameter {name} failed: {e}"
                    ))
                }
            }
        },
    }
}

pub(crate) fn db_identifier(
    stack: &Stack,
    state: Option<&State>,
    database: &str,
) -> Option<String> {
    state
        .and_then(|s| s.resources.get(database))
        .and_then(|r| {
            r.attributes
                .get("identifier")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .or_else(|| {
            let r = stack.resources.get(database)?;
            match r.attrs.get("identifier")? {
                crate::stack::Expr::Lit(Value::String(s)) => Some(s.clone()),
                _ => None,
            }
        })
}

fn snapshot_name(identifier: &str, last_version: &str) -> String {
    format!(
        "{identifier}-pre-{last_version}-{}",
        chrono::Utc::now().format("%Y%m%d%H%M%S")
    )
}

pub(crate) fn restore_command(stack: &Stack, snapshot: &str) -> String {
    let env = stack
        .env
        .as_deref()
        .map(|e| format!(" --env {e}"))
        .unwrap_or_default();
    format!(
        "stackwright db restore {}{env} --snapshot {snapshot}",
        stack.path.display()
    )
}

/// The line a failed run's error ends with when a snapshot protects it.
fn restore_hint(stack: &Stack, snapshot: Option<&str>) -> String {
    snapshot
        .map(|id| {
            format!(
                "\n  restore the pre-migration snapshot with: {}",
                restore_command(stack, id)
            )
        })
        .unwrap_or_default()
}

fn pending_label(f: &MigrationFile) -> String {
    f.path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| f.name.clone())
}

/// The plan's migrations section. Refuses (an error) an edited, missing or out-of-order
/// applied migration before anything runs.
pub async fn plan_section(
    stack: &Stack,
    state: Option<&State>,
    plan: &Plan,
    aws: &Aws,
    flags: MigrateFlags,
) -> anyhow::Result<Option<MigrationsPlan>> {
    let Some(m) = &stack.migrations else {
        return Ok(None);
    };
    let set = set_for(m);
    let db_action = plan
        .change(&m.database)
        .map(|c| c.action)
        .unwrap_or(Action::NoOp);
    let fresh_db = matches!(db_action, Action::Create | Action::Replace);
    let mut section = MigrationsPlan {
        database: m.database.clone(),
        ..Default::default()
    };
    if let Some(c) = checkpoint(state)
        && m.task.is_some()
    {
        section.interrupted = Some(format!(
            "the migration task of a run started {} did not finish{}; apply runs it again{}",
            c.since,
            c.snapshot
                .as_deref()
                .map(|s| format!(" (snapshot {s})"))
                .unwrap_or_default(),
            if c.snapshot.is_some() {
                " under the same snapshot"
            } else {
                ""
            }
        ));
    } else if let Some(c) = checkpoint(state) {
        section.interrupted = Some(format!(
            "interrupted {} (run started {}{}); apply resumes from there{}",
            match c.applied.last() {
                Some(v) => format!("after {v}"),
                None => "before the first file".to_owned(),
            },
            c.since,
            c.snapshot
                .as_deref()
                .map(|s| format!(", snapshot {s}"))
                .unwrap_or_default(),
            if c.snapshot.is_some() {
                " under the same snapshot"
            } else {
                ""
            }
        ));
    }

    if let Some(t) = &m.task {
        if let Some(why) = task_trigger(t, plan, flags) {
            section.pending.push(format!(
                "run `{}` in a one-off task of {}'s new revision ({why})",
                t.command.join(" "),
                t.service
            ));
        }
    } else if let Mode::Command(argv) = &set.mode {
        let digest = migrations::dir_digest(&set.dir)?;
        let previous = state
            .and_then(|s| s.records.get(DIGEST_RECORD))
            .and_then(Value::as_str);
        if previous != Some(digest.as_str()) || flags.force {
            let why = match (previous, flags.force) {
                (_, true) => "forced with --migrate".to_owned(),
                (None, _) => "never run by Stackwright".to_owned(),
                (Some(p), _) => format!(
                    "{} changed: digest {} → {}",
                    set.dir.display(),
                    &p[..12.min(p.len())],
                    &digest[..12]
                ),
            };
            section
                .pending
                .push(format!("run `{}` ({why})", argv.join(" ")));
        }
        section.command_digest = Some(digest);
    } else {
        let files = migrations::load_dir(&set.dir)?;
        let url = if fresh_db {
            None
        } else {
            database_url(m, aws).await.map_err(|e| anyhow!(e))?
        };
        let pending: Vec<MigrationFile> = match url {
            None => {
                section.unknown_reason = Some(if fresh_db {
                    format!(
                        "{} is created by this apply: every migration will run",
                        m.database
                    )
                } else {
                    "the database URL is not readable yet (its SSM parameter is created by this apply): every migration not yet recorded will run".to_owned()
                });
                files
            }
            Some(url) => {
                let status = migrations::status(&url, &files)
                    .await
                    .map_err(|e| anyhow!("{}: {e}", m.database))?;
                migrations::check(&status, &[], true)
                    .map_err(|e| anyhow!("migrations refused before anything runs: {e}"))?;
                status.pending
            }
        };
        for f in &pending {
            section.findings.extend(migrations::lint(f));
            section.pending.push(pending_label(f));
        }
        let blocking: Vec<String> = section
            .findings
            .iter()
            .filter(|f| f.blocking && f.allowed.is_none())
            .map(|f| format!("{} ({})", f.file, f.rule))
            .collect();
        if !blocking.is_empty() && !flags.allow_unsafe {
            section.blocked = Some(format!(
                "unsafe migrations block apply: {}; add `-- stackwright:allow <rule> because <reason>` to the file, or pass --allow-unsafe-migrations",
                blocking.join(", ")
            ));
        }
    }
    section.snapshot = if section.pending.is_empty() && section.unknown_reason.is_none() {
        "none needed".into()
    } else if fresh_db {
        "none: the instance is created by this apply, there is nothing to protect".into()
    } else {
        match &m.snapshot {
            SnapshotPolicy::Off { reason } => format!("OFF ({reason})"),
            SnapshotPolicy::Before => {
                let id = db_identifier(stack, state, &m.database)
                    .unwrap_or_else(|| "(identifier)".into());
                format!("{id}-pre-<last version>-<UTC time> is taken before the first statement")
            }
        }
    };
    Ok(Some(section))
}

/// Why the task runs in this apply, if it does: the service gets a new task definition
/// (the image that brings new migrations is part of it), or `--migrate` forces it.
fn task_trigger(
    t: &crate::stack::TaskMigration,
    plan: &Plan,
    flags: MigrateFlags,
) -> Option<String> {
    let change = plan.change(&t.service);
    if flags.force {
        return Some("forced with --migrate".into());
    }
    match change.map(|c| c.action) {
        Some(Action::Create) => Some(format!("{} is created by this apply", t.service)),
        Some(Action::Replace | Action::CreateThenDelete) => {
            Some(format!("{} is replaced by this apply", t.service))
        }
        Some(Action::Update)
            if change.is_some_and(|c| c.changed_attrs().iter().any(|a| a == "task")) =>
        {
            Some("its task changes".into())
        }
        _ => None,
    }
}

pub(crate) struct Step<'a> {
    pub(crate) stack: &'a Stack,
    pub(crate) decl: &'a MigrationsDecl,
    pub(crate) aws: &'a Aws,
    pub(crate) events: &'a dyn EventSink,
    pub(crate) flags: MigrateFlags,
    pub(crate) wait: Duration,
    /// The instance was created by this same apply: nothing to protect.
    pub(crate) fresh_db: bool,
    pub(crate) identifier: Option<String>,
    pub(crate) command_digest: Option<String>,
    /// Left by an interrupted run: its snapshot is reused rather than taking a second one.
    pub(crate) resume: Option<Checkpoint>,
}

/// The resolved input of the task mode's service, as apply would send it now.
fn service_input(
    stack: &Stack,
    address: &str,
    known: &std::collections::BTreeMap<String, crate::value::Attrs>,
) -> Result<crate::value::Resolved, String> {
    let r = stack
        .resources
        .get(address)
        .ok_or_else(|| format!("{address} is not in the stack"))?;
    let p = crate::providers::registry()
        .provider(&r.kind)
        .ok_or_else(|| format!("unknown kind {}", r.kind))?;
    crate::eval::input_of(p, r, known)
}

impl Step<'_> {
    /// The same step emitting to `events` (the executor's sink, which journals checkpoints).
    fn with_events<'s>(&'s self, events: &'s dyn EventSink) -> Step<'s> {
        Step {
            stack: self.stack,
            decl: self.decl,
            aws: self.aws,
            events,
            flags: self.flags,
            wait: self.wait,
            fresh_db: self.fresh_db,
            identifier: self.identifier.clone(),
            command_digest: self.command_digest.clone(),
            resume: self.resume.clone(),
        }
    }

    fn note(&self, msg: impl Into<String>) {
        self.events.emit(Event::Note {
            address: "migrations".into(),
            message: msg.into(),
        });
    }

    /// Task mode: register the revision → snapshot → RunTask with the command → exit 0
    /// required (→ verify). The service moves only after this returns.
    async fn run_task(
        &self,
        t: &crate::stack::TaskMigration,
        known: &std::collections::BTreeMap<String, crate::value::Attrs>,
    ) -> Result<Records, String> {
        let input = service_input(self.stack, &t.service, known)?;
        let cx = Cx {
            poll_interval: Duration::from_secs(3),
            ..Cx::new(self.aws, &t.service, self.events, self.wait)
        };
        let mut records = Records::new();
        let snapshot = match self.reusable_snapshot().await {
            Some(id) => Some(id),
            None => self.snapshot("task").await?,
        };
        if let Some(id) = &snapshot {
            records.insert(SNAPSHOT_RECORD.into(), Value::String(id.clone()));
        }
        // Checkpoint before the task starts: a kill from here on resumes under this snapshot.
        let mut c = self.resume.clone().unwrap_or_default();
        c.snapshot = snapshot.clone();
        if c.since.is_empty() {
            c.since = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        }
        emit_checkpoint(self.events, &c);
        let restore = restore_hint(self.stack, snapshot.as_deref());
        self.note(format!(
            "running `{}` in a one-off task of {}",
            t.command.join(" "),
            t.service
        ));
        let run = crate::providers::ecs_service::run_once(
            &cx,
            &input,
            t.container.as_deref(),
            &t.command,
        )
        .await
        .map_err(|e| format!("the migration task did not run to its end: {e}{restore}"))?;
        match run.exit_code {
            Some(0) => self.note(format!(
                "migration task {} ({}) exited 0",
                run.task_arn, run.container
            )),
            code => {
                return Err(format!(
                    "migration task {} of {} (container {}) {}{}; {} stays on its current revision{restore}",
                    run.task_arn,
                    run.task_definition,
                    run.container,
                    match code {
                        Some(n) => format!("exited with code {n}"),
                        None => "stopped before its container ran".to_owned(),
                    },
                    if run.reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", run.reason)
                    },
                    t.service
                ));
            }
        }
        if let Some(url) = database_url(self.decl, self.aws).await? {
            let verified = migrations::verify(&url, &self.decl.verify)
                .await
                .map_err(|e| format!("{e}{restore}"))?;
            for v in &verified {
                self.note(format!("verify ok: {v}"));
            }
        }
        records.insert(CHECKPOINT_RECORD.into(), Value::Null);
        Ok(records)
    }

    /// Snapshot → migrate → verify. Returns records for state.
    pub(crate) async fn run(
        &self,
        known: &std::collections::BTreeMap<String, crate::value::Attrs>,
    ) -> Result<Records, String> {
        if let Some(t) = &self.decl.task {
            return self.run_task(t, known).await;
        }
        let set = set_for(self.decl);
        let url = database_url(self.decl, self.aws)
            .await?
            .ok_or_else(|| "the database URL parameter does not exist; create it (e.g. an ssm_parameter in this stack) and apply again".to_owned())?;
        let mut records = Records::new();
        let applied_by = format!(
            "{}@{}",
            whoami::username(),
            whoami::fallible::hostname().unwrap_or_default()
        );
        let files = match &set.mode {
            Mode::Sql => {
                // A read-only look first, so an edited or missing file is refused before any
                // snapshot; the runner repeats these checks under its lock.
                let files = migrations::load_dir(&set.dir).map_err(|e| e.to_string())?;
                let status = migrations::status(&url, &files)
                    .await
                    .map_err(|e| e.to_string())?;
                let findings: Vec<_> = status.pending.iter().flat_map(migrations::lint).collect();
                migrations::check(&status, &findings, self.flags.allow_unsafe)
                    .map_err(|e| format!("refused before any snapshot or SQL: {e}"))?;
                files
            }
            Mode::Command(_) => Vec::new(),
        };
        // The snapshot is taken by the runner's hook: under the migration lock, after its
        // checks, and only when something is pending.
        let taken: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        let checkpointing = Checkpointing {
            inner: self.events,
            state: std::sync::Mutex::new(self.resume.clone().unwrap_or_default()),
        };
        let hook = |pending: &[MigrationFile]| -> futures::future::BoxFuture<'_, Result<Option<String>, String>> {
            let last = pending.last().map(|f| format!("{:04}", f.version)).unwrap_or_else(|| "tool".into());
            let taken = &taken;
            let checkpointing = &checkpointing;
            Box::pin(async move {
                let id = match self.reusable_snapshot().await {
                    Some(id) => Some(id),
                    None => self.snapshot(&last).await?,
                };
                *taken.lock().expect("snapshot lock") = id.clone();
                // Checkpoint before the first statement: a kill from here on resumes
                // under this snapshot.
                let mut c = checkpointing.state.lock().expect("checkpoint lock");
                c.snapshot = id.clone();
                if c.since.is_empty() {
                    c.since = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
                }
                emit_checkpoint(self.events, &c);
                Ok(id)
            })
        };
        let opts = RunOptions {
            snapshot_id: None,
            before_first: Some(&hook),
            applied_by,
            allow_unsafe: self.flags.allow_unsafe,
            events: &checkpointing,
            address: "migrations".into(),
        };
        let result = match &set.mode {
            Mode::Sql => migrations::run_sql(&set, &url, &files, &opts).await,
            Mode::Command(_) => {
                let digest = self.command_digest.clone().unwrap_or_default();
                let r = migrations::run_command(&set, &url, &digest, &opts).await;
                if r.is_ok() {
                    records.insert(DIGEST_RECORD.into(), Value::String(digest));
                }
                r
            }
        };
        let snapshot_id = taken.lock().expect("snapshot lock").clone();
        if let Some(id) = &snapshot_id {
            records.insert(SNAPSHOT_RECORD.into(), Value::String(id.clone()));
        }
        let report = result
            .map_err(|e| format!("{e}{}", restore_hint(self.stack, snapshot_id.as_deref())))?;
        if report.applied.is_empty() && matches!(set.mode, Mode::Sql) {
            self.note("no pending migrations");
        }
        // Done: the operation is no longer in progress.
        records.insert(CHECKPOINT_RECORD.into(), Value::Null);
        for a in &report.applied {
            self.note(format!("applied {:04} {}", a.version, a.name));
        }
        for v in &report.verified {
            self.note(format!("verify ok: {v}"));
        }
        Ok(records)
    }

    /// The snapshot of an interrupted run, when it still exists: nothing has been applied
    /// since that it does not protect, so a second one would only cost time.
    async fn reusable_snapshot(&self) -> Option<String> {
        let id = self.resume.as_ref()?.snapshot.clone()?;
        let out = self
            .aws
            .rds()
            .describe_db_snapshots()
            .db_snapshot_identifier(&id)
            .send()
            .await
            .ok()?;
        let status = out.db_snapshots().first()?.status()?.to_owned();
        (status == "available").then(|| {
            self.note(format!(
                "reusing snapshot {id} taken by the interrupted run; it protects everything applied since"
            ));
            id
        })
    }

    async fn snapshot(&self, last: &str) -> Result<Option<String>, String> {
        if self.fresh_db {
            self.note("no snapshot: the database instance was created by this apply, there is nothing to protect");
            return Ok(None);
        }
        if let SnapshotPolicy::Off { reason } = &self.decl.snapshot {
            self.note(format!("no snapshot (snapshot = \"off\": {reason})"));
            return Ok(None);
        }
        let ident = self
            .identifier
            .clone()
            .ok_or("cannot tell the database instance's identifier for the snapshot")?;
        let id = snapshot_name(&ident, last);
        take_snapshot(self.aws, self.events, &ident, &id, self.wait).await?;
        self.note(format!(
            "snapshot {id} is available; restore with: {}",
            restore_command(self.stack, &id)
        ));
        Ok(Some(id))
    }
}

/// CreateDBSnapshot and wait until it is `available`.
pub(crate) async fn take_snapshot(
    aws: &Aws,
    events: &dyn EventSink,
    instance: &str,
    id: &str,
    wait: Duration,
) -> Result<(), String> {
    events.emit(Event::Note {
        address: "migrations".into(),
        message: format!("taking snapshot {id} of {instance}"),
    });
    aws.rds()
        .create_db_snapshot()
        .db_instance_identifier(instance)
        .db_snapshot_identifier(id)
        .send()
        .await
        .map_err(|e| format!("snapshot {id} failed: {}", aws_err(e)))?;
    let cx = Cx {
        poll_interval: Duration::from_secs(2),
        ..Cx::new(aws, "migrations", events, wait)
    };
    crate::providers::wait_for(&cx, &format!("snapshot {id}"), || async {
        let out = aws
            .rds()
            .describe_db_snapshots()
            .db_snapshot_identifier(id)
            .send()
            .await
            .map_err(aws_err)?;
        let status = out
            .db_snapshots()
            .first()
            .and_then(|s| s.status())
            .unwrap_or("unknown")
            .to_owned();
        Ok((status != "available").then_some(status))
    })
    .await
    .map_err(|e| e.to_string())
}

/// The migrations step for apply, placed after the database (and the URL parameter) and
/// before anything that declares `depends_on = ["migrations"]`.
pub fn hooks<'a>(
    stack: &'a Stack,
    plan: &'a Plan,
    state: Option<&State>,
    aws: &'a Aws,
    events: &'a dyn EventSink,
    flags: MigrateFlags,
    wait: Duration,
) -> Vec<Extra<'a>> {
    let Some(decl) = &stack.migrations else {
        return Vec::new();
    };
    let Some(section) = &plan.migrations else {
        return Vec::new();
    };
    if section.pending.is_empty()
        && section.unknown_reason.is_none()
        && section.interrupted.is_none()
    {
        return Vec::new();
    }
    let db_action = plan
        .change(&decl.database)
        .map(|c| c.action)
        .unwrap_or(Action::NoOp);
    let mut after: Vec<String> = vec![decl.database.clone()];
    let mut before: Vec<String> = Vec::new();
    if let Some(t) = &decl.task {
        // The one-off task needs what the service needs (cluster, network, parameters, log
        // group), and the service waits for it.
        if let Some(r) = stack.resources.get(&t.service) {
            after.extend(r.dependencies().into_iter().filter(|d| d != "migrations"));
        }
        before.push(t.service.clone());
    }
    if let Some(UrlSource::Ssm(name)) = &decl.url {
        // The URL parameter may be written by this same apply.
        for r in stack
            .resources
            .values()
            .filter(|r| r.kind == "ssm_parameter")
        {
            if matches!(r.attrs.get("name"), Some(crate::stack::Expr::Lit(Value::String(n))) if n == name)
            {
                after.push(r.address.clone());
            }
        }
    }
    before.extend(
        stack
            .resources
            .values()
            .filter(|r| r.depends_on.iter().any(|d| d == "migrations"))
            .map(|r| r.address.clone()),
    );
    let step = std::sync::Arc::new(Step {
        stack,
        decl,
        aws,
        events,
        flags,
        wait,
        fresh_db: matches!(db_action, Action::Create | Action::Replace),
        identifier: db_identifier(stack, state, &decl.database),
        command_digest: section.command_digest.clone(),
        resume: checkpoint(state),
    });
    vec![Extra {
        address: "migrations".into(),
        after,
        before,
        run: Box::new(move |hcx| {
            let step = step.clone();
            Box::pin(async move { step.with_events(&*hcx.events).run(&hcx.known).await })
        }),
    }]
}
