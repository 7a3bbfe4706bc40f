//! `security_group` (issue 8) against moto: rules are a set (file order, grouping and
//! AWS's order never show as a diff), outside edits are drift and get restored, bad rules
//! are refused before any AWS write, dependants go first on destroy, and a create whose
//! reply was lost or whose run was cut short is adopted, never duplicated.

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange};

use crate::common::TestEnv;
use crate::common::proxy::Fault;

const STACK: &str = r#"[stack]
name = "sg"
region = "us-east-1"

[data.vpc.main]
default = true

[security_group.alb]
name = "web-alb"
description = "load balancer"
vpc = "${data.vpc.main.id}"
tags = { app = "web" }

[[security_group.alb.ingress]]
port = 443
cidr_blocks = ["0.0.0.0/0", "10.0.0.0/8"]
description = "https"

[[security_group.alb.ingress]]
port = 80
cidr_blocks = ["0.0.0.0/0"]

[security_group.app]
name = "web-app"
vpc = "${data.vpc.main.id}"

[[security_group.app.ingress]]
port = 8000
source_security_group = "${security_group.alb.id}"
description = "from the load balancer"

[[security_group.app.egress]]
port = 443
cidr_blocks = ["0.0.0.0/0"]

[[security_group.app.egress]]
protocol = "udp"
from_port = 53
to_port = 53
cidr_blocks = ["10.0.0.0/8"]
"#;

fn ec2_filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// The group's rules as AWS reports them, one line per (protocol, ports, peer, description).
async fn rules(env: &TestEnv, name: &str, egress: bool) -> Vec<String> {
    let out = env
        .ec2()
        .await
        .describe_security_groups()
        .filters(ec2_filter("group-name", name))
        .send()
        .await
        .unwrap();
    let [g] = out.security_groups() else {
        panic!(
            "expected one group {name}, found {:?}",
            out.security_groups()
        );
    };
    let perms = if egress {
        g.ip_permissions_egress()
    } else {
        g.ip_permissions()
    };
    let mut lines = Vec::new();
    for p in perms {
        let head = format!(
            "{} {:?}-{:?}",
            p.ip_protocol().unwrap_or(""),
            p.from_port(),
            p.to_port()
        );
        for r in p.ip_ranges() {
            lines.push(format!(
                "{head} {} {}",
                r.cidr_ip().unwrap_or(""),
                r.description().unwrap_or("")
            ));
        }
        for r in p.user_id_group_pairs() {
            lines.push(format!(
                "{head} {} {}",
                r.group_id().unwrap_or(""),
                r.description().unwrap_or("")
            ));
        }
    }
    lines.sort();
    lines
}

async fn group_id(env: &TestEnv, name: &str) -> String {
    let out = env
        .ec2()
        .await
        .describe_security_groups()
        .filters(ec2_filter("group-name", name))
        .send()
        .await
        .unwrap();
    out.security_groups()[0].group_id().unwrap().to_owned()
}

async fn count(env: &TestEnv, name: &str) -> usize {
    env.ec2()
        .await
        .describe_security_groups()
        .filters(ec2_filter("group-name", name))
        .send()
        .await
        .unwrap()
        .security_groups()
        .len()
}

