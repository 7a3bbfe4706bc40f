//! Resource providers: one file per AWS resource kind, all behind the [`Provider`] trait,
//! and data sources behind [`DataSource`].
//!
//! The engine (plan, apply) knows nothing of S3 or RDS: it asks the [`registry`] for the
//! provider of a kind and speaks only this trait. A new resource kind is a new file here
//! plus one line in [`registry`]. Every AWS call goes through the official SDK clients held
//! by [`Aws`], built once from `aws-config`'s standard chain.

pub mod caller;
pub mod errors;
pub mod schema;
pub mod toolkit;

#[cfg(test)]
pub mod memory;

mod alb;
mod alb_listener;
mod alb_listener_rule;
mod alb_target_group;
mod cloudwatch_alarm;
mod cloudwatch_log_group;
mod data_security_group;
mod data_subnets;
mod data_vpc;
mod ecs_cluster;
pub(crate) mod ecs_service;
mod iam_role;
mod rds_instance;
mod rds_parameter_group;
mod rds_subnet_group;
mod s3_bucket;
mod security_group;
mod ssm_parameter;

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_smithy_runtime::client::retries::{RetryPartition, TokenBucket};

use crate::events::{Event, EventSink};
use crate::value::{Attrs, Desired, Resolved};
pub use errors::{AwsError, ErrorKind, aws_err};
pub use schema::{Attr, Schema, SecretMode, Ty};

pub type Result<T, E = AwsError> = std::result::Result<T, E>;

/// The SDK configuration and the clients built from it, one per service, on first use.
pub struct Aws {
    pub config: SdkConfig,
    clients: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
    /// Who the credentials are, once [`Aws::caller`] asked (the history records the ARN).
    pub identity: OnceLock<caller::Caller>,
}

/// How many times a call is tried before its error is reported, unless `AWS_MAX_ATTEMPTS`
/// or the profile's `max_attempts` says otherwise. Terraform's AWS provider retries up to
/// 25 times; ten attempts with backoff capped at 20 s ride out minutes of throttling.
pub const MAX_ATTEMPTS: u32 = 10;

/// At most this many refresh reads of one AWS service at a time, whatever `--concurrency`
/// allows in all (`STACKWRIGHT_SERVICE_CONCURRENCY` overrides it): a large `--concurrency`
/// spreads over services instead of piling onto the one with the most resources, where
/// real AWS throttles first (SSM's default GetParameters rate is tens a second).
pub const SERVICE_CONCURRENCY: usize = 16;

/// [`SERVICE_CONCURRENCY`], or `STACKWRIGHT_SERVICE_CONCURRENCY` when set to a number ≥ 1.
pub fn service_concurrency() -> usize {
    std::env::var("STACKWRIGHT_SERVICE_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n: &usize| *n >= 1)
        .unwrap_or(SERVICE_CONCURRENCY)
}

/// An SDK client that [`Aws::client`] can build. Each provider file implements it for the
/// client of its service (one line with [`sdk_client!`]), so a new service needs no edit here.
pub trait SdkClient: Clone + Send + Sync + 'static {
    fn build(aws: &Aws) -> Self;
}

/// Implements [`SdkClient`] for `$krate::Client` with its service's retry partition.
#[macro_export]
macro_rules! sdk_client {
    ($krate:ident) => {
        impl $crate::providers::SdkClient for $krate::Client {
            fn build(aws: &$crate::providers::Aws) -> Self {
                let mut conf = $krate::config::Builder::from(&aws.config);
                conf.set_retry_partition(Some(aws.retry_partition_for(stringify!($krate))));
                Self::from_conf(conf.build())
            }
        }
    };
}

sdk_client!(aws_sdk_ssm);
sdk_client!(aws_sdk_rds);
sdk_client!(aws_sdk_ec2);
sdk_client!(aws_sdk_sts);

impl SdkClient for aws_sdk_s3::Client {
    fn build(aws: &Aws) -> Self {
        // A custom endpoint (moto, LocalStack, MinIO) rarely serves virtual-hosted buckets.
        let path_style = aws.config.endpoint_url().is_some();
        let mut conf = aws_sdk_s3::config::Builder::from(&aws.config).force_path_style(path_style);
        conf.set_retry_partition(Some(aws.retry_partition_for("aws_sdk_s3")));
        aws_sdk_s3::Client::from_conf(conf.build())
    }
}

