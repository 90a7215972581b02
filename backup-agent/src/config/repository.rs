//! One repository of the agent's file: where it is, how to open it (the password file, backend
//! credentials in `env` or a `.env` file), and what the agent allows there (`allowedPaths`,
//! `appendOnly`, `retentionFloor`). Its secrets never leave the agent: `Debug` hides them.

use std::{collections::BTreeMap, path::PathBuf};

use backup_config::Loaded;
use backup_core::Retention;
use serde::{Deserialize, Serialize};

use super::{AgentConfig, ConfigError};

/// One repository: where it is, how to open it, and what the agent allows there.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepositoryConfig {
    /// restic's repository location (`/srv/restic`, `s3:...`, `sftp:...`).
    pub url: String,
    /// A file holding the repository password.
    pub password_file: PathBuf,
    /// Backend credentials and other environment for restic (`AWS_ACCESS_KEY_ID` ...).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A file of `KEY=value` lines with more environment (read at each run).
    #[serde(default)]
    pub env_file: Option<PathBuf>,
    /// Create the repository (`restic init`) when it does not exist yet.
    #[serde(default)]
    pub init_if_missing: bool,
    /// Absolute path prefixes a backup into this repository may read (default `/`).
    #[serde(default = "all_paths")]
    pub allowed_paths: Vec<PathBuf>,
    /// Never prune or forget here, whatever a policy says (default false).
    #[serde(default)]
    pub append_only: bool,
    /// Keep rules every prune here keeps at least (default keepLast 3, keepWithinDays 7;
    /// `{}` turns the floor off).
    #[serde(default = "default_floor")]
    pub retention_floor: Retention,
}

/// The keys of one repository (`repositories.<name>.<key>`) for the configuration reference:
/// key, default, what it does. A unit test holds it to [`RepositoryConfig`]'s fields.
pub const REPOSITORY_KEYS: &[(&str, &str, &str)] = &[
    (
        "url",
        "(required)",
        "restic's repository (`/srv/restic`, `rest:https://...`, `s3:...`, `sftp:...`)",
    ),
    (
        "passwordFile",
        "(required)",
        "a file holding the repository's password",
    ),
    (
        "env",
        "none",
        "backend credentials and other environment for restic (`AWS_ACCESS_KEY_ID`: ...)",
    ),
    (
        "envFile",
        "none",
        "a file of `KEY=value` lines (the .env format: a `$` outside single quotes expands)",
    ),
    (
        "initIfMissing",
        "`false`",
        "create the repository (`restic init`) when it does not exist",
    ),
    (
        "allowedPaths",
        "`[\"/\"]`",
        "absolute path prefixes a backup into this repository may read; a task asking for another path fails permanently, naming this key",
    ),
    (
        "appendOnly",
        "`false`",
        "never prune or forget here: a prune task fails permanently, naming this key (pair it with `rest-server --append-only`)",
    ),
    (
        "retentionFloor",
        "`{keepLast: 3, keepWithinDays: 7}`",
        "keep rules every prune keeps at least (each rule the larger of the policy's and the floor's; `{}` turns it off)",
    ),
];

fn all_paths() -> Vec<PathBuf> {
    vec![PathBuf::from("/")]
}

/// The least a prune keeps unless the agent's file says otherwise: the last three snapshots,
/// and every snapshot of the last seven days. A count alone cannot protect history (a stolen
/// tenant token can make as many near-empty snapshots as the count, then prune down to them);
/// a time window cannot be filled by fresh snapshots, so a week of history survives any
/// sequence of API calls.
pub fn default_floor() -> Retention {
    Retention {
        keep_last: Some(3),
        keep_within_days: Some(7),
        ..Retention::default()
    }
}

impl RepositoryConfig {
    /// A repository at `url` opened with the password in `password_file`, with the defaults
    /// for everything else.
    pub fn new(url: impl Into<String>, password_file: impl Into<PathBuf>) -> Self {
        Self {
            url: url.into(),
            password_file: password_file.into(),
            env: BTreeMap::new(),
            env_file: None,
            init_if_missing: false,
            allowed_paths: all_paths(),
            append_only: false,
            retention_floor: default_floor(),
        }
    }
}