#[tokio::test]
async fn rules_are_a_set_and_a_fresh_apply_plans_to_no_changes() {
    let env = TestEnv::new();
    env.write("sg.toml", STACK);
    env.ok(["apply", "sg.toml", "--auto-approve"]);
    let alb = group_id(&env, "web-alb").await;
    assert_eq!(
        rules(&env, "web-alb", false).await,
        [
            "tcp Some(443)-Some(443) 0.0.0.0/0 https",
            "tcp Some(443)-Some(443) 10.0.0.0/8 https",
            "tcp Some(80)-Some(80) 0.0.0.0/0 ",
        ]
    );
    assert_eq!(
        rules(&env, "web-app", false).await,
        [format!(
            "tcp Some(8000)-Some(8000) {alb} from the load balancer"
        )]
    );
    // A written egress replaces AWS's allow-all rule.
    assert_eq!(
        rules(&env, "web-app", true).await,
        [
            "tcp Some(443)-Some(443) 0.0.0.0/0 ",
            "udp Some(53)-Some(53) 10.0.0.0/8 ",
        ]
    );
    // Without egress in the file, AWS's default is left alone.
    assert_eq!(
        rules(&env, "web-alb", true).await,
        ["-1 None-None 0.0.0.0/0 "]
    );
    env.ok(["plan", "sg.toml", "--detailed-exitcode"])
        .assert_stdout_contains("No changes.");

    // The same rules, blocks reordered, CIDRs regrouped and protocol spelt differently:
    // still no change.
    let regrouped = STACK.replace(
        r#"[[security_group.alb.ingress]]
port = 443
cidr_blocks = ["0.0.0.0/0", "10.0.0.0/8"]
description = "https"

[[security_group.alb.ingress]]
port = 80
cidr_blocks = ["0.0.0.0/0"]
"#,
        r#"[[security_group.alb.ingress]]
port = 80
protocol = "6"
cidr_blocks = ["0.0.0.0/0"]

[[security_group.alb.ingress]]
from_port = 443
to_port = 443
cidr_blocks = ["10.0.0.0/8"]
description = "https"

[[security_group.alb.ingress]]
port = 443
cidr_blocks = ["0.0.0.0/0"]
description = "https"
"#,
    );
    assert_ne!(regrouped, STACK);
    env.write("sg.toml", &regrouped);
    env.ok(["plan", "sg.toml", "--detailed-exitcode"])
        .assert_stdout_contains("No changes.");

    // A real change touches only what differs: one rule added, one description edited.
    let changed = regrouped.replace(
        "description = \"from the load balancer\"",
        "description = \"from the ALB\"",
    ) + "\n[[security_group.alb.ingress]]\nport = 8443\nipv6_cidr_blocks = [\"::/0\"]\n";
    env.write("sg.toml", &changed);
    let plan = env.run(["plan", "sg.toml", "--detailed-exitcode"]);
    plan.assert_code(2)
        .assert_stdout_contains("0 to add, 2 to change, 0 to replace, 0 to destroy");
    env.ok(["apply", "sg.toml", "--auto-approve"]);
    assert_eq!(
        rules(&env, "web-app", false).await,
        [format!("tcp Some(8000)-Some(8000) {alb} from the ALB")]
    );
    assert_eq!(group_id(&env, "web-alb").await, alb, "updated in place");
    env.ok(["plan", "sg.toml", "--detailed-exitcode"]);
}

#[tokio::test]
async fn an_outside_rule_change_is_drift_and_is_restored() {
    let env = TestEnv::new();
    env.write("sg.toml", STACK);
    env.ok(["apply", "sg.toml", "--auto-approve"]);
    let ec2 = env.ec2().await;
    let alb = group_id(&env, "web-alb").await;
    // Someone opens SSH and removes the port-80 rule with the CLI.
    ec2.authorize_security_group_ingress()
        .group_id(&alb)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    ec2.revoke_security_group_ingress()
        .group_id(&alb)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(80)
                .to_port(80)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let plan = env.run(["plan", "sg.toml", "--detailed-exitcode"]);
    plan.assert_code(2)
        .assert_stdout_contains("Changed outside Stackwright:")
        .assert_stdout_contains("~ security_group.alb")
        .assert_stdout_contains("port = 22")
        .assert_stdout_contains("1 to change");
    env.ok(["apply", "sg.toml", "--auto-approve"]);
    assert_eq!(
        rules(&env, "web-alb", false).await,
        [
            "tcp Some(443)-Some(443) 0.0.0.0/0 https",
            "tcp Some(443)-Some(443) 10.0.0.0/8 https",
            "tcp Some(80)-Some(80) 0.0.0.0/0 ",
        ]
    );
    env.ok(["plan", "sg.toml", "--detailed-exitcode"]);
}

