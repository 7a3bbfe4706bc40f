//! `s3_bucket`: an S3 bucket with versioning, default encryption, the public access block,
//! tags and lifecycle rules.
//!
//! `read` issues its six calls (HeadBucket and one Get per sub-resource) concurrently, so a
//! refresh costs one round trip per bucket. Every attribute comes back normalised the way the
//! engine normalises the desired value (schema defaults filled in, tags sorted), so an
//! unchanged bucket diffs clean.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::head_bucket::HeadBucketError;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    BucketVersioningStatus, CreateBucketConfiguration, Delete, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration,
    ObjectIdentifier, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tag, Tagging, VersioningConfiguration,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::{Map, Value};

use super::schema::Default as D;
use super::{Attr, AwsError, ChangeNotes, Cx, Live, Provider, Result, Schema, Ty, aws_err};
use crate::value::{Attrs, Desired, Resolved, map_value};

pub struct S3Bucket;

const LIFECYCLE_RULE: &[Attr] = &[
    Attr::new(
        "id",
        Ty::String,
        "Unique identifier of the rule within the bucket.",
    )
    .required(),
    Attr::new(
        "prefix",
        Ty::String,
        "Only objects whose key starts with this prefix; \"\" means the whole bucket.",
    )
    .default(D::Str("")),
    Attr::new(
        "enabled",
        Ty::Bool,
        "Whether the rule is applied (Enabled) or kept but ignored (Disabled).",
    )
    .default(D::Bool(true)),
    Attr::new(
        "expiration_days",
        Ty::Int,
        "Expire current object versions this many days after creation.",
    ),
    Attr::new(
        "noncurrent_version_expiration_days",
        Ty::Int,
        "Permanently delete noncurrent versions this many days after they become noncurrent.",
    ),
    Attr::new(
        "abort_incomplete_multipart_upload_days",
        Ty::Int,
        "Abort multipart uploads still incomplete this many days after they started.",
    ),
];

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new("name", Ty::String, "Bucket name (globally unique). Changing it replaces the bucket.")
            .required()
            .force_new(),
        Attr::new(
            "versioning",
            Ty::Bool,
            "Keep every version of every object (Enabled). false suspends versioning; a bucket that was never versioned reads as false.",
        )
        .default(D::Bool(false)),
        Attr::new(
            "encryption",
            Ty::Enum(&["AES256", "aws:kms"]),
            "Default server-side encryption. Left unset, the bucket keeps whatever S3 applies (AES256 for new buckets).",
        ),
        Attr::new(
            "kms_key_id",
            Ty::String,
            "KMS key (id, ARN or alias) for encryption = \"aws:kms\"; the AWS-managed aws/s3 key when unset.",
        ),
        Attr::new(
            "block_public_access",
            Ty::Bool,
            "All four public access block settings (block/ignore public ACLs, block public policy, restrict public buckets).",
        )
        .default(D::Bool(true)),
        Attr::new("tags", Ty::StringMap, "Bucket tags."),
        Attr::new(
            "force_destroy",
            Ty::Bool,
            "Let destroy delete a non-empty bucket, with every object version and delete marker in it. Kept in state only: set it, apply, then destroy.",
        )
        .local()
        .default(D::Bool(false)),
        Attr::new("lifecycle_rule", Ty::Blocks(LIFECYCLE_RULE), "Lifecycle rules, in order."),
    ],
    outputs: &["arn", "id", "region"],
};

/// How long a freshly created bucket may take to become visible to the follow-up calls.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(60);

#[async_trait]
impl Provider for S3Bucket {
    fn kind(&self) -> &'static str {
        "s3_bucket"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn check_attr(&self, attr: &str, value: &Value) -> std::result::Result<(), String> {
        match (attr, value) {
            ("name", Value::String(name)) => check_bucket_name(name),
            _ => Ok(()),
        }
    }

