//! The S3 state backend (issue 11) against moto: the lock (conditional create), conflicting
//! writers (If-Match), force-unlock of a killed run's lock, push/pull between the local
//! file and S3, audit of a remote history, and the versioning warning. Every outcome is
//! read back from S3 with the SDK, independently of Stackwright.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use stackwright::state::history::Draft;
use stackwright::state::{Backend, S3Backend, SaveError, State};

use crate::common::process::{self, Proc};
use crate::common::{CMD_TIMEOUT, TestEnv};

const BUCKET: &str = "sw-state";
const KEY: &str = "remote/dev.json";
const HISTORY: &str = "remote/dev.history.jsonl";
const LOCK: &str = "remote/dev.json.lock";
const JOURNAL: &str = "remote/dev.json.journal/";

const STACK: &str = r#"[stack]
name = "remote"
region = "us-east-1"
environments = ["dev"]

[backend]
s3 = { bucket = "sw-state", key = "remote/${env}.json" }

[s3_bucket.assets]
name = "remote-${env}-assets"

[ssm_parameter.a]
name = "/remote/${env}/A"
value = "a"

[ssm_parameter.b]
name = "/remote/${env}/B"
value = "b"
"#;

const APPLY: &[&str] = &["apply", "s.toml", "--env", "dev", "--auto-approve"];

async fn state_bucket(env: &TestEnv, versioning: bool) {
    let s3 = env.s3().await;
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    if versioning {
        state_bucket_versioning_on(env).await;
    }
}

/// The object's bytes, read with the SDK; `None` when there is none.
async fn object(env: &TestEnv, key: &str) -> Option<Vec<u8>> {
    match env
        .s3()
        .await
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
    {
        Ok(o) => Some(o.body.collect().await.unwrap().into_bytes().to_vec()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => None,
        Err(e) => panic!("get {key}: {e:?}"),
    }
}

async fn put(env: &TestEnv, key: &str, body: Vec<u8>) {
    env.s3()
        .await
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
}

async fn state_json(env: &TestEnv) -> serde_json::Value {
    serde_json::from_slice(&object(env, KEY).await.expect("state object")).unwrap()
}

async fn journal_objects(env: &TestEnv) -> usize {
    env.s3()
        .await
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(JOURNAL)
        .send()
        .await
        .unwrap()
        .contents()
        .len()
}

fn spawn(env: &TestEnv, args: &[&str]) -> Proc {
    process::spawn(env, args, &[])
}

/// moto 5.2.1 implements S3 conditional writes as AWS does: `If-None-Match: *` and a stale
/// `If-Match` are refused with 412 PreconditionFailed, `If-Match` on a missing key with 404,
/// and of eight writers racing with `If-None-Match: *` exactly one wins (no patch needed;
/// tests/README.md).
#[tokio::test]
async fn moto_conditional_writes_behave_as_on_aws() {
    let env = TestEnv::new();
    state_bucket(&env, false).await;
    let s3 = env.s3().await;
    let put = |key: &'static str, body: &'static str| {
        s3.put_object()
            .bucket(BUCKET)
            .key(key)
            .body(ByteStream::from_static(body.as_bytes()))
    };
    let status = |e: &aws_sdk_s3::error::SdkError<_>| e.raw_response().map(|r| r.status().as_u16());
    let first = put("k", "one").if_none_match("*").send().await.unwrap();
    let e = put("k", "two").if_none_match("*").send().await.unwrap_err();
    assert_eq!(status(&e), Some(412), "{e:?}");
    let etag = first.e_tag().unwrap().to_owned();
    put("k", "three").if_match(&etag).send().await.unwrap();
    let e = put("k", "four").if_match(&etag).send().await.unwrap_err();
    assert_eq!(status(&e), Some(412), "{e:?}");
    let e = put("missing", "x")
        .if_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), Some(404), "{e:?}");
    assert_eq!(object(&env, "k").await.unwrap(), b"three");

    for round in 0..5 {
        let key = format!("race-{round}");
        let tries = (0..8).map(|i| {
            s3.put_object()
                .bucket(BUCKET)
                .key(&key)
                .if_none_match("*")
                .body(ByteStream::from(format!("writer {i}").into_bytes()))
                .send()
        });
        let results = futures::future::join_all(tries).await;
        let won: Vec<usize> = (0..8).filter(|&i| results[i].is_ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {results:?}");
        assert_eq!(
            object(&env, &key).await.unwrap(),
            format!("writer {}", won[0]).into_bytes()
        );
    }
}

