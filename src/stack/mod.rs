//! The stack format: one TOML file describing a stack's resources, variables, environments
//! and migrations (see docs/stack-format.md).
//!
//! Loading is two-staged, as in ripgrep's flags: [`load`] parses and validates with no side
//! effects (no AWS call, no file written) into a [`Stack`] whose values are [`Expr`]s with
//! only resource references left; planning then resolves those against AWS. Every error
//! carries `file:line:column` from TOML spans and a hint.

mod checks;
pub mod expr;
mod parse;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Diagnostic, Location};
pub use expr::{Expr, Part, Ref};

/// A validated stack for one environment.
#[derive(Debug)]
pub struct Stack {
    pub path: PathBuf,
    pub source: String,
    pub name: String,
    pub region: Option<String>,
    pub environments: Vec<String>,
    pub env: Option<String>,
    /// `[vars]`, overlaid by `[env.<env>.vars]`, overlaid by `--var`.
    pub vars: BTreeMap<String, Value>,
    pub resources: BTreeMap<String, Resource>,
    pub data: BTreeMap<String, Resource>,
    pub migrations: Option<MigrationsDecl>,
    /// `[[import]]` entries: existing AWS resources to adopt, reviewed through plan.
    pub imports: Vec<ImportDecl>,
    /// `[output.NAME]`: values computed after apply, kept in state, read by `output`.
    pub outputs: BTreeMap<String, OutputDecl>,
    /// sha256 over the file, the environment, the variables and every `from_file` it read.
    pub digest: String,
    /// Accepted but worth saying (a secret written in plain text), shown by every command
    /// that loads the stack.
    pub warnings: Vec<Diagnostic>,
    /// The AWS account the chosen environment must run in (`[env.E] account_id`, else
    /// `[stack] account_id`), checked through STS before anything is read.
    pub account_id: Option<String>,
    /// The AWS profile for the chosen environment, used when AWS_PROFILE is not set.
    pub profile: Option<String>,
    /// `[backend]`: where the state lives when not in the local file.
    pub backend: Option<S3BackendDecl>,
    /// `[env.E.rules]` of the chosen environment: deploy windows, confirmation.
    pub rules: crate::rules::Rules,
    /// Where the chosen environment's `[env.E.rules]` is written, for messages.
    pub rules_span: Option<Range<usize>>,
    /// `[moved]`: renames of resources, carried out in state by plan and apply.
    pub moves: Vec<MoveDecl>,
}

/// `[moved] "s3_bucket.old" = "s3_bucket.new"`: the resource at `from` in state is the
/// one the stack now declares as `to` (same kind), so it is renamed, not recreated.
#[derive(Debug, Clone)]
pub struct MoveDecl {
    pub from: String,
    pub to: String,
    /// The entry's key (`from`) and value (`to`), for errors at plan time.
    pub span: Range<usize>,
    pub to_span: Range<usize>,
}

/// A resource (`[kind.name]`) or data source (`[data.kind.name]`) declaration.
#[derive(Debug, Clone)]
pub struct Resource {
    pub address: String,
    pub kind: String,
    pub name: String,
    pub attrs: BTreeMap<String, Expr>,
    pub depends_on: Vec<String>,
    /// `lifecycle.prevent_destroy` as written: `None` when the line is absent, which keeps
    /// what state recorded (only an explicit `false` lifts it); see [`Resource::protected`].
    pub prevent_destroy: Option<bool>,
    /// Byte span of the table header, and of each attribute's value, for errors at plan time.
    pub span: Range<usize>,
    pub attr_spans: BTreeMap<String, Range<usize>>,
}

impl Resource {
    /// Whether the resource is protected from destroy and replacement, given what state
    /// recorded for it: the stack's explicit setting, else the recorded one.
    pub fn protected(&self, recorded: Option<bool>) -> bool {
        self.prevent_destroy
            .unwrap_or_else(|| recorded.unwrap_or(false))
    }

    /// Every address this resource depends on, sorted and unique.
    pub fn dependencies(&self) -> Vec<String> {
        let mut refs = Vec::new();
        self.attrs.values().for_each(|e| e.refs(&mut refs));
        let mut deps: Vec<String> = refs.into_iter().map(|r| r.address).collect();
        deps.extend(self.depends_on.iter().cloned());
        deps.sort();
        deps.dedup();
        deps.retain(|d| d != &self.address);
        deps
    }
}