impl Aws {
    /// Loads the standard chain: AWS_PROFILE, AWS_REGION, credentials, AWS_ENDPOINT_URL,
    /// with the SDK's adaptive retry mode (exponential backoff with full jitter, plus a
    /// client-side rate limiter that slows a service's calls down while it throttles) and
    /// [`MAX_ATTEMPTS`]. `region` and `profile` are the stack's, used when the
    /// environment sets none (AWS_REGION, AWS_PROFILE win).
    pub async fn load(region: Option<&str>, profile: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        let profile = profile.filter(|_| std::env::var_os("AWS_PROFILE").is_none());
        if let Some(p) = profile {
            loader = loader.profile_name(p);
        }
        let attempts_set = std::env::var_os("AWS_MAX_ATTEMPTS").is_some();
        if !attempts_set {
            loader = loader.retry_config(
                aws_config::retry::RetryConfig::adaptive()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_max_backoff(Duration::from_secs(20)),
            );
        }
        // The stack's region, unless the environment names one.
        let stack_region = region
            .filter(|_| {
                std::env::var_os("AWS_REGION").is_none()
                    && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            })
            .map(|r| aws_config::Region::new(r.to_owned()));
        if let Some(r) = &stack_region {
            loader = loader.region(r.clone());
        }
        // Off EC2 the instance-metadata endpoint does not answer: try it once, briefly, so
        // that "no credentials" is reported in about a second, not after the SDK's ~9 s.
        let imds = aws_config::imds::Client::builder()
            .max_attempts(1)
            .connect_timeout(Duration::from_millis(500))
            .read_timeout(Duration::from_secs(1))
            .build();
        let mut chain =
            aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                .imds_client(imds);
        if let Some(r) = stack_region {
            chain = chain.region(r);
        }
        if let Some(p) = profile {
            chain = chain.profile_name(p);
        }
        loader = loader.credentials_provider(chain.build().await);
        Self::from_config(loader.load().await)
    }

    pub fn from_config(config: SdkConfig) -> Self {
        Aws {
            config,
            clients: Mutex::new(HashMap::new()),
            identity: OnceLock::new(),
        }
    }

    /// The retry partition of one service's client. Its own: the adaptive rate limiter it
    /// holds slows down only the service that throttles (SSM at its GetParameters rate
    /// leaves EC2 and S3 at full speed). No retry quota: the SDK's default token bucket
    /// (500 tokens, 5 a retry) stops retrying after ~100 faults per process, which a
    /// 2,000-resource apply meets in one bad minute; a provisioning run would rather wait
    /// than fail half-done.
    pub fn retry_partition_for(&self, service: &'static str) -> RetryPartition {
        RetryPartition::custom(format!("stackwright-{service}"))
            .token_bucket(TokenBucket::unlimited())
            .build()
    }

    /// The client of type `C`, built on first use and shared (SDK clients are cheap clones).
    pub fn client<C: SdkClient>(&self) -> C {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&TypeId::of::<C>()) {
            return c.downcast_ref::<C>().expect("keyed by type").clone();
        }
        let c = C::build(self);
        clients.insert(TypeId::of::<C>(), Box::new(c.clone()));
        c
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        self.client()
    }
    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        self.client()
    }
    pub fn rds(&self) -> aws_sdk_rds::Client {
        self.client()
    }
    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        self.client()
    }
}

/// Everything one provider call may use: the clients, the address it acts for (for
/// progress events) and the waiting policy.
pub struct Cx<'a> {
    pub aws: &'a Aws,
    pub address: &'a str,
    pub events: &'a dyn EventSink,
    /// How long to wait for a resource to settle (RDS `available`) before failing.
    pub wait_timeout: Duration,
    pub poll_interval: Duration,
    /// The attributes this read must report (what the stack sets, what state records,
    /// outputs); `None` means all. Lets a refresh skip AWS calls for attributes nobody
    /// manages, which is most of what makes a no-change plan fast.
    pub wanted: Option<&'a std::collections::BTreeSet<String>>,
    /// The resource as state holds it (attributes and private data), for update and delete.
    pub prior: Option<&'a crate::state::ResourceState>,
    /// The state's lineage, for the ownership tags of kinds whose id AWS assigns
    /// ([`toolkit::LINEAGE_TAG`]); empty outside apply.
    pub lineage: &'a str,
}

