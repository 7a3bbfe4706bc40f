//! One function per command. Each loads and validates everything it can before its first
//! AWS call, so bad input changes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail};

use super::output::{self, TermEvents};
use super::rules::{self as deploy_rules, Cleared};
use super::{Command, DbCommand, Exit, MigrateCommand, RuleArgs, RunArgs, StackArgs, StateCommand};
use crate::apply::{self, ApplyOptions, Outcome};
use crate::events::{Event, EventSink};
use crate::plan::{self, Plan, PlanOptions, PriorState};
use crate::providers::{Aws, registry};
use crate::stack::{self, LoadOptions, Stack};
use crate::state::{Backend, BackendRef, LocalBackend, S3Backend, State, history};

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
            force_migrations,
            rules,
        } => {
            let flags = crate::cli::commands::MigrateFlags {
                allow_unsafe: allow_unsafe_migrations,
                force: force_migrations,
            };
            if plan::file::looks_like_plan(&target) {
                if env.is_some() || !vars.is_empty() || state.is_some() {
                    bail!(
                        "{} is a saved plan: it already fixes --env, --var and --state; drop those flags",
                        target.display()
                    );
                }
                if json {
                    output::json_header();
                }
                apply_saved(&target, &run, json, flags, &rules).await
            } else {
                let args = StackArgs {
                    stack: target,
                    env,
                    vars,
                    state,
                };
                if json {
                    output::json_header();
                }
                apply_stack(&args, &run, auto_approve, json, false, flags, &rules).await
            }
        }
        Command::Destroy {
            stack,
            run,
            auto_approve,
            rules,
        } => {
            apply_stack(
                &stack,
                &run,
                auto_approve,
                false,
                true,
                MigrateFlags::default(),
                &rules,
            )
            .await
        }
        Command::Import {
            stack,
            address,
            id,
            lock_timeout,
        } => import(&stack, &address, &id, lock_timeout).await,
        Command::Output { stack, name, json } => {
            crate::cli::outputs::run(&stack, name.as_deref(), json).await
        }
        Command::Audit { stack, json } => crate::cli::audit::run(&stack, json).await,
        Command::State(c) => match c {
            StateCommand::List { stack } => crate::cli::state::list(&stack).await,
            StateCommand::Show { stack, address } => {
                crate::cli::state::show(&stack, &address).await
            }
            StateCommand::Mv {
                stack,
                from,
                to,
                lock_timeout,
            } => crate::cli::state::mv(&stack, &from, &to, lock_timeout).await,
            StateCommand::Rm {
                stack,
                addresses,
                lock_timeout,
            } => crate::cli::state::rm(&stack, &addresses, lock_timeout).await,
            StateCommand::Push {
                stack,
                force,
                lock_timeout,
            } => crate::cli::state::copy(&stack, true, force, lock_timeout).await,
            StateCommand::Pull {
                stack,
                force,
                lock_timeout,
            } => crate::cli::state::copy(&stack, false, force, lock_timeout).await,
        },
        Command::Rollback {
            stack,
            address,
            to,
            wait_timeout,
            lock_timeout,
            rules,
        } => {
            crate::cli::rollback::rollback(
                &stack,
                &address,
                to.as_deref(),
                wait_timeout,
                lock_timeout,
                &rules,
            )
            .await
        }
        Command::ForceUnlock { stack, lock_id } => {
            crate::cli::state::force_unlock(&stack, &lock_id).await
        }
        Command::Show {
            plan,
            json,
            markdown,
        } => {
            let p = plan::file::read(&plan)?;
            if json {
                output::println(&serde_json::to_string_pretty(&p)?);
            } else if markdown {
                output::print(&plan::render::markdown(&p));
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
            force_migrations,
            wait_timeout,
        }) => {
            crate::cli::migrate::up(
                &stack,
                MigrateFlags {
                    allow_unsafe: allow_unsafe_migrations,
                    force: force_migrations,
                },
                wait_timeout,
            )
            .await
        }
        Command::Db(DbCommand::Restore {
            stack,
            snapshot,
            to,
            wait_timeout,
        }) => crate::cli::migrate::restore(&stack, &snapshot, to.as_deref(), wait_timeout).await,
    }
}

