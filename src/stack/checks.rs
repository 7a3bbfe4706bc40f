//! Checks of a parsed stack that need more than one attribute's type: AWS's own rules for
//! names and ranges (asked of each kind, [`Provider::check_attr`]), AWS names two resources
//! would share, a resource depending on itself, references whose type does not fit the
//! attribute, mistyped regions, contradictory data-source arguments, an ECS service's
//! port that is not its target group's; and warns about a
//! secret written in plain text.
//! All problems are returned at once, each located at the value it is about.

use std::collections::BTreeMap;
use std::ops::Range;

use super::expr::{Expr, Ref};
use super::{Resource, Stack};
use crate::error::{Diagnostic, suggest};
use crate::providers::caller::KNOWN_REGIONS;
use crate::providers::{SecretMode, Ty, registry};
use crate::value::Desired;

/// Builds a located diagnostic from a byte span of the stack file.
pub(super) type At<'a> = &'a dyn Fn(Range<usize>, String) -> Diagnostic;

/// (errors, warnings).
/// `cli_vars`: the variables set with `--var`, which are not in the file.
pub(super) fn check(
    stack: &Stack,
    cli_vars: &[String],
    at: At<'_>,
) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    attribute_rules(stack, at, &mut errors);
    unique_aws_names(stack, at, &mut errors);
    unique_rule_priorities(stack, at, &mut errors);
    service_ports(stack, at, &mut errors);
    self_dependencies(stack, at, &mut errors);
    reference_types(stack, at, &mut errors);
    data_source_args(stack, at, &mut errors);
    region(stack, at, &mut errors, &mut warnings);
    plaintext_secrets(stack, cli_vars, at, &mut warnings);
    (errors, warnings)
}

/// A resource's attributes as the file writes them: literals known, secrets as secrets,
/// anything computed from references unknown.
fn as_written(r: &Resource) -> BTreeMap<String, Desired> {
    r.attrs
        .iter()
        .map(|(k, e)| {
            let d = match e {
                Expr::Lit(v) => Desired::Known(v.clone()),
                Expr::Secret(s) => Desired::Secret(s.clone()),
                _ => Desired::Unknown,
            };
            (k.clone(), d)
        })
        .collect()
}

fn attr_span(stack: &Stack, address: &str, attr: &str) -> Range<usize> {
    let r = stack.get(address).expect("address from the stack");
    r.attr_spans.get(attr).cloned().unwrap_or(r.span.clone())
}

/// What can be checked of a value at load: a literal as it is; a list or table (rule
/// blocks) with each reference inside as `null`, so that its shape (which keys are set) is
/// checked now and the referenced values at plan. A value that is one reference: nothing.
pub(super) fn shape(e: &Expr) -> Option<serde_json::Value> {
    fn inner(e: &Expr) -> serde_json::Value {
        match e {
            Expr::Lit(v) => v.clone(),
            Expr::List(items) => serde_json::Value::Array(items.iter().map(inner).collect()),
            Expr::Map(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), inner(v))).collect())
            }
            Expr::Ref(_) | Expr::Concat(_) | Expr::Secret(_) => serde_json::Value::Null,
        }
    }
    match e {
        Expr::Lit(_) | Expr::List(_) | Expr::Map(_) => Some(inner(e)),
        Expr::Ref(_) | Expr::Concat(_) | Expr::Secret(_) => None,
    }
}

/// Each literal value (and the shape of each list or table), asked of its kind.
fn attribute_rules(stack: &Stack, at: At<'_>, errors: &mut Vec<Diagnostic>) {
    let reg = registry();
    for r in stack.resources.values() {
        let Some(p) = reg.provider(&r.kind) else {
            continue;
        };
        for (attr, e) in &r.attrs {
            if let Some(v) = shape(e)
                && let Err(why) = p.check_attr(attr, &v)
            {
                errors.push(at(
                    attr_span(stack, &r.address, attr),
                    format!("`{attr}` of `{}`: {why}", r.address),
                ));
            }
        }
    }
}

/// Two resources of one kind whose AWS id (bucket name, parameter name) is the same would
/// fight over one object.
fn unique_aws_names(stack: &Stack, at: At<'_>, errors: &mut Vec<Diagnostic>) {
    let reg = registry();
    let mut seen: BTreeMap<(String, String), &str> = BTreeMap::new();
    for r in stack.resources.values() {
        let Some(p) = reg.provider(&r.kind) else {
            continue;
        };
        let desired = as_written(r);
        let Some(id) = p.id_for(&desired) else {
            continue;
        };
        match seen.get(&(r.kind.clone(), id.clone())) {
            Some(first) => errors.push(
                at(
                    r.span.clone(),
                    format!(
                        "`{}` and `{first}` would both be the {} `{id}` in AWS",
                        r.address, r.kind
                    ),
                )
                .hint("give each its own name (e.g. with a suffix), or remove one of them"),
            ),
            None => {
                seen.insert((r.kind.clone(), id), &r.address);
            }
        }
    }
}

