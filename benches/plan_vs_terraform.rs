//! `stackwright` against `terraform`, on the same stacks, on the same moto, at several sizes.
//!
//! Run with `cargo bench --bench plan_vs_terraform`, or `cargo test --bench
//! plan_vs_terraform -- --bench` (the same binary in the test profile: it only spawns and
//! times processes, and saves a release build of every dependency with the
//! dev-dependencies' features). Without `--bench` among the arguments (as under
//! `cargo test --all-targets`) it prints one line and returns.
//!
//! What it does (docs/performance.md has the results, docs/benchmarks.md the method):
//!
//! 1. builds `stackwright` in release mode (`cargo build --release --bin stackwright`);
//! 2. for each size N in `SW_BENCH_SIZES` (default `70`; the documented full run is
//!    `70,300,2000`), in a fresh temp dir and a fresh moto server from
//!    `tests/harness/moto_launcher.py` (needs `scripts/setup.sh` to have run):
//!    - writes a Stackwright stack of N resources, 10 % versioned, tagged S3 buckets, 60 %
//!      SSM parameters (every fifth a `SecureString`), 10 % security groups with one ingress
//!      rule, 10 % log groups with a retention and 10 % single-metric alarms, and the
//!      equivalent Terraform config (`benches/terraform/main.tf`, counts in `TF_VAR_*`,
//!      hashicorp/aws 5.100.0 from the filesystem mirror in /opt/tf-plugins);
//!    - `terraform init`, then times the initial `terraform apply` and `stackwright apply`
//!      (once each);
//!    - times no-change plans (refresh): one warm-up, then `SW_BENCH_RUNS` runs (default
//!      5), each of which must exit 0 under the detailed exit code (2 aborts the bench and
//!      prints the plan);
//!    - times plans with one change (the first parameter's value edited): `SW_BENCH_RUNS`
//!      runs, each of which must exit 2;
//!    - for every timed process: wall clock, CPU time and peak RSS from `wait4` (the
//!      process and its descendants, so Terraform's provider plugin too; peak RSS is the
//!      largest single process), and the requests moto logged;
//! 3. prints markdown tables and, after each size, rewrites the scale section of
//!    docs/performance.md (between the `<!-- bench:scale:... -->` markers;
//!    `SW_BENCH_NO_DOCS=1` skips that).
//!
//! Environment: `SW_BENCH_SIZES` (comma-separated resource counts, each at least 10),
//! `SW_BENCH_RUNS` (timed runs per row: one number, or one per size such as `5,5,3`),
//! `SW_BENCH_NO_DOCS=1`, `TERRAFORM` (the terraform binary, default `terraform` on PATH),
//! `SW_BENCH_TF_MIRROR` (default `/opt/tf-plugins`), `SW_BENCH_STACKWRIGHT` (a stackwright
//! executable to use instead of building one).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark reports on the terminal

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

const DEFAULT_SIZES: &str = "70";
const WARMUP: usize = 1;
const DEFAULT_RUNS: usize = 5;
/// The value every `SecureString` parameter holds, on both sides.
const SECRET: &str = "bench-secret";
const DOCS_START: &str = "<!-- bench:scale:start -->";
const DOCS_END: &str = "<!-- bench:scale:end -->";

/// Issue 12's targets.
const APPLY_TARGET: f64 = 10.0;
const CPU_TARGET_AT_2000: Duration = Duration::from_secs(1);
const RSS_TARGET_KB: u64 = 100 * 1024;

/// The no-change plan's target ratio (Terraform ÷ Stackwright) at `n` resources.
fn plan_target(n: usize) -> f64 {
    if n >= 2000 { 30.0 } else { 50.0 }
}

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

/// A comma-separated list of positive integers from `var`, or `default`.
fn env_list(var: &str, default: &str) -> Result<Vec<usize>> {
    let v = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    v.split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| anyhow!("{var}={v}: expected positive integers, comma-separated"))
        })
        .collect()
}

