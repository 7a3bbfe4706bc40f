//! The saved plan file (`plan --out FILE`): versioned JSON, documented in docs/plan-format.md.
//!
//! It holds the stack's digest, the state's lineage and serial (or the explicit "no state
//! yet" marker), the actions, and no secret values: each secret is represented by a salted
//! argon2id fingerprint that apply checks against the value it re-reads.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::{FORMAT_VERSION, Plan};

#[derive(Serialize, Deserialize)]
struct Envelope {
    /// Always "stackwright-plan": tells a plan from a state file or anything else.
    kind: String,
    #[serde(flatten)]
    plan: Plan,
}

pub fn write(path: &Path, plan: &Plan) -> anyhow::Result<()> {
    let env = Envelope {
        kind: "stackwright-plan".into(),
        plan: plan.clone(),
    };
    let mut text = serde_json::to_string_pretty(&env)?;
    text.push('\n');
    crate::state::local::write_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write plan file {}", path.display()))
}

pub fn read(path: &Path) -> anyhow::Result<Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read plan file {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a plan file (invalid JSON)", path.display()))?;
    if v.get("kind").and_then(|k| k.as_str()) != Some("stackwright-plan") {
        bail!("{} is not a Stackwright plan file", path.display());
    }
    match v.get("format_version").and_then(|f| f.as_u64()) {
        Some(f) if f == FORMAT_VERSION as u64 => {}
        other => bail!(
            "{}: plan format_version {} is not supported (this Stackwright writes {FORMAT_VERSION}); re-run plan",
            path.display(),
            other.map_or("missing".to_owned(), |f| f.to_string())
        ),
    }
    let env: Envelope = serde_json::from_value(v)
        .with_context(|| format!("{} is a malformed plan file", path.display()))?;
    Ok(env.plan)
}

/// Whether a path given to `apply` is a saved plan rather than a stack.
pub fn looks_like_plan(path: &Path) -> bool {
    std::fs::read(path)
        .map(|b| {
            let head = String::from_utf8_lossy(&b[..b.len().min(256)]).into_owned();
            head.trim_start().starts_with('{') && head.contains("stackwright-plan")
        })
        .unwrap_or(false)
}