impl<'a> Cx<'a> {
    /// A context with no prior, no lineage, all attributes wanted and a 5 s poll; set
    /// the rest with struct update syntax (`Cx { prior, ..Cx::new(…) }`).
    pub fn new(
        aws: &'a Aws,
        address: &'a str,
        events: &'a dyn EventSink,
        wait_timeout: Duration,
    ) -> Self {
        Cx {
            aws,
            address,
            events,
            wait_timeout,
            poll_interval: Duration::from_secs(5),
            wanted: None,
            prior: None,
            lineage: "",
        }
    }

    /// Whether a read should fetch `attr`.
    pub fn wants(&self, attr: &str) -> bool {
        self.wanted.is_none_or(|w| w.contains(attr))
    }

    pub fn progress(&self, status: &str, elapsed: Duration) {
        self.events.emit(Event::Waiting {
            address: self.address.to_owned(),
            status: status.to_owned(),
            elapsed,
        });
    }
    /// Reports the id AWS just returned for a resource being created, before any wait, so
    /// that a crash or a failed wait afterwards never loses it.
    pub fn created(&self, id: &str) {
        self.events.emit(Event::Created {
            address: self.address.to_owned(),
            id: id.to_owned(),
        });
    }

    pub fn note(&self, message: impl Into<String>) {
        self.events.emit(Event::Note {
            address: self.address.to_owned(),
            message: message.into(),
        });
    }
}

/// A resource as read from AWS: its id and the attributes the kind manages, plus outputs.
/// Sensitive attributes may be present (decrypted) for comparison in memory; the engine
/// strips them before anything is stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Live {
    pub id: String,
    pub attrs: Attrs,
    /// Provider-owned data to keep in state with the resource (a previous revision); `None`
    /// keeps what state held. Never a secret.
    pub private: Option<serde_json::Value>,
}

/// What a provider decides about a planned change (Terraform's PlanResourceChange): which
/// attributes force a replacement, whether the new one must exist before the old one goes,
/// and what the plan should say.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlannedChange {
    /// The changed attributes that force a replacement (empty: update in place).
    pub requires_replace: Vec<String>,
    /// Replace by creating the new resource first and deleting the old one after everything
    /// that references it moved (`+/-`), for resources others point at while they are
    /// replaced (target groups behind a listener, task definitions behind a service).
    pub create_before_destroy: bool,
    pub notes: ChangeNotes,
}

/// What the plan should say about a change beyond the attribute diff.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChangeNotes {
    /// Plain remarks ("applied at the next maintenance window").
    pub notes: Vec<String>,
    /// Warnings shown in red (data-loss adjacent: "snapshot X will be taken").
    pub warnings: Vec<String>,
}

