//! `ecs_service`: a Fargate service with its task definition written inline
//! (`[ecs_service.api.task]`, `[[ecs_service.api.task.container]]`).
//!
//! Task definitions are immutable: a changed `task` registers a new revision (or reuses
//! the family's latest one when it already says exactly that: a migration task registered
//! it, or a rollback is being undone) and moves the service to it; the revisions this
//! resource deployed are kept in its private state for `stackwright rollback`. The task is
//! compared in one normalised shape on both sides ([`EcsService::canonical`]): containers
//! by name, environment and secrets as tables, AWS's health-check defaults (interval 30,
//! timeout 5, retries 3), `essential` true, `cpu = 0` and empty lists as absent, the awslogs
//! stream prefix defaulting to the container's name — so a freshly applied service plans
//! to no changes (the perpetual diffs Terraform users know from `task_definition_equivalency`).
//!
//! `execution_role = "auto"` writes the least-privilege execution role itself, named after
//! the cluster and service: `ssm:GetParameters` on exactly the referenced parameters (plus
//! `kms:Decrypt` on their customer keys), `logs:CreateLogStream`/`PutLogEvents` on exactly
//! the referenced log groups, and the ECR pull (only `ecr:GetAuthorizationToken` needs
//! `*`). A read reports `"auto"` only while the role's policy is still what the live task
//! needs, so an outside edit of it is drift.
//!
//! After a create or an update that starts a deployment, apply waits for steady state
//! (rollout COMPLETED, running = desired); a circuit-breaker failure fails the apply with
//! ECS's reason, and says when ECS rolled the service back. The id is the service ARN; the
//! create tags it with the address and lineage, so an interrupted create is found again.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, ContainerDefinition, ContainerOverride,
    DeploymentCircuitBreaker, DeploymentConfiguration, HealthCheck, KeyValuePair, LaunchType,
    LoadBalancer, LogConfiguration, LogDriver, NetworkConfiguration, NetworkMode, PortMapping,
    Secret, Service, ServiceField, Tag, TaskDefinition, TaskDefinitionStatus, TaskOverride,
    TransportProtocol,
};
use serde_json::{Map, Value, json};

use super::ecs_cluster::{ecs, ecs_tags, sync_tags, tags_of};
use super::iam_role::{RoleSpec, canonical_policy, delete_role, put_role, read_role};
use super::schema::Default;
use super::toolkit::{ADDRESS_TAG, LINEAGE_TAG, tags_value};
use super::{
    Attr, Aws, AwsError, ChangeNotes, Cx, Live, PlannedChange, Provider, Result, Schema, Ty,
    aws_err,
};
use crate::value::{Attrs, Desired, Resolved};

pub struct EcsService;

static CIRCUIT_BREAKER: &[Attr] = &[
    Attr::new(
        "enable",
        Ty::Bool,
        "Stop a deployment whose tasks keep failing to start.",
    )
    .default(Default::Bool(false)),
    Attr::new(
        "rollback",
        Ty::Bool,
        "Roll a failed deployment back to the last one that completed.",
    )
    .default(Default::Bool(false)),
];

static DEPLOYMENT: &[Attr] = &[
    Attr::new(
        "minimum_healthy_percent",
        Ty::Int,
        "Tasks kept running during a deployment, % of desired (default 100).",
    )
    .default(Default::Int(100)),
    Attr::new(
        "maximum_percent",
        Ty::Int,
        "Tasks allowed during a deployment, % of desired (default 200).",
    )
    .default(Default::Int(200)),
    Attr::new(
        "circuit_breaker",
        Ty::Table(CIRCUIT_BREAKER),
        "{ enable = true, rollback = true }: ECS stops and rolls back a failing deployment.",
    ),
];

static LOAD_BALANCER: &[Attr] = &[
    Attr::new(
        "target_group",
        Ty::String,
        "Target group ARN, e.g. \"${alb_target_group.blue.arn}\".",
    )
    .required(),
    Attr::new(
        "container",
        Ty::String,
        "The container that receives the traffic.",
    )
    .required(),
    Attr::new("port", Ty::Int, "Its port (the target group's port).").required(),
];

static HEALTH_CHECK: &[Attr] = &[
    Attr::new(
        "command",
        Ty::StringList,
        "e.g. [\"CMD-SHELL\", \"curl -f http://localhost:8000/ready || exit 1\"].",
    )
    .required(),
    Attr::new(
        "interval",
        Ty::Int,
        "Seconds between checks, 5-300 (default 30).",
    ),
    Attr::new(
        "timeout",
        Ty::Int,
        "Seconds before a check fails, 2-60 (default 5).",
    ),
    Attr::new(
        "retries",
        Ty::Int,
        "Failures before unhealthy, 1-10 (default 3).",
    ),
    Attr::new(
        "start_period",
        Ty::Int,
        "Grace seconds after start, 0-300 (default 0).",
    ),
];

static CONTAINER: &[Attr] = &[
    Attr::new("name", Ty::String, "Container name.").required(),
    Attr::new(
        "image",
        Ty::String,
        "Image, e.g. \"123456789012.dkr.ecr.eu-central-1.amazonaws.com/api:${var.image_tag}\".",
    )
    .required(),
    Attr::new("port", Ty::Int, "The port it listens on (TCP)."),
    Attr::new(
        "command",
        Ty::StringList,
        "Command, overriding the image's.",
    ),
    Attr::new("environment", Ty::StringMap, "Plain environment variables."),
    Attr::new(
        "secrets",
        Ty::StringMap,
        "Variables read from SSM at start: NAME = \"${ssm_parameter.x.arn}\".",
    ),
    Attr::new(
        "health_check",
        Ty::Table(HEALTH_CHECK),
        "{ command, interval, timeout, retries, start_period }.",
    ),
    Attr::new(
        "log_group",
        Ty::String,
        "CloudWatch log group for awslogs, e.g. \"${cloudwatch_log_group.app.name}\".",
    ),
    Attr::new(
        "log_stream_prefix",
        Ty::String,
        "awslogs stream prefix (default: the container's name).",
    ),
    Attr::new(
        "essential",
        Ty::Bool,
        "The task stops when this container stops (default true).",
    ),
    Attr::new("cpu", Ty::Int, "CPU units reserved for the container."),
    Attr::new("memory", Ty::Int, "Hard memory limit, MiB."),
    Attr::new("memory_reservation", Ty::Int, "Soft memory limit, MiB."),
];

static TASK: &[Attr] = &[
    Attr::new(
        "family",
        Ty::String,
        "Task definition family, e.g. \"webapp-dev-api\".",
    )
    .required(),
    Attr::new(
        "cpu",
        Ty::Int,
        "Task CPU units: 256, 512, 1024, 2048, 4096, 8192 or 16384.",
    )
    .required(),
    Attr::new(
        "memory",
        Ty::Int,
        "Task memory, MiB; must fit the cpu (256: 512-2048, 512: 1024-4096, …).",
    )
    .required(),
    Attr::new(
        "execution_role",
        Ty::String,
        "\"auto\" (Stackwright writes a least-privilege role) or a role ARN.",
    ),
    Attr::new(
        "task_role",
        Ty::String,
        "Role ARN the application's AWS calls use.",
    ),
    Attr::new(
        "container",
        Ty::Blocks(CONTAINER),
        "[[ecs_service.NAME.task.container]] blocks.",
    )
    .required(),
];

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new("name", Ty::String, "Service name.")
            .required()
            .force_new(),
        Attr::new(
            "cluster",
            Ty::String,
            "Cluster name or ARN, e.g. \"${ecs_cluster.main.name}\".",
        )
        .required()
        .force_new(),
        Attr::new(
            "desired_count",
            Ty::Int,
            "Tasks to keep running (default 1).",
        )
        .default(Default::Int(1)),
        Attr::new(
            "launch_type",
            Ty::Enum(&["FARGATE"]),
            "Launch type: FARGATE.",
        )
        .force_new()
        .default(Default::Str("FARGATE")),
        Attr::new(
            "platform_version",
            Ty::String,
            "Fargate platform version (default \"LATEST\").",
        )
        .default(Default::Str("LATEST")),
        Attr::new(
            "subnets",
            Ty::StringList,
            "Subnet ids for the tasks, e.g. \"${data.subnets.default.ids}\".",
        )
        .required(),
        Attr::new(
            "security_groups",
            Ty::StringList,
            "Security group ids (unset: the VPC's default group).",
        ),
        Attr::new(
            "assign_public_ip",
            Ty::Bool,
            "Give each task a public IP (needed to pull images without a NAT).",
        )
        .default(Default::Bool(false)),
        Attr::new(
            "health_check_grace_period",
            Ty::Int,
            "Seconds to ignore load-balancer health checks after a task starts.",
        ),
        Attr::new(
            "deployment",
            Ty::Table(DEPLOYMENT),
            "{ minimum_healthy_percent, maximum_percent, circuit_breaker = { enable, rollback } }.",
        ),
        Attr::new(
            "load_balancer",
            Ty::Table(LOAD_BALANCER),
            "{ target_group, container, port }: register the tasks with a target group.",
        ),
        Attr::new("task", Ty::Table(TASK), "The task definition.").required(),
        Attr::new("tags", Ty::StringMap, "Tags."),
    ],
    outputs: &["arn", "task_definition_arn", "revision"],
};

/// Revisions kept in private state for `rollback` (newest last).
const KEPT_REVISIONS: usize = 10;

