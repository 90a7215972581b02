//! Once over a real socket: the server started as it is in production, driven by an HTTP client.

use std::{sync::Arc, time::Duration};

use backup_core::SystemClock;
use backup_server::{LimitsConfig, Server, ServerConfig};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A server on a free port over a SQLite file in `dir`, with `limits`.
async fn serve(dir: &tempfile::TempDir, limits: LimitsConfig) -> Server {
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        database: format!("sqlite://{}", dir.path().join("s.db").display()),
        limits,
        ..ServerConfig::default()
    };
    Server::start(config, Arc::new(SystemClock))
        .await
        .expect("starts")
}

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

/// Reads until the server closes the connection; `None` if it is still open after `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_cannot_hold_the_server() {
    let dir = tempfile::tempdir().expect("dir");
    let server = serve(
        &dir,
        LimitsConfig {
            header_read_timeout_seconds: 1,
            max_connections: 2,
            ..LimitsConfig::default()
        },
    )
    .await;
    // A slowloris client: half a request, then silence. Another: connects and says nothing.
    let mut slow = TcpStream::connect(server.addr()).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    let mut silent = TcpStream::connect(server.addr()).await.expect("connect");
    // Both slots are taken: a real client waits in the backlog until the slow ones are cut off,
    // then it is served.
    let answer = reqwest::Client::new()
        .get(format!("{}/healthz", server.url()))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("served once the slow clients are gone");
    assert_eq!(answer.status(), 200);
    let bound = Duration::from_secs(30);
    let slow_seen = closed_within(&mut slow, bound).await;
    assert!(slow_seen.is_some(), "the slowloris connection was closed");
    assert!(
        closed_within(&mut silent, bound).await.is_some(),
        "the silent connection was closed"
    );
    // An idle keep-alive connection after a complete request is closed too.
    let mut idle = TcpStream::connect(server.addr()).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let seen = closed_within(&mut idle, bound)
        .await
        .expect("the idle connection was closed");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stalls_is_answered_408() {
    let dir = tempfile::tempdir().expect("dir");
    let server = serve(
        &dir,
        LimitsConfig {
            request_timeout_seconds: 1,
            ..LimitsConfig::default()
        },
    )
    .await;
    let tenant = server
        .state()
        .store()
        .create_tenant("acme")
        .await
        .expect("tenant");
    // Headers complete and authorized, then a tenth of the promised body and silence: the
    // header timeout does not apply, the request timeout does.
    let mut stalled = TcpStream::connect(server.addr()).await.expect("connect");
    let head = format!(
        "POST /agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nX-Tenant-ID: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\": ",
        tenant.token, tenant.id
    );
    stalled.write_all(head.as_bytes()).await.expect("write");
    let seen = closed_within(&mut stalled, Duration::from_secs(15))
        .await
        .expect("answered and closed well before the default 30 s timeout");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    server.shutdown().await;
}

/// A client that writes its whole body before it reads (Python's urllib does) still reads the
/// 413 of a body over 1 MiB, instead of a reset connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_writes_a_large_body_first_reads_its_413() {
    let dir = tempfile::tempdir().expect("dir");
    let server = serve(&dir, LimitsConfig::default()).await;
    let body = vec![b'x'; 6 * 1024 * 1024];
    for path in ["/agents", "/healthz"] {
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("headers");
        stream
            .write_all(&body)
            .await
            .expect("the whole body is taken in");
        let answer = closed_within(&mut stream, Duration::from_secs(10))
            .await
            .expect("the server answers and closes");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 413"),
            "{path}: {}",
            text.lines().next().unwrap_or_default()
        );
        assert!(text.contains("payload_too_large"), "{text}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_from_one_address_are_answered_429_without_a_lookup() {
    let dir = tempfile::tempdir().expect("dir");
    let server = serve(
        &dir,
        LimitsConfig {
            auth_failures_per_minute: 5,
            ..LimitsConfig::default()
        },
    )
    .await;
    let tenant = server
        .state()
        .store()
        .create_tenant("acme")
        .await
        .expect("tenant");
    let client = reqwest::Client::new();
    let url = server.url();
    let call = |token: String| {
        let client = client.clone();
        let url = url.clone();
        let tenant = tenant.id.to_string();
        async move {
            client
                .get(format!("{url}/agents"))
                .bearer_auth(token)
                .header("X-Tenant-ID", tenant)
                .send()
                .await
                .expect("answer")
        }
    };
    // The right token does not count; wrong ones do, five of them before the door shuts.
    assert_eq!(call(tenant.token.clone()).await.status(), 200);
    for i in 0..4 {
        assert_eq!(
            call(format!("wrong-{i}")).await.status(),
            401,
            "wrong token {i}"
        );
    }
    assert_eq!(
        call(tenant.token.clone()).await.status(),
        200,
        "one failure left"
    );
    assert_eq!(
        call("wrong-4".into()).await.status(),
        401,
        "the fifth failure"
    );
    // Used up: a database that is gone is not even asked (it would answer 503).
    server.state().store().close().await;
    let refused = call("wrong-6".into()).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let agent = client
        .post(format!("{url}/agents/{}/heartbeat", uuid::Uuid::new_v4()))
        .bearer_auth("rft_a_wrong")
        .json(&json!({}))
        .send()
        .await
        .expect("answer");
    assert_eq!(
        agent.status(),
        429,
        "agent tokens share the address's allowance"
    );
}