    fn check_change(
        &self,
        _prior: Option<&Attrs>,
        desired: &BTreeMap<String, Desired>,
    ) -> std::result::Result<ChangeNotes, String> {
        let known = |name: &str| desired.get(name).and_then(Desired::known);
        if known("kms_key_id").is_some() {
            match known("encryption").and_then(Value::as_str) {
                Some("aws:kms") => {}
                // Unknown until apply: let AWS judge.
                None if matches!(desired.get("encryption"), Some(Desired::Unknown)) => {}
                _ => return Err("kms_key_id needs encryption = \"aws:kms\"".into()),
            }
        }
        if let Some(Value::Array(rules)) = known("lifecycle_rule") {
            for rule in rules.iter().filter_map(|r| RuleSpec::from_value(r).ok()) {
                if rule.expiration_days.is_none()
                    && rule.noncurrent_version_expiration_days.is_none()
                    && rule.abort_incomplete_multipart_upload_days.is_none()
                {
                    return Err(format!(
                        "lifecycle_rule \"{}\" has no action: set expiration_days, noncurrent_version_expiration_days or abort_incomplete_multipart_upload_days",
                        rule.id
                    ));
                }
            }
        }
        Ok(ChangeNotes::default())
    }

    async fn read(&self, cx: &Cx<'_>, id: &str) -> Result<Option<Live>> {
        let region = cx.aws.config.region().map(|r| r.as_ref().to_owned());
        match read_bucket(&cx.aws.s3(), region.as_deref(), id, &|a| cx.wants(a), false).await {
            Err(e) if is_no_such_bucket(&e) => Ok(None),
            other => other,
        }
    }

    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live> {
        let name = input
            .str("name")
            .ok_or_else(|| AwsError::local("s3_bucket: name is required"))?;
        // Refuse a bad configuration before anything is created.
        if input.str("kms_key_id").is_some() && input.str("encryption") != Some("aws:kms") {
            return Err(AwsError::local("kms_key_id needs encryption = \"aws:kms\""));
        }
        let rules = rules_from_input(input)?;
        for rule in &rules {
            rule.to_sdk()?;
        }
        let s3 = &cx.aws.s3();
        let region = cx.aws.config.region().map(|r| r.as_ref().to_owned());

        // In us-east-1, CreateBucket on a bucket you already own succeeds (and resets its
        // ACLs): never adopt an existing bucket silently.
        if s3.head_bucket().bucket(name).send().await.is_ok() {
            return Err(AwsError::new(
                Some("BucketAlreadyOwnedByYou"),
                format!(
                    "bucket {name} already exists in this account but is not {}'s: \
                     choose another name, or delete the existing bucket first",
                    cx.address
                ),
            ));
        }
        let mut req = s3.create_bucket().bucket(name);
        if let Some(r) = region.as_deref().filter(|r| *r != "us-east-1") {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(r))
                    .build(),
            );
        }
        match req.send().await.map_err(aws_err) {
            // HeadBucket just found no such bucket, so an "owned by you" here is the SDK's
            // retry of our own CreateBucket whose reply was lost.
            Err(e) if e.is("BucketAlreadyOwnedByYou") => {
                tracing::debug!(%name, "CreateBucket retried after a lost reply; it had succeeded");
            }
            other => {
                other?;
            }
        }
        cx.created(name);

        // A new bucket can take a moment to be visible to the sub-resource calls.
        // Writes are sequential: S3 answers concurrent configuration changes to one bucket
        // with OperationAborted.
        let configure = async {
            if input.bool("versioning") == Some(true) {
                until_visible(|| put_versioning(s3, name, true)).await?;
            }
            if input.str("encryption").is_some() {
                until_visible(|| put_encryption(s3, name, input)).await?;
            }
            let block = input.bool("block_public_access").unwrap_or(true);
            until_visible(|| put_public_access_block(s3, name, block)).await?;
            let tags = input.string_map("tags");
            if !tags.is_empty() {
                until_visible(|| put_tags(s3, name, &tags)).await?;
            }
            if !rules.is_empty() {
                until_visible(|| put_lifecycle(s3, name, &rules)).await?;
            }
            Ok::<(), AwsError>(())
        };
        // A failure here leaves the bucket half configured but recorded (its id is in the
        // journal): the next plan adopts it and finishes the configuration as an update.
        configure.await?;

        read_back(cx, name).await
    }

    async fn update(
        &self,
        cx: &Cx<'_>,
        id: &str,
        input: &Resolved,
        changed: &[String],
    ) -> Result<Live> {
        let s3 = &cx.aws.s3();
        let has = |name: &str| changed.iter().any(|c| c == name);
        if has("versioning") {
            put_versioning(s3, id, input.bool("versioning").unwrap_or(false)).await?;
        }
        if has("encryption") || has("kms_key_id") {
            if input.str("encryption").is_some() {
                put_encryption(s3, id, input).await?;
            } else if input.str("kms_key_id").is_some() {
                return Err(AwsError::local("kms_key_id needs encryption = \"aws:kms\""));
            } else {
                s3.delete_bucket_encryption()
                    .bucket(id)
                    .send()
                    .await
                    .map_err(aws_err)?;
            }
        }
        if has("block_public_access") {
            put_public_access_block(s3, id, input.bool("block_public_access").unwrap_or(true))
                .await?;
        }
        if has("tags") {
            let tags = input.string_map("tags");
            if tags.is_empty() {
                s3.delete_bucket_tagging()
                    .bucket(id)
                    .send()
                    .await
                    .map_err(aws_err)?;
            } else {
                put_tags(s3, id, &tags).await?;
            }
        }
        if has("lifecycle_rule") {
            let rules = rules_from_input(input)?;
            if rules.is_empty() {
                s3.delete_bucket_lifecycle()
                    .bucket(id)
                    .send()
                    .await
                    .map_err(aws_err)?;
            } else {
                put_lifecycle(s3, id, &rules).await?;
            }
        }
        // `force_destroy` is local: nothing to send. `name` forces a replacement.
        read_back(cx, id).await
    }

    async fn delete(&self, cx: &Cx<'_>, id: &str, prior: &Attrs) -> Result<()> {
        let s3 = &cx.aws.s3();
        let force = prior.get("force_destroy").and_then(Value::as_bool) == Some(true);
        // Objects written while we empty the bucket make DeleteBucket fail again: retry a few times.
        for attempt in 0..3 {
            match s3.delete_bucket().bucket(id).send().await.map_err(aws_err) {
                Ok(_) => return Ok(()),
                Err(e) if is_no_such_bucket(&e) => return Ok(()),
                Err(e) if e.is("BucketNotEmpty") => {
                    if !force {
                        return Err(not_empty_error(cx.address, id));
                    }
                    if attempt > 0 {
                        cx.note("bucket received new objects while being emptied; emptying again");
                    }
                    let deleted = empty_bucket(s3, id).await?;
                    cx.note(format!(
                        "force_destroy: deleted {deleted} object versions and delete markers"
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        s3.delete_bucket()
            .bucket(id)
            .send()
            .await
            .map_err(aws_err)?;
        Ok(())
    }
}

fn not_empty_error(address: &str, bucket: &str) -> AwsError {
    AwsError::new(
        Some("BucketNotEmpty"),
        format!(
            "bucket {bucket} is not empty, so {address} was not deleted. To delete it with every object version in it, \
             set force_destroy = true on {address} and run apply, then destroy again; or empty the bucket yourself"
        ),
    )
}

fn is_no_such_bucket(e: &AwsError) -> bool {
    e.is("NoSuchBucket")
}

/// Runs `f` again while a bucket just created is not yet visible (`NoSuchBucket`).
async fn until_visible<T, F, Fut>(mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = Instant::now() + PROPAGATION_TIMEOUT;
    let mut delay = Duration::from_millis(200);
    loop {
        match f().await {
            Err(e) if is_no_such_bucket(&e) && Instant::now() + delay < deadline => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// The read after a create or update; the bucket must be there.
async fn read_back(cx: &Cx<'_>, id: &str) -> Result<Live> {
    let region = cx.aws.config.region().map(|r| r.as_ref().to_owned());
    until_visible(|| async {
        read_bucket(&cx.aws.s3(), region.as_deref(), id, &|_| true, false)
            .await?
            .ok_or_else(|| {
                AwsError::new(
                    Some("NoSuchBucket"),
                    format!("bucket {id} not found after it was written"),
                )
            })
    })
    .await
}

/// `Ok(None)` for the listed "not configured" codes; `NoSuchBucket` stays an error so that
/// the caller can tell a missing bucket from a missing sub-resource.
fn optional<T, E>(
    r: std::result::Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
    absent: &str,
) -> Result<Option<T>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            let e = aws_err(e);
            if e.code.as_deref() == Some(absent) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Reads the bucket, calling only the APIs behind attributes `wants` asks for.
/// `force_head`: ask HeadBucket even when GETs are made (the bucket answered from another
/// region).
async fn read_bucket(
    s3: &Client,
    config_region: Option<&str>,
    id: &str,
    wants: &(dyn Fn(&str) -> bool + Sync),
    force_head: bool,
) -> Result<Option<Live>> {
    let (want_ver, want_enc, want_pab, want_tags, want_lc) = (
        wants("versioning"),
        wants("encryption") || wants("kms_key_id"),
        wants("block_public_access"),
        wants("tags"),
        wants("lifecycle_rule"),
    );
    // HeadBucket says whether the bucket exists and its region. When a GET is made anyway,
    // its NoSuchBucket says the first, and the region is the client's (a bucket elsewhere
    // answers the GETs with a redirect, and is then read again with HeadBucket).
    let any_get = want_ver || want_enc || want_pab || want_tags || want_lc;
    let head_first = !any_get || force_head;
    let (head, versioning, encryption, pab, tagging, lifecycle) = tokio::join!(
        async {
            if head_first {
                Some(s3.head_bucket().bucket(id).send().await)
            } else {
                None
            }
        },
        async {
            if want_ver {
                Some(s3.get_bucket_versioning().bucket(id).send().await)
            } else {
                None
            }
        },
        async {
            if want_enc {
                Some(s3.get_bucket_encryption().bucket(id).send().await)
            } else {
                None
            }
        },
        async {
            if want_pab {
                Some(s3.get_public_access_block().bucket(id).send().await)
            } else {
                None
            }
        },
        async {
            if want_tags {
                Some(s3.get_bucket_tagging().bucket(id).send().await)
            } else {
                None
            }
        },
        async {
            if want_lc {
                Some(
                    s3.get_bucket_lifecycle_configuration()
                        .bucket(id)
                        .send()
                        .await,
                )
            } else {
                None
            }
        },
    );
    let head = match head {
        Some(Ok(h)) => Some(h),
        Some(Err(e)) if head_not_found(&e) => return Ok(None),
        Some(Err(e)) => return Err(aws_err(e)),
        None => None,
    };
    let versioning = match versioning.transpose().map_err(aws_err) {
        Err(e) if head.is_none() && is_elsewhere(&e) => {
            return Box::pin(read_bucket(s3, config_region, id, wants, true)).await;
        }
        other => other?,
    };
    let again = || Box::pin(read_bucket(s3, config_region, id, wants, true));
    macro_rules! get_or_again {
        ($r:expr, $absent:expr) => {
            match $r.map(|r| optional(r, $absent)).transpose() {
                Err(e) if head.is_none() && is_elsewhere(&e) => return again().await,
                other => other?.flatten(),
            }
        };
    }
    let encryption = get_or_again!(encryption, "ServerSideEncryptionConfigurationNotFoundError");
    let pab = get_or_again!(pab, "NoSuchPublicAccessBlockConfiguration");
    let tagging = get_or_again!(tagging, "NoSuchTagSet");
    let lifecycle = get_or_again!(lifecycle, "NoSuchLifecycleConfiguration");

    let mut attrs = Attrs::new();
    attrs.insert("name".into(), Value::from(id));
    if let Some(v) = &versioning {
        attrs.insert(
            "versioning".into(),
            Value::Bool(v.status() == Some(&BucketVersioningStatus::Enabled)),
        );
    }
    let default_enc = encryption.as_ref().and_then(|e| {
        e.server_side_encryption_configuration()?
            .rules()
            .iter()
            .find_map(|r| r.apply_server_side_encryption_by_default())
    });
    if let Some(enc) = default_enc {
        attrs.insert(
            "encryption".into(),
            Value::from(enc.sse_algorithm().as_str()),
        );
        if let Some(key) = enc.kms_master_key_id() {
            attrs.insert("kms_key_id".into(), Value::from(key));
        }
    }
    let block = pab
        .as_ref()
        .and_then(|p| p.public_access_block_configuration())
        .is_some_and(|c| {
            c.block_public_acls() == Some(true)
                && c.ignore_public_acls() == Some(true)
                && c.block_public_policy() == Some(true)
                && c.restrict_public_buckets() == Some(true)
        });
    if want_pab {
        attrs.insert("block_public_access".into(), Value::Bool(block));
    }
    let tags = tagging
        .as_ref()
        .map(|t| {
            t.tag_set()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if want_tags {
        attrs.insert("tags".into(), map_value(tags));
    }
    // No lifecycle configuration reads as `[]`, which is what `lifecycle_rule = []` (the way
    // to remove every rule) evaluates to.
    let rules: Vec<Value> = lifecycle
        .as_ref()
        .map(|lc| {
            lc.rules()
                .iter()
                .map(|r| RuleSpec::from_sdk(r).to_value())
                .collect()
        })
        .unwrap_or_default();
    if want_lc {
        attrs.insert("lifecycle_rule".into(), Value::Array(rules));
    }

    let region = head
        .as_ref()
        .and_then(|h| h.bucket_region())
        .or(config_region)
        .unwrap_or("us-east-1");
    attrs.insert(
        "arn".into(),
        Value::from(format!("arn:{}:s3:::{id}", partition(region))),
    );
    attrs.insert("id".into(), Value::from(id));
    attrs.insert("region".into(), Value::from(region));
    Ok(Some(Live {
        id: id.to_owned(),
        attrs,
        private: None,
    }))
}

/// The bucket lives in another region than the client's (S3 answers with a redirect).
fn is_elsewhere(e: &AwsError) -> bool {
    e.is("PermanentRedirect")
        || e.is("AuthorizationHeaderMalformed")
        || e.is("IllegalLocationConstraintException")
        || e.status == Some(301)
}

fn head_not_found(e: &SdkError<HeadBucketError, aws_sdk_s3::config::http::HttpResponse>) -> bool {
    if e.as_service_error()
        .is_some_and(HeadBucketError::is_not_found)
    {
        return true;
    }
    matches!(e.code(), Some("NotFound" | "NoSuchBucket"))
        || e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
}

/// The ARN partition of a region.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else {
        "aws"
    }
}

async fn put_versioning(s3: &Client, bucket: &str, enabled: bool) -> Result<()> {
    let status = if enabled {
        BucketVersioningStatus::Enabled
    } else {
        BucketVersioningStatus::Suspended
    };
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(status).build())
        .send()
        .await
        .map_err(aws_err)?;
    Ok(())
}

async fn put_encryption(s3: &Client, bucket: &str, input: &Resolved) -> Result<()> {
    let algorithm = input.str("encryption").unwrap_or("AES256");
    let key = input.str("kms_key_id");
    if key.is_some() && algorithm != "aws:kms" {
        return Err(AwsError::local("kms_key_id needs encryption = \"aws:kms\""));
    }
    let by_default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::from(algorithm))
        .set_kms_master_key_id(key.map(str::to_owned))
        .build()
        .map_err(build_err)?;
    let config = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(by_default)
                .build(),
        )
        .build()
        .map_err(build_err)?;
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(config)
        .send()
        .await
        .map_err(aws_err)?;
    Ok(())
}

async fn put_public_access_block(s3: &Client, bucket: &str, block: bool) -> Result<()> {
    s3.put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(block)
                .ignore_public_acls(block)
                .block_public_policy(block)
                .restrict_public_buckets(block)
                .build(),
        )
        .send()
        .await
        .map_err(aws_err)?;
    Ok(())
}

async fn put_tags(s3: &Client, bucket: &str, tags: &BTreeMap<String, String>) -> Result<()> {
    let tag_set = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(build_err))
        .collect::<Result<Vec<_>>>()?;
    let tagging = Tagging::builder()
        .set_tag_set(Some(tag_set))
        .build()
        .map_err(build_err)?;
    s3.put_bucket_tagging()
        .bucket(bucket)
        .tagging(tagging)
        .send()
        .await
        .map_err(aws_err)?;
    Ok(())
}

async fn put_lifecycle(s3: &Client, bucket: &str, rules: &[RuleSpec]) -> Result<()> {
    let rules = rules
        .iter()
        .map(RuleSpec::to_sdk)
        .collect::<Result<Vec<_>>>()?;
    let config = BucketLifecycleConfiguration::builder()
        .set_rules(Some(rules))
        .build()
        .map_err(build_err)?;
    s3.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(config)
        .send()
        .await
        .map_err(aws_err)?;
    Ok(())
}

fn build_err(e: aws_smithy_types::error::operation::BuildError) -> AwsError {
    AwsError::local(format!("invalid S3 request: {e}"))
}

/// Deletes every object version and delete marker; returns how many were deleted.
///
/// Each round lists the first page (up to 1000 entries, DeleteObjects' limit) and deletes it,
/// until a listing comes back empty. Listing from the start every time, instead of following
/// the key/version markers, stays correct when the marker entry itself was just deleted and
/// picks up objects written meanwhile. (ListObjectVersions has no SDK paginator anyway.)
async fn empty_bucket(s3: &Client, bucket: &str) -> Result<usize> {
    let mut deleted = 0;
    let mut previous_first: Option<(String, Option<String>)> = None;
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .send()
            .await
            .map_err(aws_err)?;
        let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
        let markers = page
            .delete_markers()
            .iter()
            .map(|m| (m.key(), m.version_id()));
        let entries: Vec<(String, Option<String>)> = versions
            .chain(markers)
            .filter_map(|(k, v)| Some((k?.to_owned(), v.map(str::to_owned))))
            .collect();
        let Some(first) = entries.first().cloned() else {
            return Ok(deleted);
        };
        if previous_first.as_ref() == Some(&first) {
            return Err(AwsError::local(format!(
                "emptying bucket {bucket}: object {} is still listed after it was deleted",
                first.0
            )));
        }
        previous_first = Some(first);
        for chunk in entries.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|(key, version)| {
                    ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(version.clone())
                        .build()
                        .map_err(build_err)
                })
                .collect::<Result<Vec<_>>>()?;
            let out = s3
                .delete_objects()
                .bucket(bucket)
                .delete(
                    Delete::builder()
                        .set_objects(Some(objects))
                        .quiet(true)
                        .build()
                        .map_err(build_err)?,
                )
                .send()
                .await
                .map_err(aws_err)?;
            if let Some(err) = out.errors().first() {
                return Err(AwsError::new(
                    err.code(),
                    format!(
                        "could not delete {} object(s) from bucket {bucket}, e.g. {}: {}",
                        out.errors().len(),
                        err.key().unwrap_or("?"),
                        err.message().unwrap_or("no message")
                    ),
                ));
            }
            deleted += chunk.len();
        }
        if page.is_truncated() != Some(true) {
            return Ok(deleted);
        }
    }
}

