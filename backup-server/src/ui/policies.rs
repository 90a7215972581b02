//! The policies page: every policy with its protection, enable / disable and run-now, filtered
//! by protection and paged; and the form for a new one.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use backup_core::{AgentId, AgentView, PolicyId, PolicyPatch, PolicyView, Protection, TaskKind};
use backup_store::{PageRequest, PolicyFilter, StoreError};
use maud::{Markup, html};

use super::{
    badges,
    forms::{Empty, EnabledForm, FieldError, PolicyForm, Posted},
    layout::{failure, layout, page, pager},
    policy::schedule,
    session::Session,
    units::when,
};
use crate::AppState;

/// What the page says after an action. Notices come from this fixed set, never from the query
/// string's text: a link cannot make the dashboard say something it did not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Notice {
    Created,
    Enabled,
    Disabled,
    TaskCreated,
    OpenTask,
}

impl Notice {
    const ALL: [Notice; 5] = [
        Notice::Created,
        Notice::Enabled,
        Notice::Disabled,
        Notice::TaskCreated,
        Notice::OpenTask,
    ];

    fn code(self) -> &'static str {
        match self {
            Notice::Created => "created",
            Notice::Enabled => "enabled",
            Notice::Disabled => "disabled",
            Notice::TaskCreated => "task_created",
            Notice::OpenTask => "open_task",
        }
    }

    /// The page to go back to, saying this about `policy`.
    fn redirect(self, policy: PolicyId) -> Response {
        Redirect::to(&format!(
            "/ui/policies?notice={}&policy={policy}",
            self.code()
        ))
        .into_response()
    }

    /// The sentence, naming the policy by its stored name.
    fn text(self, policy: Option<&PolicyView>) -> String {
        let name = policy.map_or("the policy", |p| p.spec.name.as_str());
        match self {
            Notice::Created => format!("Created {name}."),
            Notice::Enabled => format!("Enabled {name}."),
            Notice::Disabled => format!("Disabled {name}."),
            Notice::TaskCreated => format!("Task created for {name}."),
            Notice::OpenTask => format!("Not started: {name} already has an open task."),
        }
    }
}

/// Policies per page.
const PAGE: u32 = 100;

/// The query string: a notice (a code of [`Notice`] and the policy it is about), the
/// protection to list, and the page's cursor.
#[derive(serde::Deserialize, Default)]
pub(crate) struct NoticeQuery {
    notice: Option<String>,
    policy: Option<String>,
    protection: Option<String>,
    cursor: Option<String>,
}

/// Which policies the table lists: one protection value or all, from a cursor on.
#[derive(Clone, Debug, Default)]
struct Listing {
    protection: Option<Protection>,
    cursor: Option<String>,
}

impl Listing {
    /// The page's address without its cursor.
    fn base(&self) -> String {
        match self.protection {
            Some(p) => format!("/ui/policies?protection={}", p.as_str()),
            None => "/ui/policies".to_owned(),
        }
    }
}

impl NoticeQuery {
    fn listing(&self) -> Listing {
        Listing {
            protection: self
                .protection
                .as_deref()
                .and_then(|p| Protection::ALL.into_iter().find(|v| v.as_str() == p)),
            cursor: self.cursor.clone().filter(|c| !c.is_empty()),
        }
    }

    fn notice(&self) -> Option<(Notice, Option<PolicyId>)> {
        let code = self.notice.as_deref()?;
        let notice = Notice::ALL.into_iter().find(|n| n.code() == code)?;
        Some((notice, self.policy.as_deref().and_then(|p| p.parse().ok())))
    }
}

/// What the page shows besides the form.
struct Shown<'a> {
    policies: &'a [PolicyView],
    next: Option<&'a str>,
    listing: &'a Listing,
    now: chrono::DateTime<chrono::Utc>,
}