/// How many resources of each kind a stack of `n` resources has.
#[derive(Clone, Copy)]
struct Mix {
    buckets: usize,
    parameters: usize,
    security_groups: usize,
    log_groups: usize,
    alarms: usize,
}

impl Mix {
    /// 10 % buckets, security groups, log groups and alarms each, the rest (60 %) parameters.
    fn of(n: usize) -> Mix {
        let tenth = n / 10;
        Mix {
            buckets: tenth,
            parameters: n - 4 * tenth,
            security_groups: tenth,
            log_groups: tenth,
            alarms: tenth,
        }
    }

    fn total(&self) -> usize {
        self.buckets + self.parameters + self.security_groups + self.log_groups + self.alarms
    }

    /// Terraform's resource count: a bucket is two (`aws_s3_bucket` + `_versioning`).
    fn tf_total(&self) -> usize {
        self.total() + self.buckets
    }

    fn secure_parameters(&self) -> usize {
        self.parameters / 5
    }

    fn describe(&self) -> String {
        format!(
            "{} buckets, {} parameters ({} SecureString), {} security groups, {} log groups, {} alarms",
            self.buckets,
            self.parameters,
            self.secure_parameters(),
            self.security_groups,
            self.log_groups,
            self.alarms
        )
    }
}

struct Tools {
    root: PathBuf,
    sw: PathBuf,
    terraform: String,
    mirror: PathBuf,
}

fn run() -> Result<()> {
    let root = root();
    let sizes = env_list("SW_BENCH_SIZES", DEFAULT_SIZES)?;
    ensure!(
        sizes.iter().all(|n| *n >= 10),
        "SW_BENCH_SIZES: every size must be at least 10 (one resource of each kind)"
    );
    let runs = env_list("SW_BENCH_RUNS", &DEFAULT_RUNS.to_string())?;
    ensure!(
        runs.len() == 1 || runs.len() == sizes.len(),
        "SW_BENCH_RUNS: give one number, or one per size ({} sizes)",
        sizes.len()
    );
    let sw = match std::env::var_os("SW_BENCH_STACKWRIGHT") {
        Some(p) => PathBuf::from(p),
        None => {
            step("building stackwright (release)");
            build_stackwright(&root)?
        }
    };
    eprintln!("    {}", sw.display());
    let tools = Tools {
        sw,
        terraform: std::env::var("TERRAFORM").unwrap_or_else(|_| "terraform".to_owned()),
        mirror: PathBuf::from(
            std::env::var("SW_BENCH_TF_MIRROR").unwrap_or_else(|_| "/opt/tf-plugins".to_owned()),
        ),
        root,
    };

    let tmp = tempfile::Builder::new()
        .prefix("sw-bench-")
        .tempdir()
        .context("creating a temp dir")?;
    let mut report = Report {
        sizes_asked: sizes.clone(),
        runs: runs.clone(),
        machine: machine(),
        tf_version: String::new(),
        sw_version: String::new(),
        moto_version: moto_version_of(&tools.root),
        results: Vec::new(),
    };
    for (i, &n) in sizes.iter().enumerate() {
        let runs = if runs.len() == 1 { runs[0] } else { runs[i] };
        let dir = tmp.path().join(format!("n{n}"));
        let result = bench_size(&tools, &dir, n, runs, &mut report)?;
        report.results.push(result);
        let table = report.markdown();
        println!("\n{table}");
        if std::env::var_os("SW_BENCH_NO_DOCS").is_none() {
            let path = tools.root.join("docs/performance.md");
            update_docs(&path, &table)?;
            eprintln!("updated {}", path.display());
        }
    }
    Ok(())
}

