//! The coloured labels: an agent's status and a policy's protection, the same everywhere.

use backup_core::{AgentStatus, AgentView, Protection};
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::units::when;

/// An agent's status; backoff names until when.
pub(super) fn agent(agent: &AgentView, now: DateTime<Utc>) -> Markup {
    match agent.status {
        AgentStatus::Backoff => {
            html! { span.badge.backoff { "Backoff active until " (when(agent.backoff_until, now)) } }
        }
        AgentStatus::Saturated => html! { span.badge.saturated { "Saturated" } },
        AgentStatus::Online => html! { span.badge.online { "Online" } },
        _ => html! { span.badge.offline { "Offline" } },
    }
}

/// The words for a protection value.
pub(super) fn protection_text(p: Protection) -> &'static str {
    match p {
        Protection::Ok => "Protected",
        Protection::NeverRun => "Never run",
        Protection::Overdue => "Overdue",
        Protection::Failing => "Failing",
        _ => "Disabled",
    }
}

/// A policy's protection, coloured by how urgent it is.
pub(super) fn protection(p: Protection) -> Markup {
    html! { span class={ "badge p-" (p.as_str()) } { (protection_text(p)) } }
}

/// The words and colour class for an agent status name of the summary.
pub(super) fn agent_status_text(status: &str) -> &'static str {
    match status {
        "online" => "Online",
        "saturated" => "Saturated",
        "backoff" => "Backoff",
        _ => "Offline",
    }
}