/// `[backend] s3 = { bucket, key, region }`: the state lives in S3, not in a local file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3BackendDecl {
    pub bucket: String,
    /// The state object's key, `${env}` substituted.
    pub key: String,
    /// The bucket's region, when it is not the stack's.
    pub region: Option<String>,
}

/// `[[import]] to = "s3_bucket.legacy", id = "legacy-bucket"`.
#[derive(Debug, Clone)]
pub struct ImportDecl {
    pub to: String,
    pub id: String,
    pub span: Range<usize>,
}

/// `[output.api_url] value = "http://${alb.web.dns_name}"`.
#[derive(Debug, Clone)]
pub struct OutputDecl {
    pub name: String,
    pub value: Expr,
    /// Hidden from plan and apply output and from listings; `output NAME` prints it.
    pub sensitive: bool,
    pub description: Option<String>,
    pub span: Range<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UrlSource {
    /// An SSM parameter name, read with decryption at plan/apply time.
    Ssm(String),
    /// Already read from the environment at load time.
    Env(String, crate::secret::SecretString),
}

#[derive(Debug, Clone)]
pub struct MigrationsDecl {
    /// The migrations folder (SQL files, or the tool's folder whose digest triggers a run);
    /// empty in task mode, where the migrations ship inside the image.
    pub dir: PathBuf,
    /// The `rds_instance` address the migrations run against (the snapshot target).
    pub database: String,
    /// Where Stackwright reads the database URL; `None` only in task mode, where the
    /// container reads its own from its secrets.
    pub url: Option<UrlSource>,
    /// `None` when snapshots are off; the reason is recorded.
    pub snapshot: SnapshotPolicy,
    pub verify: Vec<String>,
    pub command: Option<Vec<String>>,
    pub url_env: String,
    /// Task mode: run the command as a one-off ECS task of this service's new revision.
    pub task: Option<TaskMigration>,
    pub span: Range<usize>,
}

/// `[migrations] task = { service, command, container }`: a one-off Fargate task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMigration {
    /// The `ecs_service` address whose (new) task definition and network the task uses.
    pub service: String,
    pub command: Vec<String>,
    /// The container whose command is overridden; by default the load balancer's
    /// container, else the first one.
    pub container: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotPolicy {
    Before,
    Off { reason: String },
}

/// What the command line adds to a stack file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub env: Option<String>,
    /// `--var k=v`, applied last.
    pub vars: Vec<(String, String)>,
    /// `validate`: check secret sources' shape, never read them (no env, no files).
    pub offline: bool,
}

impl Stack {
    pub fn location(&self, span: Range<usize>) -> Location {
        Location::from_span(&self.path, &self.source, span)
    }

    /// A resource or data source by address.
    /// Adds the file location of the resource a diagnostic names, when it has none (a
    /// dependency cycle is found by address).
    pub fn locate(&self, d: Diagnostic) -> Diagnostic {
        match (&d.location, d.address.as_deref().and_then(|a| self.get(a))) {
            (None, Some(r)) => {
                let loc = self.location(r.span.clone());
                d.at(loc)
            }
            _ => d,
        }
    }

    pub fn get(&self, address: &str) -> Option<&Resource> {
        self.resources
            .get(address)
            .or_else(|| self.data.get(address))
    }

    /// The error for a problem with one attribute of a resource, pointing at its value.
    pub fn attr_error(&self, address: &str, attr: &str, message: impl Into<String>) -> Diagnostic {
        let d = Diagnostic::new(message).for_address(address);
        match self.get(address) {
            Some(r) => {
                let span = r.attr_spans.get(attr).cloned().unwrap_or(r.span.clone());
                d.at(self.location(span))
            }
            None => d,
        }
    }

    /// Default state file: `state/<stack>/<env>.json`, or `state/<stack>.json` without environments.
    pub fn default_state_path(&self) -> PathBuf {
        match &self.env {
            Some(env) => Path::new("state")
                .join(&self.name)
                .join(format!("{env}.json")),
            None => Path::new("state").join(format!("{}.json", self.name)),
        }
    }
}

/// Reads, parses and validates a stack file. Changes nothing, calls nothing.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Stack, Diagnostic> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        Diagnostic::new(format!("cannot read stack file {}: {e}", path.display()))
            .hint("pass the path of a stack TOML file, e.g. stacks/webapp.toml")
    })?;
    let mut stack = parse::parse(path, source, opts)?;
    stack.digest = digest(&stack, &parse::file_inputs(&stack));
    Ok(stack)
}

