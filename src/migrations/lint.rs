//! squawk lint of one migration file, and which rules block a run.

use squawk_linter::{Linter, Rule};
use squawk_syntax::SourceFile;
use squawk_syntax::ast;

use super::files::line_col;
use super::{Finding, MigrationFile};

/// Rules whose findings stop a run unless the file allows them (or `--allow-unsafe`):
/// data loss, long locks on tables in use, or statements that break the one transaction per
/// file the runner relies on. See the module documentation for the reasoning.
pub const BLOCKING_RULES: &[&str] = &[
    "ban-drop-column",
    "ban-drop-table",
    "ban-drop-database",
    "ban-drop-schema",
    "ban-truncate-cascade",
    "adding-required-field",
    "adding-not-nullable-field",
    "adding-field-with-default",
    "adding-serial-primary-key-field",
    "adding-foreign-key-constraint",
    "constraint-missing-not-valid",
    "disallowed-unique-constraint",
    "changing-column-type",
    "renaming-column",
    "renaming-table",
    "require-concurrent-index-creation",
    "require-concurrent-index-deletion",
    "require-concurrent-reindex",
    "require-concurrent-partition-detach",
    "transaction-nesting",
    "ban-uncommitted-transaction",
    "ban-concurrent-index-creation-in-transaction",
];

/// The runner sets `lock_timeout` and `statement_timeout` itself, so these never apply.
const EXCLUDED: &[Rule] = &[Rule::RequireLockTimeout, Rule::RequireStatementTimeout];

/// The module's own finding ids.
pub(crate) const SYNTAX_ERROR: &str = "syntax-error";
pub(crate) const SQUAWK_IGNORE: &str = "squawk-ignore";
pub(crate) const UNUSED_ALLOW: &str = "unused-allow";

const IGNORE_MARKER: &str = "squawk-ignore";
/// Same length as [`IGNORE_MARKER`], so byte offsets are unchanged.
const IGNORE_NEUTRALISED: &str = "squawk_ignore";

/// Whether `rule` is a squawk rule id an allow directive may name.
pub(crate) fn known_rule(rule: &str) -> bool {
    rule.parse::<Rule>().is_ok()
}

/// The known rule id nearest to a misspelt one.
pub(crate) fn closest_rule(rule: &str) -> Option<String> {
    enum_all_rules()
        .into_iter()
        .map(|r| (strsim::levenshtein(rule, &r), r))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, r)| r)
}

fn enum_all_rules() -> Vec<String> {
    // squawk does not re-export its rule iterator: suggest from its default rules.
    let linter = Linter::with_rules(&[], &[]);
    let mut ids: Vec<String> = linter.rules.iter().map(Rule::to_string).collect();
    ids.extend(BLOCKING_RULES.iter().map(|s| s.to_string()));
    ids.sort();
    ids.dedup();
    ids
}