#[test]
fn bad_rules_are_refused_before_any_aws_call() {
    let env = TestEnv::new();
    env.write(
        "bad.toml",
        r#"[stack]
name = "sg"
region = "us-east-1"

[security_group.a]
name = "sg-reserved"

[[security_group.a.ingress]]
port = 80

[[security_group.a.ingress]]
port = 80
cidr_blocks = ["0.0.0.0/0"]
source_security_group = "sg-123"

[[security_group.a.ingress]]
cidr_blocks = ["0.0.0.0/0"]

[[security_group.a.ingress]]
port = 70000
cidr_blocks = ["0.0.0.0/0"]

[[security_group.a.ingress]]
port = 80
cidr_blocks = ["10.0.0.0/33"]

[[security_group.a.ingress]]
protocol = "all"
port = 80
cidr_blocks = ["0.0.0.0/0"]

[security_group.b]
name = "b"
description = "naïve"

[[security_group.b.egress]]
port = 80
source_security_group = "${security_group.a.arn}"
ipv6_cidr_blocks = ["::/0"]
"#,
    );
    let proxy = env.proxy();
    let run = env.run(["plan", "bad.toml"]);
    run.assert_code(1)
        .assert_stderr_contains("bad.toml:6:8: `name` of `security_group.a`: \"sg-reserved\" starts with sg-")
        .assert_stderr_contains("bad.toml:8:1: `ingress` of `security_group.a`: rule 1: a rule needs exactly one source")
        .assert_stderr_contains("found none");
    // One error per attribute (the first bad rule), every attribute reported.
    run.assert_stderr_contains("bad.toml:34:15: `description` of `security_group.b`: 'ï' is not allowed")
        .assert_stderr_contains("`egress` of `security_group.b`: rule 1: a rule needs exactly one source (cidr_blocks, ipv6_cidr_blocks or source_security_group), found ipv6_cidr_blocks and source_security_group");
    assert_eq!(proxy.requests(), 0, "{run}");

    for (rule, why) in [
        (
            "port = 80\ncidr_blocks = [\"0.0.0.0/0\"]\nsource_security_group = \"sg-1\"",
            "found cidr_blocks and source_security_group",
        ),
        ("cidr_blocks = [\"0.0.0.0/0\"]", "a tcp rule needs port = N"),
        (
            "port = 70000\ncidr_blocks = [\"0.0.0.0/0\"]",
            "port 70000 is out of range",
        ),
        (
            "port = 80\ncidr_blocks = [\"10.0.0.0/33\"]",
            "\"10.0.0.0/33\" is not an IPv4 CIDR block",
        ),
        (
            "protocol = \"all\"\nport = 80\ncidr_blocks = [\"0.0.0.0/0\"]",
            "protocol \"all\" covers every port",
        ),
        (
            "from_port = 90\nto_port = 80\ncidr_blocks = [\"0.0.0.0/0\"]",
            "from_port 90 is above to_port 80",
        ),
        (
            "protocol = \"tpc\"\nport = 80\ncidr_blocks = [\"0.0.0.0/0\"]",
            "unknown protocol \"tpc\"",
        ),
        (
            "port = 80\nsource_security_group = \"alb\"",
            "\"alb\" is not a group id",
        ),
    ] {
        env.write(
            "one.toml",
            format!("[stack]\nname = \"sg\"\nregion = \"us-east-1\"\n\n[security_group.a]\nname = \"a\"\n\n[[security_group.a.ingress]]\n{rule}\n"),
        );
        env.run(["plan", "one.toml"])
            .assert_code(1)
            .assert_stderr_contains("one.toml:8:1: `ingress` of `security_group.a`: rule 1: ")
            .assert_stderr_contains(why);
    }
    assert_eq!(proxy.requests(), 0);
}

