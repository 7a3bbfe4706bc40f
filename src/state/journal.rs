//! The write-ahead journal: one fsync'd JSON line per event of an apply, beside the state
//! file (`<state>.journal`).
//!
//! Before a create or delete call the executor records an [`Intent`]; the id is recorded as
//! soon as AWS returns it (before any wait); the outcome (stored or removed) closes it. The
//! state file itself is written once, when the run ends, by folding the journal into it —
//! and, after a crash, on the next load. Appending a line costs the same whatever the size
//! of the state, which is what lets an apply of thousands of resources stay cheap. An
//! intent still open after the fold is kept in [`State::pending`] until the next plan
//! resolves it against AWS (adoption, see `refresh`).
//!
//! Where the lines go is the backend's choice ([`Sink`]): a local file for the local
//! backend, one object per line beside the state for S3 (see `s3.rs`).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Intent, ResourceState, State};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Entry {
    /// First line: which state this journal extends. A journal whose base is not the state
    /// on disk was already folded (a crash between the fold and the removal) and is ignored.
    Begin {
        lineage: String,
        base_serial: u64,
        stack: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<String>,
    },
    /// About to call AWS for `address`.
    Intent { address: String, intent: Intent },
    /// AWS returned the id of a resource being created (before any wait for it).
    Created { address: String, id: String },
    /// The call (or its wait) failed; the intent stays open for the next plan to resolve.
    Failed { address: String, error: String },
    /// Outcome: the resource is in state as given.
    Stored {
        address: String,
        resource: ResourceState,
    },
    /// Outcome: the resource is gone from AWS and from state.
    Removed { address: String },
    /// An open intent was resolved with nothing to store (the create never happened).
    Resolved { address: String },
    /// Per-stack records (operation checkpoints); a `null` value removes the key.
    Records { records: BTreeMap<String, Value> },
    /// The stack's outputs as this run computed them: replaces the previous set.
    Outputs {
        outputs: BTreeMap<String, super::OutputValue>,
    },
    /// A `[moved]` rename: the resource at `from` is now at `to` (see [`super::moved`]).
    Moved { from: String, to: String },
}

