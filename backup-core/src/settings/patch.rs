//! [`SettingsPatch`]: a partial update of the settings, merged over the current ones and
//! validated as a whole (the ranges and the cross-field rules).

use serde::{Deserialize, Deserializer, Serialize};

use super::*;

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
    pub(super) fn validate_merged(&self, changed: &SettingsPatch) -> Result<(), Error> {
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
    pub(super) fn into_settings_unchecked(self) -> Settings {
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
