//! Is a machine protected? A policy's protection, computed from its schedule and its last
//! success: operators are told when a policy stops producing backups, not only when one fails.
//!
//! A policy is `overdue` when it has not succeeded for longer than its `alertAfter`: by default
//! twice the gap between its slots (for cron, between its next two) plus the lease, so one
//! missed or slow run does not alert and two do. A policy that never succeeded counts from its
//! creation. `failing` (its newest finished task failed permanently) wins over `overdue`: the
//! operator knows why.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, Schedule};

/// The longest `alertAfter` (a year).
pub const MAX_ALERT_AFTER: Duration = Duration::from_secs(366 * 24 * 3600);

/// Where a policy stands, the first that matches in this order: `disabled`, `failing`,
/// `overdue`, `never_run`, `ok`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Protection {
    /// It succeeded within its `alertAfter`.
    Ok,
    /// It has not succeeded yet, and its `alertAfter` since creation has not passed.
    NeverRun,
    /// No success for longer than its `alertAfter`.
    Overdue,
    /// Its newest finished task failed permanently.
    Failing,
    /// Disabled: nothing is expected of it.
    Disabled,
}

impl Protection {
    /// Every value, the healthiest first.
    pub const ALL: [Protection; 5] = [
        Protection::Ok,
        Protection::NeverRun,
        Protection::Overdue,
        Protection::Failing,
        Protection::Disabled,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protection::Ok => "ok",
            Protection::NeverRun => "never_run",
            Protection::Overdue => "overdue",
            Protection::Failing => "failing",
            Protection::Disabled => "disabled",
        }
    }

    /// A policy's protection at `now`: `enabled`, whether its newest finished task failed
    /// permanently, its last success, and when it turns overdue (`None`: not known yet).
    pub fn of(
        enabled: bool,
        failing: bool,
        last_success_at: Option<DateTime<Utc>>,
        alert_deadline: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Protection {
        if !enabled {
            Protection::Disabled
        } else if failing {
            Protection::Failing
        } else if alert_deadline.is_some_and(|d| d < now) {
            Protection::Overdue
        } else if last_success_at.is_none() {
            Protection::NeverRun
        } else {
            Protection::Ok
        }
    }
}

impl std::fmt::Display for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Protection {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Protection::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Protection::ALL.iter().map(|p| p.as_str()).collect();
                Error::invalid("protection", s, format!("one of {}", names.join(", ")))
            })
    }
}

/// The `alertAfter` of a policy that sets none: twice the schedule's gap plus the lease.
pub fn default_alert_after(schedule: &Schedule, now: DateTime<Utc>, lease: Duration) -> Duration {
    schedule
        .typical_gap(now)
        .saturating_mul(2)
        .saturating_add(lease)
        .min(MAX_ALERT_AFTER)
}

/// Parses a policy's `alertAfter` (a humantime duration of 1 second to a year).
///
/// # Errors
/// [`Error::Invalid`] on `alertAfter`.
pub fn parse_alert_after(text: &str) -> Result<Duration, Error> {
    let expected = "a duration of 1s to 366days, like 2h or 3days";
    let d = humantime::parse_duration(text)
        .map_err(|_| Error::invalid("alertAfter", text, expected))?;
    if d < Duration::from_secs(1) || d > MAX_ALERT_AFTER {
        return Err(Error::invalid("alertAfter", text, expected));
    }
    Ok(d)
}

/// A duration as people write it (`2h 30m`), whole seconds.
pub fn human_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// `GET /summary`: is everything protected, at a glance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Agents by status (`online`, `offline`, `backoff`, `saturated`; every status present).
    pub agents: std::collections::BTreeMap<String, u64>,
    /// Policies by protection (`ok`, `never_run`, `overdue`, `failing`, `disabled`; every
    /// value present).
    pub policies: std::collections::BTreeMap<String, u64>,
    /// Tasks that failed permanently in the last 24 hours.
    pub failed_permanently_24h: u64,
    /// Bytes the backups of the last 24 hours added to the repositories.
    pub bytes_added_24h: u64,
    /// Among enabled policies, the oldest last success (`null` when none succeeded yet).
    pub oldest_last_success_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScheduleSpec;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("rfc3339")
    }

    #[test]
    fn the_first_match_wins_in_the_documented_order() {
        let now = at("2026-03-01T12:00:00Z");
        let past = Some(at("2026-03-01T11:00:00Z"));
        let future = Some(at("2026-03-01T13:00:00Z"));
        assert_eq!(
            Protection::of(false, true, past, past, now),
            Protection::Disabled
        );
        assert_eq!(
            Protection::of(true, true, past, past, now),
            Protection::Failing
        );
        assert_eq!(
            Protection::of(true, false, past, past, now),
            Protection::Overdue
        );
        assert_eq!(
            Protection::of(true, false, None, past, now),
            Protection::Overdue
        );
        assert_eq!(
            Protection::of(true, false, None, future, now),
            Protection::NeverRun
        );
        assert_eq!(
            Protection::of(true, false, past, future, now),
            Protection::Ok
        );
        assert_eq!(Protection::of(true, false, past, None, now), Protection::Ok);
    }

    #[test]
    fn the_default_is_twice_the_gap_plus_the_lease() {
        let now = at("2026-03-01T12:00:00Z");
        let lease = Duration::from_secs(900);
        let hourly = Schedule::parse(&ScheduleSpec::every("1h")).expect("every");
        assert_eq!(
            default_alert_after(&hourly, now, lease),
            Duration::from_secs(2 * 3600 + 900)
        );
        // Weekdays at 03:00: from a Friday noon the next two slots are Monday and Tuesday.
        let weekdays = Schedule::parse(&ScheduleSpec::cron("0 3 * * 1-5", "UTC")).expect("cron");
        let friday = at("2026-03-06T12:00:00Z");
        assert_eq!(
            default_alert_after(&weekdays, friday, lease),
            Duration::from_secs(2 * 24 * 3600 + 900)
        );
        assert_eq!(human_duration(Duration::from_secs(8100)), "2h 15m");
        assert!(parse_alert_after("500ms").is_err() && parse_alert_after("400days").is_err());
        assert_eq!(
            parse_alert_after("90m").expect("valid"),
            Duration::from_secs(5400)
        );
    }
}
