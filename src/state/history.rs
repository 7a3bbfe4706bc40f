//! History: one append-only record per state write, beside the state file
//! (`state/webapp/dev.json` → `state/webapp/dev.history.jsonl`), for auditors.
//!
//! Each record holds who ran what (OS user and host, the caller's ARN, the git user and
//! commit of the stack's repository), the stack and plan digests, the serials, the addresses
//! and actions, snapshots and migrations — never a secret value, not even hashed. Records
//! form a hash chain: each holds the sha256 of the previous line, the digest of the state it
//! replaced and of the state it produced, and the state file names the hash of the record
//! that produced it. So editing, dropping or reordering any record, or editing the state
//! outside Stackwright, makes [`verify`] fail at that record. The chain is tamper-evident,
//! not tamper-proof: anyone can recompute sha256; committed to git (and signed commits),
//! rewriting it also rewrites the repository's history.
//!
//! The record is written (and fsynced) before the state file, so a kill between the two
//! leaves a record whose state was never written: [`verify`] shows it as interrupted, and
//! the next write continues from the state that was.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::State;

/// What the state file records of its history: how many records, and the hash of the
/// line of the record that produced this state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub records: u64,
    pub last: String,
}

/// One address touched by a command.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Touched {
    pub address: String,
    /// `create`, `update`, `replace`, `delete`, `import`, `forget`, `move`, `adopt`.
    pub action: String,
    /// `done`, `failed` or `skipped`.
    pub outcome: String,
}

/// What the command knows about its write; the backend adds time, actor, serials and hashes.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub command: String,
    pub stack_digest: Option<String>,
    pub plan_digest: Option<String>,
    pub changes: Vec<Touched>,
    pub migrations: Vec<String>,
    pub snapshots: Vec<String>,
    pub note: Option<String>,
    /// Why the run went ahead outside the environment's deploy windows
    /// (`--override-window --reason`).
    pub override_reason: Option<String>,
    /// The directory of the stack file: git user and commit are read there.
    pub stack_dir: Option<PathBuf>,
    pub caller_arn: Option<String>,
}