/// Applies, then plans, a stack of `n` resources with each tool, on a fresh moto.
fn bench_size(
    tools: &Tools,
    dir: &Path,
    n: usize,
    runs: usize,
    report: &mut Report,
) -> Result<SizeResult> {
    let mix = Mix::of(n);
    eprintln!("\n##### {n} resources: {}", mix.describe());
    let (sw_dir, tf_dir, home) = (
        dir.join("stackwright"),
        dir.join("terraform"),
        dir.join("home"),
    );
    for d in [&sw_dir, &tf_dir, &home] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }

    step("starting moto");
    let moto = Moto::start(&tools.root, dir)?;
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    eprintln!("    {endpoint} (moto {})", moto.version);
    let load_before = loadavg();

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
    fs::write(&stack, stackwright_stack(&mix, false)).context("writing the stack")?;
    let sw_cmd = |args: &[&str]| {
        let mut c = Command::new(&tools.sw);
        c.args(args).current_dir(&sw_dir);
        clean_env(&mut c, &aws_env);
        c.env("SW_BENCH_SECRET", SECRET);
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
            tools.mirror.display()
        ),
    )
    .context("writing the Terraform CLI config")?;
    let tf_main = tools.root.join("benches/terraform/main.tf");
    let tf_src =
        fs::read_to_string(&tf_main).with_context(|| format!("reading {}", tf_main.display()))?;
    fs::write(tf_dir.join("main.tf"), tf_src).context("writing main.tf")?;
    let tf_cmd = |args: &[&str], edit: bool| {
        let mut c = Command::new(&tools.terraform);
        c.args(args).current_dir(&tf_dir);
        clean_env(&mut c, &aws_env);
        c.env("TF_CLI_CONFIG_FILE", &tf_rc)
            .env("TF_VAR_endpoint", &endpoint)
            .env("TF_VAR_buckets", mix.buckets.to_string())
            .env("TF_VAR_parameters", mix.parameters.to_string())
            .env("TF_VAR_security_groups", mix.security_groups.to_string())
            .env("TF_VAR_log_groups", mix.log_groups.to_string())
            .env("TF_VAR_alarms", mix.alarms.to_string())
            .env("TF_VAR_secret", SECRET)
            .env("TF_VAR_edit_first", edit.to_string())
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1");
        c
    };

    if report.tf_version.is_empty() {
        report.tf_version =
            first_line(&checked(tf_cmd(&["version"], false), "terraform version", &[0])?.stdout);
        report.sw_version =
            first_line(&checked(sw_cmd(&["--version"]), "stackwright --version", &[0])?.stdout);
    }

    step("terraform init");
    checked(
        tf_cmd(&["init", "-input=false", "-no-color"], false),
        "terraform init",
        &[0],
    )?;

    // --- Initial apply ------------------------------------------------------------------
    step(&format!("terraform apply ({} resources)", mix.tf_total()));
    let tf_apply = measure(
        tf_cmd(
            &["apply", "-auto-approve", "-input=false", "-no-color"],
            false,
        ),
        "terraform apply",
        &[0],
        &moto,
        dir,
    )?;
    step(&format!("stackwright apply ({} resources)", mix.total()));
    let sw_apply = measure(
        sw_cmd(&["apply", "bench.toml", "--auto-approve"]),
        "stackwright apply",
        &[0],
        &moto,
        dir,
    )?;

    // --- No-change plans ----------------------------------------------------------------
    let tf_plan = [
        "plan",
        "-input=false",
        "-detailed-exitcode",
        "-lock=false",
        "-no-color",
    ];
    let sw_plan = ["plan", "bench.toml", "--detailed-exitcode"];
    step(&format!("no-change plan: terraform {}", tf_plan.join(" ")));
    let tf_nochange = time_runs(
        || tf_cmd(&tf_plan, false),
        "terraform plan (no change)",
        WARMUP,
        runs,
        0,
        &moto,
        dir,
    )?;
    step(&format!(
        "no-change plan: stackwright {}",
        sw_plan.join(" ")
    ));
    let sw_nochange = time_runs(
        || sw_cmd(&sw_plan),
        "stackwright plan (no change)",
        WARMUP,
        runs,
        0,
        &moto,
        dir,
    )?;

    // --- One change: the first parameter's value ----------------------------------------
    step("one-change plan: terraform (TF_VAR_edit_first=true)");
    let tf_change = time_runs(
        || tf_cmd(&tf_plan, true),
        "terraform plan (one change)",
        0,
        runs,
        2,
        &moto,
        dir,
    )?;
    step("one-change plan: stackwright (ssm_parameter.p1's value edited)");
    fs::write(&stack, stackwright_stack(&mix, true)).context("writing the edited stack")?;
    let sw_change = time_runs(
        || sw_cmd(&sw_plan),
        "stackwright plan (one change)",
        0,
        runs,
        2,
        &moto,
        dir,
    )?;
    fs::write(&stack, stackwright_stack(&mix, false)).context("restoring the stack")?;
    drop(moto);

    Ok(SizeResult {
        n,
        mix,
        runs,
        load: format!("{load_before} before, {} after", loadavg()),
        tf_apply,
        sw_apply,
        nochange: (tf_nochange, sw_nochange),
        change: (tf_change, sw_change),
    })
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

