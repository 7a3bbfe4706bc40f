//! `stackwright plan` against `terraform plan`, on the same stack, on the same moto.
//!
//! Run with `cargo bench --bench plan_vs_terraform`. Without `--bench` among the arguments
//! (as under `cargo test --all-targets`) it prints one line and returns.
//!
//! What it does (docs/benchmarks.md has the results and the discussion):
//!
//! 1. builds `stackwright` in release mode (`cargo build --release --bin stackwright`);
//! 2. starts one moto server through `tests/harness/moto_launcher.py` (needs
//!    `scripts/setup.sh` to have run);
//! 3. writes, in a temp dir, a Stackwright stack of 20 versioned, tagged S3 buckets and 50
//!    String SSM parameters, and the equivalent Terraform config (`benches/terraform/main.tf`,
//!    hashicorp/aws 5.100.0 from the filesystem mirror in /opt/tf-plugins);
//! 4. `terraform init` + `terraform apply`, and `stackwright apply`;
//! 5. times no-change plans, each tool with and without refresh: one warm-up, then
//!    `SW_BENCH_RUNS` (default 5) runs, wall clock, every exit code checked (a no-change
//!    plan that reports changes aborts the bench and prints the plan);
//! 6. prints a markdown table and rewrites the results section of docs/benchmarks.md
//!    (between the `<!-- bench:results:... -->` markers; `SW_BENCH_NO_DOCS=1` skips that).
//!
//! Environment: `SW_BENCH_RUNS` (timed runs per row, default 5), `SW_BENCH_NO_DOCS=1`,
//! `TERRAFORM` (the terraform binary, default `terraform` on PATH), `SW_BENCH_TF_MIRROR`
//! (default `/opt/tf-plugins`).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark reports on the terminal

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

