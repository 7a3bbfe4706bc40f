//! The planner: data reads, concurrent refresh, per-attribute diff, action choice.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{
    Action, After, AttrChange, Change, DataRead, Drift, Move, OutputChange, Plan, PlanStack,
    PriorState,
};
use crate::error::Diagnostic;
use crate::eval::{PlannedMap, desired_attrs, lookup_data, lookup_planned, resolve, stack_graph};
use crate::providers::{Aws, Live, Registry, SecretMode};
use crate::refresh::{self, ToRead};
use crate::stack::{Ref, Stack};
use crate::state::State;
use crate::value::{Attrs, Desired, normalize};

#[derive(Clone, Debug)]
pub struct PlanOptions {
    pub refresh: bool,
    pub targets: Vec<String>,
    pub concurrency: usize,
    pub destroy: bool,
    pub cli_vars: Vec<(String, String)>,
    pub backend: crate::state::BackendRef,
    pub wait_timeout: std::time::Duration,
    /// `address → AWS id` to adopt into state (`stackwright import`, plus the stack's
    /// `[[import]]` entries).
    pub imports: Vec<(String, String)>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            refresh: true,
            targets: Vec::new(),
            concurrency: 16,
            destroy: false,
            cli_vars: Vec::new(),
            backend: crate::state::BackendRef::Local {
                path: String::new(),
            },
            wait_timeout: std::time::Duration::from_secs(3600),
            imports: Vec::new(),
        }
    }
}

/// Reads every data source, in dependency order (they may reference each other).
pub async fn read_data(
    reg: &Registry,
    stack: &Stack,
    aws: &Aws,
) -> Result<(Vec<DataRead>, BTreeMap<String, Attrs>), Diagnostic> {
    let order = stack_graph(stack)
        .topo_order()
        .map_err(|d| stack.locate(d))?;
    let mut data_values: BTreeMap<String, Attrs> = BTreeMap::new();
    let mut data_reads = Vec::new();
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
            Diagnostic::new(format!("reading data source failed: {e}")).for_address(addr.clone())
        })?;
        tracing::info!(address = %addr, "data source read");
        data_reads.push(DataRead {
            address: addr.clone(),
            attributes: attrs.clone(),
        });
        data_values.insert(addr.clone(), attrs);
    }
    Ok((data_reads, data_values))
}

fn secret_text(v: &Value) -> String {
    crate::stack::expr::scalar_text(v)
}

