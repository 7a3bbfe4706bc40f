//! A `stackwright` process that a test can interrupt: spawned with the same
//! environment as [`TestEnv::cmd`], its output captured in files (so a
//! killed process loses nothing it printed), killed with SIGKILL or SIGINT.

use std::ffi::OsStr;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{CMD_TIMEOUT, Run, TestEnv};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A running `stackwright` command.
pub struct Proc {
    child: Child,
    label: String,
    cwd: PathBuf,
    out: PathBuf,
    err: PathBuf,
    status: Option<ExitStatus>,
}

/// `stackwright ARGS` with the env's variables plus `extra`, stdin empty,
/// stdout/stderr to files under the env's HOME (outside the work dir).
pub fn spawn<S: AsRef<OsStr>>(env: &TestEnv, args: &[S], extra: &[(&str, &str)]) -> Proc {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let out = env.home().join(format!("proc-{n}.stdout"));
    let err = env.home().join(format!("proc-{n}.stderr"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stackwright"));
    cmd.args(args).current_dir(env.dir());
    // The same scrubbing as `TestEnv::cmd`.
    for (key, _) in std::env::vars_os() {
        if super::is_scrubbed_var(&key.to_string_lossy()) {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.envs());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out).expect("create stdout file"))
        .stderr(fs::File::create(&err).expect("create stderr file"));
    let child = cmd.spawn().expect("spawn stackwright");
    let label = format!(
        "stackwright {}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    Proc {
        child,
        label,
        cwd: env.dir().to_path_buf(),
        out,
        err,
        status: None,
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait().expect("try_wait") {
            Some(s) => {
                self.status = Some(s);
                false
            }
            None => true,
        }
    }

    /// SIGKILL (no-op if it already exited); reaps it.
    pub fn kill(&mut self) {
        if self.running() {
            let _ = self.child.kill();
        }
        let _ = self.wait_status(CMD_TIMEOUT);
    }

    /// Send SIGINT with `kill -INT PID` (does not wait).
    pub fn interrupt(&mut self) {
        if self.running() {
            let status = Command::new("kill")
                .args(["-INT", &self.pid().to_string()])
                .status()
                .expect("run kill -INT");
            assert!(status.success(), "kill -INT {} failed", self.pid());
        }
    }

    /// Poll until `cond(stdout, stderr)` holds or the process exits; true when
    /// it held while the process was still running.
    pub fn wait_for(&mut self, timeout: Duration, cond: impl Fn(&str, &str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let running = self.running();
            if cond(&self.stdout(), &self.stderr()) {
                return running;
            }
            if !running || Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_status(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while self.running() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                self.status = self.child.wait().ok();
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.status
    }

    /// Wait (killing it after `timeout`) and wrap the result in a [`Run`].
    pub fn wait(mut self, timeout: Duration) -> Run {
        let status = self.wait_status(timeout).expect("exit status");
        Run::new(
            self.label.clone(),
            self.cwd.clone(),
            Output {
                status,
                stdout: self.stdout().into_bytes(),
                stderr: self.stderr().into_bytes(),
            },
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