impl Draft {
    pub fn new(command: &str) -> Self {
        Draft {
            command: command.to_owned(),
            ..Draft::default()
        }
    }
    pub fn touched(mut self, address: &str, action: &str, outcome: &str) -> Self {
        self.changes.push(Touched {
            address: address.to_owned(),
            action: action.to_owned(),
            outcome: outcome.to_owned(),
        });
        self
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub user: String,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_user: Option<String>,
    /// The stack repository's HEAD, with `+dirty` when the stack file has uncommitted edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub time: String,
    pub actor: Actor,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_digest: Option<String>,
    pub lineage: String,
    pub serial_before: Option<u64>,
    pub serial_after: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Touched>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `--override-window --reason`: the run was outside the deploy windows. Absent from
    /// older records (and from every other run), which therefore hash as they always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_reason: Option<String>,
    /// sha256 of the previous record's line (`None` for the first).
    pub prev: Option<String>,
    /// [`state_digest`] of the state this write replaced (`None`: there was none).
    pub state_before: Option<String>,
    /// [`state_digest`] of the state this write produced.
    pub state_after: String,
}

/// Where the history of a state file lives.
pub fn path_for(state_path: &Path) -> PathBuf {
    let name = state_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".json").unwrap_or(&name);
    state_path.with_file_name(format!("{stem}.history.jsonl"))
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The digest of a state as a record holds it: its file bytes without the history head
/// (which names the record, so it cannot be inside what the record hashes).
pub fn state_digest(state: &State) -> String {
    let mut s = state.clone();
    s.history = None;
    sha256(s.to_json().as_bytes())
}

fn read_lines(path: &Path) -> std::io::Result<Vec<String>> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(lines_of(&t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The records of a history's text, wherever it is stored. An unterminated last line is a
/// torn append (see `drop_torn_tail`): not a record.
pub fn lines_of(text: &str) -> Vec<String> {
    text.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .map(str::to_owned)
        .collect()
}

fn actor(draft: &Draft) -> Actor {
    let git = |args: &[&str]| -> Option<String> {
        let dir = draft.stack_dir.as_deref()?;
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !s.is_empty()).then_some(s)
    };
    let git_user = match (
        git(&["config", "user.name"]),
        git(&["config", "user.email"]),
    ) {
        (Some(n), Some(e)) => Some(format!("{n} <{e}>")),
        (n, e) => n.or(e),
    };
    let git_commit = git(&["rev-parse", "HEAD"]).map(|c| {
        let dirty = git(&["status", "--porcelain", "--", "."]).is_some();
        if dirty { format!("{c}+dirty") } else { c }
    });
    Actor {
        user: whoami::username(),
        host: whoami::fallible::hostname().unwrap_or_default(),
        caller_arn: draft.caller_arn.clone(),
        git_user,
        git_commit,
    }
}

/// Builds the record of a write of `after` over `before` and sets `after.history` to name
/// it. Returns the line to [`append`] before the state file is written.
pub fn prepare(
    path: &Path,
    draft: &Draft,
    before: Option<&State>,
    after: &mut State,
) -> std::io::Result<String> {
    Ok(prepare_after(&read_lines(path)?, draft, before, after))
}

/// [`prepare`] for a history already read (`lines`: its records, as [`lines_of`] gives).
pub fn prepare_after(
    lines: &[String],
    draft: &Draft,
    before: Option<&State>,
    after: &mut State,
) -> String {
    let record = Record {
        seq: lines.len() as u64 + 1,
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        actor: actor(draft),
        command: draft.command.clone(),
        stack_digest: draft.stack_digest.clone(),
        plan_digest: draft.plan_digest.clone(),
        lineage: after.lineage.clone(),
        serial_before: before.map(|b| b.serial),
        serial_after: after.serial,
        changes: draft.changes.clone(),
        migrations: draft.migrations.clone(),
        snapshots: draft.snapshots.clone(),
        note: draft.note.clone(),
        override_reason: draft.override_reason.clone(),
        prev: lines.last().map(|l| sha256(l.as_bytes())),
        state_before: before.map(state_digest),
        state_after: state_digest(after),
    };
    let line = serde_json::to_string(&record).expect("record json");
    after.history = Some(Head {
        records: record.seq,
        last: sha256(line.as_bytes()),
    });
    line
}

/// Appends one line and fsyncs it: the record is durable before the state it describes.
pub fn append(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    drop_torn_tail(&f)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_all()
}

/// A kill in the middle of an append leaves a line without its newline: that record never
/// became durable (nor did its state, written only after the fsync), so it is cut off.
fn drop_torn_tail(f: &fs::File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    if f.metadata()?.len() == 0 {
        return Ok(());
    }
    let mut r = f;
    let mut text = Vec::new();
    r.seek(SeekFrom::Start(0))?;
    r.read_to_end(&mut text)?;
    if text.last() == Some(&b'\n') {
        return Ok(());
    }
    let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    f.set_len(keep as u64)
}

/// A record as `audit` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Checked {
    #[serde(flatten)]
    pub record: Record,
    /// The record was written but the state it describes was not (a kill between the two).
    pub interrupted: bool,
}

/// The first record that does not verify, and why.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Broken {
    /// 1-based record number (the line in the history file); 0 for the state file itself.
    pub record: u64,
    pub why: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub records: Vec<Checked>,
    pub broken: Option<Broken>,
}

/// Verifies the chain and that `state` (the state file as stored, if any) is what its last
/// completed record produced.
pub fn verify(path: &Path, state: Option<&State>) -> std::io::Result<Report> {
    Ok(verify_lines(&read_lines(path)?, state))
}

