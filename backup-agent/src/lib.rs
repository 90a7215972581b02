//! # backup-agent: restic on a machine, under the limits the orchestrator hands it
//!
//! The agent heartbeats to the server, claims due tasks up to its free slots, runs the real
//! `restic` binary (backup, check, prune) under a [`backup_core::ConcurrencyGate`], a fair
//! per-repository lock, CPU and bandwidth quotas, backs off repositories that keep failing,
//! persists what must survive a crash, and reports every attempt through an outbox that keeps
//! results until the server settles them.
//!
//! An embedder builds an [`Agent`] from a configuration, a [`backup_core::ProcessRunner`] (the
//! real [`TokioProcessRunner`] or a wrapper of it), an [`OrchestratorClient`] (the HTTP
//! [`HttpClient`] or another transport) and a [`backup_core::Clock`]:
//!
//! ```no_run
//! use std::sync::Arc;
//! use backup_agent::{Agent, AgentConfig, AgentOptions, Configuration, HttpClient, TokioProcessRunner};
//! use backup_core::SystemClock;
//!
//! # async fn run() -> anyhow::Result<()> {
//! let config = AgentConfig::load(Some("agent.yaml".as_ref()))?;
//! let client = HttpClient::new(&config.orchestrator_url, config.resolve_agent_id()?, config.resolve_token()?)?;
//! let agent = Agent::start(
//!     config,
//!     AgentOptions::default(),
//!     Arc::new(TokioProcessRunner::new()),
//!     Arc::new(client),
//!     Arc::new(SystemClock),
//! )
//! .await?;
//! agent.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! The pure parts are public for reuse and testing: [`restic`] (version, arguments, summary,
//! outcome classifier), [`quota`] (niceness, `GOMAXPROCS`, the bandwidth ledger), [`state`] (the
//! crash-safe state file).
#![deny(missing_docs)]

mod agent;
mod client;
mod config;
mod enroll;
mod guard;
mod metrics;
pub mod quota;
mod repo_backoff;
mod repolock;
pub mod restic;
mod runner;
mod serve;
pub mod state;

pub use agent::{
    AGENT_VERSION, Agent, AgentOptions, BackoffReport, ConcurrencyReport, DIAGNOSTICS_FILE,
    Diagnostics, LOCK_FILE, QuotaReport, TASK_ENV,
};
pub use backup_config::Configuration;
#[cfg(feature = "mock")]
pub use client::MockOrchestratorClient;
pub use client::{
    ClientError, HttpClient, MAX_ANSWER_BYTES, NetworkCause, OrchestratorClient, POOL_IDLE_SECONDS,
};
pub use config::{
    AgentConfig, ConfigError, REPOSITORY_KEYS, RepositoryConfig, default_floor, env_name,
    parse_env_file,
};
pub use enroll::{CREDENTIALS_FILE, ensure_credentials};
pub use runner::TokioProcessRunner;

/// Why the agent cannot start or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A configuration problem.
    #[error("configuration: {0}")]
    Config(String),
    /// restic is missing or unusable.
    #[error("restic: {0}")]
    Restic(String),
    /// The state directory is unusable.
    #[error("state: {0}")]
    State(String),
    /// A listener or another I/O resource failed.
    #[error("{0}")]
    Io(String),
    /// A restore or a listing asked of the library failed.
    #[error("{message}")]
    Failed {
        /// Whether trying again may help.
        class: backup_core::ErrorClass,
        /// restic's words, or the guard's refusal naming its key.
        message: String,
    },
}

impl From<ClientError> for AgentError {
    fn from(e: ClientError) -> Self {
        AgentError::Io(e.to_string())
    }
}

impl From<ConfigError> for AgentError {
    fn from(e: ConfigError) -> Self {
        AgentError::Config(e.0)
    }
}

/// `backup-agent run`: the agent on this machine with the real restic and the HTTP client,
/// until SIGINT or SIGTERM. An agent without credentials enrolls itself first (once: it keeps
/// them in its state directory); a SIGHUP reads the token file again.
///
/// # Errors
/// [`AgentError`] for a refused enrollment, a missing restic, an unusable state directory.
pub async fn run_until_signal(mut config: AgentConfig) -> Result<(), AgentError> {
    let options = AgentOptions::default();
    let hostname = config
        .host
        .clone()
        .unwrap_or_else(|| options.hostname.clone());
    ensure_credentials(&mut config, &hostname).await?;
    let client = std::sync::Arc::new(HttpClient::from_config(&config)?);
    client.clone().reload_token_on_sighup();
    let agent = Agent::start(
        config,
        options,
        std::sync::Arc::new(TokioProcessRunner::new()),
        client,
        std::sync::Arc::new(backup_core::SystemClock),
    )
    .await?;
    agent.run(backup_config::shutdown_signal()).await
}

/// What `backup-agent diagnostics` read, and from where.
#[derive(Clone, Debug)]
pub struct DiagnosticsReading {
    /// The diagnostics, as JSON.
    pub json: String,
    /// For people, when the live agent did not answer: which file was read and how old it is.
    pub note: Option<String>,
}

/// What `backup-agent diagnostics` prints: the running agent's `/diagnostics` when it serves
/// one (`metricsListen`), else the `diagnostics.json` it rewrites at every heartbeat (with a
/// note saying so, and how old the file is).
///
/// # Errors
/// When neither is available.
pub async fn read_diagnostics(config: &AgentConfig) -> Result<DiagnosticsReading, AgentError> {
    let mut tried = None;
    if let Some(listen) = &config.metrics_listen {
        let url = format!("http://{listen}/diagnostics");
        match reqwest::get(&url).await {
            Ok(answer) => {
                if let Ok(json) = answer.text().await {
                    return Ok(DiagnosticsReading { json, note: None });
                }
            }
            Err(e) => tried = Some(format!("no agent answered at {url} ({e})")),
        }
    }
    let path = config.state_dir.join(DIAGNOSTICS_FILE);
    let json = std::fs::read_to_string(&path).map_err(|e| {
        AgentError::Io(format!(
            "{}{} cannot be read ({e}); is the agent running with this configuration?",
            tried
                .as_deref()
                .map(|t| format!("{t}, and "))
                .unwrap_or_default(),
            path.display(),
        ))
    })?;
    let age = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|at| at.elapsed().ok());
    let stale =
        age.is_some_and(|a| a.as_secs() > 3 * u64::from(config.heartbeat_interval_seconds.max(1)));
    let age = age.map_or_else(
        || "of unknown age".to_owned(),
        |a| format!("written {} s ago", a.as_secs()),
    );
    let note = format!(
        "{}read {} ({age}; the agent rewrites it at every heartbeat{})",
        tried.map(|t| format!("{t}; ")).unwrap_or_default(),
        path.display(),
        if stale {
            "; this one is stale: is the agent running?"
        } else {
            ""
        }
    );
    Ok(DiagnosticsReading {
        json,
        note: Some(note),
    })
}
