//! What every handler shares: the store, the configuration, the metrics, the rate limiter.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use backup_core::AgentId;
use backup_store::Store;
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::{ApiError, ServerConfig, metrics::Metrics, ui::SessionKey};

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
    buckets: Mutex<HashMap<AgentId, Bucket>>,
    session_key: SessionKey,
}

/// A token bucket: `rate` tokens a second, up to `2 * rate`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl AppState {
    /// State over an open store. The scheduler counts its lease grace from now.
    pub fn new(store: Store, config: ServerConfig) -> Self {
        let started_at = store.clock().now();
        let session_key = SessionKey::new(config.ui.session_secret.as_deref());
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                metrics: Metrics::new(),
                started_at,
                buckets: Mutex::new(HashMap::new()),
                session_key,
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

    pub(crate) fn session_key(&self) -> &SessionKey {
        &self.inner.session_key
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// When this server started (by the store's clock).
    pub fn started_at(&self) -> DateTime<Utc> {
        self.inner.started_at
    }

    /// The Prometheus text of the server's metrics.
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.render()
    }

    /// Takes one request token of `agent`'s bucket, or answers 429 with the wait.
    pub(crate) fn admit_agent(&self, agent: AgentId) -> Result<(), ApiError> {
        let rate = f64::from(self.inner.config.limits.agent_requests_per_second);
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = 2.0 * rate;
        let now = Instant::now();
        let mut buckets = self.inner.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            // Forget idle buckets (full again by now) so the map cannot grow without bound.
            buckets.retain(|_, b| now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(agent).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - bucket.tokens) / rate).ceil().max(1.0);
            Err(ApiError::rate_limited(wait as u64))
        }
    }
}
