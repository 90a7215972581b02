//! The dashboard's forms: the CSRF-checked extractor every state-changing route takes, and the
//! typed forms with their conversion to the API's bodies (a field that does not convert is an
//! error on that field, shown beside it).

use std::collections::HashMap;

use axum::{
    Form,
    extract::{FromRequest, FromRequestParts, Request},
    response::{IntoResponse, Response},
};
use backup_core::{
    AgentId, AgentView, PolicySpec, RestoreRequest, Retention, SETTING_FIELDS, ScheduleSpec,
    SettingsPatch, TaskKind,
};
use serde::{Deserialize, de::DeserializeOwned};

use super::{layout::csrf_failed, session::Session};
use crate::AppState;

/// A field the form got wrong, and what to tell the person.
pub(super) type FieldError = (String, String);

/// A form posted from a logged-in session with its CSRF token: every state-changing dashboard
/// route takes one, so none can forget the check. Without a session: the login page; with a
/// wrong or missing token: the "expired form" page.
pub(crate) struct Posted<F> {
    pub(super) session: Session,
    pub(super) form: F,
}

#[derive(Deserialize)]
struct WithCsrf<F> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: F,
}

impl<F: DeserializeOwned + Send> FromRequest<AppState> for Posted<F> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Form(posted) =
            Form::<WithCsrf<F>>::from_request(Request::from_parts(parts, body), state)
                .await
                .map_err(IntoResponse::into_response)?;
        if !session.csrf_ok(&posted.csrf) {
            return Err(csrf_failed());
        }
        Ok(Posted {
            session,
            form: posted.form,
        })
    }
}

/// A form with nothing but its CSRF token (log out, run now).
#[derive(Deserialize)]
pub(super) struct Empty {}

/// The settings form: one text field per setting of [`SETTING_FIELDS`], kept as typed so that
/// a rejected form shows what was entered.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(transparent)]
pub(super) struct SettingsForm(HashMap<String, String>);

impl SettingsForm {
    /// The form filled with the agent's current settings.
    pub(super) fn of(agent: &AgentView) -> Self {
        let json = serde_json::to_value(agent.settings).unwrap_or_default();
        Self(
            SETTING_FIELDS
                .iter()
                .map(|(key, _, _)| {
                    let value = json
                        .get(*key)
                        .filter(|v| !v.is_null())
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    ((*key).to_owned(), value)
                })
                .collect(),
        )
    }

    /// What the field `key` holds.
    pub(super) fn value(&self, key: &str) -> &str {
        self.0.get(key).map_or("", String::as_str)
    }

    /// The label of a setting's field, with the range validation applies.
    pub(super) fn label(key: &str) -> String {
        SETTING_FIELDS
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(k, label, range)| {
                if *k == "bandwidthLimitMbps" {
                    format!("{label} ({range}, empty: unlimited)")
                } else {
                    format!("{label} ({range})")
                }
            })
            .unwrap_or_default()
    }

    /// The form as a patch; a field that is not a whole number is an error on that field. An
    /// empty bandwidth field means unlimited; any other empty field is left unchanged.
    pub(super) fn patch(&self) -> Result<SettingsPatch, FieldError> {
        let mut json = serde_json::Map::new();
        for (key, _, _) in SETTING_FIELDS {
            let raw = self.value(key).trim();
            if raw.is_empty() {
                if key == "bandwidthLimitMbps" {
                    json.insert(key.into(), serde_json::Value::Null);
                }
                continue;
            }
            let n: i64 = raw.parse().map_err(|_| {
                (
                    key.to_owned(),
                    format!("{raw:?} is not a whole number; {}", Self::label(key)),
                )
            })?;
            json.insert(key.into(), n.into());
        }
        serde_json::from_value(serde_json::Value::Object(json))
            .map_err(|e| ("settings".to_owned(), e.to_string()))
    }
}

/// The "new policy" form.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct PolicyForm {
    pub(super) name: String,
    pub(super) agent_id: String,
    pub(super) kind: String,
    pub(super) every: String,
    pub(super) cron: String,
    pub(super) timezone: String,
    pub(super) repository: String,
    pub(super) keep_last: String,
    pub(super) max_task_retries: String,
    /// One per line.
    pub(super) paths: String,
}

