//! The local-file backend: `state/<stack>/<env>.json` next to the code, its write-ahead
//! journal beside it, and a lock file held with an OS lock (`flock`) for the whole run, so
//! two runs on one machine never write together and a crashed run never blocks the next:
//! the OS drops the lock when the process dies (as Terraform's local backend does).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{Backend, LockError, LockInfo, SaveError, State, Stored, Unlocked};
use super::{history, journal};

pub struct LocalBackend {
    pub path: PathBuf,
}

/// Releases a remote lock: run once, when the guard drops.
pub type Release = Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>;

/// Holds a lock until dropped: the OS lock of a local state (which the OS also drops when
/// the process dies), or a remote lock whose [`Release`] runs on drop.
pub struct LockGuard {
    file: Option<(File, PathBuf)>,
    release: Option<Release>,
}

impl LockGuard {
    pub fn none() -> Self {
        LockGuard {
            file: None,
            release: None,
        }
    }

    /// A guard that runs `release` when dropped.
    pub fn remote(release: Release) -> Self {
        LockGuard {
            file: None,
            release: Some(release),
        }
    }
}

/// Runs `fut` to completion from sync code inside the multi-threaded runtime (Drop, the
/// journal's sync appends): `block_in_place` hands this worker's tasks to another, so the
/// SDK's connections keep being driven. A current-thread runtime must not block: the future
/// is handed back (`Err`). Outside any runtime, a small one is made for it.
pub fn block_on_here<F>(fut: F) -> Result<F::Output, F>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            Ok(tokio::task::block_in_place(|| h.block_on(fut)))
        }
        Ok(_) => Err(fut),
        Err(_) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => Ok(rt.block_on(fut)),
            Err(_) => Err(fut),
        },
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(release) = self.release.take()
            && let Err(fut) = block_on_here(release())
            && let Ok(h) = tokio::runtime::Handle::try_current()
        {
            // Best effort: finishes only if the runtime runs on (tests on one thread).
            h.spawn(fut);
        }
        if let Some((f, path)) = &mut self.file {
            // Removed while still held: a waiter that opened this file notices (its inode is
            // no longer the path's) and retries on a fresh file. A killed run leaves the file
            // behind, unlocked, which blocks no one.
            let _ = fs::remove_file(path);
            let _ = f.unlock();
        }
    }
}

impl LocalBackend {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalBackend { path: path.into() }
    }

    /// `<state>.journal`, beside the state file.
    pub fn journal_path(&self) -> PathBuf {
        journal::path_for(&self.path)
    }

    fn lock_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }

    fn read_file(&self) -> anyhow::Result<Option<State>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read state file {}", self.path.display()));
            }
        };
        State::from_json(&text).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "state file {} is unusable: {e}\nnothing was changed; restore it from git (git checkout -- {}) or fix it by hand",
                self.path.display(),
                self.path.display()
            )
        })
    }
}

#[async_trait::async_trait]
impl Backend for LocalBackend {
    async fn load(&self) -> anyhow::Result<Option<State>> {
        let on_disk = self.read_file()?;
        let jpath = self.journal_path();
        let Some(j) = journal::read(&jpath)
            .with_context(|| format!("cannot read journal {}", jpath.display()))?
        else {
            return Ok(on_disk);
        };
        // A journal extends the state it began on; one whose base is gone was folded already.
        let mut state = match on_disk {
            Some(s) if s.lineage == j.lineage && s.serial == j.base_serial => s,
            None if j.base_serial == 0 => j.empty_state(),
            other => return Ok(other),
        };
        journal::replay(&mut state, &j.entries);
        tracing::info!(
            entries = j.entries.len(),
            pending = state.pending.len(),
            "replayed the journal of an interrupted run"
        );
        Ok(Some(state))
    }

