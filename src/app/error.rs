//! The one error type of the use cases: what went wrong, what to do about it, and the exit code it stands for
//! ([`Error::code`]). Stage failures inside a run are not errors here: a run that finishes with a failed stage is a
//! result ([`crate::app::run::RunStats`]), with a report.

use std::fmt;

use crate::exit;
use crate::spec::diagnostic::Diagnostics;

/// Why a command could not do what it was asked.
#[derive(Debug)]
pub enum Error {
    /// The experiment file or a `--set` is invalid; nothing ran. Each problem points into its file.
    Invalid(Diagnostics),
    /// Another command-line value is wrong (a `compare` target, a `--sort` column, a `bench --device`).
    Usage(anyhow::Error),
    /// The cache, the reports directory or the cluster cannot be used as they are; `hint` says what to change.
    Environment {
        error: anyhow::Error,
        hint: Option<String>,
    },
    /// The command ran and failed (a Slurm job's stage, a measurement).
    Failed(anyhow::Error),
    /// Ctrl-C or SIGTERM stopped it.
    Interrupted,
}

impl Error {
    pub fn environment(error: anyhow::Error, hint: impl Into<String>) -> Self {
        Self::Environment {
            error,
            hint: Some(hint.into()),
        }
    }

    /// The exit code this error means (the table in `exit` and in docs/src/reference/exit-codes.md).
    pub fn code(&self) -> u8 {
        match self {
            Self::Invalid(_) | Self::Usage(_) => exit::INVALID_EXPERIMENT,
            Self::Environment { .. } => exit::ENVIRONMENT,
            Self::Failed(_) => exit::STAGE_FAILED,
            Self::Interrupted => exit::INTERRUPTED,
        }
    }

    /// The hint, when there is one beside the message (diagnostics carry their own).
    pub fn hint(&self) -> Option<&str> {
        match self {
            Self::Environment { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(d) => write!(f, "{d}"),
            Self::Interrupted => write!(f, "interrupted"),
            Self::Usage(e) | Self::Environment { error: e, .. } | Self::Failed(e) => {
                write!(f, "{e:#}")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<Diagnostics> for Error {
    fn from(d: Diagnostics) -> Self {
        Self::Invalid(d)
    }
}

impl From<crate::spec::diagnostic::Diagnostic> for Error {
    fn from(d: crate::spec::diagnostic::Diagnostic) -> Self {
        Self::Invalid(d.into())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
