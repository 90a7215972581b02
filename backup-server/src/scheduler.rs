//! The scheduler loop: every `scheduler.tickSeconds`, create the due policies' tasks and lapse
//! expired leases (never within `leaseSeconds` of the server's start: agents that were running
//! tasks when the server went down need one lease to send a heartbeat and renew them).

use std::time::Duration;

use backup_core::SkipReason;
use backup_store::{LapseReport, TickReport};
use chrono::TimeDelta;
use tokio::sync::watch;

use crate::{
    ApiError, AppState,
    metrics::{LapseLabels, ReasonLabels},
};

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickSummary {
    /// The scheduling step.
    pub schedule: TickReport,
    /// The lease sweep; `None` during the grace period after start.
    pub lapses: Option<LapseReport>,
}

/// Runs one tick now (the loop calls this; tests call it with a manual clock).
///
/// # Errors
/// An [`ApiError`] when the database fails; the next tick tries again.
pub async fn scheduler_tick(state: &AppState) -> Result<TickSummary, ApiError> {
    let metrics = state.metrics();
    let started = std::time::Instant::now();
    let config = state.config().scheduler;
    let schedule = state
        .store()
        .schedule_due(config.respect_agent_backoff)
        .await?;
    metrics.tasks_created.inc_by(schedule.created);
    metrics.slots_missed.inc_by(schedule.missed_slots);
    metrics
        .last_tick_policies
        .set(i64::try_from(schedule.evaluated).unwrap_or(i64::MAX));
    for reason in SkipReason::ALL {
        if let Some(&n) = schedule.skipped.get(&reason) {
            metrics
                .skips
                .get_or_create(&ReasonLabels {
                    reason: reason.as_str().into(),
                })
                .inc_by(n);
        }
    }
    let now = state.store().clock().now();
    let grace = TimeDelta::seconds(i64::from(config.lease_seconds));
    let lapses = if now - state.started_at() >= grace {
        let lapses = state.store().lapse_leases().await?;
        for (label, n) in [("claimed", lapses.returned), ("running", lapses.lost)] {
            metrics
                .leases_lapsed
                .get_or_create(&LapseLabels {
                    state: label.into(),
                })
                .inc_by(n);
        }
        metrics.retries_decided.inc_by(lapses.retried);
        Some(lapses)
    } else {
        None
    };
    metrics
        .tick_duration
        .observe(started.elapsed().as_secs_f64());
    if schedule.created > 0 || lapses.is_some_and(|l| l.returned + l.lost > 0) {
        tracing::info!(
            created = schedule.created,
            missed_slots = schedule.missed_slots,
            skipped = ?schedule.skipped,
            lapses = ?lapses,
            "scheduler tick"
        );
    }
    Ok(TickSummary { schedule, lapses })
}

pub(crate) async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(u64::from(state.config().scheduler.tick_seconds.max(1)));
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = scheduler_tick(&state).await {
            state.metrics().ticks_failed.inc();
            tracing::warn!(error = ?e, "scheduler tick failed; trying again next tick");
        }
    }
}
