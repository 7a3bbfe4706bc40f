//! Checks of the test harness itself: moto (with its patches), the SDK
//! clients, TestEnv, Run and Postgres.

use crate::common::{Moto, Postgres, Run, TestEnv};
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};

#[test]
fn moto_starts_and_answers() {
    let moto = Moto::start();
    assert_ne!(moto.port(), 0);
    assert!(moto.endpoint().starts_with("http://127.0.0.1:"));
    moto.reset();
    assert!(moto.log().contains("patches applied: s3_xml_root_elements"));
}

/// Proves the s3_xml_root_elements patch: without it the Rust SDK fails to
/// parse GetBucketVersioning ("invalid root, expected VersioningConfiguration").
#[tokio::test]
async fn s3_versioning_reads_back_enabled() {
    let moto = Moto::start();
    let s3 = moto.s3().await;
    s3.create_bucket()
        .bucket("smoke-versioned")
        .send()
        .await
        .unwrap();

    let before = s3
        .get_bucket_versioning()
        .bucket("smoke-versioned")
        .send()
        .await
        .unwrap();
    assert_eq!(before.status(), None);

    s3.put_bucket_versioning()
        .bucket("smoke-versioned")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let after = s3
        .get_bucket_versioning()
        .bucket("smoke-versioned")
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), Some(&BucketVersioningStatus::Enabled));

    let accel = s3
        .get_bucket_accelerate_configuration()
        .bucket("smoke-versioned")
        .send()
        .await
        .unwrap();
    assert_eq!(accel.status(), None);

    s3.put_object()
        .bucket("smoke-versioned")
        .key("dir/a.txt")
        .body(b"hello".to_vec().into())
        .send()
        .await
        .unwrap();
    let listed = s3
        .list_objects_v2()
        .bucket("smoke-versioned")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["dir/a.txt"]);
}

#[tokio::test]
async fn ssm_rds_ec2_clients_talk_to_moto() {
    let moto = Moto::start();
    let ssm = moto.ssm().await;
    ssm.put_parameter()
        .name("/smoke/p")
        .value("v1")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let got = ssm.get_parameter().name("/smoke/p").send().await.unwrap();
    assert_eq!(got.parameter().and_then(|p| p.value()), Some("v1"));

    let rds = moto.rds().await;
    let dbs = rds.describe_db_instances().send().await.unwrap();
    assert!(dbs.db_instances().is_empty());

    let ec2 = moto.ec2().await;
    let vpcs = ec2.describe_vpcs().send().await.unwrap();
    assert!(!vpcs.vpcs().is_empty(), "moto has a default VPC");
}

#[test]
fn test_env_files_and_isolation() {
    let env = TestEnv::new();
    env.write("stack.toml", "name = \"x\"\n");
    env.write("nested/dir/file.txt", "y");
    assert_eq!(env.read("stack.toml"), "name = \"x\"\n");
    assert!(env.exists("nested/dir/file.txt"));
    assert_eq!(
        env.list_files_recursive(),
        ["nested/dir/file.txt", "stack.toml"]
    );
    assert!(!env.home().starts_with(env.dir()));
    let vars: std::collections::HashMap<_, _> = env.envs().into_iter().collect();
    assert_eq!(vars["AWS_ENDPOINT_URL"], env.moto().endpoint());
    assert_eq!(vars["AWS_REGION"], "us-east-1");
    assert_eq!(vars["NO_COLOR"], "1");
    let cmd = env.cmd(["--version"]);
    assert_eq!(cmd.get_current_dir(), Some(env.dir()));
    let endpoint = env.moto().endpoint();
    assert!(
        cmd.get_envs()
            .any(|(k, v)| k == "AWS_ENDPOINT_URL" && v == Some(endpoint.as_ref()))
    );
}

/// Run's report, checked on a plain shell command so that it does not depend
/// on the product's CLI.
#[test]
fn run_reports_everything_on_failure() {
    let env = TestEnv::new();
    let output = std::process::Command::new("sh")
        .args(["-c", "echo to-stdout; echo to-stderr >&2; exit 3"])
        .current_dir(env.dir())
        .output()
        .unwrap();
    let run = Run::new("sh -c ...".into(), env.dir().to_path_buf(), output);
    assert_eq!(run.code(), Some(3));
    assert_eq!(run.stdout(), "to-stdout\n");
    assert_eq!(run.stderr(), "to-stderr\n");
    run.assert_failure()
        .assert_code(3)
        .assert_stderr_contains("to-stderr");
    let panic = std::panic::catch_unwind(|| {
        run.assert_success();
    })
    .expect_err("assert_success must panic");
    let msg = panic.downcast_ref::<String>().unwrap();
    for part in [
        "===== command =====\nsh -c ...",
        &format!("===== cwd =====\n{}", env.dir().display()),
        "===== exit code =====\n3",
        "===== stdout =====\nto-stdout",
        "===== stderr =====\nto-stderr",
    ] {
        assert!(msg.contains(part), "{part:?} missing in {msg}");
    }
}

#[tokio::test]
async fn postgres_starts_unprivileged_with_password_url() {
    let pg = Postgres::start();
    let url = pg.url();
    assert!(
        url.starts_with(&format!("postgres://postgres:{}@127.0.0.1:", pg.password())),
        "{url}"
    );
    let client = pg.client().await;
    let row = client.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);

    // The server process does not run as root.
    // (asked on the open connection, so the backend is alive while we look)
    let row = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap();
    let pid: i32 = row.get(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|r| r.split_whitespace().nth(1))
        .unwrap();
    assert_ne!(uid, "0", "postgres backend runs as root");

    // A wrong password is refused over TCP.
    let bad = url.replace(pg.password(), "wrong");
    assert!(
        tokio_postgres::connect(&bad, tokio_postgres::NoTls)
            .await
            .is_err()
    );

    assert_eq!(pg.psql("postgres", "SELECT 40 + 2"), "42");
    let db_url = pg.create_database("smoke_db");
    assert!(db_url.ends_with("/smoke_db"));
    let c2 = pg.client_for("smoke_db").await;
    let row = c2
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "smoke_db");
}

#[test]
fn scrub_replaces_only_what_varies_between_runs() {
    let text = "lineage 0b7e2c1a-93f4-4d0e-8a6b-2f5c9d1e7a30 serial 2\n\
                snapshot shop-dev-pre-0003-20261203T125000Z and shop-dev-restored-20261203125000\n\
                digest 3f9a0c1b2d4e → 0a1b2c3d4e5f6a\n\
                done (0.1s), waited 12ms, 3s elapsed\n\
                http://127.0.0.1:54321/ and localhost:5432, file /tmp/abc-1/x.json.\n\
                keep: engine 16.3, 20 GiB, db.t4g.micro, s3_bucket.uploads, 0003_users.sql, 1s-ago";
    assert_eq!(
        crate::common::scrub(text),
        "lineage [UUID] serial 2\n\
         snapshot shop-dev-pre-0003-[TIME] and shop-dev-restored-[TIME]\n\
         digest [HEX] → [HEX]\n\
         done ([DURATION]), waited [DURATION], [DURATION] elapsed\n\
         http://127.0.0.1:[PORT]/ and localhost:[PORT], file [TMP]\n\
         keep: engine 16.3, 20 GiB, db.t4g.micro, s3_bucket.uploads, 0003_users.sql, [DURATION]-ago"
    );
}
