//! The command line: argument parsing (clap), one function per command, exit codes.
//!
//! Exit codes are decided in one place ([`main`]): 0 success (and "no changes" under
//! `--detailed-exitcode`), 1 error (usage errors included), 2 changes present (only with
//! `--detailed-exitcode`), 130 interrupted.
//! All terminal output goes through [`output`], which owns colour and progress display.

mod audit;
mod commands;
mod migrate;
pub mod output;
mod outputs;
mod rollback;
mod rules;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "stackwright",
    version,
    about = "Plan and apply AWS stacks described in TOML: S3, SSM, RDS with safe migrations.",
    after_help = "Examples:\n  stackwright plan stacks/webapp.toml --env dev\n  stackwright apply stacks/webapp.toml --env dev --auto-approve\n  stackwright plan stacks/webapp.toml --env prod --out prod.plan && stackwright apply prod.plan"
)]
pub struct Cli {
    /// When to use colour (NO_COLOR is honoured under `auto`).
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    pub color: Color,
    /// More logging on stderr (-v info, -vv debug); or set STACKWRIGHT_LOG.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Args, Debug, Clone)]
pub struct StackArgs {
    /// The stack file (TOML).
    pub stack: PathBuf,
    /// The environment, when the stack declares `environments`.
    #[arg(long)]
    pub env: Option<String>,
    /// Set a variable, overriding [vars] and [env.E.vars]; repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// State file [default: the stack's [backend], else state/<stack>/<env>.json, or
    /// state/<stack>.json]. A local file, even when the stack names an S3 backend.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// How many AWS operations run at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// How long to wait for a resource to become available before failing ("45m", "2h";
    /// a bare number is seconds). A resource's own `wait_timeout` takes precedence.
    #[arg(long, value_name = "DURATION", default_value = "60m", value_parser = parse_duration)]
    pub wait_timeout: std::time::Duration,
    /// Limit the run to these resources and what they depend on; repeatable. Under
    /// `destroy`/`plan --destroy`: these resources and what depends on them.
    #[arg(long = "target", value_name = "ADDRESS")]
    pub targets: Vec<String>,
    /// How long to wait for another run's state lock ("0s": fail at once; "30s", "5m").
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,
}

/// `[env.E.rules]`: what a run outside the deploy windows, or of an environment that wants
/// its name typed, must say.
#[derive(Args, Debug, Clone, Default)]
pub struct RuleArgs {
    /// Go ahead outside the environment's deploy windows ([env.E.rules] windows). Needs
    /// --reason, which is recorded in the state's history.
    #[arg(long)]
    pub override_window: bool,
    /// Why this run cannot wait for a deploy window (with --override-window).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// The environment's name, given ahead: confirms a run of an environment whose rules say
    /// `confirm = "type-env-name"` where no one can type it (CI, no terminal).
    #[arg(long, value_name = "ENV")]
    pub confirm_env: Option<String>,
}

/// `"30s"`, `"5m"`, `"1h"`, `"250ms"`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::value::parse_duration(s)
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got `{s}`")),
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parse and check a stack: types, references, environments, the dependency graph. No AWS call.
    #[command(after_help = "Examples:\n  stackwright validate stacks/webapp.toml --env dev")]
    Validate {
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Read the live account, diff it against the stack and print what apply would do.
    #[command(
        after_help = "Examples:\n  stackwright plan stacks/webapp.toml --env dev\n  stackwright plan stacks/webapp.toml --env prod --out prod.plan\n  stackwright plan stacks/webapp.toml --env dev --json --detailed-exitcode"
    )]
    Plan {
        #[command(flatten)]
        stack: StackArgs,
        #[command(flatten)]
        run: RunArgs,
        /// Save the plan to FILE, to apply exactly it later.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Print the plan as JSON (machine-readable) instead of text.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Print the plan as markdown (for a pull-request comment).
        #[arg(long)]
        markdown: bool,
        /// Exit 2 when there are changes, 0 when there are none.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Read live values from AWS (`--refresh=false` trusts state).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
        refresh: bool,
        /// Plan the destruction of everything in state.
        #[arg(long)]
        destroy: bool,
    },
    /// Carry out a plan: a saved plan file, or a fresh plan of STACK after confirmation.
    #[command(
        after_help = "Examples:\n  stackwright apply stacks/webapp.toml --env dev            # plans, asks for `yes`\n  stackwright apply stacks/webapp.toml --env dev --auto-approve\n  stackwright apply prod.plan                               # exactly what was planned\n  stackwright apply prod.plan --confirm-env prod            # [env.prod.rules] confirm, in CI\n  stackwright apply prod.plan --override-window --reason \"INC-42 hotfix\"\n\nSTACKWRIGHT_NOW=2026-12-04T12:00:00Z sets the time deploy windows are checked at (tests, CI dry runs)."
    )]
    Apply {
        /// A stack file, or a plan file saved by `plan --out`.
        target: PathBuf,
        /// The environment, when the stack declares `environments` (not with a plan file).
        #[arg(long)]
        env: Option<String>,
        /// Set a variable, overriding [vars] and [env.E.vars]; repeatable (not with a plan file).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// State file [default: state/<stack>/<env>.json] (not with a plan file).
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        #[command(flatten)]
        run: RunArgs,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
        /// Emit progress events as JSON lines (format: docs/events.md).
        #[arg(long)]
        json: bool,
        /// Apply migrations that squawk flags as unsafe even without an allow comment.
        #[arg(long)]
        allow_unsafe_migrations: bool,
        /// Run the migration tool even if its folder did not change (tool mode).
        #[arg(long)]
        force_migrations: bool,
        #[command(flatten)]
        rules: RuleArgs,
    },
    /// Delete everything the stack's state holds, dependants first.
    #[command(
        after_help = "Examples:\n  stackwright destroy stacks/webapp.toml --env dev --auto-approve\n  stackwright destroy stacks/webapp.toml --env dev --target s3_bucket.uploads   # and what depends on it"
    )]
    Destroy {
        #[command(flatten)]
        stack: StackArgs,
        #[command(flatten)]
        run: RunArgs,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
        #[command(flatten)]
        rules: RuleArgs,
    },
    /// Adopt an existing AWS resource into the stack's state, without changing it.
    #[command(
        after_help = "Examples:\n  stackwright import stacks/webapp.toml --env dev s3_bucket.uploads webapp-dev-uploads\n  stackwright import stacks/webapp.toml --env dev ssm_parameter.log_level /webapp/dev/LOG_LEVEL\n\nThe next plan then shows only real differences between the stack and the resource.\nTo review an import through plan instead, add to the stack file:\n  [[import]]\n  to = \"s3_bucket.uploads\"\n  id = \"webapp-dev-uploads\""
    )]
    Import {
        #[command(flatten)]
        stack: StackArgs,
        /// The resource's address in the stack, e.g. s3_bucket.uploads.
        address: String,
        /// Its AWS id: the bucket name, the parameter name, the DB identifier, the group name.
        id: String,
        /// How long to wait for another run's state lock.
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
        lock_timeout: std::time::Duration,
    },
    /// Print the stack's outputs as the last apply recorded them. No AWS call.
    #[command(
        after_help = "Examples:\n  stackwright output stacks/webapp.toml --env dev\n  stackwright output stacks/webapp.toml --env dev database_endpoint   # the raw value\n  stackwright output stacks/webapp.toml --env dev --json\n\nA sensitive output is hidden in the listing and after apply; asking for it by name\nor with --json prints it."
    )]
    Output {
        #[command(flatten)]
        stack: StackArgs,
        /// One output, printed raw (a string without quotes) for `$(stackwright output …)`.
        name: Option<String>,
        /// Print JSON: `{"NAME": {"value": …, "sensitive": false}}`, or the one value.
        #[arg(long)]
        json: bool,
    },
    /// Verify the state's history (hash chain, and the state file against its last record)
    /// and print who changed what, when. Exit 1 naming the first record that does not verify.
    #[command(
        after_help = "Examples:\n  stackwright audit stacks/webapp.toml --env prod\n  stackwright audit stacks/webapp.toml --env prod --json\n\nThe history is state/<stack>/<env>.history.jsonl, beside the state file: commit both."
    )]
    Audit {
        #[command(flatten)]
        stack: StackArgs,
        /// Print JSON: `{"verified": …, "broken": {"record": N, "why": …}, "records": […]}`.
        #[arg(long)]
        json: bool,
    },
    /// Read or edit state without touching AWS: list, show, mv (rename), rm (forget); push
    /// and pull move it between the local file and the stack's S3 backend.
    #[command(subcommand)]
    State(StateCommand),
    /// Remove a remote state lock left by a run that was killed (its id is in the message
    /// of the run it blocks). A local state's lock is released by the OS: nothing to do.
    #[command(
        name = "force-unlock",
        after_help = "Examples:\n  stackwright force-unlock stacks/webapp.toml --env prod 0b7f3c1e-5d2a-4c8e-9f61-2a7d9e4b8c10\n\nOnly remove a lock whose run is gone: two runs writing one state lose each other's work.\nThe next apply folds in what the killed run left in its journal."
    )]
    ForceUnlock {
        #[command(flatten)]
        stack: StackArgs,
        /// The id of the lock to remove; another id is refused, naming the real holder.
        lock_id: String,
    },
    /// Redeploy an ECS service's earlier task definition revision (default: the one before
    /// the running one), wait until it is steady, and record it. The stack file is not
    /// changed: the next plan shows the newer task it still names.
    #[command(
        after_help = "Examples:\n  stackwright rollback stacks/webapp.toml --env prod ecs_service.api\n  stackwright rollback stacks/webapp.toml --env prod ecs_service.api --to 41\n\nThe revisions a service can go back to are the last 10 it deployed (`stackwright state show`)."
    )]
    Rollback {
        #[command(flatten)]
        stack: StackArgs,
        /// The service's address, e.g. ecs_service.api.
        address: String,
        /// The revision to redeploy: its number, family:N or ARN.
        #[arg(long, value_name = "REVISION")]
        to: Option<String>,
        /// How long to wait for the service to be steady ("10m"; a bare number is seconds);
        /// the same default as apply's.
        #[arg(long, value_name = "DURATION", default_value = "60m", value_parser = parse_duration)]
        wait_timeout: std::time::Duration,
        /// How long to wait for another run's state lock.
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
        lock_timeout: std::time::Duration,
        #[command(flatten)]
        rules: RuleArgs,
    },
    /// Print a saved plan.
    #[command(
        after_help = "Examples:\n  stackwright show prod.plan\n  stackwright show prod.plan --json\n  stackwright show prod.plan --markdown > plan.md   # the PR comment of exactly this plan"
    )]
    Show {
        /// A plan file saved by `plan --out`.
        plan: PathBuf,
        /// Print the plan as JSON (docs/plan-format.md).
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Print the plan as markdown (for a pull-request comment).
        #[arg(long)]
        markdown: bool,
    },
    /// Database migrations: status, or run only the migration part of apply.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Database operations.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Subcommand, Debug)]
