//! `stackwright audit`: verifies a state's history (the hash chain, and that the state file
//! is what its last record produced) and prints it as a table of who did what, when.
//! No AWS call and no secret read.

use super::commands::{backend_for, load_stack_offline};
use super::{Exit, StackArgs, output};
use crate::state::history::{Checked, Report};

pub async fn run(args: &StackArgs, json: bool) -> anyhow::Result<Exit> {
    let stack = load_stack_offline(args)?;
    let backend = backend_for(args, &stack).await?;
    let backend = &*backend;
    let report = backend.audit().await?;
    if json {
        output::println(&serde_json::to_string_pretty(&serde_json::json!({
            "state": backend.describe(),
            "verified": report.broken.is_none(),
            "broken": report.broken,
            "records": report.records,
        }))?);
    } else {
        output::print(&table(&backend.describe(), &report));
    }
    Ok(match &report.broken {
        None => Exit::Success,
        Some(b) => {
            if !json {
                output::eprintln(&format!(
                    "{} record {} does not verify: {}\n  = help: compare the history and the state file with their last reviewed commit (git log -p), and restore them from git",
                    output::paint(anstyle::AnsiColor::Red.on_default().bold(), "Error:"),
                    b.record,
                    b.why
                ));
            }
            Exit::Failure
        }
    })
}

/// One line per record: number, time, actor, command, serials and what it touched.
fn table(state: &str, report: &Report) -> String {
    let mut out = format!(
        "History of {state}: {} record{}\n\n",
        report.records.len(),
        if report.records.len() == 1 { "" } else { "s" }
    );
    if report.records.is_empty() {
        out.push_str("  (no records: nothing has written this state yet)\n");
        return out;
    }
    let rows: Vec<[String; 6]> = report.records.iter().map(row).collect();
    let head = ["#", "when (UTC)", "who", "command", "serial", "what"];
    let mut widths = head.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut l = String::from(" ");
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i == 5 {
                l.push_str(&format!(" {c}"));
            } else {
                l.push_str(&format!(" {c:<w$}"));
            }
        }
        l.trim_end().to_owned() + "\n"
    };
    out.push_str(&line(head));
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
    }
    if report.broken.is_none() {
        out.push_str(&format!(
            "\nThe history verifies: every record chains to the one before, and the state file is what record {} produced.\n",
            report
                .records
                .iter()
                .rposition(|r| !r.interrupted)
                .map_or(0, |i| i + 1)
        ));
    }
    out
}

fn row(c: &Checked) -> [String; 6] {
    let r = &c.record;
    let who = match (&r.actor.caller_arn, &r.actor.git_user) {
        (Some(arn), _) => format!("{}@{} ({arn})", r.actor.user, r.actor.host),
        (None, Some(g)) => format!("{}@{} ({g})", r.actor.user, r.actor.host),
        (None, None) => format!("{}@{}", r.actor.user, r.actor.host),
    };
    let serial = format!(
        "{}→{}",
        r.serial_before.map_or("-".to_owned(), |s| s.to_string()),
        r.serial_after
    );
    let mut what: Vec<String> = r
        .changes
        .iter()
        .map(|t| match t.outcome.as_str() {
            "done" => format!("{} {}", t.action, t.address),
            o => format!("{} {} ({o})", t.action, t.address),
        })
        .collect();
    if !r.migrations.is_empty() {
        what.push(format!("migrations {}", r.migrations.join(", ")));
    }
    if !r.snapshots.is_empty() {
        what.push(format!("snapshot {}", r.snapshots.join(", ")));
    }
    if let Some(n) = &r.note {
        what.push(n.clone());
    }
    // First, so that a long list of changes never hides it.
    if let Some(reason) = &r.override_reason {
        what.insert(0, format!("OUTSIDE THE DEPLOY WINDOWS: {reason}"));
    }
    if c.interrupted {
        what.push("INTERRUPTED: the state was not written".into());
    }
    let shown = if what.len() > 4 {
        let more = what.len() - 3;
        what.truncate(3);
        format!("{}, and {more} more", what.join(", "))
    } else if what.is_empty() {
        "(no resource changed)".into()
    } else {
        what.join(", ")
    };
    [
        r.seq.to_string(),
        r.time.replace('T', " ").trim_end_matches('Z').to_owned(),
        who,
        r.command.clone(),
        serial,
        shown,
    ]
}
