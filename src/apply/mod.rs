//! Apply: walks a plan's changes in dependency order with bounded concurrency.
//!
//! Before each create or delete call it records an intent in the write-ahead journal; the
//! id AWS returns is recorded at once (before any wait), and the outcome closes the intent.
//! The state file is written once, at the end, by folding the journal in — so a kill at any
//! point loses nothing (the next load replays the journal and the next plan adopts what an
//! open intent created), and the cost per action does not grow with the state. A failed
//! action stops the changes that depend on it and lets independent work finish. An
//! interrupt (see [`ApplyOptions::cancel`]) starts nothing new and lets running calls end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

mod error;

pub use error::{ApplyError, Cause, Step};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::eval::{desired_attrs, resolve, storable};
use crate::events::{Activity, Event, EventSink};
use crate::plan::{Action, Change, Plan};
use crate::providers::{Aws, Cx, Live, Provider, Registry};
use crate::stack::{Ref, Stack};
use crate::state::{
    Backend, Entry, Intent, IntentOp, Journal, OutputValue, ResourceState, State, history,
};
use crate::value::{Attrs, Desired};

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub concurrency: usize,
    pub wait_timeout: Duration,
    pub poll_interval: Duration,
    /// Verify secrets against the plan's fingerprints (applying a saved plan).
    pub check_fingerprints: bool,
    /// Set by the CLI on SIGINT/SIGTERM: start nothing new, let running calls finish.
    pub cancel: Arc<AtomicBool>,
    /// `--override-window --reason`: recorded in the run's history record.
    pub override_reason: Option<String>,
    /// A note for the history record (the deploy windows were checked at a set clock).
    pub note: Option<String>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            concurrency: 16,
            wait_timeout: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(5),
            check_fingerprints: false,
            cancel: Arc::new(AtomicBool::new(false)),
            override_reason: None,
            note: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub completed: Vec<(String, Action)>,
    pub failed: Vec<ApplyError>,
    pub skipped: Vec<(String, String)>,
    pub state: Option<State>,
    /// The run was interrupted (SIGINT/SIGTERM) before everything started.
    pub interrupted: bool,
    /// Folding the journal into the state file failed; the journal keeps everything and the
    /// next run replays it.
    pub save_error: Option<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
            && self.skipped.is_empty()
            && !self.interrupted
            && self.save_error.is_none()
    }
}

/// Loads the state for a run that writes (under its lock): a journal left by a crashed run
/// is folded into the state file first, so this run's journal starts on a clean base.
pub async fn load_for_write(backend: &dyn Backend) -> anyhow::Result<Option<State>> {
    let state = backend.load().await?;
    if backend.has_journal().await?
        && let Some(mut s) = state
    {
        let expected = on_disk_serial(&s);
        let mut d = history::Draft::new("recover");
        d.note = Some(format!(
            "folded the journal of an interrupted run ({} intents still open, resolved by the next plan)",
            s.pending.len()
        ));
        backend.save(&mut s, expected, &d).await?;
        tracing::info!(
            serial = s.serial,
            "folded the journal of an interrupted run"
        );
        return Ok(Some(s));
    }
    Ok(state)
}

/// The serial the state file holds for a loaded state (`None`: no file yet).
fn on_disk_serial(s: &State) -> Option<u64> {
    s.saved_serial()
}

/// The in-memory state of a run and its journal: every change goes through [`Recorder::record`].
struct Recorder<'a> {
    backend: &'a dyn Backend,
    state: Mutex<State>,
    journal: OnceLock<Journal>,
    /// Held while the journal is created, so two first records cannot race.
    opening: Mutex<()>,
    base: State,
}

impl Recorder<'_> {
    /// Appends to the journal (fsync'd), then applies the entry to the in-memory state.
    fn record(&self, entry: Entry) -> Result<(), String> {
        let journal = match self.journal.get() {
            Some(j) => j,
            None => {
                let _g = self.opening.lock().expect("journal open lock");
                if self.journal.get().is_none() {
                    let j = self
                        .backend
                        .open_journal(&self.base)
                        .map_err(|e| format!("cannot write the journal: {e}"))?;
                    let _ = self.journal.set(j);
                }
                self.journal.get().expect("journal set")
            }
        };
        journal
            .append(&entry)
            .map_err(|e| format!("cannot write the journal {}: {e}", journal.location()))?;
        crate::state::journal::replay(
            &mut self.state.lock().expect("state lock"),
            std::slice::from_ref(&entry),
        );
        Ok(())
    }
}

