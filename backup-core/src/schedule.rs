//! When a policy is due: fixed intervals (`every`) and 5-field cron in a time zone.
//!
//! A policy stores one due time, `nextDueAt`. When the scheduler creates the task for that slot it
//! moves `nextDueAt` to the first slot after *now* on the policy's grid: slots missed while the
//! server was down (or the agent busy) merge into the one task instead of piling up, and are
//! counted so operators can see them.

use std::{str::FromStr, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::{
    Cron,
    parser::{CronParser, Seconds, Year},
};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The wire form of a schedule: `{"every": "6h"}` or `{"cron": "0 3 * * *", "timezone": "Europe/Berlin"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// A humantime interval of at least 1 s (`30s`, `6h`, `1day`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// A 5-field cron expression (minute hour day-of-month month day-of-week).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA time zone of `cron` (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

impl ScheduleSpec {
    /// `{"every": interval}`.
    pub fn every(interval: impl Into<String>) -> Self {
        Self {
            every: Some(interval.into()),
            ..Self::default()
        }
    }

    /// `{"cron": expr, "timezone": tz}`.
    pub fn cron(expr: impl Into<String>, timezone: impl Into<String>) -> Self {
        Self {
            cron: Some(expr.into()),
            timezone: Some(timezone.into()),
            ..Self::default()
        }
    }
}

/// A validated schedule.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// Every fixed interval, first due when the policy is created (or re-enabled).
    Every(Duration),
    /// At each match of a cron expression, evaluated in a time zone.
    Cron {
        /// The parsed expression.
        cron: Box<Cron>,
        /// Its zone.
        timezone: Tz,
    },
}

/// The five fields of a cron expression, with what each accepts.
const CRON_FIELDS: [(&str, &str); 5] = [
    ("minute", "a minute of 0-59"),
    ("hour", "an hour of 0-23"),
    ("day-of-month", "a day of the month of 1-31"),
    ("month", "a month of 1-12 or JAN-DEC"),
    ("day-of-week", "a day of the week of 0-7 or SUN-SAT"),
];

fn parse_cron(expr: &str) -> Result<Cron, croner::errors::CronError> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
}

/// The error of an expression that does not parse, naming the first field at fault (each
/// field is tried alone, the others `*`).
fn cron_error(expr: &str, whole: &croner::errors::CronError) -> Error {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    for (i, (name, accepts)) in CRON_FIELDS.iter().enumerate() {
        let mut alone = ["*"; 5];
        alone[i] = fields[i];
        if parse_cron(&alone.join(" ")).is_err() {
            return Error::invalid(
                "schedule.cron",
                format!("{expr} (the {name} field, {:?})", fields[i]),
                format!("{accepts}, a list (1,15), a range (1-5), a step (*/10) or *"),
            );
        }
    }
    Error::invalid(
        "schedule.cron",
        expr,
        format!("5 fields: minute hour day-of-month month day-of-week ({whole})"),
    )
}

impl Schedule {
    /// Validates a wire schedule.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `schedule`, `schedule.every`, `schedule.cron` or
    /// `schedule.timezone`.
    pub fn parse(spec: &ScheduleSpec) -> Result<Self, Error> {
        match (&spec.every, &spec.cron) {
            (Some(every), None) => {
                if spec.timezone.is_some() {
                    return Err(Error::invalid(
                        "schedule.timezone",
                        spec.timezone.as_deref().unwrap_or_default(),
                        "no timezone with `every` (it is a plain interval)",
                    ));
                }
                let expected = "a duration of at least 1s, like 30s, 6h or 1day";
                let interval = humantime::parse_duration(every)
                    .map_err(|_| Error::invalid("schedule.every", every, expected))?;
                if interval < Duration::from_secs(1) || TimeDelta::from_std(interval).is_err() {
                    return Err(Error::invalid("schedule.every", every, expected));
                }
                Ok(Schedule::Every(interval))
            }
            (None, Some(expr)) => {
                let expected = "5 fields: minute hour day-of-month month day-of-week";
                if expr.split_whitespace().count() != 5 {
                    return Err(Error::invalid("schedule.cron", expr, expected));
                }
                let cron = parse_cron(expr).map_err(|e| cron_error(expr, &e))?;
                let tz_name = spec.timezone.as_deref().unwrap_or("UTC");
                let timezone = Tz::from_str(tz_name).map_err(|_| {
                    Error::invalid(
                        "schedule.timezone",
                        tz_name,
                        "an IANA time zone name like UTC or Europe/Berlin",
                    )
                })?;
                // An expression that can never match (31 February) would never be due.
                let probe = DateTime::<Utc>::UNIX_EPOCH.with_timezone(&timezone);
                if cron.find_next_occurrence(&probe, false).is_err() {
                    return Err(Error::invalid(
                        "schedule.cron",
                        expr,
                        "an expression that matches some time",
                    ));
                }
                Ok(Schedule::Cron {
                    cron: Box::new(cron),
                    timezone,
                })
            }
            _ => Err(Error::invalid(
                "schedule",
                "both or neither of every and cron",
                "exactly one of {\"every\": ...} or {\"cron\": ..., \"timezone\": ...}",
            )),
        }
    }

    /// The gap between two slots: the interval of `every`; for cron, the gap between its next
    /// two matches after `now` (what a weekday-only schedule expects differs on a Friday).
    pub fn typical_gap(&self, now: DateTime<Utc>) -> Duration {
        match self {
            Schedule::Every(interval) => *interval,
            Schedule::Cron { .. } => {
                let first = self.next_after(now);
                (self.next_after(first) - first)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
            }
        }
    }

    /// When a policy created (or re-enabled) at `now` is first due: `now` for `every`, the next
    /// match after `now` for cron.
    pub fn first_due(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(_) => now,
            Schedule::Cron { .. } => self.next_after(now),
        }
    }

    /// After the task for `slot` is created at `now`: the next due time (the first slot after
    /// `now` on the grid) and how many slots in between were missed (merged into this task).
    pub fn advance(&self, slot: DateTime<Utc>, now: DateTime<Utc>) -> (DateTime<Utc>, u64) {
        match self {
            Schedule::Every(interval) => {
                let step = interval.as_millis().max(1);
                let behind = (now - slot).num_milliseconds();
                let steps = if behind < 0 {
                    1
                } else {
                    (behind as u128 / step) as u64 + 1
                };
                let next = i64::try_from(u128::from(steps) * step)
                    .ok()
                    .and_then(|ms| slot.checked_add_signed(TimeDelta::milliseconds(ms)))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                (next, steps - 1)
            }
            Schedule::Cron { .. } => {
                // Count matches in (slot, now]; stop counting at a bound that no real outage
                // reaches (a minutely cron down for a week), so a tick stays fast.
                const MAX_COUNTED: u64 = 10_080;
                let mut missed = 0;
                let mut cursor = self.next_after(slot);
                while cursor <= now && missed < MAX_COUNTED {
                    missed += 1;
                    cursor = self.next_after(cursor);
                }
                let next = if cursor <= now {
                    self.next_after(now)
                } else {
                    cursor
                };
                (next, missed)
            }
        }
    }

    fn next_after(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(interval) => t
                .checked_add_signed(TimeDelta::from_std(*interval).unwrap_or(TimeDelta::MAX))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            Schedule::Cron { cron, timezone } => cron
                .find_next_occurrence(&t.with_timezone(timezone), false)
                .map(|next| next.with_timezone(&Utc))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("rfc3339")
    }

    #[test]
    fn every_merges_missed_slots_and_stays_on_grid() {
        let s = Schedule::parse(&ScheduleSpec::every("1h")).expect("valid");
        let slot = at("2026-01-01T00:00:00Z");
        assert_eq!(s.advance(slot, slot), (at("2026-01-01T01:00:00Z"), 0));
        assert_eq!(
            s.advance(slot, at("2026-01-01T03:30:00Z")),
            (at("2026-01-01T04:00:00Z"), 3)
        );
    }

    #[test]
    fn cron_in_a_zone_across_the_spring_forward_gap() {
        // 02:30 does not exist in Berlin on 2026-03-29 (clocks jump 02:00 -> 03:00).
        let s = Schedule::parse(&ScheduleSpec::cron("30 2 * * *", "Europe/Berlin")).expect("valid");
        let before = at("2026-03-28T12:00:00Z");
        let first = s.first_due(before);
        assert_eq!(
            first,
            at("2026-03-29T01:00:00Z"),
            "runs at the first instant after the gap"
        );
        let (next, missed) = s.advance(first, first);
        assert_eq!(missed, 0);
        assert_eq!(next, at("2026-03-30T00:30:00Z"), "02:30 CEST is 00:30 UTC");
        // Winter: 02:30 CET is 01:30 UTC.
        assert_eq!(
            s.first_due(at("2026-01-10T00:00:00Z")),
            at("2026-01-10T01:30:00Z")
        );
    }

    #[test]
    fn cron_counts_missed_matches() {
        let s = Schedule::parse(&ScheduleSpec::cron("0 * * * *", "UTC")).expect("valid");
        let (next, missed) = s.advance(at("2026-01-01T00:00:00Z"), at("2026-01-01T05:10:00Z"));
        assert_eq!(next, at("2026-01-01T06:00:00Z"));
        assert_eq!(missed, 5);
    }

    #[test]
    fn bad_schedules_name_their_field() {
        let field = |spec: ScheduleSpec| {
            Schedule::parse(&spec)
                .expect_err("invalid")
                .field()
                .map(str::to_owned)
        };
        assert_eq!(
            field(ScheduleSpec::every("0s")).as_deref(),
            Some("schedule.every")
        );
        assert_eq!(
            field(ScheduleSpec::every("soon")).as_deref(),
            Some("schedule.every")
        );
        assert_eq!(
            field(ScheduleSpec::cron("* * * *", "UTC")).as_deref(),
            Some("schedule.cron")
        );
        assert_eq!(
            field(ScheduleSpec::cron("0 0 31 2 *", "UTC")).as_deref(),
            Some("schedule.cron")
        );
        assert_eq!(
            field(ScheduleSpec::cron("0 0 * * *", "Mars/Olympus")).as_deref(),
            Some("schedule.timezone")
        );
        assert_eq!(field(ScheduleSpec::default()).as_deref(), Some("schedule"));
    }
}