/// Reads data sources, refreshes state, diffs every resource. Makes no change anywhere.
pub async fn plan(
    reg: &Registry,
    stack: &Stack,
    state: Option<&State>,
    aws: &Aws,
    opts: &PlanOptions,
) -> Result<Plan, Diagnostic> {
    let graph = stack_graph(stack);
    let order = graph.topo_order().map_err(|d| stack.locate(d))?;
    let empty = State::new(&stack.name, stack.env.as_deref());
    let loaded = state.unwrap_or(&empty);
    // [moved]: renamed in (a copy of) state before anything is read, so the resource is
    // refreshed and diffed at its new address instead of destroyed and created.
    let (moves, renamed) = plan_moves(stack, loaded, opts.destroy)?;
    let loaded = renamed.as_ref().unwrap_or(loaded);

    for t in &opts.targets {
        if stack.get(t).is_none() && !loaded.resources.contains_key(t) {
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
    // With --target: the targets and everything they depend on; under destroy, the
    // targets and everything that depends on them (as the stack and state record it), so
    // nothing is left pointing at what is gone.
    let in_scope: Option<BTreeSet<String>> = (!opts.targets.is_empty()).then(|| {
        let recorded = crate::graph::Graph::new(
            loaded
                .resources
                .iter()
                .map(|(a, r)| (a.clone(), r.depends_on.clone())),
        );
        let mut s = BTreeSet::new();
        for t in &opts.targets {
            s.insert(t.clone());
            if opts.destroy {
                s.extend(graph.all_dependents(t));
                s.extend(recorded.all_dependents(t));
            } else {
                s.extend(graph.all_dependencies(t));
            }
        }
        s
    });
    let scoped = |a: &str| in_scope.as_ref().is_none_or(|s| s.contains(a));

    // 1. Data sources, in dependency order.
    let (data_reads, data_values) = if opts.destroy {
        (Vec::new(), BTreeMap::new())
    } else {
        read_data(reg, stack, aws).await?
    };

    // 2. Open intents of an interrupted apply and imports: adopt what exists.
    let mut imports = opts.imports.clone();
    if !opts.destroy {
        imports.extend(stack.imports.iter().map(|i| (i.to.clone(), i.id.clone())));
    }
    let resolution = refresh::resolve_intents(
        reg,
        aws,
        stack,
        loaded,
        &data_values,
        &imports,
        opts.concurrency,
        opts.wait_timeout,
    )
    .await?;
    let st = &resolution.state;
    let adopted: BTreeMap<&str, &str> = resolution
        .adoptions
        .iter()
        .map(|a| (a.address.as_str(), a.reason.as_str()))
        .collect();
    let resolved_notes: BTreeMap<&str, &str> = resolution
        .resolved
        .iter()
        .map(|(a, n, _)| (a.as_str(), n.as_str()))
        .collect();

    // 3. Refresh, concurrently: every resource in state, and every desired one whose id is
    //    already decided (to notice one that exists but is not ours).
    let mut to_read: Vec<ToRead> = Vec::new();
    for (addr, rs) in &st.resources {
        if scoped(addr) && !resolution.live.contains_key(addr) {
            to_read.push(ToRead {
                address: addr.clone(),
                kind: rs.kind.clone(),
                id: rs.id.clone(),
            });
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
                to_read.push(ToRead {
                    address: addr.clone(),
                    kind: r.kind.clone(),
                    id,
                });
            }
        }
    }
    let mut live: BTreeMap<String, Option<Live>> = resolution.live.clone();
    // Reads of adopted resources were made for the adoption; failed imports never get here.
    let to_read: Vec<ToRead> = to_read
        .into_iter()
        .filter(|t| opts.refresh || !st.resources.contains_key(&t.address))
        .collect();
    if !to_read.is_empty() {
        // Only what is managed: what the stack sets (and schema defaults), what state
        // recorded, and outputs. Unmanaged attributes cost no AWS call.
        let wanted: BTreeMap<String, BTreeSet<String>> = to_read
            .iter()
            .filter_map(|t| {
                Some((
                    t.address.clone(),
                    refresh::wanted_for(reg, stack, st, &t.address, &t.kind)?,
                ))
            })
            .collect();
        live.extend(
            refresh::read_all(
                reg,
                aws,
                &to_read,
                &wanted,
                opts.concurrency,
                opts.wait_timeout,
            )
            .await?,
        );
    }
    // Without refresh, state stands in for live.
    let live_of = |addr: &str| -> Option<Attrs> {
        match live.get(addr) {
            Some(l) => l.as_ref().map(|l| l.attrs.clone()),
            None => st.resources.get(addr).map(|r| r.attributes.clone()),
        }
    };

    // 4. Diff in dependency order, so references see what their targets will be.
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
                .hint(format!(
                    "if it belongs to this stack, adopt it: stackwright import {}{} {addr} {}\n          (or add [[import]] to = \"{addr}\", id = \"{}\" to the stack file); otherwise choose another name",
                    stack.path.display(),
                    stack.env.as_deref().map(|e| format!(" --env {e}")).unwrap_or_default(),
                    l.id,
                    l.id
                )));
            }
            let refuse = |m: String| {
                Diagnostic::new(m)
                    .at(stack.location(r.span.clone()))
                    .for_address(addr.clone())
            };
            // AWS's rules for values known only now (interpolated from references).
            for (attr, d) in &desired {
                if let Desired::Known(v) = d
                    && let Err(why) = p.check_attr(attr, v)
                {
                    return Err(stack.attr_error(addr, attr, format!("`{attr}`: {why}")));
                }
            }
            // Notes and refusals for a create; an existing resource asks again below with
            // the attributes that changed.
            let notes = if prior.is_none() || current.is_none() {
                p.plan_change(None, &desired, &[]).map_err(refuse)?.notes
            } else {
                Default::default()
            };
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
                adopted: adopted.get(addr.as_str()).map(|r| (*r).to_owned()),
            };
            if let Some(n) = resolved_notes.get(addr.as_str()) {
                change.notes.push((*n).to_owned());
            }
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
                        // Compared and shown in the kind's canonical form (sets sorted).
                        let canon = |v: &Value| normalize(&p.canonical(a.name, v));
                        let (after, changed) = match want {
                            Desired::Known(v) => {
                                let v = canon(v);
                                let changed = have.map(canon).as_ref() != Some(&v);
                                (After::Known(v), changed)
                            }
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
                        change.attributes.push(AttrChange {
                            name: a.name.to_owned(),
                            // The same canonical form as `after`, so a diff shows what
                            // changed, not the order AWS happens to return.
                            before: if sensitive { None } else { have.map(canon) },
                            after,
                            changed,
                            forces_replacement: false,
                        });
                    }
                    let changed: Vec<String> = change.changed_attrs();
                    let planned = p
                        .plan_change(Some(cur), &desired, &changed)
                        .map_err(refuse)?;
                    for a in change.attributes.iter_mut() {
                        a.forces_replacement = planned.requires_replace.contains(&a.name);
                    }
                    change.replace_because = planned.requires_replace;
                    change.notes.extend(planned.notes.notes);
                    change.warnings.extend(planned.notes.warnings);
                    // Drift: live differs from what state recorded.
                    for a in schema
                        .attrs
                        .iter()
                        .filter(|a| !a.local && a.secret != SecretMode::WriteOnly)
                    {
                        if pr.sensitive_attributes.iter().any(|s| s == a.name) {
                            continue;
                        }
                        let canon = |v: &Value| normalize(&p.canonical(a.name, v));
                        let rec = local_state.get(a.name).map(canon);
                        let now = cur.get(a.name).map(canon);
                        if rec.is_some() && rec != now {
                            change.drift.push(Drift {
                                name: a.name.to_owned(),
                                recorded: rec,
                                live: now,
                            });
                        }
                    }
                    let protected = r.protected(Some(pr.prevent_destroy));
                    let meta_changed = pr.prevent_destroy != protected;
                    if !change.replace_because.is_empty() {
                        change.action = if planned.create_before_destroy {
                            Action::CreateThenDelete
                        } else {
                            Action::Replace
                        };
                    } else if change.attributes.iter().any(|a| a.changed) || meta_changed {
                        change.action = Action::Update;
                    }
                    if meta_changed && protected {
                        change
                            .notes
                            .push("lifecycle.prevent_destroy: false -> true".to_owned());
                    } else if meta_changed {
                        change.warnings.push(
                            "lifecycle.prevent_destroy: true -> false: the protection is lifted; destroy and replacement will be allowed"
                                .to_owned(),
                        );
                    }
                    if matches!(change.action, Action::Replace | Action::CreateThenDelete) {
                        if pr.prevent_destroy || protected {
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
                                Desired::Known(v) => After::Known(p.canonical(k, v)),
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
            // What only AWS can tell (a parameter the resource names exists), for what
            // this plan will write.
            if change.action != Action::NoOp && change.action != Action::Delete {
                let cx = crate::providers::Cx::new(
                    aws,
                    addr,
                    &crate::events::NoEvents,
                    opts.wait_timeout,
                );
                let preview = desired_attrs(r, p, &|rf: &Ref| match lookup(rf) {
                    Desired::Unknown => Desired::Known(Value::String(format!("${{{rf}}}"))),
                    d => d,
                });
                let notes = p.verify(&cx, &desired, &preview).await.map_err(refuse)?;
                change.notes.extend(notes);
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

    // 5. In state, not in the stack (or everything, for destroy): delete.
    for (addr, rs) in &st.resources {
        let removed = opts.destroy || !stack.resources.contains_key(addr);
        if !removed || !scoped(addr) {
            continue;
        }
        let Some(p) = reg.provider(&rs.kind) else {
            return Err(
                Diagnostic::new(format!("unknown kind `{}` in state", rs.kind))
                    .for_address(addr.clone()),
            );
        };
        if stack.resources.get(addr).map_or(rs.prevent_destroy, |r| {
            rs.prevent_destroy || r.protected(None)
        }) {
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
                adopted: None,
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
                .filter(|(_, o)| {
                    // The old object of a create-then-delete waits for its base's dependants.
                    let base = addr.strip_suffix(crate::apply::DEPOSED).unwrap_or(addr);
                    o.depends_on.iter().any(|d| d == base)
                })
                .map(|(a, _)| a.clone())
                .collect(),
            adopted: adopted.get(addr.as_str()).map(|r| (*r).to_owned()),
        });
    }

    let outputs = plan_outputs(stack, st, opts.destroy, &changes, &|rf: &Ref| {
        lookup_planned(&data_values, &planned, rf)
    })?;
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
            backend: opts.backend.clone(),
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
        moves,
        changes,
        migrations: None,
        outputs,
        secret_fingerprints: fingerprints,
        adoptions: resolution.adoptions,
        resolved_intents: resolution.resolved.into_iter().map(|(_, _, e)| e).collect(),
        summary,
    })
}

