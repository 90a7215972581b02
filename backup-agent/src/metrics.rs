//! The agent's Prometheus metrics .

use std::sync::atomic::AtomicI64;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::state::Counters;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TaskLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pub kind: String,
}

/// Every metric the agent exports.
#[derive(Debug)]
pub(crate) struct AgentMetrics {
    registry: Registry,
    pub concurrency_current: Gauge<i64, AtomicI64>,
    pub concurrency_limit: Gauge<i64, AtomicI64>,
    pub queue_depth: Gauge<i64, AtomicI64>,
    pub backoff_active: Gauge<i64, AtomicI64>,
    pub retries_total: Counter,
    pub tasks_total: Family<TaskLabels, Counter>,
    pub task_duration: Family<KindLabels, Histogram>,
}

impl AgentMetrics {
    /// Metrics starting from the counters the state file kept.
    pub(crate) fn new(restored: &Counters) -> Self {
        let mut registry = Registry::with_prefix("backup_agent");
        let concurrency_current = Gauge::default();
        registry.register(
            "concurrency_current",
            "restic processes running now",
            concurrency_current.clone(),
        );
        let concurrency_limit = Gauge::default();
        registry.register(
            "concurrency_limit",
            "maxConcurrentTasks in force",
            concurrency_limit.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Tasks held but not started",
            queue_depth.clone(),
        );
        let backoff_active = Gauge::default();
        registry.register(
            "backoff_active",
            "1 while any repository or the agent is in backoff",
            backoff_active.clone(),
        );
        let retries_total = Counter::default();
        registry.register(
            "retries",
            "Attempts the server answered with a retry",
            retries_total.clone(),
        );
        let tasks_total = Family::<TaskLabels, Counter>::default();
        registry.register(
            "tasks",
            "Finished attempts by kind and outcome",
            tasks_total.clone(),
        );
        let task_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 10800.0, 43200.0])
        });
        registry.register(
            "task_duration_seconds",
            "restic run time by kind",
            task_duration.clone(),
        );
        retries_total.inc_by(restored.retries_total);
        for (key, n) in &restored.tasks_total {
            if let Some((kind, outcome)) = key.split_once('/') {
                tasks_total
                    .get_or_create(&TaskLabels {
                        kind: kind.into(),
                        outcome: outcome.into(),
                    })
                    .inc_by(*n);
            }
        }
        Self {
            registry,
            concurrency_current,
            concurrency_limit,
            queue_depth,
            backoff_active,
            retries_total,
            tasks_total,
            task_duration,
        }
    }

    /// Prometheus text.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
