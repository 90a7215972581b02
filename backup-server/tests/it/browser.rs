//! A real browser: headless Chromium driven over WebDriver (chromedriver) logs in, lands on the
//! overview and its verdict, follows the navigation to the agents and sees the saturated and
//! backoff badges, edits a setting, and the API shows the change. Skipped with a notice without
//! chromium and chromedriver; a failure under `BACKUP_TEST_REQUIRE=chromium`.
//! `BACKUP_UI_SCREENSHOTS=docs` saves the agents page as `docs/agents.png`.

use std::sync::Arc;

use backup_core::SystemClock;
use backup_server::{Server, ServerConfig};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_sees_the_badges_and_edits_a_setting() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(d) = backup_testkit::Browser::start(&dir.path().join("profile")).await else {
        return;
    };
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        database: format!("sqlite://{}", dir.path().join("ui.db").display()),
        ..ServerConfig::default()
    };
    let server = Server::start(config, Arc::new(SystemClock))
        .await
        .expect("server");
    let store = server.state().store().clone();
    let tenant = store.create_tenant("acme").await.expect("tenant");
    let mk = |name: &'static str| {
        let store = store.clone();
        async move {
            store
                .create_agent(
                    tenant.id,
                    &backup_core::CreateAgent {
                        name: name.into(),
                        hostname: format!("{name}.example"),
                    },
                )
                .await
                .expect("agent")
                .agent
                .id
        }
    };
    let (busy, slow, fine) = (mk("busy-db").await, mk("slow-nas").await, mk("web-1").await);
    store
        .heartbeat(
            busy,
            &backup_core::Heartbeat {
                running_tasks: 2,
                queue_depth: 14,
                ..Default::default()
            },
        )
        .await
        .expect("hb");
    store
        .heartbeat(
            slow,
            &backup_core::Heartbeat {
                agent_backoff_seconds: Some(1800),
                ..Default::default()
            },
        )
        .await
        .expect("hb");
    store
        .heartbeat(
            fine,
            &backup_core::Heartbeat {
                running_tasks: 1,
                ..Default::default()
            },
        )
        .await
        .expect("hb");

    for (name, agent) in [("nightly-db", busy), ("hourly-web", fine)] {
        let spec: backup_core::PolicySpec = serde_json::from_value(json!({
            "name": name, "agentId": agent, "kind": "backup", "schedule": {"every": "1h"},
            "paths": ["/srv"], "repository": "main"
        }))
        .expect("spec");
        store.create_policy(tenant.id, &spec).await.expect("policy");
    }

    let url = server.url();
    d.login(&url, &tenant).await;
    let overview = d.source_with("<h1>Overview</h1>", 10).await;
    assert!(
        overview.contains("All 2 enabled policies protected or waiting for their first run."),
        "the verdict: {overview}"
    );
    d.click("header a[href='/ui/agents']").await;
    let agents = d.source_with("<h1>Agents</h1>", 10).await;
    assert!(agents.contains("Saturated"), "the saturated badge");
    assert!(agents.contains("Backoff active until"), "the backoff badge");
    assert!(agents.contains("web-1") && agents.contains("Online"));
    d.screenshot_for_docs("agents.png").await;

    d.go(&format!("{url}/ui/agents/{busy}")).await;
    d.type_into("#maxConcurrentTasks", "4").await;
    d.click("form[action$='/settings'] button[type=submit]")
        .await;
    d.source_with("value=\"4\"", 10).await;
    let after = store.get_agent(tenant.id, busy).await.expect("agent");
    assert_eq!(
        after.settings.max_concurrent_tasks, 4,
        "the browser's edit shows in GET /agents/{{id}}"
    );
    let api: Value = reqwest::Client::new()
        .get(format!("{url}/agents/{busy}"))
        .bearer_auth(&tenant.token)
        .header("X-Tenant-ID", tenant.id.to_string())
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("json");
    assert_eq!(api["settings"]["maxConcurrentTasks"], 4);
    assert_eq!(api["settingsSource"], "api");

    d.close().await;
    server.shutdown().await;
}
