//! The dashboard an operator keeps open, through `app()`: the overview answers "is everything
//! protected?", the policies list filters by protection, a policy's page charts its runs in
//! human units, task rows name their policy, and the events page filters and pages.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::{
    harness::{Auth, Harness, Kind, TestAgent, backup_policy, start},
    web::Browser,
};

/// Claims the agent's next task, starts it and reports `report` (attempt 1) for it.
async fn complete(h: &Harness, agent: &TestAgent, report: Value) {
    h.online(agent).await;
    let task = h.claim_one(agent).await;
    let me = Auth::Agent(agent.token.clone());
    let started = h
        .post(&format!("/tasks/{task}/start"), &me, json!({"attempt": 1}))
        .await;
    assert_eq!(started.status, 200, "{started:?}");
    let done = h.post(&format!("/tasks/{task}/result"), &me, report).await;
    assert_eq!(done.status, 200, "{done:?}");
}

/// A policy named `name` on `agent`, its first task run with `report`.
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
    complete(h, agent, report).await;
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

/// Whether the page has a browse button for `path`.
fn browse_path(html: &str, path: &str) -> bool {
    html.contains(&format!("name=\"path\" value=\"{path}\""))
}

#[tokio::test]
async fn a_snapshot_is_found_browsed_and_restored_from_the_dashboard() {
    let Some(h) = Harness::open(Kind::Sqlite, backup_server::ServerConfig::default()).await else {
        return;
    };
    let t = h.tenant("acme").await;
    let (db1, db2) = (h.agent(&t, "db-1").await, h.agent(&t, "db-2").await);
    for agent in [&db1, &db2] {
        h.heartbeat(
            agent,
            json!({"repositories": [{"name": "main", "repositoryId": "r".repeat(64)}]}),
        )
        .await;
    }
    let id = "ab".repeat(32);
    let reported = h
        .call(
            axum::http::Method::PUT,
            &format!("/agents/{}/repositories/main/snapshots", db1.id),
            &db1.auth(),
            Some(
                json!({"snapshots": [{"id": id, "time": "2026-03-01T00:00:00Z", "hostname": "db-1",
                "paths": ["/srv"], "tags": [], "summary": {"totalBytes": 3 * 1024 * 1024}}]}),
            ),
        )
        .await;
    assert_eq!(reported.status, 200, "{reported:?}");

    let mut b = Browser::new(&h);
    b.login(&t).await;
    let list = b.get(&format!("/ui/snapshots?agent={}", db1.id)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.html.contains("abababab") && list.html.contains("3.0 MiB"),
        "{}",
        list.html
    );
    let href = format!("/ui/snapshots/{id}?agent={}&amp;repository=main", db1.id);
    assert!(list.html.contains(&href), "{}", list.html);
    let snapshot = b.get(&href.replace("&amp;", "&")).await;
    assert_eq!(snapshot.status, StatusCode::OK);
    let csrf = snapshot.csrf();
    let agent = db1.id.to_string();
    let base = [
        ("csrf", csrf.as_str()),
        ("agent", agent.as_str()),
        ("repository", "main"),
    ];

    // Browse the top level: an ls task for the snapshot's agent; its page reloads until done.
    let asked = b
        .post(
            &format!("/ui/snapshots/{id}/ls"),
            &[base[0], base[1], base[2], ("path", "/")],
        )
        .await;
    assert_eq!(asked.status, StatusCode::SEE_OTHER, "{}", asked.html);
    let task_page = asked.location.expect("the task page");
    let waiting = b.get(&task_page).await;
    assert!(
        waiting.html.contains("http-equiv=\"refresh\""),
        "{}",
        waiting.html
    );
    complete(
        &h,
        &db1,
        json!({"attempt": 1, "outcome": "succeeded", "entries": [
            {"path": "/srv", "type": "dir"},
            {"path": "/notes.txt", "type": "file", "size": 2048, "mtime": "2026-02-28T10:00:00Z"}
        ]}),
    )
    .await;
    let listed = b.get(&task_page).await;
    assert!(
        !listed.html.contains("http-equiv=\"refresh\""),
        "done: no more reloads"
    );
    assert!(
        browse_path(&listed.html, "/srv"),
        "a directory is a browse button: {}",
        listed.html
    );
    assert!(listed.html.contains("/notes.txt") && listed.html.contains("2.0 KiB"));
    assert!(
        !browse_path(&listed.html, "/notes.txt"),
        "a file is not browsed"
    );

    // A restore needs the form's CSRF token, like every form.
    let forged = b
        .post(
            &format!("/ui/snapshots/{id}/restore"),
            &[
                base[1],
                base[2],
                ("targetAgent", &agent),
                ("target", "/srv/restore"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    // Restore onto the other agent; a bad target agent is refused beside the form.
    let refused = b
        .post(
            &format!("/ui/snapshots/{id}/restore"),
            &[
                base[0],
                base[1],
                base[2],
                ("targetAgent", "nobody"),
                ("target", "/srv/restore"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.html.contains("targetAgent: choose an agent"),
        "{}",
        refused.html
    );
    let relative = b
        .post(
            &format!("/ui/snapshots/{id}/restore"),
            &[
                base[0],
                base[1],
                base[2],
                ("targetAgent", &db2.id.to_string()),
                ("target", "restore"),
            ],
        )
        .await;
    assert_eq!(
        relative.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        relative.html
    );
    let asked = b
        .post(
            &format!("/ui/snapshots/{id}/restore"),
            &[
                base[0],
                base[1],
                base[2],
                ("targetAgent", &db2.id.to_string()),
                ("target", "/srv/restore"),
                ("include", "/srv\n"),
            ],
        )
        .await;
    assert_eq!(asked.status, StatusCode::SEE_OTHER, "{}", asked.html);
    let task_page = asked.location.expect("the task page");
    complete(
        &h,
        &db2,
        json!({"attempt": 1, "outcome": "succeeded", "filesRestored": 12, "bytesRestored": 5 * 1024 * 1024}),
    )
    .await;
    let restored = b.get(&task_page).await;
    assert!(
        restored.html.contains("Restored 12 files, 5.0 MiB."),
        "{}",
        restored.html
    );
    assert!(restored.html.contains("/srv/restore") && restored.html.contains("db-2"));
}

#[tokio::test]
async fn the_fleet_table_pages_and_its_refresh_keeps_the_page() {
    let Some(h) = Harness::open(Kind::Sqlite, backup_server::ServerConfig::default()).await else {
        return;
    };
    let t = h.tenant("acme").await;
    for i in 0..105 {
        h.agent(&t, &format!("host-{i:03}")).await;
    }
    let mut b = Browser::new(&h);
    b.login(&t).await;
    let first = b.get("/ui/agents").await;
    assert_eq!(first.html.matches("<a href=\"/ui/agents/").count(), 100);
    let at = first
        .html
        .find("class=\"next\" href=\"")
        .expect("a next page")
        + 19;
    let next = first.html[at..][..first.html[at..].find('"').expect("end")].replace("&amp;", "&");
    let second = b.get(&next).await;
    assert_eq!(
        second.html.matches("<a href=\"/ui/agents/").count(),
        5,
        "{next}"
    );
    assert!(!second.html.contains("class=\"next\""));
    let query = next.split_once('?').expect("a query").1;
    let fragment = b.get(&format!("/ui/fragments/agents?{query}")).await;
    assert_eq!(
        fragment.html.matches("<a href=\"/ui/agents/").count(),
        5,
        "the live refresh of page two is page two"
    );
}
