//! One function per command. Each loads and validates everything it can before its first
//! AWS call, so bad input changes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail};

use super::output::{self, TermEvents};
use super::{Command, DbCommand, Exit, MigrateCommand, RunArgs, StackArgs};
use crate::apply::{self, ApplyOptions, Outcome};
use crate::plan::{self, Plan, PlanOptions, PriorState};
use crate::providers::Aws;
use crate::stack::{self, LoadOptions, Stack};
use crate::state::{Backend, LocalBackend, State};

pub async fn run(cmd: Command) -> anyhow::Result<Exit> {
    match cmd {
        Command::Validate { stack } => validate(&stack),
        Command::Plan {
            stack,
            run,
            out,
            json,
            markdown,
            detailed_exitcode,
            refresh,
            destroy,
        } => {
            plan_cmd(
                &stack,
                &run,
                out.as_deref(),
                json,
                markdown,
                detailed_exitcode,
                refresh,
                destroy,
            )
            .await
        }
        Command::Apply {
            target,
            env,
            vars,
            state,
            run,
            auto_approve,
            json,
            allow_unsafe_migrations,
            migrate,
        } => {
            let flags = crate::cli::commands::MigrateFlags {
                allow_unsafe: allow_unsafe_migrations,
                force: migrate,
            };
            if plan::file::looks_like_plan(&target) {
                if env.is_some() || !vars.is_empty() || state.is_some() {
                    bail!(
                        "{} is a saved plan: it already fixes --env, --var and --state; drop those flags",
                        target.display()
                    );
                }
                apply_saved(&target, &run, json, flags).await
            } else {
                let args = StackArgs {
                    stack: target,
                    env,
                    vars,
                    state,
                };
                apply_stack(&args, &run, auto_approve, json, false, flags).await
            }
        }
        Command::Destroy {
            stack,
            run,
            auto_approve,
        } => {
            apply_stack(
                &stack,
                &run,
                auto_approve,
                false,
                true,
                MigrateFlags::default(),
            )
            .await
        }
        Command::Show { plan, json } => {
            let p = plan::file::read(&plan)?;
            if json {
                output::println(&serde_json::to_string_pretty(&p)?);
            } else {
                output::print(&plan::render::render(&p));
            }
            Ok(Exit::Success)
        }
        Command::Migrate(MigrateCommand::Status { stack }) => {
            crate::cli::migrate::status(&stack).await
        }
        Command::Migrate(MigrateCommand::Up {
            stack,
            allow_unsafe_migrations,
            force,
            wait_timeout,
        }) => {
            crate::cli::migrate::up(
                &stack,
                MigrateFlags {
                    allow_unsafe: allow_unsafe_migrations,
                    force,
                },
                Duration::from_secs(wait_timeout),
            )
            .await
        }
        Command::Db(DbCommand::Restore {
            stack,
            snapshot,
            to,
            wait_timeout,
        }) => {
            crate::cli::migrate::restore(
                &stack,
                &snapshot,
                to.as_deref(),
                Duration::from_secs(wait_timeout),
            )
            .await
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct MigrateFlags {
    pub allow_unsafe: bool,
    pub force: bool,
}

pub fn load_stack(args: &StackArgs) -> anyhow::Result<Stack> {
    let opts = LoadOptions {
        env: args.env.clone(),
        vars: args.vars.clone(),
    };
    Ok(stack::load(&args.stack, &opts)?)
}

pub fn backend_for(args: &StackArgs, stack: &Stack) -> LocalBackend {
    LocalBackend::new(
        args.state
            .clone()
            .unwrap_or_else(|| stack.default_state_path()),
    )
}

fn validate(args: &StackArgs) -> anyhow::Result<Exit> {
    let s = load_stack(args)?;
    plan::diff::stack_graph(&s).topo_order()?;
    output::success(&format!(
        "{} is valid: {} resources, {} data sources{}.",
        args.stack.display(),
        s.resources.len(),
        s.data.len(),
        if s.migrations.is_some() {
            ", migrations"
        } else {
            ""
        }
    ));
    Ok(Exit::Success)
}

fn plan_options(
    args: &StackArgs,
    run: &RunArgs,
    backend: &LocalBackend,
    refresh: bool,
    destroy: bool,
) -> PlanOptions {
    PlanOptions {
        refresh,
        targets: run.targets.clone(),
        concurrency: run.concurrency as usize,
        destroy,
        cli_vars: args.vars.clone(),
        state_path: backend.describe(),
        wait_timeout: Duration::from_secs(run.wait_timeout),
    }
}

/// Loads the stack and state and makes the plan, migrations section included.
async fn make_plan(
    stack: &Stack,
    backend: &LocalBackend,
    opts: &PlanOptions,
    fingerprints: bool,
    flags: MigrateFlags,
) -> anyhow::Result<(Option<State>, Aws, Plan)> {
    let state = backend.load()?;
    if let Some(s) = &state
        && (s.stack != stack.name || s.env != stack.env)
    {
        bail!(
            "state file {} belongs to stack `{}`{}, not `{}`{}; pass the right --state",
            backend.describe(),
            s.stack,
            s.env
                .as_deref()
                .map(|e| format!(" env {e}"))
                .unwrap_or_default(),
            stack.name,
            stack
                .env
                .as_deref()
                .map(|e| format!(" env {e}"))
                .unwrap_or_default()
        );
    }
    let aws = Aws::load(stack.region.as_deref()).await;
    let mut p = plan::plan(stack, state.as_ref(), &aws, opts).await?;
    if !fingerprints {
        p.secret_fingerprints.clear();
    }
    if !opts.destroy {
        p.migrations =
            crate::cli::migrate::plan_section(stack, state.as_ref(), &p, &aws, flags).await?;
    }
    Ok((state, aws, p))
}

#[allow(clippy::too_many_arguments)]
async fn plan_cmd(
    args: &StackArgs,
    run: &RunArgs,
    out: Option<&Path>,
    json: bool,
    markdown: bool,
    detailed: bool,
    refresh: bool,
    destroy: bool,
) -> anyhow::Result<Exit> {
    let stack = load_stack(args)?;
    let backend = backend_for(args, &stack);
    let opts = plan_options(args, run, &backend, refresh, destroy);
    let (_, _, p) = make_plan(
        &stack,
        &backend,
        &opts,
        out.is_some(),
        MigrateFlags::default(),
    )
    .await?;
    if json {
        output::println(&serde_json::to_string_pretty(&p)?);
    } else if markdown {
        output::print(&plan::render::markdown(&p));
    } else {
        output::print(&plan::render::render(&p));
    }
    if let Some(path) = out {
        plan::file::write(path, &p)?;
        if !json {
            output::println(&format!(
                "\nSaved the plan to {}. Apply exactly it with:\n  stackwright apply {}",
                path.display(),
                path.display()
            ));
        }
    }
    Ok(if detailed && p.has_changes() {
        Exit::Changes
    } else {
        Exit::Success
    })
}

fn apply_options(run: &RunArgs, check_fingerprints: bool) -> ApplyOptions {
    ApplyOptions {
        concurrency: run.concurrency as usize,
        wait_timeout: Duration::from_secs(run.wait_timeout),
        poll_interval: Duration::from_secs(5),
        check_fingerprints,
    }
}

async fn apply_stack(
    args: &StackArgs,
    run: &RunArgs,
    auto_approve: bool,
    json: bool,
    destroy: bool,
    flags: MigrateFlags,
) -> anyhow::Result<Exit> {
    let stack = load_stack(args)?;
    // Decide before any AWS call whether we may go ahead at all.
    if !auto_approve && !output::stdin_is_terminal() {
        bail!(
            "refusing to {} without confirmation: stdin is not a terminal\n  = help: pass --auto-approve, or save a plan with `plan --out FILE` and apply that file",
            if destroy { "destroy" } else { "apply" }
        );
    }
    let backend = backend_for(args, &stack);
    let _lock = backend.lock(if destroy { "destroy" } else { "apply" })?;
    let opts = plan_options(args, run, &backend, true, destroy);
    let (state, aws, p) = make_plan(&stack, &backend, &opts, false, flags).await?;
    if !json {
        output::print(&plan::render::render(&p));
    }
    if !p.has_changes() {
        output::success("\nApply complete! Nothing to do.");
        return Ok(Exit::Success);
    }
    if let Some(b) = p.migrations.as_ref().and_then(|m| m.blocked.clone()) {
        bail!("{b}");
    }
    if !auto_approve
        && !output::confirm(if destroy {
            "Do you really want to destroy all resources?"
        } else {
            "Do you want to perform these actions?"
        })
    {
        output::println("\nApply cancelled.");
        return Ok(Exit::Failure);
    }
    execute(&p, &stack, &backend, state, &aws, run, json, false, flags).await
}

async fn apply_saved(
    path: &Path,
    run: &RunArgs,
    json: bool,
    flags: MigrateFlags,
) -> anyhow::Result<Exit> {
    let p = plan::file::read(path)?;
    let opts = LoadOptions {
        env: p.stack.env.clone(),
        vars: p.stack.cli_vars.clone(),
    };
    let stack = stack::load(Path::new(&p.stack.path), &opts)?;
    if stack.digest != p.stack.digest {
        bail!(
            "{} changed since the plan was made (digest {} → {}); re-run plan",
            p.stack.path,
            &p.stack.digest[..12],
            &stack.digest[..12]
        );
    }
    let backend = LocalBackend::new(PathBuf::from(&p.stack.state_path));
    let _lock = backend.lock("apply")?;
    let state = backend.load()?;
    match (&p.prior_state, &state) {
        (PriorState::NoStateYet, Some(s)) => bail!(
            "plan is stale: it was made when no state existed, but {} now exists (serial {}); it may already have been applied — re-run plan",
            backend.describe(),
            s.serial
        ),
        (PriorState::Existing { .. }, None) => bail!(
            "plan is stale: it was made against state {}, which no longer exists; re-run plan",
            backend.describe()
        ),
        (PriorState::Existing { lineage, serial }, Some(s)) => {
            if &s.lineage != lineage {
                bail!(
                    "plan is for a different state (lineage {lineage}, but {} has {}); re-run plan",
                    backend.describe(),
                    s.lineage
                );
            }
            if s.serial != *serial {
                bail!(
                    "plan is stale: state {} moved from serial {serial} to {} since the plan was made; re-run plan",
                    backend.describe(),
                    s.serial
                );
            }
        }
        (PriorState::NoStateYet, None) => {}
    }
    apply::check_fingerprints(&p, &stack).map_err(|e| anyhow!(e))?;
    let aws = Aws::load(stack.region.as_deref()).await;
    if !p.has_changes() {
        output::success("Apply complete! Nothing to do.");
        return Ok(Exit::Success);
    }
    if let Some(b) = p.migrations.as_ref().and_then(|m| m.blocked.clone())
        && !flags.allow_unsafe
    {
        bail!("{b}");
    }
    execute(&p, &stack, &backend, state, &aws, run, json, true, flags).await
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    p: &Plan,
    stack: &Stack,
    backend: &LocalBackend,
    state: Option<State>,
    aws: &Aws,
    run: &RunArgs,
    json: bool,
    from_file: bool,
    flags: MigrateFlags,
) -> anyhow::Result<Exit> {
    let events = TermEvents::new(json);
    let opts = apply_options(run, from_file);
    let hooks = crate::cli::migrate::hooks(
        stack,
        p,
        backend,
        aws,
        &events,
        flags,
        Duration::from_secs(run.wait_timeout),
    );
    let outcome = apply::apply(p, stack, backend, state, aws, &events, &opts, hooks).await;
    summarize(&outcome, json)
}

fn summarize(o: &Outcome, json: bool) -> anyhow::Result<Exit> {
    let count = |a: plan::Action| o.completed.iter().filter(|(_, x)| *x == a).count();
    let line = format!(
        "Resources: {} added, {} changed, {} replaced, {} destroyed.",
        count(plan::Action::Create),
        count(plan::Action::Update),
        count(plan::Action::Replace),
        count(plan::Action::Delete)
    );
    if json {
        output::println(&serde_json::json!({
            "type": "summary",
            "ok": o.ok(),
            "completed": o.completed.iter().map(|(a, x)| serde_json::json!({"address": a, "action": x.verb()})).collect::<Vec<_>>(),
            "failed": o.failed.iter().map(|(a, e)| serde_json::json!({"address": a, "error": e})).collect::<Vec<_>>(),
            "skipped": o.skipped.iter().map(|(a, r)| serde_json::json!({"address": a, "reason": r})).collect::<Vec<_>>(),
        }).to_string());
    }
    if o.ok() {
        if !json {
            output::success(&format!("\nApply complete! {line}"));
        }
        return Ok(Exit::Success);
    }
    if !json {
        let mut msg = format!("\nApply failed. {line}\n");
        for (a, e) in &o.failed {
            msg.push_str(&format!("  ✗ {a}: {e}\n"));
        }
        for (a, r) in &o.skipped {
            msg.push_str(&format!("  - {a}: not started ({r})\n"));
        }
        msg.push_str("State records everything that completed; fix the cause and run apply again.");
        output::eprintln(&msg);
    }
    Ok(Exit::Failure)
}