/// Lints one file. Findings are sorted by position; `allowed` is filled from the file's
/// allow directives, and an allow directive that matched nothing is reported as
/// `unused-allow` (a warning).
pub fn lint(file: &MigrationFile) -> Vec<Finding> {
    let path = file.path.display().to_string();
    // `-- squawk-ignore` would drop a finding without a recorded reason: neutralise it
    // (same byte length, so every range still points into the real file) and say so.
    let text = file.sql.replace(IGNORE_MARKER, IGNORE_NEUTRALISED);
    let parse = SourceFile::parse(&text);

    let mut findings: Vec<Finding> = Vec::new();
    let at = |offset: usize| line_col(&file.sql, offset);

    if let Some(error) = parse.errors().first() {
        let (line, column) = at(usize::from(error.range().start()));
        findings.push(Finding {
            file: path.clone(),
            rule: SYNTAX_ERROR.into(),
            message: format!(
                "squawk cannot parse this ({}), so the file was not fully checked for unsafe \
                 changes",
                error.message()
            ),
            help: Some(
                "PostgreSQL decides what is valid; if the file runs, review it by hand".into(),
            ),
            line,
            column,
            blocking: false,
            allowed: None,
        });
    }

    for (offset, _) in file.sql.match_indices(IGNORE_MARKER) {
        let (line, column) = at(offset);
        findings.push(Finding {
            file: path.clone(),
            rule: SQUAWK_IGNORE.into(),
            message: "`squawk-ignore` comments are not honoured by stackwright".into(),
            help: Some(
                "use `-- stackwright:allow <rule> because <reason>` so the reason is recorded"
                    .into(),
            ),
            line,
            column,
            blocking: false,
            allowed: None,
        });
    }

    // A new Linter per file: it accumulates violations across calls.
    let mut linter = Linter::with_rules(&[], EXCLUDED);
    linter.settings.assume_in_transaction = !file.no_transaction;
    for violation in linter.lint(&parse, &text) {
        let rule = violation.code.to_string();
        let (line, column) = at(usize::from(violation.text_range.start()));
        let allowed = file
            .allows
            .iter()
            .find(|a| a.rule == rule)
            .map(|a| a.reason.clone());
        findings.push(Finding {
            file: path.clone(),
            blocking: BLOCKING_RULES.contains(&rule.as_str()),
            rule,
            message: violation.message,
            help: violation.help,
            line,
            column,
            allowed,
        });
    }

    // squawk reports this only for files of several statements (a lone statement may be
    // run outside a transaction by other tools); here a transactional file always runs in
    // one, where PostgreSQL refuses it.
    let cic = Rule::BanConcurrentIndexCreationInTransaction.to_string();
    if !file.no_transaction && !findings.iter().any(|f| f.rule == cic) {
        for stmt in parse.tree().stmts() {
            if let ast::Stmt::CreateIndex(create_index) = stmt
                && let Some(token) = create_index.concurrently_token()
            {
                let (line, column) = at(usize::from(token.text_range().start()));
                findings.push(Finding {
                    file: path.clone(),
                    rule: cic.clone(),
                    message: "`CREATE INDEX CONCURRENTLY` cannot run inside a transaction, and \
                              this file runs in one"
                        .into(),
                    help: Some(
                        "make `-- stackwright:no-transaction` the first line of the file".into(),
                    ),
                    line,
                    column,
                    blocking: true,
                    allowed: file
                        .allows
                        .iter()
                        .find(|a| a.rule == cic)
                        .map(|a| a.reason.clone()),
                });
            }
        }
    }

    for allow in &file.allows {
        if !findings.iter().any(|f| f.rule == allow.rule) {
            findings.push(Finding {
                file: path.clone(),
                rule: UNUSED_ALLOW.into(),
                message: format!(
                    "`-- stackwright:allow {}` matches no finding in this file",
                    allow.rule
                ),
                help: Some("remove it, so it cannot hide a later change".into()),
                line: allow.line,
                column: 1,
                blocking: false,
                allowed: None,
            });
        }
    }

    findings.sort_by_key(|f| (f.line, f.column));
    findings
}

