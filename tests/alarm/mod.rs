//! `cloudwatch_alarm` (issue 8) against moto, through the harness's CBOR adapter: a p95
//! alarm and a metric-math error rate apply and re-plan to no changes, read back the same
//! through the AWS CLI's JSON protocol, an outside threshold edit is drift and restored, a
//! new name is created before the old alarm goes, bad input is refused at plan time with
//! no AWS write, destroy removes them, and a create whose reply was lost converges.

use std::path::PathBuf;
use std::process::Command;

use aws_sdk_cloudwatch::types::{MetricAlarm, StateValue};
use serde_json::{Value, json};

use crate::common::proxy::Fault;
use crate::common::{TestEnv, venv_bin};

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:alarms";
const LB: &str = "app/web/50dc6c495c0c9188";

fn stack(threshold: &str, errors_name: &str) -> String {
    format!(
        r#"[stack]
name = "alarms"
region = "us-east-1"

[ssm_parameter.lb]
name = "/alarms/LB"
value = "{LB}"

[cloudwatch_alarm.latency]
name = "alarms-latency-p95"
description = "p95 target response time above 500 ms"
namespace = "AWS/ApplicationELB"
metric = "TargetResponseTime"
dimensions = {{ LoadBalancer = "${{ssm_parameter.lb.value}}", TargetGroup = "targetgroup/blue/73e2d6bc24d8a067" }}
extended_statistic = "p95"
period = 60
evaluation_periods = 3
datapoints_to_alarm = 2
threshold = {threshold}
comparison = ">"
treat_missing_data = "notBreaching"
alarm_actions = ["{TOPIC}"]
tags = {{ app = "web" }}

[cloudwatch_alarm.errors]
name = "{errors_name}"
evaluation_periods = 5
threshold = 5
comparison = ">="
alarm_actions = ["{TOPIC}"]
ok_actions = ["{TOPIC}"]

[[cloudwatch_alarm.errors.query]]
id = "rate"
expression = "100 * errors / requests"
label = "5xx %"
return_data = true

[[cloudwatch_alarm.errors.query]]
id = "errors"
namespace = "AWS/ApplicationELB"
metric = "HTTPCode_Target_5XX_Count"
dimensions = {{ LoadBalancer = "${{ssm_parameter.lb.value}}" }}
stat = "Sum"
period = 60

[[cloudwatch_alarm.errors.query]]
id = "requests"
namespace = "AWS/ApplicationELB"
metric = "RequestCount"
dimensions = {{ LoadBalancer = "${{ssm_parameter.lb.value}}" }}
stat = "Sum"
period = 60

[ssm_parameter.errors_arn]
name = "/alarms/ERRORS_ARN"
value = "${{cloudwatch_alarm.errors.arn}}"
"#
    )
}

async fn cloudwatch(env: &TestEnv) -> aws_sdk_cloudwatch::Client {
    aws_sdk_cloudwatch::Client::new(&env.sdk_config().await)
}

/// The alarms of these names, read through the Rust SDK (CBOR, via the adapter).
async fn alarms(env: &TestEnv, names: &[&str]) -> Vec<MetricAlarm> {
    let out = cloudwatch(env)
        .await
        .describe_alarms()
        .set_alarm_names(Some(names.iter().map(|n| n.to_string()).collect()))
        .send()
        .await
        .unwrap();
    out.metric_alarms().to_vec()
}