/// The stack's `[moved]` entries that apply to `state`: an entry whose `from` state holds
/// moves (and `to` must then be free); one whose `from` it does not hold was applied
/// already, or has nothing to move, and is left alone. Under destroy nothing moves.
fn plan_moves(
    stack: &Stack,
    state: &State,
    destroy: bool,
) -> Result<(Vec<Move>, Option<State>), Diagnostic> {
    if destroy
        || !stack
            .moves
            .iter()
            .any(|m| state.resources.contains_key(&m.from))
    {
        return Ok((Vec::new(), None));
    }
    let mut st = state.clone();
    let mut moves = Vec::new();
    for m in &stack.moves {
        let Some(r) = state.resources.get(&m.from) else {
            continue;
        };
        if let Some(other) = state.resources.get(&m.to) {
            return Err(Diagnostic::new(format!(
                "cannot move `{}` to `{}`: state already holds both (`{}` is {}, `{}` is {})",
                m.from, m.to, m.from, r.id, m.to, other.id
            ))
            .at(stack.location(m.to_span.clone()))
            .hint(format!(
                "keep one: `stackwright state rm {}` forgets the old one (it stays in AWS), then remove this entry",
                m.from
            )));
        }
        crate::state::moved(&mut st, &m.from, &m.to).map_err(|d| {
            let d = Diagnostic {
                location: None,
                ..d
            };
            d.at(stack.location(m.span.clone()))
        })?;
        moves.push(Move {
            from: m.from.clone(),
            to: m.to.clone(),
            id: r.id.clone(),
        });
    }
    Ok((moves, Some(st)))
}

