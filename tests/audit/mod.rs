//! History and `stackwright audit` (issue 11): every state write appends one hash-chained
//! record beside the state; `audit` verifies the chain and the state against it, prints
//! who did what, and exits 1 naming the first record that does not verify. Against moto.

use crate::common::TestEnv;

const STACK: &str = r#"[stack]
name = "aud"
region = "us-east-1"
environments = ["dev"]

[s3_bucket.assets]
name = "aud-${env}-assets"

[ssm_parameter.token]
name = "/aud/${env}/TOKEN"
type = "SecureString"
value = { from_env = "AUD_TOKEN" }
"#;

const HISTORY: &str = "state/aud/dev.history.jsonl";
const STATE: &str = "state/aud/dev.json";
const CANARY: &str = "canary-7f3e9a-never-in-history";

fn run(env: &TestEnv, args: &[&str]) -> crate::common::Run {
    env.run_with(args.iter().copied(), |c| {
        c.env("AUD_TOKEN", CANARY);
    })
}

fn records(env: &TestEnv) -> Vec<serde_json::Value> {
    env.read(HISTORY)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn every_write_is_recorded_and_audit_names_the_first_tampered_record() {
    let env = TestEnv::new();
    env.write("s.toml", STACK);
    run(&env, &["apply", "s.toml", "--env", "dev", "--auto-approve"]).assert_success();

    // A no-op apply writes neither the state nor the history.
    let state_before = env.read(STATE);
    run(&env, &["apply", "s.toml", "--env", "dev", "--auto-approve"]).assert_success();
    assert_eq!(
        env.read(STATE),
        state_before,
        "a no-op apply leaves the state byte-identical"
    );
    assert_eq!(records(&env).len(), 1);

    // An outside edit restored, then a destroy: one record each.
    env.ssm()
        .await
        .put_parameter()
        .name("/aud/dev/TOKEN")
        .value("edited outside")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    run(&env, &["apply", "s.toml", "--env", "dev", "--auto-approve"]).assert_success();
    run(
        &env,
        &["destroy", "s.toml", "--env", "dev", "--auto-approve"],
    )
    .assert_success();

    let recs = records(&env);
    assert_eq!(recs.len(), 3, "{recs:#?}");
    assert_eq!(recs[0]["command"], "apply");
    assert_eq!(recs[0]["serial_before"], serde_json::Value::Null);
    assert_eq!(recs[0]["serial_after"], 1);
    let touched: Vec<(String, String)> = recs[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_owned(),
                c["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        touched.contains(&("s3_bucket.assets".into(), "create".into())),
        "{touched:?}"
    );
    assert!(touched.contains(&("ssm_parameter.token".into(), "create".into())));
    assert_eq!(recs[1]["changes"][0]["address"], "ssm_parameter.token");
    assert_eq!(recs[1]["changes"][0]["action"], "update");
    assert_eq!(recs[2]["command"], "destroy");
    assert_eq!(recs[2]["serial_before"], 2);
    assert!(
        recs[0]["actor"]["user"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );
    assert!(
        recs[0]["actor"]["caller_arn"]
            .as_str()
            .is_some_and(|a| a.starts_with("arn:aws:"))
    );
    assert!(
        recs[0]["stack_digest"]
            .as_str()
            .is_some_and(|d| d.len() == 64)
    );
    // The history holds no secret value (the state does not either).
    for text in [env.read(HISTORY), env.read(STATE)] {
        assert!(!text.contains(CANARY) && !text.contains("edited outside"));
    }

    let audit = env.ok(["audit", "s.toml", "--env", "dev"]);
    audit
        .assert_stdout_contains("3 records")
        .assert_stdout_contains("create s3_bucket.assets")
        .assert_stdout_contains("update ssm_parameter.token")
        .assert_stdout_contains("The history verifies");
    let json = env
        .ok(["audit", "s.toml", "--env", "dev", "--json"])
        .stdout_json();
    assert_eq!(json["verified"], true);
    assert_eq!(json["records"].as_array().unwrap().len(), 3);

    // Changing any byte of any record, or of the state, makes audit exit 1 naming it.
    let orig = env.read(HISTORY);
    let lines: Vec<&str> = orig.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let edited = line.replacen("\"serial_after\":", "\"serial_after\": ", 1);
        assert_ne!(&edited, line);
        let mut all = lines.clone();
        all[i] = &edited;
        env.write(HISTORY, all.join("\n") + "\n");
        let bad = env.fail(["audit", "s.toml", "--env", "dev"]);
        bad.assert_code(1)
            .assert_stderr_contains(&format!("record {} does not verify", i + 1));
        let json = env.run(["audit", "s.toml", "--env", "dev", "--json"]);
        assert_eq!(json.code(), Some(1));
        assert_eq!(json.stdout_json()["broken"]["record"], i as u64 + 1);
    }
    // A dropped record.
    env.write(HISTORY, lines[..2].join("\n") + "\n");
    env.fail(["audit", "s.toml", "--env", "dev"]).assert_code(1);
    env.write(HISTORY, &orig);
    env.ok(["audit", "s.toml", "--env", "dev"]);

    let state = env.read(STATE);
    env.write(STATE, state.replacen("\"serial\": 3", "\"serial\": 4", 1));
    env.fail(["audit", "s.toml", "--env", "dev"])
        .assert_code(1)
        .assert_stderr_contains("record 3 does not verify")
        .assert_stderr_contains("changed outside Stackwright");
    env.write(STATE, &state);
    env.ok(["audit", "s.toml", "--env", "dev"]);
}

#[tokio::test]
async fn import_and_migration_free_stacks_are_recorded_too() {
    let env = TestEnv::new();
    env.write("s.toml", STACK);
    env.s3()
        .await
        .create_bucket()
        .bucket("aud-dev-assets")
        .send()
        .await
        .unwrap();
    run(
        &env,
        &[
            "import",
            "s.toml",
            "--env",
            "dev",
            "s3_bucket.assets",
            "aud-dev-assets",
        ],
    )
    .assert_success();
    let recs = records(&env);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["command"], "import");
    assert_eq!(recs[0]["changes"][0]["address"], "s3_bucket.assets");
    env.ok(["audit", "s.toml", "--env", "dev"])
        .assert_stdout_contains("import s3_bucket.assets");
}

/// `state list|show|mv|rm`: mv renames without recreating (the next plan, with the table
/// renamed too, has no changes and the bucket is the same), rm forgets without deleting
/// (the parameter is still in AWS), each writes a history record, and audit verifies.
#[tokio::test]
async fn state_mv_and_rm_edit_state_only_and_are_recorded() {
    let env = TestEnv::new();
    env.write("s.toml", STACK);
    run(&env, &["apply", "s.toml", "--env", "dev", "--auto-approve"]).assert_success();

    env.ok(["state", "list", "s.toml", "--env", "dev"])
        .assert_stdout_contains("s3_bucket.assets")
        .assert_stdout_contains("aud-dev-assets")
        .assert_stdout_contains("ssm_parameter.token");
    let show = env.ok([
        "state",
        "show",
        "s.toml",
        "--env",
        "dev",
        "s3_bucket.assets",
    ]);
    show.assert_stdout_contains("\"id\": \"aud-dev-assets\"");
    env.fail(["state", "show", "s.toml", "--env", "dev", "s3_bucket.asets"])
        .assert_code(1)
        .assert_stderr_contains("did you mean `s3_bucket.assets`?");

    // Refused: another kind, an address already taken; nothing written.
    let before = env.read(STATE);
    env.fail([
        "state",
        "mv",
        "s.toml",
        "--env",
        "dev",
        "s3_bucket.assets",
        "ssm_parameter.x",
    ])
    .assert_stderr_contains("keeps its kind");
    env.fail([
        "state",
        "mv",
        "s.toml",
        "--env",
        "dev",
        "s3_bucket.assets",
        "s3_bucket.assets",
    ])
    .assert_stderr_contains("already in state");
    assert_eq!(env.read(STATE), before);

    env.ok([
        "state",
        "mv",
        "s.toml",
        "--env",
        "dev",
        "s3_bucket.assets",
        "s3_bucket.media",
    ])
    .assert_stderr_contains("the stack declares no `s3_bucket.media`");
    env.write(
        "s.toml",
        STACK.replace("[s3_bucket.assets]", "[s3_bucket.media]"),
    );
    run(
        &env,
        &["plan", "s.toml", "--env", "dev", "--detailed-exitcode"],
    )
    .assert_success()
    .assert_stdout_contains("No changes.");

    env.ok([
        "state",
        "rm",
        "s.toml",
        "--env",
        "dev",
        "ssm_parameter.token",
    ])
    .assert_stderr_contains("the stack still declares ssm_parameter.token");
    let state: serde_json::Value = serde_json::from_str(&env.read(STATE)).unwrap();
    assert!(state["resources"].get("ssm_parameter.token").is_none());
    assert!(state["resources"].get("s3_bucket.media").is_some());
    // Forgotten, not deleted.
    let p = env
        .ssm()
        .await
        .get_parameter()
        .name("/aud/dev/TOKEN")
        .send()
        .await
        .unwrap();
    assert!(p.parameter.is_some());

    let recs = records(&env);
    assert_eq!(recs.len(), 3, "{recs:#?}");
    assert_eq!(recs[1]["command"], "state mv");
    assert_eq!(recs[1]["changes"][0]["address"], "s3_bucket.assets");
    assert_eq!(recs[1]["changes"][0]["action"], "move to s3_bucket.media");
    assert_eq!(recs[2]["command"], "state rm");
    assert_eq!(recs[2]["changes"][0]["action"], "forget");
    env.ok(["audit", "s.toml", "--env", "dev"])
        .assert_stdout_contains("state mv")
        .assert_stdout_contains("forget ssm_parameter.token");
}