#[async_trait]
impl Provider for EcsService {
    fn kind(&self) -> &'static str {
        "ecs_service"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    /// AWS assigns the ARN.
    fn id_for(&self, _desired: &BTreeMap<String, Desired>) -> Option<String> {
        None
    }

    fn canonical(&self, attr: &str, v: &Value) -> Value {
        match (attr, v) {
            ("cluster", Value::String(s)) => json!(short_name(s)),
            ("subnets" | "security_groups", Value::Array(items)) => {
                let mut items = items.clone();
                items.sort_by_key(|a| a.to_string());
                items.dedup();
                Value::Array(items)
            }
            ("deployment", Value::Object(m)) => {
                let mut m = m.clone();
                m.entry("minimum_healthy_percent").or_insert(json!(100));
                m.entry("maximum_percent").or_insert(json!(200));
                let cb = m
                    .get("circuit_breaker")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                m.insert(
                    "circuit_breaker".into(),
                    json!({
                        "enable": cb.get("enable").and_then(Value::as_bool).unwrap_or(false),
                        "rollback": cb.get("rollback").and_then(Value::as_bool).unwrap_or(false),
                    }),
                );
                Value::Object(m)
            }
            ("task", Value::Object(_)) => canonical_task(v),
            _ => v.clone(),
        }
    }

    fn check_attr(&self, attr: &str, value: &Value) -> std::result::Result<(), String> {
        match (attr, value) {
            ("name", Value::String(n)) => super::ecs_cluster::check_name("a service", n),
            ("desired_count", Value::Number(n)) if n.as_i64().is_some_and(|n| n < 0) => {
                Err(format!("desired_count {n} must be 0 or more"))
            }
            ("health_check_grace_period", Value::Number(n))
                if n.as_i64()
                    .is_some_and(|n| !(0..=2_147_483_647).contains(&n)) =>
            {
                Err(format!("health_check_grace_period {n} must be 0 or more"))
            }
            ("deployment", Value::Object(m)) => {
                let lo = m.get("minimum_healthy_percent").and_then(Value::as_i64);
                let hi = m.get("maximum_percent").and_then(Value::as_i64);
                if let Some(lo) = lo
                    && !(0..=100).contains(&lo)
                {
                    return Err(format!(
                        "deployment.minimum_healthy_percent {lo} must be 0 to 100"
                    ));
                }
                if let Some(hi) = hi
                    && !(100..=200).contains(&hi)
                {
                    return Err(format!(
                        "deployment.maximum_percent {hi} must be 100 to 200"
                    ));
                }
                Ok(())
            }
            ("load_balancer", Value::Object(m)) => match m.get("port").and_then(Value::as_i64) {
                Some(p) if !(1..=65535).contains(&p) => {
                    Err(format!("load_balancer.port {p} must be 1 to 65535"))
                }
                _ => Ok(()),
            },
            ("task", Value::Object(t)) => check_task(t),
            _ => Ok(()),
        }
    }

    fn check_change(
        &self,
        _prior: Option<&Attrs>,
        desired: &BTreeMap<String, Desired>,
    ) -> std::result::Result<ChangeNotes, String> {
        let task = desired.get("task").and_then(Desired::known);
        let lb = desired.get("load_balancer").and_then(Desired::known);
        if let (Some(t), Some(lb)) = (task, lb) {
            check_load_balancer(t, lb)?;
        }
        Ok(ChangeNotes::default())
    }

    fn plan_change(
        &self,
        prior: Option<&Attrs>,
        desired: &BTreeMap<String, Desired>,
        changed: &[String],
    ) -> std::result::Result<PlannedChange, String> {
        let mut notes = self.check_change(prior, desired)?;
        let requires_replace: Vec<String> = changed
            .iter()
            .filter(|c| SCHEMA.attr(c).is_some_and(|a| a.force_new))
            .cloned()
            .collect();
        let task = desired.get("task").and_then(Desired::known);
        if let (Some(prior), Some(want), true) = (prior, task, changed.iter().any(|c| c == "task"))
            && let Some(have) = prior.get("task")
        {
            let mut fields = revision_fields(&canonical_task(have), &canonical_task(want));
            // "auto" read back as a role ARN means the role's policy drifted: apply rewrites
            // the policy and the task itself, and so its revision, stays as it is.
            let auto_name = auto_role_name(
                prior
                    .get("cluster")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                prior
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            );
            let auto_drift = want.get("execution_role").and_then(Value::as_str) == Some("auto")
                && have
                    .get("execution_role")
                    .and_then(Value::as_str)
                    .is_some_and(|r| r.starts_with(&format!("auto (role {auto_name}:")));
            if auto_drift {
                fields.retain(|f| f != "execution_role");
                notes.notes.push(
                    "the auto execution role no longer grants exactly what the task needs: apply rewrites its policy"
                        .to_owned(),
                );
            }
            if !fields.is_empty() {
                let rev = prior.get("revision").and_then(Value::as_i64);
                notes.notes.push(format!(
                    "a new task definition revision is registered{} because {} changed; the service then moves to it",
                    rev.map(|r| format!(" (after revision {r})")).unwrap_or_default(),
                    fields.join(", ")
                ));
            }
        }
        if let Some(t) = task
            && t.get("execution_role").and_then(Value::as_str) == Some("auto")
            && (prior.is_none() || changed.iter().any(|c| c == "task"))
        {
            notes.notes.push(auto_role_summary(desired, t));
        }
        if changed.iter().any(|c| c == "desired_count")
            && let Some(Value::Number(n)) = desired.get("desired_count").and_then(Desired::known)
        {
            notes.notes.push(format!(
                "apply waits until {n} task(s) run and the rollout completed (--wait-timeout bounds it)"
            ));
        }
        Ok(PlannedChange {
            requires_replace,
            create_before_destroy: false,
            notes,
        })
    }

