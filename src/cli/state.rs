//! `stackwright state list|show|mv|rm`: read or edit what state holds without touching AWS.
//! `mv` renames an address (the resource is not recreated), `rm` forgets one (it is not
//! deleted). Both take the state lock and write one history record, like any other write.
//! `push`/`pull` copy the state and its history between the local file and the stack's S3
//! backend byte for byte (no new record: the copy is the same state, and its chain still
//! verifies); `force-unlock` removes a remote lock a killed run left behind.

use std::time::Duration;

use anyhow::bail;

use super::commands::{backend_for, check_state_belongs, load_stack_offline, open_s3};
use super::{Exit, StackArgs, output};
use crate::state::{Backend, LocalBackend, State, Unlocked, history, moved, not_in_state};

async fn existing(
    args: &StackArgs,
) -> anyhow::Result<(crate::stack::Stack, Box<dyn Backend>, State)> {
    let stack = load_stack_offline(args)?;
    let backend = backend_for(args, &stack).await?;
    let state = backend.load().await?;
    check_state_belongs(&state, &*backend, &stack)?;
    let Some(state) = state else {
        bail!(
            "no state at {}: nothing has been applied yet",
            backend.describe()
        );
    };
    Ok((stack, backend, state))
}

/// Every address in state with its kind and AWS id.
pub async fn list(args: &StackArgs) -> anyhow::Result<Exit> {
    let (_, _, state) = existing(args).await?;
    let width = state.resources.keys().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for (a, r) in &state.resources {
        out.push_str(&format!("{a:<width$}  {}\n", r.id));
    }
    output::print(&out);
    Ok(Exit::Success)
}

/// One resource as state holds it (state never holds a secret: nothing to hide).
pub async fn show(args: &StackArgs, address: &str) -> anyhow::Result<Exit> {
    let (_, _, state) = existing(args).await?;
    let Some(r) = state.resources.get(address) else {
        return Err(not_in_state(&state, address).into());
    };
    output::println(&format!("# {address}"));
    output::println(&serde_json::to_string_pretty(r)?);
    Ok(Exit::Success)
}

fn draft(stack: &crate::stack::Stack, command: &str) -> history::Draft {
    let mut d = history::Draft::new(command);
    d.stack_digest = Some(stack.digest.clone());
    d.stack_dir = stack.path.parent().map(Into::into);
    d
}

/// Renames `from` to `to` in state; what referred to `from` (dependencies) follows.
pub async fn mv(args: &StackArgs, from: &str, to: &str, lock: Duration) -> anyhow::Result<Exit> {
    let stack = load_stack_offline(args)?;
    let backend = backend_for(args, &stack).await?;
    let backend = &*backend;
    let _lock = backend.lock("state mv", lock).await?;
    let Some(mut state) = crate::apply::load_for_write(backend).await? else {
        bail!(
            "no state at {}: nothing has been applied yet",
            backend.describe()
        );
    };
    check_state_belongs(&Some(state.clone()), backend, &stack)?;
    let expected = state.saved_serial();
    moved(&mut state, from, to)?;
    let d = draft(&stack, "state mv").touched(from, &format!("move to {to}"), "done");
    backend.save(&mut state, expected, &d).await?;
    output::success(&format!(
        "Moved {from} to {to} (state serial {}). Nothing in AWS changed.",
        state.serial
    ));
    if !stack.resources.contains_key(to) {
        output::eprintln(&format!(
            "warning: the stack declares no `{to}`: the next plan would delete it. Rename the table in {} too.",
            args.stack.display()
        ));
    }
    Ok(Exit::Success)
}

/// Forgets addresses: the resources stay in AWS, no longer managed by this stack.
pub async fn rm(args: &StackArgs, addresses: &[String], lock: Duration) -> anyhow::Result<Exit> {
    let stack = load_stack_offline(args)?;
    let backend = backend_for(args, &stack).await?;
    let backend = &*backend;
    let _lock = backend.lock("state rm", lock).await?;
    let Some(mut state) = crate::apply::load_for_write(backend).await? else {
        bail!(
            "no state at {}: nothing has been applied yet",
            backend.describe()
        );
    };
    check_state_belongs(&Some(state.clone()), backend, &stack)?;
    let expected = state.saved_serial();
    let mut d = draft(&stack, "state rm");
    for a in addresses {
        let Some(r) = state.resources.remove(a) else {
            return Err(not_in_state(&state, a).into());
        };
        d = d.touched(a, "forget", "done");
        d.note = Some(format!("left in AWS: {}", r.id));
        for other in state.resources.values_mut() {
            other.depends_on.retain(|x| x != a);
        }
    }
    if addresses.len() > 1 {
        d.note = None;
    }
    backend.save(&mut state, expected, &d).await?;
    output::success(&format!(
        "Removed {} from state (serial {}). Nothing in AWS was deleted.",
        addresses.join(", "),
        state.serial
    ));
    let declared: Vec<&String> = addresses
        .iter()
        .filter(|a| stack.resources.contains_key(*a))
        .collect();
    if !declared.is_empty() {
        output::eprintln(&format!(
            "warning: the stack still declares {}: the next plan would create {} again (or adopt it with `stackwright import`). Remove it from {} if this stack should stop managing it.",
            declared
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if declared.len() == 1 { "it" } else { "them" },
            args.stack.display()
        ));
    }
    Ok(Exit::Success)
}

