//! An agent's settings: limits, quotas and the retry / backoff knobs, with their ranges.
//!
//! The server's copy is authoritative. A partial [`SettingsPatch`] (from the API or from an
//! agent's YAML proposal) is merged over the current [`Settings`] and the *merged* result is
//! validated, so cross-field rules ("each per-kind limit <= `maxConcurrentTasks`") hold for every
//! stored value. Patch fields are `i64` so that an out-of-range number (negative, huge) is reported
//! as a range error naming the field, not as a type error.

use serde::{Deserialize, Serialize};

use crate::{Error, PerKind, TaskKind};

mod patch;

pub use patch::SettingsPatch;
pub(crate) use patch::not_null;

/// Inclusive range of a setting, for validation and for the error text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// Smallest allowed value.
    pub min: i64,
    /// Largest allowed value.
    pub max: i64,
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// The range of each per-kind and total concurrency limit.
pub const CONCURRENCY_RANGE: Range = Range { min: 1, max: 64 };
/// The range of `cpuQuotaPercent`.
pub const CPU_QUOTA_RANGE: Range = Range { min: 1, max: 100 };
/// The range of `bandwidthLimitMbps` (null is unlimited).
pub const BANDWIDTH_RANGE: Range = Range {
    min: 1,
    max: 100_000,
};
/// The range of `maxRetries`.
pub const MAX_RETRIES_RANGE: Range = Range { min: 0, max: 100 };
/// The range of `maxBackoffMinutes`.
pub const MAX_BACKOFF_MINUTES_RANGE: Range = Range { min: 1, max: 1440 };
/// The range of `backoffBaseSeconds` (also at most `60 * maxBackoffMinutes`).
pub const BACKOFF_BASE_SECONDS_RANGE: Range = Range { min: 1, max: 3600 };
/// The range of `backoffFailureThreshold` (0 disables repository backoff).
pub const FAILURE_THRESHOLD_RANGE: Range = Range { min: 0, max: 100 };

/// Each setting: its wire name, what it is for people, and its range, in the order of
/// [`Settings`]'s fields. The dashboard's form and the configuration reference read it, so the
/// ranges people see are the ones validation applies.
pub const SETTING_FIELDS: [(&str, &str, Range); 11] = [
    (
        "maxConcurrentTasks",
        "Max concurrent tasks",
        CONCURRENCY_RANGE,
    ),
    (
        "maxConcurrentBackups",
        "Max concurrent backups",
        CONCURRENCY_RANGE,
    ),
    (
        "maxConcurrentChecks",
        "Max concurrent checks",
        CONCURRENCY_RANGE,
    ),
    (
        "maxConcurrentPrunes",
        "Max concurrent prunes",
        CONCURRENCY_RANGE,
    ),
    (
        "maxConcurrentRestores",
        "Max concurrent restores",
        CONCURRENCY_RANGE,
    ),
    ("cpuQuotaPercent", "CPU quota %", CPU_QUOTA_RANGE),
    (
        "bandwidthLimitMbps",
        "Bandwidth limit Mbit/s",
        BANDWIDTH_RANGE,
    ),
    ("maxRetries", "Max retries", MAX_RETRIES_RANGE),
    (
        "maxBackoffMinutes",
        "Max backoff minutes",
        MAX_BACKOFF_MINUTES_RANGE,
    ),
    (
        "backoffBaseSeconds",
        "Backoff base seconds",
        BACKOFF_BASE_SECONDS_RANGE,
    ),
    (
        "backoffFailureThreshold",
        "Backoff failure threshold",
        FAILURE_THRESHOLD_RANGE,
    ),
];

/// An agent's validated settings. Construct with [`Settings::default`] and [`Settings::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(description = "An agent's settings: its limits, quotas and retry and backoff rules.")
)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Tasks running at once, all kinds together (1-64).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 64))]
    pub max_concurrent_tasks: u32,
    /// Backups running at once (1-64, at most maxConcurrentTasks).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 64))]
    pub max_concurrent_backups: u32,
    /// Checks running at once (1-64, at most maxConcurrentTasks).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 64))]
    pub max_concurrent_checks: u32,
    /// Prunes running at once (1-64, at most maxConcurrentTasks).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 64))]
    pub max_concurrent_prunes: u32,
    /// Restores running at once (1-64, at most maxConcurrentTasks). Directory listings count
    /// only against maxConcurrentTasks.
    #[serde(default = "one")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 64))]
    pub max_concurrent_restores: u32,
    /// Share of the machine's CPU restic may use, in percent (1-100).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub cpu_quota_percent: u32,
    /// The agent's whole upload budget in Mbit/s (1-100000); null is unlimited.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100000))]
    pub bandwidth_limit_mbps: Option<u32>,
    /// Retries after the first attempt (0-100), for tasks whose policy sets none.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub max_retries: u32,
    /// Cap of every backoff delay, in minutes (1-1440).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1440))]
    pub max_backoff_minutes: u32,
    /// First backoff delay, in seconds (1-3600, at most 60 times maxBackoffMinutes).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3600))]
    pub backoff_base_seconds: u32,
    /// Consecutive retriable failures on a repository before the agent backs off (0-100; 0 never backs off).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub backoff_failure_threshold: u32,
}

/// `maxConcurrentRestores` of settings from a server that predates it.
const fn one() -> u32 {
    1
}

