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

/// Inputs AWS would refuse, or that contradict themselves, are refused at load time with
/// file:line:col and a fix, and no AWS call is made (plan stops before first contact).
#[test]
fn aws_rules_and_contradictions_are_refused_at_load_with_a_location() {
    const HEAD: &str = "[stack]\nname = \"v\"\nregion = \"us-east-1\"\n\n";
    let db = |storage: &str| {
        format!(
            "{HEAD}[rds_instance.a]\nidentifier = \"db\"\nengine = \"postgres\"\ninstance_class = \"db.t4g.micro\"\nallocated_storage = {storage}\nmaster_username = \"u\"\nmaster_password = {{ from_env = \"PW\" }}\n"
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "bucket name",
            format!("{HEAD}[s3_bucket.a]\nname = \"Bad_Bucket\"\n"),
            "c.toml:6:8: `name` of `s3_bucket.a`: bucket name \"Bad_Bucket\" is not valid",
        ),
        (
            "ssm hierarchy",
            format!("{HEAD}[ssm_parameter.a]\nname = \"app/x\"\nvalue = \"v\"\n"),
            "c.toml:6:8: `name` of `ssm_parameter.a`: parameter name \"app/x\" is not valid: a hierarchical name must start with '/'",
        ),
        (
            "rds identifier",
            db("20").replace("\"db\"", "\"1db\""),
            "c.toml:6:14: `identifier` of `rds_instance.a`",
        ),
        (
            "storage range",
            db("-5"),
            "c.toml:9:21: `allocated_storage` of `rds_instance.a`: -5 is out of range: AWS accepts 20 to 65536 GiB",
        ),
        (
            "same AWS name",
            format!("{HEAD}[s3_bucket.a]\nname = \"same-b\"\n\n[s3_bucket.b]\nname = \"same-b\"\n"),
            "c.toml:8:12: `s3_bucket.b` and `s3_bucket.a` would both be the s3_bucket `same-b` in AWS",
        ),
        (
            "mistyped region",
            HEAD.replace("us-east-1", "us-esat-1") + "[s3_bucket.a]\nname = \"abc-b\"\n",
            "c.toml:3:10: unknown region `us-esat-1`",
        ),
        (
            "depends on itself",
            format!("{HEAD}[s3_bucket.a]\nname = \"abc-b\"\ndepends_on = [\"s3_bucket.a\"]\n"),
            "c.toml:7:14: `s3_bucket.a` depends on itself",
        ),
        (
            "reference type",
            format!(
                "{HEAD}[data.vpc.main]\ndefault = true\n\n[rds_subnet_group.g]\nname = \"g\"\nsubnet_ids = \"${{data.vpc.main.id}}\"\n"
            ),
            "c.toml:10:14: `subnet_ids` of `rds_subnet_group.g` takes a list, but `${data.vpc.main.id}` is a single value",
        ),
        (
            "duplicate environment",
            HEAD.replace("region", "environments = [\"dev\", \"dev\"]\nregion"),
            "c.toml:3:24: environment `dev` is listed twice",
        ),
        (
            "malformed environment",
            HEAD.replace("region", "environments = [\"Prod env\"]\nregion"),
            "c.toml:3:17: environment name \"Prod env\" is not valid",
        ),
        (
            "vpc default and id",
            format!("{HEAD}[data.vpc.main]\ndefault = true\nid = \"vpc-123\"\n"),
            "c.toml:5:11: `data.vpc.main`: `default` and `id` both select the VPC",
        ),
        (
            "variable of the wrong type",
            format!(
                "{HEAD}[vars]\nn = 3\n\n[s3_bucket.a]\nname = \"abc-b\"\nversioning = \"${{var.n}}\"\n"
            ),
            "c.toml:10:14: `versioning` of `s3_bucket.a` must be a boolean (true or false), found an integer",
        ),
        (
            "cycle",
            format!(
                "{HEAD}[ssm_parameter.a]\nname = \"/a\"\nvalue = \"${{ssm_parameter.b.value}}\"\n\n[ssm_parameter.b]\nname = \"/b\"\nvalue = \"${{ssm_parameter.a.value}}\"\n"
            ),
            "c.toml:5:16: dependency cycle: ssm_parameter.a -> ssm_parameter.b -> ssm_parameter.a",
        ),
    ];
    let env = TestEnv::new();
    let proxy = env.proxy();
    for (what, text, needle) in cases {
        env.write("c.toml", &text);
        for cmd in ["validate", "plan"] {
            let args: Vec<&str> = if text.contains("environments") {
                vec![cmd, "c.toml", "--env", "dev"]
            } else {
                vec![cmd, "c.toml"]
            };
            let run = env.run_with(&args, |c| {
                c.env("PW", "x");
            });
            run.assert_code(1);
            assert!(
                run.stderr().contains(needle),
                "{what} ({cmd}): expected `{needle}` in\n{run}"
            );
            assert!(run.stderr().contains("^"), "{what}: a snippet: {run}");
        }
        assert_eq!(proxy.requests(), 0, "{what}: no AWS call");
    }
    // A valid bucket name that AWS would take passes.
    env.write(
        "c.toml",
        format!("{HEAD}[s3_bucket.a]\nname = \"my.bucket-1\"\n"),
    );
    env.ok(["validate", "c.toml"]);
}
