//! The crate's one error type, and the retry class every error of the project carries.
//!
//! A retry decision must never parse a message: it asks the error for its [`ErrorClass`].

use serde::{Deserialize, Serialize};

/// Whether a failure may go away by itself (retry it) or will not (fail at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorClass {
    /// Worth another attempt later: a lock conflict, a network fault, an unknown failure.
    Retriable,
    /// Will fail the same way every time: a wrong password, a missing repository, bad input.
    Permanent,
}

/// Errors of `backup-core`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A value is outside what the field allows. `field` uses the wire (camelCase) name.
    #[error("{field}: {value} is not allowed; expected {expected}")]
    Invalid {
        /// The offending field, as named on the wire (`maxConcurrentTasks`, `schedule.cron`).
        field: String,
        /// The rejected value, rendered for a person.
        value: String,
        /// What the field accepts (`1-64`, `a humantime duration of at least 1s`).
        expected: String,
    },
    /// A process could not be run at all (spawn failed, its pipes broke).
    #[error("running {program}: {message}")]
    Process {
        /// The program that was to run.
        program: String,
        /// What went wrong, for a person.
        message: String,
        /// Whether trying again may help (a missing binary does not).
        class: ErrorClass,
    },
}

impl Error {
    /// Builds [`Error::Invalid`].
    pub fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            field: field.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// The retry class: invalid input is permanent; a process error says itself.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Invalid { .. } => ErrorClass::Permanent,
            Self::Process { class, .. } => *class,
        }
    }

    /// The field an [`Error::Invalid`] names.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::Process { .. } => None,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
