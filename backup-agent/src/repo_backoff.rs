//! Repository backoff: after `backoffFailureThreshold` consecutive retriable failures on a
//! repository, start nothing there for `delay(k)` (k = consecutive backoff entries for it). A
//! success resets it. Faults that belong to no repository (restic missing, disk full) back off
//! the whole agent the same way.
//!
//! Why on the agent and not only the server's retry budget: the budget is per task, but a
//! broken repository fails every task that touches it; backing off the repository keeps the
//! agent from hammering it with the next task, and the heartbeat tells the scheduler to hold
//! new ones.

use std::collections::BTreeMap;

use backup_core::{ExponentialBackoff, RandomSource, RepositoryBackoff, Settings};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// What backs off: one repository, or the whole agent.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Scope {
    /// A repository by name.
    Repository(String),
    /// The whole agent.
    Agent,
}

/// One scope's failure count and backoff.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Retriable failures in a row.
    pub consecutive_failures: u32,
    /// Backoffs entered in a row (the k of `delay(k)`).
    pub backoffs: u32,
    /// When the current backoff ends.
    pub until: Option<DateTime<Utc>>,
}

/// Every scope's state; serialized into the state file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackoffTracker {
    #[serde(with = "entries")]
    entries: BTreeMap<Scope, Entry>,
}

/// JSON maps need string keys: scopes are stored as a list of pairs.
mod entries {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Entry, Scope};

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<Scope, Entry>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        map.iter().collect::<Vec<_>>().serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Scope, Entry>, D::Error> {
        Ok(Vec::<(Scope, Entry)>::deserialize(d)?.into_iter().collect())
    }
}

/// A backoff just entered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entered {
    /// Until when.
    pub until: DateTime<Utc>,
    /// For the log line: the delay in whole minutes, rounded up.
    pub minutes: i64,
}

impl BackoffTracker {
    /// Records a retriable failure; returns the backoff it enters, if the threshold is reached.
    pub fn record_failure(
        &mut self,
        scope: Scope,
        settings: &Settings,
        now: DateTime<Utc>,
        rng: &mut impl RandomSource,
    ) -> Option<Entered> {
        let entry = self.entries.entry(scope).or_default();
        entry.consecutive_failures = entry.consecutive_failures.saturating_add(1);
        let threshold = settings.backoff_failure_threshold;
        if threshold == 0 || entry.consecutive_failures < threshold {
            return None;
        }
        entry.consecutive_failures = 0;
        entry.backoffs = entry.backoffs.saturating_add(1);
        let delay = ExponentialBackoff::from_settings(settings).delay(entry.backoffs, rng);
        let delay = TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX);
        let until = now
            .checked_add_signed(delay)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        entry.until = Some(until);
        let minutes = delay.num_milliseconds().saturating_add(59_999) / 60_000;
        Some(Entered { until, minutes })
    }

    /// A success resets the scope.
    pub fn record_success(&mut self, scope: &Scope) {
        self.entries.remove(scope);
    }

    /// When the scope's backoff ends, if it is in one now.
    pub fn until(&self, scope: &Scope, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.entries
            .get(scope)
            .and_then(|e| e.until)
            .filter(|u| *u > now)
    }

    /// The latest deadline in force, of any scope.
    pub fn latest(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.entries
            .values()
            .filter_map(|e| e.until)
            .filter(|u| *u > now)
            .max()
    }

    /// The heartbeat's report: repositories with their remaining seconds, and the agent's.
    pub fn report(&self, now: DateTime<Utc>) -> (Vec<RepositoryBackoff>, u64) {
        let remaining =
            |until: DateTime<Utc>| u64::try_from((until - now).num_seconds()).unwrap_or(0);
        let mut repositories = Vec::new();
        let mut agent = 0;
        for (scope, entry) in &self.entries {
            let Some(until) = entry.until.filter(|u| *u > now) else {
                continue;
            };
            match scope {
                Scope::Repository(name) => repositories.push(RepositoryBackoff {
                    repository: name.clone(),
                    remaining_seconds: remaining(until).max(1),
                }),
                Scope::Agent => agent = remaining(until).max(1),
            }
        }
        (repositories, agent)
    }

    /// Every scope's entry (for diagnostics).
    pub fn entries(&self) -> impl Iterator<Item = (&Scope, &Entry)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use backup_core::SplitMix64;

    use super::*;

    fn settings(threshold: u32) -> Settings {
        Settings {
            backoff_failure_threshold: threshold,
            backoff_base_seconds: 60,
            max_backoff_minutes: 60,
            ..Settings::default()
        }
    }

    #[test]
    fn backs_off_after_the_threshold_with_growing_delays_and_resets_on_success() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("ts");
        let repo = Scope::Repository("main".into());
        let mut t = BackoffTracker::default();
        let mut rng = SplitMix64::new(1);
        let s = settings(3);
        assert_eq!(t.record_failure(repo.clone(), &s, now, &mut rng), None);
        assert_eq!(t.record_failure(repo.clone(), &s, now, &mut rng), None);
        let first = t
            .record_failure(repo.clone(), &s, now, &mut rng)
            .expect("third failure");
        let d1 = first.until - now;
        assert!(
            d1 >= TimeDelta::seconds(30) && d1 <= TimeDelta::seconds(60),
            "delay(1) with equal jitter: {d1}"
        );
        assert_eq!(first.minutes, 1);
        assert_eq!(t.until(&repo, now), Some(first.until));
        for _ in 0..2 {
            assert_eq!(t.record_failure(repo.clone(), &s, now, &mut rng), None);
        }
        let second = t
            .record_failure(repo.clone(), &s, now, &mut rng)
            .expect("sixth failure");
        let d2 = second.until - now;
        assert!(
            d2 >= TimeDelta::seconds(60) && d2 <= TimeDelta::seconds(120),
            "delay(2): {d2}"
        );
        let (repos, agent) = t.report(now);
        assert_eq!((repos.len(), agent), (1, 0));
        t.record_success(&repo);
        assert_eq!(t.until(&repo, now), None);
        assert_eq!(
            t.record_failure(repo.clone(), &s, now, &mut rng),
            None,
            "the count restarts"
        );
        assert_eq!(t.report(now + TimeDelta::hours(2)).0.len(), 0);
    }

    #[test]
    fn threshold_zero_disables_backoff() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("ts");
        let mut t = BackoffTracker::default();
        let mut rng = SplitMix64::new(1);
        for _ in 0..10 {
            assert_eq!(
                t.record_failure(Scope::Agent, &settings(0), now, &mut rng),
                None
            );
        }
    }

    #[test]
    fn survives_json() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("ts");
        let mut t = BackoffTracker::default();
        let mut rng = SplitMix64::new(1);
        t.record_failure(Scope::Agent, &settings(1), now, &mut rng);
        t.record_failure(Scope::Repository("r".into()), &settings(5), now, &mut rng);
        let json = serde_json::to_string(&t).expect("json");
        assert_eq!(
            serde_json::from_str::<BackoffTracker>(&json).expect("back"),
            t
        );
    }
}
