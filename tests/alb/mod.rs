//! The Application Load Balancer kinds (issue 8) against moto: a security group, an ALB,
//! blue and green target groups, a weighted HTTP listener and a rule apply and re-plan to
//! no changes; the weights read back through the SDK; outside edits (weights, a health-check
//! path) are drift and get restored; bad input is refused at plan time with its address and
//! no AWS write; renaming a target group a listener forwards to is create-then-delete with
//! the listener moved before the old group goes; destroy runs in dependency order; a create
//! whose reply was lost is adopted, never duplicated.

use aws_sdk_elasticloadbalancingv2::Client as Elbv2;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple,
};

use crate::common::TestEnv;
use crate::common::proxy::Fault;

const STACK: &str = r#"[stack]
name = "albt"
region = "us-east-1"

[data.vpc.main]
default = true

[data.subnets.default]
vpc = "${data.vpc.main.id}"

[security_group.alb]
name = "albt-alb"
vpc = "${data.vpc.main.id}"

[[security_group.alb.ingress]]
port = 80
cidr_blocks = ["0.0.0.0/0"]

[alb.web]
name = "albt-web"
subnets = "${data.subnets.default.ids}"
security_groups = ["${security_group.alb.id}"]
idle_timeout = 120
drop_invalid_header_fields = true
tags = { app = "web" }

[alb_target_group.blue]
name = "albt-blue"
port = 8000
target_type = "ip"
vpc = "${data.vpc.main.id}"
health_check = { path = "/ready", matcher = "200-299" }
deregistration_delay = 30

[alb_target_group.green]
name = "albt-green"
port = 8000
target_type = "ip"
vpc = "${data.vpc.main.id}"
health_check = { path = "/ready" }
deregistration_delay = 30

[alb_listener.http]
load_balancer = "${alb.web.arn}"
port = 80

[alb_listener.http.default_action]
forward = [
  { target_group = "${alb_target_group.blue.arn}", weight = 100 },
  { target_group = "${alb_target_group.green.arn}", weight = 0 },
]

[alb_listener_rule.api]
listener = "${alb_listener.http.arn}"
priority = 10
conditions = { path_pattern = ["/v2/*", "/api/*"], http_header = [{ name = "X-Canary", values = ["1"] }] }
action = { target_group = "${alb_target_group.green.arn}" }
"#;

async fn elbv2(env: &TestEnv) -> Elbv2 {
    Elbv2::new(&env.sdk_config().await)
}

async fn lb_arn(env: &TestEnv) -> String {
    let out = elbv2(env)
        .await
        .describe_load_balancers()
        .names("albt-web")
        .send()
        .await
        .unwrap();
    out.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned()
}

/// The target groups of this name in AWS: (name, arn).
async fn groups(env: &TestEnv) -> Vec<(String, String)> {
    let out = elbv2(env)
        .await
        .describe_target_groups()
        .send()
        .await
        .unwrap();
    let mut g: Vec<(String, String)> = out
        .target_groups()
        .iter()
        .map(|g| {
            (
                g.target_group_name().unwrap().to_owned(),
                g.target_group_arn().unwrap().to_owned(),
            )
        })
        .collect();
    g.sort();
    g
}

async fn group_arn(env: &TestEnv, name: &str) -> String {
    groups(env)
        .await
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no target group {name}"))
        .1
}

/// The listener on port 80 and its forward as (target group name, weight), read with the SDK.
async fn listener_forward(env: &TestEnv) -> (String, Vec<(String, i32)>) {
    let client = elbv2(env).await;
    let out = client
        .describe_listeners()
        .load_balancer_arn(lb_arn(env).await)
        .send()
        .await
        .unwrap();
    let [l] = out.listeners() else {
        panic!("expected one listener, found {:?}", out.listeners());
    };
    let names: std::collections::BTreeMap<String, String> =
        groups(env).await.into_iter().map(|(n, a)| (a, n)).collect();
    let a = &l.default_actions()[0];
    let name = |arn: &str| {
        names
            .get(arn)
            .cloned()
            .unwrap_or_else(|| format!("DELETED {arn}"))
    };
    let mut fwd: Vec<(String, i32)> = match a.forward_config() {
        Some(f) if !f.target_groups().is_empty() => f
            .target_groups()
            .iter()
            .map(|t| (name(t.target_group_arn().unwrap()), t.weight().unwrap_or(1)))
            .collect(),
        _ => vec![(name(a.target_group_arn().unwrap()), 1)],
    };
    fwd.sort();
    (l.listener_arn().unwrap().to_owned(), fwd)
}

