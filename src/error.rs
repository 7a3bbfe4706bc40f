//! User-facing errors: what is wrong, where (file:line:column or a resource address) and
//! how to fix it. Rendered once, at the top, by the CLI.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A place in a source file, kept as data so the message can show the line with a caret.
#[derive(Clone, Debug)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub line_text: String,
    pub width: usize,
}

impl Location {
    /// Locates a byte span of `source` (the contents of `file`).
    pub fn from_span(file: &Path, source: &str, span: Range<usize>) -> Self {
        let start = span.start.min(source.len());
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let end = span.end.clamp(start, line_end);
        Location {
            file: file.to_owned(),
            line,
            column,
            line_text: source[line_start..line_end]
                .trim_end_matches('\r')
                .to_owned(),
            width: source[start..end].chars().count().max(1),
        }
    }
}

/// One clear error. `Display` renders it in full, ready for the terminal.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub message: String,
    pub location: Option<Box<Location>>,
    /// A resource address when the problem is about a resource rather than a line.
    pub address: Option<String>,
    pub hint: Option<String>,
    /// Further errors found in the same pass (a stack file reports all of its resources'
    /// errors at once, in file order), rendered after this one.
    pub also: Vec<Diagnostic>,
}

impl Location {
    /// Replaces the underlined text of the snippet (a secret's value) with `<redacted>`,
    /// so that the line shown in CI logs never carries it.
    pub fn redact(&mut self) {
        const MASK: &str = "<redacted>";
        let chars: Vec<char> = self.line_text.chars().collect();
        let start = (self.column - 1).min(chars.len());
        let end = (start + self.width).min(chars.len());
        let mut text: String = chars[..start].iter().collect();
        text.push_str(MASK);
        text.extend(&chars[end..]);
        self.line_text = text;
        self.width = MASK.len();
    }
}

impl Diagnostic {
    /// The same diagnostic with its snippet's underlined value redacted.
    pub fn redacted(mut self) -> Self {
        if let Some(loc) = self.location.as_deref_mut() {
            loc.redact();
        }
        self
    }

    pub fn new(message: impl Into<String>) -> Self {
        Diagnostic {
            message: message.into(),
            location: None,
            address: None,
            hint: None,
            also: Vec::new(),
        }
    }

    /// One diagnostic carrying all of `errors` (at least one), sorted by place in the file.
    pub fn all(mut errors: Vec<Diagnostic>) -> Option<Diagnostic> {
        errors.sort_by_key(|d| {
            d.location
                .as_deref()
                .map_or((usize::MAX, 0), |l| (l.line, l.column))
        });
        let mut first = errors.first()?.clone();
        first.also = errors.split_off(1);
        Some(first)
    }
    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(Box::new(location));
        self
    }
    pub fn for_address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.location.as_deref(), &self.address) {
            (Some(loc), _) => write!(
                f,
                "{}:{}:{}: {}",
                loc.file.display(),
                loc.line,
                loc.column,
                self.message
            )?,
            (None, Some(addr)) => write!(f, "{addr}: {}", self.message)?,
            (None, None) => f.write_str(&self.message)?,
        }
        if let Some(loc) = self.location.as_deref() {
            let gutter = loc.line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{} | {}\n{:gutter$} | {}{}",
                "",
                loc.line,
                loc.line_text,
                "",
                " ".repeat(loc.column - 1),
                "^".repeat(loc.width),
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = help: {hint}")?;
        }
        for d in &self.also {
            write!(f, "\n\nError: {d}")?;
        }
        if !self.also.is_empty() {
            write!(f, "\n\n{} errors found", self.also.len() + 1)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// The closest of `candidates` to a misspelt `name`, for "did you mean" hints.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_points_at_line_and_column() {
        let src = "[stack]\nname = 1\n";
        let loc = Location::from_span(Path::new("s.toml"), src, 15..16);
        assert_eq!((loc.line, loc.column, loc.width), (2, 8, 1));
        let d = Diagnostic::new("wrong type").at(loc).hint("use a string");
        assert_eq!(
            d.to_string(),
            "s.toml:2:8: wrong type\n  |\n2 | name = 1\n  |        ^\n  = help: use a string"
        );
    }

    #[test]
    fn suggests_close_names_only() {
        let names = ["versioning", "encryption"];
        assert_eq!(suggest("versionning", names), Some("versioning"));
        assert_eq!(suggest("zzz", names), None);
    }
}