const BUCKETS: usize = 20;
const PARAMETERS: usize = 50;
const WARMUP: usize = 1;
const DEFAULT_RUNS: usize = 5;
/// The issue's target: a no-change plan at least this many times faster than Terraform's.
const TARGET_RATIO: f64 = 20.0;
const DOCS_START: &str = "<!-- bench:results:start -->";
const DOCS_END: &str = "<!-- bench:results:end -->";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench --bench plan_vs_terraform`");
        return;
    }
    if let Err(e) = run() {
        eprintln!("\nplan_vs_terraform FAILED: {e:#}");
        std::process::exit(1);
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run() -> Result<()> {
    let root = root();
    let runs = match std::env::var("SW_BENCH_RUNS") {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| anyhow!("SW_BENCH_RUNS={v}: expected a positive integer"))?,
        Err(_) => DEFAULT_RUNS,
    };
    let terraform = std::env::var("TERRAFORM").unwrap_or_else(|_| "terraform".to_owned());
    let mirror = PathBuf::from(
        std::env::var("SW_BENCH_TF_MIRROR").unwrap_or_else(|_| "/opt/tf-plugins".to_owned()),
    );

    step("building stackwright (release)");
    let sw = build_stackwright(&root)?;
    eprintln!("    {}", sw.display());

    let tmp = tempfile::Builder::new()
        .prefix("sw-bench-")
        .tempdir()
        .context("creating a temp dir")?;
    let dir = tmp.path();
    let (sw_dir, tf_dir, home) = (
        dir.join("stackwright"),
        dir.join("terraform"),
        dir.join("home"),
    );
    for d in [&sw_dir, &tf_dir, &home] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }

    step("starting moto");
    let moto = Moto::start(&root, dir)?;
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    eprintln!("    {endpoint} (moto {})", moto.version);

    // The same clean AWS environment for both tools: nothing inherited from the caller.
    let aws_env: Vec<(String, String)> = vec![
        ("AWS_ENDPOINT_URL".into(), endpoint.clone()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        (
            "AWS_CONFIG_FILE".into(),
            home.join(".aws/config").display().to_string(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            home.join(".aws/credentials").display().to_string(),
        ),
        ("HOME".into(), home.display().to_string()),
        ("NO_COLOR".into(), "1".into()),
    ];

    // --- Stackwright --------------------------------------------------------------------
    let stack = sw_dir.join("bench.toml");
    fs::write(&stack, stackwright_stack()).context("writing the stack")?;
    let sw_cmd = |args: &[&str]| {
        let mut c = Command::new(&sw);
        c.args(args).current_dir(&sw_dir);
        clean_env(&mut c, &aws_env);
        c
    };

    // --- Terraform ----------------------------------------------------------------------
    let tf_rc = dir.join("terraformrc");
    fs::write(
        &tf_rc,
        format!(
            r#"provider_installation {{
  filesystem_mirror {{
    path    = "{}"
    include = ["registry.terraform.io/hashicorp/aws"]
  }}
  direct {{
    exclude = ["registry.terraform.io/hashicorp/aws"]
  }}
}}
"#,
            mirror.display()
        ),
    )
    .context("writing the Terraform CLI config")?;
    let tf_main = root.join("benches/terraform/main.tf");
    let tf_src =
        fs::read_to_string(&tf_main).with_context(|| format!("reading {}", tf_main.display()))?;
    fs::write(tf_dir.join("main.tf"), tf_src).context("writing main.tf")?;
    let tf_cmd = |args: &[&str]| {
        let mut c = Command::new(&terraform);
        c.args(args).current_dir(&tf_dir);
        clean_env(&mut c, &aws_env);
        c.env("TF_CLI_CONFIG_FILE", &tf_rc)
            .env("TF_VAR_endpoint", &endpoint)
            .env("TF_VAR_buckets", BUCKETS.to_string())
            .env("TF_VAR_parameters", PARAMETERS.to_string())
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1");
        c
    };

    let tf_version = first_line(&checked(tf_cmd(&["version"]), "terraform version", &[0])?.stdout);
    let sw_version =
        first_line(&checked(sw_cmd(&["--version"]), "stackwright --version", &[0])?.stdout);

    step("terraform init");
    checked(
        tf_cmd(&["init", "-input=false", "-no-color"]),
        "terraform init",
        &[0],
    )?;
    step(&format!(
        "terraform apply ({} resources)",
        2 * BUCKETS + PARAMETERS
    ));
    let t = Instant::now();
    checked(
        tf_cmd(&["apply", "-auto-approve", "-input=false", "-no-color"]),
        "terraform apply",
        &[0],
    )?;
    let tf_apply = t.elapsed();
    step(&format!(
        "stackwright apply ({} resources)",
        BUCKETS + PARAMETERS
    ));
    let t = Instant::now();
    checked(
        sw_cmd(&["apply", "bench.toml", "--auto-approve"]),
        "stackwright apply",
        &[0],
    )?;
    let sw_apply = t.elapsed();

    // --- Timed no-change plans ----------------------------------------------------------
    let tf_refresh = [
        "plan",
        "-input=false",
        "-detailed-exitcode",
        "-lock=false",
        "-no-color",
    ];
    let tf_no_refresh = [
        "plan",
        "-input=false",
        "-detailed-exitcode",
        "-lock=false",
        "-no-color",
        "-refresh=false",
    ];
    let sw_refresh = ["plan", "bench.toml", "--detailed-exitcode"];
    let sw_no_refresh = [
        "plan",
        "bench.toml",
        "--detailed-exitcode",
        "--refresh=false",
    ];

    let load_before = loadavg();
    let mut rows = Vec::new();
    for (label, tf_args, sw_args) in [
        ("no-change plan (refresh)", &tf_refresh[..], &sw_refresh[..]),
        (
            "no-change plan, no refresh",
            &tf_no_refresh[..],
            &sw_no_refresh[..],
        ),
    ] {
        step(&format!("{label}: terraform {}", tf_args.join(" ")));
        let tf = time_runs(
            || tf_cmd(tf_args),
            &format!("terraform {}", tf_args.join(" ")),
            runs,
            &moto,
        )?;
        step(&format!("{label}: stackwright {}", sw_args.join(" ")));
        let sw = time_runs(
            || sw_cmd(sw_args),
            &format!("stackwright {}", sw_args.join(" ")),
            runs,
            &moto,
        )?;
        rows.push(Row { label, tf, sw });
    }
    drop(moto);

    let report = Report {
        runs,
        machine: machine(),
        load: format!("{load_before} before, {} after", loadavg()),
        tf_version,
        sw_version,
        moto_version: moto_version_of(&root),
        tf_apply,
        sw_apply,
        rows,
    };
    let table = report.markdown();
    println!("\n{table}");
    if std::env::var_os("SW_BENCH_NO_DOCS").is_none() {
        let path = root.join("docs/benchmarks.md");
        update_docs(&path, &table)?;
        eprintln!("updated {}", path.display());
    }
    Ok(())
}

fn step(what: &str) {
    eprintln!("==> {what}");
}

/// `cargo build --release --bin stackwright`; returns the executable cargo reports.
fn build_stackwright(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--bin",
            "stackwright",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cargo} build"))?;
    ensure!(
        out.status.success(),
        "cargo build --release --bin stackwright failed ({})",
        out.status
    );
    let mut exe = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == "stackwright"
            && let Some(p) = msg["executable"].as_str()
        {
            exe = Some(PathBuf::from(p));
        }
    }
    let exe =
        exe.ok_or_else(|| anyhow!("cargo build did not report the stackwright executable"))?;
    ensure!(
        exe.is_file(),
        "{} does not exist after the build",
        exe.display()
    );
    Ok(exe)
}

/// Removes what could leak the caller's AWS/Terraform/Stackwright setup into a run, then
/// sets `env`.
fn clean_env(c: &mut Command, env: &[(String, String)]) {
    for (k, _) in std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v))) {
        if [
            "AWS_",
            "TF_",
            "STACKWRIGHT_",
            "CLICOLOR",
            "FORCE_COLOR",
            "RUST_LOG",
        ]
        .iter()
        .any(|p| k.starts_with(p))
        {
            c.env_remove(&k);
        }
    }
    c.envs(env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null());
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        match out.status.code() {
            Some(c) => format!("exit code {c}"),
            None => format!("{}", out.status),
        },
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

/// Runs `c` to completion; any exit code not in `ok` is an error showing all its output.
fn checked(mut c: Command, what: &str, ok: &[i32]) -> Result<Output> {
    let out = c.output().with_context(|| format!("starting {what}"))?;
    if !out.status.code().is_some_and(|code| ok.contains(&code)) {
        bail!("{}", describe(what, &out));
    }
    Ok(out)
}

/// One warm-up, then `runs` timed runs. Every run must exit 0: under `-detailed-exitcode`
/// / `--detailed-exitcode`, 2 means the "no-change" plan found changes and the numbers
/// would be meaningless. Besides wall clock, each timed run records the requests moto
/// logged, moto's CPU time and the tool's own CPU time (its process tree, provider
/// plugins included).
fn time_runs(make: impl Fn() -> Command, what: &str, runs: usize, moto: &Moto) -> Result<Stats> {
    let mut times = Vec::with_capacity(runs);
    let (mut requests, mut moto_cpu, mut tool_cpu) = (0, Duration::ZERO, Duration::ZERO);
    for i in 0..WARMUP + runs {
        let mut c = make();
        let (req0, moto0, self0) = (moto.requests(), moto.cpu(), children_cpu());
        let t = Instant::now();
        let out = c.output().with_context(|| format!("starting {what}"))?;
        let elapsed = t.elapsed();
        match out.status.code() {
            Some(0) => {}
            Some(2) => bail!(
                "a no-change plan reported changes, so the benchmark is invalid\n{}",
                describe(what, &out)
            ),
            _ => bail!("{}", describe(what, &out)),
        }
        if i >= WARMUP {
            let (req, mcpu, tcpu) = (
                moto.requests().saturating_sub(req0),
                moto.cpu().saturating_sub(moto0),
                children_cpu().saturating_sub(self0),
            );
            eprintln!(
                "    run {}: {:.3} s  ({req} moto requests, moto CPU {:.2} s, tool CPU {:.2} s)",
                i + 1 - WARMUP,
                elapsed.as_secs_f64(),
                mcpu.as_secs_f64(),
                tcpu.as_secs_f64()
            );
            times.push(elapsed);
            requests += req;
            moto_cpu += mcpu;
            tool_cpu += tcpu;
        }
    }
    let n = runs as u32;
    let mut st = Stats::new(times);
    st.requests = requests / runs;
    st.moto_cpu = moto_cpu / n;
    st.tool_cpu = tool_cpu / n;
    Ok(st)
}

/// Clock ticks per second for /proc/*/stat (`getconf CLK_TCK`; 100 on every Linux we know).
fn clk_tck() -> u64 {
    static TCK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// Fields of /proc/PID/stat (1-based, as in proc(5)), summed, as CPU time.
fn proc_cpu(pid: &str, fields: [usize; 2]) -> Duration {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The command name (field 2) may hold spaces: count from the closing parenthesis.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = fields
        .iter()
        .filter_map(|f| rest.get(f - 3)?.parse::<u64>().ok())
        .sum();
    Duration::from_micros(ticks * 1_000_000 / clk_tck())
}

/// CPU time (user + system) of every child this process has waited for.
fn children_cpu() -> Duration {
    proc_cpu("self", [16, 17])
}

fn first_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned()
}

// --- The stack ---------------------------------------------------------------------------

fn stackwright_stack() -> String {
    let mut s = String::from(
        "# Generated by benches/plan_vs_terraform.rs\n[stack]\nname = \"swbench\"\nregion = \"us-east-1\"\n",
    );
    for n in 1..=BUCKETS {
        write!(
            s,
            "\n[s3_bucket.b{n}]\nname = \"sw-bench-{n}\"\nversioning = true\ntags = {{ bench = \"plan_vs_terraform\", index = \"{n}\" }}\n"
        )
        .unwrap();
    }
    for n in 1..=PARAMETERS {
        write!(s, "\n[ssm_parameter.p{n}]\nname = \"/swbench/p{n}\"\ntype = \"String\"\nvalue = \"v-{n}\"\n").unwrap();
    }
    s
}

// --- moto --------------------------------------------------------------------------------

/// A moto server from `tests/harness/moto_launcher.py`; killed on drop (the launcher also
/// exits by itself when this process dies).
struct Moto {
    child: Child,
    port: u16,
    version: String,
    log: PathBuf,
}

impl Moto {
    fn start(root: &Path, dir: &Path) -> Result<Moto> {
        let python = root.join(".venv/bin/python");
        ensure!(
            python.exists(),
            "{} is missing: run scripts/setup.sh first",
            python.display()
        );
        let port_file = dir.join("moto.port");
        let log_path = dir.join("moto.log");
        let log = fs::File::create(&log_path).context("creating moto.log")?;
        let child = Command::new(python)
            .arg(root.join("tests/harness/moto_launcher.py"))
            .args(["--port", "0", "--port-file"])
            .arg(&port_file)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env_remove("STACKWRIGHT_MOTO_NO_PATCHES")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting moto_launcher.py")?;
        let mut moto = Moto {
            child,
            port: 0,
            version: String::new(),
            log: log_path.clone(),
        };
        let log_text = || fs::read_to_string(&log_path).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = moto.child.try_wait()? {
                bail!("moto exited early ({st}):\n{}", log_text());
            }
            if let Ok(p) = fs::read_to_string(&port_file)
                && let Ok(p) = p.trim().parse::<u16>()
                && ping(p)
            {
                moto.port = p;
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "moto did not answer within 30 s:\n{}",
                log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // "moto 5.2.1, patches applied: ..." is the launcher's first line.
        let f = fs::File::open(&log_path)?;
        moto.version = BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                l.strip_prefix("moto ")
                    .and_then(|r| r.split(',').next())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "?".to_owned());
        Ok(moto)
    }
}

impl Moto {
    /// Requests moto has logged so far (werkzeug writes one line per request).
    fn requests(&self) -> usize {
        fs::read_to_string(&self.log)
            .map(|l| l.lines().filter(|l| l.contains(" HTTP/1.1\" ")).count())
            .unwrap_or(0)
    }

    /// moto's CPU time (user + system) so far.
    fn cpu(&self) -> Duration {
        proc_cpu(&self.child.id().to_string(), [14, 15])
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /moto-api/` answers once the server is up.
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.")
}

