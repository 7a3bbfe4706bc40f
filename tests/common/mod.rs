//! Test support for Stackwright's integration tests. See tests/README.md.
//!
//! - [`Moto`]: a real `moto_server` (patched, see tests/harness/) per test.
//! - [`TestEnv`]: a temp work dir + its own Moto + the `stackwright` binary
//!   with a clean AWS environment; [`Run`] prints everything on failure.
//! - [`Postgres`]: a throwaway PostgreSQL server (run as an unprivileged
//!   user when the tests run as root).
#![allow(dead_code)]

pub mod process;
pub mod proxy;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Region every test uses.
pub const REGION: &str = "us-east-1";
/// The account id moto answers with.
pub const ACCOUNT_ID: &str = "123456789012";
/// Static credentials moto accepts (it accepts any).
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";

/// How long moto may take to answer after spawning.
const MOTO_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Default timeout for one `stackwright` invocation.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(120);
/// OS user that runs postgres when the tests run as root (scripts/setup.sh
/// creates it). Overridable with STACKWRIGHT_PG_USER.
const DEFAULT_PG_USER: &str = "swtest";

/// The repository root (where Cargo.toml and .venv live).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A program installed in the harness venv, e.g. `venv_bin("alembic")`.
pub fn venv_bin(name: &str) -> PathBuf {
    repo_root().join(".venv").join("bin").join(name)
}

fn venv_python() -> PathBuf {
    let python = venv_bin("python");
    if !python.exists() {
        panic!(
            "{} is missing: run scripts/setup.sh first (it creates .venv with moto)",
            python.display()
        );
    }
    python
}

