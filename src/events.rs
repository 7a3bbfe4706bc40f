//! Typed progress events every layer emits (providers, operations, the executor). The terminal renderer, the JSON output and (later) the
//! apply history all consume the same stream, so what a user sees, what CI parses and what
//! an auditor reads cannot drift apart.

use std::time::Duration;

use serde::Serialize;

/// The `apply --json` event format (docs/events.md), announced by its first line. Adding
/// an event type or a field keeps the number; removing or renaming one raises it.
pub const FORMAT_VERSION: u32 = 1;

/// What an action does. Typed for every consumer (the printer, the migrations checkpoint);
/// in JSON it is the word CI parsers have always read ("create", "migrate 0002_x.sql").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Activity {
    /// A resource change of the plan.
    Resource(crate::plan::Action),
    /// A long-running operation as a whole (migrations: snapshot, migrate, verify).
    Operation,
    /// One migration file, by file name.
    Migrate(String),
    /// A migration tool's command (`alembic upgrade head`), secrets redacted.
    Command(String),
    /// The action failed (in `ActionFinished` only).
    Failed,
}

impl std::fmt::Display for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Activity::Resource(a) => f.write_str(a.verb()),
            Activity::Operation => f.write_str("run"),
            Activity::Migrate(file) => write!(f, "migrate {file}"),
            Activity::Command(cmd) => write!(f, "run {cmd}"),
            Activity::Failed => f.write_str("failed"),
        }
    }
}

impl Serialize for Activity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    ActionStarted {
        address: String,
        action: Activity,
    },
    ActionFinished {
        address: String,
        action: Activity,
        #[serde(with = "secs")]
        elapsed: Duration,
        /// `None` on success.
        error: Option<String>,
    },
    /// A resource is settling (RDS `creating` → `available`).
    Waiting {
        address: String,
        status: String,
        #[serde(with = "secs")]
        elapsed: Duration,
    },
    /// AWS returned the id of a resource being created (before any wait). The executor
    /// writes it to the journal at once, so a crash mid-wait loses nothing.
    Created {
        address: String,
        id: String,
    },
    /// A remark worth showing (a snapshot taken, a step skipped and why).
    Note {
        address: String,
        message: String,
    },
    /// An action not started because something it depends on failed (or the run was
    /// interrupted).
    Skipped {
        address: String,
        reason: String,
    },
    /// A long-running operation completed a step: `value` is its checkpoint, kept in state
    /// under `key` (`null` removes it). The executor journals it at once.
    Checkpoint {
        key: String,
        value: serde_json::Value,
    },
    /// The run was asked to stop (SIGINT/SIGTERM): nothing new starts.
    Interrupted {
        signal: String,
    },
}

mod secs {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 10.0).round() / 10.0)
    }
}

pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event);
}

/// Discards events (validate, tests of the engine).
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _event: Event) {}
}

/// Collects events in memory, for tests and for the apply summary.
#[derive(Default)]
pub struct Recorder(pub std::sync::Mutex<Vec<Event>>);

impl EventSink for Recorder {
    fn emit(&self, event: Event) {
        self.0.lock().expect("recorder lock").push(event);
    }
}
