//! Refresh: reads what exists in AWS, concurrently, and resolves what state cannot say on
//! its own — the open intents of an interrupted apply and the resources to import.
//!
//! An open create intent whose resource exists is *adopted*: read, stored, then diffed like
//! any other resource, so a crash between "AWS created it" and "state recorded it" needs no
//! hand repair. An interrupted delete is re-checked. An `[[import]]` (or `stackwright
//! import`) is the same adoption, asked for by a person.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;

use crate::error::Diagnostic;
use crate::eval::{desired_attrs, lookup_data, storable};
use crate::events::NoEvents;
use crate::providers::{Aws, Cx, Live, Registry};
use crate::stack::{Ref, Stack};
use crate::state::{Entry, IntentOp, ResourceState, State};
use crate::value::Attrs;

/// One resource to read: its address, kind and AWS id.
#[derive(Clone, Debug)]
pub struct ToRead {
    pub address: String,
    pub kind: String,
    pub id: String,
}

/// Reads every resource in `to_read`, at most `concurrency` at a time. `wanted` limits each
/// read to the attributes someone manages (absent: all).
pub async fn read_all(
    reg: &Registry,
    aws: &Aws,
    to_read: &[ToRead],
    wanted: &BTreeMap<String, BTreeSet<String>>,
    concurrency: usize,
    wait_timeout: Duration,
) -> Result<BTreeMap<String, Option<Live>>, Diagnostic> {
    // Batches per kind, in the order given: one call reads a whole batch where the kind has
    // a batch read (SSM GetParameters), else a batch is one resource.
    let mut by_kind: BTreeMap<&str, Vec<&ToRead>> = BTreeMap::new();
    for t in to_read {
        by_kind.entry(t.kind.as_str()).or_default().push(t);
    }
    let mut batches: Vec<Vec<&ToRead>> = Vec::new();
    for (kind, items) in by_kind {
        let p = reg.provider(kind).ok_or_else(|| {
            Diagnostic::new(format!(
                "state has a resource of kind `{kind}`, which this Stackwright does not know"
            ))
            .for_address(items[0].address.clone())
        })?;
        let (together, alone): (Vec<&ToRead>, Vec<&ToRead>) = items
            .into_iter()
            .partition(|t| p.batchable(wanted.get(&t.address)));
        batches.extend(together.chunks(p.batch_size().max(1)).map(<[_]>::to_vec));
        batches.extend(alone.into_iter().map(|t| vec![t]));
    }
    let ceiling = crate::providers::service_concurrency();
    let services: BTreeMap<&str, tokio::sync::Semaphore> = batches
        .iter()
        .filter_map(|b| reg.provider(&b[0].kind))
        .map(|p| (p.service(), tokio::sync::Semaphore::new(ceiling)))
        .collect();
    let services = &services;
    let futs = batches.into_iter().map(|batch| async move {
        let first = batch[0];
        let p = reg.provider(&first.kind).expect("kind checked above");
        let _permit = services[p.service()]
            .acquire()
            .await
            .expect("semaphore never closed");
        let started = std::time::Instant::now();
        let lives = if batch.len() == 1 {
            let cx = Cx {
                wanted: wanted.get(&first.address),
                ..Cx::new(aws, &first.address, &NoEvents, wait_timeout)
            };
            p.read(&cx, &first.id).await.map(|l| vec![l])
        } else {
            let cx = Cx::new(aws, &first.address, &NoEvents, wait_timeout);
            let items: Vec<(&str, Option<&BTreeSet<String>>)> = batch
                .iter()
                .map(|t| (t.id.as_str(), wanted.get(&t.address)))
                .collect();
            p.read_many(&cx, &items).await
        };
        let lives = lives.map_err(|e| {
            let addrs: Vec<&str> = batch.iter().map(|t| t.address.as_str()).collect();
            Diagnostic::new(format!("refresh failed: {e}")).for_address(addrs.join(", "))
        })?;
        if lives.len() != batch.len() {
            return Err(Diagnostic::new(format!(
                "refresh of {} answered {} reads for {} resources",
                first.kind,
                lives.len(),
                batch.len()
            )));
        }
        tracing::debug!(kind = %first.kind, resources = batch.len(), ms = started.elapsed().as_millis() as u64, "refreshed");
        Ok::<_, Diagnostic>(
            batch
                .iter()
                .map(|t| t.address.clone())
                .zip(lives)
                .collect::<Vec<_>>(),
        )
    });
    let started = std::time::Instant::now();
    let results: Vec<_> = futures::stream::iter(futs)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    tracing::info!(
        batches = results.len(),
        concurrency,
        ms = started.elapsed().as_millis() as u64,
        "refresh done"
    );
    let mut out = BTreeMap::new();
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// The attributes a refresh of `address` must report: outputs, required and defaulted
/// attributes, what the stack sets and what state recorded.
pub fn wanted_for(
    reg: &Registry,
    stack: &Stack,
    state: &State,
    address: &str,
    kind: &str,
) -> Option<BTreeSet<String>> {
    let schema = reg.provider(kind)?.schema();
    let mut w: BTreeSet<String> = schema.outputs.iter().map(|o| (*o).to_owned()).collect();
    w.extend(
        schema
            .attrs
            .iter()
            .filter(|a| a.required || a.default.value().is_some())
            .map(|a| a.name.to_owned()),
    );
    if let Some(r) = stack.resources.get(address) {
        w.extend(r.attrs.keys().cloned());
    }
    if let Some(rs) = state.resources.get(address) {
        w.extend(rs.attributes.keys().cloned());
        w.extend(rs.sensitive_attributes.iter().cloned());
    }
    Some(w)
}

/// A resource taken into state without this run creating it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adoption {
    pub address: String,
    pub resource: ResourceState,
    /// Why, for the plan: "created by an interrupted apply at …", "imported".
    pub reason: String,
}

