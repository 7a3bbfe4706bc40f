//! Apply: walks a plan's changes in dependency order with bounded concurrency.
//!
//! After every completed action the state is written atomically, so a failure half-way
//! loses nothing and a re-plan converges. A failed action stops the changes that depend on
//! it, lets independent work finish, and the run ends with a summary. Progress goes out as
//! [`events::Event`]s.

pub mod events;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::plan::diff::{desired_attrs, resolve, storable};
use crate::plan::{Action, Change, Plan};
use crate::providers::{Aws, Cx, Live, registry};
use crate::stack::{Ref, Stack};
use crate::state::{Backend, ResourceState, State};
use crate::value::{Attrs, Desired};
use events::{Event, EventSink};

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub concurrency: usize,
    pub wait_timeout: Duration,
    pub poll_interval: Duration,
    /// Verify secrets against the plan's fingerprints (applying a saved plan).
    pub check_fingerprints: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            concurrency: 16,
            wait_timeout: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(5),
            check_fingerprints: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub completed: Vec<(String, Action)>,
    pub failed: Vec<(String, String)>,
    pub skipped: Vec<(String, String)>,
    pub state: Option<State>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
    }
}

/// A step apply runs that is not a resource change (migrations), slotted into the graph.
/// It returns records to keep in state (the snapshot taken, the tool's folder digest).
pub type Hook<'a> =
    Box<dyn Fn() -> futures::future::BoxFuture<'a, Result<Records, String>> + Send + Sync + 'a>;

pub type Records = BTreeMap<String, serde_json::Value>;

pub struct Extra<'a> {
    pub address: String,
    /// Addresses it waits for.
    pub after: Vec<String>,
    /// Addresses that wait for it.
    pub before: Vec<String>,
    pub run: Hook<'a>,
}