/// A URL with the credentials it may carry hidden, also inside a restic repository URL
/// (`rest:https://user:pass@host/` -> `rest:https://***@host/`).
pub(crate) fn hide_credentials(url: &str) -> String {
    // Without a scheme (`user:pass@host:8080`), the authority starts the text.
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

impl std::fmt::Debug for RepositoryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The env values are backend credentials: names only.
        let env: Vec<&String> = self.env.keys().collect();
        f.debug_struct("RepositoryConfig")
            .field("url", &hide_credentials(&self.url))
            .field("password_file", &self.password_file)
            .field("env (values hidden)", &env)
            .field("env_file", &self.env_file)
            .field("init_if_missing", &self.init_if_missing)
            .field("allowed_paths", &self.allowed_paths)
            .field("append_only", &self.append_only)
            .field("retention_floor", &self.retention_floor)
            .finish()
    }
}

/// A misspelt keep rule in a floor would leave the floor off without a word: unknown keys are
/// refused.
pub(super) fn check_floor_keys(loaded: &Loaded<AgentConfig>) -> Result<(), ConfigError> {
    const RULES: [&str; 7] = [
        "keepLast",
        "keepHourly",
        "keepDaily",
        "keepWeekly",
        "keepMonthly",
        "keepYearly",
        "keepWithinDays",
    ];
    let Some(repositories) = loaded.raw.get("repositories").and_then(|r| r.as_object()) else {
        return Ok(());
    };
    for (name, repository) in repositories {
        let floor = repository.get("retentionFloor").and_then(|f| f.as_object());
        if let Some(unknown) = floor.and_then(|f| f.keys().find(|k| !RULES.contains(&k.as_str()))) {
            let key = format!("repositories.{name}.retentionFloor");
            return Err(ConfigError(format!(
                "{key}.{unknown}: not a keep rule; the rules are {} (from {})",
                RULES.join(", "),
                loaded.origin(&key)
            )));
        }
    }
    Ok(())
}

/// The `KEY=value` lines of a repository's `envFile`, in the `.env` format (dotenvy): `#`
/// comments, `export`, quotes. As in that format, `$NAME` and `${NAME}` in an unquoted or
/// double-quoted value expand (from the lines above, then the agent's environment): write a
/// value with a literal `$` (a password, a secret key) in single quotes. A line that does not
/// parse is skipped with a warning naming its number, and so is a `$` that would expand.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    for (n, line) in text.lines().enumerate() {
        if expands(line) {
            tracing::warn!(
                line = n + 1,
                "a value in an envFile has a $ outside single quotes; it expands like a variable: put the value in single quotes to keep the $"
            );
        }
    }
    let mut vars = Vec::new();
    for (n, item) in dotenvy::from_read_iter(text.as_bytes()).enumerate() {
        match item {
            Ok(pair) => vars.push(pair),
            Err(e) => {
                tracing::warn!(item = n + 1, error = %e, "skipping a line of an envFile that does not parse")
            }
        }
    }
    vars
}

/// Whether a `.env` line's value holds a `$` that dotenvy expands (outside single quotes).
fn expands(line: &str) -> bool {
    let line = line.trim_start();
    if line.starts_with('#') {
        return false;
    }
    let Some((_, value)) = line.split_once('=') else {
        return false;
    };
    let value = value.trim();
    !(value.starts_with('\'') && value.ends_with('\'')) && value.contains('$')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_are_hidden_also_inside_a_restic_url() {
        for (url, shown) in [
            (
                "rest:https://u:p@h:8000/repo",
                "rest:https://***@h:8000/repo",
            ),
            ("http://u:p@h", "http://***@h"),
            ("s3:https://s3.example/b@x", "s3:https://s3.example/b@x"),
            ("/srv/repo", "/srv/repo"),
            ("u:p@h:8080", "***@h:8080"),
        ] {
            assert_eq!(hide_credentials(url), shown);
        }
    }

    #[test]
    fn the_reference_lists_every_repository_key_and_the_floor_default() {
        let value = serde_json::to_value(RepositoryConfig::new("/r", "/pw")).expect("json");
        let fields: Vec<&str> = value
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut documented: Vec<&str> = REPOSITORY_KEYS.iter().map(|(k, _, _)| *k).collect();
        let mut sorted = fields.clone();
        sorted.sort_unstable();
        documented.sort_unstable();
        assert_eq!(sorted, documented);
        let floor = REPOSITORY_KEYS
            .iter()
            .find(|(k, _, _)| *k == "retentionFloor")
            .map(|(_, d, _)| d.replace([' ', '`'], ""))
            .expect("retentionFloor");
        let actual = serde_json::to_string(&default_floor())
            .expect("json")
            .replace('"', "");
        assert_eq!(floor, actual);
    }
}
