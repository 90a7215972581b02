//! The agent's configuration: the seed's `agent.yaml` keys and the agent's own, from a YAML file
//! (`--config`), then `BACKUP_AGENT_*` environment variables, then defaults.
//!
//! The settings keys (`maxConcurrentTasks` ...) are *proposals*: the agent sends them in its
//! heartbeats and the server adopts them until someone PATCHes the agent; the server's answer is
//! what the agent applies. Repositories and their secrets live only here: the server knows names.
//!
//! Errors name the key, the bad value, the allowed range and where the value came from.

mod repository;

use std::{collections::BTreeMap, path::PathBuf, sync::LazyLock};

use backup_config::{Configuration, Key, Kind, Loaded, Loader};
use backup_core::{Range, SETTING_FIELDS, SettingsPatch, validate_repository_name};
use serde::{Deserialize, Serialize};

use repository::check_floor_keys;
pub(crate) use repository::hide_credentials;
pub use repository::{REPOSITORY_KEYS, RepositoryConfig, default_floor, parse_env_file};

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
    /// An enrollment token: an agent without `agentId` and `token` enrolls itself with it once.
    pub enrollment_token: Option<String>,
    /// A file holding the enrollment token.
    pub enrollment_token_file: Option<PathBuf>,
    /// The name an enrolling agent gives itself (default: the host name).
    pub name: Option<String>,
    /// Repositories by name.
    pub repositories: BTreeMap<String, RepositoryConfig>,
    /// Absolute directories a restore may write under (empty: `<stateDir>/restores` only);
    /// see [`AgentConfig::restore_targets`].
    pub restore_targets: Vec<PathBuf>,
    /// Address for `/metrics` and `/diagnostics` (off when absent).
    pub metrics_listen: Option<String>,
    /// Per-attempt limit when the policy sets none.
    pub task_timeout_minutes: u32,
    /// Seconds an attempt may spend retrying the opening of an unreachable repository before
    /// it is stopped and counted as a failure of the repository (0: no limit).
    pub repository_timeout_seconds: u32,
    /// Seconds restic waits for a conflicting lock (`--retry-lock`, restic 0.16+; 0: none).
    pub lock_wait_seconds: u32,
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
    pub max_concurrent_restores: Option<i64>,
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
            .field(
                "enrollment_token",
                &self.enrollment_token.as_ref().map(|_| "<hidden>"),
            )
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
            enrollment_token: None,
            enrollment_token_file: None,
            name: None,
            repositories: BTreeMap::new(),
            restore_targets: Vec::new(),
            metrics_listen: None,
            task_timeout_minutes: 360,
            repository_timeout_seconds: 300,
            lock_wait_seconds: 120,
            stop_grace_seconds: 10,
            max_concurrent_tasks: None,
            max_concurrent_backups: None,
            max_concurrent_checks: None,
            max_concurrent_prunes: None,
            max_concurrent_restores: None,
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
    Key::new(&["enrollmentToken"], Kind::Text)
    .doc("An enrollment token (`POST /enrollment-tokens`): an agent without `agentId` and `token` enrolls itself once and keeps its credentials in `<stateDir>/credentials.json` (mode 0600); later starts reuse them."),
    Key::new(&["enrollmentTokenFile"], Kind::Text)
    .doc("A file holding the enrollment token (instead of `enrollmentToken`)."),
    Key::new(&["name"], Kind::Text)
    .doc("The name an enrolling agent gives itself (default: the host name); unique among the tenant's agents."),
    Key::new(&["tokenFile"], Kind::Text)
    .doc("A file holding the token; read again on a 401 and on SIGHUP (token rotation without a restart)."),
    Key::new(&["host"], Kind::Text)
    .doc("The name given to restic's `--host` for every command (default: the machine's host name); set it in containers and on cloned machines."),
    Key::new(&["stateDir"], Kind::Text)
    .doc("Where the state file, restic's cache and `diagnostics.json` live."),
    Key::new(&["restoreTargets"], Kind::Paths)
    .doc("Directories a restore may write under (default `<stateDir>/restores`); a restore elsewhere fails permanently, naming this key. List `/` only if restores over the original files are to be allowed."),
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
        &["repositoryTimeoutSeconds"],
        Kind::Number(Range { min: 0, max: 86_400 }),
    )
    .doc("Seconds an attempt may spend retrying the opening of a repository that does not answer (restic 0.17+ retries a dead backend for many minutes by itself) before it is stopped and counted as a retriable failure of the repository, toward its backoff. 0: no limit."),
    Key::new(
        &["lockWaitSeconds"],
        Kind::Number(Range { min: 0, max: 86_400 }),
    )
    .doc("Seconds restic waits for a conflicting lock before the attempt fails as locked (`--retry-lock`, restic 0.16+). 0: no wait."),
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
        if let Some(relative) = self.restore_targets.iter().find(|p| {
            !p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir)
        }) {
            return Err(ConfigError(format!(
                "restoreTargets: {} is not an absolute path without '..'; list the directories restores may write under (from {})",
                relative.display(),
                from("restoreTargets")
            )));
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

    /// Where a restore may write: the `restoreTargets` of the file, or `<stateDir>/restores`
    /// when it lists none (absolute, so that a restore's target is compared with what the
    /// operator meant, not with the agent's working directory).
    pub fn restore_targets(&self) -> Vec<PathBuf> {
        if self.restore_targets.is_empty() {
            let dir = self.state_dir.join("restores");
            vec![std::path::absolute(&dir).unwrap_or(dir)]
        } else {
            self.restore_targets.clone()
        }
    }

    /// The settings keys present in the file or environment, as a proposal for the server.
    pub fn proposed_settings(&self) -> SettingsPatch {
        SettingsPatch {
            max_concurrent_tasks: self.max_concurrent_tasks,
            max_concurrent_backups: self.max_concurrent_backups,
            max_concurrent_checks: self.max_concurrent_checks,
            max_concurrent_prunes: self.max_concurrent_prunes,
            max_concurrent_restores: self.max_concurrent_restores,
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
            "token: missing; set token or tokenFile in the file, or {} (the token printed by POST /agents), or an enrollmentToken",
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
                "agentId: missing; set agentId in the file or {} (the id from POST /agents), or an enrollmentToken",
                env_name("agentId")
            ))
        })?;
        raw.trim()
            .parse()
            .map_err(|_| ConfigError(format!("agentId: {raw:?} is not a UUID")))
    }
}
