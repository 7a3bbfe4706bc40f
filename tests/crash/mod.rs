//! Issue 6's crash-safety tests against the real binary, real moto: SIGKILL at many points
//! of an apply and of a destroy, each followed by a plain re-run with no hand repair; two
//! applies and one lock; SIGINT; import. Results are read back through the SDK.

use std::time::{Duration, Instant};

use crate::common::process::{self, Proc};
use crate::common::{CMD_TIMEOUT, TestEnv};

const BUCKETS: usize = 15;
const PARAMS: usize = 25;

/// 40 resources: buckets with versioning and tags (several calls each), plain parameters,
/// some referencing a bucket, and a SecureString.
fn stack() -> String {
    let mut s = String::from("[stack]\nname = \"crash\"\nregion = \"us-east-1\"\n\n");
    for i in 0..BUCKETS {
        s.push_str(&format!(
            "[s3_bucket.b{i}]\nname = \"crash-b{i}\"\nversioning = true\ntags = {{ n = \"{i}\" }}\n\n"
        ));
    }
    for i in 0..PARAMS {
        if i == 0 {
            s.push_str("[ssm_parameter.p0]\nname = \"/crash/p0\"\ntype = \"SecureString\"\nvalue = { from_env = \"CRASH_SECRET\" }\n\n");
        } else {
            s.push_str(&format!(
                "[ssm_parameter.p{i}]\nname = \"/crash/p{i}\"\nvalue = \"${{s3_bucket.b{}.arn}}\"\n\n",
                i % BUCKETS
            ));
        }
    }
    s
}

const SECRET: (&str, &str) = ("CRASH_SECRET", "crash-secret-value");

fn setup() -> TestEnv {
    let env = TestEnv::new();
    env.write("crash.toml", stack());
    env
}

fn apply_args() -> Vec<&'static str> {
    // One action at a time: the run is long enough to kill at many points.
    vec![
        "apply",
        "crash.toml",
        "--auto-approve",
        "--concurrency",
        "1",
    ]
}

fn run_ok(env: &TestEnv, args: &[&str]) {
    env.run_with(args, |c| {
        c.env(SECRET.0, SECRET.1);
    })
    .assert_success();
}

