//! The `s3_bucket` and `ssm_parameter` providers against a real moto_server: every write is
//! checked with an independent SDK client, and every read against what the engine will
//! compare it with.

use std::time::Duration;

use aws_sdk_s3::types::{BucketVersioningStatus, ExpirationStatus};
use futures::StreamExt;
use serde_json::{Value, json};
use stackwright::events::{NoEvents, Recorder};
use stackwright::providers::{Aws, Cx, Provider, registry};
use stackwright::secret::SecretString;
use stackwright::value::{Attrs, Resolved};

use crate::common::TestEnv;

fn provider(kind: &str) -> &'static dyn Provider {
    registry().provider(kind).expect("registered kind")
}

fn cx<'a>(
    aws: &'a Aws,
    address: &'a str,
    events: &'a dyn stackwright::events::EventSink,
) -> Cx<'a> {
    Cx {
        poll_interval: Duration::from_millis(50),
        ..Cx::new(aws, address, events, Duration::from_secs(30))
    }
}

fn attrs(v: Value) -> Attrs {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn resolved(v: Value) -> Resolved {
    Resolved {
        attrs: attrs(v),
        secrets: Default::default(),
    }
}

/// The subset of `live` named by `expected`'s keys.
#[track_caller]
fn assert_attrs(live: &Attrs, expected: Value) {
    for (k, v) in expected.as_object().unwrap() {
        assert_eq!(live.get(k), Some(v), "attribute {k} in {live:#?}");
    }
}

// ---------------------------------------------------------------------------
// s3_bucket
// ---------------------------------------------------------------------------

#[tokio::test]
async fn s3_bucket_create_read_update() {
    let env = TestEnv::new();
    let aws = Aws::from_config(env.sdk_config().await);
    let cx = cx(&aws, "s3_bucket.uploads", &NoEvents);
    let s3 = env.s3().await;
    let p = provider("s3_bucket");

    let input = resolved(json!({
        "name": "webapp-dev-uploads",
        "versioning": true,
        "encryption": "AES256",
        "block_public_access": true,
        "force_destroy": false,
        "tags": {"env": "dev", "app": "webapp"},
        "lifecycle_rule": [
            {"id": "expire-noncurrent", "prefix": "", "enabled": true, "noncurrent_version_expiration_days": 30},
            {"id": "tmp", "prefix": "tmp/", "enabled": false, "expiration_days": 7, "abort_incomplete_multipart_upload_days": 2},
        ],
    }));
    let live = p.create(&cx, &input).await.unwrap();
    assert_eq!(live.id, "webapp-dev-uploads");
    // Exactly what the engine compares against: desired with schema defaults filled in.
    let mut expected = input.attrs.clone();
    expected.remove("force_destroy"); // local: never read from AWS
    expected.insert("arn".into(), json!("arn:aws:s3:::webapp-dev-uploads"));
    expected.insert("id".into(), json!("webapp-dev-uploads"));
    expected.insert("region".into(), json!("us-east-1"));
    assert_eq!(live.attrs, expected);
    assert_eq!(
        serde_json::to_string(&live.attrs["tags"]).unwrap(),
        r#"{"app":"webapp","env":"dev"}"#,
        "tags are sorted"
    );

    // An independent client sees the same bucket.
    let v = s3
        .get_bucket_versioning()
        .bucket("webapp-dev-uploads")
        .send()
        .await
        .unwrap();
    assert_eq!(v.status(), Some(&BucketVersioningStatus::Enabled));
    let pab = s3
        .get_public_access_block()
        .bucket("webapp-dev-uploads")
        .send()
        .await
        .unwrap();
    let c = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            c.block_public_acls(),
            c.ignore_public_acls(),
            c.block_public_policy(),
            c.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let tags = s3
        .get_bucket_tagging()
        .bucket("webapp-dev-uploads")
        .send()
        .await
        .unwrap();
    let mut tags: Vec<_> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key(), t.value()))
        .collect();
    tags.sort();
    assert_eq!(tags, [("app", "webapp"), ("env", "dev")]);
    let lc = s3
        .get_bucket_lifecycle_configuration()
        .bucket("webapp-dev-uploads")
        .send()
        .await
        .unwrap();
    let rules = lc.rules();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].id(), Some("expire-noncurrent"));
    assert_eq!(
        rules[0]
            .noncurrent_version_expiration()
            .unwrap()
            .noncurrent_days(),
        Some(30)
    );
    assert_eq!(rules[1].status(), &ExpirationStatus::Disabled);
    assert_eq!(rules[1].filter().unwrap().prefix(), Some("tmp/"));
    let enc = s3
        .get_bucket_encryption()
        .bucket("webapp-dev-uploads")
        .send()
        .await
        .unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str(),
        "AES256"
    );

    // A refresh reads the same thing back.
    assert_eq!(
        p.read(&cx, "webapp-dev-uploads").await.unwrap(),
        Some(live.clone())
    );

    // Update only what changed.
    let update = resolved(json!({
        "name": "webapp-dev-uploads",
        "versioning": false,
        "encryption": "AES256",
        "block_public_access": false,
        "force_destroy": true,
        "tags": {"app": "webapp", "team": "core"},
        "lifecycle_rule": [
            {"id": "logs", "prefix": "logs/", "enabled": true, "expiration_days": 90},
        ],
    }));
    let changed: Vec<String> = [
        "versioning",
        "block_public_access",
        "force_destroy",
        "tags",
        "lifecycle_rule",
    ]
    .map(String::from)
    .to_vec();
    let after = p
        .update(&cx, "webapp-dev-uploads", &update, &changed)
        .await
        .unwrap();
    let mut expected = update.attrs.clone();
    expected.remove("force_destroy");
    expected.insert("arn".into(), json!("arn:aws:s3:::webapp-dev-uploads"));
    expected.insert("id".into(), json!("webapp-dev-uploads"));
    expected.insert("region".into(), json!("us-east-1"));
    assert_eq!(after.attrs, expected);

    let v = s3
        .get_bucket_versioning()
        .bucket("webapp-dev-uploads")
        .send()
        .await
        .unwrap();
    assert_eq!(v.status(), Some(&BucketVersioningStatus::Suspended));
    let tags = s3
        .get_bucket_tagging()
        .bucket("webapp-dev-uploads")
        .send()
        .await
        .unwrap();
    let mut tags: Vec<_> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key(), t.value()))
        .collect();
    tags.sort();
    assert_eq!(tags, [("app", "webapp"), ("team", "core")]);
    let lc = s3
        .get_bucket_lifecycle_configuration()
        .bucket("webapp-dev-uploads")
        .send()
        .await
        .unwrap();
    assert_eq!(lc.rules().len(), 1);
    assert_eq!(lc.rules()[0].expiration().unwrap().days(), Some(90));

    // Removing every tag and rule deletes the sub-resources.
    let cleared = resolved(json!({"name": "webapp-dev-uploads", "tags": {}, "lifecycle_rule": []}));
    let after = p
        .update(
            &cx,
            "webapp-dev-uploads",
            &cleared,
            &["tags".into(), "lifecycle_rule".into()],
        )
        .await
        .unwrap();
    assert_eq!(after.attrs["tags"], json!({}));
    assert_eq!(
        after.attrs["lifecycle_rule"],
        json!([]),
        "what `lifecycle_rule = []` evaluates to"
    );
    let err = s3
        .get_bucket_lifecycle_configuration()
        .bucket("webapp-dev-uploads")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&err),
        Some("NoSuchLifecycleConfiguration")
    );
}