#[tokio::test]
async fn two_applies_at_once_one_proceeds_the_other_names_the_holder_or_waits() {
    let env = TestEnv::new();
    state_bucket(&env, true).await;
    env.write("s.toml", STACK);
    // Slow every request down so that both runs overlap for seconds.
    env.proxy().set_delay(Duration::from_millis(60));
    let (a, b) = (spawn(&env, APPLY), spawn(&env, APPLY));
    let (pa, pb) = (a.pid(), b.pid());
    let (ra, rb) = (a.wait(CMD_TIMEOUT), b.wait(CMD_TIMEOUT));
    assert!(
        ra.success() != rb.success(),
        "exactly one must proceed:\n{}\n{}",
        ra.stderr(),
        rb.stderr()
    );
    let (winner, loser) = if ra.success() { (pa, &rb) } else { (pb, &ra) };
    loser
        .assert_code(1)
        .assert_stderr_contains(&format!(
            "state s3://{BUCKET}/{KEY} is locked by apply (pid {winner} on "
        ))
        .assert_stderr_contains("arn:aws:")
        .assert_stderr_contains("held for ")
        .assert_stderr_contains("stackwright force-unlock s.toml --env dev ");
    let state = state_json(&env).await;
    assert_eq!(state["serial"], 1);
    assert_eq!(state["resources"].as_object().unwrap().len(), 3);
    assert!(object(&env, LOCK).await.is_none(), "the lock was released");
    assert!(
        !env.exists("state/remote/dev.json"),
        "nothing written locally"
    );

    // With --lock-timeout the second waits for the first, then finds nothing left to do.
    env.write(
        "s.toml",
        format!("{STACK}\n[ssm_parameter.c]\nname = \"/remote/${{env}}/C\"\nvalue = \"c\"\n"),
    );
    let waiting: Vec<&str> = APPLY
        .iter()
        .copied()
        .chain(["--lock-timeout", "60s"])
        .collect();
    let (a, b) = (spawn(&env, &waiting), spawn(&env, &waiting));
    let (ra, rb) = (a.wait(CMD_TIMEOUT), b.wait(CMD_TIMEOUT));
    ra.assert_success();
    rb.assert_success();
    let idle = [&ra, &rb]
        .iter()
        .filter(|r| r.stdout().contains("Apply complete! Nothing to do."))
        .count();
    assert_eq!(idle, 1, "{}\n{}", ra.stdout(), rb.stdout());
    let state = state_json(&env).await;
    assert_eq!(state["serial"], 2, "one write each time");
    assert!(state["resources"]["ssm_parameter.c"].is_object());
    let history = String::from_utf8(object(&env, HISTORY).await.unwrap()).unwrap();
    assert_eq!(history.lines().count(), 2, "{history}");
    assert!(object(&env, LOCK).await.is_none());
    assert_eq!(journal_objects(&env).await, 0, "the journal was folded");
}

