//! `stackwright plan` behind a latency-injecting proxy: does concurrency, not the number of
//! resources, bound the wall time? (issue 12; docs/performance.md has the results.)
//!
//! Run with `cargo bench --bench latency_bound`. Without `--bench` among the arguments (as
//! under `cargo test --all-targets`) it prints one line and returns.
//!
//! For each size it applies a stack of SSM parameters straight to one moto server
//! (`tests/harness/moto_launcher.py`), three in four plain (read ten to a GetParameters
//! call) and one in four tagged (read alone: GetParameter, DescribeParameters and
//! ListTagsForResource at once). Then it puts the test harness's fault proxy in front of
//! moto with a fixed delay per request and times no-change plans at two `--concurrency`
//! settings. Each row reports the requests the proxy saw, the most it saw in flight at
//! once, the wall time, and the lower bound `requests ÷ in flight × latency`: the time the
//! same calls take when nothing but the latency counts.
//!
//! Environment: `SW_LAT_SIZES` (default `100,400,1600`), `SW_LAT_MS` (delay per request,
//! default 50), `SW_BENCH_BIN` (the binary; default: `cargo build --release` and use that).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark reports on the terminal

#[path = "../tests/common/proxy.rs"]
#[allow(dead_code)]
mod proxy;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench --bench latency_bound`");
        return;
    }
    if let Err(e) = run() {
        eprintln!("\nlatency_bound FAILED: {e:#}");
        std::process::exit(1);
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn binary(root: &Path) -> Result<PathBuf> {
    if let Ok(b) = std::env::var("SW_BENCH_BIN") {
        return Ok(PathBuf::from(b));
    }
    let ok = Command::new(env!("CARGO"))
        .args(["build", "--release", "--bin", "stackwright"])
        .current_dir(root)
        .status()?
        .success();
    ensure!(ok, "cargo build --release failed");
    Ok(root.join("target/release/stackwright"))
}

/// The harness's moto on a free port, stopped on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start(root: &Path, dir: &Path) -> Result<Moto> {
        let port_file = dir.join("moto.port");
        let child = Command::new(root.join(".venv/bin/python"))
            .arg(root.join("tests/harness/moto_launcher.py"))
            .args(["--port", "0", "--port-file"])
            .arg(&port_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting moto (run scripts/setup.sh first)")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return Ok(Moto { child, port });
            }
            if Instant::now() > deadline {
                bail!("moto did not start within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stack(n: usize) -> String {
    let mut s = format!("[stack]\nname = \"lat{n}\"\nregion = \"us-east-1\"\n");
    for i in 0..n {
        let tags = if i % 4 == 3 {
            format!("tags = {{ n = \"{i}\" }}\n")
        } else {
            String::new()
        };
        let _ = write!(
            s,
            "\n[ssm_parameter.p{i}]\nname = \"/lat{n}/p{i}\"\nvalue = \"v-{i}\"\n{tags}"
        );
    }
    s
}

fn stackwright(bin: &Path, dir: &Path, endpoint: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn run() -> Result<()> {
    let root = root();
    let sizes = env_list("SW_LAT_SIZES", "100,400,1600");
    let latency = Duration::from_millis(
        std::env::var("SW_LAT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50),
    );
    let bin = binary(&root)?;
    let dir = tempfile::tempdir()?;
    let moto = Moto::start(&root, dir.path())?;
    let direct = format!("http://127.0.0.1:{}", moto.port);
    let proxy = proxy::FaultProxy::start(moto.port);
    proxy.set_delay(latency);
    let mut table = String::from(
        "| parameters | `--concurrency` | requests | most in flight | wall | lower bound (requests ÷ in flight × latency) | wall ÷ bound |\n|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for &n in &sizes {
        let work = dir.path().join(format!("s{n}"));
        std::fs::create_dir_all(&work)?;
        std::fs::write(work.join("lat.toml"), stack(n))?;
        let out = stackwright(
            &bin,
            &work,
            &direct,
            &["apply", "lat.toml", "--auto-approve"],
        )
        .output()?;
        ensure!(
            out.status.success(),
            "apply of {n} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for concurrency in ["16", "64"] {
            // A fresh proxy per row, so its in-flight high-water mark is this plan's own.
            let proxy = proxy::FaultProxy::start(moto.port);
            proxy.set_delay(latency);
            let t = Instant::now();
            let out = stackwright(
                &bin,
                &work,
                &proxy.endpoint(),
                &[
                    "plan",
                    "lat.toml",
                    "--detailed-exitcode",
                    "--concurrency",
                    concurrency,
                ],
            )
            .output()?;
            let wall = t.elapsed();
            ensure!(
                out.status.code() == Some(0),
                "the no-change plan of {n} exited {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
            let requests = proxy.requests();
            let in_flight = proxy.max_in_flight().max(1);
            let bound = latency.mul_f64(requests as f64 / in_flight as f64);
            let row = format!(
                "| {n} | {concurrency} | {requests} | {in_flight} | {:.2} s | {:.2} s | {:.2} |\n",
                wall.as_secs_f64(),
                bound.as_secs_f64(),
                wall.as_secs_f64() / bound.as_secs_f64()
            );
            print!("{row}");
            table.push_str(&row);
        }
    }
    drop(proxy);
    println!(
        "\nlatency {} ms a request, binary {}\n\n{table}",
        latency.as_millis(),
        bin.display()
    );
    Ok(())
}
