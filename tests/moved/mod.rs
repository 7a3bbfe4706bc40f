//! The stack file's `[moved]` table (issue 11, state commands): a rename reviewed through
//! plan. The plan shows `FROM → TO (moved)` instead of a destroy and a create, apply
//! renames the state entry (the bucket and what is in it stay), writes a history record
//! naming the move, and the next plan, with the entry still there, has no changes. Bad
//! entries are refused with their file:line:col and change nothing. Against moto.

use crate::common::TestEnv;

const BEFORE: &str = r#"[stack]
name = "mv"
region = "us-east-1"

[s3_bucket.uploads]
name = "mv-uploads"

[ssm_parameter.where]
name = "/mv/UPLOADS"
value = "${s3_bucket.uploads.name}"
"#;

const AFTER: &str = r#"[stack]
name = "mv"
region = "us-east-1"

[s3_bucket.media]
name = "mv-uploads"

[ssm_parameter.where]
name = "/mv/UPLOADS"
value = "${s3_bucket.media.name}"

[moved]
"s3_bucket.uploads" = "s3_bucket.media"
"#;

const STATE: &str = "state/mv.json";
const HISTORY: &str = "state/mv.history.jsonl";

fn state(env: &TestEnv) -> serde_json::Value {
    serde_json::from_str(&env.read(STATE)).unwrap()
}

fn records(env: &TestEnv) -> Vec<serde_json::Value> {
    env.read(HISTORY)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_moved_entry_renames_in_state_through_plan_and_apply() {
    let env = TestEnv::new();
    env.write("s.toml", BEFORE);
    env.ok(["apply", "s.toml", "--auto-approve"]);
    // Something in the bucket: a recreated bucket would not have it.
    let s3 = env.s3().await;
    s3.put_object()
        .bucket("mv-uploads")
        .key("keep.txt")
        .body(b"still here".to_vec().into())
        .send()
        .await
        .unwrap();

    env.write("s.toml", AFTER);
    let plan = env.run(["plan", "s.toml", "--detailed-exitcode"]);
    plan.assert_code(2)
        .assert_stdout_contains("s3_bucket.uploads → s3_bucket.media (moved)")
        .assert_stdout_contains("0 to add, 0 to change, 0 to replace, 0 to destroy, 1 to move.");
    assert!(
        !plan.stdout().contains("destroyed") && !plan.stdout().contains("created"),
        "{}",
        plan.stdout()
    );
    let json = env.ok(["plan", "s.toml", "--json"]).stdout_json();
    assert_eq!(
        json["moves"],
        serde_json::json!([{"from": "s3_bucket.uploads", "to": "s3_bucket.media", "id": "mv-uploads"}])
    );
    assert_eq!(json["format_version"], 4);

    // Reviewed as a saved plan (its markdown names the move), then applied exactly.
    env.ok(["plan", "s.toml", "--out", "mv.plan"]);
    env.ok(["show", "mv.plan", "--markdown"])
        .assert_stdout_contains("- `s3_bucket.uploads` → `s3_bucket.media` (moved)");
    env.ok(["apply", "mv.plan"])
        .assert_stdout_contains("0 added, 0 changed, 0 replaced, 0 destroyed");

    let st = state(&env);
    assert!(st["resources"].get("s3_bucket.uploads").is_none(), "{st:#}");
    assert_eq!(st["resources"]["s3_bucket.media"]["id"], "mv-uploads");
    assert_eq!(
        st["resources"]["ssm_parameter.where"]["depends_on"],
        serde_json::json!(["s3_bucket.media"])
    );
    let body = s3
        .get_object()
        .bucket("mv-uploads")
        .key("keep.txt")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(&body[..], b"still here");

    let recs = records(&env);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1]["command"], "apply");
    assert_eq!(
        recs[1]["changes"],
        serde_json::json!([{"address": "s3_bucket.uploads", "action": "move to s3_bucket.media", "outcome": "done"}])
    );

    // The entry stays in the file, harmlessly: nothing more to do.
    let state_before = env.read(STATE);
    env.run(["plan", "s.toml", "--detailed-exitcode"])
        .assert_code(0)
        .assert_stdout_contains("No changes");
    env.ok(["apply", "s.toml", "--auto-approve"]);
    assert_eq!(env.read(STATE), state_before);
    env.ok(["audit", "s.toml"])
        .assert_stdout_contains("move to s3_bucket.media s3_bucket.uploads")
        .assert_stdout_contains("The history verifies");
}

#[tokio::test]
async fn bad_moved_entries_are_refused_with_their_place_and_change_nothing() {
    let env = TestEnv::new();
    // Two buckets in state, so that "the target is already in state" can be shown.
    let both = BEFORE.replace(
        "[ssm_parameter.where]",
        "[s3_bucket.media]\nname = \"mv-media\"\n\n[ssm_parameter.where]",
    );
    env.write("s.toml", &both);
    env.ok(["apply", "s.toml", "--auto-approve"]);
    let state_before = env.read(STATE);
    let history_before = env.read(HISTORY);

    let moved = |entry: &str, resources: &str| {
        format!("[stack]\nname = \"mv\"\nregion = \"us-east-1\"\n{resources}\n[moved]\n{entry}\n")
    };
    let media = "[s3_bucket.media]\nname = \"mv-media\"\n";
    let uploads = "[s3_bucket.uploads]\nname = \"mv-uploads\"\n";
    let param = "[ssm_parameter.where]\nname = \"/mv/UPLOADS\"\nvalue = \"x\"\n";
    for (file, at, message) in [
        // FROM still declared (line 10 is the entry).
        (
            moved(
                "\"s3_bucket.uploads\" = \"s3_bucket.media\"",
                &format!("{uploads}{media}"),
            ),
            "s.toml:10:1",
            "`s3_bucket.uploads` is moved to `s3_bucket.media`, but the stack still declares `s3_bucket.uploads` (line 4)",
        ),
        // TO not declared.
        (
            moved("\"s3_bucket.uploads\" = \"s3_bucket.medai\"", media),
            "s.toml:8:23",
            "`s3_bucket.uploads` is moved to `s3_bucket.medai`, which is not declared",
        ),
        // Kinds differ.
        (
            moved(
                "\"s3_bucket.uploads\" = \"ssm_parameter.where\"",
                &format!("{media}{param}"),
            ),
            "s.toml:11:23",
            "cannot move `s3_bucket.uploads` to `ssm_parameter.where`: a move keeps the kind",
        ),
        // TO already in state (found by plan, pointing at the entry).
        (
            moved("\"s3_bucket.uploads\" = \"s3_bucket.media\"", media),
            "s.toml:8:23",
            "cannot move `s3_bucket.uploads` to `s3_bucket.media`: state already holds both",
        ),
    ] {
        env.write("s.toml", &file);
        for args in [
            &["plan", "s.toml"][..],
            &["apply", "s.toml", "--auto-approve"][..],
        ] {
            env.fail(args)
                .assert_code(1)
                .assert_stderr_contains(&format!("{at}: {message}"))
                .assert_stderr_contains("= help:");
        }
        assert_eq!(env.read(STATE), state_before, "{file}");
        assert_eq!(env.read(HISTORY), history_before);
    }
    let names: Vec<String> = env
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
    assert!(names.contains(&"mv-uploads".to_owned()) && names.contains(&"mv-media".to_owned()));
    env.ok(["audit", "s.toml"]);
}