/// A loopback port that was free a moment ago.
/// A stack `name` in us-east-1 with a PostgreSQL instance `rds_instance.db` (identifier
/// `NAME-db`) in the default VPC's subnets, its subnet group and parameter group, and no
/// final snapshot; the master password comes from `password_env`.
pub fn rds_stack(name: &str, password_env: &str) -> String {
    format!(
        r#"[stack]
name = "{name}"
region = "us-east-1"

[data.vpc.main]
default = true

[data.subnets.all]
vpc = "${{data.vpc.main.id}}"

[rds_subnet_group.db]
name = "{name}-db"
subnet_ids = "${{data.subnets.all.ids}}"

[rds_parameter_group.db]
name = "{name}-db-pg"
family = "postgres16"
parameters = {{ log_min_duration_statement = "500" }}

[rds_instance.db]
identifier = "{name}-db"
engine = "postgres"
engine_version = "16.3"
instance_class = "db.t4g.micro"
allocated_storage = 20
db_subnet_group = "${{rds_subnet_group.db.name}}"
parameter_group = "${{rds_parameter_group.db.name}}"
master_username = "{name}"
master_password = {{ from_env = "{password_env}" }}
final_snapshot = false

"#
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Minimal HTTP/1.0 GET on loopback; returns the status code.
fn http_get_status(port: u16, path: &str) -> std::io::Result<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        let n = stream.read(&mut head[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let line = String::from_utf8_lossy(&head[..len]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {line:?}")))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn new_tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir")
}

// ---------------------------------------------------------------------------
// Moto
// ---------------------------------------------------------------------------

/// A running `moto_server` (tests/harness/moto_launcher.py), killed on drop.
pub struct Moto {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Moto {
    /// Spawn a patched moto server on a free loopback port and wait until it
    /// answers HTTP. Panics (with moto's log) if it does not come up.
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// [`Moto::start`] with extra variables in the server's environment: moto's own
    /// switches and the harness hooks (`MOTO_ECS_SERVICE_FAILED_TASKS`,
    /// `STACKWRIGHT_MOTO_TASK_EXIT_CODE`; tests/README.md), read at each call.
    pub fn start_with(env: &[(&str, &str)]) -> Moto {
        let python = venv_python();
        let dir = new_tempdir("stackwright-moto-");
        let port_file = dir.path().join("port");
        let log = fs::File::create(dir.path().join("moto.log")).expect("create moto.log");
        let mut cmd = StdCommand::new(python);
        cmd.arg(repo_root().join("tests/harness/moto_launcher.py"))
            .args(["--host", "127.0.0.1", "--port", "0", "--port-file"])
            .arg(&port_file)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(env.iter().copied());
        let child = cmd.spawn().expect("spawn tests/harness/moto_launcher.py");
        let mut moto = Moto {
            child,
            port: 0,
            dir,
        };
        moto.wait_ready(&port_file);
        moto
    }

    fn wait_ready(&mut self, port_file: &Path) {
        let deadline = Instant::now() + MOTO_START_TIMEOUT;
        let mut last_err = String::from("no port file yet");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "moto_launcher.py exited with {status} before it was ready; log:\n{}",
                    self.log()
                );
            }
            if self.port == 0
                && let Ok(text) = fs::read_to_string(port_file)
            {
                self.port = text.trim().parse().unwrap_or(0);
            }
            if self.port != 0 {
                match http_get_status(self.port, "/moto-api/") {
                    Ok(_) => return,
                    Err(e) => last_err = e.to_string(),
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "moto did not answer within {MOTO_START_TIMEOUT:?} ({last_err}); log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(40));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// moto's log so far (werkzeug request lines, tracebacks).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// Forget all state (POST /moto-api/reset).
    pub fn reset(&self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect(addr).expect("connect to moto");
        write!(
            stream,
            "POST /moto-api/reset HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        )
        .expect("write reset request");
        let mut resp = String::new();
        let _ = stream.read_to_string(&mut resp);
        assert!(
            resp.starts_with("HTTP/1.") && resp.contains(" 200 "),
            "{resp}"
        );
    }

    /// SDK config pointing at this moto with static test credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "stackwright-tests",
            ))
            .load()
            .await
    }

    /// S3 client (path-style addressing).
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk_config().await)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub async fn ssm(&self) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(&self.sdk_config().await)
    }

    pub async fn rds(&self) -> aws_sdk_rds::Client {
        aws_sdk_rds::Client::new(&self.sdk_config().await)
    }

    pub async fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config().await)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// TestEnv + Run
// ---------------------------------------------------------------------------

/// A per-test sandbox: `<tmp>/work` (the cwd of every command), `<tmp>/home`
/// (HOME, with no AWS config files) and a private Moto.
pub struct TestEnv {
    root: TempDir,
    work: PathBuf,
    home: PathBuf,
    moto: Moto,
    /// Started by [`TestEnv::proxy`]; from then on commands talk to moto through it.
    proxy: OnceLock<proxy::FaultProxy>,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv::with_moto_env(&[])
    }

    /// A sandbox whose moto server runs with `env` (see [`Moto::start_with`]).
    pub fn with_moto_env(env: &[(&str, &str)]) -> TestEnv {
        let root = new_tempdir("stackwright-test-");
        let work = root.path().join("work");
        let home = root.path().join("home");
        fs::create_dir_all(&work).expect("create work dir");
        fs::create_dir_all(&home).expect("create home dir");
        TestEnv {
            root,
            work,
            home,
            moto: Moto::start_with(env),
            proxy: OnceLock::new(),
        }
    }

    /// A [`proxy::FaultProxy`] in front of this env's moto; every command spawned after
    /// this call goes through it (the tests' own SDK read-backs still talk to moto).
    pub fn proxy(&self) -> &proxy::FaultProxy {
        self.proxy
            .get_or_init(|| proxy::FaultProxy::start(self.moto.port()))
    }

    pub fn moto(&self) -> &Moto {
        &self.moto
    }

    /// The work dir: cwd of every command, base of relative paths.
    pub fn dir(&self) -> &Path {
        &self.work
    }

    /// HOME of every command (outside the work dir).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Absolute path of `rel` inside the work dir.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.work.join(rel)
    }

    /// Write a file (creating parent dirs); returns its absolute path.
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent dirs");
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Read a file of the work dir as UTF-8; panics if missing.
    pub fn read(&self, rel: impl AsRef<Path>) -> String {
        let path = self.path(rel);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    pub fn exists(&self, rel: impl AsRef<Path>) -> bool {
        self.path(rel).exists()
    }

    /// Every file under the work dir, relative, `/`-separated, sorted.
    pub fn list_files_recursive(&self) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for entry in entries {
                let entry = entry.expect("read_dir entry");
                let path = entry.path();
                if entry.file_type().expect("file type").is_dir() {
                    walk(base, &path, out);
                } else {
                    let rel = path.strip_prefix(base).expect("under base");
                    let parts: Vec<_> = rel.iter().map(|p| p.to_string_lossy()).collect();
                    out.push(parts.join("/"));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.work, &self.work, &mut out);
        out.sort();
        out
    }

    /// Environment every command gets (besides the inherited non-AWS vars).
    pub fn envs(&self) -> Vec<(String, String)> {
        let aws = self.home.join(".aws");
        let mut path = OsString::from(repo_root().join(".venv").join("bin"));
        if let Some(old) = std::env::var_os("PATH") {
            path.push(":");
            path.push(old);
        }
        vec![
            (
                "AWS_ENDPOINT_URL".into(),
                self.proxy
                    .get()
                    .map_or_else(|| self.moto.endpoint(), |p| p.endpoint()),
            ),
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_ACCESS_KEY.into()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            (
                "AWS_CONFIG_FILE".into(),
                aws.join("config").to_string_lossy().into(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                aws.join("credentials").to_string_lossy().into(),
            ),
            ("HOME".into(), self.home.to_string_lossy().into()),
            (
                "XDG_CONFIG_HOME".into(),
                self.home.join(".config").to_string_lossy().into(),
            ),
            (
                "XDG_CACHE_HOME".into(),
                self.home.join(".cache").to_string_lossy().into(),
            ),
            ("NO_COLOR".into(), "1".into()),
            ("PATH".into(), path.to_string_lossy().into()),
        ]
    }

    /// `stackwright ARGS` in the work dir with the test environment, a
    /// [`CMD_TIMEOUT`] and empty stdin. Tweak it further as needed.
    pub fn cmd<I, S>(&self, args: I) -> assert_cmd::Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_stackwright"));
        cmd.args(args).current_dir(&self.work);
        for (key, _) in std::env::vars_os() {
            if is_scrubbed_var(&key.to_string_lossy()) {
                cmd.env_remove(key);
            }
        }
        cmd.envs(self.envs());
        cmd.timeout(CMD_TIMEOUT);
        cmd
    }

    /// Run `stackwright ARGS`; never asserts (see [`Run`]'s asserts).
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_with(args, |_| {})
    }

    /// Like [`TestEnv::run`], with `tweak` applied to the command first,
    /// e.g. `|c| { c.env("X", "1").write_stdin("yes\n"); }`.
    pub fn run_with<I, S>(&self, args: I, tweak: impl FnOnce(&mut assert_cmd::Command)) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut cmd = self.cmd(&args);
        tweak(&mut cmd);
        let output = cmd.output().expect("spawn stackwright");
        Run::new(
            format!("stackwright {}", shell_words(&args)),
            self.work.clone(),
            output,
        )
    }

    /// Run and assert exit code 0; returns the [`Run`] for more checks.
    #[track_caller]
    pub fn ok<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let run = self.run(args);
        run.assert_success();
        run
    }

    /// Run and assert a non-zero exit code.
    #[track_caller]
    pub fn fail<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let run = self.run(args);
        run.assert_failure();
        run
    }

    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        self.moto.sdk_config().await
    }
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        self.moto.s3().await
    }
    pub async fn ssm(&self) -> aws_sdk_ssm::Client {
        self.moto.ssm().await
    }
    pub async fn rds(&self) -> aws_sdk_rds::Client {
        self.moto.rds().await
    }
    pub async fn ec2(&self) -> aws_sdk_ec2::Client {
        self.moto.ec2().await
    }
}