pub use crate::operations::migrations::MigrateFlags;

pub fn load_stack(args: &StackArgs) -> anyhow::Result<Stack> {
    load_stack_with(args, false)
}

/// For commands that read no secret (`validate`, `output`).
pub fn load_stack_offline(args: &StackArgs) -> anyhow::Result<Stack> {
    load_stack_with(args, true)
}

/// `offline`: check secret sources' shape without reading them (`validate`).
fn load_stack_with(args: &StackArgs, offline: bool) -> anyhow::Result<Stack> {
    let opts = LoadOptions {
        env: args.env.clone(),
        vars: args.vars.clone(),
        offline,
    };
    let stack = stack::load(&args.stack, &opts)?;
    // A cycle is a problem of the file: found before any AWS call, located in it.
    crate::eval::stack_graph(&stack)
        .topo_order()
        .map_err(|d| stack.locate(d))?;
    stack.warnings.iter().for_each(output::warning);
    Ok(stack)
}

/// The stack's backend: `--state FILE` (a local file, whatever the stack says), else its
/// `[backend] s3`, else the default local file.
pub async fn backend_for(args: &StackArgs, stack: &Stack) -> anyhow::Result<Box<dyn Backend>> {
    if let Some(p) = &args.state {
        return Ok(Box::new(LocalBackend::new(p.clone())));
    }
    Ok(match &stack.backend {
        Some(b) => Box::new(open_s3(stack, &b.bucket, &b.key, b.region.as_deref()).await?),
        None => Box::new(LocalBackend::new(stack.default_state_path())),
    })
}

/// The backend a saved plan names.
async fn backend_of(r: &BackendRef, stack: &Stack) -> anyhow::Result<Box<dyn Backend>> {
    Ok(match r {
        BackendRef::Local { path } => Box::new(LocalBackend::new(PathBuf::from(path))),
        BackendRef::S3 {
            bucket,
            key,
            region,
        } => Box::new(open_s3(stack, bucket, key, region.as_deref()).await?),
    })
}

/// The S3 backend, with the caller's ARN for its lock; warns when the bucket keeps no
/// versions.
pub async fn open_s3(
    stack: &Stack,
    bucket: &str,
    key: &str,
    region: Option<&str>,
) -> anyhow::Result<S3Backend> {
    let aws = Aws::load(stack.region.as_deref(), stack.profile.as_deref()).await;
    let caller = aws.caller().await.map_err(|e| anyhow!("{e}"))?;
    let mut b = S3Backend::new(aws.s3(), bucket, key, region);
    b.caller_arn = Some(caller.arn);
    b.stack_hint = format!(
        "{}{}",
        stack.path.display(),
        stack
            .env
            .as_deref()
            .map(|e| format!(" --env {e}"))
            .unwrap_or_default()
    );
    if let Some(w) = b.versioning_warning().await {
        output::warning(&crate::error::Diagnostic::new(w));
    }
    Ok(b)
}

fn validate(args: &StackArgs) -> anyhow::Result<Exit> {
    // Offline: secret sources are checked for shape, never read, so the README's first
    // command works before any secret is set.
    let s = load_stack_offline(args)?;
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
    backend: &dyn Backend,
    refresh: bool,
    destroy: bool,
) -> PlanOptions {
    PlanOptions {
        refresh,
        targets: run.targets.clone(),
        concurrency: run.concurrency as usize,
        destroy,
        cli_vars: args.vars.clone(),
        backend: backend.descriptor(),
        wait_timeout: run.wait_timeout,
        imports: Vec::new(),
    }
}

