//! Configuration: a YAML file (`--config`), then `BACKUP_SERVER_*` environment variables, then
//! defaults. Nested keys use `__` in the environment (`BACKUP_SERVER_SCHEDULER__TICK_SECONDS`).
//!
//! Errors name the key, the bad value and where it came from, so an operator fixes the right
//! line the first time.

use backup_config::{Configuration, Key, Kind, Loaded, Loader};
use backup_core::Range;
use serde::{Deserialize, Serialize};

/// Everything `backup-server serve` needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// `sqlite://path.db` (created if missing) or `postgres://...`.
    pub database: String,
    /// Token for `POST /tenants`; without one, tenants are made with the CLI only.
    pub admin_token: Option<String>,
    /// The scheduler and lease settings.
    pub scheduler: SchedulerConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// The dashboard.
    pub ui: UiConfig,
    /// Webhook deliveries.
    pub notifications: NotificationsConfig,
    /// What `/metrics` shows.
    pub metrics: MetricsConfig,
    /// How long history is kept.
    pub retention: RetentionConfig,
}

/// `retention.*`: how long finished tasks, their runs and events are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days a finished task (with its runs) or an event is kept (0: for ever).
    pub history_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { history_days: 90 }
    }
}

/// `notifications.*`: how webhooks are delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// Let webhooks target loopback, private, link-local and metadata addresses (tests, a
    /// receiver on the same network); refused otherwise (a tenant token must not reach the
    /// server's own network).
    pub allow_private_targets: bool,
    /// The first retry's delay of a failed delivery, doubling up to an hour.
    pub retry_base_seconds: u32,
    /// Hours after its event a delivery is given up (`failed`).
    pub max_retry_hours: u32,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            retry_base_seconds: 10,
            max_retry_hours: 24,
        }
    }
}

/// `metrics.*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Export each policy's last success time (one series per policy: mind the cardinality).
    pub per_policy: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database: "sqlite://backup-server.db".into(),
            admin_token: None,
            scheduler: SchedulerConfig::default(),
            limits: LimitsConfig::default(),
            ui: UiConfig::default(),
            notifications: NotificationsConfig::default(),
            metrics: MetricsConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

/// `ui.*`: the dashboard at `/ui`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct UiConfig {
    /// No longer used: dashboard sessions are kept in the database, so they work across
    /// replicas and restarts without a shared secret. Accepted so that existing files load
    /// (the server warns at start).
    pub session_secret: Option<String>,
}

/// `scheduler.*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Seconds between scheduler ticks.
    pub tick_seconds: u32,
    /// Queue depth above which an agent is saturated and gets no new tasks.
    pub agent_queue_threshold: u32,
    /// Skip policies whose repository (or agent) is in backoff.
    pub respect_agent_backoff: bool,
    /// How long a claim or heartbeat keeps a task leased.
    pub lease_seconds: u32,
    /// Silence after which an agent counts as offline.
    pub offline_after_seconds: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            tick_seconds: 10,
            agent_queue_threshold: 10,
            respect_agent_backoff: true,
            lease_seconds: 900,
            offline_after_seconds: 180,
        }
    }
}

/// `limits.*`: protection against floods and slow clients (documented in
/// the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Seconds a request may take before it is answered 408.
    pub request_timeout_seconds: u32,
    /// Requests per second one agent token may make (bursts of twice that); 0 disables.
    pub agent_requests_per_second: u32,
    /// Seconds a connection may take to send a request's headers (and an idle keep-alive
    /// connection may stay open) before it is closed: slow-client protection.
    pub header_read_timeout_seconds: u32,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: u32,
    /// Failed authentications one client address may make per minute (as a burst, then
    /// refilled evenly); past it, requests with a token are answered 429 without a database
    /// read. 0 disables.
    pub auth_failures_per_minute: u32,
    /// Claims held open at once (long polls, `waitSeconds`); past it, claims are answered at
    /// once. 0 switches long polls off.
    pub max_waiting_claims: u32,
    /// Live agents one tenant may have (0: no limit).
    pub max_agents_per_tenant: u32,
    /// Live policies one tenant may have (0: no limit).
    pub max_policies_per_tenant: u32,
    /// Requests per second of one tenant's token (bursts of twice that; 0: no limit).
    pub tenant_requests_per_second: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            request_timeout_seconds: 30,
            agent_requests_per_second: 20,
            header_read_timeout_seconds: 10,
            max_connections: 10_000,
            auth_failures_per_minute: 60,
            max_waiting_claims: 5_000,
            max_agents_per_tenant: 100_000,
            max_policies_per_tenant: 1_000_000,
            tenant_requests_per_second: 50,
        }
    }
}

