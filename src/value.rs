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

/// One spelling for every duration, in stack files and flags alike: `"30s"`, `"5m"`,
/// `"1h"`, `"250ms"`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; write it like 30s, 5m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        _ => return Err(format!("unknown unit `{unit}` in `{s}`; use ms, s, m or h")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_duration;

    #[test]
    fn durations_have_one_spelling() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration(" 5m "), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5 m").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("m").unwrap_err().contains("not a duration"));
        assert!(
            parse_duration("1d")
                .unwrap_err()
                .contains("use ms, s, m or h")
        );
        assert!(parse_duration("-5s").is_err());
    }
}