/// Loads the stack and state and makes the plan, migrations section included.
async fn make_plan(
    stack: &Stack,
    backend: &dyn Backend,
    opts: &PlanOptions,
    fingerprints: bool,
    flags: MigrateFlags,
) -> anyhow::Result<(Option<State>, Aws, Plan)> {
    let state = backend.load().await?;
    check_state_belongs(&state, backend, stack)?;
    let aws = connect(stack).await?;
    let p = plan_with(stack, state.as_ref(), &aws, opts, fingerprints, flags).await?;
    Ok((state, aws, p))
}

/// Loads the AWS configuration and checks, with one call, that AWS answers and the
/// credentials work, before anything else is read.
pub async fn connect(stack: &Stack) -> anyhow::Result<Aws> {
    let aws = Aws::load(stack.region.as_deref(), stack.profile.as_deref()).await;
    let caller = aws.caller().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::debug!(account = %caller.account, arn = %caller.arn, "caller identity");
    if let Some(want) = &stack.account_id
        && caller.account != *want
    {
        let env = stack
            .env
            .as_deref()
            .map(|e| format!(" environment `{e}`"))
            .unwrap_or_default();
        bail!(
            "refusing to run: stack `{}`{env} belongs to AWS account {want}, but the credentials are for account {} ({}); switch credentials (AWS_PROFILE, or the environment's `profile`) and run again",
            stack.name,
            caller.account,
            caller.arn
        );
    }
    Ok(aws)
}