fn moto_version_of(root: &Path) -> String {
    Command::new(root.join(".venv/bin/python"))
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('moto'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| first_line(&o.stdout))
        .unwrap_or_else(|| "?".to_owned())
}

// --- Results -----------------------------------------------------------------------------

struct Stats {
    min: Duration,
    median: Duration,
    mean: Duration,
    max: Duration,
    /// Per timed run, averaged.
    requests: usize,
    moto_cpu: Duration,
    tool_cpu: Duration,
}

impl Stats {
    fn new(mut times: Vec<Duration>) -> Stats {
        times.sort();
        let n = times.len();
        let median = if n % 2 == 1 {
            times[n / 2]
        } else {
            (times[n / 2 - 1] + times[n / 2]) / 2
        };
        let mean = times.iter().sum::<Duration>() / n as u32;
        Stats {
            min: times[0],
            median,
            mean,
            max: times[n - 1],
            requests: 0,
            moto_cpu: Duration::ZERO,
            tool_cpu: Duration::ZERO,
        }
    }
}

struct Row {
    label: &'static str,
    tf: Stats,
    sw: Stats,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.tf.median.as_secs_f64() / self.sw.median.as_secs_f64()
    }
}

struct Report {
    runs: usize,
    machine: String,
    load: String,
    tf_version: String,
    sw_version: String,
    moto_version: String,
    tf_apply: Duration,
    sw_apply: Duration,
    rows: Vec<Row>,
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

impl Report {
    fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Stack: {BUCKETS} S3 buckets (versioned, tagged) + {PARAMETERS} SSM parameters, already \
             applied. Wall clock per process, {WARMUP} warm-up + {} timed runs each; requests and \
             CPU times are per plan (mean of the timed runs).\n",
            self.runs
        );
        let _ = writeln!(
            s,
            "| plan | tool | min | median | mean | max | moto requests | moto CPU | tool CPU | \
             Terraform ÷ Stackwright (medians) |"
        );
        let _ = writeln!(s, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
        for r in &self.rows {
            for (tool, st, ratio) in [
                ("terraform", &r.tf, String::new()),
                ("stackwright", &r.sw, format!("**{:.1}×**", r.ratio())),
            ] {
                let _ = writeln!(
                    s,
                    "| {} | {tool} | {} | {} | {} | {} | {} | {} | {} | {ratio} |",
                    r.label,
                    ms(st.min),
                    ms(st.median),
                    ms(st.mean),
                    ms(st.max),
                    st.requests,
                    ms(st.moto_cpu),
                    ms(st.tool_cpu),
                );
            }
        }
        let _ = writeln!(s);
        for r in &self.rows {
            let verdict = if r.ratio() >= TARGET_RATIO {
                "meets"
            } else {
                "**misses**"
            };
            let _ = writeln!(
                s,
                "- {}: Stackwright is {:.1}× faster (ratio of medians): {verdict} the \
                 {TARGET_RATIO:.0}× target.",
                r.label,
                r.ratio()
            );
        }
        let _ = writeln!(
            s,
            "- Initial apply (one run each, for scale): terraform {} (90 resources: buckets, \
             versioning, parameters), stackwright {} (70 resources).",
            ms(self.tf_apply),
            ms(self.sw_apply)
        );
        let _ = writeln!(
            s,
            "\nRun {} on {}; load average (1 min) {}. Versions: {}; {}; moto {} (patched by \
             tests/harness/moto_launcher.py); hashicorp/aws provider 5.100.0.",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            self.machine,
            self.load,
            self.tf_version,
            self.sw_version,
            self.moto_version
        );
        s
    }
}

/// The 1-minute load average: other work on the machine slows both tools.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let os = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!(", Linux {}", s.trim()))
        .unwrap_or_default();
    format!("{cpus} CPUs (nproc), {model}{os}")
}

/// Replaces the text between the results markers, or writes a new file around the table.
fn update_docs(path: &Path, table: &str) -> Result<()> {
    let section = format!("{DOCS_START}\n{table}{DOCS_END}");
    let text = match fs::read_to_string(path) {
        Ok(old) => match (old.find(DOCS_START), old.find(DOCS_END)) {
            (Some(a), Some(b)) if a < b => {
                format!("{}{section}{}", &old[..a], &old[b + DOCS_END.len()..])
            }
            _ => bail!(
                "{} exists but lacks the {DOCS_START} … {DOCS_END} markers; add them where the results go",
                path.display()
            ),
        },
        Err(_) => {
            format!("# Benchmarks\n\n## `stackwright plan` vs `terraform plan`\n\n{section}\n")
        }
    };
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