pub enum StateCommand {
    /// Every address in state with its AWS id.
    #[command(after_help = "Examples:\n  stackwright state list stacks/webapp.toml --env dev")]
    List {
        #[command(flatten)]
        stack: StackArgs,
    },
    /// One resource as state holds it (JSON).
    #[command(
        after_help = "Examples:\n  stackwright state show stacks/webapp.toml --env dev s3_bucket.uploads"
    )]
    Show {
        #[command(flatten)]
        stack: StackArgs,
        /// The address, e.g. s3_bucket.uploads.
        address: String,
    },
    /// Rename an address in state; the resource is not recreated. Rename its table in the
    /// stack file too (or declare the rename in `[moved]` so it goes through review).
    #[command(
        after_help = "Examples:\n  stackwright state mv stacks/webapp.toml --env dev s3_bucket.uploads s3_bucket.media"
    )]
    Mv {
        #[command(flatten)]
        stack: StackArgs,
        /// The address state has now.
        from: String,
        /// The new address (same kind).
        to: String,
        /// How long to wait for another run's state lock.
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
        lock_timeout: std::time::Duration,
    },
    /// Copy the local state file and its history to the stack's S3 backend, byte for byte.
    /// Refuses a different lineage or an older serial unless --force.
    #[command(
        after_help = "Examples:\n  stackwright state push stacks/webapp.toml --env prod\n  stackwright state push stacks/webapp.toml --env prod --state old/prod.json\n\nThe local file is state/<stack>/<env>.json unless --state names another."
    )]
    Push {
        #[command(flatten)]
        stack: StackArgs,
        /// Replace the remote state even if it has another lineage or a newer serial.
        #[arg(long)]
        force: bool,
        /// How long to wait for another run's state lock.
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
        lock_timeout: std::time::Duration,
    },
    /// Copy the state and its history from the stack's S3 backend to the local file, byte
    /// for byte. Refuses a different lineage or an older serial unless --force.
    #[command(
        after_help = "Examples:\n  stackwright state pull stacks/webapp.toml --env prod\n  stackwright state pull stacks/webapp.toml --env prod --state backup/prod.json"
    )]
    Pull {
        #[command(flatten)]
        stack: StackArgs,
        /// Replace the local state even if it has another lineage or a newer serial.
        #[arg(long)]
        force: bool,
        /// How long to wait for another run's state lock.
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
        lock_timeout: std::time::Duration,
    },
    /// Forget addresses: the resources stay in AWS, unmanaged by this stack.
    #[command(
        after_help = "Examples:\n  stackwright state rm stacks/webapp.toml --env dev s3_bucket.legacy"
    )]
    Rm {
        #[command(flatten)]
        stack: StackArgs,
        /// The addresses to forget.
        #[arg(required = true)]
        addresses: Vec<String>,
        /// How long to wait for another run's state lock.
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
        lock_timeout: std::time::Duration,
    },
}