pub use backup_config::ConfigError;

/// At least 1, at most a day.
const SECONDS: Range = Range {
    min: 1,
    max: 86_400,
};

/// Every key, as a path of YAML names, with its kind and range.
const KEYS: &[Key] = &[
    Key::new(&["listen"], Kind::Text)
    .doc("Address to listen on."),
    Key::new(&["database"], Kind::Text)
    .doc("`sqlite://path.db` (created if missing) or `postgres://user:password@host/db`."),
    Key::new(&["adminToken"], Kind::Text)
    .doc("Token for `POST /tenants` (16+ characters); without one, make tenants with `backup-server tenant create`."),
    Key::new(&["scheduler", "tickSeconds"], Kind::Number(SECONDS))
    .doc("Seconds between scheduler ticks."),
    Key::new(
        &["scheduler", "agentQueueThreshold"],
        Kind::Number(Range {
            min: 0,
            max: 1_000_000,
        }),
    )
    .doc("Queue depth above which an agent is saturated and gets no new scheduled tasks."),
    Key::new(&["scheduler", "respectAgentBackoff"], Kind::Flag)
    .doc("Leave due policies due while their repository (or agent) is in backoff."),
    Key::new(&["scheduler", "leaseSeconds"], Kind::Number(SECONDS))
    .doc("How long a claim or a heartbeat keeps a task leased (a lapsed claim returns to pending; a lapsed run is an attempt lost)."),
    Key::new(&["scheduler", "offlineAfterSeconds"], Kind::Number(SECONDS))
    .doc("Silence after which an agent counts as offline."),
    Key::new(
        &["limits", "requestTimeoutSeconds"],
        Kind::Number(Range { min: 1, max: 3600 }),
    )
    .doc("Seconds a request may take before it is answered 408."),
    Key::new(
        &["limits", "agentRequestsPerSecond"],
        Kind::Number(Range {
            min: 0,
            max: 1_000_000,
        }),
    )
    .doc("Requests per second one agent token may make (bursts of twice that; 0 switches the limit off); over it: 429 with Retry-After."),
    Key::new(
        &["limits", "headerReadTimeoutSeconds"],
        Kind::Number(Range { min: 1, max: 3600 }),
    )
    .doc("Seconds a connection may take to send a request's headers, and an idle keep-alive connection may stay open (slow-client protection; keep it above the agent's 5 s idle pool)."),
    Key::new(
        &["limits", "maxConnections"],
        Kind::Number(Range {
            min: 1,
            max: 1_000_000,
        }),
    )
    .doc("Connections served at once; further clients wait in the listen backlog."),
    Key::new(
        &["limits", "authFailuresPerMinute"],
        Kind::Number(Range {
            min: 0,
            max: 1_000_000,
        }),
    )
    .doc("Failed authentications (wrong token, any kind) one client address may make per minute, as a burst refilled evenly; past it, requests with a token get 429 with Retry-After and cost no database read. 0 switches it off. Behind a proxy every client shares the proxy's address."),
    Key::new(
        &["limits", "maxWaitingClaims"],
        Kind::Number(Range {
            min: 0,
            max: 1_000_000,
        }),
    )
    .doc("Claims the server holds open at once (an agent's `waitSeconds`: answered as soon as a task of that agent becomes claimable); past it, claims are answered at once. 0 switches long polls off."),
    Key::new(
        &["limits", "maxAgentsPerTenant"],
        Kind::Number(Range { min: 0, max: 100_000_000 }),
    )
    .doc("Live agents one tenant may have (0: no limit); past it, creating or enrolling one answers 403 quota_exceeded."),
    Key::new(
        &["limits", "maxPoliciesPerTenant"],
        Kind::Number(Range { min: 0, max: 100_000_000 }),
    )
    .doc("Live policies one tenant may have (0: no limit); past it, creating one answers 403 quota_exceeded."),
    Key::new(
        &["limits", "tenantRequestsPerSecond"],
        Kind::Number(Range { min: 0, max: 1_000_000 }),
    )
    .doc("Requests per second one tenant's token may make (bursts of twice that; 0 switches the limit off); over it: 429 with Retry-After. Agents' requests have their own limit."),
    Key::new(&["notifications", "allowPrivateTargets"], Kind::Flag)
    .doc("Let webhooks target loopback, private, link-local and cloud metadata addresses (a receiver on the same network, tests); otherwise such a URL is refused (422) and a delivery whose host resolves to one fails."),
    Key::new(
        &["notifications", "retryBaseSeconds"],
        Kind::Number(Range { min: 1, max: 3600 }),
    )
    .doc("The first retry's delay of a failed webhook delivery; it doubles (with jitter) up to an hour."),
    Key::new(
        &["notifications", "maxRetryHours"],
        Kind::Number(Range { min: 1, max: 720 }),
    )
    .doc("Hours after its event a webhook delivery is given up (`failed`)."),
    Key::new(
        &["retention", "historyDays"],
        Kind::Number(Range { min: 0, max: 36_500 }),
    )
    .doc("Days finished tasks (with their runs) and events are kept; older ones are deleted in batches every ten minutes. 0 keeps them for ever."),
    Key::new(&["metrics", "perPolicy"], Kind::Flag)
    .doc("Export `backup_server_policy_last_success_timestamp_seconds` per policy (one series each: mind the cardinality)."),
    Key::new(&["ui", "sessionSecret"], Kind::Text)
    .doc("No longer used (dashboard sessions are kept in the database, shared by replicas); accepted with a warning so that older files load."),
];