    async fn verify(
        &self,
        cx: &Cx<'_>,
        desired: &BTreeMap<String, Desired>,
        preview: &BTreeMap<String, Desired>,
    ) -> Result<Vec<String>, String> {
        let Some(task) = preview.get("task").and_then(Desired::known) else {
            return Ok(Vec::new());
        };
        // Before the first apply the task is only partly known: its preview still shows
        // what the auto role will grant (plan_change says it once the task is known).
        let mut notes = Vec::new();
        if desired.get("task").and_then(Desired::known).is_none()
            && task.get("execution_role").and_then(Value::as_str) == Some("auto")
        {
            notes.push(auto_role_summary(preview, task));
        }
        // Parameters named literally (not created by this stack) must exist already: ECS
        // would fail every task start on a missing one, long after apply said done.
        let names: Vec<String> = containers(task)
            .iter()
            .flat_map(|c| string_map(c.get("secrets")).into_values())
            .filter(|v| !v.starts_with("arn:aws:secretsmanager:") && !v.contains("${"))
            .map(|v| ssm_name(&v))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if names.is_empty() {
            return Ok(notes);
        }
        let found = parameter_keys(cx.aws, &names)
            .await
            .map_err(|e| format!("cannot check the task's SSM parameters: {e}"))?;
        let missing: Vec<&String> = names.iter().filter(|n| !found.contains_key(*n)).collect();
        if missing.is_empty() {
            Ok(notes)
        } else {
            Err(format!(
                "the task's secrets reference SSM parameter(s) that do not exist: {}; create them (an ssm_parameter in this stack, referenced as \"${{ssm_parameter.NAME.arn}}\") or fix the name",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }

    async fn find_created(
        &self,
        cx: &Cx<'_>,
        address: &str,
        lineage: &str,
    ) -> Result<Option<Live>> {
        let ecs = ecs(cx.aws);
        let clusters = ecs.list_clusters().send().await.map_err(aws_err)?;
        for cluster in clusters.cluster_arns() {
            let arns = ecs
                .list_services()
                .cluster(cluster)
                .send()
                .await
                .map_err(aws_err)?;
            for chunk in arns.service_arns().chunks(10) {
                let out = ecs
                    .describe_services()
                    .cluster(cluster)
                    .set_services(Some(chunk.to_vec()))
                    .include(ServiceField::Tags)
                    .send()
                    .await
                    .map_err(aws_err)?;
                if let Some(s) = out.services().iter().find(|s| {
                    let t = tags_of(s.tags());
                    s.status() == Some("ACTIVE")
                        && t.get(ADDRESS_TAG).map(String::as_str) == Some(address)
                        && t.get(LINEAGE_TAG).map(String::as_str) == Some(lineage)
                }) {
                    let arn = s.service_arn().unwrap_or_default().to_owned();
                    return self.read(cx, &arn).await;
                }
            }
        }
        Ok(None)
    }

    async fn read(&self, cx: &Cx<'_>, id: &str) -> Result<Option<Live>> {
        let Some(service) = describe_service(cx.aws, id).await? else {
            return Ok(None);
        };
        let td = match service.task_definition() {
            Some(arn) if cx.wants("task") || cx.wants("revision") => {
                Some(describe_task_definition(cx.aws, arn).await?)
            }
            _ => None,
        };
        let task = match &td {
            Some(td) => Some(task_value(cx, &service, td).await?),
            None => None,
        };
        Ok(Some(live_of(&service, td.as_ref(), task)))
    }

    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live> {
        let name = input
            .str("name")
            .ok_or_else(|| AwsError::local("ecs_service: name is required"))?;
        let cluster = input
            .str("cluster")
            .ok_or_else(|| AwsError::local("ecs_service: cluster is required"))?;
        let td_arn = register_task(cx, input).await?;
        let mut tags = ecs_tags(&input.string_map("tags"));
        tags.push(Tag::builder().key(ADDRESS_TAG).value(cx.address).build());
        tags.push(Tag::builder().key(LINEAGE_TAG).value(cx.lineage).build());
        let sent = ecs(cx.aws)
            .create_service()
            .cluster(cluster)
            .service_name(name)
            .task_definition(&td_arn)
            .desired_count(int(input, "desired_count").unwrap_or(1))
            .launch_type(LaunchType::Fargate)
            .platform_version(input.str("platform_version").unwrap_or("LATEST"))
            .network_configuration(network(input)?)
            .set_load_balancers(load_balancers(input))
            .set_health_check_grace_period_seconds(int(input, "health_check_grace_period"))
            .set_deployment_configuration(deployment_configuration(input)?)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(aws_err);
        let service = match sent {
            Ok(out) => out.service().cloned().ok_or_else(|| {
                AwsError::local(format!("CreateService {name} returned no service"))
            })?,
            // A retried create whose first attempt went through: ours when it carries this
            // address and lineage.
            Err(e) if e.is("InvalidParameterException") => {
                match describe_service(cx.aws, &format!("{}/{name}", short_name(cluster))).await? {
                    Some(s)
                        if tags_of(s.tags()).get(ADDRESS_TAG).map(String::as_str)
                            == Some(cx.address)
                            && tags_of(s.tags()).get(LINEAGE_TAG).map(String::as_str)
                                == Some(cx.lineage) =>
                    {
                        s
                    }
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let arn = service.service_arn().unwrap_or_default().to_owned();
        cx.created(&arn);
        let deployment = primary_deployment(&service);
        wait_steady(cx, &arn, deployment.as_deref(), &td_arn).await?;
        let mut live = read_required(self, cx, &arn).await?;
        live.private = Some(revisions_private(None, &td_arn));
        Ok(live)
    }

    async fn update(
        &self,
        cx: &Cx<'_>,
        id: &str,
        input: &Resolved,
        changed: &[String],
    ) -> Result<Live> {
        let current = describe_service(cx.aws, id)
            .await?
            .ok_or_else(|| AwsError::local(format!("service {id} no longer exists")))?;
        let cluster = current.cluster_arn().unwrap_or_default().to_owned();
        let mut call = ecs(cx.aws).update_service().cluster(&cluster).service(id);
        let mut any = false;
        let mut deploys = false;
        let mut td_arn = current.task_definition().unwrap_or_default().to_owned();
        for attr in changed {
            match attr.as_str() {
                "task" => {
                    let arn = register_task(cx, input).await?;
                    if arn != td_arn {
                        call = call.task_definition(&arn);
                        td_arn = arn;
                        any = true;
                        deploys = true;
                    }
                }
                "desired_count" => {
                    call = call.desired_count(int(input, "desired_count").unwrap_or(1));
                    any = true;
                }
                "platform_version" => {
                    call = call.platform_version(input.str("platform_version").unwrap_or("LATEST"));
                    any = true;
                    deploys = true;
                }
                "subnets" | "security_groups" | "assign_public_ip" => {
                    call = call.network_configuration(network(input)?);
                    any = true;
                    deploys = true;
                }
                "load_balancer" => {
                    call = call.set_load_balancers(Some(load_balancers(input).unwrap_or_default()));
                    any = true;
                    deploys = true;
                }
                "health_check_grace_period" => {
                    call = call.set_health_check_grace_period_seconds(Some(
                        int(input, "health_check_grace_period").unwrap_or(0),
                    ));
                    any = true;
                }
                "deployment" => {
                    call = call.set_deployment_configuration(deployment_configuration(input)?);
                    any = true;
                }
                "tags" => {
                    let arn = current.service_arn().unwrap_or_default();
                    let have = user_tags(&tags_of(current.tags()));
                    sync_tags(cx.aws, arn, &have, &input.string_map("tags")).await?;
                }
                other => {
                    return Err(AwsError::local(format!(
                        "ecs_service {id}: {other} cannot change in place (the service must be replaced)"
                    )));
                }
            }
        }
        if any {
            let out = call.send().await.map_err(aws_err)?;
            // Ours is the deployment of our revision (PRIMARY when ECS has not already
            // rolled it back).
            let deployment = if deploys {
                out.service().and_then(|s| {
                    s.deployments()
                        .iter()
                        .find(|d| d.task_definition() == Some(td_arn.as_str()))
                        .and_then(|d| d.id())
                        .map(str::to_owned)
                        .or_else(|| primary_deployment(s))
                })
            } else {
                None
            };
            wait_steady(cx, id, deployment.as_deref(), &td_arn).await?;
        }
        let mut live = read_required(self, cx, id).await?;
        live.private = Some(revisions_private(
            cx.prior.and_then(|p| p.private.as_ref()),
            &td_arn,
        ));
        Ok(live)
    }

    async fn delete(&self, cx: &Cx<'_>, id: &str, prior: &Attrs) -> Result<()> {
        let Some(service) = describe_service(cx.aws, id).await? else {
            return cleanup(cx, prior, None).await;
        };
        let cluster = service.cluster_arn().unwrap_or_default().to_owned();
        // Scaled to 0 first, so the tasks drain from the load balancer before the service
        // goes (DeleteService refuses a service above 0 without `force`).
        if service.desired_count() > 0 {
            ecs(cx.aws)
                .update_service()
                .cluster(&cluster)
                .service(id)
                .desired_count(0)
                .send()
                .await
                .map_err(aws_err)?;
        }
        match ecs(cx.aws)
            .delete_service()
            .cluster(&cluster)
            .service(id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) => match aws_err(e) {
                e if e.is("ServiceNotFoundException") => {}
                e => return Err(e),
            },
        }
        let aws = cx.aws;
        super::wait_for(cx, &format!("service {id} to drain"), || async move {
            Ok(describe_service(aws, id).await?.map(|s| {
                format!(
                    "{} ({} running)",
                    s.status().unwrap_or("?"),
                    s.running_count()
                )
            }))
        })
        .await?;
        cleanup(cx, prior, Some(&service)).await
    }

    fn delete_notes(&self, prior: &Attrs) -> ChangeNotes {
        let family = prior
            .get("task")
            .and_then(|t| t.get("family"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        ChangeNotes {
            notes: vec![format!(
                "scaled to 0 and deleted; the task definition revisions of {family} are deregistered"
            )],
            warnings: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------
// The task in the stack's shape
// ---------------------------------------------------------------------------

/// The containers of a task value (the stack's shape).
fn containers(task: &Value) -> Vec<Map<String, Value>> {
    task.get("container")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|c| c.as_object().cloned()).collect())
        .unwrap_or_default()
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    crate::value::string_map(v)
}

/// The one form a task is compared and shown in, for the stack's value and AWS's alike.
pub(crate) fn canonical_task(v: &Value) -> Value {
    let Some(t) = v.as_object() else {
        return v.clone();
    };
    let mut t = t.clone();
    for k in ["cpu", "memory"] {
        if let Some(Value::String(s)) = t.get(k)
            && let Ok(n) = s.parse::<i64>()
        {
            t.insert(k.into(), json!(n));
        }
    }
    let mut cs: Vec<Value> = containers(v)
        .into_iter()
        .map(|mut c| {
            c.entry("essential").or_insert(json!(true));
            for k in ["cpu", "memory", "memory_reservation"] {
                if c.get(k).and_then(Value::as_i64) == Some(0) || c.get(k) == Some(&Value::Null) {
                    c.remove(k);
                }
            }
            for k in ["command", "environment", "secrets"] {
                let empty = match c.get(k) {
                    Some(Value::Array(a)) => a.is_empty(),
                    Some(Value::Object(m)) => m.is_empty(),
                    Some(Value::Null) => true,
                    _ => false,
                };
                if empty {
                    c.remove(k);
                }
            }
            if c.contains_key("log_group") && !c.contains_key("log_stream_prefix") {
                let name = c.get("name").cloned().unwrap_or(Value::Null);
                c.insert("log_stream_prefix".into(), name);
            }
            if let Some(Value::Object(hc)) = c.get_mut("health_check") {
                hc.entry("interval").or_insert(json!(30));
                hc.entry("timeout").or_insert(json!(5));
                hc.entry("retries").or_insert(json!(3));
                hc.entry("start_period").or_insert(json!(0));
            }
            Value::Object(c)
        })
        .collect();
    cs.sort_by(|a, b| {
        let n = |c: &Value| {
            c.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        n(a).cmp(&n(b))
    });
    t.insert("container".into(), Value::Array(cs));
    Value::Object(t)
}

/// The fields (`container.api.image`, `cpu`) that differ between two canonical tasks:
/// each forces a new revision.
fn revision_fields(have: &Value, want: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for k in ["family", "cpu", "memory", "execution_role", "task_role"] {
        if have.get(k) != want.get(k) {
            out.push(k.to_owned());
        }
    }
    let by_name = |t: &Value| -> BTreeMap<String, Map<String, Value>> {
        containers(t)
            .into_iter()
            .map(|c| {
                (
                    c.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    c,
                )
            })
            .collect()
    };
    let (h, w) = (by_name(have), by_name(want));
    for (name, wc) in &w {
        match h.get(name) {
            None => out.push(format!("container.{name} (added)")),
            Some(hc) => {
                let keys: BTreeSet<&String> = hc.keys().chain(wc.keys()).collect();
                for k in keys {
                    if hc.get(k) != wc.get(k) {
                        out.push(format!("container.{name}.{k}"));
                    }
                }
            }
        }
    }
    for name in h.keys().filter(|n| !w.contains_key(*n)) {
        out.push(format!("container.{name} (removed)"));
    }
    out
}

/// AWS's Fargate cpu/memory table.
fn fargate_memory_ok(cpu: i64, mem: i64) -> std::result::Result<(), String> {
    let (lo, hi, step) = match cpu {
        256 => {
            return if [512, 1024, 2048].contains(&mem) {
                Ok(())
            } else {
                Err("with cpu 256, memory is 512, 1024 or 2048".into())
            };
        }
        512 => (1024, 4096, 1024),
        1024 => (2048, 8192, 1024),
        2048 => (4096, 16384, 1024),
        4096 => (8192, 30720, 1024),
        8192 => (16384, 61440, 4096),
        16384 => (32768, 122880, 8192),
        _ => {
            return Err(format!(
                "task.cpu {cpu} is not a Fargate size: use 256, 512, 1024, 2048, 4096, 8192 or 16384"
            ));
        }
    };
    if (lo..=hi).contains(&mem) && (mem - lo) % step == 0 {
        Ok(())
    } else {
        Err(format!(
            "with cpu {cpu}, memory is {lo} to {hi} MiB in steps of {step}"
        ))
    }
}

fn check_task(t: &Map<String, Value>) -> std::result::Result<(), String> {
    if let (Some(cpu), Some(mem)) = (
        t.get("cpu").and_then(Value::as_i64),
        t.get("memory").and_then(Value::as_i64),
    ) {
        fargate_memory_ok(cpu, mem).map_err(|why| {
            format!("task.cpu {cpu} / task.memory {mem} is not a valid Fargate pair: {why}")
        })?;
    }
    if let Some(Value::String(r)) = t.get("execution_role")
        && r != "auto"
        && !(r.starts_with("arn:") && r.contains(":role/"))
    {
        return Err(format!(
            "task.execution_role \"{r}\" is neither \"auto\" nor a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
        ));
    }
    let cs = containers(&Value::Object(t.clone()));
    if cs.is_empty() {
        return Err("the task has no [[…task.container]]: add at least one".into());
    }
    let mut seen = BTreeSet::new();
    let mut needs_role = None;
    for c in &cs {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        if !name.is_empty() && !seen.insert(name.to_owned()) {
            return Err(format!(
                "two containers are named \"{name}\": names must be unique"
            ));
        }
        if let Some(p) = c.get("port").and_then(Value::as_i64)
            && !(1..=65535).contains(&p)
        {
            return Err(format!("container {name}: port {p} must be 1 to 65535"));
        }
        if let Some(Value::Object(hc)) = c.get("health_check") {
            for (k, lo, hi) in [
                ("interval", 5, 300),
                ("timeout", 2, 60),
                ("retries", 1, 10),
                ("start_period", 0, 300),
            ] {
                if let Some(v) = hc.get(k).and_then(Value::as_i64)
                    && !(lo..=hi).contains(&v)
                {
                    return Err(format!(
                        "container {name}: health_check.{k} {v} must be {lo} to {hi}"
                    ));
                }
            }
        }
        if c.get("secrets")
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
        {
            needs_role = Some(format!("container {name} reads secrets"));
        } else if c.contains_key("log_group") && needs_role.is_none() {
            needs_role = Some(format!("container {name} logs to CloudWatch"));
        }
    }
    if let Some(why) = needs_role
        && !t.contains_key("execution_role")
    {
        return Err(format!(
            "{why}, which ECS does with the task's execution role: set task.execution_role (\"auto\" writes a least-privilege one)"
        ));
    }
    Ok(())
}

/// The load balancer's container exists in the task and listens on its port (ecspresso's
/// `verify`).
/// The load balancer's container is one of the task's and listens on its port; also run
/// at load on the file's shapes (src/stack/checks.rs), references as `null`.
pub(crate) fn check_load_balancer(task: &Value, lb: &Value) -> std::result::Result<(), String> {
    let Some(name) = lb.get("container").and_then(Value::as_str) else {
        return Ok(());
    };
    let cs = containers(task);
    if cs
        .iter()
        .any(|c| !c.get("name").is_some_and(Value::is_string))
    {
        return Ok(()); // a name still unknown: checked again once it is known
    }
    let Some(c) = cs
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
    else {
        let names: Vec<&str> = cs
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .collect();
        return Err(format!(
            "load_balancer.container \"{name}\" is not a container of the task (its containers: {})",
            names.join(", ")
        ));
    };
    match (
        lb.get("port").and_then(Value::as_i64),
        c.get("port").and_then(Value::as_i64),
    ) {
        (Some(want), Some(have)) if want != have => Err(format!(
            "load_balancer.port {want} does not match container {name}'s port {have}: the target group would send traffic where nothing listens"
        )),
        (Some(want), None) => Err(format!(
            "container {name} declares no port, but load_balancer.port is {want}: add port = {want} to the container"
        )),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// The execution role written for `execution_role = "auto"`
// ---------------------------------------------------------------------------

/// The auto role's name: cluster and service, within IAM's 64 characters.
pub(crate) fn auto_role_name(cluster: &str, service: &str) -> String {
    let full = format!("{}-{service}-exec", short_name(cluster));
    if full.len() <= 64 {
        return full;
    }
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(full.as_bytes()));
    format!("{}-{}", &full[..55], &h[..8])
}

/// `arn:aws:ecs:r:a:cluster/NAME` → `NAME`; a name stays as it is.
fn short_name(s: &str) -> String {
    s.rsplit('/').next().unwrap_or(s).to_owned()
}

/// What the auto role needs, from a task in the stack's shape.
struct Needs {
    /// SSM parameter ARNs (and Secrets Manager ARNs) the containers read.
    parameters: BTreeSet<String>,
    log_groups: BTreeSet<String>,
    /// ECR repository ARNs the images come from.
    repositories: BTreeSet<String>,
}

fn needs_of(task: &Value, region: &str, account: &str) -> Needs {
    let mut n = Needs {
        parameters: BTreeSet::new(),
        log_groups: BTreeSet::new(),
        repositories: BTreeSet::new(),
    };
    for c in containers(task) {
        for v in string_map(c.get("secrets")).into_values() {
            // `"${…}"`: a plan preview's reference, shown as written.
            n.parameters
                .insert(if v.starts_with("arn:") || v.starts_with("${") {
                    v
                } else {
                    format!(
                        "arn:aws:ssm:{region}:{account}:parameter/{}",
                        v.trim_start_matches('/')
                    )
                });
        }
        if let Some(g) = c.get("log_group").and_then(Value::as_str) {
            n.log_groups.insert(g.to_owned());
        }
        if let Some(image) = c.get("image").and_then(Value::as_str)
            && let Some(repo) = ecr_repository(image)
        {
            n.repositories.insert(repo);
        }
    }
    n
}

/// `123456789012.dkr.ecr.eu-central-1.amazonaws.com/team/api:tag` →
/// `arn:aws:ecr:eu-central-1:123456789012:repository/team/api`.
fn ecr_repository(image: &str) -> Option<String> {
    let (host, path) = image.split_once('/')?;
    let mut parts = host.split('.');
    let account = parts.next()?;
    if parts.next()? != "dkr" || parts.next()? != "ecr" {
        return None;
    }
    let region = parts.next()?;
    let repo = path.split(['@', ':']).next()?;
    Some(format!("arn:aws:ecr:{region}:{account}:repository/{repo}"))
}

/// The policy document of the auto role.
fn auto_policy(needs: &Needs, kms_keys: &BTreeSet<String>, region: &str, account: &str) -> Value {
    let mut st = Vec::new();
    let ssm: Vec<&String> = needs
        .parameters
        .iter()
        .filter(|p| p.starts_with("arn:aws:ssm:"))
        .collect();
    if !ssm.is_empty() {
        st.push(json!({"Sid": "ReadSecrets", "Effect": "Allow", "Action": ["ssm:GetParameters"], "Resource": ssm}));
    }
    let sm: Vec<&String> = needs
        .parameters
        .iter()
        .filter(|p| p.starts_with("arn:aws:secretsmanager:"))
        .collect();
    if !sm.is_empty() {
        st.push(json!({"Sid": "ReadManagedSecrets", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": sm}));
    }
    // IAM matches key operations against key ARNs only: a key named by its alias is
    // granted through the `kms:ResourceAliases` condition instead.
    let (aliases, keys): (Vec<&String>, Vec<&String>) =
        kms_keys.iter().partition(|k| k.contains(":alias/"));
    if !keys.is_empty() {
        st.push(json!({"Sid": "DecryptSecrets", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": keys}));
    }
    if !aliases.is_empty() {
        let names: Vec<&str> = aliases
            .iter()
            .filter_map(|a| a.split_once(":alias/").map(|(_, n)| n))
            .map(|n| n.trim_start_matches('/'))
            .collect();
        let names: Vec<String> = names.iter().map(|n| format!("alias/{n}")).collect();
        st.push(
            json!({"Sid": "DecryptSecretsByAlias", "Effect": "Allow", "Action": ["kms:Decrypt"],
            "Resource": [format!("arn:aws:kms:{region}:{account}:key/*")],
            "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": names}}}),
        );
    }
    if !needs.log_groups.is_empty() {
        let groups: Vec<String> = needs
            .log_groups
            .iter()
            .map(|g| format!("arn:aws:logs:{region}:{account}:log-group:{g}:*"))
            .collect();
        st.push(json!({"Sid": "WriteLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": groups}));
    }
    if !needs.repositories.is_empty() {
        // GetAuthorizationToken has no resource-level permissions: `*` is the only form.
        st.push(json!({"Sid": "PullImagesToken", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]}));
        st.push(json!({"Sid": "PullImages", "Effect": "Allow", "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], "Resource": needs.repositories}));
    }
    canonical_policy(&json!({"Version": "2012-10-17", "Statement": st}))
}

/// The plan's line about the auto role (values still unknown say so).
fn auto_role_summary(desired: &BTreeMap<String, Desired>, task: &Value) -> String {
    let n = needs_of(task, "REGION", "ACCOUNT");
    let name = match (
        desired
            .get("cluster")
            .and_then(Desired::known)
            .and_then(Value::as_str),
        desired
            .get("name")
            .and_then(Desired::known)
            .and_then(Value::as_str),
    ) {
        (Some(c), Some(s)) => auto_role_name(c, s),
        _ => "(cluster)-(service)-exec".to_owned(),
    };
    let mut parts = Vec::new();
    if !n.parameters.is_empty() {
        parts.push(format!(
            "ssm:GetParameters on {} (+ kms:Decrypt on their customer keys)",
            n.parameters
                .iter()
                .map(|p| p.rsplit(":parameter").next().unwrap_or(p).to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !n.log_groups.is_empty() {
        parts.push(format!(
            "logs:CreateLogStream, logs:PutLogEvents on log group {}",
            n.log_groups.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if !n.repositories.is_empty() {
        parts.push(format!(
            "ECR pull from {} (ecr:GetAuthorizationToken on *)",
            n.repositories
                .iter()
                .map(|r| r.rsplit(":repository/").next().unwrap_or(r).to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if parts.is_empty() {
        parts.push("nothing (no secrets, no logs, no ECR image)".into());
    }
    format!(
        "execution role {name} (auto, trusted by ecs-tasks.amazonaws.com) allows: {}",
        parts.join("; ")
    )
}

/// The SSM name in a parameter ARN or name.
fn ssm_name(v: &str) -> String {
    match v.split_once(":parameter") {
        Some((_, name)) => name.to_owned(),
        None if v.starts_with('/') => v.to_owned(),
        None => format!("/{v}").trim_start_matches("/").to_owned(),
    }
}

/// The KMS key of each existing parameter (`name → key id`); absent names do not exist.
async fn parameter_keys(aws: &Aws, names: &[String]) -> Result<BTreeMap<String, Option<String>>> {
    let mut out = BTreeMap::new();
    for chunk in names.chunks(10) {
        let got = aws
            .ssm()
            .get_parameters()
            .set_names(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(aws_err)?;
        for p in got.parameters() {
            out.insert(p.name().unwrap_or_default().to_owned(), None);
        }
        // DescribeParameters tells the key of a SecureString (GetParameters does not).
        let filter = aws_sdk_ssm::types::ParameterStringFilter::builder()
            .key("Name")
            .option("Equals")
            .set_values(Some(chunk.to_vec()))
            .build()
            .map_err(|e| AwsError::local(e.to_string()))?;
        let described = aws
            .ssm()
            .describe_parameters()
            .parameter_filters(filter)
            .send()
            .await
            .map_err(aws_err)?;
        for p in described.parameters() {
            if let Some(name) = p.name()
                && out.contains_key(name)
            {
                out.insert(name.to_owned(), p.key_id().map(str::to_owned));
            }
        }
    }
    Ok(out)
}

/// Customer KMS keys of the referenced SecureStrings, as ARNs (the AWS-managed
/// `alias/aws/ssm` needs no grant).
async fn kms_keys(
    aws: &Aws,
    needs: &Needs,
    region: &str,
    account: &str,
) -> Result<BTreeSet<String>> {
    let names: Vec<String> = needs
        .parameters
        .iter()
        .filter(|p| p.starts_with("arn:aws:ssm:"))
        .map(|p| ssm_name(p))
        .collect();
    if names.is_empty() {
        return Ok(BTreeSet::new());
    }
    Ok(parameter_keys(aws, &names)
        .await?
        .into_values()
        .flatten()
        .filter(|k| k != "alias/aws/ssm" && !k.ends_with(":alias/aws/ssm"))
        .map(|k| {
            if k.starts_with("arn:") {
                k
            } else if let Some(alias) = k.strip_prefix("alias/") {
                format!("arn:aws:kms:{region}:{account}:alias/{alias}")
            } else {
                format!("arn:aws:kms:{region}:{account}:key/{k}")
            }
        })
        .collect())
}

fn region_of(aws: &Aws) -> String {
    aws.config
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into())
}

/// The policy the auto role must hold for `task` (the stack's shape, values resolved);
/// `None` when the task needs nothing (a public image, no secrets, no logs): IAM refuses a
/// policy without statements, and the role then only lets ECS assume it.
async fn expected_auto_policy(
    aws: &Aws,
    task: &Value,
    region: &str,
    account: &str,
) -> Result<Option<Value>> {
    let needs = needs_of(task, region, account);
    let keys = kms_keys(aws, &needs, region, account).await?;
    let policy = auto_policy(&needs, &keys, region, account);
    let empty = policy["Statement"].as_array().is_none_or(Vec::is_empty);
    Ok((!empty).then_some(policy))
}

// ---------------------------------------------------------------------------
// Registering and reading task definitions
// ---------------------------------------------------------------------------

/// Writes the auto role when asked for, then registers the task definition, or reuses the
/// family's latest revision when it already says exactly this. Returns its ARN. Also
/// used by the migrations step, which runs the new revision before the service moves.
pub(crate) async fn register_task(cx: &Cx<'_>, input: &Resolved) -> Result<String> {
    let task = input
        .attrs
        .get("task")
        .ok_or_else(|| AwsError::local("ecs_service: task is required"))?;
    let cluster = input.str("cluster").unwrap_or_default();
    let service = input.str("name").unwrap_or_default();
    let mut task = task.clone();
    if task.get("execution_role").and_then(Value::as_str) == Some("auto") {
        let account = cx.aws.caller().await?.account;
        let region = region_of(cx.aws);
        let policy = expected_auto_policy(cx.aws, &task, &region, &account).await?;
        let name = auto_role_name(cluster, service);
        let arn = put_role(
            cx,
            &RoleSpec {
                name: &name,
                services: &["ecs-tasks.amazonaws.com".to_owned()],
                managed_policy_arns: &[],
                inline_policy: policy,
                tags: &BTreeMap::from([(ADDRESS_TAG.to_owned(), cx.address.to_owned())]),
            },
        )
        .await?;
        task["execution_role"] = json!(arn);
    }
    let family = task
        .get("family")
        .and_then(Value::as_str)
        .ok_or_else(|| AwsError::local("ecs_service: task.family is required"))?
        .to_owned();
    let want = canonical_task(&task);
    // The latest revision, when it is already this task (a rollback undone, a migration task).
    if let Ok(latest) = describe_task_definition(cx.aws, &family).await
        && latest.status() == Some(&TaskDefinitionStatus::Active)
        && canonical_task(&raw_task_value(&latest)) == want
        && let Some(arn) = latest.task_definition_arn()
    {
        return Ok(arn.to_owned());
    }
    let region = region_of(cx.aws);
    let defs = containers(&task)
        .iter()
        .map(|c| container_definition(c, &region))
        .collect::<Result<Vec<_>>>()?;
    let out = ecs(cx.aws)
        .register_task_definition()
        .family(&family)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu(task.get("cpu").map(scalar).unwrap_or_default())
        .memory(task.get("memory").map(scalar).unwrap_or_default())
        .set_execution_role_arn(
            task.get("execution_role")
                .and_then(Value::as_str)
                .map(str::to_owned),
        )
        .set_task_role_arn(
            task.get("task_role")
                .and_then(Value::as_str)
                .map(str::to_owned),
        )
        .set_container_definitions(Some(defs))
        .tags(Tag::builder().key(ADDRESS_TAG).value(cx.address).build())
        .send()
        .await
        .map_err(aws_err)?;
    let arn = out
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .ok_or_else(|| AwsError::local(format!("RegisterTaskDefinition {family} returned no ARN")))?
        .to_owned();
    cx.note(format!("registered task definition {}", short_name(&arn)));
    Ok(arn)
}

fn scalar(v: &Value) -> String {
    crate::stack::expr::scalar_text(v)
}

fn i32_of(c: &Map<String, Value>, k: &str) -> Option<i32> {
    c.get(k)
        .and_then(Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
}

fn container_definition(c: &Map<String, Value>, region: &str) -> Result<ContainerDefinition> {
    let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
    let strings = |k: &str| -> Option<Vec<String>> {
        c.get(k).and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
    };
    let build =
        |e: aws_sdk_ecs::error::BuildError| AwsError::local(format!("container {name}: {e}"));
    let mut d = ContainerDefinition::builder()
        .name(name)
        .set_image(c.get("image").and_then(Value::as_str).map(str::to_owned))
        .essential(c.get("essential").and_then(Value::as_bool).unwrap_or(true))
        .set_command(strings("command"))
        .set_cpu(i32_of(c, "cpu"))
        .set_memory(i32_of(c, "memory"))
        .set_memory_reservation(i32_of(c, "memory_reservation"));
    if let Some(p) = i32_of(c, "port") {
        d = d.port_mappings(
            PortMapping::builder()
                .container_port(p)
                .host_port(p)
                .protocol(TransportProtocol::Tcp)
                .build(),
        );
    }
    for (k, v) in string_map(c.get("environment")) {
        d = d.environment(KeyValuePair::builder().name(k).value(v).build());
    }
    for (k, v) in string_map(c.get("secrets")) {
        d = d.secrets(
            Secret::builder()
                .name(k)
                .value_from(v)
                .build()
                .map_err(build)?,
        );
    }
    if let Some(Value::Object(hc)) = c.get("health_check") {
        let cmd: Vec<String> = hc
            .get("command")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        d = d.health_check(
            HealthCheck::builder()
                .set_command(Some(cmd))
                .interval(i32_of(hc, "interval").unwrap_or(30))
                .timeout(i32_of(hc, "timeout").unwrap_or(5))
                .retries(i32_of(hc, "retries").unwrap_or(3))
                .start_period(i32_of(hc, "start_period").unwrap_or(0))
                .build()
                .map_err(build)?,
        );
    }
    if let Some(group) = c.get("log_group").and_then(Value::as_str) {
        let prefix = c
            .get("log_stream_prefix")
            .and_then(Value::as_str)
            .unwrap_or(name);
        d = d.log_configuration(
            LogConfiguration::builder()
                .log_driver(LogDriver::Awslogs)
                .options("awslogs-group", group)
                .options("awslogs-region", region)
                .options("awslogs-stream-prefix", prefix)
                .build()
                .map_err(build)?,
        );
    }
    Ok(d.build())
}

/// A task definition as AWS stores it, in the stack's shape (execution role as its ARN).
fn raw_task_value(td: &TaskDefinition) -> Value {
    let mut t = Map::new();
    t.insert("family".into(), json!(td.family().unwrap_or_default()));
    for (k, v) in [("cpu", td.cpu()), ("memory", td.memory())] {
        if let Some(v) = v {
            t.insert(k.into(), v.parse::<i64>().map_or(json!(v), |n| json!(n)));
        }
    }
    if let Some(r) = td.execution_role_arn() {
        t.insert("execution_role".into(), json!(r));
    }
    if let Some(r) = td.task_role_arn() {
        t.insert("task_role".into(), json!(r));
    }
    let cs: Vec<Value> = td
        .container_definitions()
        .iter()
        .map(|c| {
            let mut m = Map::new();
            m.insert("name".into(), json!(c.name().unwrap_or_default()));
            m.insert("image".into(), json!(c.image().unwrap_or_default()));
            // Under awsvpc the host port is the container port: only the latter is ours.
            if let Some(p) = c.port_mappings().first().and_then(|p| p.container_port()) {
                m.insert("port".into(), json!(p));
            }
            if !c.command().is_empty() {
                m.insert("command".into(), json!(c.command()));
            }
            let env: BTreeMap<String, String> = c
                .environment()
                .iter()
                .filter_map(|e| {
                    Some((
                        e.name()?.to_owned(),
                        e.value().unwrap_or_default().to_owned(),
                    ))
                })
                .collect();
            if !env.is_empty() {
                m.insert("environment".into(), json!(env));
            }
            let secrets: BTreeMap<String, String> = c
                .secrets()
                .iter()
                .map(|s| (s.name().to_owned(), s.value_from().to_owned()))
                .collect();
            if !secrets.is_empty() {
                m.insert("secrets".into(), json!(secrets));
            }
            if let Some(hc) = c.health_check() {
                m.insert(
                    "health_check".into(),
                    json!({
                        "command": hc.command(),
                        "interval": hc.interval().unwrap_or(30),
                        "timeout": hc.timeout().unwrap_or(5),
                        "retries": hc.retries().unwrap_or(3),
                        "start_period": hc.start_period().unwrap_or(0),
                    }),
                );
            }
            if let Some(lc) = c.log_configuration()
                && lc.log_driver() == &LogDriver::Awslogs
                && let Some(opts) = lc.options()
            {
                if let Some(g) = opts.get("awslogs-group") {
                    m.insert("log_group".into(), json!(g));
                }
                if let Some(p) = opts.get("awslogs-stream-prefix") {
                    m.insert("log_stream_prefix".into(), json!(p));
                }
            }
            m.insert("essential".into(), json!(c.essential().unwrap_or(true)));
            if let Some(cpu) = Some(c.cpu()).filter(|n| *n != 0) {
                m.insert("cpu".into(), json!(cpu));
            }
            if let Some(v) = c.memory() {
                m.insert("memory".into(), json!(v));
            }
            if let Some(v) = c.memory_reservation() {
                m.insert("memory_reservation".into(), json!(v));
            }
            Value::Object(m)
        })
        .collect();
    t.insert("container".into(), Value::Array(cs));
    Value::Object(t)
}

/// The live task as the stack would write it: the auto role reads back as `"auto"` while
/// it is the role named for this service and its policy is exactly what the task needs.
async fn task_value(cx: &Cx<'_>, service: &Service, td: &TaskDefinition) -> Result<Value> {
    let mut t = raw_task_value(td);
    let cluster = service.cluster_arn().unwrap_or_default();
    let name = service.service_name().unwrap_or_default();
    let auto = auto_role_name(cluster, name);
    if let Some(arn) = td.execution_role_arn()
        && arn.ends_with(&format!(":role/{auto}"))
    {
        let (region, account) = arn_region_account(service.service_arn().unwrap_or_default());
        let want = expected_auto_policy(cx.aws, &t, &region, &account).await?;
        let have = read_role(cx, &auto).await?.and_then(|r| r.inline_policy);
        t["execution_role"] = if have.as_ref().map(canonical_policy) == want {
            json!("auto")
        } else {
            json!(format!(
                "auto (role {auto}: its policy was changed outside Stackwright)"
            ))
        };
    }
    Ok(t)
}

fn arn_region_account(arn: &str) -> (String, String) {
    let parts: Vec<&str> = arn.split(':').collect();
    (
        parts.get(3).copied().unwrap_or_default().to_owned(),
        parts.get(4).copied().unwrap_or_default().to_owned(),
    )
}

pub(crate) async fn describe_task_definition(aws: &Aws, id: &str) -> Result<TaskDefinition> {
    let out = ecs(aws)
        .describe_task_definition()
        .task_definition(id)
        .send()
        .await
        .map_err(aws_err)?;
    out.task_definition()
        .cloned()
        .ok_or_else(|| AwsError::local(format!("task definition {id} not found")))
}

// ---------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------

/// `arn:aws:ecs:r:a:service/CLUSTER/NAME` (or `CLUSTER/NAME`) → (cluster, name).
fn cluster_and_name(id: &str) -> (String, String) {
    let tail = id.rsplit(":service/").next().unwrap_or(id);
    match tail.split_once('/') {
        Some((c, n)) => (c.to_owned(), n.to_owned()),
        None => ("default".to_owned(), tail.to_owned()),
    }
}

/// The service, `None` when absent or deleted (INACTIVE).
pub(crate) async fn describe_service(aws: &Aws, id: &str) -> Result<Option<Service>> {
    let (cluster, name) = cluster_and_name(id);
    let out = match ecs(aws)
        .describe_services()
        .cluster(&cluster)
        .services(&name)
        .include(ServiceField::Tags)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => match aws_err(e) {
            e if e.is("ClusterNotFoundException") => return Ok(None),
            e => return Err(e),
        },
    };
    Ok(out
        .services()
        .iter()
        .find(|s| s.status() != Some("INACTIVE"))
        .cloned())
}

fn user_tags(t: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    t.iter()
        .filter(|(k, _)| !k.starts_with("stackwright:") && !k.starts_with("aws:"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn live_of(s: &Service, td: Option<&TaskDefinition>, task: Option<Value>) -> Live {
    let arn = s.service_arn().unwrap_or_default().to_owned();
    let mut a = Attrs::new();
    a.insert("name".into(), json!(s.service_name().unwrap_or_default()));
    a.insert(
        "cluster".into(),
        json!(short_name(s.cluster_arn().unwrap_or_default())),
    );
    a.insert("desired_count".into(), json!(s.desired_count()));
    if let Some(l) = s.launch_type() {
        a.insert("launch_type".into(), json!(l.as_str()));
    }
    if let Some(p) = s.platform_version() {
        a.insert("platform_version".into(), json!(p));
    }
    if let Some(vpc) = s
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration())
    {
        a.insert("subnets".into(), json!(vpc.subnets()));
        a.insert("security_groups".into(), json!(vpc.security_groups()));
        a.insert(
            "assign_public_ip".into(),
            json!(vpc.assign_public_ip() == Some(&AssignPublicIp::Enabled)),
        );
    }
    if let Some(g) = s.health_check_grace_period_seconds() {
        a.insert("health_check_grace_period".into(), json!(g));
    }
    if let Some(d) = s.deployment_configuration() {
        let cb = d.deployment_circuit_breaker();
        a.insert(
            "deployment".into(),
            json!({
                "minimum_healthy_percent": d.minimum_healthy_percent().unwrap_or(100),
                "maximum_percent": d.maximum_percent().unwrap_or(200),
                "circuit_breaker": {
                    "enable": cb.is_some_and(|c| c.enable()),
                    "rollback": cb.is_some_and(|c| c.rollback()),
                },
            }),
        );
    }
    if let Some(lb) = s.load_balancers().first() {
        a.insert(
            "load_balancer".into(),
            json!({
                "target_group": lb.target_group_arn().unwrap_or_default(),
                "container": lb.container_name().unwrap_or_default(),
                "port": lb.container_port().unwrap_or_default(),
            }),
        );
    }
    if let Some(t) = task {
        a.insert("task".into(), t);
    }
    a.insert("tags".into(), tags_value(&user_tags(&tags_of(s.tags()))));
    a.insert("arn".into(), json!(arn));
    if let Some(td) = s.task_definition() {
        a.insert("task_definition_arn".into(), json!(td));
    }
    if let Some(td) = td {
        a.insert("revision".into(), json!(td.revision()));
    }
    Live {
        id: arn,
        attrs: a,
        private: None,
    }
}

async fn read_required(p: &EcsService, cx: &Cx<'_>, id: &str) -> Result<Live> {
    p.read(cx, id).await?.ok_or_else(|| {
        AwsError::local(format!(
            "ecs_service {id} was not found right after it was written"
        ))
    })
}

fn int(input: &Resolved, k: &str) -> Option<i32> {
    input.int(k).and_then(|n| i32::try_from(n).ok())
}

fn network(input: &Resolved) -> Result<NetworkConfiguration> {
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(input.string_list("subnets")))
        .set_security_groups(
            input
                .attrs
                .get("security_groups")
                .map(|_| input.string_list("security_groups")),
        )
        .assign_public_ip(if input.bool("assign_public_ip").unwrap_or(false) {
            AssignPublicIp::Enabled
        } else {
            AssignPublicIp::Disabled
        })
        .build()
        .map_err(|e| AwsError::local(format!("ecs_service network: {e}")))?;
    Ok(NetworkConfiguration::builder()
        .awsvpc_configuration(vpc)
        .build())
}

fn load_balancers(input: &Resolved) -> Option<Vec<LoadBalancer>> {
    let lb = input.attrs.get("load_balancer")?.as_object()?;
    Some(vec![
        LoadBalancer::builder()
            .set_target_group_arn(
                lb.get("target_group")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )
            .set_container_name(
                lb.get("container")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )
            .set_container_port(i32_of(lb, "port"))
            .build(),
    ])
}

fn deployment_configuration(input: &Resolved) -> Result<Option<DeploymentConfiguration>> {
    let Some(d) = input.attrs.get("deployment") else {
        return Ok(None);
    };
    let d = EcsService.canonical("deployment", d);
    let d = d.as_object().cloned().unwrap_or_default();
    let cb = d.get("circuit_breaker").cloned().unwrap_or(json!({}));
    Ok(Some(
        DeploymentConfiguration::builder()
            .set_minimum_healthy_percent(i32_of(&d, "minimum_healthy_percent"))
            .set_maximum_percent(i32_of(&d, "maximum_percent"))
            .deployment_circuit_breaker(
                DeploymentCircuitBreaker::builder()
                    .enable(cb.get("enable").and_then(Value::as_bool).unwrap_or(false))
                    .rollback(cb.get("rollback").and_then(Value::as_bool).unwrap_or(false))
                    .build(),
            )
            .build(),
    ))
}

fn primary_deployment(s: &Service) -> Option<String> {
    s.deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.id())
        .map(str::to_owned)
}

/// Waits until the service is steady on `task_definition`: the deployment `deployment`
/// (when one was started) COMPLETED, no other deployment left, running = desired. A FAILED
/// deployment is an error with ECS's reason, saying whether ECS rolled the service back.
pub(crate) async fn wait_steady(
    cx: &Cx<'_>,
    id: &str,
    deployment: Option<&str>,
    task_definition: &str,
) -> Result<()> {
    let aws = cx.aws;
    super::wait_for(
        cx,
        &format!("service {} to be steady", short_name(id)),
        || async move {
            let s = describe_service(aws, id).await?.ok_or_else(|| {
                AwsError::local(format!("service {id} disappeared while deploying"))
            })?;
            // Without its id, ours is the deployment of our revision: after a circuit-
            // breaker rollback the PRIMARY one is the old revision's.
            let ours = match deployment {
                Some(want) => s.deployments().iter().find(|d| d.id() == Some(want)),
                None => s
                    .deployments()
                    .iter()
                    .find(|d| d.task_definition() == Some(task_definition))
                    .or_else(|| {
                        s.deployments()
                            .iter()
                            .find(|d| d.status() == Some("PRIMARY"))
                    }),
            };
            let rev = |td: &str| short_name(td);
            match ours {
                Some(d) if d.rollout_state().map(|r| r.as_str()) == Some("FAILED") => {
                    let reason = d
                        .rollout_state_reason()
                        .unwrap_or("no reason given")
                        .to_owned();
                    let rolled_back = s.task_definition().is_some_and(|td| td != task_definition);
                    let events: Vec<&str> = s
                        .events()
                        .iter()
                        .take(3)
                        .filter_map(|e| e.message())
                        .collect();
                    Err(AwsError::local(format!(
                        "the ECS deployment of {} failed: {reason}{}{}",
                        rev(task_definition),
                        if rolled_back {
                            format!(
                                "; ECS rolled the service back to {} (circuit breaker)",
                                rev(s.task_definition().unwrap_or_default())
                            )
                        } else {
                            String::new()
                        },
                        if events.is_empty() {
                            String::new()
                        } else {
                            format!("\n  ECS events: {}", events.join(" | "))
                        }
                    )))
                }
                None if deployment.is_some()
                    && s.task_definition().is_some_and(|td| td != task_definition) =>
                {
                    Err(AwsError::local(format!(
                        "ECS rolled the service back to {} before {} completed",
                        rev(s.task_definition().unwrap_or_default()),
                        rev(task_definition)
                    )))
                }
                d => {
                    let state = d
                        .and_then(|d| d.rollout_state())
                        .map(|r| r.as_str().to_owned())
                        .unwrap_or_else(|| "no deployment".into());
                    let steady = state == "COMPLETED"
                        && s.deployments().len() == 1
                        && s.running_count() == s.desired_count();
                    Ok((!steady).then(|| {
                        format!(
                            "rollout {state}, {}/{} running, {} deployment(s)",
                            s.running_count(),
                            s.desired_count(),
                            s.deployments().len()
                        )
                    }))
                }
            }
        },
    )
    .await
}

/// Private state: the revisions this resource deployed, newest last.
fn revisions_private(prior: Option<&Value>, newest: &str) -> Value {
    let mut revs: Vec<String> = prior
        .and_then(|p| p.get("revisions"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if revs.last().map(String::as_str) != Some(newest) {
        revs.retain(|r| r != newest);
        revs.push(newest.to_owned());
    }
    let skip = revs.len().saturating_sub(KEPT_REVISIONS);
    json!({ "revisions": revs[skip..] })
}

/// After the service is gone: every ACTIVE revision of its family deregistered (they
/// belong to this service) and the auto role deleted.
async fn cleanup(cx: &Cx<'_>, prior: &Attrs, service: Option<&Service>) -> Result<()> {
    if let Some(family) = prior
        .get("task")
        .and_then(|t| t.get("family"))
        .and_then(Value::as_str)
    {
        let mut pages = ecs(cx.aws)
            .list_task_definitions()
            .family_prefix(family)
            .status(TaskDefinitionStatus::Active)
            .into_paginator()
            .send();
        let mut arns = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws_err)?;
            arns.extend(
                page.task_definition_arns()
                    .iter()
                    .filter(|a| {
                        a.rsplit('/')
                            .next()
                            .and_then(|t| t.rsplit_once(':'))
                            .map(|(f, _)| f)
                            == Some(family)
                    })
                    .cloned(),
            );
        }
        for arn in arns {
            ecs(cx.aws)
                .deregister_task_definition()
                .task_definition(&arn)
                .send()
                .await
                .map_err(aws_err)?;
        }
    }
    let cluster = service
        .and_then(|s| s.cluster_arn())
        .map(str::to_owned)
        .or_else(|| {
            prior
                .get("cluster")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    let name = prior.get("name").and_then(Value::as_str);
    if let (Some(c), Some(n)) = (cluster, name)
        && prior
            .get("task")
            .and_then(|t| t.get("execution_role"))
            .and_then(Value::as_str)
            .is_some_and(|r| r.starts_with("auto"))
    {
        delete_role(cx, &auto_role_name(&c, n)).await?;
    }
    Ok(())
}

/// What `stackwright rollback` needs: the service's revisions and a way to move it.
pub(crate) fn kept_revisions(private: Option<&Value>) -> Vec<String> {
    private
        .and_then(|p| p.get("revisions"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Moves the service to `task_definition` and waits until it is steady there.
pub(crate) async fn deploy_revision(cx: &Cx<'_>, id: &str, task_definition: &str) -> Result<()> {
    let (cluster, _) = cluster_and_name(id);
    let out = ecs(cx.aws)
        .update_service()
        .cluster(&cluster)
        .service(id)
        .task_definition(task_definition)
        .send()
        .await
        .map_err(aws_err)?;
    let deployment = out.service().and_then(primary_deployment);
    wait_steady(cx, id, deployment.as_deref(), task_definition).await
}

/// How a one-off task ended.
pub(crate) struct TaskRun {
    pub task_arn: String,
    pub task_definition: String,
    pub container: String,
    /// `None` when the container never ran (image pull, resources); `reason` says why.
    pub exit_code: Option<i32>,
    pub reason: String,
}

/// Runs the service's task once with `command` in place of `container`'s (default: the
/// load balancer's container, else the first), on the service's cluster and network, and
/// waits until it stops. Registers the revision first, or reuses the family's latest when
/// it is already this task, so the service update that follows deploys that same revision.
pub(crate) async fn run_once(
    cx: &Cx<'_>,
    input: &Resolved,
    container: Option<&str>,
    command: &[String],
) -> Result<TaskRun> {
    let cluster = input
        .str("cluster")
        .ok_or_else(|| AwsError::local("ecs_service: cluster is required"))?
        .to_owned();
    let task_definition = register_task(cx, input).await?;
    let task = input.attrs.get("task").cloned().unwrap_or_default();
    let container = match container {
        Some(c) => c.to_owned(),
        None => input
            .attrs
            .get("load_balancer")
            .and_then(|lb| lb.get("container"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                containers(&task)
                    .first()
                    .and_then(|c| c.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .ok_or_else(|| AwsError::local("the service's task has no container"))?,
    };
    let overrides = TaskOverride::builder()
        .container_overrides(
            ContainerOverride::builder()
                .name(&container)
                .set_command(Some(command.to_vec()))
                .build(),
        )
        .build();
    let out = ecs(cx.aws)
        .run_task()
        .cluster(&cluster)
        .task_definition(&task_definition)
        .launch_type(LaunchType::Fargate)
        .platform_version(input.str("platform_version").unwrap_or("LATEST"))
        .network_configuration(network(input)?)
        .overrides(overrides)
        .count(1)
        .started_by("stackwright-migrations")
        .send()
        .await
        .map_err(aws_err)?;
    let Some(task_arn) = out
        .tasks()
        .first()
        .and_then(|t| t.task_arn())
        .map(str::to_owned)
    else {
        let why = out
            .failures()
            .iter()
            .map(|f| {
                format!(
                    "{} ({})",
                    f.reason().unwrap_or("unknown"),
                    f.detail().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(AwsError::local(format!(
            "RunTask of {} started no task: {why}",
            short_name(&task_definition)
        )));
    };
    cx.note(format!(
        "started task {} of {} (container {container})",
        short_name(&task_arn),
        short_name(&task_definition)
    ));
    let stopped = std::sync::Mutex::new(None);
    super::wait_for(cx, &format!("task {}", short_name(&task_arn)), || async {
        let out = ecs(cx.aws)
            .describe_tasks()
            .cluster(&cluster)
            .tasks(&task_arn)
            .send()
            .await
            .map_err(aws_err)?;
        let Some(t) = out.tasks().first() else {
            return Ok(Some("not found yet".to_owned()));
        };
        let status = t.last_status().unwrap_or("PENDING").to_owned();
        if status != "STOPPED" {
            return Ok(Some(status));
        }
        *stopped.lock().expect("task lock") = Some(t.clone());
        Ok(None)
    })
    .await?;
    let t = stopped
        .into_inner()
        .expect("task lock")
        .expect("stopped task recorded");
    let c = t.containers().iter().find(|c| c.name() == Some(&container));
    let reason = [
        t.stop_code().map(|c| c.as_str().to_owned()),
        t.stopped_reason().map(str::to_owned),
        c.and_then(|c| c.reason()).map(str::to_owned),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(": ");
    Ok(TaskRun {
        task_arn,
        task_definition,
        exit_code: c.and_then(|c| c.exit_code()),
        container,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(containers: Value) -> Value {
        json!({"family": "api", "cpu": 256, "memory": 512, "container": containers})
    }

    #[test]
    fn aws_defaults_and_empty_lists_compare_equal_to_what_the_stack_leaves_out() {
        let stack = task(json!([{"name": "api", "image": "app:1", "port": 8000,
            "health_check": {"command": ["CMD", "true"]}, "log_group": "/ecs/x"}]));
        let aws = json!({"family": "api", "cpu": "256", "memory": "512", "container": [
            {"name": "api", "image": "app:1", "port": 8000, "essential": true, "cpu": 0,
             "environment": {}, "command": [],
             "health_check": {"command": ["CMD", "true"], "interval": 30, "timeout": 5, "retries": 3, "start_period": 0},
             "log_group": "/ecs/x", "log_stream_prefix": "api"}]});
        assert_eq!(canonical_task(&stack), canonical_task(&aws));
    }

    #[test]
    fn containers_compare_by_name_whatever_their_order() {
        let a = task(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]));
        let b = task(json!([{"name": "b", "image": "y"}, {"name": "a", "image": "x"}]));
        assert_eq!(canonical_task(&a), canonical_task(&b));
        let c = task(json!([{"name": "b", "image": "z"}, {"name": "a", "image": "x"}]));
        assert_eq!(
            revision_fields(&canonical_task(&a), &canonical_task(&c)),
            ["container.b.image"]
        );
    }

    #[test]
    fn fargate_pairs_follow_awss_table() {
        assert!(fargate_memory_ok(256, 512).is_ok());
        assert!(fargate_memory_ok(256, 4096).is_err());
        assert!(fargate_memory_ok(512, 3072).is_ok());
        assert!(fargate_memory_ok(1024, 2500).is_err());
        assert!(fargate_memory_ok(300, 512).is_err());
        assert!(fargate_memory_ok(16384, 32768 + 8192).is_ok());
    }

    #[test]
    fn the_load_balancers_container_and_port_must_match_the_task() {
        let t = task(json!([{"name": "api", "image": "x", "port": 8000}]));
        assert!(check_load_balancer(&t, &json!({"container": "api", "port": 8000})).is_ok());
        let e = check_load_balancer(&t, &json!({"container": "web", "port": 8000})).unwrap_err();
        assert!(e.contains("\"web\" is not a container"), "{e}");
        let e = check_load_balancer(&t, &json!({"container": "api", "port": 5000})).unwrap_err();
        assert!(e.contains("5000 does not match"), "{e}");
    }

    #[test]
    fn secrets_and_logs_need_an_execution_role() {
        let t = task(json!([{"name": "api", "image": "x", "secrets": {"K": "/p"}}]));
        let e = check_task(t.as_object().unwrap()).unwrap_err();
        assert!(e.contains("execution_role"), "{e}");
        let mut t = t;
        t["execution_role"] = json!("auto");
        assert!(check_task(t.as_object().unwrap()).is_ok());
        t["execution_role"] = json!("my-role");
        assert!(check_task(t.as_object().unwrap()).is_err());
    }

    #[test]
    fn the_auto_policy_grants_exactly_what_the_task_references() {
        let t = task(json!([{"name": "api",
            "image": "123456789012.dkr.ecr.eu-central-1.amazonaws.com/team/api:v2",
            "secrets": {"SECRET_KEY": "arn:aws:ssm:eu-central-1:123456789012:parameter/app/key", "DB": "/app/db"},
            "log_group": "/ecs/app"}]));
        let n = needs_of(&t, "eu-central-1", "123456789012");
        let keys = BTreeSet::from([
            "arn:aws:kms:eu-central-1:123456789012:key/k1".to_owned(),
            "arn:aws:kms:eu-central-1:123456789012:alias/app".to_owned(),
        ]);
        let p = auto_policy(&n, &keys, "eu-central-1", "123456789012");
        let st = p["Statement"].as_array().unwrap();
        let res = |sid: &str| st.iter().find(|s| s["Sid"] == sid).unwrap()["Resource"].clone();
        let by_alias = st
            .iter()
            .find(|s| s["Sid"] == "DecryptSecretsByAlias")
            .unwrap();
        assert_eq!(
            by_alias["Condition"],
            json!({"ForAnyValue:StringEquals": {"kms:ResourceAliases": ["alias/app"]}})
        );
        assert_eq!(
            by_alias["Resource"],
            json!(["arn:aws:kms:eu-central-1:123456789012:key/*"])
        );
        assert_eq!(
            res("ReadSecrets"),
            json!([
                "arn:aws:ssm:eu-central-1:123456789012:parameter/app/db",
                "arn:aws:ssm:eu-central-1:123456789012:parameter/app/key"
            ])
        );
        assert_eq!(
            res("DecryptSecrets"),
            json!(["arn:aws:kms:eu-central-1:123456789012:key/k1"])
        );
        assert_eq!(
            res("WriteLogs"),
            json!(["arn:aws:logs:eu-central-1:123456789012:log-group:/ecs/app:*"])
        );
        assert_eq!(
            res("PullImages"),
            json!(["arn:aws:ecr:eu-central-1:123456789012:repository/team/api"])
        );
        // The only `*`: the token call, which has no resource-level permission.
        let stars: Vec<&Value> = st
            .iter()
            .filter(|s| s["Resource"] == json!(["*"]))
            .collect();
        assert_eq!(stars.len(), 1);
        assert_eq!(stars[0]["Action"], json!(["ecr:GetAuthorizationToken"]));
        // A public image needs no ECR statement at all.
        let public = task(json!([{"name": "api", "image": "nginx:1.27"}]));
        let p = auto_policy(&needs_of(&public, "r", "a"), &BTreeSet::new(), "r", "a");
        assert_eq!(p["Statement"], json!([]));
    }

    #[test]
    fn role_names_fit_iam() {
        assert_eq!(
            auto_role_name("arn:aws:ecs:r:1:cluster/web", "api"),
            "web-api-exec"
        );
        let long = auto_role_name(&"c".repeat(60), &"s".repeat(60));
        assert_eq!(long.len(), 64);
    }
}
