//! The front page: is everything protected? Agents by status and policies by protection as
//! coloured counts, the policies that need attention first, the oldest last success, the data
//! added in a day, and the latest events.

use axum::{extract::State, http::StatusCode, response::Response};
use backup_core::{PolicyView, Protection, Summary};
use backup_store::{EventFilter, PageRequest, PolicyFilter, StoreError};
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::{
    badges,
    events::events_table,
    layout::{failure, layout, page},
    names::Names,
    session::Session,
    units::{bytes, when},
};
use crate::AppState;

/// The protection values that need a person, the most urgent first.
const ATTENTION: [Protection; 3] = [
    Protection::Failing,
    Protection::Overdue,
    Protection::NeverRun,
];
/// Policies listed per protection value in "needs attention".
const LISTED: u32 = 20;
/// Events on the front page.
const RECENT: u32 = 10;

/// The one-line answer to "is everything protected?".
fn verdict(summary: &Summary) -> Markup {
    let count = |p: Protection| summary.policies.get(p.as_str()).copied().unwrap_or(0);
    let (failing, overdue) = (count(Protection::Failing), count(Protection::Overdue));
    let offline = summary.agents.get("offline").copied().unwrap_or(0);
    let enabled: u64 = Protection::ALL
        .iter()
        .filter(|p| **p != Protection::Disabled)
        .map(|p| count(*p))
        .sum();
    let never_run = count(Protection::NeverRun);
    let policies = |n: u64| if n == 1 { "policy" } else { "policies" };
    if enabled == 0 {
        html! { p.verdict { "No enabled policies yet: add one on the " a href="/ui/policies" { "Policies" } " page." } }
    } else if failing + overdue == 0 {
        let waiting = if never_run == 0 {
            ""
        } else {
            " or waiting for their first run"
        };
        let agents = if offline == 0 {
            String::new()
        } else {
            format!(" ({offline} agents offline)")
        };
        html! { p.verdict.good { "All " (enabled) " enabled " (policies(enabled)) " protected" (waiting) (agents) "." } }
    } else {
        html! { p.verdict.bad { (failing + overdue) " of " (enabled) " enabled " (policies(enabled)) " need attention: "
        (failing) " failing, " (overdue) " overdue." } }
    }
}

/// A row of coloured counts, each linking to its list.
fn tiles<'a>(counts: impl Iterator<Item = (&'a str, Markup, u64, String)>) -> Markup {
    html! {
        div.tiles {
            @for (class, label, n, href) in counts {
                a class={ "tile " (class) @if n == 0 { " zero" } } href=(href) { b { (n) } (label) }
            }
        }
    }
}

fn overview_markup(
    session: &Session,
    summary: &Summary,
    attention: &[PolicyView],
    names: &Names,
    events: &[backup_core::EventView],
    now: DateTime<Utc>,
) -> Markup {
    let agent_counts = ["online", "saturated", "backoff", "offline"].map(|s| {
        let n = summary.agents.get(s).copied().unwrap_or(0);
        (
            s,
            html! { (badges::agent_status_text(s)) },
            n,
            "/ui/agents".to_owned(),
        )
    });
    let policy_counts = Protection::ALL.map(|p| {
        let n = summary.policies.get(p.as_str()).copied().unwrap_or(0);
        (
            "",
            badges::protection(p),
            n,
            format!("/ui/policies?protection={}", p.as_str()),
        )
    });
    layout(
        "Overview",
        Some(session),
        html! {
            h1 { "Overview" }
            (verdict(summary))
            h2 { "Agents" }
            (tiles(agent_counts.into_iter()))
            h2 { "Policies" }
            (tiles(policy_counts.into_iter()))
            dl.facts {
                dt { "Oldest last success" } dd { (when(summary.oldest_last_success_at, now)) }
                dt { "Data added in 24 h" } dd { (bytes(summary.bytes_added_24h)) }
                dt { "Tasks failed for good in 24 h" } dd { (summary.failed_permanently_24h) }
            }
            h2 { "Needs attention" }
            table.attention {
                thead { tr { th { "Policy" } th { "Agent" } th { "Protection" } th { "Last success" } th { "Last run" } th { "Repository" } } }
                tbody {
                    @for p in attention {
                        tr {
                            td { (names.policy(Some(p.id))) }
                            td { (names.agent(p.spec.agent_id)) }
                            td { (badges::protection(p.protection)) }
                            td { (when(p.last_success_at, now)) }
                            td { @if let Some(s) = p.last_run_status { (s.as_str()) " " } (when(p.last_run_at, now)) }
                            td { (p.spec.repository) }
                        }
                    }
                    @if attention.is_empty() { tr { td colspan="6" { "Nothing: every enabled policy succeeded within its alertAfter." } } }
                }
            }
            h2 { "Recent events" }
            (events_table(events, names, now))
            p { a href="/ui/events" { "All events →" } }
        },
    )
}

async fn load(
    state: &AppState,
    session: &Session,
) -> Result<(Summary, Vec<PolicyView>, Names, Vec<backup_core::EventView>), StoreError> {
    let store = state.store();
    let tenant = session.tenant();
    let summary = store.summary(tenant).await?;
    let mut attention = Vec::new();
    for protection in ATTENTION {
        let filter = PolicyFilter {
            protection: Some(protection),
            ..PolicyFilter::default()
        };
        let page = store
            .list_policies(tenant, &filter, &PageRequest::first(LISTED))
            .await?;
        attention.extend(page.items);
    }
    let names = Names::load(store, tenant).await?;
    let events = store
        .list_events(tenant, &EventFilter::default(), &PageRequest::first(RECENT))
        .await?;
    Ok((summary, attention, names, events.items))
}

pub(crate) async fn overview_page(State(state): State<AppState>, session: Session) -> Response {
    let now = state.store().clock().now();
    match load(&state, &session).await {
        Ok((summary, attention, names, events)) => page(
            StatusCode::OK,
            overview_markup(&session, &summary, &attention, &names, &events, now),
        ),
        Err(e) => failure(e),
    }
}
