//! Issue 7's promises, through the real binary: secrets never shown in snippets, a
//! plaintext SecureString warned about, the wrong account refused before anything is read,
//! an offline `validate`, usage errors that exit 1 and `--var` typos caught.

use crate::common::TestEnv;

const SECRET_STACK: &str = r#"[stack]
name = "safe"
region = "us-east-1"
environments = ["dev", "prod"]

[env.dev]
account_id = "123456789012"

[env.prod]
account_id = "210987654321"

[vars]
level = "info"

[ssm_parameter.key]
name = "/safe/${env}/KEY"
type = "SecureString"
value = { from_env = "SAFE_KEY" }

[ssm_parameter.level]
name = "/safe/${env}/LEVEL"
value = "${var.level}"
"#;

#[test]
fn validate_is_offline_and_checks_only_the_shape_of_secret_sources() {
    let env = TestEnv::new();
    env.write("safe.toml", SECRET_STACK);
    // SAFE_KEY is not set, and no AWS endpoint is needed.
    env.run_with(["validate", "safe.toml", "--env", "dev"], |c| {
        c.env_remove("SAFE_KEY")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
    })
    .assert_success()
    .assert_stdout_contains("is valid: 2 resources");
    // plan reads the secret, so there it is required.
    env.run(["plan", "safe.toml", "--env", "dev"])
        .assert_code(1)
        .assert_stderr_contains("environment variable `SAFE_KEY` is not set");
    // A malformed source is still an error offline.
    env.write(
        "bad.toml",
        SECRET_STACK.replace(
            "{ from_env = \"SAFE_KEY\" }",
            "{ from_envv = \"SAFE_KEY\" }",
        ),
    );
    env.run(["validate", "bad.toml", "--env", "dev"])
        .assert_code(1)
        .assert_stderr_contains("bad.toml:18:11: unknown key `from_envv`")
        .assert_stderr_contains("from_env");
}

#[test]
fn the_wrong_account_is_refused_before_anything_is_read() {
    let env = TestEnv::new();
    env.write("safe.toml", SECRET_STACK);
    let proxy = env.proxy();
    let run = env.run_with(["plan", "safe.toml", "--env", "prod"], |c| {
        c.env("SAFE_KEY", "k");
    });
    run.assert_code(1).assert_stderr_contains(
        "stack `safe` environment `prod` belongs to AWS account 210987654321, but the credentials are for account 123456789012",
    );
    // One call: sts:GetCallerIdentity. Nothing was refreshed, nothing written.
    assert_eq!(proxy.requests(), 1, "{run}");
    assert!(!env.exists("state/safe/prod.json"));
    // The right account proceeds.
    env.run_with(
        ["apply", "safe.toml", "--env", "dev", "--auto-approve"],
        |c| {
            c.env("SAFE_KEY", "k");
        },
    )
    .assert_success();
    // A malformed id is refused at load time, with its location.
    env.write(
        "bad.toml",
        SECRET_STACK.replace("\"210987654321\"", "\"2109-8765\""),
    );
    env.run(["validate", "bad.toml", "--env", "dev"])
        .assert_code(1)
        .assert_stderr_contains(
            "bad.toml:10:14: account_id \"2109-8765\" is not a 12-digit AWS account id",
        );
}

#[test]
fn secrets_never_reach_an_error_snippet_and_plaintext_is_warned_about() {
    const CANARY: &str = "hunter2-canary-5f1e";
    let env = TestEnv::new();
    env.write(
        "db.toml",
        format!(
            "[stack]\nname = \"db\"\nregion = \"us-east-1\"\n\n[rds_instance.main]\nidentifier = \"db-main\"\nengine = \"postgres\"\ninstance_class = \"db.t4g.micro\"\nallocated_storage = 20\nmaster_username = \"app\"\nmaster_password = \"{CANARY}\"\n"
        ),
    );
    let run = env.run(["validate", "db.toml"]);
    run.assert_code(1)
        .assert_stderr_contains("db.toml:11:19: `master_password` of `rds_instance.main` is a secret and must not be written in the stack file")
        .assert_stderr_contains("master_password = <redacted>");
    assert!(!run.stderr().contains(CANARY), "{run}");
    // A SecureString written in plain text: accepted, warned about, value not shown.
    env.write(
        "p.toml",
        format!(
            "[stack]\nname = \"p\"\nregion = \"us-east-1\"\n\n[ssm_parameter.k]\nname = \"/p/k\"\ntype = \"SecureString\"\nvalue = \"{CANARY}\"\n"
        ),
    );
    for args in [&["validate", "p.toml"][..], &["plan", "p.toml"][..]] {
        let run = env.run(args);
        run.assert_success()
            .assert_stderr_contains(
                "Warning: p.toml:8:9: `value` of `ssm_parameter.k` is a secret written in plain text",
            )
            .assert_stderr_contains("value = { from_env = \"VAR\" }");
        assert!(
            !run.stderr().contains(CANARY) && !run.stdout().contains(CANARY),
            "{run}"
        );
    }
    // A wrong type for the same value: the snippet is redacted too.
    env.write(
        "t.toml",
        format!(
            "[stack]\nname = \"t\"\n\n[ssm_parameter.k]\nname = \"/t/k\"\ntype = \"SecureString\"\nvalue = [\"{CANARY}\"]\n"
        ),
    );
    let run = env.run(["validate", "t.toml"]);
    run.assert_code(1)
        .assert_stderr_contains("value = <redacted>");
    assert!(!run.stderr().contains(CANARY), "{run}");
}

#[test]
fn usage_errors_exit_1_and_unknown_vars_are_refused() {
    let env = TestEnv::new();
    env.write("safe.toml", SECRET_STACK);
    // 2 means "changes present" under --detailed-exitcode; a usage error must not say so.
    env.run([
        "plan",
        "safe.toml",
        "--env",
        "dev",
        "--detailed-exitcode",
        "--var",
        "bad",
    ])
    .assert_code(1)
    .assert_stderr_contains("expected NAME=VALUE");
    env.run(["plan", "safe.toml", "--no-such-flag"])
        .assert_code(1);
    env.run(["--help"]).assert_code(0);
    // A typo in a variable name is caught, with the closest declared name.
    env.run([
        "validate",
        "safe.toml",
        "--env",
        "dev",
        "--var",
        "levl=debug",
    ])
    .assert_code(1)
    .assert_stderr_contains("--var levl=…: the stack declares no variable `levl`")
    .assert_stderr_contains("did you mean `--var level=…`?");
    env.run([
        "validate",
        "safe.toml",
        "--env",
        "dev",
        "--var",
        "level=debug",
    ])
    .assert_success();
}

#[test]
fn validate_reports_every_resource_error_at_once_in_file_order() {
    let env = TestEnv::new();
    env.write(
        "many.toml",
        "[stack]\nname = \"many\"\n\n[s3_bucket.a]\nname = \"many-a\"\nversioning = \"yes\"\n\n[ssm_parameter.p]\nname = \"/many/p\"\nvalu = \"v\"\n\n[s3_bucket.b]\nname = \"many-b\"\ntags = 3\n",
    );
    let run = env.run(["validate", "many.toml"]);
    run.assert_code(1).assert_stderr_contains("3 errors found");
    let err = run.stderr();
    let at = |needle: &str| {
        err.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing in: {run}"))
    };
    // Resources are sorted by address internally; the report follows the file.
    assert!(at("many.toml:6:14:") < at("many.toml:10:1:"), "{run}");
    assert!(at("many.toml:10:1:") < at("many.toml:14:8:"), "{run}");
    assert_eq!(err.matches("Error: ").count(), 3, "{run}");
}
