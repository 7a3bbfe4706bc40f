//! The AWS errors a user meets first, each reported once, before any resource is read, as
//! one line with the cause and the fix (issue 6, test 8): no credentials with the instance
//! metadata endpoint unreachable, an expired SSO session, an endpoint on a closed port. The
//! real binary, snapshot-tested; no SDK debug dump, exit 1, and no 9 s IMDS wait.

use std::time::{Duration, Instant};

use crate::common::proxy::Fault;
use crate::common::{Run, TestEnv, free_port};

const STACK: &str = "[stack]\nname = \"fc\"\nregion = \"us-east-1\"\n\n[s3_bucket.a]\nname = \"fc-a\"\n\n[ssm_parameter.p]\nname = \"/fc/p\"\nvalue = \"v\"\n";

/// The error lines of a run (the SDK's own tracing warnings about absent config files
/// start with a timestamp and are left out), with `port` made stable.
fn error_text(run: &Run, port: Option<u16>) -> String {
    let text: Vec<&str> = run
        .stderr()
        .lines()
        .filter(|l| !l.starts_with("20"))
        .collect();
    let text = text.join("\n");
    match port {
        Some(p) => text.replace(&p.to_string(), "PORT"),
        None => text,
    }
}

fn check(run: &Run, started: Instant) {
    run.assert_code(1);
    for dump in ["DispatchFailure", "ConnectorError", "ServiceError", "{ "] {
        assert!(!run.stderr().contains(dump), "debug dump in: {run}");
    }
    // Nothing was refreshed, so nothing else was printed.
    assert_eq!(run.stdout(), "", "{run}");
    // A regression guard against the SDK's default instance-metadata retries (about 9 s),
    // not a benchmark: the check takes well under a second.
    assert!(started.elapsed() < Duration::from_secs(5), "{run}");
}

/// A clean environment: no keys, no profile, instance metadata on a closed port.
fn no_credentials(c: &mut assert_cmd::Command, imds_port: u16) {
    c.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://127.0.0.1:{imds_port}"),
        );
}

#[test]
fn no_credentials_is_one_line_with_the_fix() {
    let env = TestEnv::new();
    env.write("fc.toml", STACK);
    let imds = free_port();
    let t0 = Instant::now();
    let run = env.run_with(["plan", "fc.toml"], |c| no_credentials(c, imds));
    check(&run, t0);
    insta::assert_snapshot!("no_credentials", error_text(&run, Some(imds)));
}

#[test]
fn expired_sso_session_names_the_login_command() {
    let env = TestEnv::new();
    env.write("fc.toml", STACK);
    std::fs::create_dir_all(env.home().join(".aws/sso/cache")).unwrap();
    std::fs::write(
        env.home().join(".aws/config"),
        "[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = Admin\nregion = us-east-1\n\n[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = us-east-1\n",
    )
    .unwrap();
    // The cached token of session `corp` (file named by the SHA-1 of the session name),
    // expired, with a refresh that cannot succeed.
    let cache = env
        .home()
        .join(".aws/sso/cache/ee0bfd2552fbd840c02cc48b6e823320543c450f.json");
    std::fs::write(
        cache,
        r#"{"startUrl":"https://corp.awsapps.com/start","region":"us-east-1","accessToken":"expired","expiresAt":"2026-01-01T00:00:00Z","clientId":"c","clientSecret":"s","registrationExpiresAt":"2026-01-02T00:00:00Z","refreshToken":"r"}"#,
    )
    .unwrap();
    let imds = free_port();
    let t0 = Instant::now();
    let run = env.run_with(["plan", "fc.toml"], |c| {
        no_credentials(c, imds);
        // SSO's own endpoint is unreachable too, so the refresh fails at once.
        c.env("AWS_PROFILE", "dev")
            .env("AWS_ENDPOINT_URL_SSO_OIDC", "http://127.0.0.1:9")
            .env("AWS_ENDPOINT_URL_SSO", "http://127.0.0.1:9");
    });
    check(&run, t0);
    run.assert_stderr_contains("aws sso login --profile dev");
    insta::assert_snapshot!("expired_sso", error_text(&run, Some(imds)));
}

#[test]
fn an_endpoint_on_a_closed_port_is_one_line_with_the_fix() {
    let env = TestEnv::new();
    env.write("fc.toml", STACK);
    let port = free_port();
    let t0 = Instant::now();
    let run = env.run_with(["plan", "fc.toml"], |c| {
        c.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"));
    });
    check(&run, t0);
    insta::assert_snapshot!("closed_port", error_text(&run, Some(port)));
    // apply and destroy stop at the same check, and change nothing.
    let apply = env.run_with(["apply", "fc.toml", "--auto-approve"], |c| {
        c.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"));
    });
    apply
        .assert_code(1)
        .assert_stderr_contains("connection refused");
    assert!(!env.exists("state/fc.json"), "nothing written");
}

/// Access denied on a read: one line naming the resource, the action to grant and the fix,
/// no dump, nothing written. (moto enforces no IAM by default; the fault proxy answers as
/// IAM does.)
#[test]
fn access_denied_names_the_action_and_the_fix() {
    let env = TestEnv::new();
    env.write("fc.toml", STACK);
    let proxy = env.proxy();
    let denied = |needle: &str| {
        proxy.clear_faults();
        proxy.fail_matching(needle, Fault::AccessDenied);
        let before = env
            .exists("state/fc.json")
            .then(|| env.read("state/fc.json"));
        let run = env.run(["plan", "fc.toml"]);
        run.assert_code(1);
        for dump in ["DispatchFailure", "ServiceError", "{ "] {
            assert!(!run.stderr().contains(dump), "debug dump in: {run}");
        }
        run.assert_stderr_contains("grant it to the caller, or use a profile that has it");
        let after = env
            .exists("state/fc.json")
            .then(|| env.read("state/fc.json"));
        assert_eq!(before, after, "nothing written");
        run
    };
    // SSM's message names the action.
    denied("AmazonSSM.GetParameter")
        .assert_stderr_contains("ssm_parameter.p: refresh failed: AccessDeniedException")
        .assert_stderr_contains("not authorized to perform: ssm:GetParameter");
    // A bucket's refresh needs no HeadBucket (its GETs say whether it exists, see
    // refresh_batching): a denied GET names the action it was, below.
    // Its other reads say only "Access Denied", naming no action either.
    proxy.clear_faults();
    env.ok(["apply", "fc.toml", "--auto-approve"]);
    denied("publicAccessBlock").assert_stderr_contains(
        "s3_bucket.a: refresh failed: AccessDenied: Access Denied (action s3:Get",
    );
}

/// A mistyped AWS_REGION (no endpoint override): found at first contact, with a suggestion.
#[test]
fn an_unknown_region_is_one_line_with_a_suggestion() {
    let env = TestEnv::new();
    // From the environment: a mistyped region in the stack file is refused at load time.
    env.write("fc.toml", STACK);
    let t0 = Instant::now();
    let run = env.run_with(["plan", "fc.toml"], |c| {
        c.env_remove("AWS_ENDPOINT_URL")
            .env("AWS_REGION", "us-esat-1");
    });
    check(&run, t0);
    run.assert_stderr_contains("unknown region `us-esat-1`: did you mean `us-east-1`?");
}
