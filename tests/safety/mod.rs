//! Issue 7's promises, through the real binary: secrets never shown in snippets, a
//! plaintext SecureString warned about, the wrong account refused before anything is read,
//! an offline `validate`, usage errors that exit 1 and `--var` typos caught.

use crate::common::TestEnv;
use crate::common::proxy::Fault;

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
    let unset = env.run(["plan", "safe.toml", "--env", "dev"]);
    unset.assert_code(1);
    insta::assert_snapshot!("unset_secret_env", env.scrub(unset.stderr()));
    // A malformed source is still an error offline.
    env.write(
        "bad.toml",
        SECRET_STACK.replace(
            "{ from_env = \"SAFE_KEY\" }",
            "{ from_envv = \"SAFE_KEY\" }",
        ),
    );
    let bad = env.run(["validate", "bad.toml", "--env", "dev"]);
    bad.assert_code(1);
    insta::assert_snapshot!("misspelt_secret_source", env.scrub(bad.stderr()));
}

#[test]
fn the_wrong_account_is_refused_before_anything_is_read() {
    let env = TestEnv::new();
    env.write("safe.toml", SECRET_STACK);
    let proxy = env.proxy();
    let run = env.run_with(["plan", "safe.toml", "--env", "prod"], |c| {
        c.env("SAFE_KEY", "k");
    });
    run.assert_code(1);
    insta::assert_snapshot!("wrong_account", env.scrub(run.stderr()));
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
    let bad = env.run(["validate", "bad.toml", "--env", "dev"]);
    bad.assert_code(1);
    insta::assert_snapshot!("malformed_account_id", env.scrub(bad.stderr()));
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
    // Refused the same way by validate, plan and apply, before any AWS call.
    let proxy = env.proxy();
    let validate = env.run(["validate", "db.toml"]);
    validate.assert_code(1);
    // The location, the fix, and `<redacted>` in the snippet.
    insta::assert_snapshot!("plaintext_master_password", env.scrub(validate.stderr()));
    for args in [
        &["validate", "db.toml"][..],
        &["plan", "db.toml", "--out", "db.plan"][..],
        &["apply", "db.toml", "--auto-approve"][..],
    ] {
        let run = env.run(args);
        run.assert_code(1);
        assert_eq!(run.stderr(), validate.stderr(), "{run}");
        assert!(
            !run.stderr().contains(CANARY) && !run.stdout().contains(CANARY),
            "{run}"
        );
    }
    assert_eq!(proxy.requests(), 0);
    assert_eq!(env.list_files_recursive(), ["db.toml"]);
    // A SecureString written in plain text: accepted, warned about, value not shown.
    env.write(
        "p.toml",
        format!(
            "[stack]\nname = \"p\"\nregion = \"us-east-1\"\n\n[ssm_parameter.k]\nname = \"/p/k\"\ntype = \"SecureString\"\nvalue = \"{CANARY}\"\n"
        ),
    );
    for args in [&["validate", "p.toml"][..], &["plan", "p.toml"][..]] {
        let run = env.run(args);
        run.assert_success();
        insta::assert_snapshot!("plaintext_secure_string_warning", env.scrub(run.stderr()));
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
    run.assert_code(1);
    insta::assert_snapshot!("secret_of_the_wrong_type", env.scrub(run.stderr()));
    assert!(!run.stderr().contains(CANARY), "{run}");
}

#[test]
fn usage_errors_exit_1_and_unknown_vars_are_refused() {
    let env = TestEnv::new();
    env.write("safe.toml", SECRET_STACK);
    // 2 means "changes present" under --detailed-exitcode; a usage error must not say so.
    let bad = env.run([
        "plan",
        "safe.toml",
        "--env",
        "dev",
        "--detailed-exitcode",
        "--var",
        "bad",
    ]);
    bad.assert_code(1);
    insta::assert_snapshot!("var_without_equals", env.scrub(bad.stderr()));
    env.run(["plan", "safe.toml", "--no-such-flag"])
        .assert_code(1);
    env.run(["--help"]).assert_code(0);
    // A typo in a variable name is caught, with the closest declared name.
    let typo = env.run([
        "validate",
        "safe.toml",
        "--env",
        "dev",
        "--var",
        "levl=debug",
    ]);
    typo.assert_code(1);
    insta::assert_snapshot!("var_typo", env.scrub(typo.stderr()));
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
    run.assert_code(1);
    // Resources are sorted by address internally; the report follows the file (6:14,
    // 10:1, 14:8), then the count.
    insta::assert_snapshot!("every_error_at_once", env.scrub(run.stderr()));
    assert_eq!(run.stderr().matches("Error: ").count(), 3, "{run}");
}

/// Errors in the header tables ([stack], [vars], [env.E]) are reported with the resources'
/// in one run, in file order, each with its location.
#[test]
fn validate_reports_header_and_resource_errors_together() {
    let env = TestEnv::new();
    env.write(
        "head.toml",
        "[stack]\nname = \"head\"\nenvironments = [\"dev\", \"prod\"]\nregoin = \"us-east-1\"\n\n[vars]\nwhen = 1979-05-27\n\n[env.dev]\nregion = 5\n\n[env.prdo]\nregion = \"eu-west-1\"\n\n[s3_bucket.a]\nname = \"head-a\"\nversioning = \"yes\"\n",
    );
    let run = env.run(["validate", "head.toml", "--env", "dev"]);
    run.assert_code(1);
    let err = run.stderr();
    let at = |needle: &str| {
        err.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in {err}"))
    };
    // [stack] 4:1, [vars] 7:8, [env.dev] 10:10, [env.prdo] 12:6, the bucket 17:14.
    let order = [
        at("head.toml:4:1: unknown key `regoin` in [stack]"),
        at("head.toml:7:"),
        at("head.toml:10:"),
        at("head.toml:12:"),
        at("head.toml:17:"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{err}");
    assert!(err.contains("did you mean `region`?"), "{err}");
    assert!(
        err.contains("[env.prdo] names an environment not in [stack] environments"),
        "{err}"
    );
    assert_eq!(err.matches("Error: ").count(), 5, "{err}");
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
    // (what, stack text, the line the report must hold); all messages are in the snapshot.
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
    let mut report = String::new();
    for (what, text, needle) in cases {
        env.write("c.toml", &text);
        let mut first: Option<String> = None;
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
            match &first {
                None => {
                    report.push_str(&format!("## {what}\n{}\n", env.scrub(run.stderr())));
                    first = Some(run.stderr().to_owned());
                }
                Some(f) => assert_eq!(run.stderr(), f, "{what} ({cmd}): {run}"),
            }
        }
        assert_eq!(proxy.requests(), 0, "{what}: no AWS call");
    }
    insta::assert_snapshot!("aws_rules_and_contradictions", report);
    // A valid bucket name that AWS would take passes.
    env.write(
        "c.toml",
        format!("{HEAD}[s3_bucket.a]\nname = \"my.bucket-1\"\n"),
    );
    env.ok(["validate", "c.toml"]);
}

/// Issue 7's secret canary: three unique secrets, one per source and kind (a SecureString
/// from `from_env`, one from `from_file`, an RDS master password from `from_env`), reach
/// AWS (read back) but never the output of `apply -vv`, of `STACKWRIGHT_LOG=debug`, of an
/// apply that fails on the very request carrying them, of a saved plan and its apply,
/// nor any file Stackwright writes (state, journal, lock, plan).
#[tokio::test]
async fn secret_canaries_never_reach_logs_failures_state_or_plans() {
    const ENV_1: &str = "canary-env-4f2a91";
    const FILE_1: &str = "canary-file-8c3d27";
    const PASSWORD: &str = "canaryPw-b71e55";
    const ENV_2: &str = "canary-env2-6d0b13";
    const FILE_2: &str = "canary-file2-e95c40";
    let all = [ENV_1, FILE_1, PASSWORD, ENV_2, FILE_2];
    let env = TestEnv::new();
    env.write(
        "canary.toml",
        crate::common::rds_stack("canary", "CANARY_DB_PASSWORD")
            + "[ssm_parameter.env_secret]\nname = \"/canary/ENV_SECRET\"\ntype = \"SecureString\"\nvalue = { from_env = \"CANARY_ENV_SECRET\" }\n\n[ssm_parameter.file_secret]\nname = \"/canary/FILE_SECRET\"\ntype = \"SecureString\"\nvalue = { from_file = \"secrets/file_secret.txt\" }\n",
    );
    let mut outputs = String::new();
    let mut run = |args: &[&str], env_secret: &str, log: Option<&str>| {
        let run = env.run_with(args, |c| {
            c.env("CANARY_DB_PASSWORD", PASSWORD)
                .env("CANARY_ENV_SECRET", env_secret);
            if let Some(level) = log {
                c.env("STACKWRIGHT_LOG", level);
            }
        });
        outputs.push_str(run.stdout());
        outputs.push_str(run.stderr());
        run
    };

    // 1. A failing apply: the fault proxy refuses exactly the requests that carry the
    //    file secret (PutParameter) and the master password (CreateDBInstance).
    env.write("secrets/file_secret.txt", format!("{FILE_1}\n"));
    let proxy = env.proxy();
    proxy.fail_matching(FILE_1, Fault::AccessDenied);
    proxy.fail_matching(PASSWORD, Fault::AccessDenied);
    let failed = run(
        &["-vv", "apply", "canary.toml", "--auto-approve"],
        ENV_1,
        None,
    );
    failed
        .assert_code(1)
        .assert_stderr_contains("Apply failed.");
    for needle in [
        "ssm_parameter.file_secret: create failed: AccessDenied",
        "rds_instance.db: create failed: AccessDenied",
    ] {
        assert!(
            failed.stdout().contains(needle) || failed.stderr().contains(needle),
            "{needle}: {failed}"
        );
    }
    assert!(proxy.faults() >= 2, "{failed}");
    // -vv did log.
    assert!(failed.stderr().contains("DEBUG"), "{failed}");
    assert_eq!(
        secure(&env, "/canary/ENV_SECRET").await.as_deref(),
        Some(ENV_1)
    );

    // 2. The same apply with STACKWRIGHT_LOG=debug and no fault: everything is created.
    proxy.clear_faults();
    let debug = run(
        &["apply", "canary.toml", "--auto-approve"],
        ENV_1,
        Some("debug"),
    );
    debug.assert_success();
    assert!(debug.stderr().contains("DEBUG"), "{debug}");
    assert_eq!(
        secure(&env, "/canary/FILE_SECRET").await.as_deref(),
        Some(FILE_1)
    );

    // 3. New values of both parameters, through a saved plan.
    env.write("secrets/file_secret.txt", format!("{FILE_2}\n"));
    run(
        &["-vv", "plan", "canary.toml", "--out", "canary.plan"],
        ENV_2,
        None,
    )
    .assert_success()
    .assert_stdout_contains("(sensitive value changed)");
    run(&["-vv", "show", "canary.plan", "--json"], ENV_2, None).assert_success();
    run(&["-vv", "apply", "canary.plan", "--json"], ENV_2, None).assert_success();
    assert_eq!(
        secure(&env, "/canary/ENV_SECRET").await.as_deref(),
        Some(ENV_2)
    );
    assert_eq!(
        secure(&env, "/canary/FILE_SECRET").await.as_deref(),
        Some(FILE_2)
    );
    run(
        &["-vv", "plan", "canary.toml", "--json"],
        ENV_2,
        Some("trace"),
    )
    .assert_success();

    for secret in all {
        assert!(
            !outputs.contains(secret),
            "{secret} leaked to output:\n{outputs}"
        );
    }
    let files = env.list_files_recursive();
    assert!(files.contains(&"canary.plan".to_owned()), "{files:?}");
    assert!(files.contains(&"state/canary.json".to_owned()), "{files:?}");
    for file in files {
        if file == "canary.toml" || file.starts_with("secrets/") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(env.path(&file)).unwrap()).into_owned();
        for secret in all {
            assert!(!text.contains(secret), "{secret} leaked into {file}");
        }
    }
}

async fn secure(env: &TestEnv, name: &str) -> Option<String> {
    let out = env
        .ssm()
        .await
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .ok()?;
    out.parameter().and_then(|p| p.value()).map(str::to_owned)
}

/// A misspelt secret-source key gets a did-you-mean, as every other unknown key does.
#[test]
fn misspelt_secret_source_key_gets_a_did_you_mean() {
    let env = TestEnv::new();
    env.write(
        "bad.toml",
        SECRET_STACK.replace(
            "{ from_env = \"SAFE_KEY\" }",
            "{ from_envv = \"SAFE_KEY\" }",
        ),
    );
    env.run(["validate", "bad.toml", "--env", "dev"])
        .assert_code(1)
        .assert_stderr_contains("unknown key `from_envv` in a secret source")
        .assert_stderr_contains("did you mean `from_env`?");
}