impl TestEnv {
    /// [`scrub`] plus this env's own paths: the work dir becomes `[WORK]`, HOME `[HOME]`,
    /// moto's port `[PORT]` (and the fault proxy's, when one runs). For insta snapshots of
    /// CLI output.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text
            .replace(&self.work.to_string_lossy().into_owned(), "[WORK]")
            .replace(&self.home.to_string_lossy().into_owned(), "[HOME]")
            .replace(&self.root.path().to_string_lossy().into_owned(), "[TMP]");
        if let Some(p) = self.proxy.get() {
            text = text.replace(&p.endpoint(), "http://127.0.0.1:[PORT]");
        }
        scrub(&text.replace(&self.moto.endpoint(), "http://127.0.0.1:[PORT]"))
    }
}

/// Makes CLI output stable for snapshots, by plain token scanning (no regex crate): drops
/// log lines (those starting with an RFC 3339 time, e.g. the SDK's warnings);
/// UUIDs (state lineages) become `[UUID]`, UTC stamps `20261203T125000Z` and 14-digit
/// `20261203125000` become `[TIME]`, hex runs of 12+ characters with a letter (digests)
/// `[HEX]`, durations such as `0.1s`, `12ms` `[DURATION]`, `127.0.0.1:PORT` / `localhost:PORT`
/// `…:[PORT]`, and temp paths `/tmp/…` up to the next space or quote `[TMP]`.
pub fn scrub(text: &str) -> String {
    // Log lines (the SDK's tracing output starts with an RFC 3339 time) are not the CLI's
    // own output: the harness's absent AWS config files make the SDK warn on every run.
    let kept: Vec<&str> = text
        .split_inclusive('\n')
        .filter(|l| !is_log_line(l))
        .collect();
    let text = kept.concat();
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < chars.len() {
        let prev_is_word = i > 0 && word(chars[i - 1]);
        let rest: String = chars[i..chars.len().min(i + 40)].iter().collect();
        // Ports after a loopback host.
        let port = ["127.0.0.1:", "localhost:"].into_iter().find_map(|host| {
            let digits = chars[(i + host.len()).min(chars.len())..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            (rest.starts_with(host) && digits > 0).then_some((host, digits))
        });
        if let Some((host, digits)) = port {
            out.push_str(host);
            out.push_str("[PORT]");
            i += host.len() + digits;
            continue;
        }
        if chars[i..].starts_with(&['/', 't', 'm', 'p', '/']) && !prev_is_word {
            let len = chars[i..]
                .iter()
                .take_while(|c| !c.is_whitespace() && !"\"'`,;)".contains(**c))
                .count();
            out.push_str("[TMP]");
            i += len;
            continue;
        }
        if prev_is_word || !chars[i].is_ascii_alphanumeric() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // A token: the longest run of [0-9a-zA-Z.-] from here.
        let len = chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '-' || **c == '.')
            .count();
        let token: String = chars[i..i + len].iter().collect();
        let token = token.trim_end_matches(['.', '-']);
        let (replaced, used) = classify(token);
        if let Some(r) = replaced {
            out.push_str(r);
            i += used;
        } else {
            // Not special as a whole: copy up to the first separator, rescan from there.
            let n = chars[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count()
                .max(1);
            out.extend(&chars[i..i + n]);
            i += n;
        }
    }
    out
}

/// `2026-12-03T13:07:28.119770Z  WARN ...`
fn is_log_line(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
}

/// What a scrubbed token becomes, and how many characters of it are replaced.
fn classify(token: &str) -> (Option<&'static str>, usize) {
    let hex = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit());
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let parts: Vec<&str> = token.split('-').collect();
    if parts.len() >= 5 {
        let lens: Vec<usize> = parts[..5].iter().map(|p| p.len()).collect();
        if lens == [8, 4, 4, 4, 12] && parts[..5].iter().all(|p| hex(p)) {
            return (Some("[UUID]"), 36);
        }
    }
    let head = parts[0];
    if head.len() == 16
        && head.as_bytes()[8] == b'T'
        && head.ends_with('Z')
        && digits(&head[..8])
        && digits(&head[9..15])
    {
        return (Some("[TIME]"), 16);
    }
    if head.len() == 14 && digits(head) {
        return (Some("[TIME]"), 14);
    }
    if head.len() >= 12 && hex(head) && head.chars().any(|c| c.is_ascii_alphabetic()) {
        return (Some("[HEX]"), head.len());
    }
    // Durations: 0.1s, 3s, 250ms (the number may have one dot).
    let num = head.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &head[num.len()..];
    let dot_ok = num.matches('.').count() <= 1 && !num.starts_with('.') && !num.ends_with('.');
    if matches!(unit, "s" | "ms")
        && dot_ok
        && num.chars().all(|c| c.is_ascii_digit() || c == '.')
        && !num.is_empty()
    {
        // `head` is split at '-' only, so "0.1s" is whole here.
        return (Some("[DURATION]"), head.len());
    }
    (None, 0)
}