/// Two writers that both loaded serial N: the one that writes second gets the conflict,
/// and the object keeps the first one's state; and when they write at the same instant,
/// S3's If-Match lets exactly one through.
#[tokio::test(flavor = "multi_thread")]
async fn racing_writers_the_loser_gets_a_conflict_and_the_object_keeps_the_winner() {
    let env = TestEnv::new();
    state_bucket(&env, true).await;
    let client = env.s3().await;
    let backend = || S3Backend::new(client.clone(), BUCKET, KEY, None);
    let draft = Draft::new("test");
    let mut s = State::new("remote", Some("dev"));
    backend().save(&mut s, None, &draft).await.unwrap();

    let (a, b) = (backend(), backend());
    let mut sa = a.load().await.unwrap().unwrap();
    let mut sb = b.load().await.unwrap().unwrap();
    sa.records.insert("writer".into(), "a".into());
    sb.records.insert("writer".into(), "b".into());
    assert_eq!(a.save(&mut sa, Some(1), &draft).await.unwrap(), 2);
    let err = b.save(&mut sb, Some(1), &draft).await.unwrap_err();
    assert!(
        matches!(err, SaveError::Conflict { found: Some(2), .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("was changed by another run (serial Some(2), this run expected Some(1)); nothing was overwritten"),
        "{err}"
    );
    assert_eq!(object(&env, KEY).await.unwrap(), sa.to_json().into_bytes());

    // At the same instant, from the same ETag.
    for round in 0..3 {
        let serial = 2 + round;
        let (c, d) = (backend(), backend());
        let mut sc = c.load().await.unwrap().unwrap();
        let mut sd = d.load().await.unwrap().unwrap();
        sc.records
            .insert("writer".into(), format!("c{round}").into());
        sd.records
            .insert("writer".into(), format!("d{round}").into());
        let (rc, rd) = tokio::join!(
            c.save(&mut sc, Some(serial), &draft),
            d.save(&mut sd, Some(serial), &draft)
        );
        assert!(rc.is_ok() != rd.is_ok(), "round {round}: {rc:?} {rd:?}");
        let (winner, loser) = if rc.is_ok() { (&sc, rd) } else { (&sd, rc) };
        assert!(
            matches!(loser, Err(SaveError::Conflict { .. })),
            "{loser:?}"
        );
        assert_eq!(
            object(&env, KEY).await.unwrap(),
            winner.to_json().into_bytes()
        );
    }
    // No loser left a record behind: the chain verifies, one record per won write.
    let report = backend().audit().await.unwrap();
    assert_eq!(report.broken, None, "{report:?}");
    assert_eq!(report.records.len(), 5);

    // The primitive itself: a state write conditional on an ETag someone else replaced.
    let key = "primitive/dev.json";
    let p = S3Backend::new(client.clone(), BUCKET, key, None);
    let etag = p.put_state_if(b"first".to_vec(), None).await.unwrap();
    assert!(p.put_state_if(b"second".to_vec(), None).await.is_err());
    p.put_state_if(b"third".to_vec(), Some(&etag))
        .await
        .unwrap();
    let lost = p.put_state_if(b"fourth".to_vec(), Some(&etag)).await;
    assert!(matches!(lost, Err(SaveError::Conflict { .. })), "{lost:?}");
    assert_eq!(object(&env, key).await.unwrap(), b"third");
}

#[tokio::test]
async fn a_killed_runs_lock_stays_until_force_unlock_with_its_id() {
    let env = TestEnv::new();
    state_bucket(&env, true).await;
    env.write("s.toml", STACK);
    env.proxy().set_delay(Duration::from_millis(150));
    let mut holder = spawn(&env, APPLY);
    assert!(
        holder.wait_for(CMD_TIMEOUT, |out, _| out.contains("Creating...")),
        "the holder must be applying: {}{}",
        holder.stdout(),
        holder.stderr()
    );
    // Killed once its journal is on S3 (Begin and at least one intent).
    let start = std::time::Instant::now();
    while journal_objects(&env).await < 2 {
        assert!(
            start.elapsed() < CMD_TIMEOUT,
            "no journal: {}",
            holder.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = holder.pid();
    holder.kill();
    env.proxy().set_delay(Duration::ZERO);

    let lock: serde_json::Value =
        serde_json::from_slice(&object(&env, LOCK).await.expect("a stale lock")).unwrap();
    assert_eq!(lock["pid"], pid);
    assert_eq!(lock["operation"], "apply");
    assert!(
        lock["arn"].as_str().unwrap().starts_with("arn:aws:"),
        "{lock}"
    );
    let id = lock["id"].as_str().unwrap().to_owned();

    env.run(APPLY)
        .assert_code(1)
        .assert_stderr_contains(&format!("locked by apply (pid {pid} on "))
        .assert_stderr_contains(&format!("stackwright force-unlock s.toml --env dev {id}"));
    env.run(["force-unlock", "s.toml", "--env", "dev", "not-the-id"])
        .assert_code(1)
        .assert_stderr_contains(
            "refusing to unlock s3://sw-state/remote/dev.json: its lock id is not not-the-id",
        )
        .assert_stderr_contains(&format!("pid {pid} on "))
        .assert_stderr_contains(&format!("lock id {id}"));
    assert!(
        object(&env, LOCK).await.is_some(),
        "a wrong id changes nothing"
    );
    env.ok(["force-unlock", "s.toml", "--env", "dev", &id])
        .assert_stdout_contains(&format!(
            "Released the lock {id} on s3://sw-state/remote/dev.json"
        ));
    assert!(object(&env, LOCK).await.is_none());
    env.ok(["force-unlock", "s.toml", "--env", "dev", &id])
        .assert_stdout_contains("is not locked: nothing to do");

    // The next run (from any machine) folds in what the killed one journalled on S3,
    // and converges.
    env.ok(APPLY);
    env.ok(["plan", "s.toml", "--env", "dev", "--detailed-exitcode"]);
    assert_eq!(journal_objects(&env).await, 0);
    let history = String::from_utf8(object(&env, HISTORY).await.unwrap()).unwrap();
    let first: serde_json::Value = serde_json::from_str(history.lines().next().unwrap()).unwrap();
    assert_eq!(first["command"], "recover", "{history}");
    env.ok(["audit", "s.toml", "--env", "dev"]);

    // A local state's lock is the OS's.
    env.write(
        "l.toml",
        STACK.replace(
            "[backend]\ns3 = { bucket = \"sw-state\", key = \"remote/${env}.json\" }\n",
            "",
        ),
    );
    env.ok(["force-unlock", "l.toml", "--env", "dev", &id])
        .assert_stdout_contains(
            "its lock is an OS lock, which the OS releases when the process holding it exits",
        );
}

#[tokio::test]
async fn push_and_pull_round_trip_byte_identically_and_refuse_other_states() {
    let env = TestEnv::new();
    state_bucket(&env, true).await;
    env.write("s.toml", STACK);
    let local = "state/remote/dev.json";
    let local_history = "state/remote/dev.history.jsonl";
    env.ok(APPLY.iter().copied().chain(["--state", local]));
    assert!(object(&env, KEY).await.is_none());

    env.ok(["state", "push", "s.toml", "--env", "dev"])
        .assert_stdout_contains("Copied state serial 1")
        .assert_stdout_contains("(1 record)");
    assert_eq!(
        object(&env, KEY).await.unwrap(),
        env.read(local).into_bytes()
    );
    assert_eq!(
        object(&env, HISTORY).await.unwrap(),
        env.read(local_history).into_bytes()
    );
    env.ok([
        "state",
        "pull",
        "s.toml",
        "--env",
        "dev",
        "--state",
        "pulled/dev.json",
    ]);
    assert_eq!(env.read("pulled/dev.json"), env.read(local));
    assert_eq!(
        env.read("pulled/dev.history.jsonl"),
        env.read(local_history)
    );
    env.ok(["audit", "s.toml", "--env", "dev"])
        .assert_stdout_contains("History of s3://sw-state/remote/dev.json: 1 record");
    env.ok([
        "audit",
        "s.toml",
        "--env",
        "dev",
        "--state",
        "pulled/dev.json",
    ]);
    env.ok(["state", "push", "s.toml", "--env", "dev"])
        .assert_stdout_contains("already holds this state");

    // S3 moves on (serial 2): pushing the older local copy is refused, pulling is not.
    env.ok(["state", "rm", "s.toml", "--env", "dev", "ssm_parameter.b"]);
    let remote = object(&env, KEY).await.unwrap();
    env.run(["state", "push", "s.toml", "--env", "dev"])
        .assert_code(1)
        .assert_stderr_contains("is newer (serial 2) than state/remote/dev.json (serial 1)");
    assert_eq!(object(&env, KEY).await.unwrap(), remote);
    env.ok(["state", "pull", "s.toml", "--env", "dev"]);
    assert_eq!(env.read(local).into_bytes(), remote);
    env.ok(["audit", "s.toml", "--env", "dev", "--state", local]);

    // Another lineage: refused, and --force replaces it.
    let lineage = state_json(&env).await["lineage"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = env
        .read(local)
        .replace(&lineage, "00000000-0000-4000-8000-000000000000")
        .replace("\"serial\": 2", "\"serial\": 7");
    env.write("other/dev.json", &other);
    env.run([
        "state",
        "push",
        "s.toml",
        "--env",
        "dev",
        "--state",
        "other/dev.json",
    ])
    .assert_code(1)
    .assert_stderr_contains("holds a different state (lineage")
    .assert_stderr_contains("--force");
    assert_eq!(object(&env, KEY).await.unwrap(), remote);
    env.ok([
        "state",
        "push",
        "s.toml",
        "--env",
        "dev",
        "--state",
        "other/dev.json",
        "--force",
    ]);
    assert_eq!(object(&env, KEY).await.unwrap(), other.into_bytes());
    assert!(object(&env, LOCK).await.is_none());
}

#[tokio::test]
async fn audit_verifies_a_remote_history_and_names_the_tampered_record() {
    let env = TestEnv::new();
    state_bucket(&env, true).await;
    env.write("s.toml", STACK);
    // A saved plan names the S3 backend; applying it writes there.
    env.ok(["plan", "s.toml", "--env", "dev", "--out", "p.plan"]);
    let plan: serde_json::Value = serde_json::from_str(&env.read("p.plan")).unwrap();
    assert_eq!(
        plan["stack"]["backend"],
        serde_json::json!({"kind": "s3", "bucket": BUCKET, "key": KEY})
    );
    env.ok(["apply", "p.plan"]);
    env.ok(["state", "rm", "s.toml", "--env", "dev", "ssm_parameter.b"]);
    assert!(!env.exists("state"), "nothing is written locally");
    env.ok(["audit", "s.toml", "--env", "dev"])
        .assert_stdout_contains("History of s3://sw-state/remote/dev.json: 2 records")
        .assert_stdout_contains("The history verifies");

    let history = String::from_utf8(object(&env, HISTORY).await.unwrap()).unwrap();
    put(
        &env,
        HISTORY,
        history.replacen("\"apply\"", "\"applY\"", 1).into_bytes(),
    )
    .await;
    env.run(["audit", "s.toml", "--env", "dev"])
        .assert_code(1)
        .assert_stderr_contains("record 1 does not verify");
    put(&env, HISTORY, history.into_bytes()).await;
    env.ok(["audit", "s.toml", "--env", "dev"]);

    let state = String::from_utf8(object(&env, KEY).await.unwrap()).unwrap();
    put(
        &env,
        KEY,
        state.replace("/remote/dev/A", "/remote/dev/Z").into_bytes(),
    )
    .await;
    env.run(["audit", "s.toml", "--env", "dev", "--json"])
        .assert_code(1)
        .assert_stdout_contains("\"record\": 2");
}

#[tokio::test]
async fn a_bucket_without_versioning_is_a_warning_not_an_error() {
    let env = TestEnv::new();
    state_bucket(&env, false).await;
    env.write("s.toml", STACK);
    env.ok(APPLY).assert_stderr_contains(
        "Warning: bucket sw-state keeps no object versions: an overwritten state could not be recovered",
    );
    assert_eq!(state_json(&env).await["serial"], 1);
    state_bucket_versioning_on(&env).await;
    let run = env.ok(["plan", "s.toml", "--env", "dev"]);
    assert!(
        !run.stderr().contains("keeps no object versions"),
        "{}",
        run.stderr()
    );
}

async fn state_bucket_versioning_on(env: &TestEnv) {
    env.s3()
        .await
        .put_bucket_versioning()
        .bucket(BUCKET)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
}