pub(super) fn check_state_belongs(
    state: &Option<State>,
    backend: &dyn Backend,
    stack: &Stack,
) -> anyhow::Result<()> {
    if let Some(s) = state
        && (s.stack != stack.name || s.env != stack.env)
    {
        bail!(
            "state {} belongs to stack `{}`{}, not `{}`{}; pass the right --state",
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
    Ok(())
}

/// The plan of `stack` against `state`, migrations section included.
async fn plan_with(
    stack: &Stack,
    state: Option<&State>,
    aws: &Aws,
    opts: &PlanOptions,
    fingerprints: bool,
    flags: MigrateFlags,
) -> anyhow::Result<Plan> {
    let mut p = plan::plan(registry(), stack, state, aws, opts).await?;
    if !fingerprints {
        p.secret_fingerprints.clear();
    }
    if !opts.destroy {
        p.migrations =
            crate::operations::migrations::plan_section(stack, state, &p, aws, flags).await?;
    }
    Ok(p)
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
    let backend = backend_for(args, &stack).await?;
    let backend = &*backend;
    let opts = plan_options(args, run, backend, refresh, destroy);
    let (_, _, p) = make_plan(
        &stack,
        backend,
        &opts,
        out.is_some(),
        MigrateFlags::default(),
    )
    .await?;
    // An apply now would be refused by the deploy windows: said, not failed (a plan for
    // review is made at any time).
    let note = if destroy {
        None
    } else {
        deploy_rules::plan_note(&stack, &args.stack.display().to_string())?
    };
    if json {
        output::println(&serde_json::to_string_pretty(&p)?);
        if let Some(n) = &note {
            output::warning(&crate::error::Diagnostic::new(n.clone()));
        }
    } else if markdown {
        let mut md = plan::render::markdown(&p);
        if let Some(n) = &note {
            md = format!("> [!CAUTION]\n> {n}\n\n{md}");
        }
        output::print(&md);
    } else {
        output::print(&plan::render::render(&p));
        if let Some(n) = &note {
            output::println(&format!("\n{n}"));
        }
    }
    if let Some(path) = out {
        plan::file::write(path, &p)?;
        if markdown {
            // stdout is the comment: the hint goes to the log.
            output::eprintln(&format!("Saved the plan to {}.", path.display()));
        } else if !json {
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

fn apply_options(run: &RunArgs, check_fingerprints: bool, cleared: &Cleared) -> ApplyOptions {
    ApplyOptions {
        concurrency: run.concurrency as usize,
        wait_timeout: run.wait_timeout,
        poll_interval: Duration::from_secs(5),
        check_fingerprints,
        cancel: Default::default(),
        override_reason: cleared.override_reason.clone(),
        note: cleared.note.clone(),
    }
}

/// On the first SIGINT/SIGTERM sets `cancel` (apply starts nothing new, lets running calls
/// finish and be recorded, releases the lock, exits 130); a second one stops at once — the
/// journal's intents cover whatever was in flight. Stops watching when dropped.
fn watch_signals(
    cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
    events: &TermEvents,
) -> tokio::task::JoinHandle<()> {
    let json = events.is_json();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        let mut seen = 0;
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            seen += 1;
            if seen > 1 {
                output::exit_now(130);
            }
            cancel.store(true, std::sync::atomic::Ordering::SeqCst);
            TermEvents::new(json).emit(Event::Interrupted {
                signal: name.to_owned(),
            });
        }
    })
}

async fn apply_stack(
    args: &StackArgs,
    run: &RunArgs,
    auto_approve: bool,
    json: bool,
    destroy: bool,
    flags: MigrateFlags,
    rules: &RuleArgs,
) -> anyhow::Result<Exit> {
    let stack = load_stack(args)?;
    let verb = if destroy { "destroy" } else { "apply" };
    // Decide before any AWS call whether we may go ahead at all.
    let cleared = deploy_rules::enforce(&stack, verb, rules)?;
    if !auto_approve && !output::stdin_is_terminal() {
        bail!(
            "refusing to {} without confirmation: stdin is not a terminal\n  = help: pass --auto-approve, or save a plan with `plan --out FILE` and apply that file",
            if destroy { "destroy" } else { "apply" }
        );
    }
    // Everything that needs no AWS call is checked before the lock is taken.
    crate::eval::stack_graph(&stack)
        .topo_order()
        .map_err(|d| stack.locate(d))?;
    let backend = backend_for(args, &stack).await?;
    let backend = &*backend;
    let _lock = backend
        .lock(if destroy { "destroy" } else { "apply" }, run.lock_timeout)
        .await?;
    let opts = plan_options(args, run, backend, true, destroy);
    // Under the lock: a journal left by a killed run is folded in before planning.
    let state = apply::load_for_write(backend).await?;
    check_state_belongs(&state, backend, &stack)?;
    let aws = connect(&stack).await?;
    let p = plan_with(&stack, state.as_ref(), &aws, &opts, false, flags).await?;
    if !json {
        output::print(&plan::render::render(&p));
    }
    if !p.has_changes() {
        return nothing_to_do(state, json, "\nApply complete! Nothing to do.");
    }
    if let Some(b) = p.migrations.as_ref().and_then(|m| m.blocked.clone()) {
        bail!("{b}");
    }
    // An environment that wants its name typed asks for it instead of `yes`.
    let confirmed = if cleared.ask_env_name.is_some() {
        deploy_rules::ask(&cleared, verb)
    } else {
        auto_approve
            || output::confirm(if destroy {
                "Do you really want to destroy all resources?"
            } else {
                "Do you want to perform these actions?"
            })
    };
    if !confirmed {
        output::println("\nApply cancelled.");
        return Ok(Exit::Failure);
    }
    execute(
        &p, &stack, backend, state, &aws, run, json, false, flags, &cleared,
    )
    .await
}

async fn apply_saved(
    path: &Path,
    run: &RunArgs,
    json: bool,
    flags: MigrateFlags,
    rules: &RuleArgs,
) -> anyhow::Result<Exit> {
    let p = plan::file::read(path)?;
    let opts = LoadOptions {
        env: p.stack.env.clone(),
        vars: p.stack.cli_vars.clone(),
        offline: false,
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
    // The rules are the stack's as it is now (the digest says it is the planned one), and
    // the windows are checked at apply time, not when the plan was made.
    let verb = if p.destroy { "destroy" } else { "apply" };
    let cleared = deploy_rules::enforce(&stack, verb, rules)?;
    if !deploy_rules::ask(&cleared, verb) {
        output::println("\nApply cancelled.");
        return Ok(Exit::Failure);
    }
    let backend = backend_of(&p.stack.backend, &stack).await?;
    let backend = &*backend;
    let _lock = backend.lock("apply", run.lock_timeout).await?;
    // Checked against the state as the plan saw it (a crashed run's journal replayed in
    // memory, as plan does); folded into the file only after that.
    let state = backend.load().await?;
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
    let state = apply::load_for_write(backend).await?;
    apply::check_fingerprints(registry(), &p, &stack).map_err(|e| anyhow!(e))?;
    let aws = connect(&stack).await?;
    if !p.has_changes() {
        return nothing_to_do(state, json, "Apply complete! Nothing to do.");
    }
    if let Some(b) = p.migrations.as_ref().and_then(|m| m.blocked.clone())
        && !flags.allow_unsafe
    {
        bail!("{b}");
    }
    execute(
        &p, &stack, backend, state, &aws, run, json, true, flags, &cleared,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    p: &Plan,
    stack: &Stack,
    backend: &dyn Backend,
    state: Option<State>,
    aws: &Aws,
    run: &RunArgs,
    json: bool,
    from_file: bool,
    flags: MigrateFlags,
    cleared: &Cleared,
) -> anyhow::Result<Exit> {
    let events = TermEvents::new(json);
    let opts = apply_options(run, from_file, cleared);
    let _signals = watch_signals(opts.cancel.clone(), &events);
    let hooks = crate::operations::migrations::hooks(
        stack,
        p,
        state.as_ref(),
        aws,
        &events,
        flags,
        run.wait_timeout,
    );
    let outcome = apply::apply(
        registry(),
        p,
        stack,
        backend,
        state,
        aws,
        &events,
        &opts,
        hooks,
    )
    .await;
    summarize(&outcome, json)
}

fn summarize(o: &Outcome, json: bool) -> anyhow::Result<Exit> {
    let exit = summarize_inner(o, json)?;
    Ok(if o.interrupted {
        Exit::Interrupted
    } else {
        exit
    })
}

fn summarize_inner(o: &Outcome, json: bool) -> anyhow::Result<Exit> {
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
            "failed": o.failed.iter().map(|e| serde_json::json!({
                "address": e.address,
                "operation": e.operation.as_str(),
                "error": e.to_string(),
                "error_kind": e.kind().map(|k| k.as_str()),
            })).collect::<Vec<_>>(),
            "skipped": o.skipped.iter().map(|(a, r)| serde_json::json!({"address": a, "reason": r})).collect::<Vec<_>>(),
            "interrupted": o.interrupted,
            "state_error": o.save_error,
            "outputs": o.state.as_ref().map(|s| s.outputs.iter().map(|(k, v)| {
                // A sensitive value stays out of CI logs; `stackwright output NAME` prints it.
                let value = if v.sensitive { serde_json::Value::Null } else { v.value.clone() };
                (k.clone(), serde_json::json!({"value": value, "sensitive": v.sensitive}))
            }).collect::<serde_json::Map<_, _>>()),
        }).to_string());
    }
    if o.ok() {
        if !json {
            output::success(&format!("\nApply complete! {line}"));
            print_outputs(o.state.as_ref(), json);
        }
        return Ok(Exit::Success);
    }
    if !json {
        let mut msg = format!(
            "\nApply {}. {line}\n",
            if o.interrupted {
                "interrupted"
            } else {
                "failed"
            }
        );
        for e in &o.failed {
            msg.push_str(&format!("  ✗ {}: {e}\n", e.address));
        }
        for (a, r) in &o.skipped {
            msg.push_str(&format!("  - {a}: not started ({r})\n"));
        }
        if let Some(e) = &o.save_error {
            msg.push_str(&format!("  ✗ state: {e}\n"));
        }
        msg.push_str(if o.interrupted {
            "Interrupted. State records everything that completed; run apply again to finish."
        } else {
            "State records everything that completed; fix the cause and run apply again."
        });
        output::eprintln(&msg);
    }
    Ok(Exit::Failure)
}