#[async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> &'static str;
    fn schema(&self) -> &'static Schema;

    /// Whether a desired attribute holds a secret even when written as a plain value
    /// (an SSM `SecureString` value).
    fn is_sensitive(&self, _attr: &str, _desired: &BTreeMap<String, Desired>) -> bool {
        false
    }

    /// The AWS identifier the resource will have, when the configuration decides it
    /// (bucket name, parameter name); used to notice a resource that exists but is not in
    /// state, and recorded in the intent before a create. Default: the `name` attribute.
    fn id_for(&self, desired: &BTreeMap<String, Desired>) -> Option<String> {
        toolkit::id_from(desired, "name")
    }

    /// For kinds whose id AWS assigns (ARNs): finds what an interrupted create made before
    /// its id was recorded, by the [`toolkit::ADDRESS_TAG`] and [`toolkit::LINEAGE_TAG`]
    /// tags its create sets. Kinds whose id the stack decides never need it.
    async fn find_created(
        &self,
        _cx: &Cx<'_>,
        _address: &str,
        _lineage: &str,
    ) -> Result<Option<Live>> {
        Ok(None)
    }

    /// The form in which a value is compared and shown, applied alike to what the stack
    /// says and what AWS reports: a set sorted, equivalent spellings made one (a security
    /// group's rules flattened). Default: as it is.
    fn canonical(&self, _attr: &str, value: &serde_json::Value) -> serde_json::Value {
        value.clone()
    }

    /// Checks one known attribute value against AWS's rules (naming, ranges): `Err` says
    /// what is wrong and how to fix it. Called at load for values written in the file
    /// (located at the attribute) and at plan for values known only then.
    fn check_attr(
        &self,
        _attr: &str,
        _value: &serde_json::Value,
    ) -> std::result::Result<(), String> {
        Ok(())
    }

    /// Reads the managed attributes; `None` when it does not exist.
    async fn read(&self, cx: &Cx<'_>, id: &str) -> Result<Option<Live>>;

    /// The AWS service this kind calls, for refresh's per-service concurrency ceiling
    /// ([`SERVICE_CONCURRENCY`]). Default: the kind's first word (`ssm_parameter` → `ssm`).
    fn service(&self) -> &'static str {
        let kind = self.kind();
        kind.split('_').next().unwrap_or(kind)
    }

    /// How many resources of this kind one refresh call can read (SSM GetParameters takes
    /// 10 names); refresh hands [`Provider::read_many`] batches of up to this size.
    fn batch_size(&self) -> usize {
        1
    }

    /// Whether a read of these attributes can go into a batch: a read that needs calls of
    /// its own per resource (tags, say) is read alone, so that it counts against the
    /// service's concurrency ceiling like any other call.
    fn batchable(&self, _wanted: Option<&std::collections::BTreeSet<String>>) -> bool {
        true
    }

    /// Reads several resources of this kind, answering in the order of `items` (each with
    /// its id and the attributes its read must report, as [`Cx::wanted`]). The default reads
    /// one by one; a kind with a batch read in AWS overrides it.
    async fn read_many(
        &self,
        cx: &Cx<'_>,
        items: &[(&str, Option<&std::collections::BTreeSet<String>>)],
    ) -> Result<Vec<Option<Live>>> {
        let mut out = Vec::with_capacity(items.len());
        for (id, wanted) in items {
            let cx = Cx {
                wanted: *wanted,
                ..*cx
            };
            out.push(self.read(&cx, id).await?);
        }
        Ok(out)
    }
    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live>;
    /// `changed` lists the attributes that differ; local-only ones need no AWS call.
    async fn update(
        &self,
        cx: &Cx<'_>,
        id: &str,
        input: &Resolved,
        changed: &[String],
    ) -> Result<Live>;
    async fn delete(&self, cx: &Cx<'_>, id: &str, prior: &Attrs) -> Result<()>;

    /// Decides a change at plan time: refuses impossible ones (`Err`, shown with the
    /// resource's address), says which changed attributes force a replacement and how it
    /// is carried out, and adds notes. `prior` is the live (or stored) attributes when the
    /// resource exists; `changed` the attributes whose desired value differs. The default:
    /// the schema's `force_new` attributes replace, delete first, notes from
    /// [`Provider::check_change`].
    fn plan_change(
        &self,
        prior: Option<&Attrs>,
        desired: &BTreeMap<String, Desired>,
        changed: &[String],
    ) -> std::result::Result<PlannedChange, String> {
        let notes = self.check_change(prior, desired)?;
        let requires_replace = changed
            .iter()
            .filter(|c| self.schema().attr(c).is_some_and(|a| a.force_new))
            .cloned()
            .collect();
        Ok(PlannedChange {
            requires_replace,
            create_before_destroy: false,
            notes,
        })
    }

    /// Refuses impossible changes at plan time (shrinking storage) and explains others;
    /// the part of [`Provider::plan_change`] most kinds need.
    /// `prior` is the live (or stored) attributes when the resource exists.
    fn check_change(
        &self,
        _prior: Option<&Attrs>,
        _desired: &BTreeMap<String, Desired>,
    ) -> std::result::Result<ChangeNotes, String> {
        Ok(ChangeNotes::default())
    }

    /// Checks at plan time that need AWS (a parameter the resource names exists); `Err`
    /// refuses the plan at the resource's address, `Ok` gives notes for the plan. Called
    /// for resources being created or changed, with what the stack says (`desired`) and
    /// its preview: the same with each value still unknown written as its reference
    /// (`"${ssm_parameter.key.arn}"`), so a table that is only partly known can be checked
    /// and described before the first apply. Default: nothing to check.
    async fn verify(
        &self,
        _cx: &Cx<'_>,
        _desired: &BTreeMap<String, Desired>,
        _preview: &BTreeMap<String, Desired>,
    ) -> std::result::Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    /// What deleting this resource will do besides deleting it (a final snapshot).
    fn delete_notes(&self, _prior: &Attrs) -> ChangeNotes {
        ChangeNotes::default()
    }
}

