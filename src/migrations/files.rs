//! Reading the migrations directory: file names, directives, checksums, the command-mode
//! folder digest, and offset → line:column.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::lint::known_rule;
use super::{Allow, MigrationError, MigrationFile};

const DIRECTIVE_PREFIX: &str = "stackwright:";
const NO_TRANSACTION: &str = "no-transaction";
const ALLOW: &str = "allow";
const ALLOW_SYNTAX: &str = "`-- stackwright:allow <rule> because <reason>`";

/// Every `NNNN_name.sql` in `dir` (not recursive), sorted by version.
///
/// Any other `*.sql` name, two files with one version, a file that is not UTF-8 or a
/// malformed `-- stackwright:` directive is an error naming the file. Files that do not end
/// in `.sql`, and dotfiles, are ignored.
pub fn load_dir(dir: &Path) -> Result<Vec<MigrationFile>, MigrationError> {
    let io = |source| MigrationError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut by_version: BTreeMap<i64, MigrationFile> = BTreeMap::new();
    let mut entries: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".sql") {
            continue;
        }
        if !fs::metadata(&path).map(|m| m.is_file()).unwrap_or(false) {
            continue;
        }
        entries.push(path);
    }
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (version, stem) =
            parse_file_name(&name).map_err(|reason| MigrationError::BadFileName {
                path: path.clone(),
                reason,
            })?;
        let bytes = fs::read(&path).map_err(|source| MigrationError::Io {
            path: path.clone(),
            source,
        })?;
        let sql = String::from_utf8(bytes).map_err(|e| MigrationError::BadFileName {
            path: path.clone(),
            reason: format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        })?;
        let checksum = hex::encode(Sha256::digest(sql.as_bytes()));
        let (no_transaction, allows) = parse_directives(&path, &sql)?;
        if let Some(first) = by_version.get(&version) {
            return Err(MigrationError::DuplicateVersion {
                version,
                first: first.path.clone(),
                second: path,
            });
        }
        by_version.insert(
            version,
            MigrationFile {
                version,
                name: stem,
                path,
                sql,
                checksum,
                no_transaction,
                allows,
            },
        );
    }
    Ok(by_version.into_values().collect())
}

/// `0001_create_users.sql` → `(1, "create_users")`; `Err` says what is wrong.
pub fn parse_file_name(file_name: &str) -> Result<(i64, String), String> {
    let stem = file_name
        .strip_suffix(".sql")
        .ok_or_else(|| "does not end in .sql".to_string())?;
    let digits = stem.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err("the name does not start with a version number".into());
    }
    let (number, rest) = stem.split_at(digits);
    let name = rest
        .strip_prefix('_')
        .ok_or_else(|| "the version number is not followed by an underscore".to_string())?;
    if name.is_empty() {
        return Err("there is no name after the version number".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!("the name contains {bad:?}"));
    }
    let version: i64 = number
        .parse()
        .map_err(|_| format!("version {number} is too large"))?;
    Ok((version, name.to_string()))
}

/// The body of a `-- stackwright:...` comment line, if this line is one.
fn directive(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("--")?.trim_start();
    rest.strip_prefix(DIRECTIVE_PREFIX).map(str::trim)
}