fn policies_markup(
    session: &Session,
    shown: &Shown<'_>,
    agents: &[AgentView],
    values: &PolicyForm,
    error: Option<(&str, &str)>,
    notice: Option<(Notice, Option<PolicyId>)>,
) -> Markup {
    let name_of = |id: AgentId| {
        agents
            .iter()
            .find(|a| a.id == id)
            .map_or_else(|| id.to_string(), |a| a.name.clone())
    };
    let error_for = |field: &str| {
        error
            .filter(|(f, _)| f.starts_with(field))
            .map(|(_, m)| m.to_owned())
    };
    let Shown {
        policies,
        next,
        listing,
        now,
    } = shown;
    layout(
        "Policies",
        Some(session),
        html! {
            h1 { "Policies" }
            @if let Some((n, about)) = notice {
                p.notice { (n.text(about.and_then(|id| policies.iter().find(|p| p.id == id)))) }
            }
            p.filters {
                "Show: "
                @if listing.protection.is_none() { strong { "all" } } @else { a href="/ui/policies" { "all" } }
                @for p in Protection::ALL {
                    " · "
                    @if listing.protection == Some(p) { strong { (badges::protection_text(p)) } }
                    @else { a href={ "/ui/policies?protection=" (p.as_str()) } { (badges::protection_text(p)) } }
                }
            }
            table {
                thead { tr { th { "Name" } th { "Agent" } th { "Kind" } th { "Schedule" } th { "Repository" } th { "Protection" } th { "Last success" } th { "Next due" } th { "Enabled" } th {} } }
                tbody {
                    @for p in policies.iter() {
                        tr {
                            td { a href={ "/ui/policies/" (p.id) } { (p.spec.name) } }
                            td { a href={ "/ui/agents/" (p.spec.agent_id) } { (name_of(p.spec.agent_id)) } }
                            td { (p.spec.kind.as_str()) }
                            td { (schedule(&p.spec.schedule)) }
                            td { (p.spec.repository) }
                            td { (badges::protection(p.protection)) }
                            td { (when(p.last_success_at, *now)) }
                            td { (when(p.next_due_at, *now)) }
                            td {
                                form.inline method="post" action={ "/ui/policies/" (p.id) "/enabled" } {
                                    input type="hidden" name="csrf" value=(session.csrf());
                                    input type="hidden" name="enabled" value=(if p.spec.enabled { "false" } else { "true" });
                                    button type="submit" { @if p.spec.enabled { "Enabled · disable" } @else { "Disabled · enable" } }
                                }
                            }
                            td {
                                form.inline method="post" action={ "/ui/policies/" (p.id) "/run" } {
                                    input type="hidden" name="csrf" value=(session.csrf());
                                    button type="submit" { "Run now" }
                                }
                            }
                        }
                    }
                    @if policies.is_empty() { tr { td colspan="10" { "No policies here." } } }
                }
            }
            (pager(&listing.base(), *next))
            h2 { "New policy" }
            @if let Some((field, message)) = error { p.error { (field) ": " (message) } }
            form method="post" action="/ui/policies" {
                input type="hidden" name="csrf" value=(session.csrf());
                fieldset.grid {
                    div { label for="name" { "Name" } input id="name" name="name" value=(values.name); @if let Some(m) = error_for("name") { div.error { (m) } } }
                    div { label for="agentId" { "Agent" } select id="agentId" name="agentId" { @for a in agents { option value=(a.id) selected[values.agent_id == a.id.to_string()] { (a.name) } } } }
                    div { label for="kind" { "Kind" } select id="kind" name="kind" { @for k in TaskKind::SCHEDULED { option value=(k.as_str()) selected[values.kind == k.as_str()] { (k.as_str()) } } } }
                    div { label for="every" { "Every (e.g. 6h), or" } input id="every" name="every" value=(values.every); }
                    div { label for="cron" { "Cron (5 fields)" } input id="cron" name="cron" value=(values.cron); }
                    div { label for="timezone" { "Time zone (cron)" } input id="timezone" name="timezone" value=(values.timezone) placeholder="UTC"; @if let Some(m) = error_for("schedule") { div.error { (m) } } }
                    div { label for="repository" { "Repository name" } input id="repository" name="repository" value=(values.repository); @if let Some(m) = error_for("repository") { div.error { (m) } } }
                    div { label for="keepLast" { "Keep last (prune)" } input id="keepLast" name="keepLast" value=(values.keep_last) size="5"; @if let Some(m) = error_for("retention") { div.error { (m) } } }
                    div { label for="maxTaskRetries" { "Max task retries (empty: the agent's)" } input id="maxTaskRetries" name="maxTaskRetries" value=(values.max_task_retries) size="5"; }
                }
                label for="paths" { "Paths (one per line, backups)" }
                textarea id="paths" name="paths" rows="3" cols="60" { (values.paths) }
                @if let Some(m) = error_for("paths") { div.error { (m) } }
                p { button type="submit" { "Create policy" } }
            }
        },
    )
}

