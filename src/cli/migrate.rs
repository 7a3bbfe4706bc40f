//! Where the engine meets database migrations: the plan's migrations section, the apply
//! step (snapshot → migrate → verify) slotted into the graph after the database, and the
//! `migrate status|up` and `db restore` commands.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

use super::commands::{MigrateFlags, backend_for, load_stack};
use super::output;
use super::{Exit, StackArgs};
use crate::apply::events::{Event, EventSink};
use crate::apply::{Extra, Records};
use crate::migrations::{self, MigrationFile, MigrationSet, Mode, RunOptions};
use crate::plan::{Action, MigrationsPlan, Plan};
use crate::providers::{Aws, Cx, aws_err};
use crate::secret::SecretString;
use crate::stack::{MigrationsDecl, SnapshotPolicy, Stack, UrlSource};
use crate::state::{Backend, LocalBackend, State};

const DIGEST_RECORD: &str = "migrations.command_digest";
const SNAPSHOT_RECORD: &str = "migrations.last_snapshot";

fn set_for(m: &MigrationsDecl) -> MigrationSet {
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
async fn database_url(m: &MigrationsDecl, aws: &Aws) -> Result<Option<SecretString>, String> {
    match &m.url {
        UrlSource::Env(_, s) => Ok(Some(s.clone())),
        UrlSource::Ssm(name) => match aws
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
                if e.code.as_deref() == Some("ParameterNotFound") {
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

fn db_identifier(stack: &Stack, state: Option<&State>, database: &str) -> Option<String> {
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

fn restore_command(stack: &Stack, snapshot: &str) -> String {
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

    if let Mode::Command(argv) = &set.mode {
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

struct Step<'a> {
    stack: &'a Stack,
    decl: &'a MigrationsDecl,
    aws: &'a Aws,
    events: &'a dyn EventSink,
    flags: MigrateFlags,
    wait: Duration,
    /// The instance was created by this same apply: nothing to protect.
    fresh_db: bool,
    identifier: Option<String>,
    command_digest: Option<String>,
}

impl Step<'_> {
    fn note(&self, msg: impl Into<String>) {
        self.events.emit(Event::Note {
            address: "migrations".into(),
            message: msg.into(),
        });
    }

    /// Snapshot → migrate → verify. Returns records for state.
    async fn run(&self) -> Result<Records, String> {
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
        let hook = |pending: &[MigrationFile]| -> futures::future::BoxFuture<'_, Result<Option<String>, String>> {
            let last = pending.last().map(|f| format!("{:04}", f.version)).unwrap_or_else(|| "tool".into());
            let taken = &taken;
            Box::pin(async move {
                let id = self.snapshot(&last).await?;
                *taken.lock().expect("snapshot lock") = id.clone();
                Ok(id)
            })
        };
        let opts = RunOptions {
            snapshot_id: None,
            before_first: Some(&hook),
            applied_by,
            allow_unsafe: self.flags.allow_unsafe,
            events: self.events,
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
        let report = result.map_err(|e| {
            let restore = snapshot_id
                .as_ref()
                .map(|id| {
                    format!(
                        "\n  restore the pre-migration snapshot with: {}",
                        restore_command(self.stack, id)
                    )
                })
                .unwrap_or_default();
            format!("{e}{restore}")
        })?;
        if report.applied.is_empty() && matches!(set.mode, Mode::Sql) {
            self.note("no pending migrations");
        }
        for a in &report.applied {
            self.note(format!("applied {:04} {}", a.version, a.name));
        }
        for v in &report.verified {
            self.note(format!("verify ok: {v}"));
        }
        Ok(records)
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
async fn take_snapshot(
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
        aws,
        address: "migrations",
        events,
        wait_timeout: wait,
        poll_interval: Duration::from_secs(2),
        wanted: None,
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
    backend: &'a LocalBackend,
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
    if section.pending.is_empty() && section.unknown_reason.is_none() {
        return Vec::new();
    }
    let state = backend.load().ok().flatten();
    let db_action = plan
        .change(&decl.database)
        .map(|c| c.action)
        .unwrap_or(Action::NoOp);
    let mut after: Vec<String> = vec![decl.database.clone()];
    if let UrlSource::Ssm(name) = &decl.url {
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
    let before: Vec<String> = stack
        .resources
        .values()
        .filter(|r| r.depends_on.iter().any(|d| d == "migrations"))
        .map(|r| r.address.clone())
        .collect();
    let step = std::sync::Arc::new(Step {
        stack,
        decl,
        aws,
        events,
        flags,
        wait,
        fresh_db: matches!(db_action, Action::Create | Action::Replace),
        identifier: db_identifier(stack, state.as_ref(), &decl.database),
        command_digest: section.command_digest.clone(),
    });
    vec![Extra {
        address: "migrations".into(),
        after,
        before,
        run: Box::new(move || {
            let step = step.clone();
            Box::pin(async move { step.run().await })
        }),
    }]
}

pub async fn status(args: &StackArgs) -> anyhow::Result<Exit> {
    let stack = load_stack(args)?;
    let m = stack
        .migrations
        .as_ref()
        .ok_or_else(|| anyhow!("{} has no [migrations] table", args.stack.display()))?;
    let aws = Aws::load(stack.region.as_deref()).await;
    let url = database_url(m, &aws)
        .await
        .map_err(|e| anyhow!(e))?
        .ok_or_else(|| {
            anyhow!("the database URL parameter does not exist yet; apply the stack first")
        })?;
    let set = set_for(m);
    if let Mode::Command(argv) = &set.mode {
        let state = backend_for(args, &stack).load()?;
        let digest = migrations::dir_digest(&set.dir)?;
        let prev = state
            .as_ref()
            .and_then(|s| s.records.get(DIGEST_RECORD))
            .and_then(Value::as_str);
        output::println(&format!(
            "tool mode: `{}` on {}",
            argv.join(" "),
            set.dir.display()
        ));
        output::println(if prev == Some(digest.as_str()) {
            "  up to date (folder unchanged since the last successful run)"
        } else {
            "  pending (folder changed since the last successful run)"
        });
        return Ok(Exit::Success);
    }
    let files = migrations::load_dir(&set.dir)?;
    let st = migrations::status(&url, &files).await?;
    output::println(&format!(
        "Migrations in {} against {}:",
        set.dir.display(),
        m.database
    ));
    for a in &st.applied {
        output::println(&format!(
            "  applied   {:04} {} ({}{})",
            a.version,
            a.name,
            a.applied_at,
            a.snapshot_id
                .as_deref()
                .map(|s| format!(", snapshot {s}"))
                .unwrap_or_default()
        ));
    }
    for (a, _) in &st.modified {
        output::println(&format!(
            "  MODIFIED  {:04} {} (the file changed after it was applied)",
            a.version, a.name
        ));
    }
    for a in &st.missing {
        output::println(&format!(
            "  MISSING   {:04} {} (applied, but the file is gone)",
            a.version, a.name
        ));
    }
    for f in &st.out_of_order {
        output::println(&format!(
            "  OUT OF ORDER {:04} {} (numbered below the last applied one)",
            f.version, f.name
        ));
    }
    for f in &st.pending {
        output::println(&format!("  pending   {:04} {}", f.version, f.name));
    }
    let bad = !st.modified.is_empty() || !st.missing.is_empty() || !st.out_of_order.is_empty();
    Ok(if bad { Exit::Failure } else { Exit::Success })
}

/// Only the migration part of apply: snapshot, migrate, verify.
pub async fn up(args: &StackArgs, flags: MigrateFlags, wait: Duration) -> anyhow::Result<Exit> {
    let stack = load_stack(args)?;
    let decl = stack
        .migrations
        .as_ref()
        .ok_or_else(|| anyhow!("{} has no [migrations] table", args.stack.display()))?;
    let backend = backend_for(args, &stack);
    let state = backend.load()?;
    if state
        .as_ref()
        .is_none_or(|s| !s.resources.contains_key(&decl.database))
    {
        bail!(
            "{} is not in state yet: run `stackwright apply` first, which creates it and migrates",
            decl.database
        );
    }
    let aws = Aws::load(stack.region.as_deref()).await;
    let set = set_for(decl);
    let command_digest = match &set.mode {
        Mode::Command(_) => {
            let d = migrations::dir_digest(&set.dir)?;
            let prev = state
                .as_ref()
                .and_then(|s| s.records.get(DIGEST_RECORD))
                .and_then(Value::as_str);
            if prev == Some(d.as_str()) && !flags.force {
                output::success(
                    "Nothing to migrate: the tool's folder is unchanged since its last successful run (use --force to run anyway).",
                );
                return Ok(Exit::Success);
            }
            Some(d)
        }
        Mode::Sql => None,
    };
    let events = output::TermEvents::new(false);
    let step = Step {
        stack: &stack,
        decl,
        aws: &aws,
        events: &events,
        flags,
        wait,
        fresh_db: false,
        identifier: db_identifier(&stack, state.as_ref(), &decl.database),
        command_digest,
    };
    match step.run().await {
        Ok(records) => {
            if !records.is_empty() {
                let _lock = backend.lock("migrate")?;
                let mut st = backend
                    .load()?
                    .context("state vanished during the migration")?;
                st.records.extend(records);
                st.serial += 1;
                backend.save(&st)?;
            }
            output::success("Migrations complete.");
            Ok(Exit::Success)
        }
        Err(e) => {
            output::eprintln(&format!(
                "{} {e}",
                output::paint(anstyle::AnsiColor::Red.on_default().bold(), "Error:")
            ));
            Ok(Exit::Failure)
        }
    }
}

/// RestoreDBInstanceFromDBSnapshot into a new instance, then explain how to adopt it.
pub async fn restore(
    args: &StackArgs,
    snapshot: &str,
    to: Option<&str>,
    wait: Duration,
) -> anyhow::Result<Exit> {
    let stack = load_stack(args)?;
    let decl = stack.migrations.as_ref();
    let backend = backend_for(args, &stack);
    let state = backend.load()?;
    let database = decl.map(|d| d.database.clone()).or_else(|| {
        stack
            .resources
            .values()
            .find(|r| r.kind == "rds_instance")
            .map(|r| r.address.clone())
    });
    let database = database.ok_or_else(|| {
        anyhow!(
            "{} declares no rds_instance to restore",
            args.stack.display()
        )
    })?;
    let attrs = state
        .as_ref()
        .and_then(|s| s.resources.get(&database))
        .map(|r| r.attributes.clone())
        .unwrap_or_default();
    let original = db_identifier(&stack, state.as_ref(), &database).unwrap_or_else(|| "db".into());
    let new_id = to.map(str::to_owned).unwrap_or_else(|| {
        format!(
            "{original}-restored-{}",
            chrono::Utc::now().format("%Y%m%d%H%M%S")
        )
    });
    let aws = Aws::load(stack.region.as_deref()).await;
    let mut req = aws
        .rds()
        .restore_db_instance_from_db_snapshot()
        .db_instance_identifier(&new_id)
        .db_snapshot_identifier(snapshot);
    if let Some(c) = attrs.get("instance_class").and_then(Value::as_str) {
        req = req.db_instance_class(c);
    }
    if let Some(g) = attrs.get("db_subnet_group").and_then(Value::as_str) {
        req = req.db_subnet_group_name(g);
    }
    if let Some(p) = attrs.get("parameter_group").and_then(Value::as_str) {
        req = req.db_parameter_group_name(p);
    }
    req.send()
        .await
        .map_err(|e| anyhow!("restore of snapshot {snapshot} failed: {}", aws_err(e)))?;
    let events = output::TermEvents::new(false);
    let cx = Cx {
        aws: &aws,
        address: &database,
        events: &events,
        wait_timeout: wait,
        poll_interval: Duration::from_secs(5),
        wanted: None,
    };
    crate::providers::wait_for(&cx, &format!("restored instance {new_id}"), || async {
        let out = aws
            .rds()
            .describe_db_instances()
            .db_instance_identifier(&new_id)
            .send()
            .await
            .map_err(aws_err)?;
        let status = out
            .db_instances()
            .first()
            .and_then(|d| d.db_instance_status())
            .unwrap_or("unknown")
            .to_owned();
        Ok((status != "available").then_some(status))
    })
    .await?;
    output::success(&format!(
        "Restored snapshot {snapshot} into new instance {new_id}."
    ));
    output::println(&format!(
        "To make it the stack's database ({database}, identifier {original}):\n  1. rename or delete the damaged instance {original} (e.g. aws rds modify-db-instance --db-instance-identifier {original} --new-db-instance-identifier {original}-damaged --apply-immediately)\n  2. rename the restored one: aws rds modify-db-instance --db-instance-identifier {new_id} --new-db-instance-identifier {original} --apply-immediately\n  3. run `stackwright plan {}{}`: it should show no replacement of {database}\nOr, to keep the new name, set identifier = \"{new_id}\" in [{database}] — note the plan will then replace the instance.",
        args.stack.display(),
        stack
            .env
            .as_deref()
            .map(|e| format!(" --env {e}"))
            .unwrap_or_default(),
    ));
    Ok(Exit::Success)
}