#[tokio::test]
async fn apply_plans_to_no_changes_and_the_weights_read_back() {
    let env = TestEnv::new();
    env.write("alb.toml", STACK);
    env.ok(["apply", "alb.toml", "--auto-approve"])
        .assert_stdout_contains("alb.web: Creation complete");
    env.ok(["plan", "alb.toml", "--detailed-exitcode"])
        .assert_stdout_contains("No changes.");
    let (_, fwd) = listener_forward(&env).await;
    assert_eq!(fwd, weights(100, 0));

    // What AWS holds, read independently: the ALB's attributes and the rule.
    let client = elbv2(&env).await;
    let lb = lb_arn(&env).await;
    let attrs = client
        .describe_load_balancer_attributes()
        .load_balancer_arn(&lb)
        .send()
        .await
        .unwrap();
    let attr = |k: &str| {
        attrs
            .attributes()
            .iter()
            .find(|a| a.key() == Some(k))
            .and_then(|a| a.value())
            .map(str::to_owned)
    };
    assert_eq!(attr("idle_timeout.timeout_seconds").as_deref(), Some("120"));
    assert_eq!(
        attr("routing.http.drop_invalid_header_fields.enabled").as_deref(),
        Some("true")
    );
    let (listener, _) = listener_forward(&env).await;
    let rules = client
        .describe_rules()
        .listener_arn(&listener)
        .send()
        .await
        .unwrap();
    let rule = rules
        .rules()
        .iter()
        .find(|r| r.priority() == Some("10"))
        .expect("rule at priority 10");
    assert_eq!(
        rule.actions()[0].target_group_arn(),
        Some(group_arn(&env, "albt-green").await.as_str())
    );
    let tg = client
        .describe_target_groups()
        .names("albt-blue")
        .send()
        .await
        .unwrap();
    let tg = &tg.target_groups()[0];
    assert_eq!(tg.health_check_path(), Some("/ready"));
    assert_eq!(tg.matcher().and_then(|m| m.http_code()), Some("200-299"));
    assert_eq!(tg.target_type().map(|t| t.as_str()), Some("ip"));

    // Blue/green: a weight change is an in-place update shown as the forward table.
    env.write(
        "alb.toml",
        STACK
            .replace("weight = 100 }", "weight = 90 }")
            .replace("weight = 0 }", "weight = 10 }"),
    );
    let plan = env.run(["plan", "alb.toml", "--detailed-exitcode"]);
    plan.assert_code(2)
        .assert_stdout_contains("~ alb_listener \"http\"")
        .assert_stdout_contains("+       \"weight\": 90")
        .assert_stdout_contains("-       \"weight\": 100")
        .assert_stdout_contains("0 to add, 1 to change, 0 to replace, 0 to destroy");
    env.ok(["apply", "alb.toml", "--auto-approve"]);
    assert_eq!(listener_forward(&env).await.1, weights(90, 10));
    assert_eq!(listener_forward(&env).await.0, listener, "updated in place");
    env.ok(["plan", "alb.toml", "--detailed-exitcode"]);
}

fn weights(blue: i32, green: i32) -> Vec<(String, i32)> {
    vec![
        ("albt-blue".to_owned(), blue),
        ("albt-green".to_owned(), green),
    ]
}

