//! The scheduler loop: every `scheduler.tickSeconds`, create the due policies' tasks and lapse
//! expired leases (never within `leaseSeconds` of the server's start: agents that were running
//! tasks when the server went down need one lease to send a heartbeat and renew them).

use std::time::Duration;

use backup_core::{SkipReason, TaskKind};
use backup_store::{LapseReport, TickReport};
use chrono::TimeDelta;
use tokio::sync::watch;

use crate::{
    ApiError, AppState,
    metrics::{LapseLabels, PolicyLabels, ProtectionLabels, ReasonLabels, StatusLabels},
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
    crate::dispatch::announce(state, &schedule.claimable_agents).await;
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
        // A returned claim is claimable at once; a retried attempt when its backoff ends
        // (a woken claim waits for that itself).
        crate::dispatch::announce(state, &lapses.claimable_agents).await;
        for (label, n) in [("claimed", lapses.returned), ("running", lapses.lost)] {
            metrics
                .leases_lapsed
                .get_or_create(&LapseLabels {
                    state: label.into(),
                })
                .inc_by(n);
        }
        metrics.retries_decided.inc_by(lapses.retried);
        for kind in TaskKind::ALL {
            let n = lapses.failed_permanently_by_kind.get(kind);
            if n > 0 {
                metrics.count_failed_permanently(kind, n);
            }
        }
        Some(lapses)
    } else {
        None
    };
    // Transitions the time brings: an agent offline, a policy overdue (recorded once each).
    let transitions = state.store().sweep_transitions().await?;
    for (reason, n) in [
        ("agent_offline", transitions.offline),
        ("policy_overdue", transitions.overdue),
    ] {
        if n > 0 {
            metrics
                .transitions
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .inc_by(n);
        }
    }
    metrics
        .tick_duration
        .observe(started.elapsed().as_secs_f64());
    let (returned, lost) = lapses.as_ref().map_or((0, 0), |l| (l.returned, l.lost));
    if schedule.created > 0 || returned + lost > 0 {
        tracing::info!(
            created = schedule.created,
            missed_slots = schedule.missed_slots,
            skipped = %skipped_words(&schedule),
            returned,
            lost,
            "scheduler tick"
        );
    }
    Ok(TickSummary { schedule, lapses })
}

/// `offline: 3, saturated: 1`: the skip reasons of a tick, for the log.
fn skipped_words(schedule: &TickReport) -> String {
    schedule
        .skipped
        .iter()
        .map(|(reason, n)| format!("{}: {n}", reason.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refreshes the fleet's gauges: agents by status, enabled policies, the oldest last success.
///
/// # Errors
/// An [`ApiError`] when the database fails.
pub async fn refresh_fleet_gauges(state: &AppState) -> Result<(), ApiError> {
    let fleet = state.store().fleet_summary().await?;
    let metrics = state.metrics();
    for (status, n) in &fleet.agents {
        metrics
            .agents
            .get_or_create(&StatusLabels {
                status: status.as_str().into(),
            })
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    metrics
        .enabled_policies
        .set(i64::try_from(fleet.enabled_policies).unwrap_or(i64::MAX));
    for (protection, n) in &fleet.policies {
        metrics
            .policies
            .get_or_create(&ProtectionLabels {
                protection: protection.as_str().into(),
            })
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    if state.config().metrics.per_policy {
        let last = state.store().policy_last_successes().await?;
        // Deleted policies leave the exposition.
        metrics.policy_last_success.clear();
        for (policy, at) in last {
            metrics
                .policy_last_success
                .get_or_create(&PolicyLabels {
                    policy: policy.to_string(),
                })
                .set(at.map_or(0, |t| t.timestamp()));
        }
    }
    let now = state.store().clock().now();
    metrics.oldest_success_age.set(
        fleet
            .oldest_success
            .map_or(0, |at| (now - at).num_seconds().max(0)),
    );
    Ok(())
}

/// How often the fleet's gauges are refreshed (a count over every agent: not at every tick).
const FLEET_GAUGES_EVERY: Duration = Duration::from_secs(30);

/// How often old history is deleted (a scan of the finished tasks: not at every tick).
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Deletes history older than `retention.historyDays`, a batch at a time (each batch its own
/// short transaction), up to 50 batches per call.
pub async fn purge_history(state: &AppState) {
    let days = state.config().retention.history_days;
    if days == 0 {
        return;
    }
    let before = state.store().clock().now() - chrono::TimeDelta::days(i64::from(days));
    for _ in 0..50 {
        match state.store().purge_history(before, 1000).await {
            Ok((tasks, events)) => {
                if tasks + events > 0 {
                    tracing::info!(tasks, events, days, "old history deleted");
                }
                if tasks < 1000 && events < 1000 {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot delete old history; trying again later");
                return;
            }
        }
    }
}

pub(crate) async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(u64::from(state.config().scheduler.tick_seconds.max(1)));
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gauges_at: Option<tokio::time::Instant> = None;
    let mut purged_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = scheduler_tick(&state).await {
            state.metrics().ticks_failed.inc();
            tracing::warn!(error = %e, "scheduler tick failed; trying again next tick");
        }
        if purged_at.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
            purged_at = Some(tokio::time::Instant::now());
            purge_history(&state).await;
        }
        if gauges_at.is_none_or(|at| at.elapsed() >= FLEET_GAUGES_EVERY) {
            gauges_at = Some(tokio::time::Instant::now());
            if let Err(e) = refresh_fleet_gauges(&state).await {
                tracing::warn!(error = %e, "cannot refresh the fleet's gauges");
            }
        }
    }
}
