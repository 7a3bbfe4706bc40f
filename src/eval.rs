//! Evaluation: turns a resource's stack expressions into desired values, from data reads,
//! state and the changes planned or applied before it. Shared by plan and apply, so the
//! two cannot disagree on what a reference means.

use std::collections::BTreeMap;

use crate::error::Diagnostic;
use crate::graph::Graph;
use crate::plan::Action;
use crate::providers::{Live, Provider, SecretMode};
use crate::secret::SecretString;
use crate::stack::{Ref, Resource, Stack};
use crate::value::{Attrs, Desired, Resolved, normalize};

/// The dependency graph of a stack's resources and data sources.
pub fn stack_graph(stack: &Stack) -> Graph {
    Graph::new(
        stack
            .resources
            .values()
            .chain(stack.data.values())
            .map(|r| (r.address.clone(), r.dependencies())),
    )
}

/// Evaluates a resource's desired attributes. `lookup` answers references.
pub fn desired_attrs(
    r: &Resource,
    provider: &dyn Provider,
    lookup: &dyn Fn(&Ref) -> Desired,
) -> BTreeMap<String, Desired> {
    let mut out: BTreeMap<String, Desired> = r
        .attrs
        .iter()
        .map(|(k, e)| (k.clone(), e.eval(lookup)))
        .collect();
    for a in provider.schema().attrs {
        if let (false, Some(d)) = (out.contains_key(a.name), a.default.value()) {
            out.insert(a.name.to_owned(), Desired::Known(d));
        }
    }
    // A plain value the kind deems secret (a SecureString's value) is a secret from here on.
    let sensitive: Vec<String> = out
        .keys()
        .filter(|k| provider.is_sensitive(k, &out))
        .cloned()
        .collect();
    for k in sensitive {
        if let Some(Desired::Known(v)) = out.get(&k) {
            let s = crate::stack::expr::scalar_text(v);
            out.insert(k, Desired::Secret(SecretString::new(s)));
        }
    }
    out
}

/// The provider input of stack resource `r` from the values known so far (`Err` names an
/// attribute still unknown): what apply would send for it now.
pub fn input_of(
    provider: &dyn Provider,
    r: &Resource,
    known: &BTreeMap<String, Attrs>,
) -> Result<Resolved, String> {
    let lookup = |rf: &Ref| match known.get(&rf.address).and_then(|a| a.get(&rf.attr)) {
        Some(v) => Desired::Known(v.clone()),
        None => Desired::Unknown,
    };
    resolve(&desired_attrs(r, provider, &lookup))
        .map_err(|a| format!("`{}.{a}` is not known yet", r.address))
}

/// Splits fully known desired values into the provider's input; `Err(attr)` names one still unknown.
pub fn resolve(desired: &BTreeMap<String, Desired>) -> Result<Resolved, String> {
    let mut r = Resolved::default();
    for (k, v) in desired {
        match v {
            Desired::Known(v) => {
                r.attrs.insert(k.clone(), v.clone());
            }
            Desired::Secret(s) => {
                r.secrets.insert(k.clone(), s.clone());
            }
            Desired::Unknown => return Err(k.clone()),
        }
    }
    Ok(r)
}

/// What state may keep of a live read: everything but sensitive attributes, plus local ones.
pub fn storable(
    provider: &dyn Provider,
    live: &Live,
    desired: &BTreeMap<String, Desired>,
) -> (Attrs, Vec<String>) {
    let schema = provider.schema();
    let mut sensitive: Vec<String> = desired
        .iter()
        .filter(|(k, v)| {
            matches!(v, Desired::Secret(_))
                || schema
                    .attr(k)
                    .is_some_and(|a| a.secret == SecretMode::WriteOnly)
        })
        .map(|(k, _)| k.clone())
        .collect();
    sensitive.sort();
    let mut attrs: Attrs = live
        .attrs
        .iter()
        .filter(|(k, _)| !sensitive.contains(k))
        // What the stack does not manage is not recorded (nor read back on refresh).
        .filter(|(k, _)| desired.contains_key(*k) || schema.is_output(k))
        .map(|(k, v)| (k.clone(), normalize(v)))
        .collect();
    for a in schema.attrs.iter().filter(|a| a.local) {
        if let Some(Desired::Known(v)) = desired.get(a.name) {
            attrs.insert(a.name.to_owned(), v.clone());
        }
    }
    (attrs, sensitive)
}

/// Evaluates one output. A secret is refused: outputs are kept in state in the clear.
pub fn output_value(
    stack: &Stack,
    name: &str,
    lookup: &dyn Fn(&Ref) -> Desired,
) -> Result<Desired, Diagnostic> {
    let decl = &stack.outputs[name];
    match decl.value.eval(lookup) {
        Desired::Secret(_) => Err(Diagnostic::new(format!(
            "`output.{name}` would carry a secret (a SecureString value)"
        ))
        .at(stack.location(decl.span.clone()))
        .for_address(format!("output.{name}"))
        .hint("outputs are kept in state, which never holds a secret; output the parameter's name instead")),
        d => Ok(d),
    }
}