/// What resolving intents and imports decided.
#[derive(Debug)]
pub struct Resolution {
    /// The state to plan against: adoptions in, completed deletes out, no pending intents.
    pub state: State,
    pub adoptions: Vec<Adoption>,
    /// Open intents resolved without adoption (the create never happened, or the
    /// interrupted delete is confirmed either way): the address, the plan's note, and the
    /// journal entry apply records for it.
    pub resolved: Vec<(String, String, Entry)>,
    /// What the reads returned, so the main refresh need not read them again.
    pub live: BTreeMap<String, Option<Live>>,
}

/// Resolves every open intent in `state` and every import against AWS.
#[allow(clippy::too_many_arguments)]
pub async fn resolve_intents(
    reg: &Registry,
    aws: &Aws,
    stack: &Stack,
    state: &State,
    data: &BTreeMap<String, Attrs>,
    imports: &[(String, String)],
    concurrency: usize,
    wait_timeout: Duration,
) -> Result<Resolution, Diagnostic> {
    let mut st = state.clone();
    st.pending.clear();
    let mut reads = Vec::new();
    // Found by ownership tags rather than read by id.
    let mut tagged: BTreeMap<String, Live> = BTreeMap::new();
    // Why each read is made: (operation, intent time or None for an import).
    let mut why: BTreeMap<String, (IntentOp, Option<String>, Option<String>)> = BTreeMap::new();
    let early_desired = |addr: &str| {
        let r = stack.resources.get(addr)?;
        let p = reg.provider(&r.kind)?;
        let lookup = |rf: &Ref| lookup_data(data, rf);
        Some(desired_attrs(r, p, &lookup))
    };
    for (addr, intent) in &state.pending {
        let id = match intent.operation {
            IntentOp::Delete => intent
                .id
                .clone()
                .or_else(|| state.resources.get(addr).map(|r| r.id.clone())),
            IntentOp::Create => intent.id.clone().or_else(|| {
                let d = early_desired(addr)?;
                reg.provider(&intent.kind)?.id_for(&d)
            }),
        };
        // No id ever known (the create never returned one and the stack does not decide
        // one): the kind may still find it by its ownership tags.
        if id.is_none() && intent.operation == IntentOp::Create {
            let Some(p) = reg.provider(&intent.kind) else {
                continue;
            };
            let cx = Cx::new(aws, addr, &NoEvents, wait_timeout);
            let found = p
                .find_created(&cx, addr, &state.lineage)
                .await
                .map_err(|e| {
                    Diagnostic::new(format!(
                        "looking for what an interrupted apply created failed: {e}"
                    ))
                    .for_address(addr.clone())
                })?;
            if let Some(l) = found {
                tagged.insert(addr.clone(), l.clone());
                reads.push(ToRead {
                    address: addr.clone(),
                    kind: intent.kind.clone(),
                    id: l.id,
                });
                why.insert(
                    addr.clone(),
                    (
                        intent.operation,
                        Some(intent.since.clone()),
                        intent.error.clone(),
                    ),
                );
            }
            continue;
        }
        if let Some(id) = id {
            reads.push(ToRead {
                address: addr.clone(),
                kind: intent.kind.clone(),
                id,
            });
            why.insert(
                addr.clone(),
                (
                    intent.operation,
                    Some(intent.since.clone()),
                    intent.error.clone(),
                ),
            );
        }
    }
    for (to, id) in imports {
        let Some(r) = stack.resources.get(to) else {
            return Err(Diagnostic::new(format!(
                "cannot import into `{to}`: the stack declares no such resource"
            ))
            .for_address(to.clone())
            .hint("declare the resource in the stack file first, then import it"));
        };
        if let Some(existing) = state.resources.get(to) {
            if &existing.id == id {
                continue; // imported already
            }
            return Err(Diagnostic::new(format!(
                "cannot import `{id}` into `{to}`: state already holds {to} with id `{}`",
                existing.id
            ))
            .for_address(to.clone())
            .hint("remove the import, or forget the current one first"));
        }
        reads.push(ToRead {
            address: to.clone(),
            kind: r.kind.clone(),
            id: id.clone(),
        });
        why.insert(to.clone(), (IntentOp::Create, None, None));
    }
    let wanted: BTreeMap<String, BTreeSet<String>> = reads
        .iter()
        .filter_map(|t| {
            Some((
                t.address.clone(),
                wanted_for(reg, stack, state, &t.address, &t.kind)?,
            ))
        })
        .collect();
    let by_id: Vec<ToRead> = reads
        .iter()
        .filter(|t| !tagged.contains_key(&t.address))
        .cloned()
        .collect();
    let mut live = read_all(reg, aws, &by_id, &wanted, concurrency, wait_timeout).await?;
    live.extend(tagged.into_iter().map(|(a, l)| (a, Some(l))));
    let mut res = Resolution {
        state: State::new(&stack.name, stack.env.as_deref()),
        adoptions: Vec::new(),
        resolved: Vec::new(),
        live: BTreeMap::new(),
    };
    for t in &reads {
        let (op, since, error) = &why[&t.address];
        let found = live.get(&t.address).cloned().flatten();
        match (op, found) {
            (IntentOp::Create, Some(l)) => {
                let Some(r) = stack.resources.get(&t.address) else {
                    // Created by an interrupted apply but no longer in the stack: keep it in
                    // state so the plan deletes it.
                    let resource = ResourceState {
                        kind: t.kind.clone(),
                        id: l.id.clone(),
                        attributes: Attrs::new(),
                        sensitive_attributes: Vec::new(),
                        depends_on: Vec::new(),
                        prevent_destroy: false,
                        private: None,
                    };
                    st.resources.insert(t.address.clone(), resource.clone());
                    res.resolved.push((
                        t.address.clone(),
                        "created by an interrupted apply".into(),
                        Entry::Stored {
                            address: t.address.clone(),
                            resource,
                        },
                    ));
                    continue;
                };
                let p = reg.provider(&r.kind).expect("validated kind");
                let desired = early_desired(&t.address).unwrap_or_default();
                let (attrs, sensitive) = storable(p, &l, &desired);
                let resource = ResourceState {
                    kind: r.kind.clone(),
                    id: l.id.clone(),
                    attributes: attrs,
                    sensitive_attributes: sensitive,
                    depends_on: r
                        .dependencies()
                        .into_iter()
                        .filter(|d| !d.starts_with("data."))
                        .collect(),
                    // The stack's own setting; a protected resource stays protected.
                    prevent_destroy: r.protected(None),
                    private: None,
                };
                let reason = match (since, error) {
                    (None, _) => format!("imported: `{}` exists in AWS", l.id),
                    (Some(at), None) => format!("adopted: created by an interrupted apply at {at}"),
                    (Some(at), Some(e)) => {
                        format!("adopted: created by an apply at {at} that then failed ({e})")
                    }
                };
                st.resources.insert(t.address.clone(), resource.clone());
                res.adoptions.push(Adoption {
                    address: t.address.clone(),
                    resource,
                    reason,
                });
            }
            (IntentOp::Create, None) if since.is_none() => {
                return Err(Diagnostic::new(format!(
                    "cannot import `{}` into `{}`: no {} with that id exists",
                    t.id, t.address, t.kind
                ))
                .for_address(t.address.clone())
                .hint("check the id (a bucket name, a parameter name, a DB identifier)"));
            }
            (IntentOp::Create, None) => res.resolved.push((
                t.address.clone(),
                "an interrupted apply did not get to create it".into(),
                Entry::Resolved {
                    address: t.address.clone(),
                },
            )),
            (IntentOp::Delete, None) => {
                st.resources.remove(&t.address);
                res.resolved.push((
                    t.address.clone(),
                    "deleted by an interrupted apply; only the state entry is removed".into(),
                    Entry::Removed {
                        address: t.address.clone(),
                    },
                ));
            }
            (IntentOp::Delete, Some(_)) => res.resolved.push((
                t.address.clone(),
                "an interrupted apply did not finish deleting it".into(),
                Entry::Resolved {
                    address: t.address.clone(),
                },
            )),
        }
    }
    // Intents without any id: resolved as never created.
    for (addr, intent) in &state.pending {
        if !why.contains_key(addr) && intent.operation == IntentOp::Create {
            res.resolved.push((
                addr.clone(),
                "an interrupted apply did not get to create it".into(),
                Entry::Resolved {
                    address: addr.clone(),
                },
            ));
        }
    }
    res.state = st;
    res.live = live;
    Ok(res)
}