#[derive(Subcommand, Debug)]
pub enum MigrateCommand {
    /// List applied, pending, modified and missing migrations.
    #[command(after_help = "Examples:\n  stackwright migrate status stacks/webapp.toml --env dev")]
    Status {
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Snapshot the database, then run pending migrations and the verify queries.
    #[command(after_help = "Examples:\n  stackwright migrate up stacks/webapp.toml --env dev")]
    Up {
        #[command(flatten)]
        stack: StackArgs,
        /// Apply migrations that squawk flags as unsafe even without an allow comment.
        #[arg(long)]
        allow_unsafe_migrations: bool,
        /// Run the migration tool even if its folder did not change (tool mode).
        #[arg(long)]
        force_migrations: bool,
        /// How long to wait for the pre-migration snapshot ("45m", "2h"; a bare number is seconds).
        #[arg(long, value_name = "DURATION", default_value = "60m", value_parser = parse_duration)]
        wait_timeout: std::time::Duration,
    },
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Restore an RDS snapshot into a new instance (RestoreDBInstanceFromDBSnapshot).
    #[command(
        after_help = "Examples:\n  stackwright db restore stacks/webapp.toml --env prod --snapshot webapp-prod-pre-0006-20261125T101500Z"
    )]
    Restore {
        #[command(flatten)]
        stack: StackArgs,
        /// The snapshot id to restore.
        #[arg(long)]
        snapshot: String,
        /// Identifier of the new instance [default: <identifier>-restored-<timestamp>].
        #[arg(long, value_name = "NEW_IDENTIFIER")]
        to: Option<String>,
        /// How long to wait for the new instance to be available ("45m", "2h"; a bare number is seconds).
        #[arg(long, value_name = "DURATION", default_value = "60m", value_parser = parse_duration)]
        wait_timeout: std::time::Duration,
    },
}