impl Default for Settings {
    /// 1, 1, 1, 1, 1, 50, unlimited, 5, 60, 60, 3: the seed's migration 006 defaults where it
    /// has them.
    fn default() -> Self {
        Self {
            max_concurrent_tasks: 1,
            max_concurrent_backups: 1,
            max_concurrent_checks: 1,
            max_concurrent_prunes: 1,
            max_concurrent_restores: 1,
            cpu_quota_percent: 50,
            bandwidth_limit_mbps: None,
            max_retries: 5,
            max_backoff_minutes: 60,
            backoff_base_seconds: 60,
            backoff_failure_threshold: 3,
        }
    }
}

impl Settings {
    /// The per-kind concurrency limits (a directory listing is bounded by the total only).
    pub const fn per_kind_limits(&self) -> PerKind<u32> {
        PerKind {
            backup: self.max_concurrent_backups,
            check: self.max_concurrent_checks,
            prune: self.max_concurrent_prunes,
            restore: self.max_concurrent_restores,
            ls: self.max_concurrent_tasks,
        }
    }

    /// The per-kind limit of `kind`.
    pub const fn limit_for(&self, kind: TaskKind) -> u32 {
        self.per_kind_limits().get(kind)
    }

    /// Checks every range and cross-field rule.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first offending field, its value and the allowed range.
    pub fn validate(&self) -> Result<(), Error> {
        self.to_patch().validate_merged(&SettingsPatch::default())
    }

    /// Merges `patch` over `self` and validates the result.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the offending field: for a cross-field rule, the field the patch
    /// changed where it changed one of the two.
    pub fn apply(&self, patch: &SettingsPatch) -> Result<Settings, Error> {
        let merged = self.to_patch().merge(patch);
        merged.validate_merged(patch)?;
        Ok(merged.into_settings_unchecked())
    }

    /// This value as a patch that sets every field.
    pub fn to_patch(&self) -> SettingsPatch {
        SettingsPatch {
            max_concurrent_tasks: Some(self.max_concurrent_tasks.into()),
            max_concurrent_backups: Some(self.max_concurrent_backups.into()),
            max_concurrent_checks: Some(self.max_concurrent_checks.into()),
            max_concurrent_prunes: Some(self.max_concurrent_prunes.into()),
            max_concurrent_restores: Some(self.max_concurrent_restores.into()),
            cpu_quota_percent: Some(self.cpu_quota_percent.into()),
            bandwidth_limit_mbps: Some(self.bandwidth_limit_mbps.map(i64::from)),
            max_retries: Some(self.max_retries.into()),
            max_backoff_minutes: Some(self.max_backoff_minutes.into()),
            backoff_base_seconds: Some(self.backoff_base_seconds.into()),
            backoff_failure_threshold: Some(self.backoff_failure_threshold.into()),
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(json: &str) -> SettingsPatch {
        serde_json::from_str(json).expect("valid patch json")
    }

    #[test]
    fn defaults_are_the_documented_ones_and_valid() {
        let d = Settings::default();
        assert_eq!(
            serde_json::to_value(d).expect("serializes"),
            serde_json::json!({
                "maxConcurrentTasks": 1, "maxConcurrentBackups": 1, "maxConcurrentChecks": 1,
                "maxConcurrentPrunes": 1, "maxConcurrentRestores": 1, "cpuQuotaPercent": 50, "bandwidthLimitMbps": null,
                "maxRetries": 5, "maxBackoffMinutes": 60, "backoffBaseSeconds": 60,
                "backoffFailureThreshold": 3
            })
        );
        d.validate().expect("defaults are valid");
    }

    #[test]
    fn absent_is_unchanged_and_null_is_unlimited() {
        let limited = Settings::default()
            .apply(&patch(r#"{"bandwidthLimitMbps": 20}"#))
            .expect("valid");
        assert_eq!(limited.bandwidth_limit_mbps, Some(20));
        let still = limited
            .apply(&patch(r#"{"cpuQuotaPercent": 70}"#))
            .expect("valid");
        assert_eq!(still.bandwidth_limit_mbps, Some(20));
        assert_eq!(still.cpu_quota_percent, 70);
        let unlimited = still
            .apply(&patch(r#"{"bandwidthLimitMbps": null}"#))
            .expect("valid");
        assert_eq!(unlimited.bandwidth_limit_mbps, None);
    }

    #[test]
    fn cross_field_error_names_the_field_the_patch_changed() {
        let four = Settings::default()
            .apply(&patch(
                r#"{"maxConcurrentTasks": 4, "maxConcurrentBackups": 3}"#,
            ))
            .expect("valid");
        let err = four
            .apply(&patch(r#"{"maxConcurrentTasks": 2}"#))
            .expect_err("total below backups");
        assert_eq!(err.field(), Some("maxConcurrentTasks"));
        let err = four
            .apply(&patch(r#"{"maxConcurrentChecks": 5}"#))
            .expect_err("checks above total");
        assert_eq!(err.field(), Some("maxConcurrentChecks"));
        assert!(err.to_string().contains("1-64"), "{err}");

        let err = Settings::default()
            .apply(&patch(
                r#"{"maxBackoffMinutes": 1, "backoffBaseSeconds": 61}"#,
            ))
            .expect_err("base above cap");
        assert_eq!(err.field(), Some("backoffBaseSeconds"));
        let base_120 = Settings::default()
            .apply(&patch(r#"{"backoffBaseSeconds": 120}"#))
            .expect("valid");
        let err = base_120
            .apply(&patch(r#"{"maxBackoffMinutes": 1}"#))
            .expect_err("cap below base");
        assert_eq!(err.field(), Some("maxBackoffMinutes"));
    }

    #[test]
    fn unknown_fields_in_a_proposal_are_ignored() {
        let p = patch(r#"{"maxRetries": 2, "someFutureKnob": true}"#);
        assert_eq!(p.max_retries, Some(2));
    }
}