/// Forwards events, and writes the id of every resource AWS just created to the journal.
struct Journaling<'a> {
    inner: &'a dyn EventSink,
    recorder: Arc<Recorder<'a>>,
}

impl EventSink for Journaling<'_> {
    fn emit(&self, event: Event) {
        if let Event::Checkpoint { key, value } = &event
            && let Err(e) = self.recorder.record(Entry::Records {
                records: [(key.clone(), value.clone())].into(),
            })
        {
            tracing::warn!(key = %key, error = %e, "could not journal a checkpoint");
        }
        if let Event::Created { address, id } = &event
            && let Err(e) = self.recorder.record(Entry::Created {
                address: address.clone(),
                id: id.clone(),
            })
        {
            tracing::warn!(address = %address, error = %e, "could not journal a created id");
        }
        self.inner.emit(event);
    }
}

/// A step apply runs that is not a resource change (migrations), slotted into the graph.
/// It returns records to keep in state (the snapshot taken, the tool's folder digest).
pub type Hook<'a> = Box<
    dyn Fn(HookCx<'a>) -> futures::future::BoxFuture<'a, Result<Records, String>>
        + Send
        + Sync
        + 'a,
>;

/// What a hook gets when it starts: the executor's event sink, so that the checkpoints it
/// emits reach the journal, and the attribute values known at that moment (state and data
/// reads, updated by every change already applied), to resolve a resource's input with.
pub struct HookCx<'a> {
    pub events: Arc<dyn EventSink + 'a>,
    pub known: BTreeMap<String, Attrs>,
}

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
pub fn check_fingerprints(reg: &Registry, plan: &Plan, stack: &Stack) -> Result<(), String> {
    for key in plan.secret_fingerprints.keys() {
        let Some((addr, attr)) = key.rsplit_once('.') else {
            continue;
        };
        let Some(r) = stack.resources.get(addr) else {
            continue;
        };
        let Some(p) = reg.provider(&r.kind) else {
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
    reg: &'a Registry,
    plan: &'a Plan,
    stack: &'a Stack,
    backend: &'a dyn Backend,
    prior: Option<State>,
    aws: &'a Aws,
    events: &'a dyn EventSink,
    opts: &'a ApplyOptions,
    extras: Vec<Extra<'a>>,
) -> Outcome {
    let base = prior.unwrap_or_else(|| State::new(&stack.name, stack.env.as_deref()));
    let expected = on_disk_serial(&base);
    let recorder = Arc::new(Recorder {
        backend,
        state: Mutex::new(base.clone()),
        journal: OnceLock::new(),
        opening: Mutex::new(()),
        base,
    });
    let journaling: Arc<dyn EventSink + 'a> = Arc::new(Journaling {
        inner: events,
        recorder: recorder.clone(),
    });
    let recorder = &*recorder;
    let events: &dyn EventSink = &*journaling;
    let journaling = &journaling;
    let mut outcome = Outcome::default();

    // The `[moved]` renames, then what the plan found in AWS (adoptions, resolved intents)
    // go into state first, in the order the plan saw them.
    let fixes: Vec<Entry> = plan
        .moves
        .iter()
        .map(|m| Entry::Moved {
            from: m.from.clone(),
            to: m.to.clone(),
        })
        .chain(plan.adoptions.iter().map(|a| Entry::Stored {
            address: a.address.clone(),
            resource: a.resource.clone(),
        }))
        .chain(plan.resolved_intents.iter().cloned())
        .collect();
    for e in fixes {
        if let Err(err) = recorder.record(e) {
            outcome
                .failed
                .push(ApplyError::other("state", Step::Journal, err));
            outcome.state = Some(recorder.state.lock().expect("state lock").clone());
            return outcome;
        }
    }
    // Known attribute values for references: data reads and everything in state.
    let known: Mutex<BTreeMap<String, Attrs>> = Mutex::new({
        let st = recorder.state.lock().expect("state lock");
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
    // The old half of a create-then-delete goes only after everything that references the
    // resource has moved to the new one.
    for (a, c) in &active {
        if c.action == Action::CreateThenDelete {
            let mut w: BTreeSet<String> = active
                .values()
                .filter(|o| o.after_changes.iter().any(|d| d == a))
                .map(|o| o.address.clone())
                .collect();
            w.insert((*a).to_owned());
            waits.insert(deposed_key(a), w);
        }
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

    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut started: BTreeSet<String> = BTreeSet::new();
    let mut blocked: BTreeMap<String, String> = BTreeMap::new();
    let mut running = FuturesUnordered::new();

    loop {
        if opts.cancel.load(Ordering::SeqCst) {
            outcome.interrupted = true;
        }
        // Start whatever is ready, up to the concurrency bound (nothing once interrupted).
        let ready: Vec<String> = if outcome.interrupted {
            Vec::new()
        } else {
            waits
                .iter()
                .filter(|(a, w)| {
                    !started.contains(*a)
                        && !blocked.contains_key(*a)
                        && w.iter().all(|d| done.contains(d))
                })
                .map(|(a, _)| a.clone())
                .collect()
        };
        for addr in ready {
            if running.len() >= opts.concurrency.max(1) {
                break;
            }
            started.insert(addr.clone());
            let known = &known;
            let fut: futures::future::BoxFuture<
                '_,
                (String, Result<Action, ApplyError>, Duration),
            > = if let Some(e) = extra_by.get(addr.as_str()) {
                let e: &Extra = e;
                Box::pin(async move {
                    events.emit(Event::ActionStarted {
                        address: e.address.clone(),
                        action: Activity::Operation,
                    });
                    let t = Instant::now();
                    let hcx = HookCx {
                        events: journaling.clone(),
                        known: known.lock().expect("known lock").clone(),
                    };
                    let r = match (e.run)(hcx).await {
                        Ok(records) if records.is_empty() => Ok(Action::NoOp),
                        Ok(records) => recorder
                            .record(Entry::Records { records })
                            .map(|_| Action::NoOp)
                            .map_err(|m| ApplyError::other(&e.address, Step::Journal, m)),
                        Err(m) => Err(ApplyError::other(&e.address, Step::Operation, m)),
                    };
                    (e.address.clone(), r, t.elapsed())
                })
            } else if !active.contains_key(addr.as_str())
                && let Some(base) = addr.strip_suffix(DEPOSED)
            {
                let change = active[base];
                Box::pin(async move {
                    let t = Instant::now();
                    let r = delete_deposed(reg, change, recorder, aws, events, opts)
                        .await
                        .map(|_| Action::Delete);
                    (addr.clone(), r, t.elapsed())
                })
            } else {
                let change = active[addr.as_str()];
                Box::pin(async move {
                    events.emit(Event::ActionStarted {
                        address: change.address.clone(),
                        action: Activity::Resource(change.action),
                    });
                    let t = Instant::now();
                    let r =
                        run_change(reg, change, plan, stack, recorder, known, aws, events, opts)
                            .await
                            .map(|_| change.action);
                    (change.address.clone(), r, t.elapsed())
                })
            };
            running.push(fut);
        }
        // Wake up for a finished action, or for an interrupt while waiting for one.
        let next = tokio::select! {
            n = running.next() => n,
            _ = wait_cancel(&opts.cancel), if !outcome.interrupted && !running.is_empty() => continue,
        };
        let Some((addr, result, elapsed)) = next else {
            break;
        };
        let action = match &result {
            Ok(_) if extra_by.contains_key(addr.as_str()) => Activity::Operation,
            Ok(_) if addr.ends_with(DEPOSED) && !active.contains_key(addr.as_str()) => {
                Activity::Resource(Action::Delete)
            }
            Ok(a) => Activity::Resource(*a),
            Err(_) => Activity::Failed,
        };
        events.emit(Event::ActionFinished {
            address: addr.clone(),
            action,
            elapsed,
            error: result.as_ref().err().map(ToString::to_string),
        });
        match result {
            Ok(a) => {
                done.insert(addr.clone());
                let deposed_half = addr.ends_with(DEPOSED) && !active.contains_key(addr.as_str());
                if !extra_by.contains_key(addr.as_str()) && !deposed_half {
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
                outcome.failed.push(e);
            }
        }
    }
    drop(running);
    if outcome.interrupted {
        for a in waits.keys() {
            if !started.contains(a) && !blocked.contains_key(a) {
                blocked.insert(a.clone(), "the run was interrupted".into());
            }
        }
    }
    for (a, why) in blocked {
        events.emit(Event::Skipped {
            address: a.clone(),
            reason: why.clone(),
        });
        outcome.skipped.push((a, why));
    }
    // Outputs last, from what state now holds: a failed or interrupted run keeps the
    // values it could not recompute.
    let next = final_outputs(
        stack,
        plan,
        &recorder.state.lock().expect("state lock"),
        !outcome.ok(),
    );
    if let Some(outputs) = next
        && let Err(err) = recorder.record(Entry::Outputs { outputs })
    {
        outcome
            .failed
            .push(ApplyError::other("outputs", Step::Journal, err));
    }
    let mut state = recorder.state.lock().expect("state lock").clone();
    let mut draft = history_draft(plan, stack, aws, &outcome, &recorder.base, &state);
    draft.override_reason = opts.override_reason.clone();
    draft.note = opts.note.clone();
    // Fold the journal into the state file: the one write of this run.
    if recorder.journal.get().is_some()
        && let Err(e) = backend.save(&mut state, expected, &draft).await
    {
        outcome.save_error = Some(format!(
            "{e}; everything done is kept in the journal {} and the next run picks it up",
            backend.journal_location()
        ));
    }
    outcome.state = Some(state);
    outcome
}

/// What this run did, for its history record: every address it touched and how it
/// ended, the migrations it ran and the snapshot taken first.
fn history_draft(
    plan: &Plan,
    stack: &Stack,
    aws: &Aws,
    outcome: &Outcome,
    base: &State,
    state: &State,
) -> history::Draft {
    let mut d = history::Draft::new(if plan.destroy { "destroy" } else { "apply" });
    d.stack_digest = Some(plan.stack.digest.clone());
    d.plan_digest = serde_json::to_vec(plan)
        .ok()
        .map(|b| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&b)));
    d.stack_dir = stack.path.parent().map(Into::into);
    d.caller_arn = aws.identity.get().map(|c| c.arn.clone());
    for m in &plan.moves {
        d = d.touched(&m.from, &format!("move to {}", m.to), "done");
    }
    for (a, action) in &outcome.completed {
        d = d.touched(a, action.verb(), "done");
    }
    // The migrations step is an operation, not a change: it ran when it neither failed nor
    // was skipped (an interrupted run leaves its checkpoint, and the record says skipped).
    let did_not_finish = |a: &str| {
        outcome.failed.iter().any(|e| e.address == a) || outcome.skipped.iter().any(|(s, _)| s == a)
    };
    if let Some(m) = &plan.migrations
        && !outcome.interrupted
        && !did_not_finish("migrations")
    {
        d.migrations = m.pending.clone();
    }
    for e in &outcome.failed {
        let action = plan
            .changes
            .iter()
            .find(|c| c.address == e.address)
            .map_or("operation", |c| c.action.verb());
        d = d.touched(&e.address, action, "failed");
    }
    for (a, _) in &outcome.skipped {
        let action = plan
            .changes
            .iter()
            .find(|c| &c.address == a)
            .map_or("operation", |c| c.action.verb());
        d = d.touched(a, action, "skipped");
    }
    for a in &plan.adoptions {
        d = d.touched(&a.address, "adopt", "done");
    }
    let snapshot = crate::operations::migrations::SNAPSHOT_RECORD;
    if let Some(serde_json::Value::String(id)) = state.records.get(snapshot)
        && base.records.get(snapshot) != state.records.get(snapshot)
    {
        d.snapshots.push(id.clone());
    }
    d
}

/// The outputs to record after a run, or `None` when they are as state has them.
fn final_outputs(
    stack: &Stack,
    plan: &Plan,
    state: &State,
    incomplete: bool,
) -> Option<BTreeMap<String, OutputValue>> {
    let data: BTreeMap<&str, &Attrs> = plan
        .data
        .iter()
        .map(|d| (d.address.as_str(), &d.attributes))
        .collect();
    let lookup = |rf: &Ref| {
        let attrs = data
            .get(rf.address.as_str())
            .copied()
            .or_else(|| state.resources.get(&rf.address).map(|r| &r.attributes));
        match attrs.and_then(|a| a.get(&rf.attr)) {
            Some(v) => Desired::Known(v.clone()),
            None => Desired::Unknown,
        }
    };
    let mut next = BTreeMap::new();
    for (name, decl) in &stack.outputs {
        let refs = crate::eval::output_refs(stack, name);
        let value = match decl.value.eval(&lookup) {
            Desired::Known(v) if !(plan.destroy && refs.is_empty()) => Some(v),
            // Unknown now, but what it reads is still there: keep the last value (a
            // targeted destroy, a run that stopped early).
            _ if incomplete
                || (!refs.is_empty() && refs.iter().all(|a| state.resources.contains_key(a))) =>
            {
                state.outputs.get(name).map(|o| o.value.clone())
            }
            _ => None,
        };
        if let Some(value) = value {
            next.insert(
                name.clone(),
                OutputValue {
                    value,
                    sensitive: decl.sensitive,
                },
            );
        }
    }
    (next != state.outputs).then_some(next)
}

/// State key of the old object of a create-then-delete until it is deleted.
pub const DEPOSED: &str = "#old";

pub fn deposed_key(address: &str) -> String {
    format!("{address}{DEPOSED}")
}

/// The second half of a create-then-delete: delete the old object, now under its deposed key.
async fn delete_deposed(
    reg: &Registry,
    change: &Change,
    recorder: &Recorder<'_>,
    aws: &Aws,
    events: &dyn EventSink,
    opts: &ApplyOptions,
) -> Result<(), ApplyError> {
    let key = deposed_key(&change.address);
    let Some(old) = recorder
        .state
        .lock()
        .expect("state lock")
        .resources
        .get(&key)
        .cloned()
    else {
        return Ok(());
    };
    let p = reg.provider(&old.kind).ok_or_else(|| {
        ApplyError::other(
            &change.address,
            Step::DeleteOld,
            format!("unknown kind {}", old.kind),
        )
    })?;
    events.emit(Event::Note {
        address: change.address.clone(),
        message: format!("deleting the old {} `{}`", old.kind, old.id),
    });
    let cx = Cx {
        poll_interval: opts.poll_interval,
        prior: Some(&old),
        lineage: &recorder.base.lineage,
        ..Cx::new(aws, &change.address, events, opts.wait_timeout)
    };
    delete_recorded(p, &cx, recorder, &key, &old, Step::DeleteOld).await
}

/// Resolves once the cancel flag is set (polled: signals set it from another task).
async fn wait_cancel(flag: &AtomicBool) {
    while !flag.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn intent(kind: &str, operation: IntentOp, id: Option<String>) -> Intent {
    Intent {
        kind: kind.to_owned(),
        operation,
        id,
        since: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        error: None,
    }
}

/// Deletes the resource at `address` (recorded as an intent first) and drops it from state.
async fn delete_recorded(
    p: &dyn Provider,
    cx: &Cx<'_>,
    recorder: &Recorder<'_>,
    address: &str,
    prior: &ResourceState,
    step: Step,
) -> Result<(), ApplyError> {
    let journal = |m: String| ApplyError::other(address, Step::Journal, m);
    recorder
        .record(Entry::Intent {
            address: address.to_owned(),
            intent: intent(&prior.kind, IntentOp::Delete, Some(prior.id.clone())),
        })
        .map_err(journal)?;
    if let Err(e) = p.delete(cx, &prior.id, &prior.attributes).await {
        let err = ApplyError::aws(address, step, e);
        let _ = recorder.record(Entry::Failed {
            address: address.to_owned(),
            error: err.to_string(),
        });
        return Err(err);
    }
    recorder
        .record(Entry::Removed {
            address: address.to_owned(),
        })
        .map_err(journal)
}

#[allow(clippy::too_many_arguments)]
async fn run_change(
    reg: &Registry,
    change: &Change,
    plan: &Plan,
    stack: &Stack,
    recorder: &Recorder<'_>,
    known: &Mutex<BTreeMap<String, Attrs>>,
    aws: &Aws,
    events: &dyn EventSink,
    opts: &ApplyOptions,
) -> Result<(), ApplyError> {
    let address = change.address.as_str();
    let prepare = |m: String| ApplyError::other(address, Step::Prepare, m);
    let journal = |m: String| ApplyError::other(address, Step::Journal, m);
    let p = reg
        .provider(&change.kind)
        .ok_or_else(|| prepare(format!("unknown kind {}", change.kind)))?;
    let prior = recorder
        .state
        .lock()
        .expect("state lock")
        .resources
        .get(&change.address)
        .cloned();
    let cx = Cx {
        poll_interval: opts.poll_interval,
        prior: prior.as_ref(),
        lineage: &recorder.base.lineage,
        ..Cx::new(aws, &change.address, events, opts.wait_timeout)
    };

    if change.action == Action::Delete {
        match &prior {
            Some(pr) if !change.deleted_outside => {
                delete_recorded(p, &cx, recorder, address, pr, Step::Delete).await?;
            }
            _ => recorder
                .record(Entry::Removed {
                    address: change.address.clone(),
                })
                .map_err(journal)?,
        }
        known.lock().expect("known lock").remove(&change.address);
        return Ok(());
    }

    let r = stack.resources.get(&change.address).ok_or_else(|| {
        prepare(format!(
            "{address} is in the plan but not in the stack; re-run plan"
        ))
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
        prepare(format!(
            "attribute `{a}` is still unknown after its dependencies were applied"
        ))
    })?;
    if opts.check_fingerprints {
        for (attr, s) in &input.secrets {
            let key = format!("{}.{attr}", change.address);
            if let Some(fp) = plan.secret_fingerprints.get(&key)
                && !crate::secret::matches(s, fp)
            {
                return Err(prepare(format!(
                    "the secret value of {key} differs from the one the plan was made with; re-run plan"
                )));
            }
        }
    }

    let create = |step: Step| {
        let cx = &cx;
        let input = &input;
        let desired = &desired;
        async move {
            recorder
                .record(Entry::Intent {
                    address: change.address.clone(),
                    intent: intent(&change.kind, IntentOp::Create, p.id_for(desired)),
                })
                .map_err(journal)?;
            match p.create(cx, input).await {
                Ok(live) => Ok(live),
                Err(e) => {
                    // The intent stays open (with the id, when AWS returned one): the next
                    // plan adopts whatever was created.
                    let err = ApplyError::aws(address, step, e);
                    let _ = recorder.record(Entry::Failed {
                        address: change.address.clone(),
                        error: err.to_string(),
                    });
                    Err(err)
                }
            }
        }
    };
    let live: Live = match change.action {
        Action::Create => create(Step::Create).await?,
        Action::Replace => {
            if let Some(pr) = &prior {
                delete_recorded(p, &cx, recorder, address, pr, Step::DeleteForReplacement).await?;
            }
            create(Step::CreateForReplacement).await?
        }
        Action::CreateThenDelete => {
            // The old object moves to its deposed key first, so that whatever happens next
            // (a failed create, a kill) state still knows it and a later apply deletes it.
            if let Some(pr) = &prior {
                recorder
                    .record(Entry::Stored {
                        address: deposed_key(&change.address),
                        resource: pr.clone(),
                    })
                    .map_err(journal)?;
            }
            create(Step::CreateForReplacement).await?
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
                .ok_or_else(|| prepare(format!("{address} is not in state; re-run plan")))?;
            if remote.is_empty() {
                // Local-only change (force_destroy, prevent_destroy): nothing to ask AWS.
                Live {
                    id: pr.id.clone(),
                    attrs: pr.attributes.clone(),
                    private: None,
                }
            } else {
                p.update(&cx, &pr.id, &input, &remote)
                    .await
                    .map_err(|e| ApplyError::aws(address, Step::Update, e))?
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
    recorder
        .record(Entry::Stored {
            address: change.address.clone(),
            resource: ResourceState {
                kind: change.kind.clone(),
                id: live.id.clone(),
                attributes: attrs.clone(),
                sensitive_attributes: sensitive,
                depends_on: deps,
                prevent_destroy: r.protected(prior.as_ref().map(|p| p.prevent_destroy)),
                private: live
                    .private
                    .clone()
                    .or_else(|| prior.as_ref().and_then(|p| p.private.clone())),
            },
        })
        .map_err(journal)?;
    known
        .lock()
        .expect("known lock")
        .insert(change.address.clone(), attrs);
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The executor against an in-memory provider: journal, adoption after a failed wait
    //! and after a kill, interrupts. (Everything AWS-facing is tested against moto.)

    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::events::NoEvents;
    use crate::plan::{PlanOptions, plan};
    use crate::providers::memory::{Memory, World};
    use crate::stack::{Expr, Resource};
    use crate::state::LocalBackend;

    fn stack(dir: &std::path::Path, names: &[&str]) -> Stack {
        let resources = names
            .iter()
            .map(|n| {
                let address = format!("mem_thing.{n}");
                let attrs: BTreeMap<String, Expr> = [
                    ("name".to_owned(), Expr::Lit(json!(format!("{n}-id")))),
                    ("size".to_owned(), Expr::Lit(json!(3))),
                ]
                .into();
                let r = Resource {
                    address: address.clone(),
                    kind: "mem_thing".into(),
                    name: (*n).into(),
                    attrs,
                    depends_on: vec![],
                    prevent_destroy: None,
                    span: 0..0,
                    attr_spans: BTreeMap::new(),
                };
                (address, r)
            })
            .collect();
        Stack {
            path: dir.join("s.toml"),
            source: String::new(),
            name: "s".into(),
            region: None,
            environments: vec![],
            env: None,
            vars: BTreeMap::new(),
            resources,
            data: BTreeMap::new(),
            migrations: None,
            imports: vec![],
            outputs: BTreeMap::new(),
            digest: "d".into(),
            warnings: vec![],
            account_id: None,
            profile: None,
            backend: None,
            rules: Default::default(),
            rules_span: None,
            moves: vec![],
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        world: World,
        reg: Registry,
        backend: LocalBackend,
        stack: Stack,
        aws: Aws,
    }

    fn fixture(names: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let world = World::default();
        let reg = Registry::new(vec![Box::new(Memory(world.clone()))], vec![]);
        let backend = LocalBackend::new(dir.path().join("state.json"));
        let stack = stack(dir.path(), names);
        let aws = Aws::from_config(aws_config::SdkConfig::builder().build());
        Fixture {
            _dir: dir,
            world,
            reg,
            backend,
            stack,
            aws,
        }
    }

    impl Fixture {
        async fn plan(&self) -> Plan {
            let state = self.backend.load().await.unwrap();
            plan(
                &self.reg,
                &self.stack,
                state.as_ref(),
                &self.aws,
                &PlanOptions::default(),
            )
            .await
            .unwrap()
        }
        async fn apply(&self, opts: &ApplyOptions) -> Outcome {
            let state = load_for_write(&self.backend).await.unwrap();
            let p = plan(
                &self.reg,
                &self.stack,
                state.as_ref(),
                &self.aws,
                &PlanOptions::default(),
            )
            .await
            .unwrap();
            apply(
                &self.reg,
                &p,
                &self.stack,
                &self.backend,
                state,
                &self.aws,
                &NoEvents,
                opts,
                vec![],
            )
            .await
        }
    }

    #[tokio::test]
    async fn a_create_whose_wait_fails_is_adopted_by_the_next_plan() {
        let f = fixture(&["a", "b"]);
        f.world
            .fail_after_create
            .lock()
            .unwrap()
            .insert("b-id".into());
        let out = f.apply(&ApplyOptions::default()).await;
        assert_eq!(out.failed.len(), 1, "{out:?}");
        let err = &out.failed[0];
        assert_eq!(
            (err.address.as_str(), err.operation),
            ("mem_thing.b", Step::Create)
        );
        assert!(matches!(err.source, Cause::Aws(_)), "{err:?}");
        assert!(err.to_string().starts_with("create failed: "), "{err}");
        let st = f.backend.load().await.unwrap().unwrap();
        assert!(st.resources.contains_key("mem_thing.a"));
        let intent = &st.pending["mem_thing.b"];
        assert_eq!(intent.id.as_deref(), Some("b-id"));
        assert!(intent.error.as_deref().unwrap().contains("timed out"));

        f.world.fail_after_create.lock().unwrap().clear();
        let p = f.plan().await;
        assert_eq!(p.adoptions.len(), 1);
        assert!(p.adoptions[0].reason.contains("then failed"), "{p:?}");
        let out = f.apply(&ApplyOptions::default()).await;
        assert!(out.ok(), "{out:?}");
        let creates = f
            .world
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| *c == "create b-id")
            .count();
        assert_eq!(creates, 1, "adopted, never created twice");
        let st = f.backend.load().await.unwrap().unwrap();
        assert!(st.pending.is_empty() && st.resources.len() == 2);
        assert!(!f.plan().await.has_changes());
    }

    #[tokio::test]
    async fn an_apply_dropped_mid_wait_loses_nothing() {
        let f = fixture(&["a", "b", "c"]);
        f.world
            .hang_after_create
            .lock()
            .unwrap()
            .insert("c-id".into());
        // Dropping the future mid-wait is what SIGKILL does to the run: nothing after it.
        let r = tokio::time::timeout(
            Duration::from_millis(500),
            f.apply(&ApplyOptions::default()),
        )
        .await;
        assert!(r.is_err(), "the apply must still be waiting");
        assert!(f.backend.journal_path().exists());
        // The state file was never written; the journal alone tells what happened.
        let st = f
            .backend
            .load()
            .await
            .unwrap()
            .expect("state from the journal");
        assert_eq!(st.resources.len(), 2);
        assert_eq!(st.pending["mem_thing.c"].id.as_deref(), Some("c-id"));
        f.world.hang_after_create.lock().unwrap().clear();
        let p = f.plan().await;
        assert!(
            p.change("mem_thing.c")
                .unwrap()
                .adopted
                .as_deref()
                .unwrap()
                .contains("interrupted"),
            "{p:?}"
        );
        assert!(f.apply(&ApplyOptions::default()).await.ok());
        let st = f.backend.load().await.unwrap().unwrap();
        assert_eq!(st.resources.len(), 3);
        assert_eq!(st.serial, 2, "folded once after the kill, once at the end");
        assert!(!f.plan().await.has_changes());
        assert_eq!(f.world.objects.lock().unwrap().len(), 3, "no duplicate");
    }

    #[tokio::test]
    async fn create_then_delete_creates_first_and_a_kill_in_between_converges() {
        let mut f = fixture(&["a"]);
        assert!(f.apply(&ApplyOptions::default()).await.ok());
        // Rename: the kind asks for create-before-destroy.
        f.stack
            .resources
            .get_mut("mem_thing.a")
            .unwrap()
            .attrs
            .insert("name".into(), Expr::Lit(json!("a2-id")));
        let p = f.plan().await;
        assert_eq!(
            p.change("mem_thing.a").unwrap().action,
            Action::CreateThenDelete
        );
        f.world
            .hang_after_create
            .lock()
            .unwrap()
            .insert("a2-id".into());
        let r = tokio::time::timeout(
            Duration::from_millis(500),
            f.apply(&ApplyOptions::default()),
        )
        .await;
        assert!(r.is_err());
        // Killed after the new one was created, before the old one was deleted.
        assert_eq!(f.world.objects.lock().unwrap().len(), 2);
        f.world.hang_after_create.lock().unwrap().clear();
        let p = f.plan().await;
        assert_eq!(
            p.change("mem_thing.a#old").unwrap().action,
            Action::Delete,
            "{p:?}"
        );
        assert!(f.apply(&ApplyOptions::default()).await.ok());
        let objects: Vec<String> = f.world.objects.lock().unwrap().keys().cloned().collect();
        assert_eq!(objects, ["a2-id"], "new kept, old deleted, no duplicate");
        assert!(!f.plan().await.has_changes());

        // Uninterrupted: create first, delete after.
        f.stack
            .resources
            .get_mut("mem_thing.a")
            .unwrap()
            .attrs
            .insert("name".into(), Expr::Lit(json!("a3-id")));
        f.world.calls.lock().unwrap().clear();
        assert!(f.apply(&ApplyOptions::default()).await.ok());
        let calls: Vec<String> = f
            .world
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| !c.starts_with("read"))
            .cloned()
            .collect();
        assert_eq!(calls, ["create a3-id", "delete a2-id"]);
    }

    #[tokio::test]
    async fn an_interrupt_starts_nothing_new() {
        let f = fixture(&["a", "b"]);
        let opts = ApplyOptions {
            concurrency: 1,
            ..Default::default()
        };
        opts.cancel.store(true, Ordering::SeqCst);
        let out = f.apply(&opts).await;
        assert!(out.interrupted);
        assert!(out.completed.is_empty());
        assert_eq!(out.skipped.len(), 2);
        assert!(f.world.objects.lock().unwrap().is_empty());
    }
}
