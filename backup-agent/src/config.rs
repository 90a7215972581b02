//! The agent's configuration: the seed's `agent.yaml` keys and DESIGN §3a's, from a YAML file
//! (`--config`), then `BACKUP_AGENT_*` environment variables, then defaults.
//!
//! The settings keys (`maxConcurrentTasks` ...) are *proposals*: the agent sends them in its
//! heartbeats and the server adopts them until someone PATCHes the agent; the server's answer is
//! what the agent applies. Repositories and their secrets live only here: the server knows names.
//!
//! Errors name the key, the bad value, the allowed range and where the value came from.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use backup_core::{
    BACKOFF_BASE_SECONDS_RANGE, BANDWIDTH_RANGE, CONCURRENCY_RANGE, CPU_QUOTA_RANGE,
    FAILURE_THRESHOLD_RANGE, MAX_BACKOFF_MINUTES_RANGE, MAX_RETRIES_RANGE, Range, SettingsPatch,
    validate_repository_name,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One repository: where it is and how to open it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// Everything `backup-agent run` needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AgentConfig {
    /// The server's base URL.
    pub orchestrator_url: String,
    /// Seconds between claims for new tasks.
    pub polling_interval_seconds: u32,
    /// Seconds between heartbeats.
    pub heartbeat_interval_seconds: u32,
    /// This agent's id (from `POST /agents`).
    pub agent_id: Option<String>,
    /// Its token (or `tokenFile`).
    pub token: Option<String>,
    /// A file holding the token.
    pub token_file: Option<PathBuf>,
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

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            orchestrator_url: "http://127.0.0.1:8080".into(),
            polling_interval_seconds: 30,
            heartbeat_interval_seconds: 60,
            agent_id: None,
            token: None,
            token_file: None,
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

/// A configuration problem, for a person: key, value, range, source.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Number(Option<Range>),
    /// A number or `null`/empty (bandwidth: unlimited).
    NullableNumber(Range),
}

/// Every scalar key with its type and range.
const KEYS: &[(&str, Kind)] = &[
    ("orchestratorUrl", Kind::Text),
    (
        "pollingIntervalSeconds",
        Kind::Number(Some(Range {
            min: 1,
            max: 86_400,
        })),
    ),
    (
        "heartbeatIntervalSeconds",
        Kind::Number(Some(Range {
            min: 1,
            max: 86_400,
        })),
    ),
    ("agentId", Kind::Text),
    ("token", Kind::Text),
    ("tokenFile", Kind::Text),
    ("stateDir", Kind::Text),
    ("resticBinary", Kind::Text),
    ("metricsListen", Kind::Text),
    (
        "taskTimeoutMinutes",
        Kind::Number(Some(Range {
            min: 1,
            max: 10_080,
        })),
    ),
    (
        "stopGraceSeconds",
        Kind::Number(Some(Range { min: 1, max: 3600 })),
    ),
    ("maxConcurrentTasks", Kind::Number(Some(CONCURRENCY_RANGE))),
    (
        "maxConcurrentBackups",
        Kind::Number(Some(CONCURRENCY_RANGE)),
    ),
    ("maxConcurrentChecks", Kind::Number(Some(CONCURRENCY_RANGE))),
    ("maxConcurrentPrunes", Kind::Number(Some(CONCURRENCY_RANGE))),
    ("cpuQuotaPercent", Kind::Number(Some(CPU_QUOTA_RANGE))),
    ("bandwidthLimitMbps", Kind::NullableNumber(BANDWIDTH_RANGE)),
    ("maxRetries", Kind::Number(Some(MAX_RETRIES_RANGE))),
    (
        "maxBackoffMinutes",
        Kind::Number(Some(MAX_BACKOFF_MINUTES_RANGE)),
    ),
    (
        "backoffBaseSeconds",
        Kind::Number(Some(BACKOFF_BASE_SECONDS_RANGE)),
    ),
    (
        "backoffFailureThreshold",
        Kind::Number(Some(FAILURE_THRESHOLD_RANGE)),
    ),
];

