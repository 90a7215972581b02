//! An agent's settings: limits, quotas and the retry / backoff knobs, with their ranges.
//!
//! The server's copy is authoritative. A partial [`SettingsPatch`] (from the API or from an
//! agent's YAML proposal) is merged over the current [`Settings`] and the *merged* result is
//! validated, so cross-field rules ("each per-kind limit <= `maxConcurrentTasks`") hold for every
//! stored value. Patch fields are `i64` so that an out-of-range number (negative, huge) is reported
//! as a range error naming the field, not as a type error.

use serde::{Deserialize, Deserializer, Serialize};

use crate::{Error, PerKind, TaskKind};

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

/// A partial update of [`Settings`]: an absent field is unchanged; for `bandwidthLimitMbps`, an
/// explicit `null` means unlimited.
///
/// Unknown fields are ignored here (agents of a newer version may propose more); the server's
/// tenant routes reject them before this type sees the body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        description = "A partial update of the settings: an absent field is unchanged; for bandwidthLimitMbps, null means unlimited. The merged settings are validated as a whole, and a 422 names the field at fault."
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SettingsPatch {
    /// Tasks running at once, all kinds together (1-64); absent: unchanged.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, minimum = 1, maximum = 64)
    )]
    pub max_concurrent_tasks: Option<i64>,
    /// Backups running at once (1-64, at most maxConcurrentTasks); absent: unchanged.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, minimum = 1, maximum = 64)
    )]
    pub max_concurrent_backups: Option<i64>,
    /// Checks running at once (1-64, at most maxConcurrentTasks); absent: unchanged.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, minimum = 1, maximum = 64)
    )]
    pub max_concurrent_checks: Option<i64>,
    /// Prunes running at once (1-64, at most maxConcurrentTasks); absent: unchanged.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, minimum = 1, maximum = 64)
    )]
    pub max_concurrent_prunes: Option<i64>,
    /// Restores running at once (1-64, at most maxConcurrentTasks); absent: unchanged.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, minimum = 1, maximum = 64)
    )]
    pub max_concurrent_restores: Option<i64>,
    /// Share of the machine's CPU restic may use, in percent (1-100); absent: unchanged.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, minimum = 1, maximum = 100)
    )]
    pub cpu_quota_percent: Option<i64>,
    /// The agent's whole upload budget in Mbit/s (1-100000); null is unlimited; absent: unchanged.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_or_null"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>, minimum = 1, maximum = 100000))]
    pub bandwidth_limit_mbps: Option<Option<i64>>,
    /// Retries after the first attempt (0-100), for tasks whose policy sets none; absent: unchanged.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, minimum = 0, maximum = 100)
    )]
    pub max_retries: Option<i64>,
    /// Cap of every backoff delay, in minutes (1-1440); absent: unchanged.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, minimum = 1, maximum = 1440)
    )]
    pub max_backoff_minutes: Option<i64>,
    /// First backoff delay, in seconds (1-3600, at most 60 times maxBackoffMinutes); absent: unchanged.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, minimum = 1, maximum = 3600)
    )]
    pub backoff_base_seconds: Option<i64>,
    /// Consecutive retriable failures on a repository before the agent backs off (0-100; 0 never backs off); absent: unchanged.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, minimum = 0, maximum = 100)
    )]
    pub backoff_failure_threshold: Option<i64>,
    /// Who rules the settings from now on: `agent` hands control back to the agent's file
    /// (its proposals are adopted again from its next heartbeat); absent: the API, as for any
    /// PATCH. Only for `PATCH /agents/{id}/settings`; an agent's proposal never carries it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub source: Option<crate::SettingsSource>,
}