/// Variables of the test process that must not leak into commands.
fn is_scrubbed_var(key: &str) -> bool {
    key.starts_with("AWS_")
        || key.starts_with("STACKWRIGHT_")
        || (key.starts_with("PG") && key[2..].chars().all(|c| c.is_ascii_uppercase()))
        || matches!(
            key,
            "DATABASE_URL" | "CLICOLOR" | "CLICOLOR_FORCE" | "FORCE_COLOR" | "RUST_LOG"
        )
}

fn shell_words(args: &[OsString]) -> String {
    args.iter()
        .map(|a| {
            let s = a.to_string_lossy();
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                s.into_owned()
            } else {
                format!("'{}'", s.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The outcome of one command. `Display` shows command, cwd, exit code,
/// stdout and stderr; every `assert_*` panics with that report.
pub struct Run {
    command: String,
    cwd: PathBuf,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    pub fn new(command: String, cwd: PathBuf, output: Output) -> Run {
        Run {
            command,
            cwd,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Exit code; `None` if killed by a signal (e.g. the timeout).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    pub fn success(&self) -> bool {
        self.status.success()
    }
    pub fn stdout(&self) -> &str {
        &self.stdout
    }
    pub fn stderr(&self) -> &str {
        &self.stderr
    }
    pub fn status(&self) -> ExitStatus {
        self.status
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn stdout_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{self}"))
    }

    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        if !self.success() {
            panic!("command failed, expected success\n{self}");
        }
        self
    }

    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        if self.success() || self.code().is_none() {
            panic!("expected a non-zero exit code\n{self}");
        }
        self
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        if self.code() != Some(code) {
            panic!("expected exit code {code}\n{self}");
        }
        self
    }

    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        if !self.stdout.contains(needle) {
            panic!("stdout does not contain {needle:?}\n{self}");
        }
        self
    }

    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        if !self.stderr.contains(needle) {
            panic!("stderr does not contain {needle:?}\n{self}");
        }
        self
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = match self.code() {
            Some(code) => code.to_string(),
            None => format!("none ({}; timeout is {CMD_TIMEOUT:?})", self.status),
        };
        writeln!(f, "\n\n===== command =====\n{}", self.command)?;
        writeln!(f, "===== cwd =====\n{}", self.cwd.display())?;
        writeln!(f, "===== exit code =====\n{code}")?;
        writeln!(f, "===== stdout =====\n{}", self.stdout)?;
        writeln!(f, "===== stderr =====\n{}", self.stderr)?;
        writeln!(f, "===== end =====")
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

// ---------------------------------------------------------------------------
// Postgres
// ---------------------------------------------------------------------------

/// The PostgreSQL server bin dir: $PG_BINDIR, `pg_config --bindir`, the
/// newest /usr/lib/postgresql/*/bin, or wherever `initdb` on PATH points.
pub fn pg_bindir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let ok = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(d) = std::env::var_os("PG_BINDIR") {
            candidates.push(d.into());
        }
        if let Ok(out) = StdCommand::new("pg_config").arg("--bindir").output()
            && out.status.success()
        {
            candidates.push(String::from_utf8_lossy(&out.stdout).trim().into());
        }
        let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_string_lossy().parse().ok()?;
                Some((v, e.path().join("bin")))
            })
            .collect();
        versioned.sort();
        candidates.extend(versioned.into_iter().rev().map(|(_, p)| p));
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                if let Ok(real) = fs::canonicalize(dir.join("initdb")) {
                    candidates.extend(real.parent().map(Path::to_path_buf));
                }
            }
        }
        candidates.into_iter().find(|d| ok(d)).unwrap_or_else(|| {
            panic!("PostgreSQL initdb/pg_ctl not found: run scripts/setup.sh first")
        })
    })
}

