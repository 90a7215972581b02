//! The HTTP client: errors that say what is wrong and where, a connection closed before any
//! answer sent again once for calls safe to repeat, a rotated token read again from its file.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use backup_agent::{ClientError, HttpClient, NetworkCause, OrchestratorClient};
use backup_core::{AgentId, ClaimRequest, Heartbeat};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::harness::TestServer;

fn heartbeat() -> Heartbeat {
    Heartbeat::default()
}

#[tokio::test]
async fn a_refused_connection_names_the_server_and_the_cause() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let client = HttpClient::new(
        &format!("http://user:secret@127.0.0.1:{port}"),
        AgentId::new(),
        "t".into(),
    )
    .expect("client");
    let e = client.heartbeat(&heartbeat()).await.expect_err("refused");
    let text = e.to_string();
    assert!(
        matches!(
            e,
            ClientError::Unreachable {
                cause: NetworkCause::Refused,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains("connection refused"),
        "{text}"
    );
    assert!(!text.contains("secret"), "credentials never shown: {text}");
}

/// A server that answers each connection with `answer(n)` (n counts connections from 0);
/// `None` closes the connection after reading the request, without a word.
async fn scripted_server(
    answer: impl Fn(usize) -> Option<&'static str> + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 65536];
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
            if let Some(text) = answer(n) {
                let _ = stream.write_all(text.as_bytes()).await;
            }
            let _ = stream.shutdown().await;
        }
    });
    (url, connections)
}

const HEARTBEAT_ANSWER: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 302\r\n\r\n{\"settings\":{\"maxConcurrentTasks\":1,\"maxConcurrentBackups\":1,\"maxConcurrentChecks\":1,\"maxConcurrentPrunes\":1,\"cpuQuotaPercent\":50,\"bandwidthLimitMbps\":null,\"maxRetries\":5,\"maxBackoffMinutes\":60,\"backoffBaseSeconds\":60,\"backoffFailureThreshold\":3},\"serverTime\":\"2026-01-01T00:00:00Z\",\"cancelTaskIds\":[]}";

#[tokio::test]
async fn a_connection_closed_before_any_answer_is_tried_again_once_for_safe_calls() {
    assert_eq!(
        HEARTBEAT_ANSWER.split("\r\n\r\n").nth(1).map(str::len),
        Some(302)
    );
    let (url, connections) = scripted_server(|n| (n % 2 == 1).then_some(HEARTBEAT_ANSWER)).await;
    let client = HttpClient::new(&url, AgentId::new(), "t".into()).expect("client");
    client
        .heartbeat(&heartbeat())
        .await
        .expect("the heartbeat is sent again on a fresh connection");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    // A claim is not repeated: the server may have handed out its tasks.
    let e = client
        .claim(&ClaimRequest {
            limit: 1,
            per_kind: None,
            wait_seconds: 0,
        })
        .await
        .expect_err("closed");
    assert!(
        matches!(
            e,
            ClientError::Unreachable {
                cause: NetworkCause::Closed,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_answer_that_is_not_http_says_so() {
    let (url, _) = scripted_server(|_| Some("SSH-2.0-OpenSSH_9.2\r\n")).await;
    let client = HttpClient::new(&url, AgentId::new(), "t".into()).expect("client");
    let e = client.heartbeat(&heartbeat()).await.expect_err("not HTTP");
    assert!(
        matches!(
            e,
            ClientError::Unreachable {
                cause: NetworkCause::NotHttp,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("not HTTP"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_is_read_again_from_its_file_on_a_401() {
    let server = TestServer::start().await;
    let agent = server.agent("rotating").await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{}\n", agent.token)).expect("token file");
    let client = HttpClient::new(&server.url, agent.id, agent.token.clone())
        .expect("client")
        .with_token_file(Some(file.clone()));
    client.heartbeat(&heartbeat()).await.expect("the old token");
    let rotated = server
        .api
        .post(&format!("/agents/{}/token", agent.id), json!({}))
        .await;
    std::fs::write(&file, rotated["token"].as_str().expect("token")).expect("new token");
    client
        .heartbeat(&heartbeat())
        .await
        .expect("the 401 made the client read the file again");
    // A 401 keeps a result in the outbox (a token being rotated), it does not drop it.
    let refused = ClientError::Status {
        status: 401,
        code: None,
        message: String::new(),
        retry_after: None,
    };
    assert!(refused.is_transient());
    assert!(!client.reload_token().expect("reads"), "nothing new");
}

#[tokio::test]
async fn an_answer_over_4_mib_is_refused_declared_or_not() {
    let body = format!(
        "[{}]",
        "0,".repeat(backup_agent::MAX_ANSWER_BYTES / 2 + 1) + "0"
    );
    let declared: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    );
    let undeclared: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{body}"
        )
        .into_boxed_str(),
    );
    for answer in [declared, undeclared] {
        let (url, _) = scripted_server(move |_| Some(answer)).await;
        let client = HttpClient::new(&url, AgentId::new(), "t".into()).expect("client");
        let e = client.heartbeat(&heartbeat()).await.expect_err("too big");
        assert!(
            matches!(&e, ClientError::Unreadable(m) if m.contains("over 4 MiB")),
            "{e:?}"
        );
    }
}