/// (buckets, parameters) that exist in AWS, with duplicates counted.
async fn counts(env: &TestEnv) -> (Vec<String>, Vec<String>) {
    let buckets: Vec<String> = env
        .s3()
        .await
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    let mut params = Vec::new();
    let ssm = env.ssm().await;
    let mut token = None;
    loop {
        let out = ssm
            .describe_parameters()
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        params.extend(
            out.parameters()
                .iter()
                .filter_map(|p| p.name().map(str::to_owned)),
        );
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    (buckets, params)
}

fn spawn_apply(env: &TestEnv, extra: &[&str]) -> Proc {
    let mut args = apply_args();
    args.extend_from_slice(extra);
    process::spawn(env, &args, &[SECRET])
}

/// Checks convergence after a kill: plain apply, then no changes, then exactly the stack's
/// resources in AWS. Returns (duplicates, orphans).
async fn converge(env: &TestEnv) -> (usize, usize) {
    run_ok(env, &apply_args());
    env.run_with(["plan", "crash.toml", "--detailed-exitcode"], |c| {
        c.env(SECRET.0, SECRET.1);
    })
    .assert_code(0);
    let (buckets, params) = counts(env).await;
    let mut unique_b = buckets.clone();
    unique_b.sort();
    unique_b.dedup();
    let mut unique_p = params.clone();
    unique_p.sort();
    unique_p.dedup();
    let duplicates = (buckets.len() - unique_b.len()) + (params.len() - unique_p.len());
    let orphans = unique_b
        .iter()
        .filter(|b| !(0..BUCKETS).any(|i| **b == format!("crash-b{i}")))
        .count()
        + unique_p
            .iter()
            .filter(|p| !(0..PARAMS).any(|i| **p == format!("/crash/p{i}")))
            .count();
    assert_eq!(unique_b.len(), BUCKETS, "{buckets:?}");
    assert_eq!(unique_p.len(), PARAMS, "{params:?}");
    (duplicates, orphans)
}

#[tokio::test]
async fn kill_loop_apply_converges() {
    // An uninterrupted run gives the length to spread the kills over.
    let probe = setup();
    let t0 = Instant::now();
    run_ok(&probe, &apply_args());
    let length = t0.elapsed();
    drop(probe);

    let points = 10;
    let (mut converged, mut duplicates, mut orphans, mut mid_run) = (0, 0, 0, 0);
    for k in 1..=points {
        let env = setup();
        let mut p = spawn_apply(&env, &[]);
        std::thread::sleep(length.mul_f64(k as f64 / (points + 1) as f64));
        if p.running() {
            mid_run += 1;
        }
        p.kill();
        let (d, o) = converge(&env).await;
        converged += 1;
        duplicates += d;
        orphans += o;
    }
    eprintln!(
        "kill loop (apply, {} resources, uninterrupted {:.1}s): kills tried {points}, killed mid-run {mid_run}, converged {converged}, duplicates {duplicates}, orphans {orphans}",
        BUCKETS + PARAMS,
        length.as_secs_f64()
    );
    assert_eq!((converged, duplicates, orphans), (points, 0, 0));
    assert!(mid_run >= points / 2, "most kills must land mid-run");
}

/// Kills timed inside single requests: moto behind the fault proxy with 40 ms added to every
/// request, so that most kill points fall while a call is in flight (counted by the proxy:
/// the request reached the proxy and had no reply yet).
#[tokio::test]
async fn kill_loop_mid_request_converges() {
    const DELAY: Duration = Duration::from_millis(40);
    let probe = setup();
    probe.proxy().set_delay(DELAY);
    let t0 = Instant::now();
    run_ok(&probe, &apply_args());
    let length = t0.elapsed();
    drop(probe);

    let points = 5;
    let (mut converged, mut duplicates, mut orphans, mut in_request) = (0, 0, 0, 0);
    for k in 1..=points {
        let env = setup();
        let proxy = env.proxy();
        proxy.set_delay(DELAY);
        let mut p = spawn_apply(&env, &[]);
        std::thread::sleep(length.mul_f64(k as f64 / (points + 1) as f64));
        if proxy.in_flight() > 0 {
            in_request += 1;
        }
        p.kill();
        proxy.set_delay(Duration::ZERO);
        let (d, o) = converge(&env).await;
        converged += 1;
        duplicates += d;
        orphans += o;
    }
    eprintln!(
        "kill loop (apply, mid-request, {} ms a request, uninterrupted {:.1}s): kills tried {points}, inside a request {in_request}, converged {converged}, duplicates {duplicates}, orphans {orphans}",
        DELAY.as_millis(),
        length.as_secs_f64()
    );
    assert_eq!((converged, duplicates, orphans), (points, 0, 0));
    assert!(
        in_request >= points / 2,
        "most kills must land inside a request"
    );
}

#[tokio::test]
async fn kill_loop_destroy_converges() {
    let probe = setup();
    run_ok(&probe, &apply_args());
    let t0 = Instant::now();
    run_ok(
        &probe,
        &[
            "destroy",
            "crash.toml",
            "--auto-approve",
            "--concurrency",
            "1",
        ],
    );
    let length = t0.elapsed();
    drop(probe);
    let points = 5;
    for k in 1..=points {
        let env = setup();
        run_ok(&env, &apply_args());
        let mut p = process::spawn(
            &env,
            &[
                "destroy",
                "crash.toml",
                "--auto-approve",
                "--concurrency",
                "1",
            ],
            &[SECRET],
        );
        std::thread::sleep(length.mul_f64(k as f64 / (points + 1) as f64));
        p.kill();
        run_ok(&env, &["destroy", "crash.toml", "--auto-approve"]);
        let (buckets, params) = counts(&env).await;
        assert!(
            buckets.is_empty() && params.is_empty(),
            "{buckets:?} {params:?}"
        );
        let state: serde_json::Value = serde_json::from_str(&env.read("state/crash.json")).unwrap();
        assert_eq!(state["resources"], serde_json::json!({}), "{state}");
    }
    eprintln!("kill loop (destroy): kills tried {points}, converged {points}, left behind 0");
}

#[tokio::test]
async fn two_applies_one_lock_and_a_dead_holder_never_blocks() {
    let env = setup();
    let mut holder = spawn_apply(&env, &[]);
    assert!(
        holder.wait_for(CMD_TIMEOUT, |out, _| out.contains("Creating...")),
        "the holder must be applying: {}",
        holder.stdout()
    );
    let second = env.run_with(apply_args(), |c| {
        c.env(SECRET.0, SECRET.1);
    });
    second
        .assert_code(1)
        .assert_stderr_contains(&format!("locked by apply (pid {}", holder.pid()));
    // A waiter proceeds once the holder is gone, even when it dies without cleaning up.
    let mut waiter = spawn_apply(&env, &["--lock-timeout", "60s"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        waiter.running(),
        "the waiter must wait: {}",
        waiter.stderr()
    );
    holder.kill();
    let run = waiter.wait(CMD_TIMEOUT);
    run.assert_success();
    env.run_with(["plan", "crash.toml", "--detailed-exitcode"], |c| {
        c.env(SECRET.0, SECRET.1);
    })
    .assert_code(0);
}

#[tokio::test]
async fn sigint_finishes_running_calls_and_exits_130() {
    let env = setup();
    let mut p = spawn_apply(&env, &[]);
    assert!(p.wait_for(CMD_TIMEOUT, |out, _| out.contains("Creation complete")));
    p.interrupt();
    let run = p.wait(CMD_TIMEOUT);
    run.assert_code(130)
        .assert_stderr_contains("Apply interrupted.")
        .assert_stderr_contains("Interrupt received (SIGINT)");
    // Everything that completed is in state; the lock is free at once.
    let state: serde_json::Value = serde_json::from_str(&env.read("state/crash.json")).unwrap();
    let recorded = state["resources"].as_object().unwrap().len();
    assert!(recorded > 0 && recorded < BUCKETS + PARAMS, "{recorded}");
    assert!(!env.exists("state/crash.json.lock"), "lock released");
    let (d, o) = converge(&env).await;
    assert_eq!((d, o), (0, 0));
}

#[tokio::test]
async fn import_command_and_table_adopt_existing_resources() {
    let env = TestEnv::new();
    let s3 = env.s3().await;
    for b in ["legacy-one", "legacy-two"] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    env.ssm()
        .await
        .put_parameter()
        .name("/legacy/p")
        .value("v1")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let body = "[stack]\nname = \"imp\"\nregion = \"us-east-1\"\n\n[s3_bucket.one]\nname = \"legacy-one\"\ntags = { team = \"a\" }\n\n[s3_bucket.two]\nname = \"legacy-two\"\nblock_public_access = false\n\n[ssm_parameter.p]\nname = \"/legacy/p\"\nvalue = \"v1\"\n";
    env.write("imp.toml", body);
    // Not ours, and no intent explains it: refused, naming the import command.
    env.fail(["plan", "imp.toml"])
        .assert_stderr_contains("stackwright import imp.toml s3_bucket.one legacy-one");
    env.ok(["import", "imp.toml", "s3_bucket.one", "legacy-one"]);
    env.ok(["import", "imp.toml", "ssm_parameter.p", "/legacy/p"]);
    // Reviewed through plan: the [[import]] table.
    env.write(
        "imp.toml",
        format!("{body}\n[[import]]\nto = \"s3_bucket.two\"\nid = \"legacy-two\"\n"),
    );
    let plan = env.run(["plan", "imp.toml", "--detailed-exitcode"]);
    plan.assert_code(2)
        .assert_stdout_contains("imported: `legacy-two` exists in AWS")
        .assert_stdout_contains("= {} -> { team = \"a\" }")
        .assert_stdout_contains("Plan: 0 to add, 1 to change, 0 to replace, 0 to destroy.")
        .assert_stdout_contains("State: 1 to adopt");
    env.ok(["apply", "imp.toml", "--auto-approve"]);
    env.run(["plan", "imp.toml", "--detailed-exitcode"])
        .assert_code(0);
    let tags = s3
        .get_bucket_tagging()
        .bucket("legacy-one")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set()[0].key(), "team");
    // An id that does not exist is refused at plan time, with the address.
    env.write(
        "bad.toml",
        "[stack]\nname = \"bad\"\n[s3_bucket.x]\nname = \"nope\"\n[[import]]\nto = \"s3_bucket.x\"\nid = \"nope\"\n",
    );
    env.fail(["plan", "bad.toml"])
        .assert_stderr_contains("s3_bucket.x: cannot import `nope`");
}
