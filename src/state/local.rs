//! The local-file backend: `state/<stack>/<env>.json` next to the code, with a lock file
//! beside it so two runs on one machine never write together.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{Backend, State};

pub struct LocalBackend {
    pub path: PathBuf,
}

/// Removes the lock file when dropped.
pub struct LockGuard {
    path: Option<PathBuf>,
}

impl LockGuard {
    pub fn none() -> Self {
        LockGuard { path: None }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = fs::remove_file(p);
        }
    }
}

impl LocalBackend {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalBackend { path: path.into() }
    }

    fn lock_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }
}

impl Backend for LocalBackend {
    fn load(&self) -> anyhow::Result<Option<State>> {
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

    fn save(&self, state: &State) -> anyhow::Result<()> {
        write_atomic(&self.path, state.to_json().as_bytes())
            .with_context(|| format!("cannot write state file {}", self.path.display()))
    }

    fn lock(&self, operation: &str) -> anyhow::Result<LockGuard> {
        let path = self.lock_path();
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                let host = whoami::fallible::hostname().unwrap_or_default();
                writeln!(
                    f,
                    "{{\"operation\":\"{operation}\",\"pid\":{},\"host\":\"{host}\",\"user\":\"{}\",\"since\":\"{}\"}}",
                    std::process::id(),
                    whoami::username(),
                    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"),
                )?;
                Ok(LockGuard { path: Some(path) })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                bail!(
                    "state {} is locked by another run: {}\nwait for it to finish; if that run died, remove {}",
                    self.path.display(),
                    holder.trim(),
                    path.display()
                )
            }
            Err(e) => Err(e).with_context(|| format!("cannot create lock {}", path.display())),
        }
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
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

    #[test]
    fn save_load_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("s/dev.json"));
        assert!(b.load().unwrap().is_none());
        let s = State::new("s", Some("dev"));
        b.save(&s).unwrap();
        assert_eq!(b.load().unwrap().unwrap(), s);
        let g = b.lock("apply").unwrap();
        let err = b.lock("apply").err().unwrap().to_string();
        assert!(err.contains("locked by another run"), "{err}");
        drop(g);
        b.lock("apply").unwrap();
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

    #[test]
    fn corrupt_state_is_an_error_that_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        fs::write(&p, "{ not json").unwrap();
        let err = LocalBackend::new(&p).load().unwrap_err().to_string();
        assert!(err.contains("x.json") && err.contains("unusable"), "{err}");
    }
}
