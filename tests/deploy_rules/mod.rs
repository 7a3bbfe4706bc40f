//! Deploy rules per environment (issue 11, done-means 7): `[env.prod.rules] windows`
//! refuse `apply`/`destroy` outside the windows, naming the next one in its zone and in
//! UTC, unless `--override-window --reason`, whose reason lands in history (and `audit`
//! still verifies); `confirm = "type-env-name"` wants `--confirm-env prod` where no one can
//! type. The clock is set with `STACKWRIGHT_NOW`. Against moto.

use crate::common::{Run, TestEnv};

const STACK: &str = r#"[stack]
name = "rules"
region = "us-east-1"
environments = ["dev", "prod"]

[vars]
level = "INFO"

[env.prod.rules]
windows = ["Tue-Thu 10:00-16:00 Europe/Berlin"]
confirm = "type-env-name"

[ssm_parameter.level]
name = "/rules/${env}/LEVEL"
value = "${var.level}"
"#;

/// Friday 13:00 in Berlin: outside the window. The next one opens Tuesday 10:00 CET.
const FRIDAY: &str = "2026-12-04T12:00:00Z";
const NEXT: &str = "Tue 2026-12-08 10:00 CET (Europe/Berlin), 2026-12-08 09:00 UTC";
/// Wednesday 13:00 in Berlin: inside.
const WEDNESDAY: &str = "2026-12-02T12:00:00Z";

const STATE: &str = "state/rules/prod.json";
const HISTORY: &str = "state/rules/prod.history.jsonl";

fn at(env: &TestEnv, now: &str, args: &[&str]) -> Run {
    env.run_with(args.iter().copied(), |c| {
        c.env("STACKWRIGHT_NOW", now);
    })
}

fn records(env: &TestEnv) -> Vec<serde_json::Value> {
    env.read(HISTORY)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn parameter(env: &TestEnv, name: &str) -> Option<String> {
    env.ssm()
        .await
        .get_parameter()
        .name(name)
        .send()
        .await
        .ok()
        .and_then(|o| o.parameter?.value)
}

const PROD: [&str; 6] = [
    "apply",
    "s.toml",
    "--env",
    "prod",
    "--auto-approve",
    "--confirm-env",
];

fn apply_prod<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = PROD.to_vec();
    v.push("prod");
    v.extend(extra);
    v
}

