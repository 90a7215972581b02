//! What every handler shares: the store, the configuration, the metrics, the rate limiters.

use std::{net::IpAddr, sync::Arc};

use crate::{
    ApiError, ServerConfig,
    dispatch::Waiters,
    limiter::{Buckets, Rate},
    metrics::Metrics,
};
use backup_core::{AgentId, TenantId};
use backup_store::Store;
use chrono::{DateTime, Utc};

/// The server's shared state; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    config: ServerConfig,
    metrics: Metrics,
    started_at: DateTime<Utc>,
    agent_requests: Buckets<AgentId>,
    tenant_requests: Buckets<TenantId>,
    auth_failures: Buckets<IpAddr>,
    waiters: Waiters,
}

impl AppState {
    /// State over an open store. The scheduler counts its lease grace from now.
    pub fn new(store: Store, config: ServerConfig) -> Self {
        let started_at = store.clock().now();
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                metrics: Metrics::new(),
                started_at,
                agent_requests: Buckets::default(),
                tenant_requests: Buckets::default(),
                auth_failures: Buckets::default(),
                waiters: Waiters::default(),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The claims held open (long polls).
    pub(crate) fn waiters(&self) -> &Waiters {
        &self.inner.waiters
    }

    /// When this server started (by the store's clock).
    pub fn started_at(&self) -> DateTime<Utc> {
        self.inner.started_at
    }

    /// The Prometheus text of the server's metrics.
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.render()
    }

    /// Takes one request token of `tenant`'s bucket, or answers 429 with the wait: a tenant
    /// flooding the server does not take it from the others.
    pub(crate) fn admit_tenant(&self, tenant: TenantId) -> Result<(), ApiError> {
        match steady(self.inner.config.limits.tenant_requests_per_second) {
            Some(rate) => self
                .inner
                .tenant_requests
                .take(tenant, rate)
                .map_err(ApiError::rate_limited),
            None => Ok(()),
        }
    }

    /// Takes one request token of `agent`'s bucket, or answers 429 with the wait.
    pub(crate) fn admit_agent(&self, agent: AgentId) -> Result<(), ApiError> {
        match steady(self.inner.config.limits.agent_requests_per_second) {
            Some(rate) => self
                .inner
                .agent_requests
                .take(agent, rate)
                .map_err(ApiError::rate_limited),
            None => Ok(()),
        }
    }

    fn failure_rate(&self) -> Option<Rate> {
        let per_minute = f64::from(self.inner.config.limits.auth_failures_per_minute);
        (per_minute > 0.0).then_some(Rate {
            per_second: per_minute / 60.0,
            burst: per_minute,
        })
    }

    /// Before a token is looked up: an address whose failed authentications used up its
    /// allowance is answered 429 at once, so a flood of bad tokens costs no database read.
    pub(crate) fn admit_address(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        match (address, self.failure_rate()) {
            (Some(address), Some(rate)) => self
                .inner
                .auth_failures
                .check(address, rate)
                .map_err(ApiError::rate_limited),
            _ => Ok(()),
        }
    }

    /// A token was wrong: counts against the address's allowance.
    pub(crate) fn auth_failed(&self, address: Option<IpAddr>) {
        if let (Some(address), Some(rate)) = (address, self.failure_rate()) {
            self.inner.auth_failures.spend(address, rate);
        }
    }
}

/// `per_second` requests a second with bursts of twice that; `None` for 0 (no limit).
fn steady(per_second: u32) -> Option<Rate> {
    (per_second > 0).then(|| Rate {
        per_second: f64::from(per_second),
        burst: 2.0 * f64::from(per_second),
    })
}