fn rules_from_input(input: &Resolved) -> Result<Vec<RuleSpec>> {
    match input.attrs.get("lifecycle_rule") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| RuleSpec::from_value(v).map_err(AwsError::local))
            .collect(),
        Some(_) => Err(AwsError::local("lifecycle_rule must be an array of tables")),
    }
}

/// One lifecycle rule in the shape the stack writes it, with schema defaults filled in.
#[derive(Clone, Debug, PartialEq)]
struct RuleSpec {
    id: String,
    prefix: String,
    enabled: bool,
    expiration_days: Option<i64>,
    noncurrent_version_expiration_days: Option<i64>,
    abort_incomplete_multipart_upload_days: Option<i64>,
}

impl RuleSpec {
    /// From a desired block; missing optional fields take the schema defaults.
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        let obj = v
            .as_object()
            .ok_or("lifecycle_rule entries must be tables")?;
        let int = |name: &str| -> std::result::Result<Option<i64>, String> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| format!("lifecycle_rule.{name} must be an integer")),
            }
        };
        Ok(RuleSpec {
            id: obj
                .get("id")
                .and_then(Value::as_str)
                .ok_or("lifecycle_rule.id is required")?
                .to_owned(),
            prefix: obj
                .get("prefix")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            enabled: obj.get("enabled").and_then(Value::as_bool).unwrap_or(true),
            expiration_days: int("expiration_days")?,
            noncurrent_version_expiration_days: int("noncurrent_version_expiration_days")?,
            abort_incomplete_multipart_upload_days: int("abort_incomplete_multipart_upload_days")?,
        })
    }

    /// The value the engine sees: every field with a value or default, optional ones only when set.
    fn to_value(&self) -> Value {
        let mut m = BTreeMap::new();
        if let Some(d) = self.abort_incomplete_multipart_upload_days {
            m.insert("abort_incomplete_multipart_upload_days", Value::from(d));
        }
        m.insert("enabled", Value::Bool(self.enabled));
        if let Some(d) = self.expiration_days {
            m.insert("expiration_days", Value::from(d));
        }
        m.insert("id", Value::from(self.id.as_str()));
        if let Some(d) = self.noncurrent_version_expiration_days {
            m.insert("noncurrent_version_expiration_days", Value::from(d));
        }
        m.insert("prefix", Value::from(self.prefix.as_str()));
        Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<Map<_, _>>(),
        )
    }

    fn from_sdk(r: &LifecycleRule) -> Self {
        // The prefix may sit in Filter.Prefix, Filter.And.Prefix or the legacy Rule.Prefix.
        #[allow(deprecated)]
        let prefix = r
            .filter()
            .and_then(|f| f.prefix().or_else(|| f.and().and_then(|a| a.prefix())))
            .or_else(|| r.prefix())
            .unwrap_or("");
        RuleSpec {
            id: r.id().unwrap_or("").to_owned(),
            prefix: prefix.to_owned(),
            enabled: r.status() == &ExpirationStatus::Enabled,
            expiration_days: r.expiration().and_then(|e| e.days()).map(i64::from),
            noncurrent_version_expiration_days: r
                .noncurrent_version_expiration()
                .and_then(|e| e.noncurrent_days())
                .map(i64::from),
            abort_incomplete_multipart_upload_days: r
                .abort_incomplete_multipart_upload()
                .and_then(|a| a.days_after_initiation())
                .map(i64::from),
        }
    }

    fn to_sdk(&self) -> Result<LifecycleRule> {
        let days = |name: &str, d: Option<i64>| -> Result<Option<i32>> {
            d.map(|d| {
                i32::try_from(d).ok().filter(|d| *d > 0).ok_or_else(|| {
                    AwsError::local(format!(
                        "lifecycle_rule \"{}\": {name} must be a positive number of days",
                        self.id
                    ))
                })
            })
            .transpose()
        };
        let expiration = days("expiration_days", self.expiration_days)?;
        let noncurrent = days(
            "noncurrent_version_expiration_days",
            self.noncurrent_version_expiration_days,
        )?;
        let abort = days(
            "abort_incomplete_multipart_upload_days",
            self.abort_incomplete_multipart_upload_days,
        )?;
        LifecycleRule::builder()
            .id(&self.id)
            .status(if self.enabled {
                ExpirationStatus::Enabled
            } else {
                ExpirationStatus::Disabled
            })
            .filter(LifecycleRuleFilter::builder().prefix(&self.prefix).build())
            .set_expiration(expiration.map(|d| LifecycleExpiration::builder().days(d).build()))
            .set_noncurrent_version_expiration(noncurrent.map(|d| {
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(d)
                    .build()
            }))
            .set_abort_incomplete_multipart_upload(abort.map(|d| {
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(d)
                    .build()
            }))
            .build()
            .map_err(build_err)
    }
}