#[tokio::test]
async fn s3_bucket_defaults_read_back_normalised() {
    let env = TestEnv::new();
    let aws = Aws::from_config(env.sdk_config().await);
    let cx = cx(&aws, "s3_bucket.plain", &NoEvents);
    let p = provider("s3_bucket");

    assert_eq!(
        p.read(&cx, "plain-bucket").await.unwrap(),
        None,
        "missing bucket reads as None"
    );

    // The desired value as the engine hands it over: schema defaults filled in.
    let input = resolved(json!({
        "name": "plain-bucket", "versioning": false, "block_public_access": true, "force_destroy": false,
    }));
    let live = p.create(&cx, &input).await.unwrap();
    assert_eq!(
        live.attrs["versioning"],
        json!(false),
        "never-versioned reads as false"
    );
    assert_eq!(live.attrs["block_public_access"], json!(true));
    assert_eq!(live.attrs["tags"], json!({}));
    assert_eq!(
        live.attrs["lifecycle_rule"],
        json!([]),
        "no lifecycle configuration"
    );
    assert!(!live.attrs.contains_key("force_destroy"));
    let v = env
        .s3()
        .await
        .get_bucket_versioning()
        .bucket("plain-bucket")
        .send()
        .await
        .unwrap();
    assert_eq!(
        v.status(),
        None,
        "versioning = false never turns versioning on"
    );

    // A bucket made outside Stackwright with no public access block reads as false.
    env.s3()
        .await
        .create_bucket()
        .bucket("outside")
        .send()
        .await
        .unwrap();
    let outside = p.read(&cx, "outside").await.unwrap().unwrap();
    assert_eq!(outside.attrs["block_public_access"], json!(false));

    // Create never adopts a bucket that already exists.
    let err = p
        .create(&cx, &resolved(json!({"name": "outside"})))
        .await
        .unwrap_err();
    assert_eq!(
        err.code.as_deref(),
        Some("BucketAlreadyOwnedByYou"),
        "{err}"
    );
    assert!(err.message.contains("s3_bucket.plain"), "{err}");

    // A create whose configuration fails keeps the bucket, whose id it reported before
    // configuring it: the engine's journal holds that id, and the next plan adopts the
    // bucket and finishes the configuration as an update (no orphan, no hand repair).
    let err = p
        .create(
            &cx,
            &resolved(json!({"name": "half-bucket", "tags": {"aws:reserved": "x"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code.as_deref(), Some("InvalidTag"), "{err}");
    assert!(p.read(&cx, "half-bucket").await.unwrap().is_some());

    // A bucket that is not there: delete is a no-op.
    p.delete(&cx, "never-existed", &Attrs::new()).await.unwrap();
}

#[tokio::test]
async fn s3_bucket_outside_us_east_1_sets_location() {
    let env = TestEnv::new();
    let config = env
        .sdk_config()
        .await
        .into_builder()
        .region(aws_config::Region::new("eu-west-1"))
        .build();
    let aws = Aws::from_config(config);
    let cx = cx(&aws, "s3_bucket.eu", &NoEvents);
    let p = provider("s3_bucket");
    let live = p
        .create(
            &cx,
            &resolved(
                json!({"name": "eu-bucket", "encryption": "aws:kms", "kms_key_id": "alias/data"}),
            ),
        )
        .await
        .unwrap();
    assert_attrs(
        &live.attrs,
        json!({"region": "eu-west-1", "encryption": "aws:kms", "kms_key_id": "alias/data"}),
    );
    let loc = aws
        .s3()
        .get_bucket_location()
        .bucket("eu-bucket")
        .send()
        .await
        .unwrap();
    assert_eq!(
        loc.location_constraint().map(|l| l.as_str()),
        Some("eu-west-1")
    );
}

#[tokio::test]
async fn s3_bucket_delete_refuses_non_empty_unless_force_destroy() {
    let env = TestEnv::new();
    let aws = Aws::from_config(env.sdk_config().await);
    let events = Recorder::default();
    let cx = cx(&aws, "s3_bucket.data", &events);
    let s3 = env.s3().await;
    let p = provider("s3_bucket");
    let bucket = "full-bucket";

    p.create(&cx, &resolved(json!({"name": bucket, "versioning": true})))
        .await
        .unwrap();
    // More than one ListObjectVersions page (1000): two versions of many keys, plus a delete marker.
    futures::stream::iter(0..520)
        .map(|i| {
            let s3 = s3.clone();
            async move {
                for body in ["one", "two"] {
                    s3.put_object()
                        .bucket(bucket)
                        .key(format!("k/{i:04}"))
                        .body(body.as_bytes().to_vec().into())
                        .send()
                        .await
                        .unwrap();
                }
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    s3.delete_object()
        .bucket(bucket)
        .key("k/0000")
        .send()
        .await
        .unwrap();

    let keep = attrs(json!({"name": bucket, "force_destroy": false}));
    let err = p.delete(&cx, bucket, &keep).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("BucketNotEmpty"), "{err}");
    assert!(err.message.contains("force_destroy = true"), "{err}");
    assert!(err.message.contains("s3_bucket.data"), "{err}");
    assert!(
        p.read(&cx, bucket).await.unwrap().is_some(),
        "bucket still there"
    );

    let force = attrs(json!({"name": bucket, "force_destroy": true}));
    p.delete(&cx, bucket, &force).await.unwrap();
    assert_eq!(p.read(&cx, bucket).await.unwrap(), None);
    let buckets = s3.list_buckets().send().await.unwrap();
    assert!(buckets.buckets().iter().all(|b| b.name() != Some(bucket)));
    let notes = format!("{:?}", events.0.lock().unwrap());
    assert!(notes.contains("deleted 1041 object versions"), "{notes}");
}

// ---------------------------------------------------------------------------
// ssm_parameter
// ---------------------------------------------------------------------------

#[tokio::test]
async fn ssm_secure_string_create_read_update_delete() {
    let env = TestEnv::new();
    let aws = Aws::from_config(env.sdk_config().await);
    let cx = cx(&aws, "ssm_parameter.db_password", &NoEvents);
    let ssm = env.ssm().await;
    let p = provider("ssm_parameter");
    let name = "/webapp/dev/DB_PASSWORD";

    assert_eq!(
        p.read(&cx, name).await.unwrap(),
        None,
        "missing parameter reads as None"
    );

    let mut input = resolved(json!({
        "name": name, "type": "SecureString", "tier": "Standard",
        "description": "database password", "tags": {"env": "dev"},
    }));
    input
        .secrets
        .insert("value".into(), SecretString::new("hunter2"));
    let live = p.create(&cx, &input).await.unwrap();
    assert_eq!(live.id, name);
    assert_attrs(
        &live.attrs,
        json!({
            "name": name, "type": "SecureString", "value": "hunter2", "tier": "Standard",
            "description": "database password", "tags": {"env": "dev"}, "version": 1,
            "arn": format!("arn:aws:ssm:us-east-1:123456789012:parameter{name}"),
        }),
    );

    // Stored encrypted; decrypts to the value.
    let raw = ssm.get_parameter().name(name).send().await.unwrap();
    assert_ne!(raw.parameter().unwrap().value(), Some("hunter2"));
    let dec = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    assert_eq!(dec.parameter().unwrap().value(), Some("hunter2"));
    assert_eq!(p.read(&cx, name).await.unwrap(), Some(live.clone()));

    // New value and tags.
    let mut update = resolved(json!({
        "name": name, "type": "SecureString", "tier": "Standard",
        "description": "database password", "tags": {"team": "core"},
    }));
    update
        .secrets
        .insert("value".into(), SecretString::new("correct horse"));
    let after = p
        .update(&cx, name, &update, &["value".into(), "tags".into()])
        .await
        .unwrap();
    assert_attrs(
        &after.attrs,
        json!({"value": "correct horse", "version": 2, "tags": {"team": "core"}, "description": "database password"}),
    );
    let dec = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    assert_eq!(dec.parameter().unwrap().value(), Some("correct horse"));
    let tags = ssm
        .list_tags_for_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await
        .unwrap();
    let tags: Vec<_> = tags
        .tag_list()
        .iter()
        .map(|t| (t.key(), t.value()))
        .collect();
    assert_eq!(tags, [("team", "core")]);

    // Tags alone: no new version.
    let after = p
        .update(&cx, name, &update.clone(), &["tags".into()])
        .await
        .unwrap();
    assert_eq!(after.attrs["version"], json!(2));

    p.delete(&cx, name, &after.attrs).await.unwrap();
    assert_eq!(p.read(&cx, name).await.unwrap(), None);
    // Already gone: still a success.
    p.delete(&cx, name, &after.attrs).await.unwrap();
}

#[tokio::test]
async fn ssm_string_parameter_type_change_in_place() {
    let env = TestEnv::new();
    let aws = Aws::from_config(env.sdk_config().await);
    let cx = cx(&aws, "ssm_parameter.log_level", &NoEvents);
    let p = provider("ssm_parameter");
    let name = "/webapp/dev/LOG_LEVEL";

    let input =
        resolved(json!({"name": name, "type": "String", "value": "INFO", "tier": "Standard"}));
    let live = p.create(&cx, &input).await.unwrap();
    assert_attrs(
        &live.attrs,
        json!({"type": "String", "value": "INFO", "tier": "Standard", "tags": {}, "version": 1}),
    );
    assert_eq!(
        live.attrs["description"],
        json!(""),
        "no description reads as \"\""
    );
    assert!(
        !p.is_sensitive(
            "value",
            &input
                .attrs
                .iter()
                .map(|(k, v)| (k.clone(), stackwright::value::Desired::Known(v.clone())))
                .collect()
        )
    );

    let update = resolved(
        json!({"name": name, "type": "StringList", "value": "INFO,DEBUG", "tier": "Standard"}),
    );
    let after = p
        .update(&cx, name, &update, &["type".into(), "value".into()])
        .await
        .unwrap();
    assert_attrs(
        &after.attrs,
        json!({"type": "StringList", "value": "INFO,DEBUG", "version": 2}),
    );
    let got = env
        .ssm()
        .await
        .get_parameter()
        .name(name)
        .send()
        .await
        .unwrap();
    let got = got.parameter().unwrap();
    assert_eq!(got.r#type().map(|t| t.as_str()), Some("StringList"));
    assert_eq!(got.value(), Some("INFO,DEBUG"));

    // A description set, then cleared with `description = ""`.
    let mut update = update;
    update
        .attrs
        .insert("description".into(), json!("log levels"));
    let after = p
        .update(&cx, name, &update, &["description".into()])
        .await
        .unwrap();
    assert_attrs(
        &after.attrs,
        json!({"description": "log levels", "value": "INFO,DEBUG"}),
    );
    update.attrs.insert("description".into(), json!(""));
    let after = p
        .update(&cx, name, &update, &["description".into()])
        .await
        .unwrap();
    assert_eq!(after.attrs["description"], json!(""));
}

#[tokio::test]
async fn ssm_create_over_existing_fails_without_the_secret() {
    let env = TestEnv::new();
    let aws = Aws::from_config(env.sdk_config().await);
    let cx = cx(&aws, "ssm_parameter.token", &NoEvents);
    let p = provider("ssm_parameter");
    env.ssm()
        .await
        .put_parameter()
        .name("/taken")
        .value("old")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let mut input = resolved(json!({"name": "/taken", "type": "SecureString", "tier": "Standard"}));
    input
        .secrets
        .insert("value".into(), SecretString::new("s3cr3t-token"));
    let err = p.create(&cx, &input).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("ParameterAlreadyExists"), "{err}");
    assert!(
        !format!("{err} {err:?}").contains("s3cr3t"),
        "secret leaked into the error"
    );
    // Untouched.
    let got = env
        .ssm()
        .await
        .get_parameter()
        .name("/taken")
        .send()
        .await
        .unwrap();
    assert_eq!(got.parameter().unwrap().value(), Some("old"));
}
