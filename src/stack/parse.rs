//! TOML → [`Stack`]: walks the spanned document, checks every table against the kind's
//! schema, substitutes `var.*`, `env` and `stack.*`, reads secret sources, and checks that
//! every reference names something that exists.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::Value;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::expr::{Expr, Part, RawPart, Ref, split_template};
use super::{
    ImportDecl, LoadOptions, MigrationsDecl, MoveDecl, OutputDecl, Resource, S3BackendDecl,
    SnapshotPolicy, Stack, TaskMigration, UrlSource,
};
use crate::error::{Diagnostic, Location, suggest};
use crate::providers::{Attr, Schema, SecretMode, Ty, registry};
use crate::secret::SecretString;

const META_KEYS: &[&str] = &["depends_on", "lifecycle", "environments"];
const TOP_KEYS: &[&str] = &[
    "stack",
    "vars",
    "env",
    "backend",
    "migrations",
    "data",
    "import",
    "output",
    "moved",
];

struct Cx<'a> {
    path: &'a Path,
    source: &'a str,
    env: Option<String>,
    stack_name: String,
    region: Option<String>,
    vars: BTreeMap<String, Value>,
    /// `false` for `validate`: secret sources are checked for shape, never read.
    read_secrets: bool,
    /// Resources left out of the chosen environment by their `environments` list, with
    /// that list: a reference to one gets a clear error, not "not declared".
    skipped: BTreeMap<String, Vec<String>>,
}

impl Cx<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        // Interpolation offsets come from the decoded string: snap them to char boundaries.
        let b = |i: usize| {
            (0..=i.min(self.source.len()))
                .rev()
                .find(|&i| self.source.is_char_boundary(i))
                .unwrap_or(0)
        };
        let span = b(span.start)..b(span.end);
        Diagnostic::new(message).at(Location::from_span(self.path, self.source, span))
    }
}

type Table<'i> = DeTable<'i>;

fn entries<'a, 'i>(
    t: &'a Table<'i>,
) -> impl Iterator<Item = (&'a str, Range<usize>, &'a Spanned<DeValue<'i>>)> {
    t.iter().map(|(k, v)| (k.get_ref().as_ref(), k.span(), v))
}

fn get<'a, 'i>(t: &'a Table<'i>, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
    t.iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(_, v)| v)
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Number(n) if n.is_i64() => "an integer",
        Value::Number(_) => "a float",
        Value::Bool(_) => "a boolean",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
        Value::Null => "nothing",
    }
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn as_table<'a, 'i>(
    cx: &Cx<'_>,
    v: &'a Spanned<DeValue<'i>>,
    what: &str,
) -> Result<&'a Table<'i>, Diagnostic> {
    match v.get_ref() {
        DeValue::Table(t) => Ok(t),
        other => Err(cx
            .err(
                v.span(),
                format!("{what} must be a table, found {}", type_name(other)),
            )
            .hint(format!("write it as a [{what}] section"))),
    }
}

fn as_str<'a>(cx: &Cx<'_>, v: &'a Spanned<DeValue<'_>>, what: &str) -> Result<&'a str, Diagnostic> {
    match v.get_ref() {
        DeValue::String(s) => Ok(s.as_ref()),
        other => Err(cx.err(
            v.span(),
            format!("`{what}` must be a string, found {}", type_name(other)),
        )),
    }
}

fn str_list(
    cx: &Cx<'_>,
    v: &Spanned<DeValue<'_>>,
    what: &str,
) -> Result<Vec<(String, Range<usize>)>, Diagnostic> {
    match v.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .map(|i| as_str(cx, i, what).map(|s| (s.to_owned(), i.span())))
            .collect(),
        other => Err(cx.err(
            v.span(),
            format!(
                "`{what}` must be an array of strings, found {}",
                type_name(other)
            ),
        )),
    }
}

fn unknown_key(
    cx: &Cx<'_>,
    key: &str,
    span: Range<usize>,
    context: &str,
    known: &[&str],
) -> Diagnostic {
    let d = cx.err(span, format!("unknown key `{key}` in {context}"));
    match suggest(key, known.iter().copied()) {
        Some(s) => d.hint(format!("did you mean `{s}`?")),
        None => d.hint(format!("allowed keys: {}", known.join(", "))),
    }
}