/// AWS's rules for general purpose bucket names.
fn check_bucket_name(name: &str) -> std::result::Result<(), String> {
    let bad = |why: &str| Err(format!("bucket name {name:?} is not valid: {why}"));
    if !(3..=63).contains(&name.len()) {
        return bad("it must have 3 to 63 characters");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return bad(&format!(
            "{c:?} is not allowed (lowercase letters, digits, '-' and '.' only)"
        ));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge_ok(name.chars().next()) || !edge_ok(name.chars().last()) {
        return bad("it must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return bad("it must not contain two adjacent periods");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("it must not look like an IP address");
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return bad(&format!("the prefix {prefix:?} is reserved"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", "--x-s3", "--table-s3"] {
        if name.ends_with(suffix) {
            return bad(&format!("the suffix {suffix:?} is reserved"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rule_defaults_fill_like_the_schema() {
        let rule =
            RuleSpec::from_value(&json!({"id": "r", "noncurrent_version_expiration_days": 30}))
                .unwrap();
        assert_eq!(
            rule.to_value(),
            json!({"id": "r", "prefix": "", "enabled": true, "noncurrent_version_expiration_days": 30})
        );
        // Every default in the schema is one the normaliser applies.
        for attr in LIFECYCLE_RULE {
            if let Some(d) = attr.default.value() {
                assert_eq!(rule.to_value()[attr.name], d, "{}", attr.name);
            }
        }
    }

    #[test]
    fn rule_round_trips_through_the_sdk_shape() {
        let rule = RuleSpec {
            id: "all".into(),
            prefix: "logs/".into(),
            enabled: false,
            expiration_days: Some(90),
            noncurrent_version_expiration_days: Some(30),
            abort_incomplete_multipart_upload_days: Some(7),
        };
        assert_eq!(RuleSpec::from_sdk(&rule.to_sdk().unwrap()), rule);
        assert_eq!(RuleSpec::from_value(&rule.to_value()).unwrap(), rule);
    }

    #[test]
    #[allow(deprecated)] // Rule.Prefix is deprecated, but old rules still carry it
    fn rule_prefix_read_from_legacy_and_and_filters() {
        let legacy = LifecycleRule::builder()
            .id("l")
            .prefix("old/")
            .status(ExpirationStatus::Enabled)
            .build()
            .unwrap();
        assert_eq!(RuleSpec::from_sdk(&legacy).prefix, "old/");
        let and = LifecycleRule::builder()
            .id("a")
            .filter(
                LifecycleRuleFilter::builder()
                    .and(
                        aws_sdk_s3::types::LifecycleRuleAndOperator::builder()
                            .prefix("and/")
                            .build(),
                    )
                    .build(),
            )
            .status(ExpirationStatus::Enabled)
            .build()
            .unwrap();
        assert_eq!(RuleSpec::from_sdk(&and).prefix, "and/");
        let none = LifecycleRule::builder()
            .id("n")
            .status(ExpirationStatus::Enabled)
            .build()
            .unwrap();
        assert_eq!(RuleSpec::from_sdk(&none).prefix, "");
    }

    #[test]
    fn rule_days_must_be_positive_i32() {
        let mut rule = RuleSpec::from_value(&json!({"id": "r", "expiration_days": 0})).unwrap();
        assert!(
            rule.to_sdk()
                .unwrap_err()
                .message
                .contains("expiration_days")
        );
        rule.expiration_days = Some(i64::from(i32::MAX) + 1);
        assert!(rule.to_sdk().is_err());
        assert!(RuleSpec::from_value(&json!({"id": "r", "expiration_days": "3"})).is_err());
        assert!(RuleSpec::from_value(&json!({"prefix": "x"})).is_err());
    }

    #[test]
    fn check_change_validates_kms_and_rule_actions() {
        let known = |pairs: Value| -> BTreeMap<String, Desired> {
            pairs
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), Desired::Known(v.clone())))
                .collect()
        };
        let p = S3Bucket;
        assert!(
            p.check_change(None, &known(json!({"name": "b", "kms_key_id": "k"})))
                .is_err()
        );
        assert!(
            p.check_change(
                None,
                &known(json!({"name": "b", "encryption": "AES256", "kms_key_id": "k"}))
            )
            .is_err()
        );
        assert!(
            p.check_change(
                None,
                &known(json!({"name": "b", "encryption": "aws:kms", "kms_key_id": "k"}))
            )
            .is_ok()
        );
        let err = p
            .check_change(
                None,
                &known(json!({"lifecycle_rule": [{"id": "idle", "prefix": ""}]})),
            )
            .unwrap_err();
        assert!(err.contains("idle"), "{err}");
        assert!(
            p.check_change(
                None,
                &known(json!({"lifecycle_rule": [{"id": "ok", "expiration_days": 1}]}))
            )
            .is_ok()
        );
    }

    #[test]
    fn id_and_partition() {
        let mut d = BTreeMap::new();
        assert_eq!(S3Bucket.id_for(&d), None);
        d.insert("name".to_owned(), Desired::Unknown);
        assert_eq!(S3Bucket.id_for(&d), None);
        d.insert("name".to_owned(), Desired::Known(json!("b")));
        assert_eq!(S3Bucket.id_for(&d).as_deref(), Some("b"));
        assert_eq!(partition("eu-west-1"), "aws");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
    }

    #[test]
    fn not_empty_error_says_how_to_fix() {
        let e = not_empty_error("s3_bucket.uploads", "b");
        assert_eq!(e.code.as_deref(), Some("BucketNotEmpty"));
        assert!(e.message.contains("force_destroy = true"));
        assert!(e.message.contains("apply"));
    }
}
