//! The dashboard an operator keeps open, through `app()`: the overview answers "is everything
//! protected?", the policies list filters by protection, a policy's page charts its runs in
//! human units, task rows name their policy, and the events page filters and pages.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::{
    harness::{Auth, Harness, Kind, TestAgent, backup_policy, start},
    web::Browser,
};

/// A policy named `name` on `agent`, its first task claimed and started, then reported with
/// `report` (attempt 1).
async fn run_once(
    h: &Harness,
    t: &backup_core::TenantCreated,
    agent: &TestAgent,
    name: &str,
    report: Value,
) -> Value {
    let mut body = backup_policy(agent.id);
    body["name"] = json!(name);
    let policy = h.policy(t, body).await;
    h.online(agent).await;
    h.tick().await;
    let task = h.claim_one(agent).await;
    let me = Auth::Agent(agent.token.clone());
    let started = h
        .post(&format!("/tasks/{task}/start"), &me, json!({"attempt": 1}))
        .await;
    assert_eq!(started.status, 200, "{started:?}");
    let done = h.post(&format!("/tasks/{task}/result"), &me, report).await;
    assert_eq!(done.status, 200, "{done:?}");
    policy
}

#[tokio::test]
async fn the_overview_policy_page_and_events_read_as_a_person_needs() {
    let Some(h) = Harness::open(Kind::Sqlite, backup_server::ServerConfig::default()).await else {
        return;
    };
    let t = h.tenant("acme").await;
    let (db1, db2, db3) = (
        h.agent(&t, "db-1").await,
        h.agent(&t, "db-2").await,
        h.agent(&t, "db-3").await,
    );
    let finished = start() + chrono::Duration::milliseconds(12_300);
    let good = run_once(
        &h,
        &t,
        &db1,
        "nightly-home",
        json!({"attempt": 1, "outcome": "succeeded", "snapshotId": "0123456789abcdef",
               "dataAdded": 1536 * 1024, "filesNew": 7, "startedAt": start(), "finishedAt": finished}),
    )
    .await;
    let bad = run_once(
        &h,
        &t,
        &db2,
        "broken-etc",
        json!({"attempt": 1, "outcome": "failed", "errorKind": "permanent",
               "error": "Fatal: wrong password", "exitCode": 12}),
    )
    .await;
    let mut fresh = backup_policy(db3.id);
    fresh["name"] = json!("fresh-var");
    h.policy(&t, fresh).await;

    let mut b = Browser::new(&h);
    b.login(&t).await;
    let home = b.get("/ui").await;
    assert_eq!(home.status, StatusCode::OK);
    let html = &home.html;
    assert!(
        html.contains("1 of 3 enabled policies need attention: 1 failing, 0 overdue."),
        "{html}"
    );
    assert!(html.contains("1.5 MiB"), "bytes added in 24 h: {html}");
    let attention = &html[html
        .find("<table class=\"attention\">")
        .expect("attention table")..];
    let attention = &attention[..attention.find("</table>").expect("end")];
    assert!(
        attention.contains("broken-etc") && attention.contains("Failing"),
        "{attention}"
    );
    assert!(
        attention.contains("fresh-var") && attention.contains("Never run"),
        "{attention}"
    );
    assert!(
        !attention.contains("nightly-home"),
        "a protected policy needs nothing: {attention}"
    );
    assert!(
        html.contains("task.failed_permanently"),
        "recent events: {html}"
    );

    let failing = b.get("/ui/policies?protection=failing").await;
    assert!(failing.html.contains("broken-etc"));
    assert!(!failing.html.contains("nightly-home") && !failing.html.contains("fresh-var"));

    let id = good["id"].as_str().expect("id");
    let page = b.get(&format!("/ui/policies/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    for shown in [
        "Protected",
        "<svg",
        "1.5 MiB",
        "12.3 s",
        "01234567",
        "Run now",
    ] {
        assert!(page.html.contains(shown), "{shown}: {}", page.html);
    }
    let agent_page = b.get(&format!("/ui/agents/{}", db2.id)).await;
    assert!(
        agent_page.html.contains(&format!(
            "<a href=\"/ui/policies/{}\">broken-etc</a>",
            bad["id"].as_str().expect("id")
        )),
        "task and run rows name their policy: {}",
        agent_page.html
    );

    // Sixty audit events: the events page pages them, 50 and then the rest.
    for i in 0..60 {
        let patch = h
            .patch(
                &format!("/agents/{}/settings", db1.id),
                &Auth::tenant(&t),
                json!({"maxConcurrentTasks": 1 + i % 2 + 1}),
            )
            .await;
        assert_eq!(patch.status, 200, "{patch:?}");
    }
    let first = b.get("/ui/events?type=agent.settings_changed").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.html.matches("<td>agent.settings_changed").count(), 50);
    assert!(
        first.html.contains("changed maxConcurrentTasks"),
        "{}",
        first.html
    );
    let at = first
        .html
        .find("class=\"next\" href=\"")
        .expect("a next page")
        + 19;
    let next = first.html[at..][..first.html[at..].find('"').expect("end")].replace("&amp;", "&");
    let second = b.get(&next).await;
    assert_eq!(second.status, StatusCode::OK, "{next}");
    assert_eq!(
        second.html.matches("<td>agent.settings_changed").count(),
        10
    );
    assert!(!second.html.contains("class=\"next\""), "the last page");
    let only = b.get("/ui/events?type=task.failed_permanently").await;
    assert_eq!(only.html.matches("<td>task.failed_permanently").count(), 1);
    assert!(!only.html.contains("<td>agent.settings_changed"));
    let forged = b.get("/ui/events?cursor=not-a-cursor").await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST, "{}", forged.html);
}
