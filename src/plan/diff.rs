//! The planner: data reads, concurrent refresh, per-attribute diff, action choice.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use serde_json::Value;

use super::{Action, After, AttrChange, Change, DataRead, Drift, Plan, PlanStack, PriorState};
use crate::apply::events::NoEvents;
use crate::error::Diagnostic;
use crate::graph::Graph;
use crate::providers::{Aws, Cx, Live, Provider, SecretMode, registry};
use crate::secret::SecretString;
use crate::stack::{Ref, Resource, Stack};
use crate::state::State;
use crate::value::{Attrs, Desired, Resolved, normalize};

#[derive(Clone, Debug)]
pub struct PlanOptions {
    pub refresh: bool,
    pub targets: Vec<String>,
    pub concurrency: usize,
    pub destroy: bool,
    pub cli_vars: Vec<(String, String)>,
    pub state_path: String,
    pub wait_timeout: std::time::Duration,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            refresh: true,
            targets: Vec::new(),
            concurrency: 16,
            destroy: false,
            cli_vars: Vec::new(),
            state_path: String::new(),
            wait_timeout: std::time::Duration::from_secs(3600),
        }
    }
}

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

fn secret_text(v: &Value) -> String {
    crate::stack::expr::scalar_text(v)
}

/// Reads data sources, refreshes state, diffs every resource. Makes no change anywhere.
pub async fn plan(
    stack: &Stack,
    state: Option<&State>,
    aws: &Aws,
    opts: &PlanOptions,
) -> Result<Plan, Diagnostic> {
    let reg = registry();
    let graph = stack_graph(stack);
    let order = graph.topo_order()?;
    let empty = State::new(&stack.name, stack.env.as_deref());
    let st = state.unwrap_or(&empty);

    for t in &opts.targets {
        if stack.get(t).is_none() && !st.resources.contains_key(t) {
            let all: Vec<&str> = stack.resources.keys().map(String::as_str).collect();
            let d = Diagnostic::new(format!(
                "--target {t} names no resource in the stack or its state"
            ));
            return Err(match crate::error::suggest(t, all) {
                Some(s) => d.hint(format!("did you mean `{s}`?")),
                None => d.hint("targets are resource addresses such as s3_bucket.uploads"),
            });
        }
    }
    // With --target: the targets and everything they depend on.
    let in_scope: Option<BTreeSet<String>> = (!opts.targets.is_empty()).then(|| {
        let mut s = BTreeSet::new();
        for t in &opts.targets {
            s.insert(t.clone());
            s.extend(graph.all_dependencies(t));
        }
        s
    });
    let scoped = |a: &str| in_scope.as_ref().is_none_or(|s| s.contains(a));

    // 1. Data sources, in dependency order.
    let mut data_values: BTreeMap<String, Attrs> = BTreeMap::new();
    let mut data_reads = Vec::new();
    if !opts.destroy {
        for addr in order.iter().filter(|a| a.starts_with("data.")) {
            let r = &stack.data[addr];
            let ds = reg.data_source(&r.kind).expect("validated kind");
            let lookup = |rf: &Ref| lookup_data(&data_values, rf);
            let mut desired: BTreeMap<String, Desired> = r
                .attrs
                .iter()
                .map(|(k, e)| (k.clone(), e.eval(&lookup)))
                .collect();
            for a in ds.schema().attrs {
                if let (false, Some(d)) = (desired.contains_key(a.name), a.default.value()) {
                    desired.insert(a.name.to_owned(), Desired::Known(d));
                }
            }
            let args = resolve(&desired).map_err(|a| {
                stack.attr_error(addr, &a, "data source argument is unknown at plan time")
            })?;
            let attrs = ds.read(aws, &args).await.map_err(|e| {
                Diagnostic::new(format!("reading data source failed: {e}"))
                    .for_address(addr.clone())
            })?;
            tracing::info!(address = %addr, "data source read");
            data_reads.push(DataRead {
                address: addr.clone(),
                attributes: attrs.clone(),
            });
            data_values.insert(addr.clone(), attrs);
        }
    }

    // 2. Refresh, concurrently: every resource in state, and every desired one whose id is
    //    already decided (to notice one that exists but is not ours).
    let mut to_read: Vec<(String, String, String)> = Vec::new(); // (address, kind, id)
    for (addr, rs) in &st.resources {
        if scoped(addr) {
            to_read.push((addr.clone(), rs.kind.clone(), rs.id.clone()));
        }
    }
    if !opts.destroy {
        for addr in order
            .iter()
            .filter(|a| !a.starts_with("data.") && scoped(a) && !st.resources.contains_key(*a))
        {
            let r = &stack.resources[addr];
            let p = reg.provider(&r.kind).expect("validated kind");
            // Early look: references to other resources' inputs are resolved later; here
            // only the id matters, which usually depends on vars and data only.
            let lookup = |rf: &Ref| lookup_data(&data_values, rf);
            let d = desired_attrs(r, p, &lookup);
            if let Some(id) = p.id_for(&d) {
                to_read.push((addr.clone(), r.kind.clone(), id));
            }
        }
    }
    let live: BTreeMap<String, Option<Live>> = if opts.refresh
        || !to_read.iter().all(|(a, _, _)| st.resources.contains_key(a))
    {
        // Only what is managed: what the stack sets (and schema defaults), what state
        // recorded, and outputs. Unmanaged attributes cost no AWS call.
        let wanted: BTreeMap<&str, BTreeSet<String>> = to_read
            .iter()
            .filter_map(|(addr, kind, _)| {
                let p = reg.provider(kind)?;
                let schema = p.schema();
                let mut w: BTreeSet<String> =
                    schema.outputs.iter().map(|o| (*o).to_owned()).collect();
                w.extend(
                    schema
                        .attrs
                        .iter()
                        .filter(|a| a.required || a.default.value().is_some())
                        .map(|a| a.name.to_owned()),
                );
                if let Some(r) = stack.resources.get(addr) {
                    w.extend(r.attrs.keys().cloned());
                }
                if let Some(rs) = st.resources.get(addr) {
                    w.extend(rs.attributes.keys().cloned());
                    w.extend(rs.sensitive_attributes.iter().cloned());
                }
                Some((addr.as_str(), w))
            })
            .collect();
        let wanted = &wanted;
        let futs = to_read.iter().filter(|(a, _, _)| opts.refresh || !st.resources.contains_key(a)).map(|(addr, kind, id)| async move {
            let p = reg.provider(kind).ok_or_else(|| {
                Diagnostic::new(format!("state has a resource of kind `{kind}`, which this Stackwright does not know")).for_address(addr.clone())
            })?;
            let cx = Cx { aws, address: addr, events: &NoEvents, wait_timeout: opts.wait_timeout, poll_interval: std::time::Duration::from_secs(5), wanted: wanted.get(addr.as_str()) };
            let started = std::time::Instant::now();
            let live = p.read(&cx, id).await.map_err(|e| Diagnostic::new(format!("refresh failed: {e}")).for_address(addr.clone()))?;
            tracing::debug!(address = %addr, id = %id, exists = live.is_some(), ms = started.elapsed().as_millis() as u64, "refreshed");
            Ok::<_, Diagnostic>((addr.clone(), live))
        });
        let started = std::time::Instant::now();
        let results: Vec<_> = futures::stream::iter(futs)
            .buffer_unordered(opts.concurrency.max(1))
            .collect()
            .await;
        tracing::info!(
            resources = results.len(),
            concurrency = opts.concurrency,
            ms = started.elapsed().as_millis() as u64,
            "refresh done"
        );
        results.into_iter().collect::<Result<_, _>>()?
    } else {
        BTreeMap::new()
    };
    // Without refresh, state stands in for live.
    let live_of = |addr: &str| -> Option<Attrs> {
        match live.get(addr) {
            Some(l) => l.as_ref().map(|l| l.attrs.clone()),
            None => st.resources.get(addr).map(|r| r.attributes.clone()),
        }
    };

    // 3. Diff in dependency order, so references see what their targets will be.
    let mut changes: Vec<Change> = Vec::new();
    let mut planned: PlannedMap = BTreeMap::new();
    let mut fingerprints = BTreeMap::new();
    if !opts.destroy {
        for addr in order.iter().filter(|a| !a.starts_with("data.")) {
            let r = &stack.resources[addr];
            let p = reg.provider(&r.kind).expect("validated kind");
            let schema = p.schema();
            let prior = st.resources.get(addr);
            if !scoped(addr) {
                // Out of scope: known from state only.
                let attrs = prior.map(|p| p.attributes.clone());
                planned.insert(addr.clone(), (BTreeMap::new(), Action::NoOp, attrs));
                continue;
            }
            let lookup = |rf: &Ref| lookup_planned(&data_values, &planned, rf);
            let desired = desired_attrs(r, p, &lookup);
            let current = if prior.is_some() { live_of(addr) } else { None };
            if prior.is_none()
                && let Some(Some(l)) = live.get(addr)
            {
                return Err(Diagnostic::new(format!(
                    "{} `{}` already exists in AWS but is not in this stack's state",
                    r.kind, l.id
                ))
                .at(stack.location(r.span.clone()))
                .for_address(addr.clone())
                .hint("if it belongs to this stack, restore the state file from git; otherwise choose another name or delete it"));
            }
            let notes = p.check_change(current.as_ref(), &desired).map_err(|m| {
                Diagnostic::new(m)
                    .at(stack.location(r.span.clone()))
                    .for_address(addr.clone())
            })?;
            let mut change = Change {
                address: addr.clone(),
                kind: r.kind.clone(),
                action: Action::NoOp,
                id: prior.map(|p| p.id.clone()),
                attributes: Vec::new(),
                replace_because: Vec::new(),
                drift: Vec::new(),
                deleted_outside: prior.is_some() && current.is_none(),
                notes: notes.notes,
                warnings: notes.warnings,
                after_changes: Vec::new(),
            };
            match (&current, prior) {
                (Some(cur), Some(pr)) => {
                    let local_state = &pr.attributes;
                    for a in schema.attrs {
                        let Some(want) = desired.get(a.name) else {
                            continue;
                        };
                        if a.secret == SecretMode::WriteOnly {
                            continue; // never read back, never compared
                        }
                        let have = if a.local {
                            local_state.get(a.name)
                        } else {
                            cur.get(a.name)
                        };
                        let (after, changed) = match want {
                            Desired::Known(v) => (
                                After::Known(v.clone()),
                                have.map(normalize) != Some(normalize(v)),
                            ),
                            Desired::Unknown => (After::Unknown, true),
                            // Without refresh there is no live value to compare a secret with
                            // (state never holds one): assume it is unchanged.
                            Desired::Secret(_) if !opts.refresh => {
                                (After::Sensitive { changed: false }, false)
                            }
                            Desired::Secret(s) => {
                                let changed = have.map(secret_text).as_deref() != Some(s.expose());
                                (After::Sensitive { changed }, changed)
                            }
                        };
                        let sensitive = matches!(want, Desired::Secret(_));
                        if changed && a.force_new {
                            change.replace_because.push(a.name.to_owned());
                        }
                        change.attributes.push(AttrChange {
                            name: a.name.to_owned(),
                            before: if sensitive { None } else { have.cloned() },
                            after,
                            changed,
                            forces_replacement: changed && a.force_new,
                        });
                    }
                    // Drift: live differs from what state recorded.
                    for a in schema
                        .attrs
                        .iter()
                        .filter(|a| !a.local && a.secret != SecretMode::WriteOnly)
                    {
                        if pr.sensitive_attributes.iter().any(|s| s == a.name) {
                            continue;
                        }
                        let rec = local_state.get(a.name).map(normalize);
                        let now = cur.get(a.name).map(normalize);
                        if rec.is_some() && rec != now {
                            change.drift.push(Drift {
                                name: a.name.to_owned(),
                                recorded: rec,
                                live: now,
                            });
                        }
                    }
                    let meta_changed = pr.prevent_destroy != r.prevent_destroy;
                    if !change.replace_because.is_empty() {
                        change.action = Action::Replace;
                    } else if change.attributes.iter().any(|a| a.changed) || meta_changed {
                        change.action = Action::Update;
                    }
                    if meta_changed {
                        change.notes.push(format!(
                            "lifecycle.prevent_destroy: {} -> {}",
                            pr.prevent_destroy, r.prevent_destroy
                        ));
                    }
                    if change.action == Action::Replace {
                        if pr.prevent_destroy || r.prevent_destroy {
                            return Err(prevent_destroy_error(
                                stack,
                                addr,
                                "replace",
                                &change.replace_because,
                            ));
                        }
                        change.warnings.extend(p.delete_notes(local_state).warnings);
                        for a in change.attributes.iter_mut() {
                            if let After::Sensitive { changed } = &mut a.after {
                                *changed = true;
                            }
                        }
                    }
                }
                _ => {
                    change.action = Action::Create;
                    for (k, v) in &desired {
                        if schema.attr(k).is_none() {
                            continue;
                        }
                        change.attributes.push(AttrChange {
                            name: k.clone(),
                            before: None,
                            after: match v {
                                Desired::Known(v) => After::Known(v.clone()),
                                Desired::Unknown => After::Unknown,
                                Desired::Secret(_) => After::Sensitive { changed: true },
                            },
                            changed: true,
                            forces_replacement: false,
                        });
                    }
                }
            }
            for o in schema.outputs {
                let known = matches!(change.action, Action::NoOp | Action::Update)
                    && current.as_ref().is_some_and(|c| c.contains_key(*o));
                change.attributes.push(AttrChange {
                    name: (*o).to_owned(),
                    before: current.as_ref().and_then(|c| c.get(*o).cloned()),
                    after: if known {
                        After::Known(current.as_ref().unwrap()[*o].clone())
                    } else {
                        After::Unknown
                    },
                    changed: false,
                    forces_replacement: false,
                });
            }
            // Secrets this plan writes get a fingerprint, checked again at apply.
            if change.action != Action::NoOp {
                for (k, v) in &desired {
                    if let Desired::Secret(s) = v {
                        fingerprints.insert(format!("{addr}.{k}"), crate::secret::fingerprint(s));
                    }
                }
            }
            change.after_changes = graph
                .dependencies(addr)
                .filter(|d| !d.starts_with("data."))
                .map(str::to_owned)
                .collect();
            let known_now = match change.action {
                Action::NoOp | Action::Update => current.clone(),
                _ => None,
            };
            planned.insert(addr.clone(), (desired, change.action, known_now));
            changes.push(change);
        }
    }

    // 4. In state, not in the stack (or everything, for destroy): delete.
    for (addr, rs) in &st.resources {
        let removed = opts.destroy || !stack.resources.contains_key(addr);
        if !removed || !scoped(addr) {
            continue;
        }
        if opts.destroy && in_scope.is_some() && !opts.targets.contains(addr) {
            continue;
        }
        let Some(p) = reg.provider(&rs.kind) else {
            return Err(
                Diagnostic::new(format!("unknown kind `{}` in state", rs.kind))
                    .for_address(addr.clone()),
            );
        };
        if rs.prevent_destroy || stack.resources.get(addr).is_some_and(|r| r.prevent_destroy) {
            return Err(prevent_destroy_error(stack, addr, "destroy", &[]));
        }
        let exists = live.get(addr).is_none_or(|l| l.is_some());
        if !exists {
            // Already gone: drop it from state quietly, but say so.
            changes.push(Change {
                address: addr.clone(),
                kind: rs.kind.clone(),
                action: Action::Delete,
                id: Some(rs.id.clone()),
                attributes: Vec::new(),
                replace_because: Vec::new(),
                drift: Vec::new(),
                deleted_outside: true,
                notes: vec![
                    "already deleted outside Stackwright; only the state entry is removed".into(),
                ],
                warnings: Vec::new(),
                after_changes: Vec::new(),
            });
            continue;
        }
        let notes = p.delete_notes(&rs.attributes);
        changes.push(Change {
            address: addr.clone(),
            kind: rs.kind.clone(),
            action: Action::Delete,
            id: Some(rs.id.clone()),
            attributes: rs
                .attributes
                .iter()
                .map(|(k, v)| AttrChange {
                    name: k.clone(),
                    before: Some(v.clone()),
                    after: After::Removed,
                    changed: true,
                    forces_replacement: false,
                })
                .collect(),
            replace_because: Vec::new(),
            drift: Vec::new(),
            deleted_outside: false,
            notes: notes.notes,
            warnings: notes.warnings,
            // A resource is deleted only after everything that depended on it.
            after_changes: st
                .resources
                .iter()
                .filter(|(_, o)| o.depends_on.contains(addr))
                .map(|(a, _)| a.clone())
                .collect(),
        });
    }

    let summary = Plan::summarize(&changes);
    tracing::info!(
        add = summary.add,
        change = summary.change,
        replace = summary.replace,
        destroy = summary.destroy,
        "plan made"
    );
    Ok(Plan {
        format_version: super::FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        stack: PlanStack {
            path: stack.path.display().to_string(),
            name: stack.name.clone(),
            env: stack.env.clone(),
            cli_vars: opts.cli_vars.clone(),
            digest: stack.digest.clone(),
            state_path: opts.state_path.clone(),
        },
        prior_state: match state {
            Some(s) => PriorState::Existing {
                lineage: s.lineage.clone(),
                serial: s.serial,
            },
            None => PriorState::NoStateYet,
        },
        destroy: opts.destroy,
        targets: opts.targets.clone(),
        data: data_reads,
        changes,
        migrations: None,
        secret_fingerprints: fingerprints,
        summary,
    })
}

