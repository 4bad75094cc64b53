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
