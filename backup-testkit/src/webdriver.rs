//! A real browser for the dashboard's tests: Debian's headless Chromium driven over WebDriver
//! by chromedriver, with just the calls the tests make (go, find, type, click, read the page,
//! screenshot). [`Browser::start`] answers `None` without `/usr/bin/chromium` and
//! `/usr/bin/chromedriver`, after [`crate::skip`] (a failure under `BACKUP_TEST_REQUIRE`).

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use base64::Engine as _;
use serde_json::{Value, json};

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session; chromedriver is killed on drop.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
}

impl Browser {
    /// A new session with its profile under `profile` (a fresh folder), 1280 x 760; `None`
    /// (skipped, or failed under `BACKUP_TEST_REQUIRE=chromium`) without Chromium.
    pub async fn start(profile: &Path) -> Option<Browser> {
        if !Path::new(CHROMIUM).is_file() || !Path::new(CHROMEDRIVER).is_file() {
            crate::skip(
                "chromium",
                "no /usr/bin/chromium and /usr/bin/chromedriver (Debian: apt-get install chromium chromium-driver)",
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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
        let args = json!([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            format!("--user-data-dir={}", profile.display()),
            "--window-size=1280,760"
        ]);
        let session: Value = http
            .post(format!("{base}/session"))
            .json(
                &json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}}),
            )
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("json");
        let session = session["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned();
        Some(Browser {
            http,
            base,
            session,
            driver,
        })
    }

    /// One WebDriver command on the session; its `value` (a WebDriver error fails the test).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
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

    /// Opens `url`.
    pub async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The element `css` selects (the first).
    pub async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().expect("element id").to_owned()
    }

    /// Replaces the text of the field `css` with `text`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        let clear = format!("/element/{e}/clear");
        self.call(reqwest::Method::POST, &clear, Some(json!({})))
            .await;
        let value = format!("/element/{e}/value");
        self.call(reqwest::Method::POST, &value, Some(json!({"text": text})))
            .await;
    }

    /// Clicks the element `css` selects.
    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        let click = format!("/element/{e}/click");
        self.call(reqwest::Method::POST, &click, Some(json!({})))
            .await;
    }

    /// The page's current HTML.
    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's HTML once it contains `text`, waiting up to `secs` (a click's navigation,
    /// or a page that reloads itself until its task ends).
    pub async fn source_with(&self, text: &str, secs: u64) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let source = self.source().await;
            if source.contains(text) {
                return source;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the page never showed {text:?} in {secs} s: {source}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Logs in to the dashboard at `server` as the tenant.
    pub async fn login(&self, server: &str, tenant: &backup_core::TenantCreated) {
        self.go(&format!("{server}/ui/login")).await;
        self.type_into("#tenantId", &tenant.id.to_string()).await;
        self.type_into("#token", &tenant.token).await;
        self.click("button[type=submit]").await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let shot = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().expect("base64"))
            .expect("png");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        png
    }

    /// Saves a screenshot as `name` in the folder `BACKUP_UI_SCREENSHOTS` names (for the
    /// docs: `BACKUP_UI_SCREENSHOTS=docs`); without it, checks the screenshot and drops it.
    pub async fn screenshot_for_docs(&self, name: &str) {
        let png = self.screenshot().await;
        if let Ok(dir) = std::env::var("BACKUP_UI_SCREENSHOTS") {
            std::fs::write(Path::new(&dir).join(name), png).expect("screenshot");
        }
    }

    /// Ends the session and chromedriver.
    pub async fn close(mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