/// Applies journal entries to a state, in order. Idempotent for a given base.
pub fn replay(state: &mut State, entries: &[Entry]) {
    for e in entries {
        match e {
            Entry::Begin { .. } => {}
            Entry::Intent { address, intent } => {
                state.pending.insert(address.clone(), intent.clone());
            }
            Entry::Created { address, id } => {
                if let Some(i) = state.pending.get_mut(address) {
                    i.id = Some(id.clone());
                }
            }
            Entry::Failed { address, error } => {
                if let Some(i) = state.pending.get_mut(address) {
                    i.error = Some(error.clone());
                }
            }
            Entry::Stored { address, resource } => {
                state.pending.remove(address);
                state.resources.insert(address.clone(), resource.clone());
            }
            Entry::Removed { address } => {
                state.pending.remove(address);
                state.resources.remove(address);
            }
            Entry::Resolved { address } => {
                state.pending.remove(address);
            }
            Entry::Outputs { outputs } => state.outputs = outputs.clone(),
            // Checked by the plan against this base; a replay over a state that already has
            // it (a second fold) finds nothing at `from` and leaves it as it is.
            Entry::Moved { from, to } => {
                if let Err(e) = super::moved(state, from, to) {
                    tracing::debug!(%from, %to, error = %e, "move not replayed");
                }
            }
            Entry::Records { records } => {
                for (k, v) in records {
                    if v.is_null() {
                        state.records.remove(k);
                    } else {
                        state.records.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
}

/// Where a journal's lines go. `write_line` returns once the line is durable.
pub trait Sink: Send {
    fn write_line(&mut self, line: &str) -> std::io::Result<()>;
    /// Names the journal in messages.
    fn location(&self) -> String;
}

struct FileSink {
    path: PathBuf,
    file: File,
}

impl Sink for FileSink {
    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()
    }
    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

/// An open journal being appended to by one run (which holds the state lock).
pub struct Journal {
    location: String,
    sink: Mutex<Box<dyn Sink>>,
}

impl Journal {
    /// Starts a fresh journal file on top of `state` (which must be what is on disk).
    pub fn create(path: &Path, state: &State) -> std::io::Result<Journal> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        Journal::start(
            Box::new(FileSink {
                path: path.to_owned(),
                file,
            }),
            state,
        )
    }

    /// Starts a fresh journal on top of `state` in `sink` (emptied by the caller).
    pub fn start(sink: Box<dyn Sink>, state: &State) -> std::io::Result<Journal> {
        let j = Journal {
            location: sink.location(),
            sink: Mutex::new(sink),
        };
        j.append(&Entry::Begin {
            lineage: state.lineage.clone(),
            base_serial: state.serial,
            stack: state.stack.clone(),
            env: state.env.clone(),
        })?;
        Ok(j)
    }

    /// Appends one line and waits until it is on disk.
    pub fn append(&self, entry: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
        line.push('\n');
        self.sink.lock().expect("journal lock").write_line(&line)
    }

    /// Names the journal in messages.
    pub fn location(&self) -> &str {
        &self.location
    }
}

/// A journal as read back: the state it extends and what happened since.
#[derive(Debug)]
pub struct Read {
    pub lineage: String,
    pub base_serial: u64,
    pub stack: String,
    pub env: Option<String>,
    pub entries: Vec<Entry>,
}

impl Read {
    /// A state for a journal whose run started with no state file at all.
    pub fn empty_state(&self) -> State {
        let mut s = State::new(&self.stack, self.env.as_deref());
        s.lineage = self.lineage.clone();
        s
    }
}

/// Reads a journal: its base and entries. A torn last line (a crash mid-write) is ignored;
/// `None` when there is no journal.
pub fn read(path: &Path) -> std::io::Result<Option<Read>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let lines = BufReader::new(file)
        .lines()
        .collect::<std::io::Result<Vec<String>>>()?;
    Ok(parse(&lines))
}

/// A journal from its lines, wherever they were stored (see [`read`]).
pub fn parse(lines: &[String]) -> Option<Read> {
    let mut base = None;
    let mut entries = Vec::new();
    for line in lines {
        let Ok(entry) = serde_json::from_str::<Entry>(line) else {
            // Only the last line can be torn; anything after it cannot exist.
            break;
        };
        match entry {
            Entry::Begin {
                lineage,
                base_serial,
                stack,
                env,
            } if base.is_none() => base = Some((lineage, base_serial, stack, env)),
            _ if base.is_none() => break,
            e => entries.push(e),
        }
    }
    base.map(|(lineage, base_serial, stack, env)| Read {
        lineage,
        base_serial,
        stack,
        env,
        entries,
    })
}

/// `<state>.journal`
pub fn path_for(state_path: &Path) -> PathBuf {
    let mut p = state_path.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::IntentOp;

    fn rs(id: &str) -> ResourceState {
        ResourceState {
            kind: "s3_bucket".into(),
            id: id.into(),
            attributes: Default::default(),
            sensitive_attributes: vec![],
            depends_on: vec![],
            prevent_destroy: false,
            private: None,
        }
    }

    #[test]
    fn replay_tracks_intents_ids_and_outcomes_and_ignores_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json.journal");
        let state = State::new("s", None);
        let j = Journal::create(&path, &state).unwrap();
        let intent = Intent {
            kind: "s3_bucket".into(),
            operation: IntentOp::Create,
            id: None,
            since: "2026-01-01T00:00:00Z".into(),
            error: None,
        };
        for e in [
            Entry::Intent {
                address: "s3_bucket.a".into(),
                intent: intent.clone(),
            },
            Entry::Intent {
                address: "s3_bucket.b".into(),
                intent,
            },
            Entry::Created {
                address: "s3_bucket.b".into(),
                id: "b-1".into(),
            },
            Entry::Stored {
                address: "s3_bucket.a".into(),
                resource: rs("a-1"),
            },
        ] {
            j.append(&e).unwrap();
        }
        drop(j);
        // A crash mid-write leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"event\":\"stored\",\"addr").unwrap();
        let r = read(&path).unwrap().unwrap();
        let entries = r.entries;
        assert_eq!(
            (r.lineage.as_str(), r.base_serial),
            (state.lineage.as_str(), 0)
        );
        let mut s = state.clone();
        replay(&mut s, &entries);
        assert_eq!(s.resources["s3_bucket.a"].id, "a-1");
        assert_eq!(s.pending["s3_bucket.b"].id.as_deref(), Some("b-1"));
        assert!(!s.pending.contains_key("s3_bucket.a"));
        // Replaying twice gives the same state.
        let mut again = s.clone();
        replay(&mut again, &entries);
        assert_eq!(again, s);
    }
}
