//! The human rendering of a plan, in Terraform's vocabulary (`+ ~ -/+ - <=`).
//!
//! Output is styled with ANSI codes; the CLI writes through `anstream`, which strips them
//! when colour is off (`--color never`, NO_COLOR, not a terminal).

use std::fmt::Write;

use anstyle::{AnsiColor, Style};
use serde_json::Value;

use super::{Action, After, AttrChange, Change, Plan};

const GREEN: Style = AnsiColor::Green.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const RED: Style = AnsiColor::Red.on_default();
const CYAN: Style = AnsiColor::Cyan.on_default();
const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();

fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

fn action_style(a: Action) -> Style {
    match a {
        Action::Create => GREEN,
        Action::Update => YELLOW,
        Action::Replace | Action::CreateThenDelete | Action::Delete => RED,
        Action::Read => CYAN,
        Action::NoOp => DIM,
    }
}

/// A value as it reads in a stack file: `"text"`, `true`, `20`, `{ a = "b" }`, `["x", "y"]`.
pub fn fmt_value(v: &Value) -> String {
    match v {
        Value::String(s) if s.contains('\n') => format!("<<EOT\n{s}\nEOT"),
        Value::String(s) => serde_json::to_string(s).expect("string"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(fmt_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{} = {}", fmt_key(k), fmt_value(v)))
                .collect();
            if inner.is_empty() {
                "{}".into()
            } else {
                format!("{{ {} }}", inner.join(", "))
            }
        }
        other => other.to_string(),
    }
}

fn fmt_key(k: &str) -> String {
    if k.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        serde_json::to_string(k).expect("string")
    }
}

fn fmt_after(a: &After) -> String {
    match a {
        After::Known(v) => fmt_value(v),
        After::Unknown => "(known after apply)".into(),
        After::Sensitive { changed: true } => "(sensitive value changed)".into(),
        After::Sensitive { changed: false } => "(sensitive)".into(),
        After::Removed => "null".into(),
    }
}

/// Long or multi-line values are diffed line by line with `similar`.
fn multiline_diff(out: &mut String, indent: &str, before: &str, after: &str) {
    let diff = similar::TextDiff::from_lines(before, after);
    for change in diff.iter_all_changes() {
        let line = change.value().trim_end_matches('\n');
        let (sign, style) = match change.tag() {
            similar::ChangeTag::Delete => ("-", RED),
            similar::ChangeTag::Insert => ("+", GREEN),
            similar::ChangeTag::Equal => (" ", DIM),
        };
        let _ = writeln!(out, "{indent}  {}", paint(style, &format!("{sign} {line}")));
    }
}

fn pretty_lines(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).expect("json"),
    }
}

fn attr_line(out: &mut String, width: usize, a: &AttrChange, action: Action) {
    let indent = "      ";
    let name = format!("{:width$}", a.name);
    let forces = if a.forces_replacement {
        paint(RED, " # forces replacement")
    } else {
        String::new()
    };
    match action {
        Action::Create => {
            let shown = match a.after {
                After::Sensitive { .. } => "(sensitive)".to_owned(),
                _ => fmt_after(&a.after),
            };
            let _ = writeln!(out, "{indent}{} {name} = {shown}", paint(GREEN, "+"));
        }
        Action::Delete => {
            if let Some(b) = &a.before {
                let _ = writeln!(out, "{indent}{} {name} = {}", paint(RED, "-"), fmt_value(b));
            }
        }
        _ => {
            let before = a
                .before
                .as_ref()
                .map(fmt_value)
                .unwrap_or_else(|| "null".into());
            if let After::Sensitive { .. } = a.after {
                let _ = writeln!(
                    out,
                    "{indent}{} {name} = {}{forces}",
                    paint(YELLOW, "~"),
                    fmt_after(&a.after)
                );
                return;
            }
            let after = fmt_after(&a.after);
            let long =
                before.len() + after.len() > 100 || before.contains('\n') || after.contains('\n');
            if let (true, Some(b), After::Known(v)) = (long, &a.before, &a.after) {
                let _ = writeln!(out, "{indent}{} {name} ={forces}", paint(YELLOW, "~"));
                multiline_diff(out, indent, &pretty_lines(b), &pretty_lines(v));
            } else if a.before.is_none() {
                let _ = writeln!(
                    out,
                    "{indent}{} {name} = {after}{forces}",
                    paint(GREEN, "+")
                );
            } else {
                let _ = writeln!(
                    out,
                    "{indent}{} {name} = {before} -> {after}{forces}",
                    paint(YELLOW, "~")
                );
            }
        }
    }
}