impl PolicyForm {
    /// The policy the form describes; the store validates the rest (and names the field).
    pub(super) fn spec(&self) -> Result<PolicySpec, FieldError> {
        let agent_id = self
            .agent_id
            .trim()
            .parse::<AgentId>()
            .map_err(|_| ("agentId".to_owned(), "choose an agent".to_owned()))?;
        let kind = self
            .kind
            .trim()
            .parse::<TaskKind>()
            .map_err(|e| ("kind".to_owned(), e.to_string()))?;
        let (every, cron, timezone) = (self.every.trim(), self.cron.trim(), self.timezone.trim());
        let schedule = ScheduleSpec {
            every: (!every.is_empty()).then(|| every.to_owned()),
            cron: (!cron.is_empty()).then(|| cron.to_owned()),
            timezone: (!cron.is_empty() && !timezone.is_empty()).then(|| timezone.to_owned()),
        };
        let keep_last = number("keepLast", &self.keep_last)?;
        Ok(PolicySpec {
            name: self.name.trim().to_owned(),
            agent_id,
            kind,
            schedule,
            paths: lines(&self.paths),
            excludes: vec![],
            repository: self.repository.trim().to_owned(),
            retention: keep_last.map(|n| Retention {
                keep_last: Some(n),
                ..Retention::default()
            }),
            max_task_retries: number("maxTaskRetries", &self.max_task_retries)?,
            timeout_minutes: None,
            enabled: true,
            alert_after: None,
        })
    }
}

/// An optional whole number from a text field.
fn number(key: &str, raw: &str) -> Result<Option<u32>, FieldError> {
    match raw.trim() {
        "" => Ok(None),
        raw => raw
            .parse()
            .map(Some)
            .map_err(|_| (key.to_owned(), format!("{raw:?} is not a whole number"))),
    }
}

/// The non-empty lines of a text area, trimmed.
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The enable / disable button of a policy.
#[derive(Deserialize)]
pub(super) struct EnabledForm {
    #[serde(default)]
    pub(super) enabled: String,
}

/// The cancel button of a task: where to go back to when the task already ended.
#[derive(Deserialize)]
pub(super) struct CancelForm {
    #[serde(default)]
    pub(super) agent: String,
}

/// A snapshot to browse or restore from: which agent has it in which repository. Posted with
/// the browse and restore forms, and the query of the snapshot page.
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct SnapshotAt {
    #[serde(default)]
    pub(super) agent: String,
    #[serde(default)]
    pub(super) repository: String,
}

impl SnapshotAt {
    /// The agent, or the field error.
    pub(super) fn agent_id(&self) -> Result<AgentId, FieldError> {
        self.agent
            .parse()
            .map_err(|_| ("agent".to_owned(), "choose an agent".to_owned()))
    }
}

/// The browse form: one directory of the snapshot.
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct BrowseForm {
    #[serde(flatten)]
    pub(super) at: SnapshotAt,
    #[serde(default)]
    pub(super) path: String,
}

/// The restore form: onto which agent, into which folder, which paths (one per line; none for
/// the whole snapshot), and whether only to count.
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct RestoreForm {
    #[serde(flatten)]
    pub(super) at: SnapshotAt,
    /// The agent that restores (it may differ from the one that made the snapshot).
    #[serde(default, rename = "targetAgent")]
    pub(super) target_agent: String,
    #[serde(default)]
    pub(super) target: String,
    #[serde(default)]
    pub(super) include: String,
    /// A checkbox: present when ticked.
    #[serde(default, rename = "dryRun")]
    pub(super) dry_run: Option<String>,
}

impl RestoreForm {
    /// The API's restore request for `snapshot`, or the field that is wrong.
    pub(super) fn request(&self, snapshot: &str) -> Result<RestoreRequest, FieldError> {
        let agent_id = self
            .target_agent
            .parse()
            .map_err(|_| ("targetAgent".to_owned(), "choose an agent".to_owned()))?;
        Ok(RestoreRequest {
            agent_id,
            repository: self.at.repository.trim().to_owned(),
            snapshot_id: snapshot.to_owned(),
            include: lines(&self.include),
            target: self.target.trim().to_owned(),
            dry_run: self.dry_run.is_some(),
        })
    }
}
