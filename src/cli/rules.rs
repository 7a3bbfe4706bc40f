//! `[env.E.rules]` as the commands that change an environment (`apply`, `destroy`,
//! `rollback`) enforce them: outside the deploy windows they refuse, naming the next
//! window, unless `--override-window --reason` (the reason goes into the history record);
//! `confirm = "type-env-name"` asks for the environment's name on a terminal and, where no
//! one can type (no terminal, or `CI` set), wants `--confirm-env NAME` instead — a run never
//! waits on a stdin nobody writes to. Everything here is decided before the first AWS call.

use anyhow::bail;

use super::{RuleArgs, output};
use crate::error::Diagnostic;
use crate::rules::{self, Confirm, Verdict};
use crate::stack::Stack;

/// What the run may do, once the rules let it go ahead.
#[derive(Debug, Default)]
pub struct Cleared {
    /// For the history record: the run is outside the windows, and why.
    pub override_reason: Option<String>,
    /// For the history record: the windows were checked at `STACKWRIGHT_NOW`.
    pub note: Option<String>,
    /// Ask for the environment's name before changing anything (a terminal, no flag).
    pub ask_env_name: Option<String>,
}

/// Whether someone can answer a question: stdin is a terminal and this is not CI (which
/// sets `CI`; a CI job with a pseudo-terminal still has no one at it).
pub fn interactive() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    output::stdin_is_terminal() && !ci
}

fn env_flag(stack: &Stack) -> String {
    stack
        .env
        .as_deref()
        .map(|e| format!(" --env {e}"))
        .unwrap_or_default()
}

/// Checks the flags and the rules of the stack's environment for a run of `verb`.
pub fn enforce(stack: &Stack, verb: &str, args: &RuleArgs) -> anyhow::Result<Cleared> {
    let reason = args.reason.as_deref().map(str::trim);
    match (args.override_window, reason) {
        (true, None | Some("")) => bail!(
            "--override-window needs a reason: it is recorded in the state's history for whoever reviews this deploy\n  = help: pass --override-window --reason \"why this cannot wait for the window\""
        ),
        (false, Some(_)) => bail!(
            "--reason is the reason for --override-window, which was not given\n  = help: add --override-window to deploy outside the windows, or drop --reason"
        ),
        _ => {}
    }
    let mut cleared = Cleared::default();
    let env = stack.env.as_deref().unwrap_or("");
    let (now, clock_set) = rules::now().map_err(anyhow::Error::msg)?;
    let windows = &stack.rules.windows;
    if clock_set && !windows.is_empty() {
        let at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        output::warning(&Diagnostic::new(format!(
            "deploy windows are checked at {}={at}, not at the clock (a test and CI hook)",
            rules::NOW_VAR
        )));
        cleared.note = Some(format!("deploy windows checked at {}={at}", rules::NOW_VAR));
    }
    match rules::check(windows, now) {
        Verdict::Unrestricted if args.override_window => output::eprintln(&format!(
            "note: environment `{env}` has no deploy windows: --override-window changes nothing"
        )),
        Verdict::Open if args.override_window => output::eprintln(&format!(
            "note: {} is inside a deploy window of `{env}`: --override-window is not needed",
            now.format("%Y-%m-%d %H:%M UTC")
        )),
        Verdict::Unrestricted | Verdict::Open => {}
        Verdict::Closed { next } => {
            let listed = windows
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            if args.override_window {
                let reason = reason.unwrap_or_default().to_owned();
                output::warning(&Diagnostic::new(format!(
                    "{verb} of `{env}` outside its deploy windows ({listed}), because --override-window: {reason}"
                )));
                cleared.override_reason = Some(reason);
            } else {
                let next = match next {
                    Some((w, at)) => {
                        format!("the next window opens {} (\"{}\")", w.describe(at), w.text)
                    }
                    None => "no window opens within a week".to_owned(),
                };
                let mut d = Diagnostic::new(format!(
                    "refusing to {verb} `{env}`: {} is outside its deploy windows ({listed}); {next}",
                    now.format("%a %Y-%m-%d %H:%M UTC"),
                ))
                .hint(format!(
                    "run it then, or pass --override-window --reason \"why it cannot wait\" (the reason is recorded in the history of `{env}`)"
                ));
                if let Some(span) = &stack.rules_span {
                    d = d.at(stack.location(span.clone()));
                }
                return Err(d.into());
            }
        }
    }
    if stack.rules.confirm == Some(Confirm::TypeEnvName) {
        match args.confirm_env.as_deref() {
            Some(given) if given == env => {}
            Some(given) => bail!(
                "--confirm-env {given} does not match the environment of this run, `{env}`: nothing was changed\n  = help: pass --confirm-env {env} if `{env}` is the environment you mean"
            ),
            None if interactive() => cleared.ask_env_name = Some(env.to_owned()),
            None => bail!(
                "refusing to {verb} `{env}` without its confirmation: [env.{env}.rules] confirm = \"type-env-name\", and no one can type here ({})\n  = help: pass --confirm-env {env} to confirm that `{env}` is the environment this run changes",
                if output::stdin_is_terminal() {
                    "CI is set"
                } else {
                    "stdin is not a terminal"
                }
            ),
        }
    } else if let Some(given) = args.confirm_env.as_deref()
        && given != env
    {
        // Asked for by nobody, but a name that does not match is a mistake worth stopping.
        bail!(
            "--confirm-env {given} does not match the environment of this run, `{env}`: nothing was changed"
        );
    }
    Ok(cleared)
}

/// Asks for the environment's name when [`enforce`] said to; `false`: not confirmed.
pub fn ask(cleared: &Cleared, verb: &str) -> bool {
    match &cleared.ask_env_name {
        None => true,
        Some(env) => output::confirm_typed(
            &format!("This will {verb} environment `{env}`, whose rules ask for its name."),
            env,
        ),
    }
}

/// The line `plan` shows when an apply now would be outside the windows (the plan itself is
/// fine to make at any time).
pub fn plan_note(stack: &Stack, stack_arg: &str) -> anyhow::Result<Option<String>> {
    let (now, _) = rules::now().map_err(anyhow::Error::msg)?;
    let Verdict::Closed { next } = rules::check(&stack.rules.windows, now) else {
        return Ok(None);
    };
    let env = stack.env.as_deref().unwrap_or("");
    let next = match next {
        Some((w, at)) => format!("; the next window opens {}", w.describe(at)),
        None => String::new(),
    };
    Ok(Some(format!(
        "Outside the deploy windows of `{env}`: `stackwright apply {stack_arg}{}` now would be refused{next} (or pass --override-window --reason \"…\")",
        env_flag(stack)
    )))
}