fn what(c: &Change) -> String {
    match c.action {
        Action::Create => "will be created".into(),
        Action::Update => "will be updated in place".into(),
        Action::Replace => format!(
            "must be replaced (because {} changed)",
            c.replace_because.join(", ")
        ),
        Action::CreateThenDelete => format!(
            "must be replaced, the new one created first (because {} changed)",
            c.replace_because.join(", ")
        ),
        Action::Delete => "will be destroyed".into(),
        Action::Read => "will be read".into(),
        Action::NoOp if c.adopted.is_some() => "will be taken into state as it is".into(),
        Action::NoOp => "is up to date".into(),
    }
}

fn render_change(out: &mut String, c: &Change) {
    let style = action_style(c.action);
    let _ = writeln!(
        out,
        "  {} {}",
        paint(BOLD, &format!("# {}", c.address)),
        what(c)
    );
    if let Some(why) = &c.adopted {
        let _ = writeln!(out, "  {}", paint(CYAN, &format!("# {why}")));
    }
    if c.deleted_outside {
        let _ = writeln!(
            out,
            "  {}",
            paint(YELLOW, "# (it was deleted outside Stackwright)")
        );
    }
    for n in &c.notes {
        let _ = writeln!(out, "  # {n}");
    }
    for w in &c.warnings {
        let _ = writeln!(out, "  {}", paint(RED.bold(), &format!("# {w}")));
    }
    let (kind, name) = c.address.rsplit_once('.').unwrap_or((&c.kind, &c.address));
    let _ = writeln!(
        out,
        "  {} {kind} \"{name}\" {{",
        paint(style, c.action.symbol())
    );
    let shown: Vec<&AttrChange> = c
        .attributes
        .iter()
        .filter(|a| match c.action {
            Action::Create | Action::Delete => true,
            Action::Replace => true,
            _ => a.changed,
        })
        .filter(|a| {
            !(c.action == Action::Replace
                && !a.changed
                && matches!(a.after, After::Known(_))
                && a.before.as_ref() == known(&a.after))
        })
        .collect();
    let width = shown.iter().map(|a| a.name.len()).max().unwrap_or(0);
    for a in &shown {
        attr_line(out, width, a, c.action);
    }
    let hidden = c.attributes.len() - shown.len();
    if hidden > 0 && c.action != Action::Delete {
        let _ = writeln!(
            out,
            "        {}",
            paint(
                DIM,
                &format!(
                    "# ({hidden} unchanged attribute{} hidden)",
                    if hidden == 1 { "" } else { "s" }
                )
            )
        );
    }
    let _ = writeln!(out, "    }}\n");
}

fn known(a: &After) -> Option<&Value> {
    match a {
        After::Known(v) => Some(v),
        _ => None,
    }
}

pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let env = plan
        .stack
        .env
        .as_deref()
        .map(|e| format!(", env {e}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{}\n",
        paint(
            BOLD,
            &format!("Stackwright plan for {}{env}", plan.stack.name)
        )
    );

    for d in &plan.data {
        let _ = writeln!(out, " {} {} read", paint(CYAN, "<="), d.address);
    }
    if !plan.data.is_empty() {
        out.push('\n');
    }

    for m in &plan.moves {
        let _ = writeln!(out, "  {} {} → {} (moved)", paint(CYAN, "#"), m.from, m.to);
    }
    if !plan.moves.is_empty() {
        let _ = writeln!(
            out,
            "  {}
",
            paint(DIM, "(renamed in state only: nothing changes in AWS)")
        );
    }

    let drifted: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| !c.drift.is_empty())
        .collect();
    if !drifted.is_empty() {
        let _ = writeln!(out, "{}", paint(BOLD, "Changed outside Stackwright:"));
        for c in drifted {
            let _ = writeln!(out, "  {} {}", paint(YELLOW, "~"), c.address);
            for d in &c.drift {
                let show =
                    |v: &Option<Value>| v.as_ref().map(fmt_value).unwrap_or_else(|| "null".into());
                let _ = writeln!(
                    out,
                    "      {} = {} -> {}",
                    d.name,
                    show(&d.recorded),
                    show(&d.live)
                );
            }
        }
        let _ = writeln!(
            out,
            "  {}\n",
            paint(DIM, "(the plan below restores what the stack says)")
        );
    }

    let mut active: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp || c.adopted.is_some())
        .collect();
    // Destroys and replaces first: they are what a reader must not miss.
    active.sort_by_key(|c| {
        let rank = match c.action {
            Action::Delete => 0,
            Action::Replace => 1,
            _ => 2,
        };
        (rank, c.address.clone())
    });
    for c in &active {
        render_change(&mut out, c);
    }

    if let Some(m) = &plan.migrations {
        let _ = writeln!(
            out,
            "{}",
            paint(BOLD, &format!("Migrations against {}:", m.database))
        );
        if let Some(i) = &m.interrupted {
            let _ = writeln!(
                out,
                "  {}",
                paint(YELLOW.bold(), &format!("migrations: {i}"))
            );
        }
        if let Some(r) = &m.unknown_reason {
            let _ = writeln!(out, "  {r}");
        }
        if m.pending.is_empty() && m.unknown_reason.is_none() {
            let _ = writeln!(out, "  {}", paint(DIM, "none pending"));
        } else {
            let _ = writeln!(
                out,
                "  {}",
                paint(YELLOW, &format!("snapshot: {}", m.snapshot))
            );
            for p in &m.pending {
                let _ = writeln!(out, "  {} {p}", paint(GREEN, "+"));
            }
        }
        for f in &m.findings {
            let (mark, style) = match (&f.allowed, f.blocking) {
                (Some(_), _) => ("allowed", DIM),
                (None, true) => ("blocks apply", RED),
                (None, false) => ("warning", YELLOW),
            };
            let _ = writeln!(
                out,
                "  {} {}:{}:{} {} ({mark}): {}",
                paint(style, "!"),
                f.file,
                f.line,
                f.column,
                f.rule,
                f.message
            );
            if let Some(reason) = &f.allowed {
                let _ = writeln!(out, "      allowed because {reason}");
            }
        }
        if let Some(b) = &m.blocked {
            let _ = writeln!(out, "  {}", paint(RED.bold(), b));
        }
        out.push('\n');
    }

    let changed: Vec<_> = plan
        .outputs
        .iter()
        .filter(|o| o.action != Action::NoOp)
        .collect();
    if !changed.is_empty() {
        let _ = writeln!(out, "{}", paint(BOLD, "Changes to outputs:"));
        for o in changed {
            let text = match (&o.before, &o.after) {
                (Some(b), After::Removed) => fmt_value(b),
                (None, After::Removed) => "(sensitive)".into(),
                (Some(b), a) => format!("{} -> {}", fmt_value(b), fmt_after(a)),
                (None, a) => fmt_after(a),
            };
            let _ = writeln!(
                out,
                "  {} {} = {text}",
                paint(action_style(o.action), o.action.symbol()),
                o.name
            );
        }
        out.push('\n');
    }

    let s = &plan.summary;
    if !plan.has_changes() {
        let _ = writeln!(
            out,
            "{}",
            paint(
                GREEN.bold(),
                "No changes. Your infrastructure matches the stack."
            )
        );
    } else {
        let _ = writeln!(
            out,
            "{} {} to add, {} to change, {} to replace, {} to destroy{}.",
            paint(BOLD, "Plan:"),
            s.add,
            s.change,
            s.replace,
            s.destroy,
            moved_count(plan)
        );
        let adopted = plan.adoptions.len();
        if adopted > 0 || !plan.resolved_intents.is_empty() {
            let _ = writeln!(
                out,
                "{}",
                paint(
                    CYAN,
                    &format!(
                        "State: {adopted} to adopt, {} interrupted operation{} resolved.",
                        plan.resolved_intents.len(),
                        if plan.resolved_intents.len() == 1 {
                            ""
                        } else {
                            "s"
                        }
                    )
                )
            );
        }
    }
    out
}

/// `, 1 to move` when the plan moves anything (the summary line otherwise stays as it was).
fn moved_count(plan: &Plan) -> String {
    match plan.moves.len() {
        0 => String::new(),
        n => format!(", {n} to move"),
    }
}