#[test]
fn a_value_known_only_at_plan_is_checked_there_with_the_address() {
    let env = TestEnv::new();
    // A VPC id where a group id belongs: known once data.vpc is read, refused before any write.
    env.write(
        "p.toml",
        r#"[stack]
name = "sg"
region = "us-east-1"

[data.vpc.main]
default = true

[security_group.a]
name = "web-a"

[[security_group.a.ingress]]
port = 80
source_security_group = "${data.vpc.main.id}"
"#,
    );
    let proxy = env.proxy();
    let run = env.run(["plan", "p.toml"]);
    run.assert_code(1)
        .assert_stderr_contains("p.toml:11:1: `ingress`: rule 1: source_security_group \"vpc-")
        .assert_stderr_contains("is not a group id");
    let log = env.moto().log();
    assert!(!log.contains("CreateSecurityGroup"), "{log}");
    assert!(proxy.requests() > 0, "the VPC was read");
}

#[tokio::test]
async fn destroy_deletes_the_referencing_group_first() {
    let env = TestEnv::new();
    env.write("sg.toml", STACK);
    env.ok(["apply", "sg.toml", "--auto-approve"]);
    let run = env.ok(["destroy", "sg.toml", "--auto-approve"]);
    let out = run.stdout();
    let app_done = out
        .find("security_group.app: Destruction complete")
        .expect("app destroyed");
    let alb_started = out
        .find("security_group.alb: Destroying...")
        .expect("alb destroyed");
    assert!(app_done < alb_started, "{out}");
    assert_eq!(count(&env, "web-alb").await, 0);
    assert_eq!(count(&env, "web-app").await, 0);
}

#[tokio::test]
async fn a_lost_create_reply_is_adopted_not_duplicated() {
    let env = TestEnv::new();
    env.write("sg.toml", STACK);
    let proxy = env.proxy();
    // moto creates the group, the reply never arrives; the SDK's retry meets
    // InvalidGroup.Duplicate and the group, tagged with this address and lineage, is ours.
    proxy.fail_once_matching("Action=CreateSecurityGroup", Fault::DropAfter);
    env.ok(["apply", "sg.toml", "--auto-approve"]);
    assert_eq!(proxy.faults(), 1);
    assert_eq!(count(&env, "web-alb").await, 1);
    assert_eq!(count(&env, "web-app").await, 1);
    env.ok(["plan", "sg.toml", "--detailed-exitcode"]);
}

#[tokio::test]
async fn a_create_cut_short_before_its_id_was_recorded_is_found_by_its_tags() {
    let env = TestEnv::new();
    env.write("sg.toml", STACK);
    let proxy = env.proxy();
    // Every reply of CreateSecurityGroup is lost: the apply fails with the intent open
    // and no id, while AWS holds the groups.
    proxy.fail_matching("Action=CreateSecurityGroup", Fault::DropAfter);
    let run = env.run_with(["apply", "sg.toml", "--auto-approve"], |c| {
        c.env("AWS_MAX_ATTEMPTS", "2");
    });
    assert_eq!(run.code(), Some(1), "{run}");
    assert_eq!(count(&env, "web-alb").await, 1);
    let state: serde_json::Value = serde_json::from_str(&env.read("state/sg.json")).unwrap();
    assert!(
        state["pending"]["security_group.alb"]["id"].is_null(),
        "{state}"
    );
    proxy.clear_faults();
    let plan = env.run(["plan", "sg.toml"]);
    plan.assert_stdout_contains("adopted");
    env.ok(["apply", "sg.toml", "--auto-approve"]);
    assert_eq!(count(&env, "web-alb").await, 1, "not duplicated");
    assert_eq!(count(&env, "web-app").await, 1);
    env.ok(["plan", "sg.toml", "--detailed-exitcode"]);
}