/// Verifies every secret fingerprint the plan recorded that can be evaluated up front.
pub fn check_fingerprints(plan: &Plan, stack: &Stack) -> Result<(), String> {
    for key in plan.secret_fingerprints.keys() {
        let Some((addr, attr)) = key.rsplit_once('.') else {
            continue;
        };
        let Some(r) = stack.resources.get(addr) else {
            continue;
        };
        let Some(p) = registry().provider(&r.kind) else {
            continue;
        };
        let desired = desired_attrs(r, p, &|_| Desired::Unknown);
        if let Some(Desired::Secret(s)) = desired.get(attr)
            && !crate::secret::matches(s, &plan.secret_fingerprints[key])
        {
            return Err(format!(
                "the secret value of {key} differs from the one the plan was made with; re-run plan"
            ));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub async fn apply<'a>(
    plan: &'a Plan,
    stack: &'a Stack,
    backend: &'a dyn Backend,
    prior: Option<State>,
    aws: &'a Aws,
    events: &'a dyn EventSink,
    opts: &'a ApplyOptions,
    extras: Vec<Extra<'a>>,
) -> Outcome {
    let state = Mutex::new(prior.unwrap_or_else(|| State::new(&stack.name, stack.env.as_deref())));
    // Known attribute values for references: data reads and everything in state.
    let known: Mutex<BTreeMap<String, Attrs>> = Mutex::new({
        let st = state.lock().expect("state lock");
        let mut k: BTreeMap<String, Attrs> = st
            .resources
            .iter()
            .map(|(a, r)| (a.clone(), r.attributes.clone()))
            .collect();
        k.extend(
            plan.data
                .iter()
                .map(|d| (d.address.clone(), d.attributes.clone())),
        );
        k
    });

    let active: BTreeMap<&str, &Change> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .map(|c| (c.address.as_str(), c))
        .collect();
    let extra_by: BTreeMap<&str, &Extra> = extras.iter().map(|e| (e.address.as_str(), e)).collect();
    let mut waits: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, c) in &active {
        waits.insert(
            (*a).to_owned(),
            c.after_changes
                .iter()
                .filter(|d| active.contains_key(d.as_str()))
                .cloned()
                .collect(),
        );
    }
    for e in &extras {
        waits.insert(
            e.address.clone(),
            e.after
                .iter()
                .filter(|d| active.contains_key(d.as_str()))
                .cloned()
                .collect(),
        );
        for b in &e.before {
            if let Some(w) = waits.get_mut(b) {
                w.insert(e.address.clone());
            }
        }
    }

    let mut outcome = Outcome::default();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut started: BTreeSet<String> = BTreeSet::new();
    let mut blocked: BTreeMap<String, String> = BTreeMap::new();
    let mut running = FuturesUnordered::new();

    loop {
        // Start whatever is ready, up to the concurrency bound.
        let ready: Vec<String> = waits
            .iter()
            .filter(|(a, w)| {
                !started.contains(*a)
                    && !blocked.contains_key(*a)
                    && w.iter().all(|d| done.contains(d))
            })
            .map(|(a, _)| a.clone())
            .collect();
        for addr in ready {
            if running.len() >= opts.concurrency.max(1) {
                break;
            }
            started.insert(addr.clone());
            let state = &state;
            let known = &known;
            let fut: futures::future::BoxFuture<'_, (String, Result<Action, String>, Duration)> =
                if let Some(e) = extra_by.get(addr.as_str()) {
                    let e: &Extra = e;
                    Box::pin(async move {
                        events.emit(Event::ActionStarted {
                            address: e.address.clone(),
                            action: "run".into(),
                        });
                        let t = Instant::now();
                        let r = match (e.run)().await {
                            Ok(records) if records.is_empty() => Ok(Action::NoOp),
                            Ok(records) => save(backend, state, |st| st.records.extend(records))
                                .map(|_| Action::NoOp),
                            Err(e) => Err(e),
                        };
                        (e.address.clone(), r, t.elapsed())
                    })
                } else {
                    let change = active[addr.as_str()];
                    Box::pin(async move {
                        events.emit(Event::ActionStarted {
                            address: change.address.clone(),
                            action: change.action.verb().into(),
                        });
                        let t = Instant::now();
                        let r = run_change(
                            change, plan, stack, backend, state, known, aws, events, opts,
                        )
                        .await
                        .map(|_| change.action);
                        (change.address.clone(), r, t.elapsed())
                    })
                };
            running.push(fut);
        }
        let Some((addr, result, elapsed)) = running.next().await else {
            break;
        };
        let action = match &result {
            Ok(_) if extra_by.contains_key(addr.as_str()) => "run".to_owned(),
            Ok(a) => a.verb().to_owned(),
            Err(_) => "failed".to_owned(),
        };
        events.emit(Event::ActionFinished {
            address: addr.clone(),
            action,
            elapsed,
            error: result.as_ref().err().cloned(),
        });
        match result {
            Ok(a) => {
                done.insert(addr.clone());
                if !extra_by.contains_key(addr.as_str()) {
                    outcome.completed.push((addr, a));
                }
            }
            Err(e) => {
                // Everything waiting on it, transitively, will not start.
                let mut todo = vec![addr.clone()];
                while let Some(x) = todo.pop() {
                    for (a, w) in &waits {
                        if w.contains(&x) && !blocked.contains_key(a) && !started.contains(a) {
                            blocked.insert(a.clone(), format!("{addr} failed"));
                            todo.push(a.clone());
                        }
                    }
                }
                outcome.failed.push((addr, e));
            }
        }
    }
    drop(running);
    for (a, why) in blocked {
        events.emit(Event::Skipped {
            address: a.clone(),
            reason: why.clone(),
        });
        outcome.skipped.push((a, why));
    }
    outcome.state = Some(state.into_inner().expect("state lock"));
    outcome
}

fn save(
    backend: &dyn Backend,
    state: &Mutex<State>,
    f: impl FnOnce(&mut State),
) -> Result<(), String> {
    let mut st = state.lock().expect("state lock");
    f(&mut st);
    st.serial += 1;
    st.tool_version = env!("CARGO_PKG_VERSION").to_owned();
    tracing::debug!(serial = st.serial, "state saved");
    backend.save(&st).map_err(|e| format!("{e:#}"))
}

#[allow(clippy::too_many_arguments)]
async fn run_change(
    change: &Change,
    plan: &Plan,
    stack: &Stack,
    backend: &dyn Backend,
    state: &Mutex<State>,
    known: &Mutex<BTreeMap<String, Attrs>>,
    aws: &Aws,
    events: &dyn EventSink,
    opts: &ApplyOptions,
) -> Result<(), String> {
    let reg = registry();
    let p = reg
        .provider(&change.kind)
        .ok_or_else(|| format!("unknown kind {}", change.kind))?;
    let cx = Cx {
        aws,
        address: &change.address,
        events,
        wait_timeout: opts.wait_timeout,
        poll_interval: opts.poll_interval,
        wanted: None,
    };
    let prior = state
        .lock()
        .expect("state lock")
        .resources
        .get(&change.address)
        .cloned();
    let aws_fail = |verb: &str, e: crate::providers::AwsError| format!("{verb} failed: {e}");

    if change.action == Action::Delete {
        if let Some(pr) = &prior
            && !change.deleted_outside
        {
            p.delete(&cx, &pr.id, &pr.attributes)
                .await
                .map_err(|e| aws_fail("delete", e))?;
        }
        save(backend, state, |st| {
            st.resources.remove(&change.address);
        })?;
        known.lock().expect("known lock").remove(&change.address);
        return Ok(());
    }

    let r = stack.resources.get(&change.address).ok_or_else(|| {
        format!(
            "{} is in the plan but not in the stack; re-run plan",
            change.address
        )
    })?;
    let desired = {
        let k = known.lock().expect("known lock");
        let lookup = |rf: &Ref| match k.get(&rf.address).and_then(|a| a.get(&rf.attr)) {
            Some(v) => Desired::Known(v.clone()),
            None => Desired::Unknown,
        };
        desired_attrs(r, p, &lookup)
    };
    let input = resolve(&desired).map_err(|a| {
        format!("attribute `{a}` is still unknown after its dependencies were applied")
    })?;
    if opts.check_fingerprints {
        for (attr, s) in &input.secrets {
            let key = format!("{}.{attr}", change.address);
            if let Some(fp) = plan.secret_fingerprints.get(&key)
                && !crate::secret::matches(s, fp)
            {
                return Err(format!(
                    "the secret value of {key} differs from the one the plan was made with; re-run plan"
                ));
            }
        }
    }

    let live: Live = match change.action {
        Action::Create => p
            .create(&cx, &input)
            .await
            .map_err(|e| aws_fail("create", e))?,
        Action::Replace => {
            if let Some(pr) = &prior {
                p.delete(&cx, &pr.id, &pr.attributes)
                    .await
                    .map_err(|e| aws_fail("delete (for replacement)", e))?;
                save(backend, state, |st| {
                    st.resources.remove(&change.address);
                })?;
            }
            p.create(&cx, &input)
                .await
                .map_err(|e| aws_fail("create (for replacement)", e))?
        }
        Action::Update => {
            let schema = p.schema();
            let remote: Vec<String> = change
                .changed_attrs()
                .into_iter()
                .filter(|a| schema.attr(a).is_some_and(|s| !s.local))
                .collect();
            let pr = prior
                .as_ref()
                .ok_or_else(|| format!("{} is not in state; re-run plan", change.address))?;
            if remote.is_empty() {
                // Local-only change (force_destroy, prevent_destroy): nothing to ask AWS.
                Live {
                    id: pr.id.clone(),
                    attrs: pr.attributes.clone(),
                }
            } else {
                p.update(&cx, &pr.id, &input, &remote)
                    .await
                    .map_err(|e| aws_fail("update", e))?
            }
        }
        Action::NoOp | Action::Read | Action::Delete => unreachable!("filtered out"),
    };
    let (attrs, sensitive) = storable(p, &live, &desired);
    let deps: Vec<String> = r
        .dependencies()
        .into_iter()
        .filter(|d| !d.starts_with("data."))
        .collect();
    save(backend, state, |st| {
        st.resources.insert(
            change.address.clone(),
            ResourceState {
                kind: change.kind.clone(),
                id: live.id.clone(),
                attributes: attrs.clone(),
                sensitive_attributes: sensitive,
                depends_on: deps,
                prevent_destroy: r.prevent_destroy,
            },
        );
    })?;
    known
        .lock()
        .expect("known lock")
        .insert(change.address.clone(), attrs);
    Ok(())
}