/// A markdown rendering for CI comments (`plan --markdown`): the summary first, destroys
/// and replaces called out above everything else, one table row per change, each
/// resource's details collapsible, then migrations and outputs. Secrets show as the text
/// plan shows them: `(sensitive)`.
pub fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let env = plan
        .stack
        .env
        .as_deref()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    let _ = writeln!(out, "### Stackwright plan: `{}`{env}\n", plan.stack.name);
    let s = &plan.summary;
    let _ = writeln!(
        out,
        "**{} to add, {} to change, {} to replace, {} to destroy{}.**\n",
        s.add,
        s.change,
        s.replace,
        s.destroy,
        moved_count(plan)
    );
    if !plan.moves.is_empty() {
        let _ = writeln!(
            out,
            "Renamed in state (`[moved]`; nothing changes in AWS):\n"
        );
        for m in &plan.moves {
            let _ = writeln!(out, "- `{}` → `{}` (moved)", m.from, m.to);
        }
        out.push('\n');
    }
    let active: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .collect();
    let dangerous: Vec<&&Change> = active
        .iter()
        .filter(|c| {
            matches!(
                c.action,
                Action::Delete | Action::Replace | Action::CreateThenDelete
            )
        })
        .collect();
    if !dangerous.is_empty() {
        let _ = writeln!(out, "> [!WARNING]\n> This plan deletes or replaces:");
        for c in &dangerous {
            let why = if c.replace_because.is_empty() {
                String::new()
            } else {
                format!(" (forced by {})", c.replace_because.join(", "))
            };
            let _ = writeln!(out, "> - `{}` {}{why}", c.address, c.action.verb());
        }
        out.push('\n');
    }
    if !active.is_empty() {
        let _ = writeln!(out, "| action | address | detail |\n|---|---|---|");
        for c in &active {
            let detail = match c.action {
                Action::Replace | Action::CreateThenDelete => {
                    format!("forced by {}", c.replace_because.join(", "))
                }
                Action::Update => c.changed_attrs().join(", "),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "| `{}` {} | `{}` | {detail} |",
                c.action.symbol(),
                c.action.verb(),
                c.address
            );
        }
        out.push('\n');
        for c in &active {
            let mut one = String::new();
            render_change(&mut one, c);
            let _ = writeln!(
                out,
                "<details><summary><code>{}</code> {}</summary>\n\n```diff\n{}```\n</details>\n",
                c.address,
                c.action.verb(),
                anstream::adapter::strip_str(&one)
            );
        }
    } else {
        let _ = writeln!(out, "No resource changes.\n");
    }
    if let Some(m) = &plan.migrations {
        let _ = writeln!(out, "#### Migrations against `{}`\n", m.database);
        if let Some(i) = &m.interrupted {
            let _ = writeln!(out, "- **{i}**");
        }
        if let Some(r) = &m.unknown_reason {
            let _ = writeln!(out, "- {r}");
        }
        if m.pending.is_empty() && m.unknown_reason.is_none() {
            let _ = writeln!(out, "None pending.");
        } else {
            let _ = writeln!(out, "Snapshot first: {}\n", m.snapshot);
            for p in &m.pending {
                let _ = writeln!(out, "1. `{p}`");
            }
        }
        for f in &m.findings {
            let mark = match (&f.allowed, f.blocking) {
                (Some(_), _) => "allowed",
                (None, true) => "**blocks apply**",
                (None, false) => "warning",
            };
            let _ = writeln!(
                out,
                "- {}:{}:{} {mark}: {}",
                f.file, f.line, f.column, f.message
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "<details><summary>full plan</summary>\n\n```diff\n{}```\n</details>",
        anstream::adapter::strip_str(&render(plan))
    );
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::plan::{DataRead, Drift, PlanStack, PriorState, Summary};

    fn attr(name: &str, before: Option<Value>, after: After, changed: bool) -> AttrChange {
        AttrChange {
            name: name.into(),
            before,
            after,
            changed,
            forces_replacement: false,
        }
    }

    fn change(address: &str, action: Action, attributes: Vec<AttrChange>) -> Change {
        Change {
            address: address.into(),
            kind: address.split('.').next().unwrap().into(),
            action,
            id: None,
            attributes,
            replace_because: vec![],
            drift: vec![],
            deleted_outside: false,
            notes: vec![],
            warnings: vec![],
            after_changes: vec![],
            adopted: None,
        }
    }

    fn sample() -> Plan {
        let mut replace = change(
            "ssm_parameter.log_level",
            Action::Replace,
            vec![AttrChange {
                forces_replacement: true,
                ..attr(
                    "name",
                    Some(json!("/w/dev/LOG_LEVEL")),
                    After::Known(json!("/w/dev/LOGLEVEL")),
                    true,
                )
            }],
        );
        replace.replace_because = vec!["name".into()];
        let mut update = change(
            "s3_bucket.uploads",
            Action::Update,
            vec![
                attr(
                    "versioning",
                    Some(json!(false)),
                    After::Known(json!(true)),
                    true,
                ),
                attr(
                    "tags",
                    Some(json!({"app": "w"})),
                    After::Known(json!({"app": "w", "env": "dev"})),
                    true,
                ),
                attr(
                    "name",
                    Some(json!("w-dev")),
                    After::Known(json!("w-dev")),
                    false,
                ),
            ],
        );
        update.drift = vec![Drift {
            name: "versioning".into(),
            recorded: Some(json!(true)),
            live: Some(json!(false)),
        }];
        let changes = vec![
            change(
                "ssm_parameter.old",
                Action::Delete,
                vec![attr("name", Some(json!("/w/old")), After::Removed, true)],
            ),
            replace,
            update,
            change(
                "ssm_parameter.secret",
                Action::Update,
                vec![attr(
                    "value",
                    None,
                    After::Sensitive { changed: true },
                    true,
                )],
            ),
            change(
                "ssm_parameter.policy",
                Action::Update,
                vec![attr(
                    "value",
                    Some(json!("line one\nline two\nline three")),
                    After::Known(json!("line one\nline 2\nline three")),
                    true,
                )],
            ),
            change(
                "s3_bucket.logs",
                Action::Create,
                vec![
                    attr("name", None, After::Known(json!("w-dev-logs")), true),
                    attr("arn", None, After::Unknown, false),
                ],
            ),
        ];
        Plan {
            format_version: 1,
            tool_version: "test".into(),
            stack: PlanStack {
                path: "stacks/w.toml".into(),
                name: "w".into(),
                env: Some("dev".into()),
                cli_vars: vec![],
                digest: "d".into(),
                backend: crate::state::BackendRef::Local {
                    path: "state/w/dev.json".into(),
                },
            },
            prior_state: PriorState::NoStateYet,
            destroy: false,
            targets: vec![],
            data: vec![DataRead {
                address: "data.vpc.main".into(),
                attributes: BTreeMap::new(),
            }],
            summary: Plan::summarize(&changes),
            changes,
            migrations: None,
            moves: vec![],
            outputs: vec![],
            secret_fingerprints: BTreeMap::new(),
            adoptions: vec![],
            resolved_intents: vec![],
        }
    }

    #[test]
    fn renders_every_action_kind() {
        let text = anstream::adapter::strip_str(&render(&sample())).to_string();
        insta::assert_snapshot!(text);
    }

    #[test]
    fn no_changes_says_so() {
        let mut p = sample();
        p.changes.clear();
        p.summary = Summary::default();
        let text = anstream::adapter::strip_str(&render(&p)).to_string();
        assert!(
            text.contains("No changes. Your infrastructure matches the stack."),
            "{text}"
        );
    }

    #[test]
    fn a_move_is_shown_as_a_rename_not_a_destroy() {
        let mut p = sample();
        p.changes.clear();
        p.summary = Summary::default();
        p.moves = vec![crate::plan::Move {
            from: "s3_bucket.old".into(),
            to: "s3_bucket.new".into(),
            id: "w-dev-b".into(),
        }];
        let text = anstream::adapter::strip_str(&render(&p)).to_string();
        assert!(
            text.contains("s3_bucket.old → s3_bucket.new (moved)"),
            "{text}"
        );
        assert!(
            text.contains("0 to add, 0 to change, 0 to replace, 0 to destroy, 1 to move."),
            "{text}"
        );
        let md = markdown(&p);
        assert!(
            md.contains("- `s3_bucket.old` → `s3_bucket.new` (moved)"),
            "{md}"
        );
    }

    #[test]
    fn markdown_has_a_table_row_per_change() {
        let md = markdown(&sample());
        insta::assert_snapshot!(md);
    }
}