/// Each output's change. Under `destroy` an output goes with the resources it reads (all of
/// them without `--target`); otherwise it is evaluated against the planned values.
fn plan_outputs(
    stack: &Stack,
    st: &State,
    destroy: bool,
    changes: &[Change],
    lookup: &dyn Fn(&Ref) -> Desired,
) -> Result<Vec<OutputChange>, Diagnostic> {
    let deleted: BTreeSet<&str> = changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.address.as_str())
        .collect();
    let mut out = Vec::new();
    for (name, decl) in &stack.outputs {
        let before = st.outputs.get(name);
        let refs = crate::eval::output_refs(stack, name);
        let after = if destroy {
            let gone = refs.is_empty() || refs.iter().any(|a| deleted.contains(a.as_str()));
            match before {
                Some(b) if !gone => Desired::Known(b.value.clone()),
                _ => continue,
            }
        } else {
            crate::eval::output_value(stack, name, lookup)?
        };
        let (after, changed) = match after {
            Desired::Known(v) => {
                let changed = before.is_none_or(|b| {
                    normalize(&b.value) != normalize(&v) || b.sensitive != decl.sensitive
                });
                (After::Known(v), changed)
            }
            _ => (After::Unknown, true),
        };
        out.push(OutputChange {
            name: name.clone(),
            sensitive: decl.sensitive,
            before: before.filter(|_| !decl.sensitive).map(|b| b.value.clone()),
            after: match after {
                After::Known(_) if decl.sensitive => After::Sensitive { changed },
                a => a,
            },
            action: match (before, changed) {
                (_, false) => Action::NoOp,
                (None, true) => Action::Create,
                (Some(_), true) => Action::Update,
            },
        });
    }
    for (name, b) in &st.outputs {
        if out.iter().any(|o| &o.name == name) || (!destroy && stack.outputs.contains_key(name)) {
            continue;
        }
        out.push(OutputChange {
            name: name.clone(),
            sensitive: b.sensitive,
            before: (!b.sensitive).then(|| b.value.clone()),
            after: After::Removed,
            action: Action::Delete,
        });
    }
    Ok(out)
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
