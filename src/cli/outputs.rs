//! `stackwright output`: the stack's outputs as the last apply recorded them in state.
//! No AWS call and no secret read: CI and app config read values from state alone.

use anyhow::bail;
use serde_json::Value;

use super::commands::{backend_for, load_stack_offline};
use super::{Exit, StackArgs, output};
use crate::state::{OutputValue, State};

pub async fn run(args: &StackArgs, name: Option<&str>, json: bool) -> anyhow::Result<Exit> {
    let stack = load_stack_offline(args)?;
    let backend = backend_for(args, &stack).await?;
    let backend = &*backend;
    let Some(state) = backend.load().await? else {
        bail!(
            "no state at {}: nothing has been applied yet\n  = help: run `stackwright apply {}{}` first",
            backend.describe(),
            args.stack.display(),
            args.env
                .as_deref()
                .map(|e| format!(" --env {e}"))
                .unwrap_or_default()
        );
    };
    match name {
        Some(name) => {
            let Some(o) = state.outputs.get(name) else {
                bail!("{}", missing(&stack, &state, name));
            };
            // Raw, like `terraform output -raw`: `$(stackwright output … api_url)` works.
            output::println(&if json {
                serde_json::to_string(&o.value)?
            } else {
                raw(&o.value)
            });
        }
        None if json => {
            let all: serde_json::Map<String, Value> = state
                .outputs
                .iter()
                .map(|(k, o)| {
                    (
                        k.clone(),
                        serde_json::json!({ "value": o.value, "sensitive": o.sensitive }),
                    )
                })
                .collect();
            output::println(&serde_json::to_string_pretty(&all)?);
        }
        None => {
            if state.outputs.is_empty() {
                output::eprintln("No outputs in state.");
            }
            output::print(&listing(&state.outputs));
        }
    }
    Ok(Exit::Success)
}

/// `name = value` lines, sensitive values hidden (also shown after apply).
pub fn listing(outputs: &std::collections::BTreeMap<String, OutputValue>) -> String {
    outputs
        .iter()
        .map(|(k, o)| {
            let v = if o.sensitive {
                "(sensitive)".to_owned()
            } else {
                crate::plan::render::fmt_value(&o.value)
            };
            format!("{k} = {v}\n")
        })
        .collect()
}

fn raw(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn missing(stack: &crate::stack::Stack, state: &State, name: &str) -> String {
    if stack.outputs.contains_key(name) {
        return format!(
            "output `{name}` is declared but has no value in state yet\n  = help: run apply to compute it"
        );
    }
    let known: Vec<&str> = state
        .outputs
        .keys()
        .chain(stack.outputs.keys())
        .map(String::as_str)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let hint = match crate::error::suggest(name, known.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if known.is_empty() => "the stack declares no [output.NAME] tables".to_owned(),
        None => format!("outputs: {}", known.join(", ")),
    };
    format!("no output `{name}`\n  = help: {hint}")
}