/// One process, measured: wall clock from spawn to exit, and what `wait4` says of it.
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    /// User + system CPU of the process and the descendants it waited for.
    cpu: Duration,
    /// `ru_maxrss`: the largest resident set of the process or of any waited-for
    /// descendant (not their sum), in KiB.
    max_rss_kb: u64,
    /// Requests moto logged while it ran.
    requests: usize,
    moto_cpu: Duration,
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64)
}

/// Runs `c` to completion with its output in files under `dir`, reaping it with `wait4`
/// for its resource usage. Any exit code not in `ok` is an error showing all its output.
fn measure(mut c: Command, what: &str, ok: &[i32], moto: &Moto, dir: &Path) -> Result<Sample> {
    let (out_path, err_path) = (dir.join("last.stdout"), dir.join("last.stderr"));
    c.stdout(fs::File::create(&out_path).context("creating last.stdout")?)
        .stderr(fs::File::create(&err_path).context("creating last.stderr")?);
    let (req0, moto0) = (moto.requests(), moto.cpu());
    let t = Instant::now();
    let child = c.spawn().with_context(|| format!("starting {what}"))?;
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child; both pointers are to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).with_context(|| format!("waiting for {what}"));
        }
    }
    let wall = t.elapsed();
    drop(child); // already reaped: dropping a std Child neither waits nor kills
    let sample = Sample {
        wall,
        cpu: timeval(ru.ru_utime) + timeval(ru.ru_stime),
        max_rss_kb: u64::try_from(ru.ru_maxrss).unwrap_or(0),
        requests: moto.requests().saturating_sub(req0),
        moto_cpu: moto.cpu().saturating_sub(moto0),
    };
    let out = Output {
        status: ExitStatus::from_raw(status),
        stdout: fs::read(&out_path).unwrap_or_default(),
        stderr: fs::read(&err_path).unwrap_or_default(),
    };
    match out.status.code() {
        Some(code) if ok.contains(&code) => {}
        Some(2) if ok == [0] => bail!(
            "a no-change plan reported changes, so the benchmark is invalid\n{}",
            describe(what, &out)
        ),
        _ => bail!("{}", describe(what, &out)),
    }
    eprintln!(
        "    {:.3} s, tool CPU {:.2} s, peak RSS {:.0} MB, {} moto requests, moto CPU {:.2} s",
        sample.wall.as_secs_f64(),
        sample.cpu.as_secs_f64(),
        sample.max_rss_kb as f64 / 1024.0,
        sample.requests,
        sample.moto_cpu.as_secs_f64()
    );
    Ok(sample)
}

/// `warmup` untimed runs, then `runs` timed runs, each of which must exit `code` (0 for a
/// no-change plan under the detailed exit code, 2 for a plan with changes).
fn time_runs(
    make: impl Fn() -> Command,
    what: &str,
    warmup: usize,
    runs: usize,
    code: i32,
    moto: &Moto,
    dir: &Path,
) -> Result<Stats> {
    let mut samples = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        if i < warmup {
            eprint!("    warm-up:");
        } else {
            eprint!("    run {}:", i + 1 - warmup);
        }
        let s = measure(make(), what, &[code], moto, dir)?;
        if i >= warmup {
            samples.push(s);
        }
    }
    Ok(Stats::new(samples))
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

