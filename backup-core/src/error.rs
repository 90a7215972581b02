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

/// serde's words for a bad value, in the API's: `invalid type: string "x", expected i64 at line
/// 1 column 9` becomes `"x" (text) is not allowed here; expected a whole number`. Used for the
/// API's error bodies and configuration errors, so that people read JSON's words (a whole
/// number, a list, null), not Rust's (`i64`, `Option`, `struct`).
pub fn in_api_words(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => &message[..at],
        _ => message,
    };
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((value, expected)) = rest.split_once("`, expected ")
    {
        let expected = expected.trim_start_matches("one of ").replace('`', "");
        return format!("{value:?} is not one of {expected}");
    }
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((name, _)) = rest.split_once('`')
    {
        return format!("unknown field {name}");
    }
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some((name, _)) = rest.split_once('`')
    {
        return format!("{name} is required");
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.split_once(", expected ")
        {
            return format!(
                "{} is not allowed here; expected {}",
                found_words(found),
                expected_words(expected)
            );
        }
    }
    message.to_owned()
}

fn found_words(found: &str) -> String {
    if let Some(text) = found.strip_prefix("string ") {
        return format!("{text} (text)");
    }
    for kind in ["integer ", "floating point "] {
        if let Some(n) = found.strip_prefix(kind) {
            return format!("{} (a number)", n.trim_matches('`'));
        }
    }
    match found {
        "null" | "unit value" => "null".into(),
        "map" => "an object".into(),
        "sequence" => "a list".into(),
        other if other.starts_with("boolean") => {
            format!(
                "{} (true or false)",
                other.trim_start_matches("boolean ").trim_matches('`')
            )
        }
        other => other.to_owned(),
    }
}

fn expected_words(expected: &str) -> String {
    match expected.trim() {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a sequence" => "a list".into(),
        "a string" | "a borrowed string" => "text".into(),
        "a map" => "an object".into(),
        other if other.starts_with("struct ") => "an object".into(),
        other if other.starts_with("enum ") => "one of the listed values".into(),
        other => other.replace('`', ""),
    }
}