/// The server's loader: `BACKUP_SERVER_` + the key path, nested keys joined by `__`.
const LOADER: Loader = Loader::new("BACKUP_SERVER_", KEYS);

/// The environment variable of a key path: `BACKUP_SERVER_` + segments joined by `__`.
pub fn env_name(path: &[&str]) -> String {
    LOADER.env_name(path)
}

impl Configuration for ServerConfig {
    fn loader() -> &'static Loader {
        &LOADER
    }

    fn finish(loaded: Loaded<ServerConfig>) -> Result<Self, ConfigError> {
        let mut config = loaded.value.clone();
        // An empty secret means none (`BACKUP_SERVER_ADMIN_TOKEN=` switches POST /tenants off).
        for secret in [&mut config.admin_token, &mut config.ui.session_secret] {
            if secret.as_deref().is_some_and(|t| t.trim().is_empty()) {
                *secret = None;
            }
        }
        config.validate(&|key| loaded.origin(key))?;
        Ok(config)
    }
}

impl ServerConfig {
    fn validate(&self, from: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if !(self.database.starts_with("sqlite:")
            || self.database.starts_with("postgres://")
            || self.database.starts_with("postgresql://"))
        {
            return Err(ConfigError(format!(
                "database: {:?} is not a sqlite:// or postgres:// URL (from {})",
                self.database,
                from("database")
            )));
        }
        if self.admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError(format!(
                "adminToken: too short; use at least 16 characters (from {})",
                from("adminToken")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use backup_testkit::vars as env;

    use super::*;

    #[test]
    fn an_empty_secret_means_none() {
        let c = ServerConfig::load_from(
            None,
            env(&[
                ("BACKUP_SERVER_ADMIN_TOKEN", ""),
                ("BACKUP_SERVER_UI__SESSION_SECRET", " "),
            ]),
        )
        .expect("empty secrets load");
        assert_eq!((c.admin_token, c.ui.session_secret), (None, None));
        let short = ServerConfig::load_from(None, env(&[("BACKUP_SERVER_ADMIN_TOKEN", "short")]));
        assert!(short.is_err(), "a short token is still refused");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = ServerConfig::load_from(None, env(&[])).expect("defaults");
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.database, "sqlite://backup-server.db");
        assert_eq!(c.admin_token, None);
        assert_eq!(
            c.scheduler,
            SchedulerConfig {
                tick_seconds: 10,
                agent_queue_threshold: 10,
                respect_agent_backoff: true,
                lease_seconds: 900,
                offline_after_seconds: 180
            }
        );
    }

    #[test]
    fn environment_names_follow_the_design() {
        assert_eq!(
            env_name(&["scheduler", "tickSeconds"]),
            "BACKUP_SERVER_SCHEDULER__TICK_SECONDS"
        );
        assert_eq!(env_name(&["adminToken"]), "BACKUP_SERVER_ADMIN_TOKEN");
        assert_eq!(
            env_name(&["scheduler", "respectAgentBackoff"]),
            "BACKUP_SERVER_SCHEDULER__RESPECT_AGENT_BACKOFF"
        );
    }

    #[test]
    fn file_then_environment_then_defaults() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("server.yaml");
        std::fs::write(
            &path,
            "listen: 0.0.0.0:9000\nscheduler:\n  agentQueueThreshold: 3\n  tickSeconds: 5\n",
        )
        .expect("write");
        let c = ServerConfig::load_from(
            Some(&path),
            env(&[
                ("BACKUP_SERVER_SCHEDULER__TICK_SECONDS", "2"),
                ("BACKUP_SERVER_SCHEDULER__RESPECT_AGENT_BACKOFF", "false"),
            ]),
        )
        .expect("loads");
        assert_eq!(c.listen, "0.0.0.0:9000", "from the file");
        assert_eq!(
            c.scheduler.tick_seconds, 2,
            "the environment wins over the file"
        );
        assert_eq!(c.scheduler.agent_queue_threshold, 3);
        assert!(!c.scheduler.respect_agent_backoff);
        assert_eq!(c.scheduler.lease_seconds, 900, "default");
    }

    #[test]
    fn the_example_configuration_loads_with_the_defaults_it_shows() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/config/server.yaml");
        let c = ServerConfig::load_from(Some(&path), env(&[])).expect("the example loads");
        assert_eq!(c.scheduler, ServerConfig::default().scheduler);
        assert_eq!(c.limits, LimitsConfig::default());
    }

    #[test]
    fn errors_name_key_value_and_source() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("server.yaml");
        std::fs::write(&path, "scheduler:\n  tickSecond: 5\n").expect("write");
        let e = ServerConfig::load_from(Some(&path), env(&[]))
            .expect_err("typo")
            .to_string();
        assert!(e.contains("tickSecond") && e.contains("server.yaml"), "{e}");
        let e = ServerConfig::load_from(
            None,
            env(&[("BACKUP_SERVER_SCHEDULER__LEASE_SECONDS", "soon")]),
        )
        .expect_err("not a number")
        .to_string();
        assert!(
            e.contains("BACKUP_SERVER_SCHEDULER__LEASE_SECONDS") && e.contains("soon"),
            "{e}"
        );
        let e =
            ServerConfig::load_from(None, env(&[("BACKUP_SERVER_SCHEDULER__TICK_SECONDS", "0")]))
                .expect_err("zero")
                .to_string();
        assert!(e.contains("scheduler.tickSeconds"), "{e}");
        let e = ServerConfig::load_from(None, env(&[("BACKUP_SERVER_DATABASE", "mysql://x")]))
            .expect_err("bad url")
            .to_string();
        assert!(e.contains("database"), "{e}");
    }
}