fn effective_uid() -> u32 {
    static UID: OnceLock<u32> = OnceLock::new();
    *UID.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|euid| euid.parse().ok())
            .unwrap_or_else(|| id("-u", None))
    })
}

fn id(flag: &str, user: Option<&str>) -> u32 {
    let mut cmd = StdCommand::new("id");
    cmd.arg(flag).args(user);
    let out = cmd.output().expect("run id");
    if !out.status.success() {
        panic!(
            "id {flag} {}: {} (run scripts/setup.sh first: it creates the user)",
            user.unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}

/// A throwaway PostgreSQL server on 127.0.0.1, stopped on drop.
///
/// TCP connections need the password (scram-sha-256), so [`Postgres::url`]
/// carries one; the unix socket (in the temp dir) trusts local users.
pub struct Postgres {
    dir: TempDir,
    bindir: PathBuf,
    /// OS user postgres runs as (Some when the tests run as root).
    os_user: Option<String>,
    port: u16,
    password: String,
}

impl Postgres {
    /// Database superuser name.
    pub const USER: &'static str = "postgres";

    /// initdb + pg_ctl start (a second or two).
    pub fn start() -> Postgres {
        let bindir = pg_bindir().to_path_buf();
        let os_user = (effective_uid() == 0).then(|| {
            std::env::var("STACKWRIGHT_PG_USER").unwrap_or_else(|_| DEFAULT_PG_USER.into())
        });
        let dir = new_tempdir("stackwright-pg-");
        let password = uuid::Uuid::new_v4().simple().to_string();
        fs::write(dir.path().join("pwfile"), format!("{password}\n")).expect("write pwfile");
        fs::create_dir(dir.path().join("sock")).expect("create socket dir");
        if let Some(user) = &os_user {
            let (uid, gid) = (id("-u", Some(user)), id("-g", Some(user)));
            for p in ["", "pwfile", "sock"] {
                std::os::unix::fs::chown(dir.path().join(p), Some(uid), Some(gid))
                    .expect("chown postgres temp dir");
            }
        }
        let mut pg = Postgres {
            dir,
            bindir,
            os_user,
            port: 0,
            password,
        };
        pg.initdb();
        pg.start_server();
        pg
    }

    /// A command run as the postgres OS user, cwd = the temp dir.
    fn pg_command(&self, program: &str) -> StdCommand {
        let program = self.bindir.join(program);
        let mut cmd = match &self.os_user {
            None => StdCommand::new(program),
            Some(user) => {
                let mut c = StdCommand::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
        };
        cmd.current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        cmd
    }

    #[track_caller]
    fn run_checked(&self, what: &str, mut cmd: StdCommand) -> Output {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("{what}: cannot spawn {cmd:?}: {e}"));
        if !out.status.success() {
            panic!(
                "{what} failed ({})\ncommand: {cmd:?}\nstdout:\n{}\nstderr:\n{}\nserver log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                tail(&self.log(), 40)
            );
        }
        out
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn initdb(&self) {
        let mut cmd = self.pg_command("initdb");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-U", Self::USER, "--pwfile"])
            .arg(self.dir.path().join("pwfile"))
            .args([
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-locale",
                "--encoding=UTF8",
                "--no-sync",
            ]);
        self.run_checked("initdb", cmd);
        let sock = self.dir.path().join("sock");
        let conf = format!(
            "\n# stackwright test harness\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             max_connections = 40\nshared_buffers = 16MB\n",
            sock.display()
        );
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))
            .expect("open postgresql.conf");
        f.write_all(conf.as_bytes())
            .expect("append postgresql.conf");
    }

    fn start_server(&mut self) {
        for attempt in 1.. {
            self.port = free_port();
            let mut cmd = self.pg_command("pg_ctl");
            cmd.arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "60", "-o"])
                .arg(format!("-p {}", self.port))
                .arg("start");
            let out = cmd.output().expect("spawn pg_ctl");
            if out.status.success() {
                return;
            }
            let log = self.log();
            if attempt < 5 && log.contains("could not bind") {
                continue; // lost a race for the port: try another
            }
            panic!(
                "pg_ctl start failed ({})\ncommand: {cmd:?}\n{}{}\nserver log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                tail(&log, 40)
            );
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// Same as [`Postgres::url`] for database `db`.
    pub fn url_for(&self, db: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{db}",
            Self::USER,
            self.password,
            self.port
        )
    }

    /// URL for SQLAlchemy / alembic, which reject the `postgres://` scheme:
    /// `postgresql+psycopg2://postgres:PASSWORD@127.0.0.1:PORT/db`.
    pub fn sqlalchemy_url(&self, db: &str) -> String {
        self.url_for(db)
            .replacen("postgres://", "postgresql+psycopg2://", 1)
    }

    /// Run SQL with psql (over the unix socket) and return its unaligned,
    /// tuples-only output, e.g. `pg.psql("postgres", "SELECT 1")` == "1".
    /// Synchronous: usable from plain `#[test]`s. Panics on SQL errors.
    #[track_caller]
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut cmd = StdCommand::new(self.bindir.join("psql"));
        cmd.arg("-h")
            .arg(self.dir.path().join("sock"))
            .args(["-p", &self.port.to_string(), "-U", Self::USER, "-d", db])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("LC_ALL", "C")
            .env_remove("PGPASSWORD")
            .stdin(Stdio::null());
        let out = self.run_checked("psql", cmd);
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// CREATE DATABASE `name`; returns its URL.
    #[track_caller]
    pub fn create_database(&self, name: &str) -> String {
        let quoted = name.replace('"', "\"\"");
        self.psql("postgres", &format!("CREATE DATABASE \"{quoted}\""));
        self.url_for(name)
    }

    /// tokio-postgres client on database `postgres` (via the password URL).
    pub async fn client(&self) -> tokio_postgres::Client {
        self.client_for("postgres").await
    }

    /// tokio-postgres client on database `db`.
    pub async fn client_for(&self, db: &str) -> tokio_postgres::Client {
        let url = self.url_for(db);
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!("connect {url}: {e}\nserver log:\n{}", tail(&self.log(), 20))
            });
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.port == 0 {
            return;
        }
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = cmd.status();
    }
}
