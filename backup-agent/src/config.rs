//! The agent's configuration: the seed's `agent.yaml` keys and the agent's own, from a YAML file
//! (`--config`), then `BACKUP_AGENT_*` environment variables, then defaults.
//!
//! The settings keys (`maxConcurrentTasks` ...) are *proposals*: the agent sends them in its
//! heartbeats and the server adopts them until someone PATCHes the agent; the server's answer is
//! what the agent applies. Repositories and their secrets live only here: the server knows names.
//!
//! Errors name the key, the bad value, the allowed range and where the value came from.

use std::{collections::BTreeMap, path::PathBuf, sync::LazyLock};

use backup_config::{Configuration, Key, Kind, Loaded, Loader};
use backup_core::{Range, Retention, SETTING_FIELDS, SettingsPatch, validate_repository_name};
use serde::{Deserialize, Serialize};

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

/// Everything `backup-agent run` needs. Its `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AgentConfig {
    /// The server's base URL.
    pub orchestrator_url: String,
    /// Seconds between claims for new tasks.
    pub polling_interval_seconds: u32,
    /// Seconds an idle agent's claim asks the server to wait for a task (a long poll: run-now
    /// starts at once); 0 polls every `pollingIntervalSeconds` instead.
    pub claim_wait_seconds: u32,
    /// Seconds between heartbeats.
    pub heartbeat_interval_seconds: u32,
    /// This agent's id (from `POST /agents`).
    pub agent_id: Option<String>,
    /// Its token (or `tokenFile`).
    pub token: Option<String>,
    /// A file holding the token.
    pub token_file: Option<PathBuf>,
    /// The name given to restic's `--host` for every command (default: the machine's host
    /// name); containers and cloned machines set it.
    pub host: Option<String>,
    /// The file this configuration was read from, if any (excluded from backups, like every
    /// secret of the agent's).
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Where the state file, restic's cache and diagnostics live.
    pub state_dir: PathBuf,
    /// The restic binary.
    pub restic_binary: PathBuf,
    /// Repositories by name.
    pub repositories: BTreeMap<String, RepositoryConfig>,
    /// Address for `/metrics` and `/diagnostics` (off when absent).
    pub metrics_listen: Option<String>,
    /// Per-attempt limit when the policy sets none.
    pub task_timeout_minutes: u32,
    /// Seconds between SIGINT and SIGKILL when stopping restic.
    pub stop_grace_seconds: u32,
    /// Proposed settings (see the module docs).
    pub max_concurrent_tasks: Option<i64>,
    /// Proposed.
    pub max_concurrent_backups: Option<i64>,
    /// Proposed.
    pub max_concurrent_checks: Option<i64>,
    /// Proposed.
    pub max_concurrent_prunes: Option<i64>,
    /// Proposed.
    pub cpu_quota_percent: Option<i64>,
    /// Proposed; `null` is unlimited (see [`AgentConfig::bandwidth_unlimited`]).
    pub bandwidth_limit_mbps: Option<i64>,
    /// Whether the file or the environment set `bandwidthLimitMbps` to `null` (or `unlimited`):
    /// that proposes unlimited uploads, where a key left out proposes nothing.
    #[serde(skip)]
    pub bandwidth_unlimited: bool,
    /// Proposed.
    pub max_retries: Option<i64>,
    /// Proposed.
    pub max_backoff_minutes: Option<i64>,
    /// Proposed (default 60 when the server has none).
    pub backoff_base_seconds: Option<i64>,
    /// Proposed (default 3 when the server has none).
    pub backoff_failure_threshold: Option<i64>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field(
                "orchestrator_url",
                &hide_credentials(&self.orchestrator_url),
            )
            .field("agent_id", &self.agent_id)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("token_file", &self.token_file)
            .field("host", &self.host)
            .field("state_dir", &self.state_dir)
            .field("restic_binary", &self.restic_binary)
            .field("repositories", &self.repositories)
            .field("proposed_settings", &self.proposed_settings())
            .finish_non_exhaustive()
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            orchestrator_url: "http://127.0.0.1:8080".into(),
            polling_interval_seconds: 30,
            claim_wait_seconds: 25,
            heartbeat_interval_seconds: 60,
            agent_id: None,
            token: None,
            token_file: None,
            host: None,
            config_file: None,
            state_dir: PathBuf::from("./agent-state"),
            restic_binary: PathBuf::from("restic"),
            repositories: BTreeMap::new(),
            metrics_listen: None,
            task_timeout_minutes: 360,
            stop_grace_seconds: 10,
            max_concurrent_tasks: None,
            max_concurrent_backups: None,
            max_concurrent_checks: None,
            max_concurrent_prunes: None,
            cpu_quota_percent: None,
            bandwidth_limit_mbps: None,
            bandwidth_unlimited: false,
            max_retries: None,
            max_backoff_minutes: None,
            backoff_base_seconds: None,
            backoff_failure_threshold: None,
        }
    }
}