fn prevent_destroy_error(stack: &Stack, addr: &str, verb: &str, because: &[String]) -> Diagnostic {
    let why = if because.is_empty() {
        String::new()
    } else {
        format!(" (a change to {} forces replacement)", because.join(", "))
    };
    let d = Diagnostic::new(format!(
        "refusing to {verb} `{addr}`{why}: lifecycle.prevent_destroy is set (recorded in state)"
    ))
    .for_address(addr);
    let d = match stack.resources.get(addr) {
        Some(r) => d.at(stack.location(r.span.clone())),
        None => d,
    };
    d.hint("to allow it, set lifecycle = { prevent_destroy = false } on the resource and apply that first")
}

fn lookup_data(data: &BTreeMap<String, Attrs>, rf: &Ref) -> Desired {
    match data.get(&rf.address).and_then(|a| a.get(&rf.attr)) {
        Some(v) => Desired::Known(v.clone()),
        None => Desired::Unknown,
    }
}

type PlannedMap = BTreeMap<String, (BTreeMap<String, Desired>, Action, Option<Attrs>)>;

fn lookup_planned(data: &BTreeMap<String, Attrs>, planned: &PlannedMap, rf: &Ref) -> Desired {
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
            prevent_destroy: false,
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
        };
        let (attrs, sensitive) = storable(p, &live, &desired);
        assert!(!attrs.contains_key("value"));
        assert_eq!(sensitive, ["value"]);
    }
}
