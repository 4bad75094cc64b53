//! Diagnostics for experiment files: one problem, where it is (file, line, column, key) and what to do about it.
//!
//! Every validation problem becomes a [`Diagnostic`]; the CLI prints them all and exits with
//! [`crate::exit::INVALID_EXPERIMENT`]. Rendering is done by `annotate-snippets`, the crate rustc's own messages
//! are drawn with.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

use crate::problem::Problem;

/// A piece of text a diagnostic can point into: the experiment file, or one `--set` argument.
#[derive(Debug, Clone)]
pub struct Source {
    /// What the user calls it: a path, or `--set windows.seq_len=0`.
    pub name: String,
    pub text: Arc<str>,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// A span inside a [`Source`].
#[derive(Debug, Clone)]
pub struct Location {
    pub source: Source,
    pub span: Range<usize>,
}

/// One problem with an experiment, printed as `error: …`, a `file:line:col` pointer with the offending text, and a
/// `hint:` when there is something to do.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// What is wrong, and what to do about it.
    pub problem: Problem,
    /// The dotted TOML key the problem is about, e.g. `stages.windows.seq_len`.
    pub key: Option<String>,
    pub location: Option<Box<Location>>,
}

impl Diagnostic {
    /// A diagnostic of a message (a `String`) or of a whole [`Problem`] with its hint.
    pub fn new(problem: impl Into<Problem>) -> Self {
        Self {
            problem: problem.into(),
            key: None,
            location: None,
        }
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn at(mut self, source: &Source, span: Range<usize>) -> Self {
        self.location = Some(Box::new(Location {
            source: source.clone(),
            span,
        }));
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.problem = self.problem.hint(hint);
        self
    }

    /// Renders the diagnostic; `color` adds ANSI styling for terminals.
    pub fn render(&self, color: bool) -> String {
        let title = match &self.key {
            Some(key) => format!("{} (key `{key}`)", self.problem.message),
            None => self.problem.message.clone(),
        };
        let title = Level::ERROR.primary_title(title.as_str());
        let group = match &self.location {
            Some(loc) => {
                let span = clamp_span(&loc.source.text, loc.span.clone());
                title.element(
                    Snippet::source(&*loc.source.text)
                        .path(loc.source.name.as_str())
                        .annotation(AnnotationKind::Primary.span(span)),
                )
            }
            None => Group::with_title(title),
        };
        let mut report = vec![group];
        if let Some(hint) = &self.problem.hint {
            report.push(Group::with_title(
                Level::HELP.secondary_title(hint.as_str()),
            ));
        }
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let mut out = renderer.render(&report).to_string();
        // The rendered snippet shows `path:line:col` only when it has source; keep it grep-able either way.
        if self.location.is_none() {
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

/// Spans from the TOML parser can end past the text (at EOF) or be empty; the renderer wants a visible range.
fn clamp_span(text: &str, span: Range<usize>) -> Range<usize> {
    let start = span.start.min(text.len());
    let end = span.end.clamp(start, text.len());
    if start == end && end < text.len() {
        let next = text[start..].chars().next().map_or(1, char::len_utf8);
        start..start + next
    } else {
        start..end
    }
}

/// All the problems found in one experiment file.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    pub fn render(&self, color: bool) -> String {
        let mut out = String::new();
        for d in &self.0 {
            out.push_str(&d.render(color));
            out.push('\n');
        }
        let n = self.0.len();
        out.push_str(&format!(
            "error: the experiment has {n} problem{}; nothing was run\n",
            if n == 1 { "" } else { "s" }
        ));
        out
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Self(vec![d])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for Diagnostics {}

/// "did you mean `x`?" for a misspelled name, when one of the candidates is close.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

/// The diagnostic of one error serde gave decoding the table `table_key` (`stages.model`, `sweep`): placed by `at`
/// (a file's span or a `--set`'s) at what the error points into and keyed by the parameter there; an unknown name or
/// value with a hint of the nearest that would be taken (else `fallback`); a missing parameter, which has no span, at
/// `whole`.
pub fn decode_problem(
    e: &toml::de::Error,
    table: &toml::de::DeTable,
    table_key: &str,
    whole: Range<usize>,
    at: &dyn Fn(String, Range<usize>) -> Diagnostic,
    fallback: &str,
) -> Diagnostic {
    let raw = e.message().trim();
    let mut message = in_users_words(raw);
    if let Some(first) = message.get(..1) {
        message = first.to_lowercase() + &message[1..];
    }
    let param = e.span().and_then(|span| {
        table
            .iter()
            .find(|(k, v)| v.span().contains(&span.start) || k.span().contains(&span.start))
            .map(|(k, _)| k.get_ref().to_string())
    });
    let mut d = at(message, e.span().unwrap_or(whole));
    d = d.key(param.map_or(table_key.to_string(), |p| format!("{table_key}.{p}")));
    let expected = expected_names(raw);
    let nearest = |word: &str| did_you_mean(word, expected.iter().map(String::as_str));
    if let Some(field) = between(raw, "unknown field `") {
        d.key = Some(format!("{table_key}.{field}"));
        d = d.hint(nearest(field).unwrap_or_else(|| fallback.to_string()));
    } else if let Some(hint) = between(raw, "unknown variant `").and_then(nearest) {
        d = d.hint(hint);
    }
    d
}

/// The name serde quotes after `opening` (`unknown field `seq_lne`` → `seq_lne`).
fn between<'m>(message: &'m str, opening: &str) -> Option<&'m str> {
    message.split_once(opening)?.1.split('`').next()
}

/// The names serde lists after "expected" (the fields or values it would have taken).
fn expected_names(message: &str) -> Vec<String> {
    message
        .split_once("expected")
        .map(|(_, rest)| {
            rest.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// serde's "invalid type: string \"x\", expected u32" in the words of someone editing a TOML file: "expected a whole
/// number (0 or more), found the string \"x\"". Rust's type names mean nothing to them. Other messages pass unchanged.
pub fn in_users_words(message: &str) -> String {
    let Some((head, expected)) = message.rsplit_once(", expected ") else {
        return message.to_string();
    };
    let Some(found) = head
        .strip_prefix("invalid type: ")
        .or_else(|| head.strip_prefix("invalid value: "))
    else {
        return message.to_string();
    };
    format!(
        "expected {}, found {}",
        expected_words(expected),
        found_words(found)
    )
}

/// A type serde expected, as a value in a TOML file.
fn expected_words(expected: &str) -> String {
    let words = match expected.trim() {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a sequence" => "a list",
        "a map" => "a table",
        "a boolean" => "true or false",
        other if other.starts_with("struct ") => "a table",
        other
            if other.starts_with("an array of length ")
                || other.starts_with("a tuple of size ") =>
        {
            let n = other.rsplit(' ').next().unwrap_or("");
            return format!("a list of {n} values");
        }
        other => other,
    };
    words.to_string()
}

/// What serde found (`string "x"`, ``integer `3` ``), as a value in a TOML file.
fn found_words(found: &str) -> String {
    let value = |prefix: &str| found.strip_prefix(prefix).map(str::to_string);
    if let Some(s) = value("string ") {
        return format!("the string {s}");
    }
    if let Some(n) = value("integer ").or_else(|| value("floating point ")) {
        return format!("the number {n}");
    }
    if let Some(b) = value("boolean ") {
        return b;
    }
    match found {
        "sequence" => "a list".into(),
        "map" => "a table".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::in_users_words;

    #[test]
    fn rust_type_names_become_words_a_toml_editor_uses() {
        for (serde, ours) in [
            (
                "invalid type: string \"x\", expected u32",
                "expected a whole number (0 or more), found the string \"x\"",
            ),
            (
                "invalid value: integer `-1`, expected u32",
                "expected a whole number (0 or more), found the number `-1`",
            ),
            (
                "invalid type: integer `3`, expected a string",
                "expected a string, found the number `3`",
            ),
            (
                "invalid type: floating point `0.5`, expected i64",
                "expected a whole number, found the number `0.5`",
            ),
            (
                "invalid type: string \"a\", expected f32",
                "expected a number, found the string \"a\"",
            ),
            (
                "invalid type: map, expected a sequence",
                "expected a list, found a table",
            ),
            (
                "invalid type: boolean `true`, expected f64",
                "expected a number, found `true`",
            ),
            (
                "invalid length 3, expected an array of length 2",
                "invalid length 3, expected an array of length 2",
            ),
            (
                "unknown field `x`, expected `y`",
                "unknown field `x`, expected `y`",
            ),
        ] {
            assert_eq!(in_users_words(serde), ours, "{serde}");
        }
    }
}
