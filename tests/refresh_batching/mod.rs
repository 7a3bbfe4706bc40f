//! Refresh reads in batches where AWS offers a batch read (issue 12): SSM parameters go
//! 10 names to a GetParameters call, through the real binary against moto, with the calls
//! counted by the test-side proxy. A batch still sees a parameter deleted or changed outside
//! (including a SecureString's value, read decrypted), and parameters whose tags or
//! metadata are managed keep their own reads.

use crate::common::TestEnv;

fn stack(n: usize) -> String {
    let mut s = String::from("[stack]\nname = \"batch\"\nregion = \"us-east-1\"\n");
    for i in 0..n {
        s.push_str(&format!(
            "\n[ssm_parameter.p{i}]\nname = \"/batch/p{i}\"\ntype = \"String\"\nvalue = \"v-{i}\"\n"
        ));
    }
    s.push_str(
        "\n[ssm_parameter.secret]\nname = \"/batch/secret\"\ntype = \"SecureString\"\nvalue = { from_env = \"BATCH_SECRET\" }\n",
    );
    s.push_str(
        "\n[ssm_parameter.tagged]\nname = \"/batch/tagged\"\ntype = \"String\"\nvalue = \"t\"\ndescription = \"kept apart\"\ntags = { team = \"web\" }\n",
    );
    s
}

fn secret(c: &mut assert_cmd::Command) {
    c.env("BATCH_SECRET", "batch-secret-value-77");
}

fn count(ops: &[String], op: &str) -> usize {
    ops.iter().filter(|o| o.as_str() == op).count()
}

#[tokio::test]
async fn a_no_change_plan_reads_parameters_ten_to_a_call_and_still_sees_outside_changes() {
    let env = TestEnv::new();
    env.write("batch.toml", stack(24));
    env.run_with(["apply", "batch.toml", "--auto-approve"], secret)
        .assert_success();

    let proxy = env.proxy();
    let before = proxy.operations().len();
    env.run_with(["plan", "batch.toml", "--detailed-exitcode"], secret)
        .assert_code(0);
    let ops = proxy.operations()[before..].to_vec();
    // 24 plain parameters and the SecureString: 25 names, 3 GetParameters calls; the tagged
    // one with a description reads on its own (GetParameter, DescribeParameters, tags).
    assert_eq!(count(&ops, "ssm:GetParameters"), 3, "{ops:?}");
    assert_eq!(count(&ops, "ssm:GetParameter"), 1, "{ops:?}");
    assert_eq!(count(&ops, "ssm:DescribeParameters"), 1, "{ops:?}");
    assert_eq!(count(&ops, "ssm:ListTagsForResource"), 1, "{ops:?}");

    // Outside changes inside a batch: one value edited, one parameter deleted, the secret
    // rotated.
    let ssm = aws_sdk_ssm::Client::new(&env.sdk_config().await);
    ssm.put_parameter()
        .name("/batch/p3")
        .value("edited")
        .overwrite(true)
        .send()
        .await
        .unwrap();
    ssm.delete_parameter()
        .name("/batch/p17")
        .send()
        .await
        .unwrap();
    ssm.put_parameter()
        .name("/batch/secret")
        .value("rotated-outside")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let p = env.run_with(["plan", "batch.toml", "--detailed-exitcode"], secret);
    p.assert_code(2)
        .assert_stdout_contains("# ssm_parameter.p3 will be updated in place")
        .assert_stdout_contains("# ssm_parameter.p17 will be created")
        .assert_stdout_contains("# ssm_parameter.secret will be updated in place")
        .assert_stdout_contains("1 to add, 2 to change");
    assert!(
        !p.stdout().contains("rotated-outside") && !p.stdout().contains("batch-secret-value-77")
    );
    env.run_with(["apply", "batch.toml", "--auto-approve"], secret)
        .assert_success();
    env.run_with(["plan", "batch.toml", "--detailed-exitcode"], secret)
        .assert_code(0);
    let got = ssm
        .get_parameter()
        .name("/batch/secret")
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.parameter().unwrap().value(),
        Some("batch-secret-value-77")
    );
}

fn groups_and_alarms() -> String {
    let mut s = String::from(
        "[stack]\nname = \"batch2\"\nregion = \"us-east-1\"\n\n[data.vpc.main]\ndefault = true\n",
    );
    for i in 0..4 {
        s.push_str(&format!(
            "\n[security_group.g{i}]\nname = \"batch-g{i}\"\nvpc = \"${{data.vpc.main.id}}\"\n\n[[security_group.g{i}.ingress]]\nport = {}\ncidr_blocks = [\"10.0.0.0/8\"]\n",
            8000 + i
        ));
        s.push_str(&format!(
            "\n[cloudwatch_alarm.a{i}]\nname = \"batch-a{i}\"\nnamespace = \"AWS/ApplicationELB\"\nmetric = \"HTTPCode_Target_5XX_Count\"\nstatistic = \"Sum\"\nperiod = 60\nevaluation_periods = 3\nthreshold = {}\ncomparison = \">\"\n",
            10 + i
        ));
    }
    s
}

