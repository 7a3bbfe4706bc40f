//! Attribute values shared by the stack, the plan, the state and the providers.
//!
//! Known values are plain JSON (`serde_json::Value`) kept in sorted maps so that every
//! serialisation is deterministic. A desired value may also be unknown until apply (it
//! references an attribute such as an ARN that only exists after create) or a secret,
//! which lives in memory only and never reaches a file or the terminal.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::secret::SecretString;

/// Attribute name → known value, sorted.
pub type Attrs = BTreeMap<String, Value>;

/// A desired attribute value after interpolation.
#[derive(Clone, Debug, PartialEq)]
pub enum Desired {
    Known(Value),
    /// Depends on an attribute that is only known after an earlier action runs.
    Unknown,
    /// A sensitive value: compared in memory, shown as `(sensitive)`, never stored.
    Secret(SecretString),
}

impl Desired {
    pub fn known(&self) -> Option<&Value> {
        match self {
            Desired::Known(v) => Some(v),
            _ => None,
        }
    }
}

/// The resolved input of a create or update: every value is known.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    pub attrs: Attrs,
    pub secrets: BTreeMap<String, SecretString>,
}

impl Resolved {
    pub fn str(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).and_then(Value::as_str)
    }
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.attrs.get(name).and_then(Value::as_bool)
    }
    pub fn int(&self, name: &str) -> Option<i64> {
        self.attrs.get(name).and_then(Value::as_i64)
    }
    /// A value that may be plain or secret (an SSM parameter value), exposed for the AWS call only.
    pub fn plain_or_secret(&self, name: &str) -> Option<&str> {
        self.secrets
            .get(name)
            .map(|s| s.expose())
            .or_else(|| self.str(name))
    }
    pub fn string_map(&self, name: &str) -> BTreeMap<String, String> {
        string_map(self.attrs.get(name))
    }
    pub fn string_list(&self, name: &str) -> Vec<String> {
        match self.attrs.get(name) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }
}

pub fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A JSON object from string pairs, sorted (tags).
pub fn map_value<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Value {
    let sorted: BTreeMap<String, String> = pairs.into_iter().collect();
    Value::Object(
        sorted
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

/// Recursively sorts object keys so that equal values serialise identically.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, normalize(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}