/// AWS evaluates a listener's rules by priority, one rule each: two rules of one listener
/// (the same reference or ARN) with the same priority would fail at apply, half-done.
fn unique_rule_priorities(stack: &Stack, at: At<'_>, errors: &mut Vec<Diagnostic>) {
    let mut seen: BTreeMap<(String, i64), &str> = BTreeMap::new();
    for r in stack
        .resources
        .values()
        .filter(|r| r.kind == "alb_listener_rule")
    {
        let listener = match r.attrs.get("listener") {
            Some(Expr::Ref(rf)) => rf.to_string(),
            Some(Expr::Lit(serde_json::Value::String(s))) => s.clone(),
            _ => continue,
        };
        let Some(Expr::Lit(p)) = r.attrs.get("priority") else {
            continue;
        };
        let Some(priority) = p.as_i64() else { continue };
        match seen.get(&(listener.clone(), priority)) {
            Some(first) => errors.push(
                at(
                    attr_span(stack, &r.address, "priority"),
                    format!(
                        "`priority` of `{}`: {priority} is already the priority of `{first}` on the same listener",
                        r.address
                    ),
                )
                .hint("give each rule of a listener its own priority (1 to 50000; lower is evaluated first)"),
            ),
            None => {
                seen.insert((listener, priority), &r.address);
            }
        }
    }
}

/// An ECS service's load balancer names one of its containers and that container's port,
/// and it registers that port with the target group; the group health-
/// checks and forwards to its own port. Different ports: targets that never turn healthy.
fn service_ports(stack: &Stack, at: At<'_>, errors: &mut Vec<Diagnostic>) {
    for r in stack.resources.values().filter(|r| r.kind == "ecs_service") {
        let Some(lb_expr @ Expr::Map(lb)) = r.attrs.get("load_balancer") else {
            continue;
        };
        // The container and its port, while the task's other values may still be unknown.
        if let (Some(task), Some(lb_shape)) = (r.attrs.get("task").and_then(shape), shape(lb_expr))
            && let Err(why) = crate::providers::ecs_service::check_load_balancer(&task, &lb_shape)
        {
            errors.push(
                at(
                    attr_span(stack, &r.address, "load_balancer"),
                    format!("`load_balancer` of `{}`: {why}", r.address),
                )
                .hint("name a container of [[…task.container]] and the port it declares"),
            );
            continue;
        }
        let (Some(Expr::Ref(tg)), Some(Expr::Lit(port))) = (lb.get("target_group"), lb.get("port"))
        else {
            continue;
        };
        let Some(group) = stack
            .get(&tg.address)
            .filter(|g| g.kind == "alb_target_group")
        else {
            continue;
        };
        let Some(Expr::Lit(group_port)) = group.attrs.get("port") else {
            continue;
        };
        if port.as_i64().is_some() && port.as_i64() != group_port.as_i64() {
            errors.push(
                at(
                    attr_span(stack, &r.address, "load_balancer"),
                    format!(
                        "`load_balancer.port` of `{}` is {port}, but `{}` forwards to port {group_port}",
                        r.address, tg.address
                    ),
                )
                .hint("use the port the container listens on in both places"),
            );
        }
    }
}

fn self_dependencies(stack: &Stack, at: At<'_>, errors: &mut Vec<Diagnostic>) {
    for r in stack.resources.values() {
        if r.depends_on.contains(&r.address) {
            errors.push(
                at(
                    attr_span(stack, &r.address, "depends_on"),
                    format!("`{}` depends on itself", r.address),
                )
                .hint("remove it from its own depends_on"),
            );
        }
    }
}

/// Whether a referenced attribute holds a list (`data.subnets.x.ids`) or a single value.
fn ref_is_list(stack: &Stack, rf: &Ref) -> Option<bool> {
    let reg = registry();
    let target = stack.get(&rf.address)?;
    let schema = if rf.address.starts_with("data.") {
        reg.data_source(&target.kind)?.schema()
    } else {
        reg.provider(&target.kind)?.schema()
    };
    match schema.attr(&rf.attr) {
        Some(a) => Some(matches!(a.ty, Ty::StringList)),
        // Outputs: lists of ids are named `ids` / `*_ids`.
        None => Some(rf.attr == "ids" || rf.attr.ends_with("_ids")),
    }
}