#[tokio::test]
async fn an_rds_instance_takes_its_security_groups_and_goes_before_them() {
    let env = TestEnv::new();
    let stack = crate::common::rds_stack("sgdb", "SGDB_PW").replace(
        "db_subnet_group = ",
        "vpc_security_group_ids = [\"${security_group.db.id}\"]\ndb_subnet_group = ",
    ) + r#"
[security_group.db]
name = "sgdb-db"
vpc = "${data.vpc.main.id}"

[[security_group.db.ingress]]
port = 5432
cidr_blocks = ["10.0.0.0/8"]
"#;
    env.write("db.toml", &stack);
    let run = |args: &[&str]| {
        env.run_with(args.iter().copied(), |c| {
            c.env("SGDB_PW", "pw-0123456789");
        })
    };
    run(&["apply", "db.toml", "--auto-approve"]).assert_success();
    let sg = group_id(&env, "sgdb-db").await;
    let db = env
        .rds()
        .await
        .describe_db_instances()
        .send()
        .await
        .unwrap();
    let groups: Vec<&str> = db.db_instances()[0]
        .vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id())
        .collect();
    assert_eq!(groups, [sg.as_str()]);
    run(&["plan", "db.toml", "--detailed-exitcode"]).assert_success();
    let out = run(&["destroy", "db.toml", "--auto-approve"]);
    out.assert_success();
    let text = out.stdout();
    let db_done = text
        .find("rds_instance.db: Destruction complete")
        .expect("instance destroyed");
    let sg_start = text
        .find("security_group.db: Destroying...")
        .expect("group destroyed");
    assert!(db_done < sg_start, "{text}");
    assert_eq!(count(&env, "sgdb-db").await, 0);
}

#[tokio::test]
async fn a_group_owned_elsewhere_is_read_by_name_or_id() {
    let env = TestEnv::new();
    let ec2 = env.ec2().await;
    let vpc = ec2
        .describe_vpcs()
        .filters(ec2_filter("isDefault", "true"))
        .send()
        .await
        .unwrap()
        .vpcs()[0]
        .vpc_id()
        .unwrap()
        .to_owned();
    let shared = ec2
        .create_security_group()
        .group_name("shared-bastion")
        .description("owned by the platform team")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    env.write(
        "d.toml",
        format!(
            r#"[stack]
name = "sg"
region = "us-east-1"

[data.vpc.main]
default = true

[data.security_group.by_name]
name = "shared-bastion"
vpc = "${{data.vpc.main.id}}"

[data.security_group.by_id]
id = "{shared}"

[security_group.app]
name = "web-app"
vpc = "${{data.security_group.by_name.vpc_id}}"

[[security_group.app.ingress]]
port = 22
source_security_group = "${{data.security_group.by_id.id}}"
"#
        ),
    );
    env.ok(["apply", "d.toml", "--auto-approve"]);
    assert_eq!(
        rules(&env, "web-app", false).await,
        [format!("tcp Some(22)-Some(22) {shared} ")]
    );
    env.ok(["plan", "d.toml", "--detailed-exitcode"]);

    // Selectors that cannot name one group: refused at load, or no match at plan.
    env.write(
        "bad.toml",
        "[stack]\nname = \"sg\"\nregion = \"us-east-1\"\n\n[data.security_group.x]\nname = \"shared-bastion\"\n",
    );
    env.run(["validate", "bad.toml"])
        .assert_code(1)
        .assert_stderr_contains("bad.toml:5:22")
        .assert_stderr_contains("a group name is unique only within its VPC");
    env.write(
        "none.toml",
        "[stack]\nname = \"sg\"\nregion = \"us-east-1\"\n\n[data.security_group.x]\nid = \"sg-0000000000000000\"\n",
    );
    env.run(["plan", "none.toml"])
        .assert_code(1)
        .assert_stderr_contains("data.security_group must match exactly one group, but 0 matched id = sg-0000000000000000");
}
