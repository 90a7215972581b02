//! The server's Prometheus metrics, all prefixed `backup_server_`.

use std::sync::atomic::AtomicI64;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabels {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LapseLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProtectionLabels {
    pub protection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PolicyLabels {
    pub policy: String,
}

/// Every metric the server exports.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram>,
    pub tasks_created: Counter,
    pub skips: Family<ReasonLabels, Counter>,
    pub slots_missed: Counter,
    pub leases_lapsed: Family<LapseLabels, Counter>,
    pub retries_decided: Counter,
    pub tick_duration: Histogram,
    pub ticks_failed: Counter,
    pub last_tick_policies: Gauge<i64, AtomicI64>,
    pub waiting_claims: Gauge<i64, AtomicI64>,
    pub agents: Family<StatusLabels, Gauge<i64, AtomicI64>>,
    pub enabled_policies: Gauge<i64, AtomicI64>,
    pub oldest_success_age: Gauge<i64, AtomicI64>,
    pub failed_permanently: Family<KindLabels, Counter>,
    pub policies: Family<ProtectionLabels, Gauge<i64, AtomicI64>>,
    pub webhook_deliveries: Family<OutcomeLabels, Counter>,
    pub policy_last_success: Family<PolicyLabels, Gauge<i64, AtomicI64>>,
    pub transitions: Family<ReasonLabels, Counter>,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ]
    .into_iter()
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("backup_server");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let request_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            request_duration.clone(),
        );
        let tasks_created = Counter::default();
        registry.register(
            "tasks_created",
            "Tasks created by the scheduler",
            tasks_created.clone(),
        );
        let skips = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "scheduler_skips",
            "Due policies left due, by reason",
            skips.clone(),
        );
        let slots_missed = Counter::default();
        registry.register(
            "slots_missed",
            "Schedule slots merged into a later task",
            slots_missed.clone(),
        );
        let leases_lapsed = Family::<LapseLabels, Counter>::default();
        registry.register(
            "leases_lapsed",
            "Leases lapsed: claimed tasks returned, running attempts lost",
            leases_lapsed.clone(),
        );
        let retries_decided = Counter::default();
        registry.register(
            "retries_decided",
            "Failed attempts answered with a retry (results and lost agents)",
            retries_decided.clone(),
        );
        let tick_duration = Histogram::new(latency_buckets());
        registry.register(
            "scheduler_tick_duration_seconds",
            "Scheduler tick duration",
            tick_duration.clone(),
        );
        let ticks_failed = Counter::default();
        registry.register(
            "scheduler_ticks_failed",
            "Scheduler ticks that hit an error",
            ticks_failed.clone(),
        );
        let last_tick_policies = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "scheduler_last_tick_policies",
            "Due policies evaluated in the last tick",
            last_tick_policies.clone(),
        );
        let waiting_claims = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "waiting_claims",
            "Agents' claims held open (long polls) right now",
            waiting_claims.clone(),
        );
        let agents = Family::<StatusLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "agents",
            "Agents by derived status (offline, backoff, saturated, online)",
            agents.clone(),
        );
        let enabled_policies = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "enabled_policies",
            "Enabled policies",
            enabled_policies.clone(),
        );
        let oldest_success_age = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "oldest_success_age_seconds",
            "Among enabled policies, seconds since the oldest last success (a policy that never succeeded counts from its creation)",
            oldest_success_age.clone(),
        );
        let failed_permanently = Family::<KindLabels, Counter>::default();
        registry.register(
            "tasks_failed_permanently",
            "Tasks that failed permanently, by kind",
            failed_permanently.clone(),
        );
        let policies = Family::<ProtectionLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "policies",
            "Live policies by protection: ok, never_run, overdue, failing, disabled",
            policies.clone(),
        );
        let webhook_deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome: delivered, retried, failed (given up)",
            webhook_deliveries.clone(),
        );
        let policy_last_success = Family::<PolicyLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "policy_last_success_timestamp_seconds",
            "Each policy's last success as a Unix time, 0 before the first (only with metrics.perPolicy)",
            policy_last_success.clone(),
        );
        let transitions = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "transitions",
            "Transitions the scheduler recorded as events: agent_offline, policy_overdue",
            transitions.clone(),
        );
        Self {
            registry,
            policies,
            webhook_deliveries,
            policy_last_success,
            transitions,
            agents,
            enabled_policies,
            oldest_success_age,
            failed_permanently,
            requests,
            request_duration,
            tasks_created,
            skips,
            slots_missed,
            leases_lapsed,
            retries_decided,
            tick_duration,
            ticks_failed,
            last_tick_policies,
            waiting_claims,
        }
    }

    /// Counts `n` tasks of `kind` that failed permanently.
    pub(crate) fn count_failed_permanently(&self, kind: backup_core::TaskKind, n: u64) {
        self.failed_permanently
            .get_or_create(&KindLabels {
                kind: kind.as_str().into(),
            })
            .inc_by(n);
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