/// The resource addresses an output reads (not data sources).
pub fn output_refs(stack: &Stack, name: &str) -> Vec<String> {
    let mut refs = Vec::new();
    stack.outputs[name].value.refs(&mut refs);
    refs.into_iter()
        .map(|r| r.address)
        .filter(|a| !a.starts_with("data."))
        .collect()
}

pub fn lookup_data(data: &BTreeMap<String, Attrs>, rf: &Ref) -> Desired {
    match data.get(&rf.address).and_then(|a| a.get(&rf.attr)) {
        Some(v) => Desired::Known(v.clone()),
        None => Desired::Unknown,
    }
}

pub type PlannedMap = BTreeMap<String, (BTreeMap<String, Desired>, Action, Option<Attrs>)>;

pub fn lookup_planned(data: &BTreeMap<String, Attrs>, planned: &PlannedMap, rf: &Ref) -> Desired {
    if rf.address.starts_with("data.") {
        return lookup_data(data, rf);
    }
    let Some((desired, _action, known)) = planned.get(&rf.address) else {
        return Desired::Unknown;
    };
    // Inputs are what the stack says; outputs only what an existing resource already has.
    if let Some(d) = desired.get(&rf.attr) {
        return d.clone();
    }
    match known.as_ref().and_then(|k| k.get(&rf.attr)) {
        Some(v) => Desired::Known(v.clone()),
        None => Desired::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::providers::registry;
    use crate::stack::Expr;

    fn ssm_resource(value: Expr, ty: &str) -> Resource {
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_owned(), Expr::Lit(json!("/a/b")));
        attrs.insert("type".to_owned(), Expr::Lit(json!(ty)));
        attrs.insert("value".to_owned(), value);
        Resource {
            address: "ssm_parameter.p".into(),
            kind: "ssm_parameter".into(),
            name: "p".into(),
            attrs,
            depends_on: vec![],
            prevent_destroy: None,
            span: 0..0,
            attr_spans: BTreeMap::new(),
        }
    }

    #[test]
    fn desired_makes_secure_strings_secret_and_leaves_unset_attributes_unmanaged() {
        let p = registry().provider("ssm_parameter").unwrap();
        let r = ssm_resource(Expr::Lit(json!("plain")), "SecureString");
        let d = desired_attrs(&r, p, &|_| Desired::Unknown);
        assert_eq!(d["value"], Desired::Secret(SecretString::new("plain")));
        assert_eq!(d["type"], Desired::Known(json!("SecureString")));
        // No value and no schema default: not managed, so not read back on refresh either.
        assert!(
            !d.contains_key("tier"),
            "an unset attribute without default is not managed"
        );
        let input = resolve(&d).unwrap();
        assert!(!input.attrs.contains_key("value"));
        assert_eq!(input.plain_or_secret("value"), Some("plain"));

        let r = ssm_resource(
            Expr::Ref(Ref {
                address: "s3_bucket.b".into(),
                attr: "arn".into(),
            }),
            "String",
        );
        let d = desired_attrs(&r, p, &|_| Desired::Unknown);
        assert_eq!(d["value"], Desired::Unknown);
        assert_eq!(resolve(&d).unwrap_err(), "value");
    }

    #[test]
    fn storable_drops_secrets_and_keeps_local_attributes() {
        let p = registry().provider("s3_bucket").unwrap();
        let mut desired = BTreeMap::new();
        desired.insert("name".to_owned(), Desired::Known(json!("b")));
        desired.insert("force_destroy".to_owned(), Desired::Known(json!(true)));
        let live = Live {
            id: "b".into(),
            attrs: [("name".to_owned(), json!("b"))].into_iter().collect(),
            private: None,
        };
        let (attrs, sensitive) = storable(p, &live, &desired);
        assert_eq!(attrs["force_destroy"], json!(true));
        assert!(sensitive.is_empty());

        let p = registry().provider("ssm_parameter").unwrap();
        let mut desired = BTreeMap::new();
        desired.insert(
            "value".to_owned(),
            Desired::Secret(SecretString::new("s3cr3t")),
        );
        let live = Live {
            id: "/a".into(),
            attrs: [
                ("value".to_owned(), json!("s3cr3t")),
                ("name".to_owned(), json!("/a")),
            ]
            .into_iter()
            .collect(),
            private: None,
        };
        let (attrs, sensitive) = storable(p, &live, &desired);
        assert!(!attrs.contains_key("value"));
        assert_eq!(sensitive, ["value"]);
    }
}