    async fn save(
        &self,
        state: &mut State,
        expected: Option<u64>,
        draft: &history::Draft,
    ) -> Result<u64, SaveError> {
        let current = self.read_file()?;
        let found = current.as_ref().map(|s| s.serial);
        let same_lineage = current.as_ref().is_none_or(|c| c.lineage == state.lineage);
        if found != expected || !same_lineage {
            return Err(SaveError::Conflict {
                state: self.describe(),
                expected,
                found,
            });
        }
        // The only place serial and tool_version change.
        state.serial = expected.unwrap_or(0) + 1;
        state.tool_version = env!("CARGO_PKG_VERSION").to_owned();
        let hpath = history::path_for(&self.path);
        history::prepare(&hpath, draft, current.as_ref(), state)
            .and_then(|line| history::append(&hpath, &line))
            .with_context(|| format!("cannot append to the history {}", hpath.display()))?;
        write_atomic(&self.path, state.to_json().as_bytes())
            .with_context(|| format!("cannot write state file {}", self.path.display()))?;
        // Folded in now (its base serial no longer matches, so it would be ignored anyway).
        match fs::remove_file(self.journal_path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(error = %e, "cannot remove the folded journal");
            }
            _ => {}
        }
        tracing::debug!(serial = state.serial, "state saved");
        Ok(state.serial)
    }

    async fn audit(&self) -> anyhow::Result<history::Report> {
        let state = self.read_file()?;
        let hpath = history::path_for(&self.path);
        history::verify(&hpath, state.as_ref())
            .with_context(|| format!("cannot read the history {}", hpath.display()))
    }

    async fn lock(&self, operation: &str, timeout: Duration) -> Result<LockGuard, LockError> {
        let path = self.lock_path();
        let io = |source| LockError::Io {
            state: self.describe(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io)?;
        }
        let start = Instant::now();
        let mut file = loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            match file.try_lock() {
                // Still the file at `path` (not one a releasing holder just removed)?
                Ok(()) if same_file(&file, &path) => break file,
                Ok(()) => continue,
                Err(std::fs::TryLockError::WouldBlock) => {
                    if start.elapsed() >= timeout {
                        let mut text = String::new();
                        let _ = File::open(&path).and_then(|mut f| f.read_to_string(&mut text));
                        return Err(LockError::Locked {
                            state: self.describe(),
                            holder: serde_json::from_str(text.trim()).ok(),
                            help: "wait for that run to finish, or pass --lock-timeout 5m to wait for it; a run that crashed never holds the lock".into(),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        };
        // The details only feed another run's message; the OS lock is what excludes.
        let info = LockInfo::new(operation);
        let text = serde_json::to_string(&info).expect("lock info json");
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.write_all(b"\n").map_err(io)?;
        let _ = file.sync_data();
        Ok(LockGuard {
            file: Some((file, path)),
            release: None,
        })
    }

    async fn force_unlock(&self, _id: &str) -> anyhow::Result<Unlocked> {
        Ok(Unlocked::OsManaged)
    }

    fn open_journal(&self, base: &State) -> std::io::Result<journal::Journal> {
        journal::Journal::create(&self.journal_path(), base)
    }

    async fn has_journal(&self) -> anyhow::Result<bool> {
        Ok(self.journal_path().exists())
    }

    fn journal_location(&self) -> String {
        self.journal_path().display().to_string()
    }

    async fn read_stored(&self) -> anyhow::Result<Option<Stored>> {
        let state = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read state file {}", self.path.display()));
            }
        };
        let hpath = history::path_for(&self.path);
        let history = match fs::read(&hpath) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", hpath.display()));
            }
        };
        Ok(Some(Stored { state, history }))
    }

    async fn write_stored(&self, stored: &Stored) -> anyhow::Result<()> {
        // The history first, as in `save`: a kill in between leaves a record whose state was
        // not written, which `audit` shows as interrupted.
        let hpath = history::path_for(&self.path);
        write_atomic(&hpath, &stored.history)
            .with_context(|| format!("cannot write {}", hpath.display()))?;
        write_atomic(&self.path, &stored.state)
            .with_context(|| format!("cannot write state file {}", self.path.display()))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn descriptor(&self) -> super::BackendRef {
        super::BackendRef::Local {
            path: self.path.display().to_string(),
        }
    }
}

fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Temp file in the same directory, fsync, rename over the target, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn save_load_and_an_os_lock_that_excludes_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("s/dev.json"));
        assert!(b.load().await.unwrap().is_none());
        let mut s = State::new("s", Some("dev"));
        assert_eq!(
            b.save(&mut s, None, &history::Draft::new("test"))
                .await
                .unwrap(),
            1
        );
        assert_eq!(b.load().await.unwrap().unwrap(), s);
        // A writer that expected another serial loses, and nothing is overwritten.
        let mut other = s.clone();
        let err = b
            .save(&mut other, Some(7), &history::Draft::new("test"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, SaveError::Conflict { found: Some(1), .. }),
            "{err}"
        );
        let g = b.lock("apply", Duration::ZERO).await.unwrap();
        let err = b
            .lock("apply", Duration::ZERO)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("locked by apply (pid"), "{err}");
        drop(g);
        b.lock("apply", Duration::ZERO).await.unwrap();
        // No temp file left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("s"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.iter().all(|n| !n.to_string_lossy().contains("tmp")),
            "{names:?}"
        );
    }

    #[tokio::test]
    async fn a_crashed_runs_journal_is_replayed_then_folded() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("x.json"));
        let state = State::new("x", None);
        let j = super::super::Journal::create(&b.journal_path(), &state).unwrap();
        j.append(&super::super::Entry::Records {
            records: [("k".to_owned(), serde_json::json!(1))].into(),
        })
        .unwrap();
        drop(j);
        let mut loaded = b.load().await.unwrap().expect("journal-only state");
        assert_eq!(loaded.lineage, state.lineage);
        assert_eq!(loaded.records["k"], 1);
        b.save(&mut loaded, None, &history::Draft::new("test"))
            .await
            .unwrap();
        assert!(!b.journal_path().exists());
        assert_eq!(b.load().await.unwrap().unwrap(), loaded);
    }

    #[tokio::test]
    async fn corrupt_state_is_an_error_that_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        fs::write(&p, "{ not json").unwrap();
        let err = LocalBackend::new(&p).load().await.unwrap_err().to_string();
        assert!(err.contains("x.json") && err.contains("unusable"), "{err}");
    }
}