/// `BACKUP_AGENT_` + the key in upper snake case (`maxConcurrentTasks` ->
/// `BACKUP_AGENT_MAX_CONCURRENT_TASKS`).
pub fn env_name(key: &str) -> String {
    let mut out = String::from("BACKUP_AGENT_");
    for (i, c) in key.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

impl AgentConfig {
    /// Loads `file` (if any), applies the environment, fills defaults, validates.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key, the value, the allowed range and its source.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, |name| std::env::var(name).ok())
    }

    /// As [`AgentConfig::load`] with the environment as a function (for tests).
    ///
    /// # Errors
    /// A [`ConfigError`].
    pub fn load_from(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let (text, source) = match file {
            Some(path) => (
                std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("reading {}: {e}", path.display())))?,
                format!("file {}", path.display()),
            ),
            None => (String::new(), "defaults".to_owned()),
        };
        Self::parse(&text, &source, env)
    }

    /// Parses YAML text (`source` names it in errors), then applies the environment.
    ///
    /// # Errors
    /// A [`ConfigError`].
    pub fn parse(
        text: &str,
        source: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let value: Value = if text.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_norway::from_str(text)
                .map_err(|e| ConfigError(format!("{source}: not valid YAML: {e}")))?
        };
        let Value::Object(mut map) = value else {
            return Err(ConfigError(format!(
                "{source}: expected a mapping of keys to values"
            )));
        };
        let mut origin: BTreeMap<String, String> =
            map.keys().map(|k| (k.clone(), source.to_owned())).collect();
        for (key, kind) in KEYS {
            let name = env_name(key);
            let Some(raw) = env(&name) else { continue };
            let value = match kind {
                Kind::Text => Value::String(raw),
                Kind::Number(range) => Value::from(raw.trim().parse::<i64>().map_err(|_| {
                    let allowed = range.map(|r| format!("; allowed {r}")).unwrap_or_default();
                    ConfigError(format!("{key}: {raw:?} is not a whole number{allowed} (from the environment variable {name})"))
                })?),
                Kind::NullableNumber(range) => match raw.trim() {
                    "" | "null" | "unlimited" => Value::Null,
                    n => Value::from(n.parse::<i64>().map_err(|_| {
                        ConfigError(format!("{key}: {raw:?} is not a whole number; allowed {range}, or unlimited (from the environment variable {name})"))
                    })?),
                },
            };
            map.insert((*key).to_owned(), value);
            origin.insert(
                (*key).to_owned(),
                format!("the environment variable {name}"),
            );
        }
        let from = |key: &str| {
            origin
                .get(key)
                .cloned()
                .unwrap_or_else(|| "defaults".to_owned())
        };
        // Range checks first: they give the range, which a type error would not.
        for (key, kind) in KEYS {
            let (Kind::Number(Some(range)) | Kind::NullableNumber(range)) = kind else {
                continue;
            };
            match map.get(*key) {
                None | Some(Value::Null) => {}
                Some(Value::Number(n)) => {
                    let ok = n
                        .as_i64()
                        .is_some_and(|v| (range.min..=range.max).contains(&v));
                    if n.as_i64().is_none() {
                        return Err(ConfigError(format!(
                            "{key}: {n} is not a whole number; allowed {range} (from {})",
                            from(key)
                        )));
                    }
                    if !ok {
                        return Err(ConfigError(format!(
                            "{key}: {n} is out of range; allowed {range} (from {})",
                            from(key)
                        )));
                    }
                }
                Some(other) => {
                    return Err(ConfigError(format!(
                        "{key}: {other} is not a number; allowed {range} (from {})",
                        from(key)
                    )));
                }
            }
        }
        let unlimited = matches!(map.get("bandwidthLimitMbps"), Some(Value::Null));
        let mut config: AgentConfig =
            serde_path_to_error(Value::Object(map)).map_err(|(path, e)| {
                let top = path.split('.').next().unwrap_or_default().to_owned();
                ConfigError(format!("{path}: {e} (from {})", from(&top)))
            })?;
        config.bandwidth_unlimited = unlimited && config.bandwidth_limit_mbps.is_none();
        config.validate(&from)?;
        Ok(config)
    }

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
        for name in self.repositories.keys() {
            validate_repository_name(name).map_err(|e| {
                ConfigError(format!(
                    "repositories.{name}: {e} (from {})",
                    from("repositories")
                ))
            })?;
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

/// Deserializes with the path of the failing field (`repositories.main.passwordFile`).
fn serde_path_to_error<T: serde::de::DeserializeOwned>(
    value: Value,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| (e.path().to_string(), e.into_inner().to_string()))
}

/// The `KEY=value` lines of a repository's `envFile` (the `.env` format: `#` comments, `export`,
/// quotes). A line that does not parse is skipped with a warning naming its number.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
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