/// What a command ended with; mapped to the process exit code here only.
pub enum Exit {
    Success,
    Changes,
    Failure,
    /// Stopped by SIGINT/SIGTERM (128 + SIGINT, as shells report it).
    Interrupted,
}

pub fn main() -> ExitCode {
    // clap exits 2 on a usage error, which `--detailed-exitcode` reserves for "changes
    // present": a usage error is an error (1). Help and --version stay 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    output::init(cli.color, cli.verbose);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(commands::run(cli.command));
    match result {
        Ok(Exit::Success) => ExitCode::SUCCESS,
        Ok(Exit::Changes) => ExitCode::from(2),
        Ok(Exit::Failure) => ExitCode::FAILURE,
        Ok(Exit::Interrupted) => ExitCode::from(130),
        Err(e) => {
            output::error(&e);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every flag and argument of every command says what it does in `--help`.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if cmd.get_about().is_none() && !path.is_empty() {
                missing.push(format!("{path}: no about"));
            }
            for a in cmd.get_arguments() {
                if a.get_help().is_none() && !matches!(a.get_id().as_str(), "help" | "version") {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
        Cli::command().debug_assert();
    }

    #[test]
    fn every_duration_flag_takes_the_same_spelling() {
        for (args, want) in [
            (vec!["apply", "s.toml", "--wait-timeout", "45m"], 2700),
            (vec!["apply", "s.toml", "--wait-timeout", "90"], 90),
            (
                vec!["migrate", "up", "s.toml", "--wait-timeout", "2h"],
                7200,
            ),
            (
                vec![
                    "db",
                    "restore",
                    "s.toml",
                    "--snapshot",
                    "x",
                    "--wait-timeout",
                    "30s",
                ],
                30,
            ),
        ] {
            let cli = Cli::try_parse_from(std::iter::once("stackwright").chain(args.clone()))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let got = match cli.command {
                Command::Apply { run, .. } => run.wait_timeout,
                Command::Migrate(MigrateCommand::Up { wait_timeout, .. })
                | Command::Db(DbCommand::Restore { wait_timeout, .. }) => wait_timeout,
                other => panic!("{other:?}"),
            };
            assert_eq!(got.as_secs(), want, "{args:?}");
        }
        let err =
            Cli::try_parse_from(["stackwright", "apply", "s.toml", "--wait-timeout", "5 min"])
                .unwrap_err()
                .to_string();
        assert!(err.contains("unknown unit"), "{err}");
    }
}