#[tokio::test]
async fn outside_the_window_apply_is_refused_naming_the_next_one_unless_overridden_with_a_reason() {
    let env = TestEnv::new();
    env.write("s.toml", STACK);

    // plan says so, and does not fail.
    let plan = at(&env, FRIDAY, &["plan", "s.toml", "--env", "prod"]);
    plan.assert_success()
        .assert_stdout_contains("Outside the deploy windows of `prod`")
        .assert_stdout_contains(NEXT);
    let md = at(
        &env,
        FRIDAY,
        &["plan", "s.toml", "--env", "prod", "--markdown"],
    );
    md.assert_success();
    assert!(md.stdout().starts_with("> [!CAUTION]"), "{}", md.stdout());

    // apply refuses before any change, naming the next window in Berlin time and in UTC.
    let refused = at(&env, FRIDAY, &apply_prod(&[]));
    refused
        .assert_code(1)
        .assert_stderr_contains("s.toml:9:")
        .assert_stderr_contains("refusing to apply `prod`: Fri 2026-12-04 12:00 UTC is outside its deploy windows (Tue-Thu 10:00-16:00 Europe/Berlin)")
        .assert_stderr_contains(&format!("the next window opens {NEXT}"))
        .assert_stderr_contains("--override-window --reason");
    assert!(!env.exists(STATE) && !env.exists(HISTORY));
    assert_eq!(parameter(&env, "/rules/prod/LEVEL").await, None);

    // --override-window needs a reason that says something.
    for extra in [
        &["--override-window"][..],
        &["--override-window", "--reason", "  "][..],
    ] {
        at(&env, FRIDAY, &apply_prod(extra))
            .assert_code(1)
            .assert_stderr_contains("--override-window needs a reason");
    }
    at(&env, FRIDAY, &apply_prod(&["--reason", "why not"]))
        .assert_code(1)
        .assert_stderr_contains("--reason is the reason for --override-window");
    assert!(!env.exists(STATE));
    assert_eq!(parameter(&env, "/rules/prod/LEVEL").await, None);

    // With a reason it goes ahead, and the reason is in the history record.
    let reason = "INC-42: the certificate expires tonight";
    at(
        &env,
        FRIDAY,
        &apply_prod(&["--override-window", "--reason", reason]),
    )
    .assert_success()
    .assert_stderr_contains("outside its deploy windows");
    assert_eq!(
        parameter(&env, "/rules/prod/LEVEL").await.as_deref(),
        Some("INFO")
    );
    let recs = records(&env);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["command"], "apply");
    assert_eq!(recs[0]["override_reason"], reason);
    assert_eq!(
        recs[0]["note"],
        format!("deploy windows checked at STACKWRIGHT_NOW={FRIDAY}")
    );

    // Inside the window no flag is needed, and the record has no override.
    at(&env, WEDNESDAY, &apply_prod(&["--var", "level=WARN"])).assert_success();
    assert_eq!(
        parameter(&env, "/rules/prod/LEVEL").await.as_deref(),
        Some("WARN")
    );
    let recs = records(&env);
    assert_eq!(recs.len(), 2);
    assert!(recs[1].get("override_reason").is_none(), "{:#}", recs[1]);

    // audit verifies the chain with the override in it, and shows it.
    env.ok(["audit", "s.toml", "--env", "prod"])
        .assert_stdout_contains(&format!("OUTSIDE THE DEPLOY WINDOWS: {reason}"))
        .assert_stdout_contains("The history verifies");

    // destroy is refused outside the window too; dev has no rules.
    let state = env.read(STATE);
    at(
        &env,
        FRIDAY,
        &[
            "destroy",
            "s.toml",
            "--env",
            "prod",
            "--auto-approve",
            "--confirm-env",
            "prod",
        ],
    )
    .assert_code(1)
    .assert_stderr_contains("refusing to destroy `prod`")
    .assert_stderr_contains(NEXT);
    assert_eq!(env.read(STATE), state);
    assert!(parameter(&env, "/rules/prod/LEVEL").await.is_some());
    // So is a rollback (refused before it reads state or calls AWS).
    at(
        &env,
        FRIDAY,
        &[
            "rollback",
            "s.toml",
            "--env",
            "prod",
            "ecs_service.api",
            "--confirm-env",
            "prod",
        ],
    )
    .assert_code(1)
    .assert_stderr_contains("refusing to roll back `prod`")
    .assert_stderr_contains(NEXT);
    assert_eq!(env.read(STATE), state);
    at(
        &env,
        FRIDAY,
        &["apply", "s.toml", "--env", "dev", "--auto-approve"],
    )
    .assert_success();
    assert_eq!(
        parameter(&env, "/rules/dev/LEVEL").await.as_deref(),
        Some("INFO")
    );
    at(&env, FRIDAY, &["plan", "s.toml", "--env", "dev"])
        .assert_success()
        .assert_stdout_contains("No changes");
    assert!(
        !at(&env, FRIDAY, &["plan", "s.toml", "--env", "dev"])
            .stdout()
            .contains("deploy windows")
    );
}

#[tokio::test]
async fn type_env_name_wants_confirm_env_where_no_one_can_type() {
    let env = TestEnv::new();
    env.write("s.toml", STACK);
    // stdin is not a terminal here (and CI may be set): no prompt, a refusal that says
    // what to pass.
    at(
        &env,
        WEDNESDAY,
        &["apply", "s.toml", "--env", "prod", "--auto-approve"],
    )
    .assert_code(1)
    .assert_stderr_contains("refusing to apply `prod` without its confirmation")
    .assert_stderr_contains("pass --confirm-env prod");
    at(
        &env,
        WEDNESDAY,
        &[
            "apply",
            "s.toml",
            "--env",
            "prod",
            "--auto-approve",
            "--confirm-env",
            "dev",
        ],
    )
    .assert_code(1)
    .assert_stderr_contains("--confirm-env dev does not match the environment of this run, `prod`");
    assert!(!env.exists(STATE));
    assert_eq!(parameter(&env, "/rules/prod/LEVEL").await, None);

    // A saved plan is held to the same rule when it is applied.
    at(
        &env,
        WEDNESDAY,
        &["plan", "s.toml", "--env", "prod", "--out", "prod.plan"],
    )
    .assert_success();
    at(&env, WEDNESDAY, &["apply", "prod.plan"])
        .assert_code(1)
        .assert_stderr_contains("pass --confirm-env prod");
    assert!(!env.exists(STATE));
    at(
        &env,
        WEDNESDAY,
        &["apply", "prod.plan", "--confirm-env", "prod"],
    )
    .assert_success();
    assert_eq!(
        parameter(&env, "/rules/prod/LEVEL").await.as_deref(),
        Some("INFO")
    );
    // dev has no confirm rule: --auto-approve is enough.
    at(
        &env,
        WEDNESDAY,
        &["apply", "s.toml", "--env", "dev", "--auto-approve"],
    )
    .assert_success();
    env.ok(["audit", "s.toml", "--env", "prod"]);
}