/// A field that may be absent (`None`, via `default`) but not `null`: `null` would read as
/// "unchanged" and hide a client's mistake, so it is a 422 naming the field.
pub(crate) fn not_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`, via `default`).
fn present_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

impl SettingsPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `patch` over `self`: every field `patch` sets wins.
    pub fn merge(&self, patch: &SettingsPatch) -> SettingsPatch {
        SettingsPatch {
            max_concurrent_tasks: patch.max_concurrent_tasks.or(self.max_concurrent_tasks),
            max_concurrent_backups: patch.max_concurrent_backups.or(self.max_concurrent_backups),
            max_concurrent_checks: patch.max_concurrent_checks.or(self.max_concurrent_checks),
            max_concurrent_prunes: patch.max_concurrent_prunes.or(self.max_concurrent_prunes),
            max_concurrent_restores: patch
                .max_concurrent_restores
                .or(self.max_concurrent_restores),
            cpu_quota_percent: patch.cpu_quota_percent.or(self.cpu_quota_percent),
            bandwidth_limit_mbps: patch.bandwidth_limit_mbps.or(self.bandwidth_limit_mbps),
            max_retries: patch.max_retries.or(self.max_retries),
            max_backoff_minutes: patch.max_backoff_minutes.or(self.max_backoff_minutes),
            backoff_base_seconds: patch.backoff_base_seconds.or(self.backoff_base_seconds),
            backoff_failure_threshold: patch
                .backoff_failure_threshold
                .or(self.backoff_failure_threshold),
            source: patch.source.or(self.source),
        }
    }

    /// Validates a fully merged patch; `changed` says which fields the caller's patch touched,
    /// so a cross-field error names the field the caller changed.
    fn validate_merged(&self, changed: &SettingsPatch) -> Result<(), Error> {
        let total = required("maxConcurrentTasks", self.max_concurrent_tasks)?;
        in_range("maxConcurrentTasks", total, CONCURRENCY_RANGE)?;
        for (field, value, changed_it) in [
            (
                "maxConcurrentBackups",
                self.max_concurrent_backups,
                changed.max_concurrent_backups.is_some(),
            ),
            (
                "maxConcurrentChecks",
                self.max_concurrent_checks,
                changed.max_concurrent_checks.is_some(),
            ),
            (
                "maxConcurrentPrunes",
                self.max_concurrent_prunes,
                changed.max_concurrent_prunes.is_some(),
            ),
            (
                "maxConcurrentRestores",
                self.max_concurrent_restores,
                changed.max_concurrent_restores.is_some(),
            ),
        ] {
            let value = required(field, value)?;
            in_range(field, value, CONCURRENCY_RANGE)?;
            if value > total {
                // Name the field the caller changed: lowering the total below a per-kind limit is
                // the total's fault; raising a per-kind limit past the total is the per-kind's.
                return Err(if changed.max_concurrent_tasks.is_some() && !changed_it {
                    Error::invalid(
                        "maxConcurrentTasks",
                        total,
                        format!("{CONCURRENCY_RANGE} and at least {field} ({value})"),
                    )
                } else {
                    Error::invalid(
                        field,
                        value,
                        format!("{CONCURRENCY_RANGE} and at most maxConcurrentTasks ({total})"),
                    )
                });
            }
        }
        in_range(
            "cpuQuotaPercent",
            required("cpuQuotaPercent", self.cpu_quota_percent)?,
            CPU_QUOTA_RANGE,
        )?;
        if let Some(Some(mbps)) = self.bandwidth_limit_mbps
            && !(BANDWIDTH_RANGE.min..=BANDWIDTH_RANGE.max).contains(&mbps)
        {
            return Err(Error::invalid(
                "bandwidthLimitMbps",
                mbps,
                format!("{BANDWIDTH_RANGE} or null (unlimited)"),
            ));
        }
        in_range(
            "maxRetries",
            required("maxRetries", self.max_retries)?,
            MAX_RETRIES_RANGE,
        )?;
        let cap = required("maxBackoffMinutes", self.max_backoff_minutes)?;
        in_range("maxBackoffMinutes", cap, MAX_BACKOFF_MINUTES_RANGE)?;
        let base = required("backoffBaseSeconds", self.backoff_base_seconds)?;
        in_range("backoffBaseSeconds", base, BACKOFF_BASE_SECONDS_RANGE)?;
        if base > cap * 60 {
            return Err(
                if changed.max_backoff_minutes.is_some() && changed.backoff_base_seconds.is_none() {
                    Error::invalid(
                        "maxBackoffMinutes",
                        cap,
                        format!(
                            "{MAX_BACKOFF_MINUTES_RANGE} and at least backoffBaseSeconds / 60 ({base} s)"
                        ),
                    )
                } else {
                    Error::invalid(
                        "backoffBaseSeconds",
                        base,
                        format!(
                            "{BACKOFF_BASE_SECONDS_RANGE} and at most 60 * maxBackoffMinutes ({})",
                            cap * 60
                        ),
                    )
                },
            );
        }
        in_range(
            "backoffFailureThreshold",
            required("backoffFailureThreshold", self.backoff_failure_threshold)?,
            FAILURE_THRESHOLD_RANGE,
        )?;
        Ok(())
    }

    /// Only after `validate_merged` succeeded on a full patch: every value fits its range.
    fn into_settings_unchecked(self) -> Settings {
        let u = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or_default();
        Settings {
            max_concurrent_tasks: u(self.max_concurrent_tasks),
            max_concurrent_backups: u(self.max_concurrent_backups),
            max_concurrent_checks: u(self.max_concurrent_checks),
            max_concurrent_prunes: u(self.max_concurrent_prunes),
            max_concurrent_restores: u(self.max_concurrent_restores),
            cpu_quota_percent: u(self.cpu_quota_percent),
            bandwidth_limit_mbps: self
                .bandwidth_limit_mbps
                .flatten()
                .and_then(|v| u32::try_from(v).ok()),
            max_retries: u(self.max_retries),
            max_backoff_minutes: u(self.max_backoff_minutes),
            backoff_base_seconds: u(self.backoff_base_seconds),
            backoff_failure_threshold: u(self.backoff_failure_threshold),
        }
    }
}

fn required(field: &str, value: Option<i64>) -> Result<i64, Error> {
    value.ok_or_else(|| Error::invalid(field, "nothing", "a value"))
}

fn in_range(field: &str, value: i64, range: Range) -> Result<(), Error> {
    if (range.min..=range.max).contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid(field, value, range.to_string()))
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
