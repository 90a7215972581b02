//! # backup-server: the orchestrator
//!
//! The multi-tenant HTTP API (its OpenAPI document is served at `/openapi.json`) and a scheduler that respects agent capacity, over
//! [`backup_store::Store`]. Embed it ([`app`] gives the axum `Router`; [`Server::start`] runs it
//! with its scheduler on a socket) or run the `backup-server` binary.
//!
//! ```
//! use std::sync::Arc;
//! use axum::{body::Body, http::Request};
//! use backup_core::SystemClock;
//! use backup_server::{AppState, ServerConfig, app};
//! use backup_store::Store;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ServerConfig { database: "sqlite::memory:".into(), ..ServerConfig::default() };
//! let store = Store::open(&config.database, config.store_config(), Arc::new(SystemClock)).await?;
//! let router = app(AppState::new(store, config));
//! let answer = router.oneshot(Request::get("/healthz").body(Body::empty())?).await?;
//! assert_eq!(answer.status(), 200);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod auth;
mod cli;
mod config;
mod dispatch;
mod error;
mod extract;
mod http;
mod limiter;
mod metrics;
mod notify;
mod openapi;
mod routes;
mod scheduler;
mod state;
mod ui;

use std::{net::SocketAddr, sync::Arc};

use backup_core::{Clock, SystemClock};
use backup_store::{Store, StoreConfig};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

pub use auth::{AdminAuth, AgentAuth, TenantAuth};
pub use backup_config::Configuration;
pub use cli::{TenantCommand, run_tenant_command};
pub use config::{
    ConfigError, LimitsConfig, MetricsConfig, NotificationsConfig, RetentionConfig,
    SchedulerConfig, ServerConfig, UiConfig, env_name,
};
pub use error::{ApiError, RETRY_AFTER_SECONDS};
pub use extract::{AgentJson, ApiPath, ApiQuery, MAX_BODY_BYTES, TenantJson};

/// The body parsers behind [`TenantJson`] and [`AgentJson`], for the fuzz targets (feature
/// `fuzzing`): not part of the API an embedder builds on.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::extract::{parse_agent_body, parse_tenant_body};
}
pub use openapi::openapi;
pub use routes::app;
pub use scheduler::{TickSummary, purge_history, refresh_fleet_gauges, scheduler_tick};
pub use state::AppState;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The store could not be opened or migrated.
    #[error("opening the database: {0}")]
    Store(#[from] backup_store::StoreError),
    /// The operator's command was refused (a tenant name taken).
    #[error("{0}")]
    Refused(String),
    /// The listen address could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

impl ServerConfig {
    /// What the store needs of this configuration.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            lease_seconds: self.scheduler.lease_seconds,
            offline_after_seconds: self.scheduler.offline_after_seconds,
            agent_queue_threshold: self.scheduler.agent_queue_threshold,
            max_agents_per_tenant: self.limits.max_agents_per_tenant,
            max_policies_per_tenant: self.limits.max_policies_per_tenant,
            ..StoreConfig::default()
        }
    }
}

/// A running server: the API on a socket and the scheduler beside it.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    state: AppState,
    stop: watch::Sender<bool>,
    http: JoinHandle<()>,
    scheduler: JoinHandle<()>,
}

impl Server {
    /// Opens the database (creating and migrating it), binds `config.listen` (port 0 picks one)
    /// and starts serving and scheduling.
    ///
    /// # Errors
    /// [`ServerError`] when the database or the address is unusable.
    pub async fn start(config: ServerConfig, clock: Arc<dyn Clock>) -> Result<Server, ServerError> {
        let store = Store::open(&config.database, config.store_config(), clock).await?;
        let listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen.clone(),
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
        if config.ui.session_secret.is_some() {
            tracing::warn!(
                "ui.sessionSecret is no longer used: dashboard sessions are kept in the database; remove it from the configuration"
            );
        }
        let state = AppState::new(store, config);
        let (stop, stopped) = watch::channel(false);
        let scheduler = tokio::spawn(scheduler::run(state.clone(), stopped.clone()));
        // Other replicas' new tasks wake this one's waiting claims (PostgreSQL only).
        tokio::spawn(dispatch::listen(state.clone(), stopped.clone()));
        tokio::spawn(notify::run(state.clone(), stopped.clone()));
        let router = app(state.clone());
        let http = tokio::spawn(http::serve(
            listener,
            router,
            state.config().limits,
            stopped,
        ));
        Ok(Server {
            addr,
            state,
            stop,
            http,
            scheduler,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state (store, configuration, metrics).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops accepting requests, lets those in flight finish, stops the scheduler.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        self.state.waiters().close();
        let _ = self.http.await;
        let _ = self.scheduler.await;
        self.state.store().close().await;
    }
}

/// Runs `backup-server serve` until SIGINT or SIGTERM.
///
/// # Errors
/// [`ServerError`] when it cannot start.
pub async fn serve(config: ServerConfig) -> Result<(), ServerError> {
    let database = redact(&config.database);
    let server = Server::start(config, Arc::new(SystemClock)).await?;
    tracing::info!(url = %server.url(), %database, "backup-server listening");
    backup_config::shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// A database URL without its password, for logs.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}
