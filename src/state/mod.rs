//! State: what Stackwright created, as it last saw it. One JSON file per stack and
//! environment, meant to be committed to git and read by auditors.
//!
//! The file is deterministic (sorted keys, stable order, no timestamps) so that the same
//! infrastructure gives byte-identical files and git diffs show only real changes. It never
//! holds a secret, not even hashed: only the names of sensitive attributes. `lineage` is
//! fixed when the state is born and `serial` grows with every write, so a saved plan can
//! tell whether the state moved on (Terraform's model). Storage sits behind [`Backend`]:
//! a local file ([`local`], the default) or an S3 object ([`s3`], `[backend] s3 = {…}`).

pub mod history;
pub mod journal;
pub mod local;
pub mod s3;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::value::Attrs;
pub use journal::{Entry, Journal};
pub use local::{LocalBackend, LockGuard};
pub use s3::S3Backend;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub format_version: u32,
    pub lineage: String,
    pub serial: u64,
    /// The Stackwright version that last wrote the file.
    pub tool_version: String,
    pub stack: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    pub resources: BTreeMap<String, ResourceState>,
    /// Per-stack records that are not resources (the migration tool's folder digest,
    /// operation checkpoints).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub records: BTreeMap<String, serde_json::Value>,
    /// `[output.NAME]` values as the last apply computed them (never a secret: the stack
    /// refuses an output that would carry one). Read by `stackwright output`, no AWS call.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, OutputValue>,
    /// Intents of an interrupted apply not yet resolved against AWS (address → intent).
    /// Empty after every run that finished; the next plan resolves them (adoption).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending: BTreeMap<String, Intent>,
    /// The history record that produced this state (its hash), so that editing or dropping
    /// the last record is evident too (see [`history`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<history::Head>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputValue {
    pub value: serde_json::Value,
    /// Hidden in listings and after apply; printed when asked for by name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

/// What an apply was about to do to a resource when it recorded the intent.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IntentOp {
    Create,
    Delete,
}

/// A write-ahead record: enough to find the resource in AWS after a crash.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    pub kind: String,
    pub operation: IntentOp,
    /// The AWS id: decided by the stack (a bucket name) or returned by AWS (recorded
    /// as soon as the call returns). `None` when the call never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// UTC time the intent was recorded.
    pub since: String,
    /// Set when the call or its wait failed (rather than the run being killed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceState {
    pub kind: String,
    /// The AWS identifier (bucket name, parameter name, DB identifier).
    pub id: String,
    /// Managed attributes and outputs, secrets removed.
    pub attributes: Attrs,
    /// Names of attributes whose values are sensitive and therefore not stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive_attributes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Kept here so that deleting the `lifecycle` block from the file still protects it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prevent_destroy: bool,
    /// Provider-owned data kept with the resource (e.g. a previous revision); never a secret.
    #[serde(default, skip_serializing_if = "no_private")]
    pub private: Option<serde_json::Value>,
}

/// `private = null` is no private data: never written, so a state reads back as it was.
fn no_private(v: &Option<serde_json::Value>) -> bool {
    v.as_ref().is_none_or(serde_json::Value::is_null)
}

impl State {
    pub fn new(stack: &str, env: Option<&str>) -> Self {
        State {
            format_version: FORMAT_VERSION,
            lineage: uuid::Uuid::new_v4().to_string(),
            serial: 0,
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            stack: stack.to_owned(),
            env: env.map(str::to_owned),
            resources: BTreeMap::new(),
            records: BTreeMap::new(),
            outputs: BTreeMap::new(),
            pending: BTreeMap::new(),
            history: None,
        }
    }

    /// The serial this state has on disk: `None` when it was never saved (a saved state's
    /// serial is at least 1). What [`Backend::save`] expects to find.
    pub fn saved_serial(&self) -> Option<u64> {
        (self.serial > 0).then_some(self.serial)
    }

    /// Pretty JSON with every object's keys sorted, ending in a newline.
    pub fn to_json(&self) -> String {
        let v = serde_json::to_value(self).expect("state serialises");
        let mut s = serde_json::to_string_pretty(&crate::value::normalize(&v)).expect("json");
        s.push('\n');
        s
    }

    pub fn from_json(text: &str) -> Result<State, String> {
        let probe: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?;
        match probe.get("format_version").and_then(|v| v.as_u64()) {
            Some(v) if v == FORMAT_VERSION as u64 => {}
            Some(v) => {
                return Err(format!(
                    "format_version {v} is not supported by this Stackwright (which reads version {FORMAT_VERSION}); upgrade Stackwright"
                ));
            }
            None => return Err("no format_version: this is not a Stackwright state file".into()),
        }
        serde_json::from_value(probe).map_err(|e| format!("malformed state ({e})"))
    }
}

