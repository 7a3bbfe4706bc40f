//! The one place that writes to the terminal: colour choice, errors, apply progress.
//!
//! Text goes through `anstream`, which strips ANSI styling when colour is off. Progress of
//! slow waits (RDS) is an indicatif spinner on a terminal and a plain line per status change
//! otherwise, so CI logs stay readable.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::exit)]

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use anstyle::{AnsiColor, Style};
use indicatif::{ProgressBar, ProgressStyle};

use super::Color;
use crate::error::Diagnostic;
use crate::events::{Activity, Event, EventSink};
use crate::plan::Action;

const RED: Style = AnsiColor::Red.on_default();
const GREEN: Style = AnsiColor::Green.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const BOLD: Style = Style::new().bold();

pub fn init(color: Color, verbose: u8) {
    let choice = match color {
        Color::Auto => anstream::ColorChoice::Auto,
        Color::Always => anstream::ColorChoice::Always,
        Color::Never => anstream::ColorChoice::Never,
    };
    choice.write_global();
    let default = match verbose {
        // aws-config warns about absent config files, which is the normal case in CI.
        0 => "warn,aws_config=error",
        1 => "stackwright=info",
        _ => "stackwright=debug,aws_config=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STACKWRIGHT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

pub fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// Prints to stdout (styling stripped when colour is off).
pub fn print(text: &str) {
    let mut out = anstream::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

pub fn println(text: &str) {
    print(&format!("{text}\n"));
}

pub fn eprintln(text: &str) {
    let mut err = anstream::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// The first line of `apply --json`: which event format follows (docs/events.md).
pub fn json_header() {
    println(
        &serde_json::json!({
            "type": "version",
            "format": crate::events::FORMAT_VERSION,
            "stackwright": env!("CARGO_PKG_VERSION"),
        })
        .to_string(),
    );
}

pub fn success(text: &str) {
    println(&paint(GREEN.bold(), text));
}

/// An error, rendered once: a diagnostic with its location, or the error chain.
pub fn error(e: &anyhow::Error) {
    let body = match e.downcast_ref::<Diagnostic>() {
        Some(d) => d.to_string(),
        None => format!("{e:#}"),
    };
    eprintln(&format!("{} {body}", paint(RED.bold(), "Error:")));
}

/// A warning about the input (accepted, but worth fixing), on stderr.
pub fn warning(d: &Diagnostic) {
    eprintln(&format!("{} {d}", paint(YELLOW.bold(), "Warning:")));
}

pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Asks for `yes` on the terminal.
pub fn confirm(question: &str) -> bool {
    print(&format!(
        "\n{}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ",
        paint(BOLD, question)
    ));
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).is_ok() && line.trim() == "yes"
}

/// Asks for `expected` (an environment's name) to be typed on the terminal.
pub fn confirm_typed(question: &str, expected: &str) -> bool {
    print(&format!(
        "\n{}\n  Only '{expected}' will be accepted to approve.\n\n  Enter the environment's name: ",
        paint(BOLD, question)
    ));
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).is_ok() && line.trim() == expected
}

fn started_line(action: &Activity) -> String {
    match action {
        Activity::Resource(Action::Create) => "Creating...".into(),
        Activity::Resource(Action::Update) => "Modifying...".into(),
        Activity::Resource(Action::Replace | Action::CreateThenDelete) => "Replacing...".into(),
        Activity::Resource(Action::Delete) => "Destroying...".into(),
        Activity::Operation => "Running (snapshot, migrate, verify)...".into(),
        Activity::Migrate(file) => format!("Migrating {file}..."),
        Activity::Command(tool) => format!("Running {tool}..."),
        other => format!("{other}..."),
    }
}

fn finished_line(action: &Activity, elapsed: f64) -> String {
    let what = match action {
        Activity::Resource(Action::Create) => "Creation complete".into(),
        Activity::Resource(Action::Update) => "Modifications complete".into(),
        Activity::Resource(Action::Replace | Action::CreateThenDelete) => {
            "Replacement complete".into()
        }
        Activity::Resource(Action::Delete) => "Destruction complete".into(),
        Activity::Migrate(file) => format!("Migrated {file}"),
        Activity::Command(tool) => format!("Ran {tool}"),
        _ => "Complete".into(),
    };
    format!("{what} after {elapsed:.1}s")
}

/// Renders apply events for a person (lines, spinners) or for CI (`--json`: one JSON object per line).
pub struct TermEvents {
    json: bool,
    tty: bool,
    spinners: Mutex<BTreeMap<String, ProgressBar>>,
}

/// Ends the process at once (a second Ctrl-C). The only exit outside `cli::main`.
pub fn exit_now(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

impl TermEvents {
    pub fn is_json(&self) -> bool {
        self.json
    }

    pub fn new(json: bool) -> Self {
        TermEvents {
            json,
            tty: std::io::stdout().is_terminal(),
            spinners: Mutex::new(BTreeMap::new()),
        }
    }
}

impl EventSink for TermEvents {
    fn emit(&self, event: Event) {
        if self.json {
            println(&serde_json::to_string(&event).expect("event json"));
            return;
        }
        match event {
            Event::ActionStarted { address, action } => println(&format!(
                "{}: {}",
                paint(BOLD, &address),
                started_line(&action)
            )),
            Event::ActionFinished {
                address,
                action,
                elapsed,
                error,
            } => {
                if let Some(sp) = self.spinners.lock().expect("spinners").remove(&address) {
                    sp.finish_and_clear();
                }
                match error {
                    None => println(&format!(
                        "{}: {}",
                        paint(BOLD, &address),
                        finished_line(&action, elapsed.as_secs_f64())
                    )),
                    Some(e) => println(&format!(
                        "{}: {} {e}",
                        paint(BOLD, &address),
                        paint(RED.bold(), "failed:")
                    )),
                }
            }
            Event::Waiting {
                address,
                status,
                elapsed,
            } => {
                if self.tty {
                    let mut sp = self.spinners.lock().expect("spinners");
                    let bar = sp.entry(address.clone()).or_insert_with(|| {
                        let b = ProgressBar::new_spinner();
                        b.set_style(
                            ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
                                .expect("template"),
                        );
                        b.set_prefix(address.clone());
                        b.enable_steady_tick(std::time::Duration::from_millis(120));
                        b
                    });
                    bar.set_message(format!("status {status}"));
                } else {
                    println(&format!(
                        "{address}: waiting, status {status} ({}s elapsed)",
                        elapsed.as_secs()
                    ));
                }
            }
            Event::Note { address, message } => println(&format!("{address}: {message}")),
            Event::Checkpoint { key, .. } => {
                tracing::debug!(key = %key, "checkpoint recorded");
            }
            Event::Created { address, id } => {
                tracing::debug!(address = %address, id = %id, "created; id recorded");
            }
            Event::Interrupted { signal } => eprintln(&format!(
                "\n{} ({signal}): finishing the calls already running, starting nothing new; press Ctrl-C again to stop at once",
                paint(AnsiColor::Yellow.on_default().bold(), "Interrupt received")
            )),
            Event::Skipped { address, reason } => {
                println(&format!("{}: skipped ({reason})", paint(BOLD, &address)))
            }
        }
    }
}