/// The end of an apply with nothing to do: text, or the JSON summary CI waits for.
fn nothing_to_do(state: Option<State>, json: bool, text: &str) -> anyhow::Result<Exit> {
    if json {
        let outcome = Outcome {
            state,
            ..Outcome::default()
        };
        return summarize(&outcome, true);
    }
    output::success(text);
    print_outputs(state.as_ref(), json);
    Ok(Exit::Success)
}

/// `Outputs:` after apply, sensitive values hidden.
fn print_outputs(state: Option<&State>, json: bool) {
    if let Some(s) = state.filter(|s| !json && !s.outputs.is_empty()) {
        output::print(&format!(
            "\nOutputs:\n{}",
            crate::cli::outputs::listing(&s.outputs)
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>()
        ));
    }
}

/// `stackwright import`: read the resource by id and record it in state, changing nothing
/// in AWS. The next plan shows only real differences.
async fn import(
    args: &StackArgs,
    address: &str,
    id: &str,
    lock_timeout: Duration,
) -> anyhow::Result<Exit> {
    let stack = load_stack(args)?;
    let r = stack.resources.get(address).ok_or_else(|| {
        let all: Vec<&str> = stack.resources.keys().map(String::as_str).collect();
        let d = crate::error::Diagnostic::new(format!(
            "cannot import into `{address}`: the stack declares no such resource"
        ));
        match crate::error::suggest(address, all) {
            Some(s) => d.hint(format!("did you mean `{s}`?")),
            None => d.hint("declare the resource in the stack file first, then import it"),
        }
    })?;
    let backend = backend_for(args, &stack).await?;
    let backend = &*backend;
    let _lock = backend.lock("import", lock_timeout).await?;
    let state = apply::load_for_write(backend).await?;
    check_state_belongs(&state, backend, &stack)?;
    if let Some(existing) = state.as_ref().and_then(|s| s.resources.get(address)) {
        if existing.id == id {
            output::success(&format!("{address} is already in state as `{id}`."));
            return Ok(Exit::Success);
        }
        bail!(
            "{address} is already in state with id `{}`; it cannot also be `{id}`",
            existing.id
        );
    }
    let aws = connect(&stack).await?;
    let data = crate::plan::diff::read_data(registry(), &stack, &aws).await?;
    let resolution = crate::refresh::resolve_intents(
        registry(),
        &aws,
        &stack,
        state
            .as_ref()
            .unwrap_or(&State::new(&stack.name, stack.env.as_deref())),
        &data.1,
        &[(address.to_owned(), id.to_owned())],
        16,
        Duration::from_secs(60),
    )
    .await?;
    let Some(adoption) = resolution
        .adoptions
        .into_iter()
        .find(|a| a.address == address)
    else {
        bail!("{address}: nothing to import");
    };
    let mut st = state.unwrap_or_else(|| State::new(&stack.name, stack.env.as_deref()));
    let expected = st.saved_serial();
    st.resources.insert(address.to_owned(), adoption.resource);
    let mut d = history::Draft::new("import").touched(address, "import", "done");
    d.stack_digest = Some(stack.digest.clone());
    d.stack_dir = stack.path.parent().map(Into::into);
    d.caller_arn = aws.identity.get().map(|c| c.arn.clone());
    d.note = Some(format!("imported `{id}`"));
    backend.save(&mut st, expected, &d).await?;
    output::success(&format!(
        "Imported {} `{id}` as {address} (state serial {}).",
        r.kind, st.serial
    ));
    output::println(&format!(
        "Run `stackwright plan {}{}` to see how it differs from the stack.",
        args.stack.display(),
        stack
            .env
            .as_deref()
            .map(|e| format!(" --env {e}"))
            .unwrap_or_default()
    ));
    Ok(Exit::Success)
}
