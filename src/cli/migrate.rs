//! The `migrate status|up` and `db restore` commands. The migrations operation itself
//! (plan section, apply step, checkpoints) lives in `operations::migrations`.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

use super::commands::{backend_for, load_stack};
use super::output;
use super::{Exit, StackArgs};
use crate::migrations::{self, Mode};
use crate::operations::migrations::{
    DIGEST_RECORD, MigrateFlags, Step, checkpoint, database_url, db_identifier, set_for,
};
use crate::providers::{Cx, aws_err};

pub async fn status(args: &StackArgs) -> anyhow::Result<Exit> {
    let stack = load_stack(args)?;
    let m = stack
        .migrations
        .as_ref()
        .ok_or_else(|| anyhow!("{} has no [migrations] table", args.stack.display()))?;
    if let Some(t) = &m.task {
        bail!(
            "the migrations run as a one-off task of {} (`{}`): their history is the app's own tool's; `stackwright plan` says when the task runs next",
            t.service,
            t.command.join(" ")
        );
    }
    let aws = super::commands::connect(&stack).await?;
    let url = database_url(m, &aws)
        .await
        .map_err(|e| anyhow!(e))?
        .ok_or_else(|| {
            anyhow!("the database URL parameter does not exist yet; apply the stack first")
        })?;
    let set = set_for(m);
    if let Mode::Command(argv) = &set.mode {
        let state = backend_for(args, &stack).await?.load().await?;
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
    if let Some(t) = &decl.task {
        // The task needs the service's input resolved against data reads and every
        // dependency: that is apply's work, which also keeps the run before the service moves.
        bail!(
            "the migrations run as a one-off task of {}: run `stackwright apply` (add --force-migrations to run the task without a new revision)",
            t.service
        );
    }
    let backend = backend_for(args, &stack).await?;
    let backend = &*backend;
    let state = backend.load().await?;
    if state
        .as_ref()
        .is_none_or(|s| !s.resources.contains_key(&decl.database))
    {
        bail!(
            "{} is not in state yet: run `stackwright apply` first, which creates it and migrates",
            decl.database
        );
    }
    let aws = super::commands::connect(&stack).await?;
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
                    "Nothing to migrate: the tool's folder is unchanged since its last successful run (use --force-migrations to run anyway).",
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
        resume: checkpoint(state.as_ref()),
    };
    match step.run(&Default::default()).await {
        Ok(records) => {
            if !records.is_empty() {
                let _lock = backend.lock("migrate", Duration::from_secs(30)).await?;
                let mut st = crate::apply::load_for_write(backend)
                    .await?
                    .context("state vanished during the migration")?;
                let mut d = crate::state::history::Draft::new("migrate up");
                d.stack_digest = Some(stack.digest.clone());
                d.stack_dir = stack.path.parent().map(Into::into);
                d.caller_arn = aws.identity.get().map(|c| c.arn.clone());
                if let Some(Value::String(id)) =
                    records.get(crate::operations::migrations::SNAPSHOT_RECORD)
                {
                    d.snapshots.push(id.clone());
                }
                d = d.touched(&decl.database, "migrate", "done");
                for (k, v) in records {
                    if v.is_null() {
                        st.records.remove(&k);
                    } else {
                        st.records.insert(k, v);
                    }
                }
                let expected = st.saved_serial();
                backend.save(&mut st, expected, &d).await?;
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
    let backend = backend_for(args, &stack).await?;
    let backend = &*backend;
    let state = backend.load().await?;
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
    let aws = super::commands::connect(&stack).await?;
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
    let cx = Cx::new(&aws, &database, &events, wait);
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
