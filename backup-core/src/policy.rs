//! What a policy asks for, validated: kind, schedule, paths, repository, retention, limits.

use serde::{Deserialize, Deserializer, Serialize};

use crate::{AgentId, Error, Schedule, ScheduleSpec, TaskKind};

/// Most paths (and, separately, excludes) one policy may list.
pub const MAX_PATHS: usize = 256;
/// Longest path or exclude pattern, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest policy or agent name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest repository name, in characters.
pub const MAX_REPOSITORY_CHARS: usize = 100;
/// Largest `timeoutMinutes` (one week).
pub const MAX_TIMEOUT_MINUTES: u32 = 10_080;

/// restic's `forget` keep rules. Each set rule must be at least 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// `--keep-last`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// `--keep-hourly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// `--keep-daily`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// `--keep-weekly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// `--keep-monthly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// `--keep-yearly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// `--keep-within=<n>d`: every snapshot made within this many days of the newest one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_days: Option<u32>,
}

impl Retention {
    /// The rules that are set, as restic arguments (`--keep-last=3`, `--keep-within=7d`), in a
    /// fixed order.
    pub fn rules(&self) -> Vec<String> {
        [
            ("--keep-last", self.keep_last, ""),
            ("--keep-hourly", self.keep_hourly, ""),
            ("--keep-daily", self.keep_daily, ""),
            ("--keep-weekly", self.keep_weekly, ""),
            ("--keep-monthly", self.keep_monthly, ""),
            ("--keep-yearly", self.keep_yearly, ""),
            ("--keep-within", self.keep_within_days, "d"),
        ]
        .into_iter()
        .filter_map(|(flag, n, unit)| n.map(|n| format!("{flag}={n}{unit}")))
        .collect()
    }

    /// Each rule the larger of `self`'s and `floor`'s (an absent rule is the smallest): keep
    /// rules never below a floor.
    #[must_use]
    pub fn at_least(&self, floor: &Retention) -> Retention {
        let max = |a: Option<u32>, b: Option<u32>| a.max(b);
        Retention {
            keep_last: max(self.keep_last, floor.keep_last),
            keep_hourly: max(self.keep_hourly, floor.keep_hourly),
            keep_daily: max(self.keep_daily, floor.keep_daily),
            keep_weekly: max(self.keep_weekly, floor.keep_weekly),
            keep_monthly: max(self.keep_monthly, floor.keep_monthly),
            keep_yearly: max(self.keep_yearly, floor.keep_yearly),
            keep_within_days: max(self.keep_within_days, floor.keep_within_days),
        }
    }

    /// Checks that every rule set is at least 1.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `retention.<rule>`.
    pub fn validate(&self) -> Result<(), Error> {
        for (field, value) in [
            ("retention.keepLast", self.keep_last),
            ("retention.keepHourly", self.keep_hourly),
            ("retention.keepDaily", self.keep_daily),
            ("retention.keepWeekly", self.keep_weekly),
            ("retention.keepMonthly", self.keep_monthly),
            ("retention.keepYearly", self.keep_yearly),
            ("retention.keepWithinDays", self.keep_within_days),
        ] {
            if value == Some(0) {
                return Err(Error::invalid(field, 0, "at least 1, or absent"));
            }
        }
        Ok(())
    }
}

/// A policy as created (`POST /policies`) and stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// A name for people (1-200 characters).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub name: String,
    /// The agent that runs it (one of the tenant's).
    pub agent_id: AgentId,
    /// What it runs.
    pub kind: TaskKind,
    /// When.
    pub schedule: ScheduleSpec,
    /// What to back up (required for `backup`).
    #[serde(default)]
    pub paths: Vec<String>,
    /// restic `--exclude` patterns.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// The repository's name in the agent's configuration (secrets never reach the server).
    pub repository: String,
    /// Keep rules (required for `prune`).
    #[serde(default)]
    pub retention: Option<Retention>,
    /// Retries of its tasks (0-100); `null` uses the agent's `maxRetries`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub max_task_retries: Option<u32>,
    /// Per-attempt time limit in minutes (1-10080); `null` uses the agent's `taskTimeoutMinutes`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10080))]
    pub timeout_minutes: Option<u32>,
    /// Disabled policies are never scheduled (run-now still works).
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// How long without a success before the policy is `overdue` (a humantime duration of 1s
    /// to 366days); `null`: twice the schedule's gap plus the lease (the view's
    /// `effectiveAlertAfter` shows the value in force).
    #[serde(default)]
    pub alert_after: Option<String>,
}

const fn enabled_default() -> bool {
    true
}

/// Checks a name (of a tenant, an agent, a policy) or a host name: 1-200 characters, not all
/// blank, and no control characters (a NUL cannot even be stored in PostgreSQL).
///
/// # Errors
/// [`Error::Invalid`] on `field`.
pub fn validate_name(field: &str, name: &str) -> Result<(), Error> {
    let chars = name.chars().count();
    if name.trim().is_empty() || chars > MAX_NAME_CHARS {
        return Err(Error::invalid(
            field,
            format!("{chars} characters"),
            format!("1-{MAX_NAME_CHARS} characters"),
        ));
    }
    if let Some(at) = name.chars().position(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("a control character at position {at}"),
            "printable characters",
        ));
    }
    Ok(())
}