pub use backup_config::ConfigError;

const SECONDS_PER_DAY: Range = Range {
    min: 1,
    max: 86_400,
};

/// Every scalar key the environment may set, with its kind and range (`repositories` stays in
/// the file: named maps with secrets beside them).
const OWN_KEYS: &[Key] = &[
    Key::new(&["orchestratorUrl"], Kind::Text)
    .doc("The server's base URL (`http://` or `https://`)."),
    Key::new(&["pollingIntervalSeconds"], Kind::Number(SECONDS_PER_DAY))
    .doc("Seconds between claims for new tasks (while tasks run, or when `claimWaitSeconds` is 0)."),
    Key::new(&["claimWaitSeconds"], Kind::Number(Range { min: 0, max: 60 }))
    .doc("Seconds an idle agent's claim asks the server to hold it until a task is there (a long poll: run-now, and new tasks, start within a second); 0 polls every `pollingIntervalSeconds` instead. Kept below the server's `limits.requestTimeoutSeconds` by the server."),
    Key::new(&["heartbeatIntervalSeconds"], Kind::Number(SECONDS_PER_DAY))
    .doc("Seconds between heartbeats (settings and cancellations reach the agent with them)."),
    Key::new(&["agentId"], Kind::Text)
    .doc("The id `POST /agents` answered."),
    Key::new(&["token"], Kind::Text)
    .doc("The agent token `POST /agents` showed once (or use `tokenFile`)."),
    Key::new(&["tokenFile"], Kind::Text)
    .doc("A file holding the token; read again on a 401 and on SIGHUP (token rotation without a restart)."),
    Key::new(&["host"], Kind::Text)
    .doc("The name given to restic's `--host` for every command (default: the machine's host name); set it in containers and on cloned machines."),
    Key::new(&["stateDir"], Kind::Text)
    .doc("Where the state file, restic's cache and `diagnostics.json` live."),
    Key::new(&["resticBinary"], Kind::Text)
    .doc("The restic binary (a name on `PATH`, or a path)."),
    Key::new(&["metricsListen"], Kind::Text)
    .doc("Address for `/metrics` and `/diagnostics` (off when absent), e.g. `127.0.0.1:9184`."),
    Key::new(
        &["taskTimeoutMinutes"],
        Kind::Number(Range {
            min: 1,
            max: 10_080,
        }),
    )
    .doc("Per-attempt limit when the policy sets none; then SIGINT, the grace, SIGKILL."),
    Key::new(
        &["stopGraceSeconds"],
        Kind::Number(Range { min: 1, max: 3600 }),
    )
    .doc("Seconds between SIGINT and SIGKILL when restic is stopped (time to remove its lock)."),
];

/// The agent's own keys, then one per setting (its proposals), with the ranges of
/// [`SETTING_FIELDS`]: the ones the server validates with.
static KEYS: LazyLock<Vec<Key>> = LazyLock::new(|| {
    let defaults = serde_json::to_value(backup_core::Settings::default()).unwrap_or_default();
    let settings = SETTING_FIELDS.iter().map(|(name, label, range)| {
        let path: &'static [&'static str] = std::slice::from_ref(name);
        let key = if *name == "bandwidthLimitMbps" {
            Key::new(path, Kind::NullableNumber(*range))
        } else {
            Key::new(path, Kind::Number(*range))
        };
        let start = defaults.get(*name).map_or_else(String::new, |v| match v {
            serde_json::Value::Null => "unlimited".to_owned(),
            v => v.to_string(),
        });
        // Made once, for the life of the process.
        let doc: &'static str = Box::leak(
            format!(
                "{label}, proposed to the server: adopted until someone PATCHes the agent (settingsSource api). A new agent starts with {start}."
            )
            .into_boxed_str(),
        );
        key.doc(doc)
    });
    OWN_KEYS.iter().copied().chain(settings).collect()
});

/// The agent's loader: `BACKUP_AGENT_` + the key.
pub(crate) static LOADER: LazyLock<Loader> =
    LazyLock::new(|| Loader::new("BACKUP_AGENT_", KEYS.as_slice()));

/// `BACKUP_AGENT_` + the key in upper snake case (`maxConcurrentTasks` ->
/// `BACKUP_AGENT_MAX_CONCURRENT_TASKS`).
pub fn env_name(key: &str) -> String {
    LOADER.env_name(&[key])
}