#[tokio::test]
async fn security_groups_and_alarms_are_read_in_one_call_each() {
    let env = TestEnv::new();
    env.write("b.toml", groups_and_alarms());
    env.ok(["apply", "b.toml", "--auto-approve"]);
    let proxy = env.proxy();
    let before = proxy.operations().len();
    env.run(["plan", "b.toml", "--detailed-exitcode"])
        .assert_code(0);
    let ops = proxy.operations()[before..].to_vec();
    assert_eq!(count(&ops, "ec2:DescribeSecurityGroups"), 1, "{ops:?}");
    assert_eq!(count(&ops, "monitoring:DescribeAlarms"), 1, "{ops:?}");

    // One group deleted and one alarm changed outside: the batch falls back for the group
    // (DescribeSecurityGroups refuses a list naming a missing id) and sees both.
    let conf = env.sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let id = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values("batch-g2")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .security_groups()[0]
        .group_id()
        .unwrap()
        .to_owned();
    ec2.delete_security_group()
        .group_id(&id)
        .send()
        .await
        .unwrap();
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    cw.delete_alarms()
        .alarm_names("batch-a1")
        .send()
        .await
        .unwrap();
    let p = env.run(["plan", "b.toml", "--detailed-exitcode"]);
    p.assert_code(2)
        .assert_stdout_contains("# security_group.g2 will be created")
        .assert_stdout_contains("# cloudwatch_alarm.a1 will be created")
        .assert_stdout_contains("2 to add, 0 to change");
    env.ok(["apply", "b.toml", "--auto-approve"]);
    env.run(["plan", "b.toml", "--detailed-exitcode"])
        .assert_code(0);
}

#[tokio::test]
async fn refresh_keeps_each_service_under_its_concurrency_ceiling() {
    let env = TestEnv::new();
    // Tagged parameters: each is read on its own (three calls at once), 30 of them.
    let mut s = String::from("[stack]\nname = \"ceil\"\nregion = \"us-east-1\"\n");
    for i in 0..30 {
        s.push_str(&format!(
            "\n[ssm_parameter.p{i}]\nname = \"/ceil/p{i}\"\nvalue = \"v\"\ntags = {{ n = \"{i}\" }}\n"
        ));
    }
    env.write("c.toml", s);
    env.ok(["apply", "c.toml", "--auto-approve"]);
    let proxy = env.proxy();
    proxy.set_delay(std::time::Duration::from_millis(150));
    env.run_with(
        [
            "plan",
            "c.toml",
            "--detailed-exitcode",
            "--concurrency",
            "64",
        ],
        |c| {
            c.env("STACKWRIGHT_SERVICE_CONCURRENCY", "4");
        },
    )
    .assert_code(0);
    // 4 reads at a time, each GetParameter + DescribeParameters + ListTagsForResource.
    let max = proxy.max_in_flight();
    assert!((1..=12).contains(&max), "{max} requests in flight at once");
}

#[tokio::test]
async fn a_bucket_whose_settings_are_read_needs_no_head_bucket() {
    let env = TestEnv::new();
    env.write(
        "s.toml",
        "[stack]\nname = \"hb\"\nregion = \"us-east-1\"\n\n[s3_bucket.b]\nname = \"hb-bucket-1\"\nversioning = true\ntags = { app = \"hb\" }\n",
    );
    env.ok(["apply", "s.toml", "--auto-approve"]);
    let proxy = env.proxy();
    let before = proxy.operations().len();
    env.run(["plan", "s.toml", "--detailed-exitcode"])
        .assert_code(0);
    let ops = proxy.operations()[before..].to_vec();
    // Versioning, tags and the public access block: one GET each, and the bucket's
    // existence comes with them.
    assert_eq!(count(&ops, "s3:HEAD"), 0, "{ops:?}");
    assert_eq!(count(&ops, "s3:GET"), 3, "{ops:?}");

    // Deleted outside: the GETs' NoSuchBucket says so.
    let s3 = env.s3().await;
    s3.delete_bucket()
        .bucket("hb-bucket-1")
        .send()
        .await
        .unwrap();
    env.run(["plan", "s.toml", "--detailed-exitcode"])
        .assert_code(2)
        .assert_stdout_contains("# s3_bucket.b will be created");
    env.ok(["apply", "s.toml", "--auto-approve"]);
    let st: serde_json::Value = serde_json::from_str(&env.read("state/hb.json")).unwrap();
    assert_eq!(
        st["resources"]["s3_bucket.b"]["attributes"]["region"], "us-east-1",
        "{st:#}"
    );
}