async fn render_policies(
    state: &AppState,
    session: &Session,
    listing: &Listing,
    values: PolicyForm,
    error: Option<(&str, &str)>,
    notice: Option<(Notice, Option<PolicyId>)>,
    status: StatusCode,
) -> Response {
    let store = state.store();
    let policies = store
        .list_policies(
            session.tenant(),
            &PolicyFilter {
                protection: listing.protection,
                ..PolicyFilter::default()
            },
            &PageRequest {
                limit: Some(PAGE),
                cursor: listing.cursor.clone(),
            },
        )
        .await;
    let agents = store
        .list_agents(session.tenant(), &PageRequest::first(500))
        .await;
    match (policies, agents) {
        (Ok(p), Ok(a)) => {
            let shown = Shown {
                policies: &p.items,
                next: p.next_cursor.as_deref(),
                listing,
                now: store.clock().now(),
            };
            page(
                status,
                policies_markup(session, &shown, &a.items, &values, error, notice),
            )
        }
        (Err(e), _) | (_, Err(e)) => failure(e),
    }
}

pub(crate) async fn policies_page(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<NoticeQuery>,
) -> Response {
    render_policies(
        &state,
        &session,
        &q.listing(),
        PolicyForm::default(),
        None,
        q.notice(),
        StatusCode::OK,
    )
    .await
}

pub(crate) async fn create_policy(
    State(state): State<AppState>,
    Posted { session, form }: Posted<PolicyForm>,
) -> Response {
    let spec = match form.spec() {
        Ok(s) => s,
        Err((f, m)) => {
            let (f, m): FieldError = (f, m);
            return render_policies(
                &state,
                &session,
                &Listing::default(),
                form.clone(),
                Some((&f, &m)),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    match state.store().create_policy(session.tenant(), &spec).await {
        Ok(p) => Notice::Created.redirect(p.id),
        Err(StoreError::Validation(e)) => {
            let field = e.field().unwrap_or("policy").to_owned();
            render_policies(
                &state,
                &session,
                &Listing::default(),
                form.clone(),
                Some((&field, &e.to_string())),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => failure(e),
    }
}

pub(crate) async fn set_enabled(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { session, form }: Posted<EnabledForm>,
) -> Response {
    let Ok(id) = id.parse::<PolicyId>() else {
        return failure(StoreError::NotFound("policy"));
    };
    let enabled = form.enabled == "true";
    match state
        .store()
        .update_policy(
            session.tenant(),
            id,
            &PolicyPatch {
                enabled: Some(enabled),
                ..PolicyPatch::default()
            },
        )
        .await
    {
        Ok(p) => if enabled {
            Notice::Enabled
        } else {
            Notice::Disabled
        }
        .redirect(p.id),
        Err(e) => failure(e),
    }
}

pub(crate) async fn run_policy(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { session, .. }: Posted<Empty>,
) -> Response {
    let Ok(id) = id.parse::<PolicyId>() else {
        return failure(StoreError::NotFound("policy"));
    };
    match state.store().run_policy_now(session.tenant(), id).await {
        Ok(_) => Notice::TaskCreated.redirect(id),
        Err(StoreError::Conflict(_)) => Notice::OpenTask.redirect(id),
        Err(e) => failure(e),
    }
}