#[test]
fn bad_rules_are_refused_where_they_are_written_and_change_nothing() {
    let env = TestEnv::new();
    for (bad, at_, message, hint) in [
        (
            STACK.replace("Europe/Berlin", "Europe/Berln"),
            "s.toml:10:33",
            "unknown time zone `Europe/Berln`",
            "did you mean `Europe/Berlin`?",
        ),
        (
            STACK.replace("Tue-Thu 10:00-16:00", "Tue-Thu 10-16"),
            "s.toml:10:21",
            "`10` is not a time",
            "HH:MM-HH:MM",
        ),
        (
            STACK.replace("Tue-Thu", "Tue-Fry"),
            "s.toml:10:13",
            "`Fry` is not a day",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun",
        ),
        (
            STACK.replace("confirm =", "confirm_with ="),
            "s.toml:11:1",
            "unknown key `confirm_with` in [env.prod.rules]",
            "did you mean `confirm`?",
        ),
        (
            STACK.replace("\"type-env-name\"", "\"yes\""),
            "s.toml:11:11",
            "unknown confirmation rule \"yes\"",
            "\"type-env-name\"",
        ),
    ] {
        env.write("s.toml", &bad);
        // In the other environment too: a mistake in prod's rules shows in dev.
        for args in [
            &["validate", "s.toml", "--env", "dev"][..],
            &["apply", "s.toml", "--env", "prod", "--auto-approve"][..],
        ] {
            env.fail(args)
                .assert_code(1)
                .assert_stderr_contains(&format!("{at_}: {message}"))
                .assert_stderr_contains(hint);
        }
        assert!(!env.exists("state"), "{bad}");
    }
    // A clock that is not a time is refused, not ignored.
    env.write("s.toml", STACK);
    at(&env, "next friday", &apply_prod(&[]))
        .assert_code(1)
        .assert_stderr_contains("STACKWRIGHT_NOW=next friday is not an RFC 3339 time");
    assert!(!env.exists("state"));
}

/// On a terminal (a pseudo-terminal from util-linux `script`, `CI` unset) the rule asks
/// for the environment's name: the right name applies, another one cancels.
#[tokio::test]
async fn on_a_terminal_the_environments_name_is_typed() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    if Command::new("script").arg("--version").output().is_err() {
        panic!("util-linux `script` is needed for this test (apt-get install util-linux)");
    }
    let env = TestEnv::new();
    env.write("s.toml", STACK);
    at(
        &env,
        WEDNESDAY,
        &["plan", "s.toml", "--env", "prod", "--out", "prod.plan"],
    )
    .assert_success();
    let typed = |answer: &str| {
        let cmd = format!("{} apply prod.plan", env!("CARGO_BIN_EXE_stackwright"));
        let mut child = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .current_dir(env.dir())
            // Only the test environment: no CI, no AWS settings of the machine.
            .env_clear()
            .envs(env.envs())
            .env("STACKWRIGHT_NOW", WEDNESDAY)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{answer}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = typed("yes");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("Only 'prod' will be accepted"), "{out}");
    assert!(out.contains("Apply cancelled"), "{out}");
    assert!(!env.exists(STATE));
    let (code, out) = typed("prod");
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        parameter(&env, "/rules/prod/LEVEL").await.as_deref(),
        Some("INFO")
    );
}