/// Who holds a lock, for the message another run prints. Written into the lock; never a
/// secret (the caller's ARN names a role or user, not a credential).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LockInfo {
    pub id: String,
    pub operation: String,
    pub pid: u32,
    pub host: String,
    pub user: String,
    pub since: String,
    /// The caller's ARN (STS), for a remote lock: who, across machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

impl LockInfo {
    pub fn new(operation: &str) -> Self {
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            operation: operation.to_owned(),
            pid: std::process::id(),
            host: whoami::fallible::hostname().unwrap_or_default(),
            user: whoami::username(),
            since: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            arn: None,
        }
    }

    /// How long the lock has been held ("3m12s"), from `since`; `None` if unreadable.
    pub fn age(&self) -> Option<String> {
        let since = chrono::DateTime::parse_from_rfc3339(&self.since).ok()?;
        let secs = (chrono::Utc::now() - since.to_utc()).num_seconds().max(0);
        Some(match secs {
            s if s < 60 => format!("{s}s"),
            s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
            s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        })
    }
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {} on {}, user {}",
            self.operation, self.pid, self.host, self.user
        )?;
        if let Some(arn) = &self.arn {
            write!(f, ", {arn}")?;
        }
        write!(f, ", since {}", self.since)?;
        if let Some(age) = self.age() {
            write!(f, ", held for {age}")?;
        }
        write!(f, ", lock id {})", self.id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "state {state} is locked by {}\n  = help: {help}",
        holder.as_ref().map_or("another run".to_owned(), |h| h.to_string())
    )]
    Locked {
        state: String,
        holder: Option<LockInfo>,
        /// What to do: differs between a lock the OS drops and a remote one that stays.
        help: String,
    },
    #[error("cannot lock state {state}: {source}")]
    Io {
        state: String,
        source: std::io::Error,
    },
    #[error("cannot lock state {state}: {message}")]
    Remote { state: String, message: String },
}

/// What `force-unlock` did.
#[derive(Debug)]
pub enum Unlocked {
    /// The lock with that id was removed; it was held as described.
    Released(LockInfo),
    /// There was no lock to remove.
    NotLocked,
    /// The backend's lock is an OS lock: released when its process exits, nothing to do.
    OsManaged,
}

/// A state and its history as stored, byte for byte: what `state push|pull` copy, so a
/// round-trip is byte-identical and the history still verifies.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub state: Vec<u8>,
    pub history: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// Another writer moved the state since this run read it.
    #[error(
        "state {state} was changed by another run (serial {found:?}, this run expected {expected:?}); nothing was overwritten — re-run plan"
    )]
    Conflict {
        state: String,
        expected: Option<u64>,
        found: Option<u64>,
    },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A backend as a saved plan names it: enough to open the same one again at apply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackendRef {
    Local {
        path: String,
    },
    S3 {
        bucket: String,
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
    },
}

/// Where state lives: [`LocalBackend`] (a file) or [`S3Backend`] (an object).
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// The state with its journal (if a crashed run left one) replayed in memory; `None`
    /// when no state exists yet. Changes nothing.
    async fn load(&self) -> anyhow::Result<Option<State>>;
    /// The one writer: checks that the stored state is still at `expected` (its serial, or
    /// `None` for "no state yet"), bumps `serial` and `tool_version`, writes atomically, and
    /// removes a journal that is now folded in. Returns the new serial.
    ///
    /// Every write appends one record to the state's history (`draft` says what the command
    /// did), durably and before the state file, so no state is written without its record.
    async fn save(
        &self,
        state: &mut State,
        expected: Option<u64>,
        draft: &history::Draft,
    ) -> Result<u64, SaveError>;
    /// Verifies the history against the state as stored (no journal replayed).
    async fn audit(&self) -> anyhow::Result<history::Report>;
    /// Takes the exclusive lock for a run that writes, waiting up to `timeout`; released
    /// when the guard drops (a local lock also by the OS when the process dies; a remote
    /// one left by a killed run stays until `force-unlock`).
    async fn lock(&self, operation: &str, timeout: Duration) -> Result<LockGuard, LockError>;
    /// Removes a lock left by a run that was killed, if its id is `id`.
    async fn force_unlock(&self, id: &str) -> anyhow::Result<Unlocked>;
    /// Starts this run's write-ahead journal on top of `base` (under the lock).
    fn open_journal(&self, base: &State) -> std::io::Result<Journal>;
    /// Whether a journal of an interrupted run is waiting to be folded.
    async fn has_journal(&self) -> anyhow::Result<bool>;
    /// Names the journal in messages.
    fn journal_location(&self) -> String;
    /// The state and history bytes as stored (`None`: no state yet).
    async fn read_stored(&self) -> anyhow::Result<Option<Stored>>;
    /// Replaces the state and history with `stored`, byte for byte (under the lock; the
    /// caller has checked lineage and serial).
    async fn write_stored(&self, stored: &Stored) -> anyhow::Result<()>;
    /// Identifies the backend in messages.
    fn describe(&self) -> String;
    /// Identifies the backend in saved plans.
    fn descriptor(&self) -> BackendRef;
}