/// The allow reasons recorded in history for a file's findings: `rule: reason; ...`, plus
/// `rule: --allow-unsafe` for blocking findings let through by the flag.
pub(crate) fn allowed_summary(findings: &[Finding], allow_unsafe: bool) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for finding in findings {
        let part = match (&finding.allowed, finding.blocking && allow_unsafe) {
            (Some(reason), _) => format!("{}: {reason}", finding.rule),
            (None, true) => format!("{}: --allow-unsafe", finding.rule),
            (None, false) => continue,
        };
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::migrations::files::parse_directives;

    fn file(sql: &str) -> MigrationFile {
        let path = PathBuf::from("migrations/0009_test.sql");
        let (no_transaction, allows) = parse_directives(&path, sql).unwrap();
        MigrationFile {
            version: 9,
            name: "test".into(),
            path,
            sql: sql.into(),
            checksum: String::new(),
            no_transaction,
            allows,
        }
    }

    #[test]
    fn blocking_rule_ids_are_squawk_ids() {
        for id in BLOCKING_RULES {
            let rule: Rule = id.parse().unwrap_or_else(|_| panic!("{id} is not a rule"));
            assert_eq!(rule.to_string(), *id);
        }
    }

    #[test]
    fn drop_column_blocks_with_position() {
        let f = file("-- cleanup\n\nALTER TABLE users DROP COLUMN legacy;\n");
        let findings = lint(&f);
        let drop = findings
            .iter()
            .find(|x| x.rule == "ban-drop-column")
            .expect("ban-drop-column");
        assert!(drop.blocking && drop.blocks());
        assert_eq!((drop.line, drop.column), (3, 19));
        assert_eq!(drop.file, "migrations/0009_test.sql");
    }

    #[test]
    fn allow_directive_allows_and_unused_is_reported() {
        let f = file(
            "-- stackwright:allow ban-drop-column because nothing reads legacy since v2\n\
             -- stackwright:allow renaming-table because unused\n\
             ALTER TABLE users DROP COLUMN legacy;\n",
        );
        let findings = lint(&f);
        let drop = findings
            .iter()
            .find(|x| x.rule == "ban-drop-column")
            .unwrap();
        assert_eq!(
            drop.allowed.as_deref(),
            Some("nothing reads legacy since v2")
        );
        assert!(!drop.blocks());
        let unused = findings.iter().find(|x| x.rule == UNUSED_ALLOW).unwrap();
        assert_eq!(unused.line, 2);
        assert!(!unused.blocking);
        assert_eq!(
            allowed_summary(&findings, false).as_deref(),
            Some("ban-drop-column: nothing reads legacy since v2")
        );
    }

    #[test]
    fn timeouts_are_not_linted_and_created_tables_are_fine() {
        let f = file(
            "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);\n\
             CREATE INDEX t_v_idx ON t (v);\n",
        );
        let findings = lint(&f);
        assert!(findings.is_empty(), "{findings:#?}");
    }

    #[test]
    fn squawk_ignore_is_not_honoured() {
        let f = file("-- squawk-ignore ban-drop-table\nDROP TABLE users;\n");
        let findings = lint(&f);
        assert!(findings.iter().any(|x| x.rule == SQUAWK_IGNORE));
        let drop = findings
            .iter()
            .find(|x| x.rule == "ban-drop-table")
            .unwrap();
        assert!(drop.blocks());
        assert_eq!(drop.line, 2);
    }

    #[test]
    fn concurrent_index_needs_no_transaction() {
        let sql = "CREATE INDEX CONCURRENTLY IF NOT EXISTS o_idx ON orders (user_id);\n";
        let in_tx = lint(&file(sql));
        assert!(
            in_tx
                .iter()
                .any(|x| x.rule == "ban-concurrent-index-creation-in-transaction" && x.blocks()),
            "{in_tx:#?}"
        );
        let outside = lint(&file(&format!("-- stackwright:no-transaction\n{sql}")));
        assert!(outside.is_empty(), "{outside:#?}");
    }

    #[test]
    fn volatile_default_blocks_constant_default_does_not() {
        let f = file("ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();\n");
        assert!(
            lint(&f)
                .iter()
                .any(|x| x.rule == "adding-field-with-default" && x.blocks())
        );
        let f = file("ALTER TABLE users ADD COLUMN plan text DEFAULT 'free';\n");
        assert!(!lint(&f).iter().any(|x| x.blocks()));
    }

    #[test]
    fn warnings_do_not_block() {
        let f = file("ALTER TABLE users ADD COLUMN n int;\n");
        let findings = lint(&f);
        let int = findings
            .iter()
            .find(|x| x.rule == "prefer-bigint-over-int")
            .unwrap();
        assert!(!int.blocking);
        assert_eq!(allowed_summary(&findings, true), None);
    }
}