/// `(no_transaction, allows)` of a file's text.
pub(crate) fn parse_directives(
    path: &Path,
    sql: &str,
) -> Result<(bool, Vec<Allow>), MigrationError> {
    let bad = |line: usize, message: String| MigrationError::BadDirective {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut no_transaction = false;
    let mut allows: Vec<Allow> = Vec::new();
    for (index, line) in sql.lines().enumerate() {
        let number = index + 1;
        let line = if index == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        let Some(body) = directive(line) else {
            continue;
        };
        if body == NO_TRANSACTION {
            if number != 1 {
                return Err(bad(
                    number,
                    "`-- stackwright:no-transaction` must be the first line of the file to \
                     take effect: move it there"
                        .into(),
                ));
            }
            no_transaction = true;
        } else if body == ALLOW || body.starts_with("allow ") || body.starts_with("allow\t") {
            let allow = parse_allow(&body[ALLOW.len()..], number).map_err(|m| bad(number, m))?;
            if let Some(previous) = allows.iter().find(|a| a.rule == allow.rule) {
                return Err(bad(
                    number,
                    format!(
                        "`{}` is already allowed on line {}: give one reason per rule",
                        allow.rule, previous.line
                    ),
                ));
            }
            allows.push(allow);
        } else {
            let word = body.split_whitespace().next().unwrap_or("");
            return Err(bad(
                number,
                format!(
                    "unknown directive `stackwright:{word}`: the directives are \
                     `-- stackwright:no-transaction` (first line) and {ALLOW_SYNTAX}"
                ),
            ));
        }
    }
    Ok((no_transaction, allows))
}

/// `<rule> because <reason>` (the text after `allow`).
pub(crate) fn parse_allow(text: &str, line: usize) -> Result<Allow, String> {
    let text = text.trim();
    let malformed = |what: &str| format!("malformed allow comment ({what}): write {ALLOW_SYNTAX}");
    let mut parts = text.splitn(2, char::is_whitespace);
    let rule = parts.next().unwrap_or("").trim();
    if rule.is_empty() {
        return Err(malformed("no rule"));
    }
    if rule == "because" {
        return Err(malformed("no rule before `because`"));
    }
    let rest = parts.next().unwrap_or("").trim_start();
    let reason = match rest.strip_prefix("because") {
        Some(r) if r.is_empty() || r.starts_with(char::is_whitespace) => r.trim(),
        _ => return Err(malformed("no `because <reason>` after the rule")),
    };
    if reason.is_empty() {
        return Err(malformed("the reason after `because` is empty"));
    }
    if !known_rule(rule) {
        let suggestion = super::lint::closest_rule(rule)
            .map(|r| format!(" (did you mean `{r}`?)"))
            .unwrap_or_default();
        return Err(format!(
            "`{rule}` is not a squawk rule{suggestion}; the rule ids are listed at \
             https://squawkhq.com/docs/rules"
        ));
    }
    Ok(Allow {
        rule: rule.to_string(),
        reason: reason.to_string(),
        line,
    })
}

/// 1-based `(line, column)` of a byte offset in `text`; the column counts characters.
/// Offsets past the end (or inside a character) are clamped.
pub fn line_col(text: &str, byte_offset: usize) -> (usize, usize) {
    let mut offset = byte_offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Byte offset of PostgreSQL's 1-based error position, which counts characters.
pub(crate) fn char_position_to_byte(text: &str, position: usize) -> usize {
    text.char_indices()
        .nth(position.saturating_sub(1))
        .map_or(text.len(), |(i, _)| i)
}

/// Command mode: sha256 over every regular file under `dir` (sorted relative paths with `/`
/// separators, each followed by its length and contents). Skips dotfiles and dot
/// directories, `__pycache__` and `*.pyc`, so a tool's caches do not change the digest.
pub fn dir_digest(dir: &Path) -> Result<String, MigrationError> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    collect(dir, "", &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for (rel, path) in files {
        let contents = fs::read(&path).map_err(|source| MigrationError::Io {
            path: path.clone(),
            source,
        })?;
        hasher.update(rel.as_bytes());
        hasher.update([0u8]);
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(&contents);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn collect(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), MigrationError> {
    let io = |source| MigrationError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "__pycache__" || name.ends_with(".pyc") {
            continue;
        }
        let path = entry.path();
        let rel = format!("{prefix}{name}");
        let kind = entry.file_type().map_err(io)?;
        if kind.is_dir() {
            collect(&path, &format!("{rel}/"), out)?;
        } else if kind.is_file()
            || (kind.is_symlink() && fs::metadata(&path).is_ok_and(|m| m.is_file()))
        {
            out.push((rel, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(
            parse_file_name("0001_create_users.sql"),
            Ok((1, "create_users".into()))
        );
        assert_eq!(
            parse_file_name("20240101120000_add-index.sql"),
            Ok((20240101120000, "add-index".into()))
        );
        assert_eq!(parse_file_name("42_x.sql"), Ok((42, "x".into())));
        for bad in [
            "create_users.sql",
            "0001create_users.sql",
            "0001_.sql",
            "0001.sql",
            "0001_create users.sql",
            "0001_create.users.sql",
            "0001_create_users.txt",
            "99999999999999999999_big.sql",
        ] {
            assert!(parse_file_name(bad).is_err(), "{bad} should be rejected");
        }
        assert!(
            parse_file_name("99999999999999999999_big.sql")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn allow_comments() {
        let a = parse_allow(" ban-drop-column because nothing reads it since v2.3", 4).unwrap();
        assert_eq!(a.rule, "ban-drop-column");
        assert_eq!(a.reason, "nothing reads it since v2.3");
        assert_eq!(a.line, 4);
        assert!(
            parse_allow(" ban-drop-column", 1)
                .unwrap_err()
                .contains("because")
        );
        assert!(parse_allow(" ban-drop-column because   ", 1).is_err());
        assert!(parse_allow(" ban-drop-column becauseX y", 1).is_err());
        assert!(parse_allow(" because y", 1).is_err());
        assert!(parse_allow("", 1).is_err());
        let unknown = parse_allow(" ban-drop-colum because x", 1).unwrap_err();
        assert!(
            unknown.contains("did you mean `ban-drop-column`"),
            "{unknown}"
        );
    }

    #[test]
    fn directives() {
        let p = Path::new("m/0001_x.sql");
        let (nt, allows) = parse_directives(
            p,
            "-- stackwright:no-transaction\n--stackwright:allow renaming-column because old name unused\nSELECT 1;\n",
        )
        .unwrap();
        assert!(nt);
        assert_eq!(allows.len(), 1);
        assert_eq!(allows[0].line, 2);

        let (nt, _) = parse_directives(p, "SELECT 1; -- stackwright:no-transaction\n").unwrap();
        assert!(!nt, "only a whole comment line counts");

        let err = parse_directives(p, "SELECT 1;\n-- stackwright:no-transaction\n").unwrap_err();
        assert!(err.to_string().starts_with("m/0001_x.sql:2: "), "{err}");

        let err = parse_directives(p, "\n\n-- stackwright:allow ban-drop-table\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("m/0001_x.sql:3: malformed allow comment"),
            "{text}"
        );
        assert!(text.contains("because <reason>"), "{text}");

        let err = parse_directives(p, "-- stackwright:no-transactoin\n").unwrap_err();
        assert!(err.to_string().contains("unknown directive"), "{err}");

        let err = parse_directives(
            p,
            "-- stackwright:allow ban-drop-table because a\n-- stackwright:allow ban-drop-table because b\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("already allowed on line 1"),
            "{err}"
        );
    }

    #[test]
    fn offsets_to_line_col() {
        let text = "ab\ncdé\nxyz";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 1), (1, 2));
        assert_eq!(line_col(text, 2), (1, 3));
        assert_eq!(line_col(text, 3), (2, 1));
        // 'é' is two bytes: the 'x' on line 3 starts at byte 8.
        assert_eq!(line_col(text, 8), (3, 1));
        assert_eq!(line_col(text, 7), (2, 4));
        assert_eq!(
            line_col(text, 6),
            (2, 3),
            "inside a char clamps to its start"
        );
        assert_eq!(line_col(text, 999), (3, 4));
        // Server positions count characters, 1-based.
        assert_eq!(char_position_to_byte(text, 1), 0);
        assert_eq!(char_position_to_byte(text, 7), 7);
        assert_eq!(char_position_to_byte(text, 8), 8);
        assert_eq!(line_col(text, char_position_to_byte(text, 8)), (3, 1));
        assert_eq!(char_position_to_byte(text, 100), text.len());
    }

    #[test]
    fn digest_skips_caches_and_tracks_contents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("versions/__pycache__")).unwrap();
        fs::write(root.join("env.py"), "x = 1\n").unwrap();
        fs::write(root.join("versions/001_a.py"), "a\n").unwrap();
        let d1 = dir_digest(root).unwrap();
        fs::write(
            root.join("versions/__pycache__/001_a.cpython-311.pyc"),
            "junk",
        )
        .unwrap();
        fs::write(root.join("versions/x.pyc"), "junk").unwrap();
        fs::write(root.join(".DS_Store"), "junk").unwrap();
        assert_eq!(dir_digest(root).unwrap(), d1);
        fs::write(root.join("versions/001_a.py"), "b\n").unwrap();
        let d2 = dir_digest(root).unwrap();
        assert_ne!(d2, d1);
        fs::rename(
            root.join("versions/001_a.py"),
            root.join("versions/002_a.py"),
        )
        .unwrap();
        assert_ne!(dir_digest(root).unwrap(), d2, "renames change the digest");
        assert_eq!(d1.len(), 64);
    }

    #[test]
    fn load_dir_sorts_and_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("0010_b.sql"), "SELECT 2;\n").unwrap();
        fs::write(root.join("0002_a.sql"), "SELECT 1;\n").unwrap();
        fs::write(root.join("README.md"), "notes").unwrap();
        let files = load_dir(root).unwrap();
        assert_eq!(
            files.iter().map(|f| f.version).collect::<Vec<_>>(),
            vec![2, 10]
        );
        assert_eq!(
            files[0].checksum,
            hex::encode(Sha256::digest(b"SELECT 1;\n"))
        );

        fs::write(root.join("002_again.sql"), "SELECT 3;\n").unwrap();
        let err = load_dir(root).unwrap_err();
        assert!(
            matches!(err, MigrationError::DuplicateVersion { version: 2, .. }),
            "{err}"
        );
        fs::remove_file(root.join("002_again.sql")).unwrap();

        fs::write(root.join("seed.sql"), "SELECT 3;\n").unwrap();
        let err = load_dir(root).unwrap_err().to_string();
        assert!(err.contains("seed.sql"), "{err}");
    }
}