fn first_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned()
}

// --- The stack ---------------------------------------------------------------------------

/// The Stackwright stack for `mix`; `edit` changes the first parameter's value (the
/// one-change plan), as `TF_VAR_edit_first=true` does on the Terraform side.
fn stackwright_stack(mix: &Mix, edit: bool) -> String {
    let mut s = String::from(
        "# Generated by benches/plan_vs_terraform.rs\n[stack]\nname = \"swbench\"\nregion = \"us-east-1\"\n",
    );
    for n in 1..=mix.buckets {
        let _ = write!(
            s,
            "\n[s3_bucket.b{n}]\nname = \"sw-bench-{n}\"\nversioning = true\ntags = {{ bench = \"plan_vs_terraform\", index = \"{n}\" }}\n"
        );
    }
    for n in 1..=mix.parameters {
        if n % 5 == 0 {
            let _ = write!(
                s,
                "\n[ssm_parameter.p{n}]\nname = \"/swbench/p{n}\"\ntype = \"SecureString\"\nvalue = {{ from_env = \"SW_BENCH_SECRET\" }}\n"
            );
        } else {
            let value = if n == 1 && edit {
                "v-1-edited".to_owned()
            } else {
                format!("v-{n}")
            };
            let _ = write!(
                s,
                "\n[ssm_parameter.p{n}]\nname = \"/swbench/p{n}\"\ntype = \"String\"\nvalue = \"{value}\"\n"
            );
        }
    }
    for n in 1..=mix.security_groups {
        let _ = write!(
            s,
            "\n[security_group.g{n}]\nname = \"sw-bench-{n}\"\ndescription = \"bench group {n}\"\n\n\
             [[security_group.g{n}.ingress]]\nport = 443\ncidr_blocks = [\"10.0.0.0/8\"]\ndescription = \"https\"\n"
        );
    }
    for n in 1..=mix.log_groups {
        let _ = write!(
            s,
            "\n[cloudwatch_log_group.l{n}]\nname = \"/swbench/l{n}\"\nretention_days = 30\n"
        );
    }
    for n in 1..=mix.alarms {
        let _ = write!(
            s,
            "\n[cloudwatch_alarm.a{n}]\nname = \"sw-bench-{n}\"\nnamespace = \"Bench\"\nmetric = \"Errors{n}\"\n\
             statistic = \"Sum\"\nperiod = 60\nevaluation_periods = 1\nthreshold = 10\ncomparison = \">\"\n"
        );
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

#[derive(Clone, Copy)]
struct Stats {
    min: Duration,
    median: Duration,
    max: Duration,
    /// Per run, averaged over the timed runs.
    cpu: Duration,
    requests: f64,
    moto_cpu: Duration,
    /// The largest over the timed runs.
    max_rss_kb: u64,
    runs: usize,
}

impl Stats {
    fn new(samples: Vec<Sample>) -> Stats {
        let n = samples.len();
        let mut times: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
        times.sort();
        let median = if n % 2 == 1 {
            times[n / 2]
        } else {
            (times[n / 2 - 1] + times[n / 2]) / 2
        };
        let n32 = n as u32;
        Stats {
            min: times[0],
            median,
            max: times[n - 1],
            cpu: samples.iter().map(|s| s.cpu).sum::<Duration>() / n32,
            requests: samples.iter().map(|s| s.requests).sum::<usize>() as f64 / n as f64,
            moto_cpu: samples.iter().map(|s| s.moto_cpu).sum::<Duration>() / n32,
            max_rss_kb: samples.iter().map(|s| s.max_rss_kb).max().unwrap_or(0),
            runs: n,
        }
    }

    fn once(s: Sample) -> Stats {
        Stats::new(vec![s])
    }
}

struct SizeResult {
    n: usize,
    mix: Mix,
    runs: usize,
    load: String,
    tf_apply: Sample,
    sw_apply: Sample,
    /// (Terraform, Stackwright)
    nochange: (Stats, Stats),
    change: (Stats, Stats),
}

struct Report {
    sizes_asked: Vec<usize>,
    runs: Vec<usize>,
    machine: String,
    tf_version: String,
    sw_version: String,
    moto_version: String,
    results: Vec<SizeResult>,
}

/// How this binary was started: `cargo bench` builds it in target/release, `cargo test`
/// (with `-- --bench`) in target/debug; the stackwright under test is a release build
/// either way.
fn invocation() -> &'static str {
    let release = std::env::current_exe()
        .map(|p| p.components().any(|c| c.as_os_str() == "release"))
        .unwrap_or(true);
    if release {
        "cargo bench --bench plan_vs_terraform"
    } else {
        "cargo test --bench plan_vs_terraform -- --bench"
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

fn mb(kb: u64) -> String {
    format!("{:.0} MB", kb as f64 / 1024.0)
}

fn ratio(tf: Duration, sw: Duration) -> f64 {
    tf.as_secs_f64() / sw.as_secs_f64().max(1e-9)
}

fn join(v: &[usize]) -> String {
    v.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// "met (62×, target 50×)" or "**missed** (32×, target 50×: 36 % short)".
fn verdict(got: f64, target: f64) -> String {
    if got >= target {
        format!("met ({got:.1}×, target ≥{target:.0}×)")
    } else {
        format!(
            "**missed** ({got:.1}×, target ≥{target:.0}×: {:.0} % short)",
            100.0 * (1.0 - got / target)
        )
    }
}

impl Report {
    fn markdown(&self) -> String {
        let mut s = String::new();
        let done: Vec<usize> = self.results.iter().map(|r| r.n).collect();
        let _ = writeln!(
            s,
            "Command: `SW_BENCH_SIZES={} SW_BENCH_RUNS={} {}`{}.\n",
            join(&self.sizes_asked),
            join(&self.runs),
            invocation(),
            if done.len() < self.sizes_asked.len() {
                format!(
                    " (sizes measured so far: {}; the bench rewrites this section after each size)",
                    join(&done)
                )
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            s,
            "Each size: 10 % S3 buckets (versioned, 2 tags), 60 % SSM parameters (every fifth a \
             `SecureString`), 10 % security groups (one ingress rule), 10 % log groups (30-day \
             retention), 10 % single-metric alarms; Terraform counts one more resource per \
             bucket (`aws_s3_bucket_versioning`). A fresh moto per size; both tools apply into \
             it once, then plan with refresh: the no-change plan has 1 warm-up and the timed \
             runs, the one-change plan (the first parameter's value edited, exit code 2) the \
             timed runs only. Times are medians; CPU is the tool's process tree (Terraform's \
             provider plugin included), peak RSS its largest process, both from `wait4`.\n"
        );
        let _ = writeln!(
            s,
            "| resources | what | Terraform | Stackwright | Terraform ÷ Stackwright | target |"
        );
        let _ = writeln!(s, "|--:|---|--:|--:|--:|---|");
        for r in &self.results {
            let a = ratio(r.tf_apply.wall, r.sw_apply.wall);
            let _ = writeln!(
                s,
                "| {} | initial apply (1 run) | {} | {} | {a:.1}× | {} |",
                r.n,
                secs(r.tf_apply.wall),
                secs(r.sw_apply.wall),
                verdict(a, APPLY_TARGET)
            );
            let p = ratio(r.nochange.0.median, r.nochange.1.median);
            let _ = writeln!(
                s,
                "| {} | no-change plan ({} timed) | {} | {} | **{p:.1}×** | {} |",
                r.n,
                r.runs,
                secs(r.nochange.0.median),
                secs(r.nochange.1.median),
                verdict(p, plan_target(r.n))
            );
            let c = ratio(r.change.0.median, r.change.1.median);
            let _ = writeln!(
                s,
                "| {} | one-change plan ({} timed) | {} | {} | {c:.1}× | — |",
                r.n,
                r.runs,
                secs(r.change.0.median),
                secs(r.change.1.median),
            );
        }
        let _ = writeln!(
            s,
            "\nPer process (requests per resource: moto's requests ÷ the stack's resources):\n"
        );
        let _ = writeln!(
            s,
            "| resources | what | tool | wall min / median / max | CPU | peak RSS | moto requests | per resource | moto CPU |"
        );
        let _ = writeln!(s, "|--:|---|---|--:|--:|--:|--:|--:|--:|");
        for r in &self.results {
            let rows = [
                (
                    "initial apply",
                    Stats::once(r.tf_apply),
                    Stats::once(r.sw_apply),
                ),
                ("no-change plan", r.nochange.0, r.nochange.1),
                ("one-change plan", r.change.0, r.change.1),
            ];
            for (what, tf, sw) in &rows {
                for (tool, st) in [("terraform", tf), ("stackwright", sw)] {
                    let wall = if st.runs == 1 {
                        secs(st.median)
                    } else {
                        format!("{} / {} / {}", secs(st.min), secs(st.median), secs(st.max))
                    };
                    let _ = writeln!(
                        s,
                        "| {} | {what} | {tool} | {wall} | {} | {} | {:.0} | {:.2} | {} |",
                        r.n,
                        secs(st.cpu),
                        mb(st.max_rss_kb),
                        st.requests,
                        st.requests / r.n as f64,
                        secs(st.moto_cpu),
                    );
                }
            }
        }
        let _ = writeln!(s);
        for r in &self.results {
            let _ = writeln!(
                s,
                "- {} resources: {} (Terraform: {} resources); load average (1 min) {}.",
                r.n,
                r.mix.describe(),
                r.mix.tf_total(),
                r.load
            );
        }
        // The targets that are not ratios.
        if let Some(r) = self.results.iter().find(|r| r.n >= 2000) {
            let cpu = r.nochange.1.cpu;
            let _ = writeln!(
                s,
                "- Own CPU of the {}-resource no-change plan: {} — {} (target under {}).",
                r.n,
                secs(cpu),
                if cpu < CPU_TARGET_AT_2000 {
                    "met".to_owned()
                } else {
                    format!(
                        "**missed** by {:.0} %",
                        100.0 * (cpu.as_secs_f64() / CPU_TARGET_AT_2000.as_secs_f64() - 1.0)
                    )
                },
                secs(CPU_TARGET_AT_2000)
            );
        }
        let rss = self
            .results
            .iter()
            .flat_map(|r| {
                [
                    r.sw_apply.max_rss_kb,
                    r.nochange.1.max_rss_kb,
                    r.change.1.max_rss_kb,
                ]
            })
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            s,
            "- Stackwright's peak RSS, largest of all its runs above: {} — {} (target under {}).",
            mb(rss),
            if rss < RSS_TARGET_KB {
                "met"
            } else {
                "**missed**"
            },
            mb(RSS_TARGET_KB)
        );
        let _ = writeln!(
            s,
            "\nRun {} on {}. Versions: {}; {}; moto {} (patched by tests/harness/moto_launcher.py); \
             hashicorp/aws provider 5.100.0.",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            self.machine,
            self.tf_version,
            self.sw_version,
            self.moto_version
        );
        s
    }
}

/// Replaces the text between the scale markers of docs/performance.md.
fn update_docs(path: &Path, table: &str) -> Result<()> {
    let old = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (Some(a), Some(b)) = (old.find(DOCS_START), old.find(DOCS_END)) else {
        bail!(
            "{} lacks the {DOCS_START} … {DOCS_END} markers; add them where the results go",
            path.display()
        );
    };
    ensure!(a < b, "{}: the markers are out of order", path.display());
    let text = format!(
        "{}{DOCS_START}\n{table}{DOCS_END}{}",
        &old[..a],
        &old[b + DOCS_END.len()..]
    );
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
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