impl Configuration for AgentConfig {
    fn loader() -> &'static Loader {
        &LOADER
    }

    fn finish(loaded: Loaded<AgentConfig>) -> Result<Self, ConfigError> {
        let mut config = loaded.value.clone();
        config.config_file.clone_from(&loaded.file);
        config.bandwidth_unlimited =
            loaded.is_null(&["bandwidthLimitMbps"]) && config.bandwidth_limit_mbps.is_none();
        config.validate(&|key| loaded.origin(key))?;
        check_floor_keys(&loaded)?;
        Ok(config)
    }
}

/// A misspelt keep rule in a floor would leave the floor off without a word: unknown keys are
/// refused.
fn check_floor_keys(loaded: &Loaded<AgentConfig>) -> Result<(), ConfigError> {
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

impl AgentConfig {
    fn validate(&self, from: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if !(self.orchestrator_url.starts_with("http://")
            || self.orchestrator_url.starts_with("https://"))
        {
            return Err(ConfigError(format!(
                "orchestratorUrl: {:?} is not an http:// or https:// URL (from {})",
                self.orchestrator_url,
                from("orchestratorUrl")
            )));
        }
        for (name, repository) in &self.repositories {
            let from = from(&format!("repositories.{name}"));
            validate_repository_name(name)
                .map_err(|e| ConfigError(format!("repositories.{name}: {e} (from {from})")))?;
            if repository.allowed_paths.is_empty() {
                return Err(ConfigError(format!(
                    "repositories.{name}.allowedPaths: empty; list the absolute paths backups may read, or leave the key out for / (from {from})"
                )));
            }
            if let Some(relative) = repository.allowed_paths.iter().find(|p| {
                !p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir)
            }) {
                return Err(ConfigError(format!(
                    "repositories.{name}.allowedPaths: {} is not an absolute path without '..' (from {from})",
                    relative.display()
                )));
            }
            repository.retention_floor.validate().map_err(|e| {
                ConfigError(format!(
                    "repositories.{name}.retentionFloor: {} (from {from})",
                    e.to_string().trim_start_matches("retention.")
                ))
            })?;
        }
        if self.host.as_deref().is_some_and(|h| h.trim().is_empty()) {
            return Err(ConfigError(format!(
                "host: empty; leave it out for the machine's host name (from {})",
                from("host")
            )));
        }
        // The proposals must make valid settings on their own, merged over the defaults.
        backup_core::Settings::default()
            .apply(&self.proposed_settings())
            .map_err(|e| {
                ConfigError(format!(
                    "{e} (proposed settings, from {})",
                    from(e.field().unwrap_or_default())
                ))
            })?;
        Ok(())
    }

    /// The settings keys present in the file or environment, as a proposal for the server.
    pub fn proposed_settings(&self) -> SettingsPatch {
        SettingsPatch {
            max_concurrent_tasks: self.max_concurrent_tasks,
            max_concurrent_backups: self.max_concurrent_backups,
            max_concurrent_checks: self.max_concurrent_checks,
            max_concurrent_prunes: self.max_concurrent_prunes,
            cpu_quota_percent: self.cpu_quota_percent,
            bandwidth_limit_mbps: match (self.bandwidth_limit_mbps, self.bandwidth_unlimited) {
                (Some(mbps), _) => Some(Some(mbps)),
                (None, true) => Some(None),
                (None, false) => None,
            },
            max_retries: self.max_retries,
            max_backoff_minutes: self.max_backoff_minutes,
            backoff_base_seconds: self.backoff_base_seconds,
            backoff_failure_threshold: self.backoff_failure_threshold,
            source: None,
        }
    }

    /// The token, from `token` or `tokenFile`.
    ///
    /// # Errors
    /// When neither is set or the file cannot be read.
    pub fn resolve_token(&self) -> Result<String, ConfigError> {
        if let Some(token) = self.token.as_deref().filter(|t| !t.trim().is_empty()) {
            return Ok(token.trim().to_owned());
        }
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!("tokenFile: cannot read {}: {e}", path.display()))
            })?;
            let token = text.trim().to_owned();
            if token.is_empty() {
                return Err(ConfigError(format!(
                    "tokenFile: {} is empty",
                    path.display()
                )));
            }
            return Ok(token);
        }
        Err(ConfigError(format!(
            "token: missing; set token or tokenFile in the file, or {} (the token printed by POST /agents)",
            env_name("token")
        )))
    }

    /// The agent id.
    ///
    /// # Errors
    /// When it is missing or not a UUID.
    pub fn resolve_agent_id(&self) -> Result<backup_core::AgentId, ConfigError> {
        let raw = self.agent_id.as_deref().ok_or_else(|| {
            ConfigError(format!(
                "agentId: missing; set agentId in the file or {} (the id from POST /agents)",
                env_name("agentId")
            ))
        })?;
        raw.trim()
            .parse()
            .map_err(|_| ConfigError(format!("agentId: {raw:?} is not a UUID")))
    }
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