#[tokio::test]
async fn outside_edits_are_drift_and_are_restored() {
    let env = TestEnv::new();
    env.write("alb.toml", STACK);
    env.ok(["apply", "alb.toml", "--auto-approve"]);
    let client = elbv2(&env).await;
    let (listener, _) = listener_forward(&env).await;
    let blue = group_arn(&env, "albt-blue").await;
    let green = group_arn(&env, "albt-green").await;
    // Someone shifts half the traffic to green and edits blue's health check by hand.
    client
        .modify_listener()
        .listener_arn(&listener)
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .forward_config(
                    ForwardActionConfig::builder()
                        .target_groups(
                            TargetGroupTuple::builder()
                                .target_group_arn(&blue)
                                .weight(50)
                                .build(),
                        )
                        .target_groups(
                            TargetGroupTuple::builder()
                                .target_group_arn(&green)
                                .weight(50)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    client
        .modify_target_group()
        .target_group_arn(&blue)
        .health_check_path("/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(listener_forward(&env).await.1, weights(50, 50));
    let plan = env.run(["plan", "alb.toml", "--detailed-exitcode"]);
    plan.assert_code(2)
        .assert_stdout_contains("Changed outside Stackwright:")
        .assert_stdout_contains("~ alb_listener \"http\"")
        .assert_stdout_contains("~ alb_target_group \"blue\"")
        .assert_stdout_contains("/healthz")
        .assert_stdout_contains("\"weight\": 50")
        .assert_stdout_contains("0 to add, 2 to change, 0 to replace, 0 to destroy");
    env.ok(["apply", "alb.toml", "--auto-approve"]);
    assert_eq!(listener_forward(&env).await.1, weights(100, 0));
    let tg = client
        .describe_target_groups()
        .target_group_arns(&blue)
        .send()
        .await
        .unwrap();
    assert_eq!(tg.target_groups()[0].health_check_path(), Some("/ready"));
    env.ok(["plan", "alb.toml", "--detailed-exitcode"])
        .assert_stdout_contains("No changes.");
}

/// A stack of one listener (and what it needs written as literals, so nothing is read).
fn listener_stack(listener: &str) -> String {
    format!(
        r#"[stack]
name = "albt"
region = "us-east-1"

[alb_target_group.blue]
name = "albt-blue"
port = 8000
vpc = "vpc-12345678"

[alb_target_group.green]
name = "albt-green"
port = 8000
vpc = "vpc-12345678"

[alb_listener.http]
load_balancer = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/x/1"
{listener}
"#
    )
}

#[test]
fn bad_input_is_refused_at_plan_time_with_its_address() {
    let env = TestEnv::new();
    let proxy = env.proxy();
    let tg = |i: usize| {
        format!(
            "{{ target_group = \"arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/t{i}/1\" }}"
        )
    };
    let six = (0..6).map(tg).collect::<Vec<_>>().join(", ");
    for (listener, why) in [
        (
            format!("port = 80\ndefault_action = {{ forward = [{six}] }}"),
            "`default_action` of `alb_listener.http`: forward takes at most 5 target groups, found 6",
        ),
        (
            "port = 80\ndefault_action = { forward = [{ target_group = \"${alb_target_group.blue.arn}\", weight = 1000 }] }".to_owned(),
            "`default_action` of `alb_listener.http`: forward target 1: weight 1000 is out of range: use 0 to 999",
        ),
        (
            "port = 80\ndefault_action = { forward = [{ target_group = \"${alb_target_group.blue.arn}\", weight = 0 }, { target_group = \"${alb_target_group.green.arn}\", weight = 0 }] }".to_owned(),
            "`default_action` of `alb_listener.http`: every forward weight is 0",
        ),
        (
            "port = 80\ndefault_action = { target_group = \"${alb_target_group.blue.arn}\", fixed_response = { status_code = \"404\" } }".to_owned(),
            "`default_action` of `alb_listener.http`: an action is exactly one of target_group, forward, redirect or fixed_response; found target_group and fixed_response",
        ),
        (
            "port = 80\ndefault_action = {}".to_owned(),
            "found none",
        ),
    ] {
        env.write("bad.toml", listener_stack(&listener));
        let run = env.run(["plan", "bad.toml"]);
        run.assert_code(1).assert_stderr_contains(why);
        assert!(run.stderr().contains("alb_listener.http"), "{run}");
    }

    // Names AWS refuses, for both named kinds.
    for (name, why) in [
        ("albt-blue-0123456789-0123456789-x", "1 to 32 characters"),
        ("albt_blue", "'_' is not allowed"),
        ("-albt", "starts or ends with a hyphen"),
        ("internal-blue", "starts with internal-"),
    ] {
        env.write(
            "name.toml",
            listener_stack(
                "port = 80\ndefault_action = { fixed_response = { status_code = \"404\" } }",
            )
            .replace("name = \"albt-blue\"", &format!("name = \"{name}\"")),
        );
        env.run(["plan", "name.toml"])
            .assert_code(1)
            .assert_stderr_contains("`name` of `alb_target_group.blue`")
            .assert_stderr_contains(why);
        env.write(
            "lb.toml",
            format!("[stack]\nname = \"albt\"\nregion = \"us-east-1\"\n\n[alb.web]\nname = \"{name}\"\nsubnets = [\"subnet-1\", \"subnet-2\"]\n"),
        );
        env.run(["plan", "lb.toml"])
            .assert_code(1)
            .assert_stderr_contains("`name` of `alb.web`")
            .assert_stderr_contains(why);
    }

    // Rule priorities: in range, and unique per listener across the stack.
    let rules = |a: u32, b: u32| {
        listener_stack("port = 80\ndefault_action = { fixed_response = { status_code = \"404\" } }")
            + &format!(
                r#"
[alb_listener_rule.a]
listener = "${{alb_listener.http.arn}}"
priority = {a}
conditions = {{ path_pattern = ["/a/*"] }}
action = {{ target_group = "${{alb_target_group.blue.arn}}" }}

[alb_listener_rule.b]
listener = "${{alb_listener.http.arn}}"
priority = {b}
conditions = {{ host_header = ["b.example.com"] }}
action = {{ target_group = "${{alb_target_group.green.arn}}" }}
"#
            )
    };
    env.write("rules.toml", rules(10, 10));
    env.run(["plan", "rules.toml"])
        .assert_code(1)
        .assert_stderr_contains("`priority` of `alb_listener_rule.b`: 10 is already the priority of `alb_listener_rule.a` on the same listener")
        .assert_stderr_contains("give each rule of a listener its own priority");
    env.write("rules.toml", rules(10, 50001));
    env.run(["plan", "rules.toml"])
        .assert_code(1)
        .assert_stderr_contains(
            "`priority` of `alb_listener_rule.b`: priority 50001 is out of range: use 1 to 50000",
        );
    env.write("rules.toml", rules(10, 20));
    env.run(["validate", "rules.toml"]).assert_success();
    assert_eq!(proxy.requests(), 0, "nothing reached AWS");
}

#[tokio::test]
async fn an_https_listener_without_a_certificate_is_refused_at_plan() {
    let env = TestEnv::new();
    // Known only at plan (the protocol is whole-resource), refused there before any write.
    env.write(
        "https.toml",
        listener_stack("port = 443\nprotocol = \"HTTPS\"\ndefault_action = { target_group = \"${alb_target_group.blue.arn}\" }"),
    );
    let run = env.run(["apply", "https.toml", "--auto-approve"]);
    run.assert_code(1)
        .assert_stderr_contains("alb_listener.http")
        .assert_stderr_contains("an HTTPS listener needs a certificate: add certificate_arn");
    assert!(groups(&env).await.is_empty(), "nothing was created");
    env.write(
        "http.toml",
        listener_stack("port = 80\nssl_policy = \"ELBSecurityPolicy-2016-08\"\ndefault_action = { target_group = \"${alb_target_group.blue.arn}\" }"),
    );
    env.run(["plan", "http.toml"])
        .assert_code(1)
        .assert_stderr_contains("ssl_policy is only for HTTPS listeners");
}

#[tokio::test]
async fn renaming_a_target_group_moves_the_listener_before_the_old_one_goes() {
    let env = TestEnv::new();
    env.write("alb.toml", STACK);
    env.ok(["apply", "alb.toml", "--auto-approve"]);
    let old_green = group_arn(&env, "albt-green").await;
    let renamed = STACK.replace("name = \"albt-green\"", "name = \"albt-green-v2\"");
    env.write("alb.toml", &renamed);
    let plan = env.run(["plan", "alb.toml", "--detailed-exitcode"]);
    plan.assert_code(2)
        .assert_stdout_contains(
            "alb_target_group.green must be replaced, the new one created first",
        )
        .assert_stdout_contains("+/- alb_target_group \"green\"")
        .assert_stdout_contains("~ alb_listener \"http\"")
        .assert_stdout_contains("~ alb_listener_rule \"api\"")
        .assert_stdout_contains("0 to add, 2 to change, 1 to replace, 0 to destroy");

    // Stop the apply at the old group's delete: by then the listener and the rule must
    // forward to the new group, and the old one must still exist.
    let proxy = env.proxy();
    proxy.fail_matching("Action=DeleteTargetGroup", Fault::AccessDenied);
    let run = env.run(["apply", "alb.toml", "--auto-approve"]);
    assert_eq!(run.code(), Some(1), "{run}");
    let names: Vec<String> = groups(&env).await.into_iter().map(|g| g.0).collect();
    assert_eq!(names, ["albt-blue", "albt-green", "albt-green-v2"]);
    let new_green = group_arn(&env, "albt-green-v2").await;
    let (listener, fwd) = listener_forward(&env).await;
    assert_eq!(
        fwd,
        [
            ("albt-blue".to_owned(), 100),
            ("albt-green-v2".to_owned(), 0)
        ]
    );
    let rules = elbv2(&env)
        .await
        .describe_rules()
        .listener_arn(&listener)
        .send()
        .await
        .unwrap();
    let rule = rules
        .rules()
        .iter()
        .find(|r| r.priority() == Some("10"))
        .unwrap();
    assert_eq!(
        rule.actions()[0].target_group_arn(),
        Some(new_green.as_str())
    );

    proxy.clear_faults();
    env.ok(["apply", "alb.toml", "--auto-approve"]);
    let names: Vec<String> = groups(&env).await.into_iter().map(|g| g.0).collect();
    assert_eq!(names, ["albt-blue", "albt-green-v2"]);
    assert!(!groups(&env).await.iter().any(|g| g.1 == old_green));
    env.ok(["plan", "alb.toml", "--detailed-exitcode"])
        .assert_stdout_contains("No changes.");
}

#[tokio::test]
async fn destroy_goes_in_dependency_order() {
    let env = TestEnv::new();
    env.write("alb.toml", STACK);
    env.ok(["apply", "alb.toml", "--auto-approve"]);
    let run = env.ok(["destroy", "alb.toml", "--auto-approve"]);
    let out = run.stdout();
    let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("no {s:?} in\n{out}"));
    let rule_done = at("alb_listener_rule.api: Destruction complete");
    let listener_done = at("alb_listener.http: Destruction complete");
    assert!(rule_done < at("alb_listener.http: Destroying..."), "{out}");
    for tg in ["blue", "green"] {
        let start = at(&format!("alb_target_group.{tg}: Destroying..."));
        assert!(rule_done < start && listener_done < start, "{out}");
    }
    assert!(listener_done < at("alb.web: Destroying..."), "{out}");
    assert!(
        at("alb.web: Destruction complete") < at("security_group.alb: Destroying..."),
        "{out}"
    );
    assert!(groups(&env).await.is_empty());
    let lbs = elbv2(&env)
        .await
        .describe_load_balancers()
        .send()
        .await
        .unwrap();
    assert!(lbs.load_balancers().is_empty());
}

#[tokio::test]
async fn lost_create_replies_are_adopted_not_duplicated() {
    let env = TestEnv::new();
    env.write("alb.toml", STACK);
    let proxy = env.proxy();
    // Each create is carried out, its reply lost; the SDK's retry meets the name, port or
    // priority taken, and the object found there carries this address and lineage.
    for action in [
        "CreateLoadBalancer",
        "CreateTargetGroup",
        "CreateListener",
        "CreateRule",
    ] {
        proxy.fail_once_matching(&format!("Action={action}"), Fault::DropAfter);
    }
    env.ok(["apply", "alb.toml", "--auto-approve"]);
    assert_eq!(proxy.faults(), 4);
    let lbs = elbv2(&env)
        .await
        .describe_load_balancers()
        .send()
        .await
        .unwrap();
    assert_eq!(lbs.load_balancers().len(), 1);
    assert_eq!(groups(&env).await.len(), 2);
    let (listener, fwd) = listener_forward(&env).await;
    assert_eq!(fwd, weights(100, 0));
    let rules = elbv2(&env)
        .await
        .describe_rules()
        .listener_arn(&listener)
        .send()
        .await
        .unwrap();
    assert_eq!(rules.rules().len(), 2, "the rule and the default rule");
    env.ok(["plan", "alb.toml", "--detailed-exitcode"])
        .assert_stdout_contains("No changes.");
}

#[tokio::test]
async fn a_create_cut_short_before_its_arn_was_recorded_is_found_by_its_tags() {
    let env = TestEnv::new();
    env.write("alb.toml", STACK);
    let proxy = env.proxy();
    // Every reply of CreateTargetGroup is lost: the apply fails with the intent open and
    // no ARN recorded, while AWS holds the group.
    proxy.fail_matching("Action=CreateTargetGroup", Fault::DropAfter);
    let run = env.run_with(["apply", "alb.toml", "--auto-approve"], |c| {
        c.env("AWS_MAX_ATTEMPTS", "1");
    });
    assert_eq!(run.code(), Some(1), "{run}");
    assert!(!groups(&env).await.is_empty());
    proxy.clear_faults();
    env.ok(["plan", "alb.toml"])
        .assert_stdout_contains("adopted");
    env.ok(["apply", "alb.toml", "--auto-approve"]);
    assert_eq!(groups(&env).await.len(), 2, "not duplicated");
    env.ok(["plan", "alb.toml", "--detailed-exitcode"])
        .assert_stdout_contains("No changes.");
}

#[tokio::test]
async fn redirects_fixed_responses_stickiness_and_access_logs_plan_to_no_changes() {
    let env = TestEnv::new();
    let stack = r#"[stack]
name = "albt"
region = "us-east-1"

[data.vpc.main]
default = true

[data.subnets.default]
vpc = "${data.vpc.main.id}"

[alb.web]
name = "albt-web"
subnets = "${data.subnets.default.ids}"
access_logs = { bucket = "albt-logs", prefix = "web" }

[alb_target_group.blue]
name = "albt-blue"
port = 8000
target_type = "ip"
vpc = "${data.vpc.main.id}"
stickiness = { enabled = true, duration = 3600 }

[alb_listener.http]
load_balancer = "${alb.web.arn}"
port = 80
default_action = { redirect = { protocol = "HTTPS", port = 443 } }

[alb_listener_rule.health]
listener = "${alb_listener.http.arn}"
priority = 1
conditions = { path_pattern = ["/lb-health"] }
action = { fixed_response = { status_code = "200", content_type = "text/plain", message_body = "ok" } }
"#;
    env.write("alb.toml", stack);
    env.ok(["apply", "alb.toml", "--auto-approve"]);
    env.ok(["plan", "alb.toml", "--detailed-exitcode"])
        .assert_stdout_contains("No changes.");
    let client = elbv2(&env).await;
    let out = client
        .describe_listeners()
        .load_balancer_arn(lb_arn(&env).await)
        .send()
        .await
        .unwrap();
    let listener = out.listeners()[0].clone();
    let redirect = listener.default_actions()[0].redirect_config().unwrap();
    assert_eq!(
        (redirect.protocol(), redirect.port()),
        (Some("HTTPS"), Some("443"))
    );

    // The redirect becomes a forward and the idle timeout changes: both in place.
    env.write(
        "alb.toml",
        stack
            .replace(
                "default_action = { redirect = { protocol = \"HTTPS\", port = 443 } }",
                "default_action = { target_group = \"${alb_target_group.blue.arn}\" }",
            )
            .replace("access_logs = {", "idle_timeout = 300\naccess_logs = {"),
    );
    env.run(["plan", "alb.toml", "--detailed-exitcode"])
        .assert_code(2)
        .assert_stdout_contains("0 to add, 2 to change, 0 to replace, 0 to destroy");
    env.ok(["apply", "alb.toml", "--auto-approve"]);
    assert_eq!(
        listener_forward(&env).await,
        (
            listener.listener_arn().unwrap().to_owned(),
            vec![("albt-blue".to_owned(), 1)]
        )
    );
    env.ok(["plan", "alb.toml", "--detailed-exitcode"])
        .assert_stdout_contains("No changes.");
    env.ok(["destroy", "alb.toml", "--auto-approve"]);
}

/// The demo's shape: `environments = [...]` keeps the plain-HTTP listener to dev and the
/// HTTP→HTTPS redirect and the HTTPS listener (an ACM certificate, created in moto through
/// boto3) to prod. Each environment applies, re-plans to no changes, and holds exactly its
/// listeners, read back through the SDK.
#[tokio::test]
async fn per_environment_listeners_http_in_dev_redirect_and_https_in_prod() {
    let env = TestEnv::new();
    env.write(
        "s.toml",
        r#"[stack]
name = "albe"
region = "us-east-1"
environments = ["dev", "prod"]

[data.vpc.main]
default = true

[data.subnets.default]
vpc = "${data.vpc.main.id}"

[alb.web]
name = "albe-${env}"
subnets = "${data.subnets.default.ids}"

[alb_target_group.blue]
name = "albe-${env}-blue"
port = 8000
target_type = "ip"
vpc = "${data.vpc.main.id}"

[alb_listener.http]
environments = ["dev"]
load_balancer = "${alb.web.arn}"
port = 80
default_action = { target_group = "${alb_target_group.blue.arn}" }

[alb_listener.http_to_https]
environments = ["prod"]
load_balancer = "${alb.web.arn}"
port = 80
default_action = { redirect = { protocol = "HTTPS", port = 443 } }

[alb_listener.https]
environments = ["prod"]
load_balancer = "${alb.web.arn}"
port = 443
protocol = "HTTPS"
certificate_arn = "${var.certificate_arn}"
default_action = { target_group = "${alb_target_group.blue.arn}" }
"#,
    );
    let out = std::process::Command::new(crate::common::venv_bin("python"))
        .args([
            "-c",
            "import boto3; print(boto3.client('acm', region_name='us-east-1').request_certificate(DomainName='app.example.com')['CertificateArn'])",
        ])
        .envs(env.envs())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(cert.starts_with("arn:aws:acm:"), "{cert}");
    let var = format!("certificate_arn={cert}");

    env.ok(["apply", "s.toml", "--env", "dev", "--auto-approve"]);
    env.ok([
        "apply",
        "s.toml",
        "--env",
        "prod",
        "--var",
        &var,
        "--auto-approve",
    ]);
    env.ok([
        "plan",
        "s.toml",
        "--env",
        "prod",
        "--var",
        &var,
        "--detailed-exitcode",
    ])
    .assert_stdout_contains("No changes.");
    env.ok(["plan", "s.toml", "--env", "dev", "--detailed-exitcode"])
        .assert_stdout_contains("No changes.");

    let client = elbv2(&env).await;
    let listeners = |name: &'static str| {
        let client = client.clone();
        async move {
            let lb = client
                .describe_load_balancers()
                .names(name)
                .send()
                .await
                .unwrap()
                .load_balancers()[0]
                .load_balancer_arn()
                .unwrap()
                .to_owned();
            let mut ls = client
                .describe_listeners()
                .load_balancer_arn(lb)
                .send()
                .await
                .unwrap()
                .listeners()
                .to_vec();
            ls.sort_by_key(|l| l.port());
            ls
        }
    };
    let dev = listeners("albe-dev").await;
    assert_eq!(dev.len(), 1, "{dev:?}");
    assert_eq!(dev[0].port(), Some(80));
    assert_eq!(
        dev[0].default_actions()[0].r#type(),
        Some(&ActionTypeEnum::Forward)
    );

    let prod = listeners("albe-prod").await;
    assert_eq!(
        prod.iter().map(|l| l.port()).collect::<Vec<_>>(),
        [Some(80), Some(443)]
    );
    let redirect = prod[0].default_actions()[0].redirect_config().unwrap();
    assert_eq!(redirect.protocol(), Some("HTTPS"));
    assert_eq!(redirect.port(), Some("443"));
    assert_eq!(prod[1].protocol().map(|p| p.as_str()), Some("HTTPS"));
    assert_eq!(
        prod[1].certificates()[0].certificate_arn(),
        Some(cert.as_str())
    );

    // In dev, a resource may not refer to a prod-only one.
    env.write(
        "s.toml",
        env.read("s.toml") + "\n[output.https]\nvalue = \"${alb_listener.https.arn}\"\n",
    );
    env.fail(["plan", "s.toml", "--env", "dev"])
        .assert_code(1)
        .assert_stderr_contains("exists only in prod (this is --env dev)");
}