/// [`verify`] for a history already read (`lines`: its records, as [`lines_of`] gives).
pub fn verify_lines(lines: &[String], state: Option<&State>) -> Report {
    let mut records: Vec<Checked> = Vec::new();
    let fail = |records: Vec<Checked>, record: u64, why: String| Report {
        records,
        broken: Some(Broken { record, why }),
    };
    // The record whose state the next write must start from.
    let mut current: Option<usize> = None;
    for (i, line) in lines.iter().enumerate() {
        let n = i as u64 + 1;
        let r: Record = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(e) => return fail(records, n, format!("not a history record ({e})")),
        };
        if r.seq != n {
            return fail(
                records,
                n,
                format!(
                    "numbered {} in line {n}: records were removed or reordered",
                    r.seq
                ),
            );
        }
        let prev = i.checked_sub(1).map(|p| sha256(lines[p].as_bytes()));
        if r.prev != prev {
            // The previous line no longer hashes to what this record holds: it was edited.
            let edited = n - 1;
            return fail(
                records,
                edited.max(1),
                if edited == 0 {
                    "the first record names a predecessor: records before it were removed".into()
                } else {
                    format!(
                        "record {edited} was changed after it was written (record {n} holds a different hash of it)"
                    )
                },
            );
        }
        if let Some(c) = current
            && r.state_before.as_ref() != Some(&records[c].record.state_after)
        {
            // Either record `c` never reached the state file (a kill between the two
            // writes), so this one starts from the state `c` started from, or the state
            // was edited in between.
            if r.state_before == records[c].record.state_before {
                records[c].interrupted = true;
                current = records[..c].iter().rposition(|x| !x.interrupted);
            } else {
                return fail(
                    records,
                    n,
                    format!(
                        "the state this record started from is not the one record {} produced: the state was changed outside Stackwright in between",
                        c + 1
                    ),
                );
            }
        }
        if let Some((seq, after)) = current.map(|c| (c + 1, records[c].record.serial_after))
            && r.serial_before != Some(after)
        {
            let before = r.serial_before.map_or("none".to_owned(), |s| s.to_string());
            return fail(
                records,
                n,
                format!("serial {before} before this record, but record {seq} left serial {after}"),
            );
        }
        records.push(Checked {
            record: r,
            interrupted: false,
        });
        current = Some(i);
    }
    // The state file must be what the last completed record produced, and name it.
    let Some(state) = state else {
        return match records.last() {
            // The first write was killed between its record and the state file.
            Some(l) if records.len() == 1 && l.record.state_before.is_none() => {
                records[0].interrupted = true;
                Report {
                    records,
                    broken: None,
                }
            }
            Some(l) => {
                let n = l.record.seq;
                fail(
                    records,
                    n,
                    format!("the state file is missing, but record {n} wrote it"),
                )
            }
            None => Report {
                records,
                broken: None,
            },
        };
    };
    let Some(last) = records.len().checked_sub(1) else {
        return match &state.history {
            Some(h) => fail(
                records,
                h.records,
                format!(
                    "the state names {} history records, but the history is empty or missing",
                    h.records
                ),
            ),
            None => Report {
                records,
                broken: None,
            },
        };
    };
    let digest = state_digest(state);
    let mut produced = Some(last);
    if records[last].record.state_after != digest {
        match records[last].record.state_before.as_ref() {
            Some(b) if *b == digest => {
                records[last].interrupted = true;
                produced = records[..last].iter().rposition(|x| !x.interrupted);
            }
            _ => {
                let n = records[last].record.seq;
                return fail(
                    records,
                    n,
                    format!(
                        "the state file is not the one record {n} produced: it was changed outside Stackwright"
                    ),
                );
            }
        }
    }
    let want = produced.map(|p| Head {
        records: records[p].record.seq,
        last: sha256(lines[p].as_bytes()),
    });
    if state.history != want {
        let n = produced.map_or(1, |p| records[p].record.seq);
        return fail(
            records,
            n,
            format!(
                "record {n} was changed after it was written (the state file holds a different hash of it)"
            ),
        );
    }
    Report {
        records,
        broken: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, state: &mut State, before: Option<&State>, cmd: &str) {
        let path = path_for(&dir.join("s.json"));
        state.serial = before.map_or(1, |b| b.serial + 1);
        let line = prepare(&path, &Draft::new(cmd), before, state).unwrap();
        append(&path, &line).unwrap();
    }

    fn three(dir: &Path) -> State {
        let mut s1 = State::new("w", Some("dev"));
        write(dir, &mut s1, None, "apply");
        let mut s2 = s1.clone();
        s2.records.insert("k".into(), "v".into());
        write(dir, &mut s2, Some(&s1), "apply");
        let mut s3 = s2.clone();
        s3.records.insert("k".into(), "w".into());
        write(dir, &mut s3, Some(&s2), "state rm");
        s3
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let d = tempfile::tempdir().unwrap();
        let s = three(d.path());
        let path = path_for(&d.path().join("s.json"));
        let r = verify(&path, Some(&s)).unwrap();
        assert_eq!(r.broken, None);
        assert_eq!(r.records.len(), 3);
        assert_eq!(r.records[2].record.command, "state rm");
        assert_eq!(r.records[2].record.serial_before, Some(2));
    }

    #[test]
    fn any_edited_byte_names_its_record() {
        let d = tempfile::tempdir().unwrap();
        let s = three(d.path());
        let path = path_for(&d.path().join("s.json"));
        let orig = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = orig.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let edited = line
                .replacen("\"apply\"", "\"applY\"", 1)
                .replacen("state rm", "state rM", 1);
            assert_ne!(&edited, line);
            let mut all = lines.clone();
            all[i] = &edited;
            fs::write(&path, all.join("\n") + "\n").unwrap();
            let r = verify(&path, Some(&s)).unwrap();
            assert_eq!(
                r.broken.as_ref().map(|b| b.record),
                Some(i as u64 + 1),
                "{r:?}"
            );
        }
        // A dropped last record, and an edited state.
        fs::write(&path, lines[..2].join("\n") + "\n").unwrap();
        assert!(verify(&path, Some(&s)).unwrap().broken.is_some());
        fs::write(&path, &orig).unwrap();
        let mut t = s.clone();
        t.records.insert("k".into(), "x".into());
        let b = verify(&path, Some(&t)).unwrap().broken.unwrap();
        assert_eq!(b.record, 3);
        assert!(b.why.contains("changed outside Stackwright"), "{}", b.why);
    }

    #[test]
    fn a_first_write_killed_before_the_state_and_a_torn_append_are_not_tampering() {
        let d = tempfile::tempdir().unwrap();
        let path = path_for(&d.path().join("s.json"));
        let mut lost = State::new("w", Some("dev"));
        write(d.path(), &mut lost, None, "apply");
        // No state file was ever written.
        let r = verify(&path, None).unwrap();
        assert_eq!(r.broken, None, "{r:?}");
        assert!(r.records[0].interrupted);
        // The next run starts from no state again, after a torn half-line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":2,\"ti").unwrap();
        let mut s = State::new("w", Some("dev"));
        write(d.path(), &mut s, None, "apply");
        let r = verify(&path, Some(&s)).unwrap();
        assert_eq!(r.broken, None, "{r:?}");
        assert_eq!(r.records.len(), 2);
        assert!(r.records[0].interrupted && !r.records[1].interrupted);
    }

    #[test]
    fn an_override_reason_is_hashed_and_older_records_without_it_still_verify() {
        let d = tempfile::tempdir().unwrap();
        // Records written before the field existed have no `override_reason` key.
        let s2 = three(d.path());
        let path = path_for(&d.path().join("s.json"));
        assert!(
            !fs::read_to_string(&path)
                .unwrap()
                .contains("override_reason")
        );
        let mut s3 = s2.clone();
        s3.serial += 1;
        s3.records.insert("k".into(), "x".into());
        let mut draft = Draft::new("apply");
        draft.override_reason = Some("hotfix INC-42".into());
        let line = prepare(&path, &draft, Some(&s2), &mut s3).unwrap();
        append(&path, &line).unwrap();
        let r = verify(&path, Some(&s3)).unwrap();
        assert_eq!(r.broken, None, "{r:?}");
        assert_eq!(
            r.records[3].record.override_reason.as_deref(),
            Some("hotfix INC-42")
        );
        // The reason is part of what the chain protects.
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace("INC-42", "INC-43")).unwrap();
        assert_eq!(verify(&path, Some(&s3)).unwrap().broken.unwrap().record, 4);
    }

    #[test]
    fn a_record_whose_state_was_never_written_is_shown_as_interrupted() {
        let d = tempfile::tempdir().unwrap();
        let s = three(d.path());
        let path = path_for(&d.path().join("s.json"));
        // A run wrote its record, then was killed before the state file.
        let mut lost = s.clone();
        lost.records.insert("k".into(), "lost".into());
        write(d.path(), &mut lost, Some(&s), "apply");
        let r = verify(&path, Some(&s)).unwrap();
        assert_eq!(r.broken, None, "{r:?}");
        assert!(r.records[3].interrupted);
        // The next write starts from the state that was written.
        let mut next = s.clone();
        next.records.insert("k".into(), "next".into());
        write(d.path(), &mut next, Some(&s), "apply");
        let r = verify(&path, Some(&next)).unwrap();
        assert_eq!(r.broken, None, "{r:?}");
        assert!(r.records[3].interrupted && !r.records[4].interrupted);
    }
}
