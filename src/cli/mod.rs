//! The command line: argument parsing (clap), one function per command, exit codes.
//!
//! Exit codes are decided in one place ([`main`]): 0 success (and "no changes" under
//! `--detailed-exitcode`), 1 error (usage errors included), 2 changes present (only with
//! `--detailed-exitcode`), 130 interrupted.
//! All terminal output goes through [`output`], which owns colour and progress display.

mod commands;
mod migrate;
pub mod output;

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
    /// State file [default: state/<stack>/<env>.json, or state/<stack>.json].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// How many AWS operations run at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Seconds to wait for a resource to become available before failing.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub wait_timeout: u64,
    /// Limit the plan to these resources and what they depend on; repeatable.
    #[arg(long = "target", value_name = "ADDRESS")]
    pub targets: Vec<String>,
    /// How long to wait for another run's state lock ("0s": fail at once; "30s", "5m").
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,
}

/// `"30s"`, `"5m"`, `"1h"`, `"250ms"`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; write it like 30s, 5m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        _ => return Err(format!("unknown unit `{unit}` in `{s}`; use ms, s, m or h")),
    };
    Ok(std::time::Duration::from_secs(secs))
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
        after_help = "Examples:\n  stackwright apply stacks/webapp.toml --env dev            # plans, asks for `yes`\n  stackwright apply stacks/webapp.toml --env dev --auto-approve\n  stackwright apply prod.plan                               # exactly what was planned"
    )]
    Apply {
        /// A stack file, or a plan file saved by `plan --out`.
        target: PathBuf,
        #[arg(long)]
        env: Option<String>,
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        #[command(flatten)]
        run: RunArgs,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
        /// Emit progress events as JSON lines.
        #[arg(long)]
        json: bool,
        /// Apply migrations that squawk flags as unsafe even without an allow comment.
        #[arg(long)]
        allow_unsafe_migrations: bool,
        /// Run the migration tool even if its folder did not change (tool mode).
        #[arg(long)]
        migrate: bool,
    },
    /// Delete everything the stack's state holds, dependants first.
    #[command(
        after_help = "Examples:\n  stackwright destroy stacks/webapp.toml --env dev --auto-approve"
    )]
    Destroy {
        #[command(flatten)]
        stack: StackArgs,
        #[command(flatten)]
        run: RunArgs,
        #[arg(long)]
        auto_approve: bool,
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
    /// Print a saved plan.
    #[command(
        after_help = "Examples:\n  stackwright show prod.plan\n  stackwright show prod.plan --json"
    )]
    Show {
        plan: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Database migrations: status, or run only the migration part of apply.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Database operations.
    #[command(subcommand)]
    Db(DbCommand),
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
        #[arg(long)]
        allow_unsafe_migrations: bool,
        /// Run the migration tool even if its folder did not change (tool mode).
        #[arg(long)]
        force: bool,
        #[arg(long, default_value_t = 3600, value_name = "SECS")]
        wait_timeout: u64,
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
        #[arg(long, default_value_t = 3600, value_name = "SECS")]
        wait_timeout: u64,
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