/// `force-unlock`: removes the stack's remote lock if its id is `id`.
pub async fn force_unlock(args: &StackArgs, id: &str) -> anyhow::Result<Exit> {
    let stack = load_stack_offline(args)?;
    let backend = backend_for(args, &stack).await?;
    match backend.force_unlock(id).await? {
        Unlocked::Released(holder) => {
            output::success(&format!(
                "Released the lock {id} on {}.",
                backend.describe()
            ));
            output::println(&format!(
                "It was held by {holder}.\nThe next apply folds in whatever that run recorded in its journal; run plan first to see where things stand."
            ));
        }
        Unlocked::NotLocked => output::println(&format!(
            "{} is not locked: nothing to do.",
            backend.describe()
        )),
        Unlocked::OsManaged => output::println(&format!(
            "{} is a local state: its lock is an OS lock, which the OS releases when the process holding it exits. Nothing to do.",
            backend.describe()
        )),
    }
    Ok(Exit::Success)
}

/// `state push` (`to_remote`) and `state pull`: the local file ⇄ the stack's S3 backend.
pub async fn copy(
    args: &StackArgs,
    to_remote: bool,
    force: bool,
    lock: Duration,
) -> anyhow::Result<Exit> {
    let stack = load_stack_offline(args)?;
    let Some(decl) = &stack.backend else {
        bail!(
            "stack `{}` declares no remote backend to {} state {}\n  = help: add to {}:\n[backend]\ns3 = {{ bucket = \"my-state\", key = \"{}/${{env}}.json\" }}",
            stack.name,
            if to_remote { "push" } else { "pull" },
            if to_remote { "to" } else { "from" },
            args.stack.display(),
            stack.name
        );
    };
    let remote = open_s3(&stack, &decl.bucket, &decl.key, decl.region.as_deref()).await?;
    let local = LocalBackend::new(
        args.state
            .clone()
            .unwrap_or_else(|| stack.default_state_path()),
    );
    let (src, dst): (&dyn Backend, &dyn Backend) = if to_remote {
        (&local, &remote)
    } else {
        (&remote, &local)
    };
    let verb = if to_remote {
        "state push"
    } else {
        "state pull"
    };
    // Always the remote lock first, so a push and a pull never wait for each other.
    let _remote_lock = remote.lock(verb, lock).await?;
    let _local_lock = local.lock(verb, lock).await?;
    // A journal left by a killed run is folded first, on both sides.
    let Some(from) = crate::apply::load_for_write(src).await? else {
        bail!("no state at {}: nothing to copy", src.describe());
    };
    check_state_belongs(&Some(from.clone()), src, &stack)?;
    let to = crate::apply::load_for_write(dst).await?;
    let stored = src
        .read_stored()
        .await?
        .ok_or_else(|| anyhow::anyhow!("{} vanished while locked", src.describe()))?;
    if let Some(to) = &to {
        if dst.read_stored().await?.as_ref() == Some(&stored) {
            output::success(&format!(
                "{} already holds this state (serial {}) and its history: nothing to do.",
                dst.describe(),
                from.serial
            ));
            return Ok(Exit::Success);
        }
        let refusal = if to.lineage != from.lineage {
            Some(format!(
                "{} holds a different state (lineage {}, not {}): copying would replace it",
                dst.describe(),
                to.lineage,
                from.lineage
            ))
        } else if to.serial > from.serial {
            Some(format!(
                "{} is newer (serial {}) than {} (serial {}): copying would lose its changes",
                dst.describe(),
                to.serial,
                src.describe(),
                from.serial
            ))
        } else if to.serial == from.serial {
            Some(format!(
                "{} and {} both have serial {} but differ: they diverged",
                dst.describe(),
                src.describe(),
                to.serial
            ))
        } else {
            None
        };
        if let Some(why) = refusal {
            if !force {
                bail!(
                    "refusing to {verb}: {why}\n  = help: `stackwright state {} {} --force` replaces it (its history goes too; with bucket versioning the old objects stay recoverable)",
                    if to_remote { "push" } else { "pull" },
                    args.stack.display()
                );
            }
            output::eprintln(&format!("warning: --force: {why}; replacing it."));
        }
    }
    dst.write_stored(&stored).await?;
    let report = dst.audit().await?;
    let records = report.records.len();
    if let Some(b) = report.broken {
        output::eprintln(&format!(
            "warning: the copied history does not verify at record {}: {} (`stackwright audit` shows it)",
            b.record, b.why
        ));
    }
    output::success(&format!(
        "Copied state serial {} (lineage {}) and its history ({records} record{}) from {} to {}.",
        from.serial,
        from.lineage,
        if records == 1 { "" } else { "s" },
        src.describe(),
        dst.describe()
    ));
    if to_remote && args.state.is_none() {
        output::println(&format!(
            "With [backend] s3 in the stack, {} is no longer read; keep it as a backup or delete it.",
            local.describe()
        ));
    }
    Ok(Exit::Success)
}
