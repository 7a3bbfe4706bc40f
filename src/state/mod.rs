//! State: what Stackwright created, as it last saw it. One JSON file per stack and
//! environment, meant to be committed to git and read by auditors.
//!
//! The file is deterministic (sorted keys, stable order, no timestamps) so that the same
//! infrastructure gives byte-identical files and git diffs show only real changes. It never
//! holds a secret, not even hashed: only the names of sensitive attributes. `lineage` is
//! fixed when the state is born and `serial` grows with every write, so a saved plan can
//! tell whether the state moved on (Terraform's model). Storage sits behind [`Backend`].

pub mod local;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::value::Attrs;
pub use local::{LocalBackend, LockGuard};

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
    /// Per-stack records that are not resources (the migration tool's folder digest).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub records: BTreeMap<String, serde_json::Value>,
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
        }
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

/// Where state lives. Local files now; an S3 backend with locking comes later.
pub trait Backend: Send + Sync {
    /// `None` when no state exists yet.
    fn load(&self) -> anyhow::Result<Option<State>>;
    /// Writes atomically: a crash leaves either the old or the new file, never half of one.
    fn save(&self, state: &State) -> anyhow::Result<()>;
    /// Takes the exclusive lock for a run that writes; released when the guard drops.
    fn lock(&self, operation: &str) -> anyhow::Result<LockGuard>;
    fn describe(&self) -> String;
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
