//! Planning: refresh what exists, diff it against the stack, and decide the actions.
//!
//! The [`Plan`] is plain data: the terminal renderer ([`render`]), the JSON output and the
//! saved plan file ([`file`]) all draw from it, and apply executes it. Reasons (drift,
//! which attribute forced a replacement) are there to explain, never to decide.

pub mod diff;
pub mod file;
pub mod render;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use diff::{PlanOptions, plan};

/// 2: `stack.backend` (a backend descriptor) replaced `stack.state_path`; adoptions.
/// 3: `outputs`. 4: `moves` (an older Stackwright would apply such a plan without them).
pub const FORMAT_VERSION: u32 = 4;

/// Terraform's small closed set; the symbol is also the printed glyph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    NoOp,
    Read,
    Create,
    Update,
    /// Delete, then create (names are unique, so the old one must go first).
    Replace,
    /// Create the new one, move what references it, then delete the old one.
    CreateThenDelete,
    Delete,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Read => "<=",
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::CreateThenDelete => "+/-",
            Action::Delete => "-",
        }
    }
    pub fn verb(self) -> &'static str {
        match self {
            Action::NoOp => "no-op",
            Action::Read => "read",
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::CreateThenDelete => "replace (create first)",
            Action::Delete => "delete",
        }
    }
}

/// A planned value, as far as it can be shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum After {
    Known(Value),
    Unknown,
    /// A secret; `changed` was decided by comparing values in memory only.
    Sensitive {
        changed: bool,
    },
    /// The attribute is going away (delete).
    Removed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttrChange {
    pub name: String,
    /// `None` when it did not exist (create) or is a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    pub after: After,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changed: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forces_replacement: bool,
}

/// An attribute whose live value differs from what state recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub name: String,
    pub recorded: Option<Value>,
    pub live: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub address: String,
    pub kind: String,
    pub action: Action,
    /// The AWS id of the existing resource (update, replace, delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub attributes: Vec<AttrChange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace_because: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Drift>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted_outside: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Addresses this change must wait for (dependencies, or dependants being deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_changes: Vec<String>,
    /// Why the resource is taken into state by this plan (adoption after an interrupted
    /// apply, or an import); the change is then planned against what AWS holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<String>,
}

impl Change {
    pub fn changed_attrs(&self) -> Vec<String> {
        self.attributes
            .iter()
            .filter(|a| a.changed)
            .map(|a| a.name.clone())
            .collect()
    }
}

/// A stack output as this plan sees it. A sensitive output's values never enter the plan
/// (it goes to the terminal and to CI logs): only whether it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputChange {
    pub name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    pub after: After,
    /// Create (new), Update, Delete (gone from the stack or destroyed), or NoOp.
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataRead {
    pub address: String,
    pub attributes: BTreeMap<String, Value>,
}

/// Which state the plan was made against: a saved plan applies only to that one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PriorState {
    /// No state existed: the plan can only be applied while that is still true, so a first
    /// plan cannot be applied twice.
    NoStateYet,
    Existing {
        lineage: String,
        serial: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanStack {
    pub path: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// `--var` values given on the command line (they are part of the digest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cli_vars: Vec<(String, String)>,
    pub digest: String,
    /// Where the state lives: apply of this plan writes there and nowhere else.
    pub backend: crate::state::BackendRef,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub replace: usize,
    pub destroy: usize,
}

/// Pending migrations, shown in their own section and run by apply.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationsPlan {
    pub database: String,
    /// Files (or the tool run) that will run, in order.
    pub pending: Vec<String>,
    pub findings: Vec<crate::migrations::Finding>,
    /// Why nothing can be said yet (the database does not exist before this apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_reason: Option<String>,
    /// The snapshot apply will take first, or why none.
    pub snapshot: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// Where an interrupted run stopped ("interrupted after 0003 …"), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
    /// Tool mode: the folder digest that will be recorded after a successful run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_digest: Option<String>,
}

/// A `[moved]` entry this plan carries out: state's `from` becomes `to`, before any other
/// change, and nothing in AWS is touched. `to` is planned against what `from` recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub from: String,
    pub to: String,
    /// The AWS id of the resource that moves.
    pub id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub tool_version: String,
    pub stack: PlanStack,
    pub prior_state: PriorState,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub destroy: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    pub data: Vec<DataRead>,
    /// Renames from the stack's `[moved]` table, applied to state first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<Move>,
    /// Every resource's change, no-ops included (they carry drift and known values).
    pub changes: Vec<Change>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<MigrationsPlan>,
    /// `[output.NAME]` values, unchanged ones included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputChange>,
    /// `address.attr` → argon2id fingerprint of each secret this plan will write.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_fingerprints: BTreeMap<String, String>,
    /// Resources apply records in state before anything else: found in AWS after an
    /// interrupted apply, or imported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adoptions: Vec<crate::refresh::Adoption>,
    /// Open intents of an interrupted apply that this plan resolved without adoption, as
    /// the journal entries apply records for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_intents: Vec<crate::state::Entry>,
    pub summary: Summary,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.adoptions.is_empty()
            || !self.moves.is_empty()
            || !self.resolved_intents.is_empty()
            || self.changes.iter().any(|c| c.action != Action::NoOp)
            || self.outputs.iter().any(|o| o.action != Action::NoOp)
            || self.migrations.as_ref().is_some_and(|m| {
                !m.pending.is_empty() || m.unknown_reason.is_some() || m.interrupted.is_some()
            })
    }

    pub fn summarize(changes: &[Change]) -> Summary {
        let mut s = Summary::default();
        for c in changes {
            match c.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Replace | Action::CreateThenDelete => s.replace += 1,
                Action::Delete => s.destroy += 1,
                Action::NoOp | Action::Read => {}
            }
        }
        s
    }

    pub fn change(&self, address: &str) -> Option<&Change> {
        self.changes.iter().find(|c| c.address == address)
    }
}
