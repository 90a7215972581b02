//! Once over a real socket: the server started as it is in production, driven by an HTTP client.

use std::sync::Arc;

use backup_core::SystemClock;
use backup_server::{Server, ServerConfig};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_socket_serves_the_api() {
    let dir = tempfile::tempdir().expect("dir");
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        database: format!("sqlite://{}", dir.path().join("s.db").display()),
        admin_token: Some("socket-test-admin-token".into()),
        ..ServerConfig::default()
    };
    let server = Server::start(config, Arc::new(SystemClock))
        .await
        .expect("starts");
    let client = reqwest::Client::new();
    let url = server.url();
    let health = client
        .get(format!("{url}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let tenant: Value = client
        .post(format!("{url}/tenants"))
        .bearer_auth("socket-test-admin-token")
        .json(&json!({"name": "acme"}))
        .send()
        .await
        .expect("create tenant")
        .json()
        .await
        .expect("json");
    let agents = client
        .get(format!("{url}/agents"))
        .bearer_auth(tenant["token"].as_str().expect("token"))
        .header("X-Tenant-ID", tenant["id"].as_str().expect("id"))
        .send()
        .await
        .expect("list");
    assert_eq!(agents.status(), 200);
    assert!(agents.headers().contains_key("x-request-id"));
    // A malformed request on a raw connection gets an answer, not a dropped connection.
    let bad = client
        .post(format!("{url}/agents"))
        .header("content-type", "application/json")
        .body("{{{{")
        .send()
        .await
        .expect("answered");
    assert_eq!(bad.status(), 401, "auth is checked before the body");
    server.shutdown().await;
}
