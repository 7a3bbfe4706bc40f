//! Expressions inside attribute values: `${...}` interpolation.
//!
//! `var.*`, `env` and `stack.*` are substituted while the stack loads, so what remains in
//! an [`Expr`] are references to other resources' attributes (`kind.name.attr`,
//! `data.kind.name.attr`), which become graph edges and are resolved at plan or apply time.

use std::collections::BTreeMap;
use std::ops::Range;

use serde_json::Value;

use crate::secret::SecretString;
use crate::value::Desired;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ref {
    /// `s3_bucket.uploads` or `data.vpc.main`.
    pub address: String,
    pub attr: String,
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.address, self.attr)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Text(String),
    Ref(Ref),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Lit(Value),
    /// A string that is exactly one reference: the referenced value as it is (a list stays a list).
    Ref(Ref),
    /// Text with references: always a string.
    Concat(Vec<Part>),
    List(Vec<Expr>),
    Map(BTreeMap<String, Expr>),
    Secret(SecretString),
}

impl Expr {
    pub fn refs(&self, out: &mut Vec<Ref>) {
        match self {
            Expr::Ref(r) => out.push(r.clone()),
            Expr::Concat(parts) => out.extend(parts.iter().filter_map(|p| match p {
                Part::Ref(r) => Some(r.clone()),
                Part::Text(_) => None,
            })),
            Expr::List(items) => items.iter().for_each(|e| e.refs(out)),
            Expr::Map(m) => m.values().for_each(|e| e.refs(out)),
            Expr::Lit(_) | Expr::Secret(_) => {}
        }
    }

    /// Evaluates with `lookup` answering references; any unknown part makes the whole unknown,
    /// and a secret anywhere makes the whole secret.
    pub fn eval(&self, lookup: &dyn Fn(&Ref) -> Desired) -> Desired {
        match self {
            Expr::Lit(v) => Desired::Known(v.clone()),
            Expr::Secret(s) => Desired::Secret(s.clone()),
            Expr::Ref(r) => lookup(r),
            Expr::Concat(parts) => {
                let mut out = String::new();
                let mut secret = false;
                for p in parts {
                    match p {
                        Part::Text(t) => out.push_str(t),
                        Part::Ref(r) => match lookup(r) {
                            Desired::Known(v) => out.push_str(&scalar_text(&v)),
                            Desired::Unknown => return Desired::Unknown,
                            Desired::Secret(s) => {
                                secret = true;
                                out.push_str(s.expose());
                            }
                        },
                    }
                }
                if secret {
                    Desired::Secret(SecretString::new(out))
                } else {
                    Desired::Known(Value::String(out))
                }
            }
            Expr::List(items) => collect(items.iter().map(|e| e.eval(lookup)), Value::Array),
            Expr::Map(m) => {
                let keys: Vec<&String> = m.keys().collect();
                collect(m.values().map(|e| e.eval(lookup)), |vs| {
                    Value::Object(keys.iter().map(|k| (*k).clone()).zip(vs).collect())
                })
            }
        }
    }
}

fn collect(
    items: impl Iterator<Item = Desired>,
    build: impl FnOnce(Vec<Value>) -> Value,
) -> Desired {
    let mut vs = Vec::new();
    for d in items {
        match d {
            Desired::Known(v) => vs.push(v),
            // A secret inside a list or table is not supported by any kind; keep it opaque.
            other => return other,
        }
    }
    Desired::Known(build(vs))
}

/// How a scalar appears inside a string.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A `${...}` occurrence in a string, before its meaning is decided.
#[derive(Debug, PartialEq)]
pub enum RawPart {
    Text(String),
    /// The trimmed inner text and its byte range inside the string (including `${` and `}`).
    Interp(String, Range<usize>),
}

/// Splits a string into text and `${...}` parts. `$${` is a literal `${`.
pub fn split_template(s: &str) -> Result<Vec<RawPart>, (String, Range<usize>)> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    let bytes = s.as_bytes();
    while i < s.len() {
        if s[i..].starts_with("$${") {
            text.push_str("${");
            i += 3;
        } else if s[i..].starts_with("${") {
            let Some(close) = s[i + 2..].find('}') else {
                return Err(("unclosed `${` in string".into(), i..s.len()));
            };
            if !text.is_empty() {
                parts.push(RawPart::Text(std::mem::take(&mut text)));
            }
            let inner = s[i + 2..i + 2 + close].trim().to_owned();
            parts.push(RawPart::Interp(inner, i..i + 3 + close));
            i += 3 + close;
        } else {
            let ch = s[i..].chars().next().expect("in bounds");
            text.push(ch);
            i += ch.len_utf8();
            let _ = bytes;
        }
    }
    if !text.is_empty() {
        parts.push(RawPart::Text(text));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_text_and_interpolations() {
        let parts = split_template("a-${ env }-$${x}").unwrap();
        assert_eq!(
            parts,
            vec![
                RawPart::Text("a-".into()),
                RawPart::Interp("env".into(), 2..10),
                RawPart::Text("-${x}".into()),
            ]
        );
        assert!(split_template("${oops").is_err());
    }

    #[test]
    fn eval_propagates_unknown_and_secret() {
        let r = Ref {
            address: "s3_bucket.a".into(),
            attr: "arn".into(),
        };
        let e = Expr::Concat(vec![Part::Text("x:".into()), Part::Ref(r.clone())]);
        assert_eq!(e.eval(&|_| Desired::Unknown), Desired::Unknown);
        assert_eq!(
            e.eval(&|_| Desired::Known(Value::from("y"))),
            Desired::Known(Value::from("x:y"))
        );
        let list = Expr::Ref(r);
        assert_eq!(
            list.eval(&|_| Desired::Known(serde_json::json!(["a", "b"]))),
            Desired::Known(serde_json::json!(["a", "b"]))
        );
    }
}
