//! The events page: the event and audit log, newest first, filtered by type and paged; and the
//! webhooks with their latest deliveries. The overview shows the same table for recent events.

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::Response,
};
use backup_core::{EventType, EventView};
use backup_store::{DeliveryFilter, EventFilter, PageRequest};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde_json::Value;

use super::{
    layout::{failure, layout, page, pager},
    names::Names,
    session::Session,
    units::when,
};
use crate::AppState;

/// Events per page.
const PAGE: u32 = 50;
/// Deliveries shown per webhook.
const DELIVERIES: u32 = 5;
/// The longest details text of a row.
const DETAILS: usize = 200;

/// The page's query: an event type to keep, and the cursor of the page.
#[derive(serde::Deserialize, Default)]
pub(crate) struct EventsQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    cursor: Option<String>,
}

/// What an event says beyond its type and subject, in one line: the changed keys of an audit
/// event, or its other fields (ids and names are in the subject column).
fn details(data: &Value) -> String {
    let Some(map) = data.as_object() else {
        return String::new();
    };
    let mut parts = Vec::new();
    for (key, value) in map {
        if key.ends_with("Id") || key == "name" || value.is_null() {
            continue;
        }
        let text = match (key.as_str(), value) {
            ("changed", Value::Object(changed)) => {
                let keys: Vec<&str> = changed.keys().map(String::as_str).collect();
                format!("changed {}", keys.join(", "))
            }
            (_, Value::String(s)) => format!("{key}: {s}"),
            _ => format!("{key}: {value}"),
        };
        parts.push(text);
    }
    let mut line = parts.join(" · ");
    if line.chars().count() > DETAILS {
        line = line.chars().take(DETAILS).collect::<String>() + "…";
    }
    line
}

/// The id under `key` in an event's data.
fn id<T: std::str::FromStr>(data: &Value, key: &str) -> Option<T> {
    data.get(key).and_then(Value::as_str)?.parse().ok()
}

/// The events as a table: when, type (audit marked), who, about what, details.
pub(super) fn events_table(events: &[EventView], names: &Names, now: DateTime<Utc>) -> Markup {
    html! {
        table.events {
            thead { tr { th { "When" } th { "Event" } th { "By" } th { "About" } th { "Details" } } }
            tbody {
                @for e in events {
                    tr {
                        td { (when(Some(e.time), now)) }
                        td { (e.event_type.as_str()) @if e.event_type.is_audit() { " " span.badge.offline { "audit" } } }
                        td { (e.actor.as_str()) }
                        td {
                            @if let Some(p) = id(&e.data, "policyId") { (names.policy(Some(p))) " " }
                            @if let Some(a) = id(&e.data, "agentId") { (names.agent(a)) }
                        }
                        td { (details(&e.data)) }
                    }
                }
                @if events.is_empty() { tr { td colspan="5" { "No events yet." } } }
            }
        }
    }
}

pub(crate) async fn events_page(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<EventsQuery>,
) -> Response {
    let store = state.store();
    let now = store.clock().now();
    let event_type = q
        .event_type
        .as_deref()
        .filter(|t| !t.is_empty())
        .and_then(|t| t.parse::<EventType>().ok());
    let filter = EventFilter {
        event_type,
        ..EventFilter::default()
    };
    let request = PageRequest {
        limit: Some(PAGE),
        cursor: q.cursor.clone().filter(|c| !c.is_empty()),
    };
    let events = match store.list_events(session.tenant(), &filter, &request).await {
        Ok(e) => e,
        Err(e) => return failure(e),
    };
    let names = match Names::load(store, session.tenant()).await {
        Ok(n) => n,
        Err(e) => return failure(e),
    };
    let webhooks = match store
        .list_webhooks(session.tenant(), &PageRequest::first(50))
        .await
    {
        Ok(w) => w.items,
        Err(e) => return failure(e),
    };
    let mut deliveries = Vec::with_capacity(webhooks.len());
    for hook in &webhooks {
        match store
            .list_deliveries(
                session.tenant(),
                hook.id,
                &DeliveryFilter::default(),
                &PageRequest::first(DELIVERIES),
            )
            .await
        {
            Ok(d) => deliveries.push(d.items),
            Err(e) => return failure(e),
        }
    }
    let base = match event_type {
        Some(t) => format!("/ui/events?type={}", t.as_str()),
        None => "/ui/events".to_owned(),
    };
    page(
        StatusCode::OK,
        layout(
            "Events",
            Some(&session),
            html! {
                h1 { "Events" }
                form.filters method="get" action="/ui/events" {
                    label for="type" { "Type" }
                    select id="type" name="type" {
                        option value="" { "every type" }
                        @for t in EventType::ALL {
                            option value=(t.as_str()) selected[event_type == Some(*t)] { (t.as_str()) }
                        }
                    }
                    " " button type="submit" { "Show" }
                }
                (events_table(&events.items, &names, now))
                (pager(&base, events.next_cursor.as_deref()))
                h2 { "Webhooks" }
                @if webhooks.is_empty() { p { "No webhooks: create one with POST /webhooks." } }
                @for (hook, latest) in webhooks.iter().zip(&deliveries) {
                    h3 { (hook.url) }
                    p { "Events: " @if hook.events.is_empty() { "all" } @else { (hook.events.join(", ")) }
                        @if let Some(d) = &hook.description { " · " (d) } }
                    table.deliveries {
                        thead { tr { th { "Event" } th { "Status" } th { "Attempts" } th { "Last answer" } th { "Last error" } th { "Next attempt" } th { "Delivered" } } }
                        tbody {
                            @for d in latest {
                                tr {
                                    td { (d.event_type.as_str()) }
                                    td { (d.status.as_str()) }
                                    td { (d.attempts) }
                                    td { (d.last_status.map(|s| s.to_string()).unwrap_or_default()) }
                                    td { (d.last_error.as_deref().unwrap_or("")) }
                                    td { (when(d.next_attempt_at, now)) }
                                    td { (when(d.delivered_at, now)) }
                                }
                            }
                            @if latest.is_empty() { tr { td colspan="7" { "No deliveries yet." } } }
                        }
                    }
                }
            },
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_leave_ids_to_the_subject_and_name_changed_keys() {
        let data = serde_json::json!({
            "agentId": "x", "name": "db-1", "changed": {"maxConcurrentTasks": {"old": 1, "new": 4}},
            "proposed": true, "lastHeartbeatAt": null
        });
        assert_eq!(
            details(&data),
            "changed maxConcurrentTasks · proposed: true"
        );
        let long = serde_json::json!({"error": "x".repeat(500)});
        assert_eq!(details(&long).chars().count(), DETAILS + 1);
    }
}