/// A data source: read at plan time (`<= read`), never created.
#[async_trait]
pub trait DataSource: Send + Sync {
    /// The kind after `data.`, e.g. `vpc`.
    fn kind(&self) -> &'static str;
    fn schema(&self) -> &'static Schema;
    /// Refuses a contradictory set of arguments at load time, given which are set.
    fn check_args(&self, _set: &[&str]) -> std::result::Result<(), String> {
        Ok(())
    }
    async fn read(&self, aws: &Aws, args: &Resolved) -> Result<Attrs>;
}

pub struct Registry {
    providers: BTreeMap<&'static str, Box<dyn Provider>>,
    data: BTreeMap<&'static str, Box<dyn DataSource>>,
}

impl Registry {
    /// A registry of exactly these kinds (the engine's unit tests use an in-memory one).
    pub fn new(providers: Vec<Box<dyn Provider>>, data: Vec<Box<dyn DataSource>>) -> Self {
        Registry {
            providers: providers.into_iter().map(|p| (p.kind(), p)).collect(),
            data: data.into_iter().map(|d| (d.kind(), d)).collect(),
        }
    }

    pub fn provider(&self, kind: &str) -> Option<&dyn Provider> {
        self.providers.get(kind).map(|p| p.as_ref())
    }
    pub fn data_source(&self, kind: &str) -> Option<&dyn DataSource> {
        self.data.get(kind).map(|d| d.as_ref())
    }
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.providers.keys().copied()
    }
    pub fn data_kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.data.keys().copied()
    }
}

/// Every resource kind and data source this build knows.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let providers: Vec<Box<dyn Provider>> = vec![
            Box::new(s3_bucket::S3Bucket),
            Box::new(ssm_parameter::SsmParameter),
            Box::new(rds_instance::RdsInstance),
            Box::new(rds_subnet_group::RdsSubnetGroup),
            Box::new(rds_parameter_group::RdsParameterGroup),
            Box::new(security_group::SecurityGroup),
            Box::new(cloudwatch_log_group::CloudwatchLogGroup),
            Box::new(alb::Alb),
            Box::new(alb_target_group::AlbTargetGroup),
            Box::new(alb_listener::AlbListener),
            Box::new(alb_listener_rule::AlbListenerRule),
            Box::new(cloudwatch_alarm::CloudwatchAlarm),
            Box::new(iam_role::IamRole),
            Box::new(ecs_cluster::EcsCluster),
            Box::new(ecs_service::EcsService),
        ];
        let data: Vec<Box<dyn DataSource>> = vec![
            Box::new(data_vpc::Vpc),
            Box::new(data_subnets::Subnets),
            Box::new(data_security_group::SecurityGroup),
        ];
        Registry::new(providers, data)
    })
}

/// Polls `read` until `done` says the resource settled, emitting one progress event per
/// status change; fails after `cx.wait_timeout`.
pub async fn wait_for<F, Fut>(cx: &Cx<'_>, what: &str, mut poll: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>>>,
{
    // tokio's clock, the one `sleep` below runs on: the same as std's at run time, and
    // under a paused test clock elapsed time and the timeout follow the virtual time.
    let start = tokio::time::Instant::now();
    let mut last = String::new();
    loop {
        // `None` means settled; `Some(status)` means still waiting in that status.
        match poll().await? {
            None => return Ok(()),
            Some(status) => {
                if status != last {
                    cx.progress(&status, start.elapsed());
                    last = status;
                }
            }
        }
        if start.elapsed() >= cx.wait_timeout {
            return Err(AwsError::local(format!(
                "timed out after {}s waiting for {what} (last status: {last}); raise it with --wait-timeout",
                cx.wait_timeout.as_secs()
            )));
        }
        tokio::time::sleep(cx.poll_interval).await;
    }
}