/// A whole-string reference must fit its attribute: a list where a list is expected (a VPC
/// id is not a list of subnets), a single value where one is.
fn reference_types(stack: &Stack, at: At<'_>, errors: &mut Vec<Diagnostic>) {
    let reg = registry();
    for r in stack.resources.values().chain(stack.data.values()) {
        let schema = if r.address.starts_with("data.") {
            reg.data_source(&r.kind).map(|d| d.schema())
        } else {
            reg.provider(&r.kind).map(|p| p.schema())
        };
        let Some(schema) = schema else { continue };
        for (attr, e) in &r.attrs {
            let (Expr::Ref(rf), Some(a)) = (e, schema.attr(attr)) else {
                continue;
            };
            let Some(is_list) = ref_is_list(stack, rf) else {
                continue;
            };
            let wants_list = matches!(a.ty, Ty::StringList);
            let single = matches!(
                a.ty,
                Ty::String | Ty::Enum(_) | Ty::Int | Ty::Number | Ty::Bool
            );
            let why = if wants_list && !is_list {
                Some(format!(
                    "`{attr}` of `{}` takes a list, but `${{{rf}}}` is a single value",
                    r.address
                ))
            } else if single && is_list {
                Some(format!(
                    "`{attr}` of `{}` takes a single value, but `${{{rf}}}` is a list",
                    r.address
                ))
            } else {
                None
            };
            if let Some(why) = why {
                let hint = if wants_list {
                    "reference a list (for subnets: ${data.subnets.NAME.ids}), or write [\"${...}\"]"
                } else {
                    "reference a single attribute, not a list"
                };
                errors.push(at(attr_span(stack, &r.address, attr), why).hint(hint));
            }
        }
    }
}

fn data_source_args(stack: &Stack, at: At<'_>, errors: &mut Vec<Diagnostic>) {
    let reg = registry();
    for r in stack.data.values() {
        let Some(ds) = reg.data_source(&r.kind) else {
            continue;
        };
        let set: Vec<&str> = r.attrs.keys().map(String::as_str).collect();
        if let Err(why) = ds.check_args(&set) {
            errors.push(at(r.span.clone(), format!("`{}`: {why}", r.address)));
        }
    }
}

/// A region that is one or two letters from a known one is a typo (an error); one far from
/// all of them may be newer than this build (a warning).
fn region(stack: &Stack, at: At<'_>, errors: &mut Vec<Diagnostic>, warnings: &mut Vec<Diagnostic>) {
    let Some(r) = &stack.region else { return };
    if KNOWN_REGIONS.contains(&r.as_str()) {
        return;
    }
    let quoted = format!("\"{r}\"");
    let start = stack.source.find(&quoted).unwrap_or(0);
    let span = start..start + quoted.len();
    match suggest(r, KNOWN_REGIONS.iter().copied()) {
        Some(best) if strsim::levenshtein(best, r) <= 2 => errors.push(
            at(span, format!("unknown region `{r}`")).hint(format!("did you mean `{best}`?")),
        ),
        _ => warnings.push(
            at(span, format!("region `{r}` is not one this build knows"))
                .hint("if it is a new AWS region this is fine; otherwise check the spelling"),
        ),
    }
}

/// Values written in the file that the kind treats as secrets (a SecureString's `value`):
/// accepted, since the file may be private, but warned about, since it usually goes to git.
fn plaintext_secrets(stack: &Stack, cli_vars: &[String], at: At<'_>, out: &mut Vec<Diagnostic>) {
    let reg = registry();
    for r in stack.resources.values() {
        let Some(p) = reg.provider(&r.kind) else {
            continue;
        };
        let desired = as_written(r);
        for attr in p.schema().attrs {
            if attr.secret != SecretMode::Allowed
                || !matches!(r.attrs.get(attr.name), Some(Expr::Lit(_)))
                || !p.is_sensitive(attr.name, &desired)
            {
                continue;
            }
            let span = r
                .attr_spans
                .get(attr.name)
                .cloned()
                .unwrap_or(r.span.clone());
            // `value = "${var.key}"` with `--var key=...`: the secret is not in the file.
            let written = stack.source.get(span.clone()).unwrap_or("");
            if cli_vars
                .iter()
                .any(|v| written.contains(&format!("${{var.{v}}}")))
            {
                continue;
            }
            out.push(
                at(
                    span,
                    format!(
                        "`{}` of `{}` is a secret written in plain text in the stack file, which usually goes to git",
                        attr.name, r.address
                    ),
                )
                .redacted()
                .hint(format!(
                    "read it from the environment or a file kept out of git: {} = {{ from_env = \"VAR\" }} or {{ from_file = \"path\" }}",
                    attr.name
                )),
            );
        }
    }
}