/// A directory for `AWS_DATA_PATH` holding botocore's CloudWatch model with JSON as its
/// only protocol, so the AWS CLI (or boto3) never takes the CBOR path being checked.
fn json_model(env: &TestEnv) -> PathBuf {
    let dir = env.path("botocore-json");
    let script = r#"
import json, os, sys, botocore.loaders
m = botocore.loaders.Loader().load_service_model("cloudwatch", "service-2")
m["metadata"]["protocol"] = "json"
m["metadata"]["protocols"] = ["json"]
d = os.path.join(sys.argv[1], "cloudwatch", m["metadata"]["apiVersion"])
os.makedirs(d, exist_ok=True)
json.dump(m, open(os.path.join(d, "service-2.json"), "w"))
"#;
    let out = Command::new(venv_bin("python"))
        .args(["-c", script])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// One CloudWatch call through the AWS CLI over the JSON protocol, straight to moto
/// (`aws cloudwatch <op> --cli-input-json`); boto3 from the venv when no CLI is installed.
fn cli(env: &TestEnv, op: &str, input: Value) -> Value {
    let model = json_model(env);
    let has_cli = Command::new("aws")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = if has_cli {
        let mut c = Command::new("aws");
        c.args(["cloudwatch", op, "--output", "json", "--endpoint-url"])
            .arg(env.moto().endpoint())
            .arg("--cli-input-json")
            .arg(input.to_string());
        c
    } else {
        let snake = op.replace('-', "_");
        let mut c = Command::new(venv_bin("python"));
        c.args([
            "-c",
            "import boto3, json, sys\n\
             c = boto3.client('cloudwatch', endpoint_url=sys.argv[1])\n\
             out = getattr(c, sys.argv[2])(**json.loads(sys.argv[3]))\n\
             out.pop('ResponseMetadata', None)\n\
             print(json.dumps(out, default=str))",
        ])
        .arg(env.moto().endpoint())
        .arg(snake)
        .arg(input.to_string());
        c
    };
    for (k, v) in env.envs() {
        cmd.env(k, v);
    }
    // The CLI (v1) reads only AWS_DEFAULT_REGION.
    cmd.env("AWS_DATA_PATH", &model)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env_remove("AWS_ENDPOINT_URL");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "aws cloudwatch {op}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

fn dims(d: &[aws_sdk_cloudwatch::types::Dimension]) -> Value {
    d.iter()
        .map(|d| json!({ "Name": d.name(), "Value": d.value() }))
        .collect()
}

/// The fields both readings must agree on, from the SDK's MetricAlarm.
fn sdk_view(a: &MetricAlarm) -> Value {
    let metrics: Vec<Value> = a
        .metrics()
        .iter()
        .map(|q| {
            let mut v = json!({ "Id": q.id(), "ReturnData": q.return_data() });
            if let Some(e) = q.expression() {
                v["Expression"] = json!(e);
            }
            if let Some(l) = q.label() {
                v["Label"] = json!(l);
            }
            if let Some(s) = q.metric_stat() {
                let m = s.metric().unwrap();
                v["MetricStat"] = json!({
                    "Metric": {
                        "Namespace": m.namespace(),
                        "MetricName": m.metric_name(),
                        "Dimensions": dims(m.dimensions()),
                    },
                    "Period": s.period(),
                    "Stat": s.stat(),
                });
            }
            v
        })
        .collect();
    json!({
        "AlarmName": a.alarm_name(),
        "AlarmArn": a.alarm_arn(),
        "AlarmDescription": a.alarm_description(),
        "Namespace": a.namespace(),
        "MetricName": a.metric_name(),
        "ExtendedStatistic": a.extended_statistic(),
        "Dimensions": dims(a.dimensions()),
        "Period": a.period(),
        "EvaluationPeriods": a.evaluation_periods(),
        "DatapointsToAlarm": a.datapoints_to_alarm(),
        "Threshold": a.threshold(),
        "ComparisonOperator": a.comparison_operator().map(|c| c.as_str()),
        "TreatMissingData": a.treat_missing_data(),
        "AlarmActions": a.alarm_actions(),
        "OKActions": a.ok_actions(),
        "StateValue": a.state_value().map(|s| s.as_str()),
        "Metrics": metrics,
    })
}

/// The same fields from the CLI's JSON (absent ones as null, like the SDK's `None`).
fn cli_view(a: &Value) -> Value {
    let keep = |v: &Value, keys: &[&str]| -> Value {
        keys.iter()
            .map(|k| (k.to_string(), v.get(*k).cloned().unwrap_or(Value::Null)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let mut v = keep(
        a,
        &[
            "AlarmName",
            "AlarmArn",
            "AlarmDescription",
            "Namespace",
            "MetricName",
            "ExtendedStatistic",
            "Dimensions",
            "Period",
            "EvaluationPeriods",
            "DatapointsToAlarm",
            "Threshold",
            "ComparisonOperator",
            "TreatMissingData",
            "AlarmActions",
            "OKActions",
            "StateValue",
        ],
    );
    v["Metrics"] = a["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            let mut m = json!({ "Id": q["Id"], "ReturnData": q.get("ReturnData") });
            for k in ["Expression", "Label"] {
                if let Some(x) = q.get(k) {
                    m[k] = x.clone();
                }
            }
            if let Some(s) = q.get("MetricStat") {
                m["MetricStat"] = json!({
                    "Metric": {
                        "Namespace": s["Metric"]["Namespace"],
                        "MetricName": s["Metric"]["MetricName"],
                        "Dimensions": s["Metric"].get("Dimensions").cloned().unwrap_or(json!([])),
                    },
                    "Period": s["Period"],
                    "Stat": s["Stat"],
                });
            }
            m
        })
        .collect();
    v
}

#[tokio::test]
async fn apply_read_back_with_the_cli_drift_rename_and_destroy() {
    let env = TestEnv::new();
    env.write("a.toml", stack("0.5", "alarms-5xx-rate"));
    env.ok(["apply", "a.toml", "--auto-approve"]);
    env.ok(["plan", "a.toml", "--detailed-exitcode"])
        .assert_stdout_contains("No changes");

    let names = ["alarms-latency-p95", "alarms-5xx-rate"];
    let sdk = alarms(&env, &names).await;
    assert_eq!(sdk.len(), 2, "{sdk:?}");
    let latency = sdk
        .iter()
        .find(|a| a.alarm_name() == Some(names[0]))
        .unwrap();
    assert_eq!(latency.extended_statistic(), Some("p95"));
    assert_eq!(latency.threshold(), Some(0.5));
    assert_eq!(latency.datapoints_to_alarm(), Some(2));
    assert_eq!(
        dims(latency.dimensions()),
        json!([
            { "Name": "LoadBalancer", "Value": LB },
            { "Name": "TargetGroup", "Value": "targetgroup/blue/73e2d6bc24d8a067" },
        ])
    );
    let errors = sdk
        .iter()
        .find(|a| a.alarm_name() == Some(names[1]))
        .unwrap();
    let ids: Vec<_> = errors.metrics().iter().map(|q| q.id().unwrap()).collect();
    assert_eq!(ids, ["rate", "errors", "requests"]);
    assert_eq!(
        errors.metrics()[0].expression(),
        Some("100 * errors / requests")
    );
    let arn_param = env
        .ssm()
        .await
        .get_parameter()
        .name("/alarms/ERRORS_ARN")
        .send()
        .await
        .unwrap();
    assert_eq!(
        arn_param.parameter.unwrap().value.as_deref(),
        errors.alarm_arn()
    );
    let arn = latency.alarm_arn().unwrap().to_owned();
    let tags = cloudwatch(&env)
        .await
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags().len(), 1);

    // The AWS CLI, over the JSON protocol moto speaks natively, sees exactly what the
    // SDK saw through the CBOR adapter, metric math included.
    let out = cli(&env, "describe-alarms", json!({ "AlarmNames": names }));
    let via_cli = out["MetricAlarms"].as_array().unwrap();
    assert_eq!(via_cli.len(), 2);
    for a in &sdk {
        let same = via_cli
            .iter()
            .find(|c| c["AlarmName"].as_str() == a.alarm_name())
            .unwrap();
        assert_eq!(cli_view(same), sdk_view(a));
    }

    // moto never evaluates alarms: a state set by hand is not configuration.
    cloudwatch(&env)
        .await
        .set_alarm_state()
        .alarm_name(names[1])
        .state_value(StateValue::Alarm)
        .state_reason("test")
        .send()
        .await
        .unwrap();
    env.ok(["plan", "a.toml", "--detailed-exitcode"]);

    // Someone raises the threshold with the CLI (PutMetricAlarm sends all of it again).
    cli(
        &env,
        "put-metric-alarm",
        json!({
            "AlarmName": names[0],
            "AlarmDescription": "p95 target response time above 500 ms",
            "Namespace": "AWS/ApplicationELB",
            "MetricName": "TargetResponseTime",
            "Dimensions": dims(latency.dimensions()),
            "ExtendedStatistic": "p95",
            "Period": 60,
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 2,
            "Threshold": 0.9,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [TOPIC],
        }),
    );
    // … and tags it.
    cloudwatch(&env)
        .await
        .tag_resource()
        .resource_arn(&arn)
        .tags(
            aws_sdk_cloudwatch::types::Tag::builder()
                .key("owner")
                .value("someone")
                .build(),
        )
        .send()
        .await
        .unwrap();
    env.run(["plan", "a.toml", "--detailed-exitcode"])
        .assert_code(2)
        .assert_stdout_contains("Changed outside Stackwright:")
        .assert_stdout_contains("threshold = 0.5 -> 0.9")
        .assert_stdout_contains("owner")
        .assert_stdout_contains("1 to change, 0 to replace");
    env.ok(["apply", "a.toml", "--auto-approve"]);
    assert_eq!(alarms(&env, &names[..1]).await[0].threshold(), Some(0.5));
    let tags = cloudwatch(&env)
        .await
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    let tags: Vec<_> = tags.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags, [(Some("app"), Some("web"))]);
    env.ok(["plan", "a.toml", "--detailed-exitcode"]);

    // A new threshold in the stack changes in place; a new name is a new alarm, made
    // before the old one goes.
    env.write("a.toml", stack("0.75", "alarms-5xx-rate-v2"));
    env.run(["plan", "a.toml", "--detailed-exitcode"])
        .assert_code(2)
        .assert_stdout_contains("threshold = 0.5 -> 0.75")
        .assert_stdout_contains(
            "must be replaced, the new one created first (because name changed)",
        );
    env.ok(["apply", "a.toml", "--auto-approve"]);
    let now = alarms(
        &env,
        &[
            "alarms-latency-p95",
            "alarms-5xx-rate",
            "alarms-5xx-rate-v2",
        ],
    )
    .await;
    let mut got: Vec<_> = now
        .iter()
        .map(|a| (a.alarm_name().unwrap(), a.threshold().unwrap()))
        .collect();
    got.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(
        got,
        [("alarms-5xx-rate-v2", 5.0), ("alarms-latency-p95", 0.75)]
    );
    env.ok(["plan", "a.toml", "--detailed-exitcode"]);

    env.ok(["destroy", "a.toml", "--auto-approve"]);
    assert!(
        alarms(&env, &["alarms-latency-p95", "alarms-5xx-rate-v2"])
            .await
            .is_empty()
    );
}

const HEAD: &str = r#"[stack]
name = "alarms"
region = "us-east-1"
"#;

#[test]
fn values_are_refused_at_load_before_any_aws_call() {
    let env = TestEnv::new();
    env.write(
        "bad.toml",
        format!(
            r#"{HEAD}
[cloudwatch_alarm.a]
name = "a"
namespace = "AWS/ApplicationELB"
metric = "TargetResponseTime"
extended_statistic = "95"
period = 45
evaluation_periods = 0
threshold = 1
comparison = "=>"

[cloudwatch_alarm.b]
name = "b"
evaluation_periods = 1
threshold = 5
comparison = ">"

[[cloudwatch_alarm.b.query]]
id = "Errors"
namespace = "AWS/ApplicationELB"
metric = "HTTPCode_Target_5XX_Count"
stat = "Sum"
period = 60

[[cloudwatch_alarm.b.query]]
id = "rate"
expression = "100 * Errors / requests"
return_data = true
"#
        ),
    );
    let proxy = env.proxy();
    env.run(["plan", "bad.toml"])
        .assert_code(1)
        .assert_stderr_contains("`extended_statistic` of `cloudwatch_alarm.a`: \"95\" is not an extended statistic: write a percentile such as \"p95\"")
        .assert_stderr_contains("`period` of `cloudwatch_alarm.a`: 45 seconds is not a period CloudWatch evaluates: use 10, 30 or a multiple of 60")
        .assert_stderr_contains("`evaluation_periods` of `cloudwatch_alarm.a`: 0 periods")
        .assert_stderr_contains("`comparison` of `cloudwatch_alarm.a`: \"=>\" is not a comparison: write \">\", \">=\", \"<\" or \"<=\" (did you mean \">=\"?)")
        .assert_stderr_contains("`query` of `cloudwatch_alarm.b`: query 1: id \"Errors\" must start with a lowercase letter")
        .assert_stderr_contains("5 errors found");
    assert_eq!(proxy.requests(), 0);
}

#[tokio::test]
async fn forms_are_refused_at_plan_with_the_address_and_nothing_written() {
    let env = TestEnv::new();
    let single = r#"namespace = "AWS/ApplicationELB"
metric = "TargetResponseTime"
period = 60
evaluation_periods = 3
threshold = 0.5
comparison = ">"
"#;
    let query = r#"
[[cloudwatch_alarm.x.query]]
id = "errors"
namespace = "AWS/ApplicationELB"
metric = "HTTPCode_Target_5XX_Count"
stat = "Sum"
period = 60
"#;
    let cases = [
        (
            format!("extended_statistic = \"p95\"\nstatistic = \"Average\"\n{single}"),
            "statistic and extended_statistic are both set: keep one",
        ),
        (
            single.to_owned(),
            "the alarm needs statistic (Average, Sum, Minimum, Maximum, SampleCount) or extended_statistic",
        ),
        (
            format!("statistic = \"Sum\"\n{single}{query}return_data = true\n"),
            "namespace is part of the single-metric form, and this alarm uses [[query]] blocks",
        ),
        (
            format!("statistic = \"Sum\"\ndatapoints_to_alarm = 4\n{single}"),
            "datapoints_to_alarm 4 is above evaluation_periods 3",
        ),
        (
            format!("evaluation_periods = 1\nthreshold = 5\ncomparison = \">\"\n{query}"),
            "no query has return_data = true",
        ),
        (
            format!(
                "evaluation_periods = 1\nthreshold = 5\ncomparison = \">\"\n{query}return_data = true\n\
                 [[cloudwatch_alarm.x.query]]\nid = \"rate\"\nexpression = \"errors / requests\"\n"
            ),
            "refers to \"requests\", which no query has as id (ids: errors, rate)",
        ),
    ];
    for (body, message) in cases {
        env.write(
            "bad.toml",
            format!("{HEAD}\n[cloudwatch_alarm.x]\nname = \"x\"\n{body}"),
        );
        let plan: &[&str] = &["plan", "bad.toml"];
        let apply: &[&str] = &["apply", "bad.toml", "--auto-approve"];
        for args in [plan, apply] {
            env.run(args.iter().copied())
                .assert_code(1)
                .assert_stderr_contains("cloudwatch_alarm.x")
                .assert_stderr_contains(message);
        }
    }
    assert!(alarms(&env, &["x"]).await.is_empty(), "nothing was written");
}

#[tokio::test]
async fn a_create_whose_reply_was_lost_converges_and_is_adopted() {
    // One lost reply: the SDK's retry of PutMetricAlarm is the same upsert, the apply
    // succeeds and state records the alarm.
    let env = TestEnv::new();
    env.write("a.toml", stack("0.5", "alarms-5xx-rate"));
    let proxy = env.proxy();
    proxy.fail_once_matching("operation/PutMetricAlarm", Fault::DropAfter);
    env.ok(["apply", "a.toml", "--auto-approve"]);
    assert!(proxy.faults() >= 1);
    assert_eq!(
        alarms(&env, &["alarms-latency-p95", "alarms-5xx-rate"])
            .await
            .len(),
        2
    );
    env.ok(["plan", "a.toml", "--detailed-exitcode"]);
    let state = env.read("state/alarms.json");
    assert!(state.contains("\"cloudwatch_alarm.latency\""), "{state}");

    // Every reply lost and one attempt: the apply fails with its intent open while AWS
    // holds the alarm; the next plan adopts it, never a second create.
    let env = TestEnv::new();
    env.write("a.toml", stack("0.5", "alarms-5xx-rate"));
    let proxy = env.proxy();
    proxy.fail_matching("operation/PutMetricAlarm", Fault::DropAfter);
    let run = env.run_with(["apply", "a.toml", "--auto-approve"], |c| {
        c.env("AWS_MAX_ATTEMPTS", "1");
    });
    assert_eq!(run.code(), Some(1), "{run}");
    assert!(
        !alarms(&env, &["alarms-latency-p95", "alarms-5xx-rate"])
            .await
            .is_empty()
    );
    proxy.clear_faults();
    env.run(["plan", "a.toml"])
        .assert_stdout_contains("adopted");
    env.ok(["apply", "a.toml", "--auto-approve"]);
    env.ok(["plan", "a.toml", "--detailed-exitcode"]);

    // An alarm of that name made by someone else is never taken over (PutMetricAlarm
    // would overwrite it silently).
    let other = TestEnv::new();
    cloudwatch(&other)
        .await
        .put_metric_alarm()
        .alarm_name("alarms-latency-p95")
        .namespace("Other")
        .metric_name("M")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap();
    other.write("a.toml", stack("0.5", "alarms-5xx-rate"));
    other
        .run(["plan", "a.toml"])
        .assert_code(1)
        .assert_stderr_contains(
            "cloudwatch_alarm `alarms-latency-p95` already exists in AWS but is not in this stack's state",
        );
}
