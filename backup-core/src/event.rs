//! The event and audit log: what happened to a tenant's fleet (a task failed for good, an agent
//! went quiet, a policy is overdue) and who changed what (a PATCH of settings, a token
//! rotation). The store writes each event in the same transaction as the change it records, so
//! the log never claims what did not happen nor misses what did; webhooks deliver them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, EventId};

macro_rules! event_types {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, audit: $audit:literal; )*) => {
        /// What an event records.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[non_exhaustive]
        pub enum EventType {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )*
        }

        impl EventType {
            /// Every type.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            /// The wire name (`task.failed_permanently` ...).
            pub const fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name,)* }
            }

            /// Whether it records a person's (or a token's) change rather than what the fleet
            /// did: the audit trail.
            pub const fn is_audit(self) -> bool {
                match self { $(EventType::$variant => $audit,)* }
            }
        }
    };
}

event_types! {
    /// A task failed for good (a permanent error, or its retry budget is spent).
    TaskFailedPermanently = "task.failed_permanently", audit: false;
    /// A task succeeded after one or more failed attempts.
    TaskSucceededAfterRetry = "task.succeeded_after_retry", audit: false;
    /// A policy has not succeeded for longer than its `alertAfter`.
    PolicyOverdue = "policy.overdue", audit: false;
    /// An overdue or failing policy succeeded again.
    PolicyRecovered = "policy.recovered", audit: false;
    /// An agent sent no heartbeat for `offlineAfterSeconds`.
    AgentOffline = "agent.offline", audit: false;
    /// An offline agent sent a heartbeat again.
    AgentOnline = "agent.online", audit: false;
    /// An agent reported a repository (or itself) in backoff.
    AgentBackoffStarted = "agent.backoff_started", audit: false;
    /// A restore succeeded.
    RestoreSucceeded = "restore.succeeded", audit: false;
    /// A restore failed for good.
    RestoreFailed = "restore.failed", audit: false;
    /// The tenant's token was rotated.
    TenantTokenRotated = "tenant.token_rotated", audit: true;
    /// An agent was created.
    AgentCreated = "agent.created", audit: true;
    /// An agent was deleted.
    AgentDeleted = "agent.deleted", audit: true;
    /// An agent's settings changed (`data.changed` names each key with its old and new value).
    AgentSettingsChanged = "agent.settings_changed", audit: true;
    /// An agent's token was rotated.
    AgentTokenRotated = "agent.token_rotated", audit: true;
    /// An agent enrolled itself with an enrollment token.
    AgentEnrolled = "agent.enrolled", audit: true;
    /// A policy was created.
    PolicyCreated = "policy.created", audit: true;
    /// A policy was changed (`data.changed` names the keys).
    PolicyUpdated = "policy.updated", audit: true;
    /// A policy was deleted.
    PolicyDeleted = "policy.deleted", audit: true;
    /// A restore was asked for.
    RestoreRequested = "restore.requested", audit: true;
    /// A webhook was created.
    WebhookCreated = "webhook.created", audit: true;
    /// A webhook was deleted.
    WebhookDeleted = "webhook.deleted", audit: true;
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        EventType::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "type",
                    s,
                    "an event type such as agent.offline or task.failed_permanently (GET /openapi.json lists them)",
                )
            })
    }
}

/// Who made the change an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Actor {
    /// The tenant's token (the API or a dashboard session).
    Tenant,
    /// An agent's token (its reports).
    Agent,
    /// The admin token or the server's command line.
    Admin,
    /// The server itself (the scheduler found it).
    System,
}

impl Actor {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Actor::Tenant => "tenant",
            Actor::Agent => "agent",
            Actor::Admin => "admin",
            Actor::System => "system",
        }
    }
}

impl std::str::FromStr for Actor {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        [Actor::Tenant, Actor::Agent, Actor::Admin, Actor::System]
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| Error::invalid("actor", s, "tenant, agent, admin or system"))
    }
}

/// One event, as `GET /events` lists it and as a webhook receives it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// Its id: a webhook receiver's idempotency key.
    pub id: EventId,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When.
    pub time: DateTime<Utc>,
    /// Who made the change.
    pub actor: Actor,
    /// The object it is about (an agent, a policy, a task, a webhook, the tenant).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Uuid))]
    pub subject_id: Option<uuid::Uuid>,
    /// The details: ids, names, the changed keys with their old and new values. Never a
    /// secret.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_reads_back_from_its_wire_name() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>().expect("parses"), *t);
            let json = serde_json::to_value(t).expect("json");
            assert_eq!(json, t.as_str());
        }
        assert!(EventType::AgentSettingsChanged.is_audit());
        assert!(!EventType::AgentOffline.is_audit());
        assert!("agent.gone".parse::<EventType>().is_err());
    }
}