fn digest(stack: &Stack, extra: &[(String, Vec<u8>)]) -> String {
    let mut h = Sha256::new();
    h.update(stack.source.as_bytes());
    h.update(b"\0env\0");
    h.update(stack.env.as_deref().unwrap_or("").as_bytes());
    for (k, v) in &stack.vars {
        h.update(format!("\0var\0{k}={v}").as_bytes());
    }
    for (name, bytes) in extra {
        h.update(format!("\0file\0{name}\0").as_bytes());
        h.update(bytes);
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str, env: Option<&str>, vars: &[(&str, &str)]) -> Result<Stack, Diagnostic> {
        let dir = tempfile::tempdir().unwrap();
        // The migrations dir the tests' stacks name must exist.
        std::fs::create_dir(dir.path().join("m")).unwrap();
        let p = dir.path().join("s.toml");
        std::fs::write(&p, text).unwrap();
        let opts = LoadOptions {
            env: env.map(str::to_owned),
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            offline: false,
        };
        load(&p, &opts)
    }

    const BASE: &str = r#"
[stack]
name = "w"
environments = ["dev", "prod"]
[vars]
level = "INFO"
size = 20
[env.prod.vars]
level = "WARN"
[s3_bucket.b]
name = "w-${env}-b"
[ssm_parameter.p]
name = "/w/${env}/${var.level}"
value = "${s3_bucket.b.arn}"
depends_on = ["s3_bucket.b"]
"#;

    #[test]
    fn env_vars_overlay_and_references_become_edges() {
        let s = load_str(BASE, Some("prod"), &[]).unwrap();
        assert_eq!(s.vars["level"], "WARN");
        let p = &s.resources["ssm_parameter.p"];
        assert_eq!(p.attrs["name"], Expr::Lit("/w/prod/WARN".into()));
        assert_eq!(
            p.attrs["value"],
            Expr::Ref(Ref {
                address: "s3_bucket.b".into(),
                attr: "arn".into()
            })
        );
        assert_eq!(p.dependencies(), ["s3_bucket.b"]);
        let cli = load_str(BASE, Some("dev"), &[("level", "DEBUG")]).unwrap();
        assert_eq!(
            cli.resources["ssm_parameter.p"].attrs["name"],
            Expr::Lit("/w/dev/DEBUG".into())
        );
        assert_ne!(s.digest, cli.digest);
    }

    #[test]
    fn a_resource_exists_only_in_its_environments() {
        let text =
            format!("{BASE}[s3_bucket.audit]\nname = \"w-audit\"\nenvironments = [\"prod\"]\n");
        assert!(
            load_str(&text, Some("prod"), &[])
                .unwrap()
                .resources
                .contains_key("s3_bucket.audit")
        );
        let dev = load_str(&text, Some("dev"), &[]).unwrap();
        assert!(!dev.resources.contains_key("s3_bucket.audit"));
        assert!(dev.resources.contains_key("s3_bucket.b"));

        // A resource of every environment cannot refer to a prod-only one.
        let refers = format!(
            "{text}[ssm_parameter.q]\nname = \"/w/q\"\nvalue = \"${{s3_bucket.audit.arn}}\"\n"
        );
        let e = load_str(&refers, Some("dev"), &[]).unwrap_err().to_string();
        assert!(e.contains("exists only in prod (this is --env dev)"), "{e}");
        assert!(load_str(&refers, Some("prod"), &[]).is_ok());
        let depends = format!(
            "{text}[ssm_parameter.q]\nname = \"/w/q\"\nvalue = \"x\"\ndepends_on = [\"s3_bucket.audit\"]\n"
        );
        let e = load_str(&depends, Some("dev"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("exists only in prod"), "{e}");

        // A misspelt environment is refused whichever one is chosen.
        let typo = text.replace("[\"prod\"]", "[\"prdo\"]");
        let e = load_str(&typo, Some("dev"), &[]).unwrap_err().to_string();
        assert!(
            e.contains("`prdo` is not an environment") && e.contains("did you mean `prod`?"),
            "{e}"
        );
        let empty = text.replace("[\"prod\"]", "[]");
        assert!(
            load_str(&empty, Some("dev"), &[])
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );
    }

    #[test]
    fn whole_string_variables_keep_their_type() {
        let text = BASE.replace("[s3_bucket.b]\n", "[rds_instance.d]\nidentifier = \"d\"\nengine = \"postgres\"\ninstance_class = \"x\"\nallocated_storage = \"${var.size}\"\nmaster_username = \"u\"\nmaster_password = { from_file = \"pw\" }\n[s3_bucket.b]\n");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "hunter2\n").unwrap();
        let p = dir.path().join("s.toml");
        std::fs::write(&p, text).unwrap();
        let s = load(
            &p,
            &LoadOptions {
                env: Some("dev".into()),
                vars: vec![],
                offline: false,
            },
        )
        .unwrap();
        let d = &s.resources["rds_instance.d"];
        assert_eq!(d.attrs["allocated_storage"], Expr::Lit(20.into()));
        assert_eq!(
            d.attrs["master_password"],
            Expr::Secret(crate::secret::SecretString::new("hunter2"))
        );
    }

    #[test]
    fn errors_carry_line_column_and_hints() {
        let e = load_str(
            &BASE.replace("name = \"w-${env}-b\"", "nmae = \"x\""),
            Some("dev"),
            &[],
        )
        .unwrap_err();
        let loc = e.location.as_deref().unwrap();
        assert_eq!((loc.line, loc.column), (11, 1));
        assert_eq!(e.hint.as_deref(), Some("did you mean `name`?"));

        let e = load_str(
            &BASE.replace("${var.level}", "${var.levle}"),
            Some("dev"),
            &[],
        )
        .unwrap_err();
        assert!(e.message.contains("unknown variable `levle`"), "{e}");
        assert_eq!(e.hint.as_deref(), Some("did you mean `var.level`?"));

        let e = load_str(
            &BASE.replace("${s3_bucket.b.arn}", "${s3_bucket.b.arm}"),
            Some("dev"),
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("did you mean `s3_bucket.b.arn`?"),
            "{e}"
        );

        let e = load_str(
            &BASE.replace(
                "[s3_bucket.b]\nname = \"w-${env}-b\"",
                "[s3_bucket.b]\nname = \"w\"\narn = \"x\"",
            ),
            Some("dev"),
            &[],
        )
        .unwrap_err();
        assert!(e.message.contains("`arn` is set by AWS"), "{e}");

        let e = load_str(
            &BASE.replace("value = \"${s3_bucket.b.arn}\"", "value = \"${oops\""),
            Some("dev"),
            &[],
        )
        .unwrap_err();
        assert!(e.message.contains("unclosed `${`"), "{e}");

        let e = load_str(BASE, Some("qa"), &[]).unwrap_err();
        assert!(e.message.contains("unknown environment `qa`"), "{e}");
        let e = load_str(&format!("{BASE}\n[migrations]\ndir = \"m\"\ndatabase = \"s3_bucket.b\"\nurl = {{ ssm = \"/x\" }}\n"), Some("dev"), &[]).unwrap_err();
        assert!(e.message.contains("must name an rds_instance"), "{e}");
    }

    #[test]
    fn the_backend_table_is_checked_where_it_is_written() {
        let with = |b: &str| BASE.replace("[vars]\n", &format!("[backend]\n{b}\n[vars]\n"));
        let s = load_str(
            &with(r#"s3 = { bucket = "tfstate", key = "w/${env}.json", region = "eu-west-1" }"#),
            Some("prod"),
            &[],
        )
        .unwrap();
        assert_eq!(
            s.backend,
            Some(S3BackendDecl {
                bucket: "tfstate".into(),
                key: "w/prod.json".into(),
                region: Some("eu-west-1".into()),
            })
        );
        assert_eq!(load_str(BASE, Some("dev"), &[]).unwrap().backend, None);

        // Both errors of line 6 (`s3 = …`), in column order: the table, then its key.
        let e = load_str(
            &with(r#"s3 = { buckt = "tfstate", key = "w/${env}.json" }"#),
            Some("dev"),
            &[],
        )
        .unwrap_err();
        let all = e.to_string();
        assert!(all.contains("unknown key `buckt` in [backend] s3"), "{all}");
        assert!(all.contains("did you mean `bucket`?"), "{all}");
        assert!(all.contains("[backend] s3 has no `bucket`"), "{all}");
        let loc = e.location.as_deref().unwrap();
        assert_eq!((loc.line, loc.column), (6, 6), "{all}");

        let e = load_str(&with(r#"dynamodb = { table = "t" }"#), Some("dev"), &[]).unwrap_err();
        assert!(e.to_string().contains("allowed keys: s3"), "{e}");
        let e = load_str(&with(r#"s3 = { bucket = "b" }"#), Some("dev"), &[]).unwrap_err();
        assert!(e.message.contains("has no `key`"), "{e}");

        let e = load_str(
            &with(r#"s3 = { bucket = "b", key = "w/${var.level}/${env}.json" }"#),
            Some("dev"),
            &[],
        )
        .unwrap_err();
        assert!(e.message.contains("only `${env}` is allowed"), "{e}");
        let loc = e.location.as_deref().unwrap();
        assert_eq!((loc.line, loc.column), (6, 31), "{e}");

        let e = load_str(
            &with(r#"s3 = { bucket = "b", key = "w.json" }"#),
            Some("dev"),
            &[],
        )
        .unwrap_err();
        assert!(e.message.contains("every environment would share"), "{e}");
    }

    #[test]
    fn rules_are_read_for_the_chosen_environment_and_checked_for_all() {
        let rules = "[env.prod.rules]\nwindows = [\"Tue-Thu 10:00-16:00 Europe/Berlin\"]\nconfirm = \"type-env-name\"\n";
        let text = format!("{BASE}{rules}");
        let prod = load_str(&text, Some("prod"), &[]).unwrap();
        assert_eq!(prod.rules.windows.len(), 1);
        assert_eq!(prod.rules.confirm, Some(crate::rules::Confirm::TypeEnvName));
        let dev = load_str(&text, Some("dev"), &[]).unwrap();
        assert_eq!(dev.rules, crate::rules::Rules::default());

        // A bad zone in prod's rules is an error in dev too, pointing into the string.
        let bad = text.replace("Europe/Berlin", "Europe/Berln");
        let e = load_str(&bad, Some("dev"), &[]).unwrap_err();
        assert_eq!(e.message, "unknown time zone `Europe/Berln`");
        assert_eq!(e.hint.as_deref(), Some("did you mean `Europe/Berlin`?"));
        let loc = e.location.as_deref().unwrap();
        assert_eq!((loc.line, loc.column, loc.width), (17, 33, 12), "{e}");

        let e = load_str(&text.replace("Tue-Thu", "Tue-Thr"), Some("prod"), &[]).unwrap_err();
        assert_eq!(e.message, "`Thr` is not a day");
        let e = load_str(&text.replace("confirm =", "confrim ="), Some("prod"), &[]).unwrap_err();
        assert!(
            e.message
                .contains("unknown key `confrim` in [env.prod.rules]"),
            "{e}"
        );
        assert_eq!(e.hint.as_deref(), Some("did you mean `confirm`?"));
        let e = load_str(&text.replace("type-env-name", "yes"), Some("prod"), &[]).unwrap_err();
        assert!(e.to_string().contains("\"type-env-name\""), "{e}");
        let e = load_str(
            &text.replace("[\"Tue-Thu 10:00-16:00 Europe/Berlin\"]", "[]"),
            Some("prod"),
            &[],
        )
        .unwrap_err();
        assert!(e.message.contains("`windows` is empty"), "{e}");
    }

    #[test]
    fn moved_entries_name_a_gone_address_and_a_declared_one_of_its_kind() {
        let ok = |m: &str| load_str(&format!("{BASE}[moved]\n{m}\n"), Some("dev"), &[]);
        let s = ok("\"s3_bucket.old\" = \"s3_bucket.b\"").unwrap();
        assert_eq!(s.moves.len(), 1);
        assert_eq!(
            (s.moves[0].from.as_str(), s.moves[0].to.as_str()),
            ("s3_bucket.old", "s3_bucket.b")
        );
        // Unquoted, TOML reads a dotted key: the same entry.
        let s = ok("s3_bucket.old = \"s3_bucket.b\"").unwrap();
        assert_eq!(s.moves[0].from, "s3_bucket.old");

        let err = |m: &str| ok(m).unwrap_err();
        // Line 17 is the entry.
        let e = err("\"s3_bucket.b\" = \"s3_bucket.c\"");
        assert!(
            e.message.contains("still declares `s3_bucket.b` (line 10)"),
            "{e}"
        );
        assert_eq!(
            e.location.as_deref().map(|l| (l.line, l.column)),
            Some((17, 1))
        );
        let e = err("\"s3_bucket.old\" = \"s3_bucket.bb\"");
        assert!(
            e.message.contains("`s3_bucket.bb`, which is not declared"),
            "{e}"
        );
        assert_eq!(e.hint.as_deref(), Some("did you mean `s3_bucket.b`?"));
        assert_eq!(
            e.location.as_deref().map(|l| (l.line, l.column)),
            Some((17, 19))
        );
        let e = err("\"ssm_parameter.old\" = \"s3_bucket.b\"");
        assert!(e.message.contains("a move keeps the kind"), "{e}");
        let e = err("\"s3_buckt.old\" = \"s3_bucket.b\"");
        assert!(e.message.contains("is not a resource address"), "{e}");
        assert_eq!(e.hint.as_deref(), Some("did you mean `s3_bucket.…`?"));
        let e = err("\"s3_bucket.x\" = \"s3_bucket.b\"\n\"s3_bucket.y\" = \"s3_bucket.b\"");
        assert!(e.message.contains("both moved to `s3_bucket.b`"), "{e}");
        let e = err("\"s3_bucket.x\" = 3");
        assert!(e.message.contains("must be a string"), "{e}");
    }

    #[test]
    fn snapshot_off_needs_a_reason() {
        let rds = "[rds_instance.d]\nidentifier = \"d\"\nengine = \"postgres\"\ninstance_class = \"x\"\nallocated_storage = 20\nmaster_username = \"u\"\nmaster_password = { from_env = \"PATH\" }\n";
        let m = "[migrations]\ndir = \"m\"\ndatabase = \"rds_instance.d\"\nurl = { ssm = \"/x/${env}\" }\nsnapshot = \"off\"\n";
        let e = load_str(&format!("{BASE}{rds}{m}"), Some("dev"), &[]).unwrap_err();
        assert!(e.message.contains("needs a `reason`"), "{e}");
        let s = load_str(
            &format!("{BASE}{rds}{m}reason = \"scratch database\"\n"),
            Some("dev"),
            &[],
        )
        .unwrap();
        let decl = s.migrations.unwrap();
        assert_eq!(
            decl.snapshot,
            SnapshotPolicy::Off {
                reason: "scratch database".into()
            }
        );
        assert_eq!(decl.url, Some(UrlSource::Ssm("/x/dev".into())));
    }

    #[test]
    fn an_environment_can_run_its_migrations_another_way() {
        let rds = "[rds_instance.d]\nidentifier = \"d\"\nengine = \"postgres\"\ninstance_class = \"x\"\nallocated_storage = 20\nmaster_username = \"u\"\nmaster_password = { from_env = \"PATH\" }\n";
        let svc = "[ecs_service.api]\nname = \"api\"\ncluster = \"c\"\nsubnets = [\"s\"]\n[ecs_service.api.task]\nfamily = \"f\"\ncpu = 256\nmemory = 512\n[[ecs_service.api.task.container]]\nname = \"web\"\nimage = \"nginx\"\n";
        let m = "[migrations]\ndir = \"m\"\ndatabase = \"rds_instance.d\"\nurl = { ssm = \"/x/${env}\" }\n";
        let prod = "[env.prod.migrations]\ndatabase = \"rds_instance.d\"\ntask = { service = \"ecs_service.api\", command = [\"alembic\", \"upgrade\", \"head\"] }\n";
        let text = format!("{BASE}{rds}{svc}{m}{prod}");
        let dev = load_str(&text, Some("dev"), &[])
            .unwrap()
            .migrations
            .unwrap();
        assert!(dev.task.is_none());
        assert_eq!(dev.url, Some(UrlSource::Ssm("/x/dev".into())));
        let prod = load_str(&text, Some("prod"), &[])
            .unwrap()
            .migrations
            .unwrap();
        assert_eq!(
            prod.task,
            Some(TaskMigration {
                service: "ecs_service.api".into(),
                command: vec!["alembic".into(), "upgrade".into(), "head".into()],
                container: None,
            })
        );
        assert_eq!(
            prod.url, None,
            "the whole table is prod's own: no url inherited"
        );
        // Its mistakes are located like any other.
        let bad = text.replace("ecs_service.api\", command", "ecs_service.web\", command");
        let e = load_str(&bad, Some("prod"), &[]).unwrap_err();
        assert!(
            e.message.contains("`task.service` names `ecs_service.web`"),
            "{e}"
        );
    }
}