impl PolicySpec {
    /// Checks every field and returns the parsed schedule.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first offending field.
    pub fn validate(&self) -> Result<Schedule, Error> {
        validate_name("name", &self.name)?;
        if !self.kind.is_scheduled() {
            let names: Vec<&str> = TaskKind::SCHEDULED.iter().map(|k| k.as_str()).collect();
            return Err(Error::invalid(
                "kind",
                self.kind.as_str(),
                format!(
                    "one of {} (restores and listings are asked for with POST /restores and \
                     POST /snapshots/{{id}}/ls)",
                    names.join(", ")
                ),
            ));
        }
        let schedule = Schedule::parse(&self.schedule)?;
        validate_paths("paths", &self.paths)?;
        validate_paths("excludes", &self.excludes)?;
        if let Some((i, relative)) = self
            .paths
            .iter()
            .enumerate()
            .find(|(_, p)| !p.starts_with('/'))
        {
            return Err(Error::invalid(
                "paths",
                format!("paths[{i}] {relative:?}"),
                "absolute paths (starting with /): the agent runs restic from its own directory",
            ));
        }
        if self.kind == TaskKind::Backup && self.paths.is_empty() {
            return Err(Error::invalid(
                "paths",
                "[]",
                "at least one path for a backup policy",
            ));
        }
        validate_repository_name(&self.repository)?;
        if let Some(retention) = &self.retention {
            retention.validate()?;
        }
        if self.kind == TaskKind::Prune && self.retention.is_none_or(|r| r.rules().is_empty()) {
            return Err(Error::invalid(
                "retention",
                "no keep rule",
                "at least one keep rule for a prune policy",
            ));
        }
        if let Some(n) = self.max_task_retries
            && n > 100
        {
            return Err(Error::invalid("maxTaskRetries", n, "0-100 or null"));
        }
        if let Some(n) = self.timeout_minutes
            && (n == 0 || n > MAX_TIMEOUT_MINUTES)
        {
            return Err(Error::invalid(
                "timeoutMinutes",
                n,
                format!("1-{MAX_TIMEOUT_MINUTES} or null"),
            ));
        }
        if let Some(text) = &self.alert_after {
            crate::parse_alert_after(text)?;
        }
        Ok(schedule)
    }

    /// `patch` over `self`, validated. `schedule` and `retention` are replaced whole.
    ///
    /// # Errors
    /// As [`PolicySpec::validate`], on the merged policy.
    pub fn apply(&self, patch: &PolicyPatch) -> Result<(PolicySpec, Schedule), Error> {
        let merged = PolicySpec {
            name: patch.name.clone().unwrap_or_else(|| self.name.clone()),
            agent_id: patch.agent_id.unwrap_or(self.agent_id),
            kind: patch.kind.unwrap_or(self.kind),
            schedule: patch
                .schedule
                .clone()
                .unwrap_or_else(|| self.schedule.clone()),
            paths: patch.paths.clone().unwrap_or_else(|| self.paths.clone()),
            excludes: patch
                .excludes
                .clone()
                .unwrap_or_else(|| self.excludes.clone()),
            repository: patch
                .repository
                .clone()
                .unwrap_or_else(|| self.repository.clone()),
            retention: patch.retention.unwrap_or(self.retention),
            max_task_retries: patch.max_task_retries.unwrap_or(self.max_task_retries),
            timeout_minutes: patch.timeout_minutes.unwrap_or(self.timeout_minutes),
            enabled: patch.enabled.unwrap_or(self.enabled),
            alert_after: patch
                .alert_after
                .clone()
                .unwrap_or_else(|| self.alert_after.clone()),
        };
        let schedule = merged.validate()?;
        Ok((merged, schedule))
    }
}

/// A partial policy update (`PATCH /policies/{id}`): absent fields are unchanged; for the
/// nullable ones (`retention`, `maxTaskRetries`, `timeoutMinutes`) `null` clears.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicyPatch {
    /// New name.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::settings::not_null"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub name: Option<String>,
    /// Move the policy to another of the tenant's agents.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::settings::not_null"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub agent_id: Option<AgentId>,
    /// New kind.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::settings::not_null"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub kind: Option<TaskKind>,
    /// New schedule, replacing the old one whole.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::settings::not_null"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub schedule: Option<ScheduleSpec>,
    /// New paths.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::settings::not_null"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub paths: Option<Vec<String>>,
    /// New excludes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::settings::not_null"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub excludes: Option<Vec<String>>,
    /// New repository name.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::settings::not_null"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub repository: Option<String>,
    /// New keep rules, replacing the old ones whole; `null` removes them.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    pub retention: Option<Option<Retention>>,
    /// `null` falls back to the agent's `maxRetries`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    pub max_task_retries: Option<Option<u32>>,
    /// `null` falls back to the agent's `taskTimeoutMinutes`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    pub timeout_minutes: Option<Option<u32>>,
    /// Enable or disable.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::settings::not_null"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub enabled: Option<bool>,
    /// `null` goes back to the default (twice the schedule's gap plus the lease).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    pub alert_after: Option<Option<String>>,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`, via `default`).
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn validate_paths(field: &str, paths: &[String]) -> Result<(), Error> {
    if paths.len() > MAX_PATHS {
        return Err(Error::invalid(
            field,
            format!("{} entries", paths.len()),
            format!("at most {MAX_PATHS} entries"),
        ));
    }
    for (i, p) in paths.iter().enumerate() {
        if p.is_empty() || p.len() > MAX_PATH_BYTES || p.contains('\0') {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                format!("{} bytes", p.len()),
                format!("1-{MAX_PATH_BYTES} bytes without NUL"),
            ));
        }
    }
    Ok(())
}

/// Checks a repository name: 1-100 characters of `A-Z a-z 0-9 . _ -`.
///
/// # Errors
/// [`Error::Invalid`] on the field `repository`.
pub fn validate_repository_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_REPOSITORY_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "repository",
            name,
            format!("1-{MAX_REPOSITORY_CHARS} characters of A-Z a-z 0-9 . _ -"),
        ))
    }
}
