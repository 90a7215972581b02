//! A real browser: headless Chromium driven over WebDriver (chromedriver) logs in, lands on the
//! overview and its verdict, follows the navigation to the agents and sees the saturated and
//! backoff badges, edits a setting, and the API shows the change. Skipped with a notice without
//! chromium and chromedriver; a failure under `BACKUP_TEST_REQUIRE=chromium`.
//! `BACKUP_UI_SCREENSHOT=docs/dashboard.png` saves the screenshot where the README shows it.

use std::{process::Stdio, sync::Arc, time::Duration};

use backup_core::SystemClock;
use backup_server::{Server, ServerConfig};
use base64::Engine;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    http: reqwest::Client,
    base: String,
    session: String,
}

impl Driver {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let answer: Value = req
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("json");
        assert!(
            answer["value"].get("error").is_none(),
            "webdriver {path}: {answer}"
        );
        answer["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().expect("element id").to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page source once it contains `text` (a click's navigation may still be loading).
    async fn source_with(&self, text: &str) -> String {
        let mut source = String::new();
        for _ in 0..100 {
            source = self.source().await;
            if source.contains(text) {
                return source;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the page never showed {text:?}: {source}");
    }
}

fn executable(path: &str) -> Option<String> {
    std::path::Path::new(path)
        .is_file()
        .then(|| path.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_sees_the_badges_and_edits_a_setting() {
    let (Some(chromium), Some(chromedriver)) = (
        executable("/usr/bin/chromium"),
        executable("/usr/bin/chromedriver"),
    ) else {
        backup_testkit::skip(
            "chromium",
            "no /usr/bin/chromium and /usr/bin/chromedriver (Debian: apt-get install chromium chromium-driver)",
        );
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
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

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let mut driver_proc = tokio::process::Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..100 {
        if http.get(format!("{base}/status")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "chromedriver did not start");
    let profile = dir.path().join("profile");
    let session: Value = http
        .post(format!("{base}/session"))
        .json(&json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     format!("--user-data-dir={}", profile.display()), "--window-size=1280,760"]
        }}}}))
        .send()
        .await
        .expect("new session")
        .json()
        .await
        .expect("json");
    let d = Driver {
        http: http.clone(),
        base: base.clone(),
        session: session["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned(),
    };

    let url = server.url();
    d.go(&format!("{url}/ui/login")).await;
    d.type_into("#tenantId", &tenant.id.to_string()).await;
    d.type_into("#token", &tenant.token).await;
    d.click("button[type=submit]").await;
    let overview = d.source_with("<h1>Overview</h1>").await;
    assert!(
        overview.contains("All 2 enabled policies are protected or waiting for their first run"),
        "the verdict: {overview}"
    );
    let shot = d.call(reqwest::Method::GET, "/screenshot", None).await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot.as_str().expect("base64"))
        .expect("png");
    assert!(png.starts_with(b"\x89PNG"));
    let target = std::env::var("BACKUP_UI_SCREENSHOT")
        .unwrap_or_else(|_| dir.path().join("dashboard.png").display().to_string());
    std::fs::write(&target, &png).expect("screenshot");

    d.click("header a[href='/ui/agents']").await;
    let agents = d.source_with("<h1>Agents</h1>").await;
    assert!(agents.contains("Saturated"), "the saturated badge");
    assert!(agents.contains("Backoff active until"), "the backoff badge");
    assert!(agents.contains("web-1") && agents.contains("Online"));

    d.go(&format!("{url}/ui/agents/{busy}")).await;
    d.type_into("#maxConcurrentTasks", "4").await;
    d.click("form[action$='/settings'] button[type=submit]")
        .await;
    d.source_with("value=\"4\"").await;
    let after = store.get_agent(tenant.id, busy).await.expect("agent");
    assert_eq!(
        after.settings.max_concurrent_tasks, 4,
        "the browser's edit shows in GET /agents/{{id}}"
    );
    let api: Value = http
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

    let _ = http
        .delete(format!("{base}/session/{}", d.session))
        .send()
        .await;
    let _ = driver_proc.kill().await;
    server.shutdown().await;
}