/// The error for an address state does not hold, with the closest one it does.
pub fn not_in_state(state: &State, address: &str) -> crate::error::Diagnostic {
    let d = crate::error::Diagnostic::new(format!("`{address}` is not in state"));
    match crate::error::suggest(address, state.resources.keys().map(String::as_str)) {
        Some(s) => d.hint(format!("did you mean `{s}`?")),
        None => d.hint("`stackwright state list` shows what state holds"),
    }
}

/// Renames `from` to `to` in state (the resource is not touched in AWS); what referred to
/// `from` (dependencies, an open intent) follows. Shared by `state mv`, the stack file's
/// `[moved]` table and the journal's replay of a move.
pub fn moved(state: &mut State, from: &str, to: &str) -> Result<(), crate::error::Diagnostic> {
    use crate::error::Diagnostic;
    let Some(r) = state.resources.get(from) else {
        return Err(not_in_state(state, from));
    };
    let Some((kind, name)) = to.split_once('.') else {
        return Err(Diagnostic::new(format!(
            "`{to}` is not a resource address (KIND.NAME, e.g. s3_bucket.uploads)"
        )));
    };
    if kind != r.kind {
        return Err(Diagnostic::new(format!(
            "cannot move `{from}` (a {}) to `{to}`: an address keeps its kind",
            r.kind
        ))
        .hint(format!("the new address must start with `{}.`", r.kind)));
    }
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Diagnostic::new(format!(
            "`{to}`: invalid name `{name}` (use letters, digits, '_' and '-')"
        )));
    }
    if state.resources.contains_key(to) {
        return Err(Diagnostic::new(format!(
            "cannot move `{from}` to `{to}`: `{to}` is already in state"
        ))
        .hint(format!(
            "`stackwright state rm {to}` first if that one should be forgotten"
        )));
    }
    let r = state.resources.remove(from).expect("checked");
    state.resources.insert(to.to_owned(), r);
    for other in state.resources.values_mut() {
        for d in &mut other.depends_on {
            if d == from {
                *d = to.to_owned();
            }
        }
    }
    if let Some(i) = state.pending.remove(from) {
        state.pending.insert(to.to_owned(), i);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialisation_is_sorted_and_round_trips() {
        let mut s = State::new("webapp", Some("dev"));
        s.lineage = "00000000-0000-0000-0000-000000000000".into();
        let mut attrs = Attrs::new();
        attrs.insert("zeta".into(), serde_json::json!({"b": 1, "a": 2}));
        attrs.insert("alpha".into(), serde_json::json!(true));
        s.resources.insert(
            "s3_bucket.b".into(),
            ResourceState {
                kind: "s3_bucket".into(),
                id: "b".into(),
                attributes: attrs,
                sensitive_attributes: vec![],
                depends_on: vec![],
                prevent_destroy: true,
                private: None,
            },
        );
        let json = s.to_json();
        assert!(json.find("\"a\": 2").unwrap() < json.find("\"b\": 1").unwrap());
        assert!(json.find("\"env\"").unwrap() < json.find("\"format_version\"").unwrap());
        assert_eq!(State::from_json(&json).unwrap(), s);
        assert_eq!(State::from_json(&json).unwrap().to_json(), json);
    }

    #[test]
    fn refuses_unknown_versions_and_garbage() {
        assert!(
            State::from_json("{")
                .unwrap_err()
                .contains("not valid JSON")
        );
        let v2 = r#"{"format_version": 99}"#;
        assert!(
            State::from_json(v2)
                .unwrap_err()
                .contains("format_version 99")
        );
        assert!(
            State::from_json("{}")
                .unwrap_err()
                .contains("not a Stackwright state")
        );
    }
}