/// A plain TOML value as JSON (no interpolation).
fn literal(cx: &Cx<'_>, v: &Spanned<DeValue<'_>>) -> Result<Value, Diagnostic> {
    Ok(match v.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => Value::from(parse_int(cx, v.span(), i.as_str(), i.radix())?),
        DeValue::Float(f) => {
            serde_json::Number::from_f64(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN))
                .map(Value::Number)
                .ok_or_else(|| cx.err(v.span(), "not a finite number"))?
        }
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(_) => {
            return Err(cx
                .err(v.span(), "datetimes are not supported")
                .hint("quote it as a string"));
        }
        DeValue::Array(a) => {
            Value::Array(a.iter().map(|i| literal(cx, i)).collect::<Result<_, _>>()?)
        }
        DeValue::Table(t) => Value::Object(
            entries(t)
                .map(|(k, _, v)| literal(cx, v).map(|v| (k.to_owned(), v)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn parse_int(cx: &Cx<'_>, span: Range<usize>, text: &str, radix: u32) -> Result<i64, Diagnostic> {
    let digits = text.replace('_', "");
    let digits = digits
        .trim_start_matches('+')
        .trim_start_matches("0x")
        .trim_start_matches("0o")
        .trim_start_matches("0b");
    i64::from_str_radix(digits, radix).map_err(|_| cx.err(span, "integer out of range"))
}

pub(super) fn parse(path: &Path, source: String, opts: &LoadOptions) -> Result<Stack, Diagnostic> {
    let doc = DeTable::parse(&source).map_err(|e| {
        let d = Diagnostic::new(format!("invalid TOML: {}", e.message().trim()));
        match e.span() {
            Some(span) => d.at(Location::from_span(path, &source, span)),
            None => d.for_address(path.display().to_string()),
        }
    })?;
    let root = doc.get_ref();
    let mut cx = Cx {
        path,
        source: &source,
        env: None,
        stack_name: String::new(),
        region: None,
        vars: BTreeMap::new(),
        read_secrets: !opts.offline,
        skipped: BTreeMap::new(),
    };
    let reg = registry();
    let kinds: Vec<&str> = reg.kinds().collect();

    // [stack]
    let Some(stack_v) = get(root, "stack") else {
        return Err(Diagnostic::new("missing [stack] table")
            .at(Location::from_span(path, &source, 0..0))
            .hint("start the file with:\n[stack]\nname = \"webapp\"\nregion = \"us-east-1\""));
    };
    let stack_t = as_table(&cx, stack_v, "stack")?;
    let mut name = None;
    let (mut account_id, mut profile) = (None, None);
    let mut rules = (crate::rules::Rules::default(), None);
    // `[env.E.migrations]`: the chosen environment's migrations, instead of `[migrations]`.
    let mut env_migrations = None;
    let mut environments: Vec<String> = Vec::new();
    // Errors in the header tables are collected with the resources' (the file's every
    // error at once, in file order); only a wrong `--env` stops at once.
    let mut errors = Vec::new();
    for (k, kspan, v) in entries(stack_t) {
        let key = || -> Result<(), Diagnostic> {
            match k {
                "name" => {
                    let n = as_str(&cx, v, "name")?;
                    if n.is_empty()
                        || !n
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    {
                        return Err(cx
                            .err(v.span(), format!("invalid stack name \"{n}\""))
                            .hint("use letters, digits, '-' and '_'"));
                    }
                    name = Some(n.to_owned());
                }
                "region" => cx.region = Some(as_str(&cx, v, "region")?.to_owned()),
                "account_id" => account_id = Some(account_id_of(&cx, v)?),
                "profile" => profile = Some(as_str(&cx, v, "profile")?.to_owned()),
                "environments" => {
                    for (e, espan) in str_list(&cx, v, "environments")? {
                        // Names become paths (state/<stack>/<env>.json) and parts of AWS names.
                        let valid = !e.is_empty()
                            && e.chars().all(|c| {
                                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
                            });
                        if !valid {
                            return Err(cx
                            .err(espan, format!("environment name {e:?} is not valid"))
                            .hint("use lowercase letters, digits, '-' and '_' (it becomes part of paths and AWS names)"));
                        }
                        if environments.contains(&e) {
                            return Err(cx
                                .err(espan, format!("environment `{e}` is listed twice"))
                                .hint("list each environment once"));
                        }
                        environments.push(e);
                    }
                }
                _ => {
                    return Err(unknown_key(
                        &cx,
                        k,
                        kspan,
                        "[stack]",
                        &["name", "region", "environments", "account_id", "profile"],
                    ));
                }
            }
            Ok(())
        };
        if let Err(e) = key() {
            errors.push(e);
        }
    }
    cx.stack_name = name.unwrap_or_else(|| {
        if get(stack_t, "name").is_none() {
            errors.push(
                cx.err(stack_v.span(), "[stack] has no `name`")
                    .hint("add name = \"webapp\""),
            );
        }
        "stack".to_owned()
    });

    // Environment selection.
    let env_tables = match get(root, "env") {
        Some(v) => Some(as_table(&cx, v, "env")?),
        None => None,
    };
    let envs_at = Location::from_span(
        path,
        &source,
        get(stack_t, "environments").map_or(0..0, |v| v.span()),
    );
    let wrong_env = match (&opts.env, environments.is_empty()) {
        (None, false) => Some(
            Diagnostic::new(format!(
                "stack `{}` has environments ({}); choose one with --env",
                cx.stack_name,
                environments.join(", ")
            ))
            .at(envs_at.clone())
            .hint(format!("e.g. --env {}", environments[0])),
        ),
        (Some(e), false) if !environments.contains(e) => {
            let d = Diagnostic::new(format!(
                "unknown environment `{e}`; this stack has {}",
                environments.join(", ")
            ))
            .at(envs_at.clone());
            Some(match suggest(e, environments.iter().map(String::as_str)) {
                Some(s) => d.hint(format!("did you mean `--env {s}`?")),
                None => d.hint("add it to [stack] environments, or pick one of those"),
            })
        }
        (Some(e), true) => Some(
            Diagnostic::new(format!(
                "--env {e} given, but the stack declares no environments"
            ))
            .at(Location::from_span(path, &source, stack_v.span()))
            .hint("add environments = [\"dev\", ...] to [stack], or drop --env"),
        ),
        _ => None,
    };
    // Nothing below means much for the wrong environment: stop here. When [stack] has
    // errors of its own, those come first (a malformed `environments` list may be why).
    if let Some(d) = wrong_env {
        return Err(Diagnostic::all(errors).unwrap_or(d));
    }
    cx.env = opts.env.clone();

    // Variables: [vars] < [env.E.vars] < --var.
    let mut declared_vars = BTreeSet::new();
    if let Some(v) = get(root, "vars") {
        for (k, _, val) in entries(as_table(&cx, v, "vars")?) {
            declared_vars.insert(k.to_owned());
            match literal(&cx, val) {
                Ok(x) => {
                    cx.vars.insert(k.to_owned(), x);
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if let Some(envs) = env_tables {
        for (e, espan, et) in entries(envs) {
            if !environments.iter().any(|x| x == e) {
                errors.push(
                    cx.err(
                        espan,
                        format!("[env.{e}] names an environment not in [stack] environments"),
                    )
                    .hint(format!("declared: {}", environments.join(", "))),
                );
                continue;
            }
            let chosen = Some(e) == cx.env.as_deref();
            let et = match as_table(&cx, et, &format!("env.{e}")) {
                Ok(t) => t,
                Err(d) => {
                    errors.push(d);
                    continue;
                }
            };
            for (k, kspan, v) in entries(et) {
                let key = || -> Result<(), Diagnostic> {
                    match k {
                        "vars" => {
                            for (vk, _, vv) in entries(as_table(&cx, v, &format!("env.{e}.vars"))?)
                            {
                                declared_vars.insert(vk.to_owned());
                                let val = literal(&cx, vv)?;
                                if chosen {
                                    cx.vars.insert(vk.to_owned(), val);
                                }
                            }
                        }
                        // Checked for every environment, used for the chosen one.
                        "account_id" => {
                            let id = account_id_of(&cx, v)?;
                            if chosen {
                                account_id = Some(id);
                            }
                        }
                        "region" => {
                            let r = as_str(&cx, v, "region")?.to_owned();
                            if chosen {
                                cx.region = Some(r);
                            }
                        }
                        "profile" => {
                            let pr = as_str(&cx, v, "profile")?.to_owned();
                            if chosen {
                                profile = Some(pr);
                            }
                        }
                        // Checked for every environment, so a typo in prod's rules shows
                        // in dev too.
                        "rules" => {
                            let r = rules_decl(&cx, v, e)?;
                            if chosen {
                                rules = (r, Some(kspan.start..v.span().end));
                            }
                        }
                        // Read once the resources are known, for the chosen one only
                        // (another environment's resources are not in this stack).
                        "migrations" => {
                            if chosen {
                                env_migrations = Some((v, kspan.start..v.span().end));
                            }
                        }
                        _ => {
                            return Err(unknown_key(
                                &cx,
                                k,
                                kspan,
                                &format!("[env.{e}]"),
                                &[
                                    "vars",
                                    "account_id",
                                    "region",
                                    "profile",
                                    "rules",
                                    "migrations",
                                ],
                            ));
                        }
                    }
                    Ok(())
                };
                if let Err(d) = key() {
                    errors.push(d);
                }
            }
        }
    }
    for (k, v) in &opts.vars {
        // A --var must set a variable the file declares or uses; a typo is not ignored.
        if !declared_vars.contains(k) && !source.contains(&format!("var.{k}")) {
            let d = Diagnostic::new(format!("--var {k}=…: the stack declares no variable `{k}`"))
                .for_address(path.display().to_string());
            return Err(match suggest(k, declared_vars.iter().map(String::as_str)) {
                Some(s) => d.hint(format!("did you mean `--var {s}=…`?")),
                None if declared_vars.is_empty() => {
                    d.hint("declare it under [vars] first, e.g. [vars] {k} = \"default\"")
                }
                None => d.hint(format!(
                    "declared variables: {}",
                    declared_vars.iter().cloned().collect::<Vec<_>>().join(", ")
                )),
            });
        }
        cx.vars.insert(k.clone(), Value::String(v.clone()));
    }

    // [backend]
    let backend = match get(root, "backend") {
        Some(v) => backend_decl(&cx, v, !environments.is_empty(), &mut errors),
        None => None,
    };

    // Resources and data sources.
    let mut resources = BTreeMap::new();
    let mut data = BTreeMap::new();
    let mut migrations = None;
    let mut imports_v = None;
    let mut outputs_v = None;
    let mut moved_v = None;
    // Every resource's errors are collected, so a file with several mistakes reports them
    // all at once (in file order) rather than one per run.
    let mut skipped = BTreeMap::new();
    for (top, tspan, v) in entries(root) {
        match top {
            "stack" | "vars" | "env" | "backend" => {}
            "import" => imports_v = Some(v),
            "output" => outputs_v = Some(v),
            "moved" => moved_v = Some(v),
            "migrations" => migrations = Some((v, tspan)),
            "data" => {
                let dt = match as_table(&cx, v, "data") {
                    Ok(t) => t,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
                for (dkind, dspan, dv) in entries(dt) {
                    let Some(ds) = reg.data_source(dkind) else {
                        let known: Vec<&str> = reg.data_kinds().collect();
                        errors.push(
                            unknown_key(&cx, dkind, dspan, "[data]", &known)
                                .hint(format!("data sources: {}", known.join(", "))),
                        );
                        continue;
                    };
                    let body = match as_table(&cx, dv, &format!("data.{dkind}")) {
                        Ok(t) => t,
                        Err(e) => {
                            errors.push(e);
                            continue;
                        }
                    };
                    for (n, nspan, body) in entries(body) {
                        match resource(
                            &cx,
                            &format!("data.{dkind}"),
                            dkind,
                            n,
                            nspan,
                            body,
                            ds.schema(),
                            false,
                        ) {
                            Ok(r) => {
                                data.insert(r.address.clone(), r);
                            }
                            Err(e) => errors.push(e),
                        }
                    }
                }
            }
            kind => {
                let Some(p) = reg.provider(kind) else {
                    let mut known = kinds.clone();
                    known.extend(TOP_KEYS);
                    let d = cx.err(tspan, format!("unknown resource kind `{kind}`"));
                    errors.push(match suggest(kind, known.iter().copied()) {
                        Some(s) => d.hint(format!("did you mean `{s}`?")),
                        None => d.hint(format!("resource kinds: {}", kinds.join(", "))),
                    });
                    continue;
                };
                let body = match as_table(&cx, v, kind) {
                    Ok(t) => t,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
                for (n, nspan, body) in entries(body) {
                    match only_in(&cx, &environments, body) {
                        Ok(Some(envs)) if !envs.iter().any(|e| Some(e) == cx.env.as_ref()) => {
                            skipped.insert(format!("{kind}.{n}"), envs);
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            errors.push(e);
                            continue;
                        }
                    }
                    match resource(&cx, kind, kind, n, nspan, body, p.schema(), true) {
                        Ok(r) => {
                            resources.insert(r.address.clone(), r);
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
    }
    if let Some(all) = Diagnostic::all(errors) {
        return Err(all);
    }
    cx.skipped = skipped;

    let mut stack = Stack {
        path: path.to_owned(),
        source: source.clone(),
        name: cx.stack_name.clone(),
        region: cx.region.clone(),
        environments,
        env: cx.env.clone(),
        vars: cx.vars.clone(),
        resources,
        data,
        migrations: None,
        imports: Vec::new(),
        outputs: BTreeMap::new(),
        digest: String::new(),
        warnings: Vec::new(),
        account_id,
        profile,
        backend,
        rules: rules.0,
        rules_span: rules.1,
        moves: Vec::new(),
    };
    // The whole table, not a merge: an environment that runs its migrations another way
    // (a one-off task in prod, SQL files in dev) says all of it in one place.
    let migrations = env_migrations.or(migrations);
    check_references(&cx, &stack, migrations.is_some())?;
    if let Some(v) = moved_v {
        stack.moves = moved_decls(&cx, v, &stack)?;
    }
    if let Some(v) = outputs_v {
        stack.outputs = output_decls(&cx, v, &stack)?;
    }
    let cli_vars: Vec<String> = opts.vars.iter().map(|(k, _)| k.clone()).collect();
    let (errors, warnings) =
        super::checks::check(&stack, &cli_vars, &|span, msg| cx.err(span, msg));
    if let Some(all) = Diagnostic::all(errors) {
        return Err(all);
    }
    stack.warnings = warnings;
    if let Some(v) = imports_v {
        stack.imports = import_decls(&cx, v, &stack)?;
    }
    if let Some((v, tspan)) = migrations {
        let decl = migrations_decl(&cx, v, tspan, &stack)?;
        // The step runs after its database: the database cannot also wait for it.
        if let Some(db) = stack.resources.get(&decl.database)
            && db.depends_on.iter().any(|d| d == "migrations")
        {
            return Err(cx
                .err(
                    db.attr_spans["depends_on"].clone(),
                    format!(
                        "`{}` depends on migrations, which run against it: a cycle",
                        db.address
                    ),
                )
                .hint("remove \"migrations\" from its depends_on"));
        }
        stack.migrations = Some(decl);
    }
    stack.source = source.clone();
    Ok(stack)
}

#[allow(clippy::too_many_arguments)]
fn resource(
    cx: &Cx<'_>,
    prefix: &str,
    kind: &str,
    name: &str,
    nspan: Range<usize>,
    body: &Spanned<DeValue<'_>>,
    schema: &Schema,
    is_resource: bool,
) -> Result<Resource, Diagnostic> {
    let address = format!("{prefix}.{name}");
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(cx
            .err(nspan, format!("invalid name `{name}` in `{address}`"))
            .hint("use letters, digits, '_' and '-'"));
    }
    let t = as_table(cx, body, &address)?;
    let mut r = Resource {
        address: address.clone(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        attrs: BTreeMap::new(),
        depends_on: Vec::new(),
        prevent_destroy: None,
        span: nspan.clone(),
        attr_spans: BTreeMap::new(),
    };
    let mut allowed: Vec<&str> = schema.attrs.iter().map(|a| a.name).collect();
    if is_resource {
        allowed.extend(META_KEYS);
    }
    for (k, kspan, v) in entries(t) {
        match k {
            "depends_on" if is_resource => {
                r.depends_on = str_list(cx, v, "depends_on")?
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect();
                r.attr_spans.insert(k.to_owned(), v.span());
            }
            "environments" if is_resource => {}
            "lifecycle" if is_resource => {
                for (lk, lspan, lv) in entries(as_table(cx, v, &format!("{address}.lifecycle"))?) {
                    match (lk, lv.get_ref()) {
                        ("prevent_destroy", DeValue::Boolean(b)) => r.prevent_destroy = Some(*b),
                        ("prevent_destroy", other) => {
                            return Err(cx.err(
                                lv.span(),
                                format!(
                                    "`prevent_destroy` must be a boolean, found {}",
                                    type_name(other)
                                ),
                            ));
                        }
                        _ => {
                            return Err(unknown_key(
                                cx,
                                lk,
                                lspan,
                                &format!("{address}.lifecycle"),
                                &["prevent_destroy"],
                            ));
                        }
                    }
                }
            }
            _ => {
                let Some(attr) = schema.attr(k) else {
                    if schema.is_output(k) {
                        return Err(cx
                            .err(
                                kspan,
                                format!(
                                    "`{k}` is set by AWS and cannot be configured on `{address}`"
                                ),
                            )
                            .hint(format!("reference it instead: ${{{address}.{k}}}")));
                    }
                    return Err(unknown_key(cx, k, kspan, &format!("`{address}`"), &allowed));
                };
                let e = attr_expr(cx, &address, attr, v)?;
                r.attrs.insert(k.to_owned(), e);
                r.attr_spans.insert(k.to_owned(), v.span());
            }
        }
    }
    for a in schema.attrs.iter().filter(|a| a.required) {
        if !r.attrs.contains_key(a.name) {
            return Err(cx
                .err(
                    nspan.clone(),
                    format!("`{address}` is missing required attribute `{}`", a.name),
                )
                .hint(format!(
                    "add {} = ... ({}: {})",
                    a.name,
                    a.ty.describe(),
                    a.doc
                )));
        }
    }
    Ok(r)
}

/// An attribute value, type-checked against its schema where it is literal.
fn attr_expr(
    cx: &Cx<'_>,
    address: &str,
    attr: &Attr,
    v: &Spanned<DeValue<'_>>,
) -> Result<Expr, Diagnostic> {
    let ctx = format!("`{}` of `{address}`", attr.name);
    // Secret sources: { from_env = "X" } / { from_file = "p" }.
    // A table for a secret-capable string is a secret source (a misspelt key gets a
    // did-you-mean, not "found a table").
    if let DeValue::Table(t) = v.get_ref()
        && (get(t, "from_env").is_some()
            || get(t, "from_file").is_some()
            || (attr.secret != SecretMode::No && matches!(attr.ty, Ty::String)))
    {
        if attr.secret == SecretMode::No {
            return Err(cx
                .err(v.span(), format!("{ctx} cannot come from a secret source"))
                .hint(format!("write it as {}", attr.ty.describe())));
        }
        return Ok(Expr::Secret(secret_source(cx, t, v.span())?));
    }
    if attr.secret == SecretMode::WriteOnly {
        return Err(cx
            .err(
                v.span(),
                format!("{ctx} is a secret and must not be written in the stack file"),
            )
            .redacted()
            .hint(format!(
                "use {} = {{ from_env = \"VAR\" }} or {{ from_file = \"path\" }}",
                attr.name
            )));
    }
    // One string where a list of one is meant (`assume_role_service = "ecs-tasks.amazonaws.com"`).
    if attr.one_or_many && matches!(v.get_ref(), DeValue::String(_)) {
        return typed(cx, &ctx, Ty::String, v).map(|e| Expr::List(vec![e]));
    }
    // A value that may be a secret (a SecureString's) never shows in an error snippet.
    typed(cx, &ctx, attr.ty, v).map_err(|d| {
        if attr.secret == SecretMode::No {
            d
        } else {
            d.redacted()
        }
    })
}

fn typed(cx: &Cx<'_>, ctx: &str, ty: Ty, v: &Spanned<DeValue<'_>>) -> Result<Expr, Diagnostic> {
    let mismatch = |found: &str| {
        cx.err(
            v.span(),
            format!("{ctx} must be {}, found {found}", ty.describe()),
        )
    };
    // A string with interpolation is checked once resolved.
    if let DeValue::String(s) = v.get_ref() {
        let e = interpolate(cx, s, v.span())?;
        return match (&e, ty) {
            (Expr::Lit(Value::String(s)), Ty::Enum(values)) if !values.contains(&s.as_str()) => {
                let d = cx.err(
                    v.span(),
                    format!("{ctx} must be {}, found \"{s}\"", ty.describe()),
                );
                Err(match suggest(s, values.iter().copied()) {
                    Some(x) => d.hint(format!("did you mean \"{x}\"?")),
                    None => d,
                })
            }
            (Expr::Lit(Value::String(s)), Ty::Int) => s
                .parse::<i64>()
                .map(|i| Expr::Lit(i.into()))
                .map_err(|_| mismatch("a string")),
            (Expr::Lit(Value::String(s)), Ty::Number) => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(|n| Expr::Lit(Value::Number(n)))
                .ok_or_else(|| mismatch("a string")),
            (Expr::Lit(Value::String(s)), Ty::Bool) => s
                .parse::<bool>()
                .map(|b| Expr::Lit(b.into()))
                .map_err(|_| mismatch("a string")),
            (Expr::Lit(Value::String(_)), Ty::String | Ty::Enum(_))
            | (Expr::Ref(_) | Expr::Concat(_), _) => Ok(e),
            // A whole-string variable keeps its type: check it like a literal.
            (Expr::Lit(Value::Bool(_)), Ty::Bool)
            | (Expr::Lit(Value::Number(_)), Ty::Int | Ty::Number)
            | (Expr::Lit(Value::Array(_)), Ty::StringList)
            | (Expr::Lit(Value::Object(_)), Ty::StringMap) => Ok(e),
            (Expr::Lit(v @ (Value::Number(_) | Value::Bool(_))), Ty::String) => {
                Ok(Expr::Lit(Value::String(super::expr::scalar_text(v))))
            }
            (Expr::Lit(v), _) => Err(mismatch(json_type_name(v))),
            _ => Ok(e),
        };
    }
    match (ty, v.get_ref()) {
        (Ty::Bool, DeValue::Boolean(b)) => Ok(Expr::Lit(Value::Bool(*b))),
        (Ty::Int, DeValue::Integer(i)) => Ok(Expr::Lit(
            parse_int(cx, v.span(), i.as_str(), i.radix())?.into(),
        )),
        (Ty::StringList, DeValue::Array(items)) => items
            .iter()
            .map(|i| typed(cx, &format!("an item of {ctx}"), Ty::String, i))
            .collect::<Result<_, _>>()
            .map(Expr::List),
        (Ty::StringMap, DeValue::Table(t)) => {
            let mut m = BTreeMap::new();
            for (k, _, item) in entries(t) {
                let e = match item.get_ref() {
                    DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) => {
                        Expr::Lit(Value::String(super::expr::scalar_text(&literal(cx, item)?)))
                    }
                    _ => typed(cx, &format!("`{k}` in {ctx}"), Ty::String, item)?,
                };
                m.insert(k.to_owned(), e);
            }
            Ok(Expr::Map(m))
        }
        (Ty::Number, DeValue::Integer(i)) => Ok(Expr::Lit(
            parse_int(cx, v.span(), i.as_str(), i.radix())?.into(),
        )),
        (Ty::Number, DeValue::Float(_)) => Ok(Expr::Lit(literal(cx, v)?)),
        (Ty::Blocks(attrs), DeValue::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                let DeValue::Table(t) = item.get_ref() else {
                    return Err(cx.err(item.span(), format!("each item of {ctx} must be a table")));
                };
                out.push(nested_table(cx, ctx, attrs, t, item.span(), "an item of")?);
            }
            Ok(Expr::List(out))
        }
        (Ty::Table(attrs), DeValue::Table(t)) => nested_table(cx, ctx, attrs, t, v.span(), ""),
        (_, other) => Err(mismatch(type_name(other))),
    }
}

/// A nested table (a block item or an inline table) checked against its attributes:
/// unknown keys with a did-you-mean, types, required keys, defaults filled in.
fn nested_table(
    cx: &Cx<'_>,
    ctx: &str,
    attrs: &[Attr],
    t: &Table<'_>,
    span: Range<usize>,
    whose: &str,
) -> Result<Expr, Diagnostic> {
    let whose = if whose.is_empty() {
        String::new()
    } else {
        format!("{whose} ")
    };
    let mut m = BTreeMap::new();
    for (k, kspan, iv) in entries(t) {
        let Some(a) = attrs.iter().find(|a| a.name == k) else {
            let names: Vec<&str> = attrs.iter().map(|a| a.name).collect();
            return Err(unknown_key(cx, k, kspan, ctx, &names));
        };
        m.insert(
            k.to_owned(),
            typed(cx, &format!("`{k}` in {ctx}"), a.ty, iv)?,
        );
    }
    for a in attrs.iter().filter(|a| a.required) {
        if !m.contains_key(a.name) {
            return Err(cx
                .err(
                    span.clone(),
                    format!("{whose}{ctx} is missing required `{}`", a.name),
                )
                .hint(a.doc));
        }
    }
    for a in attrs.iter() {
        if let (false, Some(d)) = (m.contains_key(a.name), a.default.value()) {
            m.insert(a.name.to_owned(), Expr::Lit(d));
        }
    }
    Ok(Expr::Map(m))
}

fn secret_source(
    cx: &Cx<'_>,
    t: &Table<'_>,
    span: Range<usize>,
) -> Result<SecretString, Diagnostic> {
    let mut found = None;
    for (k, kspan, v) in entries(t) {
        if !matches!(k, "from_env" | "from_file") {
            return Err(unknown_key(
                cx,
                k,
                kspan,
                "a secret source",
                &["from_env", "from_file"],
            ));
        }
        if found.is_some() {
            return Err(cx
                .err(kspan, "a secret source has one key")
                .hint("give exactly one of from_env or from_file"));
        }
        found = Some((k, as_str(cx, v, k)?, v.span()));
    }
    let (k, val, vspan) = found.ok_or_else(|| cx.err(span.clone(), "empty secret source"))?;
    if !cx.read_secrets {
        return Ok(SecretString::new(String::new()));
    }
    match k {
        "from_env" => match std::env::var(val) {
            Ok(s) => Ok(SecretString::new(s)),
            Err(_) => Err(cx
                .err(vspan, format!("environment variable `{val}` is not set"))
                .hint(format!(
                    "export {val}=... before running, or use {{ from_file = \"path\" }}"
                ))),
        },
        _ => {
            let p = relative_to_stack(cx.path, val);
            match std::fs::read_to_string(&p) {
                Ok(s) => Ok(SecretString::new(
                    s.trim_end_matches(['\n', '\r']).to_owned(),
                )),
                Err(e) => Err(cx.err(
                    vspan,
                    format!("cannot read secret file {}: {e}", p.display()),
                )),
            }
        }
    }
}

/// A 12-digit AWS account id, written as a string (an integer would lose leading zeros).
/// `[backend] s3 = { bucket = "…", key = "webapp/${env}.json", region = "…" }`. Errors go
/// to `errors`, with the header tables'. `${env}` is the only interpolation in the key: the
/// backend is opened before any variable or reference could be evaluated.
fn backend_decl(
    cx: &Cx<'_>,
    v: &Spanned<DeValue<'_>>,
    has_envs: bool,
    errors: &mut Vec<Diagnostic>,
) -> Option<S3BackendDecl> {
    let t = match as_table(cx, v, "backend") {
        Ok(t) => t,
        Err(d) => {
            errors.push(d);
            return None;
        }
    };
    let mut decl = None;
    for (k, kspan, bv) in entries(t) {
        if k != "s3" {
            // No [backend] at all means the local file (state/<stack>/<env>.json).
            errors.push(unknown_key(cx, k, kspan, "[backend]", &["s3"]));
            continue;
        }
        let s3 = match bv.get_ref() {
            DeValue::Table(t) => t,
            other => {
                errors.push(
                    cx.err(
                        bv.span(),
                        format!("`s3` must be a table, found {}", type_name(other)),
                    )
                    .hint(r#"s3 = { bucket = "my-state", key = "webapp/${env}.json" }"#),
                );
                continue;
            }
        };
        let (mut bucket, mut key, mut region) = (None, None, None);
        for (sk, skspan, sv) in entries(s3) {
            let r = match sk {
                "bucket" => {
                    as_str(cx, sv, "bucket").map(|b| bucket = Some((b.to_owned(), sv.span())))
                }
                "key" => as_str(cx, sv, "key").map(|b| key = Some((b.to_owned(), sv.span()))),
                "region" => as_str(cx, sv, "region").map(|b| region = Some(b.to_owned())),
                _ => Err(unknown_key(
                    cx,
                    sk,
                    skspan,
                    "[backend] s3",
                    &["bucket", "key", "region"],
                )),
            };
            if let Err(d) = r {
                errors.push(d);
            }
        }
        let example = r#"s3 = { bucket = "my-state", key = "webapp/${env}.json" }"#;
        if bucket.is_none() {
            errors.push(
                cx.err(bv.span(), "[backend] s3 has no `bucket`")
                    .hint(format!("name the bucket that holds the state: {example}")),
            );
        }
        let Some((raw, kspan)) = key else {
            errors.push(
                cx.err(bv.span(), "[backend] s3 has no `key`")
                    .hint(format!("name the state object: {example}")),
            );
            continue;
        };
        match backend_key(cx, &raw, kspan, has_envs) {
            Ok(k) => {
                if let Some((b, _)) = bucket {
                    decl = Some(S3BackendDecl {
                        bucket: b,
                        key: k,
                        region,
                    });
                }
            }
            Err(d) => errors.push(d),
        }
    }
    decl
}

/// The key with `${env}` substituted; any other `${…}` is refused where it is written.
fn backend_key(
    cx: &Cx<'_>,
    raw: &str,
    span: Range<usize>,
    has_envs: bool,
) -> Result<String, Diagnostic> {
    // Offsets inside a plain "…" string map onto the file; otherwise point at the value.
    let plain = cx.source.get(span.clone()) == Some(&format!("\"{raw}\""));
    let at = |from: usize, len: usize| {
        if plain {
            span.start + 1 + from..span.start + 1 + from + len
        } else {
            span.clone()
        }
    };
    let mut out = String::new();
    let mut rest = raw;
    let mut offset = 0;
    let mut has_env = false;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('}') else {
            return Err(cx
                .err(
                    at(offset + i, rest.len() - i),
                    "unterminated `${` in the backend key",
                )
                .hint("write ${env}"));
        };
        let name = &rest[i + 2..i + end];
        if name != "env" {
            return Err(cx
                .err(
                    at(offset + i, end + 1),
                    format!("`${{{name}}}` in the backend key: only `${{env}}` is allowed there"),
                )
                .hint("the state is found before variables and references are evaluated; write the rest literally"));
        }
        if !has_envs {
            return Err(cx
                .err(
                    at(offset + i, end + 1),
                    "`${env}` in the backend key, but the stack declares no environments",
                )
                .hint(
                    r#"drop ${env} from the key, or add environments = ["dev", ...] to [stack]"#,
                ));
        }
        has_env = true;
        out.push_str(cx.env.as_deref().unwrap_or_default());
        offset += i + end + 1;
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    if has_envs && !has_env {
        return Err(cx
            .err(
                span,
                "the backend key names no `${env}`: every environment would share one state",
            )
            .hint("put ${env} in the key, e.g. key = \"webapp/${env}.json\""));
    }
    if out.is_empty() || out.starts_with('/') || out.ends_with('/') {
        return Err(cx
            .err(span, format!("backend key \"{raw}\" is not an object key"))
            .hint("e.g. key = \"webapp/${env}.json\" (no leading or trailing '/')"));
    }
    Ok(out)
}

/// The file span of `at` (a byte range inside the string `raw` written at `span`): exact
/// inside a plain `"…"` string, else the whole value.
fn inside(cx: &Cx<'_>, raw: &str, span: &Range<usize>, at: Range<usize>) -> Range<usize> {
    if cx.source.get(span.clone()) == Some(&format!("\"{raw}\"")) {
        span.start + 1 + at.start..span.start + 1 + at.end
    } else {
        span.clone()
    }
}

/// `[env.E.rules]`: `windows = ["Tue-Thu 10:00-16:00 Europe/Berlin", …]` and
/// `confirm = "type-env-name"`.
fn rules_decl(
    cx: &Cx<'_>,
    v: &Spanned<DeValue<'_>>,
    env: &str,
) -> Result<crate::rules::Rules, Diagnostic> {
    use crate::rules::{Confirm, Rules, Window};
    let what = format!("env.{env}.rules");
    let t = as_table(cx, v, &what)?;
    let mut rules = Rules::default();
    for (k, kspan, rv) in entries(t) {
        match k {
            "windows" => {
                let list = str_list(cx, rv, "windows")?;
                if list.is_empty() {
                    return Err(cx
                        .err(rv.span(), "`windows` is empty: no deploy could ever run")
                        .hint("name at least one window, e.g. windows = [\"Tue-Thu 10:00-16:00 Europe/Berlin\"], or remove the line to allow any time"));
                }
                for (text, wspan) in list {
                    let w = Window::parse(&text).map_err(|e| {
                        cx.err(inside(cx, &text, &wspan, e.at), e.message)
                            .hint(e.hint)
                    })?;
                    rules.windows.push(w);
                }
            }
            "confirm" => {
                let c = as_str(cx, rv, "confirm")?;
                rules.confirm = Some(Confirm::parse(c).ok_or_else(|| {
                    cx.err(
                        rv.span(),
                        format!("unknown confirmation rule \"{c}\""),
                    )
                    .hint(format!(
                        "confirm takes {} (apply asks for the environment's name, or --confirm-env {env} where no one can type)",
                        Confirm::NAMES
                            .iter()
                            .map(|n| format!("\"{n}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?);
            }
            _ => {
                return Err(unknown_key(
                    cx,
                    k,
                    kspan,
                    &format!("[{what}]"),
                    &["windows", "confirm"],
                ));
            }
        }
    }
    Ok(rules)
}

/// `[moved]`: `"s3_bucket.old" = "s3_bucket.new"` (or, unquoted, the dotted key
/// `s3_bucket.old = "s3_bucket.new"`). `from` must no longer be declared, `to` must be, and
/// both must be of one kind; whether state holds them is checked at plan time.
fn moved_decls(
    cx: &Cx<'_>,
    v: &Spanned<DeValue<'_>>,
    stack: &Stack,
) -> Result<Vec<MoveDecl>, Diagnostic> {
    let t = as_table(cx, v, "moved")?;
    let example = "[moved]\n\"s3_bucket.old_name\" = \"s3_bucket.new_name\"";
    // (from, its span, the value)
    let mut items: Vec<(String, Range<usize>, &Spanned<DeValue<'_>>)> = Vec::new();
    for (k, kspan, mv) in entries(t) {
        match mv.get_ref() {
            // The dotted key `s3_bucket.old = "…"` is the table `s3_bucket` in TOML.
            DeValue::Table(inner) if !k.contains('.') => {
                for (n, nspan, nv) in entries(inner) {
                    items.push((format!("{k}.{n}"), nspan, nv));
                }
            }
            _ => items.push((k.to_owned(), kspan, mv)),
        }
    }
    let mut errors = Vec::new();
    let mut out: Vec<MoveDecl> = Vec::new();
    for (from, span, mv) in items {
        let one = || -> Result<Option<MoveDecl>, Diagnostic> {
            let to = match mv.get_ref() {
                DeValue::String(s) => s.to_string(),
                other => {
                    return Err(cx
                        .err(
                            mv.span(),
                            format!(
                                "the new address of `{from}` must be a string, found {}",
                                type_name(other)
                            ),
                        )
                        .hint(example));
                }
            };
            let to_span = mv.span();
            let address = |a: &str, at: Range<usize>| -> Result<(), Diagnostic> {
                let ok = a.split_once('.').is_some_and(|(k, n)| {
                    registry().provider(k).is_some()
                        && !n.is_empty()
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                });
                if ok {
                    return Ok(());
                }
                let kinds: Vec<&str> = registry().kinds().collect();
                let kind = a.split_once('.').map_or(a, |(k, _)| k);
                let d = cx.err(at, format!("`{a}` in [moved] is not a resource address"));
                Err(match suggest(kind, kinds.iter().copied()) {
                    Some(s) if s != kind => d.hint(format!("did you mean `{s}.…`?")),
                    _ => d.hint(format!(
                        "write KIND.NAME with a resource kind ({}): {example}",
                        kinds.join(", ")
                    )),
                })
            };
            address(&from, span.clone())?;
            address(&to, to_span.clone())?;
            let (fk, tk) = (from.split('.').next(), to.split('.').next());
            if fk != tk {
                return Err(cx
                    .err(
                        to_span,
                        format!(
                            "cannot move `{from}` to `{to}`: a move keeps the kind ({} is not {})",
                            fk.unwrap_or_default(),
                            tk.unwrap_or_default()
                        ),
                    )
                    .hint("a resource of another kind is a new resource: remove this entry, and the plan replaces it"));
            }
            if from == to {
                return Err(cx
                    .err(span, format!("`{from}` is moved to itself"))
                    .hint("remove this entry"));
            }
            if stack.resources.contains_key(&from) || cx.skipped.contains_key(&from) {
                let line = stack
                    .resources
                    .get(&from)
                    .map(|r| format!(" (line {})", stack.location(r.span.clone()).line))
                    .unwrap_or_default();
                return Err(cx
                    .err(
                        span,
                        format!("`{from}` is moved to `{to}`, but the stack still declares `{from}`{line}"),
                    )
                    .hint(format!("rename its table to [{to}] (a move renames the resource), or remove this entry")));
            }
            // A target that exists only in other environments: nothing to move here.
            if cx.skipped.contains_key(&to) {
                return Ok(None);
            }
            if !stack.resources.contains_key(&to) {
                let d = cx.err(
                    to_span,
                    format!("`{from}` is moved to `{to}`, which is not declared"),
                );
                return Err(
                    match suggest(&to, stack.resources.keys().map(String::as_str)) {
                        Some(s) => d.hint(format!("did you mean `{s}`?")),
                        None => d.hint(format!("declare [{to}] (the renamed table) in the stack")),
                    },
                );
            }
            if let Some(other) = out.iter().find(|m| m.to == to) {
                return Err(cx
                    .err(
                        to_span,
                        format!("`{from}` and `{}` are both moved to `{to}`", other.from),
                    )
                    .hint(
                        "one resource can take over only one address: remove one of the entries",
                    ));
            }
            Ok(Some(MoveDecl {
                from: from.clone(),
                to,
                span: span.clone(),
                to_span,
            }))
        };
        match one() {
            Ok(Some(m)) => out.push(m),
            Ok(None) => {}
            Err(d) => errors.push(d),
        }
    }
    match Diagnostic::all(errors) {
        Some(all) => Err(all),
        None => Ok(out),
    }
}

fn account_id_of(cx: &Cx<'_>, v: &Spanned<DeValue<'_>>) -> Result<String, Diagnostic> {
    let id = as_str(cx, v, "account_id")?;
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(cx
            .err(
                v.span(),
                format!("account_id {id:?} is not a 12-digit AWS account id"),
            )
            .hint("write it as a string, e.g. account_id = \"123456789012\""));
    }
    Ok(id.to_owned())
}

/// A path written in the stack file, relative to the file's directory (as Cargo does for
/// paths in Cargo.toml), with `dir/..` folded away so messages show `migrations`, not
/// `stacks/../migrations`.
fn relative_to_stack(stack: &Path, p: &str) -> PathBuf {
    use std::path::Component;
    let p = Path::new(p);
    if p.is_absolute() {
        return p.to_owned();
    }
    let mut out = PathBuf::new();
    for c in stack.parent().unwrap_or(Path::new("")).join(p).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Substitutes `var.*`, `env`, `stack.*`; keeps resource references.
fn interpolate(cx: &Cx<'_>, s: &str, span: Range<usize>) -> Result<Expr, Diagnostic> {
    // The span includes the quote; offset into the string body when it is a basic string.
    let body = span.start + 1;
    let parts = split_template(s).map_err(|(m, r)| {
        cx.err(body + r.start..body + r.end, m)
            .hint("close it with `}`, or write `$${` for a literal `${`")
    })?;
    let mut out: Vec<Part> = Vec::new();
    let mut single_ref = None;
    let n = parts.len();
    for p in parts {
        match p {
            RawPart::Text(t) => out.push(Part::Text(t)),
            RawPart::Interp(inner, r) => {
                let here = body + r.start..body + r.end;
                let segs: Vec<&str> = inner.split('.').collect();
                let value = match segs.as_slice() {
                    ["env"] => match &cx.env {
                        Some(e) => Value::String(e.clone()),
                        None => return Err(cx.err(here, "`${env}` used, but the stack has no environments").hint("add environments = [...] to [stack] and pass --env")),
                    },
                    ["stack", "name"] => Value::String(cx.stack_name.clone()),
                    ["stack", "region"] => match &cx.region {
                        Some(r) => Value::String(r.clone()),
                        None => return Err(cx.err(here, "`${stack.region}` used, but [stack] has no region")),
                    },
                    ["var", v] => match cx.vars.get(*v) {
                        Some(val) => val.clone(),
                        None => {
                            let d = cx.err(here, format!("unknown variable `{v}`"));
                            return Err(match suggest(v, cx.vars.keys().map(String::as_str)) {
                                Some(s) => d.hint(format!("did you mean `var.{s}`?")),
                                None => d.hint(format!("declare it under [vars], or pass --var {v}=...")),
                            });
                        }
                    },
                    ["data", kind, name, attr] => {
                        let rf = Ref { address: format!("data.{kind}.{name}"), attr: (*attr).to_owned() };
                        if n == 1 {
                            single_ref = Some(rf.clone());
                        }
                        out.push(Part::Ref(rf));
                        continue;
                    }
                    [kind, name, attr] if !matches!(*kind, "var" | "stack" | "data") => {
                        let rf = Ref { address: format!("{kind}.{name}"), attr: (*attr).to_owned() };
                        if n == 1 {
                            single_ref = Some(rf.clone());
                        }
                        out.push(Part::Ref(rf));
                        continue;
                    }
                    _ => {
                        return Err(cx.err(here, format!("cannot interpolate `${{{inner}}}`")).hint(
                            "use ${var.NAME}, ${env}, ${stack.name}, ${stack.region}, ${KIND.NAME.ATTR} or ${data.KIND.NAME.ATTR}",
                        ))
                    }
                };
                if n == 1 {
                    // A whole-string variable keeps its type (a number stays a number).
                    return Ok(Expr::Lit(value));
                }
                out.push(Part::Text(super::expr::scalar_text(&value)));
            }
        }
    }
    if let Some(r) = single_ref {
        return Ok(Expr::Ref(r));
    }
    if out.iter().all(|p| matches!(p, Part::Text(_))) {
        let s: String = out
            .into_iter()
            .map(|p| match p {
                Part::Text(t) => t,
                Part::Ref(_) => unreachable!(),
            })
            .collect();
        return Ok(Expr::Lit(Value::String(s)));
    }
    Ok(Expr::Concat(out))
}

/// Every reference and `depends_on` entry must name a declared resource and a real attribute.
/// `depends_on = ["migrations"]` names the migrations step, when the stack has one.
fn check_references(cx: &Cx<'_>, stack: &Stack, has_migrations: bool) -> Result<(), Diagnostic> {
    let all: BTreeSet<&str> = stack
        .resources
        .keys()
        .chain(stack.data.keys())
        .map(String::as_str)
        .collect();
    for r in stack.resources.values().chain(stack.data.values()) {
        for (attr, e) in &r.attrs {
            let mut refs = Vec::new();
            e.refs(&mut refs);
            let span = r.attr_spans[attr].clone();
            for rf in refs {
                let target = check_ref(cx, stack, &r.address, &rf, span.clone())?;
                if r.address.starts_with("data.") && !target.address.starts_with("data.") {
                    return Err(cx
                        .err(
                            span.clone(),
                            format!(
                                "data source `{}` cannot depend on resource `{}`",
                                r.address, rf.address
                            ),
                        )
                        .hint("data sources are read at plan time, before any resource exists"));
                }
            }
        }
        for d in &r.depends_on {
            if d == "migrations" && has_migrations {
                continue;
            }
            if let Some(envs) = cx.skipped.get(d) {
                return Err(not_in_env(
                    cx,
                    r.attr_spans["depends_on"].clone(),
                    &r.address,
                    d,
                    envs,
                ));
            }
            if !all.contains(d.as_str()) {
                let diag = cx.err(
                    r.attr_spans["depends_on"].clone(),
                    format!("`{}` depends on `{d}`, which is not declared", r.address),
                );
                return Err(match suggest(d, all.iter().copied()) {
                    Some(s) => diag.hint(format!("did you mean `{s}`?")),
                    None => diag
                        .hint("depends_on takes resource addresses such as \"s3_bucket.uploads\""),
                });
            }
        }
    }
    Ok(())
}

/// One reference written at `span` in `from`: its target must be declared and have the
/// attribute. Returns the target.
/// A resource's `environments = ["prod"]`: the environments it exists in (`None`: all).
/// Checked whichever environment is chosen, so a typo shows in dev too.
fn only_in(
    cx: &Cx<'_>,
    declared: &[String],
    body: &Spanned<DeValue<'_>>,
) -> Result<Option<Vec<String>>, Diagnostic> {
    let DeValue::Table(t) = body.get_ref() else {
        return Ok(None);
    };
    let Some(v) = get(t, "environments") else {
        return Ok(None);
    };
    if declared.is_empty() {
        return Err(cx
            .err(
                v.span(),
                "`environments` on a resource, but the stack declares none",
            )
            .hint("add environments = [\"dev\", ...] to [stack], or remove this line"));
    }
    let list = str_list(cx, v, "environments")?;
    if list.is_empty() {
        return Err(cx
            .err(
                v.span(),
                "`environments` is empty: the resource would exist nowhere",
            )
            .hint("name at least one environment, or delete the resource"));
    }
    for (e, span) in &list {
        if !declared.contains(e) {
            let d = cx.err(
                span.clone(),
                format!("`{e}` is not an environment of this stack"),
            );
            return Err(match suggest(e, declared.iter().map(String::as_str)) {
                Some(s) => d.hint(format!("did you mean `{s}`?")),
                None => d.hint(format!("declared: {}", declared.join(", "))),
            });
        }
    }
    Ok(Some(list.into_iter().map(|(e, _)| e).collect()))
}

fn not_in_env(
    cx: &Cx<'_>,
    span: Range<usize>,
    from: &str,
    to: &str,
    envs: &[String],
) -> Diagnostic {
    let env = cx.env.as_deref().unwrap_or("?");
    cx.err(
        span,
        format!(
            "`{from}` refers to `{to}`, which exists only in {} (this is --env {env})",
            envs.join(", ")
        ),
    )
    .hint(format!(
        "add {env} to the environments of `{to}`, or give `{from}` the same environments"
    ))
}

fn check_ref<'s>(
    cx: &Cx<'_>,
    stack: &'s Stack,
    from: &str,
    rf: &Ref,
    span: Range<usize>,
) -> Result<&'s Resource, Diagnostic> {
    let Some(target) = stack.get(&rf.address) else {
        if let Some(envs) = cx.skipped.get(&rf.address) {
            return Err(not_in_env(cx, span, from, &rf.address, envs));
        }
        let all = stack.resources.keys().chain(stack.data.keys());
        let d = cx.err(
            span,
            format!("`{from}` refers to `{}`, which is not declared", rf.address),
        );
        return Err(match suggest(&rf.address, all.map(String::as_str)) {
            Some(s) => d.hint(format!("did you mean `{s}`?")),
            None => d.hint("declare it in this stack, or fix the reference"),
        });
    };
    let schema = schema_of(target);
    if !schema.names().any(|n| n == rf.attr) {
        let names: Vec<&str> = schema.names().collect();
        let d = cx.err(
            span,
            format!("`{}` has no attribute `{}`", rf.address, rf.attr),
        );
        return Err(match suggest(&rf.attr, names.iter().copied()) {
            Some(s) => d.hint(format!("did you mean `{}.{s}`?", rf.address)),
            None => d.hint(format!("attributes: {}", names.join(", "))),
        });
    }
    Ok(target)
}

fn schema_of(r: &Resource) -> &'static Schema {
    let reg = registry();
    if r.address.starts_with("data.") {
        reg.data_source(&r.kind).map(|d| d.schema())
    } else {
        reg.provider(&r.kind).map(|p| p.schema())
    }
    .expect("kind validated")
}

/// `[output.NAME]` tables: `value` (a string with references, or any TOML value),
/// `sensitive`, `description`. An output never carries a secret: state keeps its value.
fn output_decls(
    cx: &Cx<'_>,
    v: &Spanned<DeValue<'_>>,
    stack: &Stack,
) -> Result<BTreeMap<String, OutputDecl>, Diagnostic> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, nspan, body) in entries(as_table(cx, v, "output")?) {
        match output_decl(cx, name, nspan, body, stack) {
            Ok(o) => {
                out.insert(name.to_owned(), o);
            }
            Err(e) => errors.push(e),
        }
    }
    match Diagnostic::all(errors) {
        Some(all) => Err(all),
        None => Ok(out),
    }
}

fn output_decl(
    cx: &Cx<'_>,
    name: &str,
    nspan: Range<usize>,
    body: &Spanned<DeValue<'_>>,
    stack: &Stack,
) -> Result<OutputDecl, Diagnostic> {
    let address = format!("output.{name}");
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(cx
            .err(nspan, format!("invalid output name `{name}`"))
            .hint("use letters, digits, '_' and '-'"));
    }
    let t = as_table(cx, body, &address)?;
    let (mut value, mut sensitive, mut description) = (None, false, None);
    for (k, kspan, val) in entries(t) {
        match (k, val.get_ref()) {
            ("value", DeValue::String(s)) => {
                let e = interpolate(cx, s, val.span())?;
                let mut refs = Vec::new();
                e.refs(&mut refs);
                for rf in refs {
                    let target = check_ref(cx, stack, &address, &rf, val.span())?;
                    let secret = schema_of(target)
                        .attr(&rf.attr)
                        .is_some_and(|a| a.secret == SecretMode::WriteOnly);
                    if secret {
                        return Err(cx
                            .err(val.span(), format!("`{address}` would carry the secret `{rf}`"))
                            .hint("outputs are kept in state, which never holds a secret; output where the secret lives (an SSM parameter's name) instead"));
                    }
                }
                value = Some((e, val.span()));
            }
            ("value", _) => value = Some((Expr::Lit(literal(cx, val)?), val.span())),
            ("sensitive", DeValue::Boolean(b)) => sensitive = *b,
            ("description", DeValue::String(s)) => description = Some(s.to_string()),
            ("sensitive" | "description", other) => {
                return Err(cx.err(
                    val.span(),
                    format!(
                        "`{k}` of `{address}` must be a {}, found {}",
                        if k == "sensitive" {
                            "boolean"
                        } else {
                            "string"
                        },
                        type_name(other)
                    ),
                ));
            }
            _ => {
                return Err(unknown_key(
                    cx,
                    k,
                    kspan,
                    &format!("`{address}`"),
                    &["value", "sensitive", "description"],
                ));
            }
        }
    }
    let Some((value, span)) = value else {
        return Err(cx
            .err(nspan, format!("`{address}` has no `value`"))
            .hint("e.g. value = \"${rds_instance.main.endpoint}\""));
    };
    Ok(OutputDecl {
        name: name.to_owned(),
        value,
        sensitive,
        description,
        span,
    })
}

/// `[[import]]` tables: each names a declared resource (`to`) and the AWS id to adopt.
fn import_decls(
    cx: &Cx<'_>,
    v: &Spanned<DeValue<'_>>,
    stack: &Stack,
) -> Result<Vec<ImportDecl>, Diagnostic> {
    let DeValue::Array(items) = v.get_ref() else {
        return Err(cx
            .err(v.span(), "`import` must be an array of tables")
            .hint("write each as [[import]]\nto = \"s3_bucket.legacy\"\nid = \"legacy-bucket\""));
    };
    let mut out: Vec<ImportDecl> = Vec::new();
    for item in items {
        let t = as_table(cx, item, "import")?;
        let (mut to, mut id) = (None, None);
        for (k, kspan, val) in entries(t) {
            match k {
                "to" => to = Some((as_str(cx, val, k)?.to_owned(), val.span())),
                "id" => {
                    let e = interpolate(cx, as_str(cx, val, k)?, val.span())?;
                    let Expr::Lit(Value::String(s)) = e else {
                        return Err(cx.err(
                            val.span(),
                            "`id` of an import may use ${var.*}, ${env} and ${stack.*} only",
                        ));
                    };
                    id = Some(s);
                }
                _ => return Err(unknown_key(cx, k, kspan, "[[import]]", &["to", "id"])),
            }
        }
        let (Some((to, to_span)), Some(id)) = (to, id) else {
            return Err(cx
                .err(item.span(), "an [[import]] needs both `to` and `id`")
                .hint(
                    "to = \"s3_bucket.legacy\" (the address), id = \"legacy-bucket\" (the AWS id)",
                ));
        };
        if !stack.resources.contains_key(&to) {
            let d = cx.err(
                to_span,
                format!("[[import]] names `{to}`, which is not declared"),
            );
            return Err(
                match suggest(&to, stack.resources.keys().map(String::as_str)) {
                    Some(s) => d.hint(format!("did you mean `{s}`?")),
                    None => d.hint("declare the resource, then import into it"),
                },
            );
        }
        if out.iter().any(|i| i.to == to) {
            return Err(cx.err(to_span, format!("`{to}` is imported twice")));
        }
        out.push(ImportDecl {
            to,
            id,
            span: item.span(),
        });
    }
    Ok(out)
}

fn migrations_decl(
    cx: &Cx<'_>,
    v: &Spanned<DeValue<'_>>,
    tspan: Range<usize>,
    stack: &Stack,
) -> Result<MigrationsDecl, Diagnostic> {
    let t = as_table(cx, v, "migrations")?;
    const KEYS: &[&str] = &[
        "dir", "database", "url", "snapshot", "reason", "verify", "command", "url_env", "task",
    ];
    let mut dir = None;
    let mut database = None;
    let mut url = None;
    let mut snapshot = "before".to_owned();
    let mut snapshot_span = tspan.clone();
    let mut reason = None;
    let mut verify = Vec::new();
    let mut command = None;
    let mut url_env = "DATABASE_URL".to_owned();
    let mut task = None;
    let mut spans: BTreeMap<&str, Range<usize>> = BTreeMap::new();
    for (k, kspan, val) in entries(t) {
        spans.insert(k, kspan.clone());
        match k {
            "task" => task = Some(task_migration(cx, val, stack)?),
            "dir" => {
                // Relative to the stack file's directory, like every path in the file.
                let d = relative_to_stack(cx.path, as_str(cx, val, k)?);
                if !d.is_dir() {
                    return Err(cx
                        .err(
                            val.span(),
                            format!("migrations dir {} does not exist", d.display()),
                        )
                        .hint(format!(
                            "paths in a stack file are relative to its directory ({}); e.g. dir = \"../migrations\" for a stack in stacks/",
                            cx.path
                                .parent()
                                .filter(|p| !p.as_os_str().is_empty())
                                .map_or(".".into(), |p| p.display().to_string())
                        )));
                }
                dir = Some(d);
            }
            "database" => {
                database = Some(
                    declared_of_kind(cx, val, "database", "rds_instance", stack)?
                        .address
                        .clone(),
                );
            }
            "url" => {
                let ut = as_table(cx, val, "migrations.url")?;
                if let Some(p) = get(ut, "ssm") {
                    let e = interpolate(cx, as_str(cx, p, "ssm")?, p.span())?;
                    let Expr::Lit(Value::String(s)) = e else {
                        return Err(cx.err(
                            p.span(),
                            "`url.ssm` may use ${var.*}, ${env} and ${stack.*} only",
                        ));
                    };
                    url = Some(UrlSource::Ssm(s));
                } else if let Some(p) = get(ut, "from_env") {
                    let name = as_str(cx, p, "from_env")?;
                    let s = secret_source(cx, ut, val.span())?;
                    url = Some(UrlSource::Env(name.to_owned(), s));
                } else {
                    return Err(cx
                        .err(
                            val.span(),
                            "`url` must be { ssm = \"/param/name\" } or { from_env = \"VAR\" }",
                        )
                        .redacted()
                        .hint("the URL is a secret: it is never written in the stack file"));
                }
            }
            "snapshot" => {
                snapshot = as_str(cx, val, k)?.to_owned();
                snapshot_span = val.span();
                if !matches!(snapshot.as_str(), "before" | "off") {
                    return Err(cx.err(
                        val.span(),
                        format!("`snapshot` must be \"before\" or \"off\", found \"{snapshot}\""),
                    ));
                }
            }
            "reason" => reason = Some(as_str(cx, val, k)?.to_owned()),
            "verify" => verify = str_list(cx, val, k)?.into_iter().map(|(s, _)| s).collect(),
            "command" => {
                let c: Vec<String> = str_list(cx, val, k)?.into_iter().map(|(s, _)| s).collect();
                if c.is_empty() {
                    return Err(cx
                        .err(val.span(), "`command` is empty")
                        .hint("e.g. command = [\"alembic\", \"upgrade\", \"head\"]"));
                }
                command = Some(c);
            }
            "url_env" => url_env = as_str(cx, val, k)?.to_owned(),
            _ => return Err(unknown_key(cx, k, kspan, "[migrations]", KEYS)),
        }
    }
    let snapshot = match (snapshot.as_str(), reason) {
        ("off", Some(reason)) if !reason.trim().is_empty() => SnapshotPolicy::Off { reason },
        ("off", _) => return Err(cx.err(snapshot_span, "snapshot = \"off\" needs a `reason`").hint("add reason = \"why no snapshot is needed\"; it is recorded in the migration history")),
        _ => SnapshotPolicy::Before,
    };
    if task.is_some() {
        // The task's container brings the migrations (in its image) and the database URL
        // (in its secrets): a folder or a local command would be a second, silent source.
        for (k, why) in [
            (
                "dir",
                "the migrations ship in the image; they run whenever the service's task changes",
            ),
            (
                "command",
                "the task runs `task.command`; a local command as well would run the migrations twice",
            ),
        ] {
            if let Some(sp) = spans.get(k) {
                return Err(cx
                    .err(sp.clone(), format!("`{k}` cannot be used with `task`"))
                    .hint(format!("remove `{k}`: {why}")));
            }
        }
        if !verify.is_empty() && url.is_none() {
            return Err(cx
                .err(
                    spans["verify"].clone(),
                    "`verify` needs a `url` to run its queries",
                )
                .hint("add url = { ssm = \"/app/${env}/DATABASE_URL\" }, or remove verify"));
        }
    }
    let dir = match (dir, &task) {
        (Some(d), _) => d,
        (None, Some(_)) => PathBuf::new(),
        (None, None) => {
            return Err(cx
                .err(tspan.clone(), "[migrations] has no `dir`")
                .hint("add dir = \"migrations\", or task = { service = \"ecs_service.NAME\", command = [...] } to run them in the app's container"));
        }
    };
    if task.is_none() && url.is_none() {
        return Err(cx
            .err(tspan.clone(), "[migrations] has no `url`")
            .hint("add url = { ssm = \"/app/${env}/DATABASE_URL\" }"));
    }
    Ok(MigrationsDecl {
        dir,
        database: database.ok_or_else(|| {
            cx.err(tspan.clone(), "[migrations] has no `database`")
                .hint("add database = \"rds_instance.NAME\"")
        })?,
        url,
        snapshot,
        verify,
        command,
        url_env,
        task,
        span: tspan,
    })
}

/// The resource a `[migrations]` key names (`"rds_instance.main"` or `"${rds_instance.main}"`),
/// which must be declared and of `kind`.
fn declared_of_kind<'s>(
    cx: &Cx<'_>,
    val: &Spanned<DeValue<'_>>,
    key: &str,
    kind: &str,
    stack: &'s Stack,
) -> Result<&'s Resource, Diagnostic> {
    let d = as_str(cx, val, key)?;
    let d = d.trim_start_matches("${").trim_end_matches('}');
    match stack.resources.get(d) {
        Some(r) if r.kind == kind => Ok(r),
        Some(r) => Err(cx.err(
            val.span(),
            format!("`{key}` must name an {kind}, but `{d}` is a {}", r.kind),
        )),
        None => {
            let declared: Vec<&str> = stack
                .resources
                .values()
                .filter(|r| r.kind == kind)
                .map(|r| r.address.as_str())
                .collect();
            Err(cx
                .err(
                    val.span(),
                    format!("`{key}` names `{d}`, which is not declared"),
                )
                .hint(if declared.is_empty() {
                    format!("declare an [{kind}.NAME] and name it here")
                } else {
                    format!("declared: {}", declared.join(", "))
                }))
        }
    }
}

/// `task = { service = "ecs_service.api", command = [...], container = "web" }`.
fn task_migration(
    cx: &Cx<'_>,
    v: &Spanned<DeValue<'_>>,
    stack: &Stack,
) -> Result<TaskMigration, Diagnostic> {
    let t = as_table(cx, v, "migrations.task")?;
    let mut service = None;
    let mut command = None;
    let mut container = None;
    for (k, kspan, val) in entries(t) {
        match k {
            "service" => {
                let r = declared_of_kind(cx, val, "task.service", "ecs_service", stack)?;
                service = Some((r.address.clone(), r));
            }
            "command" => {
                let c: Vec<String> = str_list(cx, val, k)?.into_iter().map(|(s, _)| s).collect();
                if c.is_empty() {
                    return Err(cx
                        .err(val.span(), "`task.command` is empty")
                        .hint("e.g. command = [\"alembic\", \"upgrade\", \"head\"]"));
                }
                command = Some(c);
            }
            "container" => container = Some((as_str(cx, val, k)?.to_owned(), val.span())),
            _ => {
                return Err(unknown_key(
                    cx,
                    k,
                    kspan,
                    "[migrations] task",
                    &["service", "command", "container"],
                ));
            }
        }
    }
    let Some((service, r)) = service else {
        return Err(cx
            .err(v.span(), "`task` has no `service`")
            .hint("add service = \"ecs_service.NAME\""));
    };
    let command = command.ok_or_else(|| {
        cx.err(v.span(), "`task` has no `command`")
            .hint("e.g. command = [\"alembic\", \"upgrade\", \"head\"]")
    })?;
    // The container must be one the task declares (when the file names them literally).
    let names: Vec<String> = r
        .attrs
        .get("task")
        .and_then(super::checks::shape)
        .and_then(|t| t.get("container").cloned())
        .and_then(|c| c.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    if let Some((c, sp)) = &container
        && !names.is_empty()
        && !names.contains(c)
    {
        return Err(cx
            .err(
                sp.clone(),
                format!("`task.container` names `{c}`, which {service}'s task does not declare"),
            )
            .hint(format!("its containers: {}", names.join(", "))));
    }
    Ok(TaskMigration {
        service,
        command,
        container: container.map(|(c, _)| c),
    })
}

/// Migration dirs are relative to the working directory (the project root), like state.
/// Non-secret files whose content the plan depends on (the migrations), for the digest.
pub(super) fn file_inputs(stack: &Stack) -> Vec<(String, Vec<u8>)> {
    let Some(m) = &stack.migrations else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut stack_dirs = vec![m.dir.clone()];
    while let Some(d) = stack_dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "__pycache__" {
                continue;
            }
            if p.is_dir() {
                stack_dirs.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p.display().to_string(), bytes));
            }
        }
    }
    out.sort();
    out
}
