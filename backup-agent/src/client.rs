//! How the agent reaches the server: a small trait, so an embedder can swap the transport (a
//! message bus, an in-process call), and the HTTP implementation.

use std::{path::PathBuf, sync::RwLock, time::Duration};

use async_trait::async_trait;
use backup_core::{
    AgentId, AttemptReport, ClaimAnswer, ClaimRequest, ErrorBody, ErrorCode, Heartbeat,
    HeartbeatAnswer, SnapshotList, SnapshotsStored, StartRequest, TaskId, TaskView,
};

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No answer: the connection could not be made, or broke before an answer.
    #[error("cannot reach the server at {server}: {cause}")]
    Unreachable {
        /// `host:port` of the server (never the credentials of a URL).
        server: String,
        /// What went wrong, for people.
        cause: NetworkCause,
    },
    /// The server answered with an error status.
    #[error("server answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The API's error code, when the body had one.
        code: Option<ErrorCode>,
        /// The API's message.
        message: String,
        /// `Retry-After`, when given (429, 503).
        retry_after: Option<Duration>,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from the server: {0}")]
    Invalid(String),
    /// The server accepted the call (2xx) but its answer could not be read: a proxy's page, or
    /// a newer server's view. The call took effect; sending it again would not help.
    #[error("the server accepted the call but its answer could not be read: {0}")]
    Unreadable(String),
}

/// Why no answer came, as far as the network stack tells.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetworkCause {
    /// Nothing listens there.
    Refused,
    /// The host name does not resolve.
    UnknownHost,
    /// No answer in time.
    Timeout,
    /// The TLS handshake failed (certificate, or `https://` to a plain HTTP port).
    Tls(String),
    /// Something answered, but not HTTP (the wrong port or scheme).
    NotHttp,
    /// The connection closed before any answer (a server or proxy closing an idle connection).
    Closed,
    /// Anything else, in the network stack's words.
    Other(String),
}

impl std::fmt::Display for NetworkCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkCause::Refused => f.write_str(
                "connection refused (is backup-server running and listening at this address?)",
            ),
            NetworkCause::UnknownHost => f.write_str("the host name does not resolve"),
            NetworkCause::Timeout => f.write_str("no answer in time"),
            NetworkCause::Tls(detail) => write!(f, "TLS failed: {detail}"),
            NetworkCause::NotHttp => {
                f.write_str("the answer is not HTTP (check the port, and http:// against https://)")
            }
            NetworkCause::Closed => f.write_str("the connection closed before any answer"),
            NetworkCause::Other(detail) => f.write_str(detail),
        }
    }
}

impl NetworkCause {
    /// The cause of a reqwest error, from its chain of sources.
    fn of(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            return NetworkCause::Timeout;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut words = Vec::new();
        while let Some(err) = source {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => return NetworkCause::Refused,
                    std::io::ErrorKind::TimedOut => return NetworkCause::Timeout,
                    std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof => return NetworkCause::Closed,
                    _ => {}
                }
            }
            if let Some(hyper) = err.downcast_ref::<hyper::Error>() {
                if hyper.is_incomplete_message() || hyper.is_canceled() {
                    return NetworkCause::Closed;
                }
                if hyper.is_parse() {
                    return NetworkCause::NotHttp;
                }
            }
            words.push(err.to_string());
            source = err.source();
        }
        let text = words.join(": ").to_lowercase();
        if text.contains("dns error") || text.contains("failed to lookup address") {
            NetworkCause::UnknownHost
        } else if text.contains("certificate") || text.contains("tls") || text.contains("handshake")
        {
            NetworkCause::Tls(words.last().cloned().unwrap_or_default())
        } else {
            NetworkCause::Other(words.last().cloned().unwrap_or_default())
        }
    }
}

impl ClientError {
    /// Whether a result should stay in the outbox and be sent again: network errors, 401 (a
    /// token being rotated), 408, 429 and 5xx. Any other 4xx is final (the entry is dropped
    /// and logged).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } | ClientError::Invalid(_) => true,
            ClientError::Unreadable(_) => false,
            ClientError::Status { status, .. } => {
                matches!(status, 401 | 408 | 429) || *status >= 500
            }
        }
    }

    /// The wait the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the connection closed before any answer: a request safe to repeat can be sent
    /// again at once (the server most likely never read it).
    fn closed_before_answer(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable {
                cause: NetworkCause::Closed,
                ..
            }
        )
    }
}

/// The agent's side of the protocol. Object-safe: the agent holds an `Arc<dyn OrchestratorClient>`.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait OrchestratorClient: Send + Sync {
    /// `POST /agents/{id}/heartbeat`.
    ///
    /// # Errors
    /// A [`ClientError`].
    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatAnswer, ClientError>;

    /// `POST /agents/{id}/tasks/claim`.
    ///
    /// # Errors
    /// A [`ClientError`].
    async fn claim(&self, request: &ClaimRequest) -> Result<ClaimAnswer, ClientError>;

    /// `POST /tasks/{id}/start`.
    ///
    /// # Errors
    /// A [`ClientError`].
    async fn start(&self, task: TaskId, attempt: u32) -> Result<TaskView, ClientError>;

    /// `POST /tasks/{id}/result`.
    ///
    /// # Errors
    /// A [`ClientError`].
    async fn report(&self, task: TaskId, report: &AttemptReport) -> Result<TaskView, ClientError>;

    /// `PUT /agents/{id}/repositories/{repository}/snapshots`: every snapshot of the agent's
    /// host in that repository (it replaces the server's list).
    ///
    /// # Errors
    /// A [`ClientError`].
    async fn report_snapshots(
        &self,
        repository: &str,
        list: &SnapshotList,
    ) -> Result<SnapshotsStored, ClientError>;
}

/// How long the agent keeps an idle connection to the server. Below the server's
/// `limits.headerReadTimeoutSeconds` (default 10 s), after which the server closes an idle
/// connection: a connection the server is closing is never reused.
pub const POOL_IDLE_SECONDS: u64 = 5;

/// The HTTP client (reqwest, rustls).
pub struct HttpClient {
    base: String,
    server: String,
    agent: AgentId,
    token: RwLock<String>,
    token_file: Option<PathBuf>,
    http: reqwest::Client,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("server", &self.server)
            .field("agent", &self.agent)
            .field("token", &"<redacted>")
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

/// Which calls may be sent again at once when the connection closed before any answer: all but
/// the claim, which the server may have carried out (its tasks would wait for their lease).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Safe,
    Once,
}

impl HttpClient {
    /// A client for `base` (`http://host:port`) speaking as `agent` with `token`.
    ///
    /// # Errors
    /// When `base` is not a URL or the HTTP stack cannot be set up.
    pub fn new(base: &str, agent: AgentId, token: String) -> Result<Self, ClientError> {
        let url = reqwest::Url::parse(base)
            .map_err(|e| ClientError::Invalid(format!("orchestratorUrl {base:?}: {e}")))?;
        let server = match (url.host_str(), url.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            _ => "(no host)".to_owned(),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(90))
            .pool_idle_timeout(Duration::from_secs(POOL_IDLE_SECONDS))
            .user_agent(concat!("backup-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Invalid(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            server,
            agent,
            token: RwLock::new(token),
            token_file: None,
            http,
        })
    }

    /// The client an agent's configuration describes: its server, its id, its token (from
    /// `token`, or from `tokenFile`, which is then read again on a 401 and on SIGHUP).
    ///
    /// # Errors
    /// A missing or bad id or token, or a URL that does not parse.
    pub fn from_config(config: &crate::AgentConfig) -> Result<Self, crate::AgentError> {
        let client = Self::new(
            &config.orchestrator_url,
            config.resolve_agent_id()?,
            config.resolve_token()?,
        )?;
        let file = config
            .token
            .as_deref()
            .is_none_or(|t| t.trim().is_empty())
            .then(|| config.token_file.clone())
            .flatten();
        Ok(client.with_token_file(file))
    }

    /// Re-reads the token from `file` when the server answers 401 (a rotated token) and on
    /// [`HttpClient::reload_token`].
    #[must_use]
    pub fn with_token_file(mut self, file: Option<PathBuf>) -> Self {
        self.token_file = file;
        self
    }

    /// `host:port` of the server.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Reads the token file again; returns whether the token changed. Without a token file,
    /// nothing changes.
    ///
    /// # Errors
    /// When the file cannot be read or is empty.
    pub fn reload_token(&self) -> Result<bool, ClientError> {
        let Some(file) = &self.token_file else {
            return Ok(false);
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| ClientError::Invalid(format!("tokenFile {}: {e}", file.display())))?;
        let fresh = text.trim();
        if fresh.is_empty() {
            return Err(ClientError::Invalid(format!(
                "tokenFile {} is empty",
                file.display()
            )));
        }
        let mut token = self.token.write().unwrap_or_else(|e| e.into_inner());
        if *token == fresh {
            return Ok(false);
        }
        fresh.clone_into(&mut token);
        Ok(true)
    }

    /// Re-reads the token file on every SIGHUP, for as long as the process runs.
    pub fn reload_token_on_sighup(self: std::sync::Arc<Self>) {
        tokio::spawn(async move {
            let Ok(mut hangups) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hangups.recv().await.is_some() {
                match self.reload_token() {
                    Ok(true) => tracing::info!("SIGHUP: read a new token from the token file"),
                    Ok(false) => tracing::info!("SIGHUP: the token file holds the token in use"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: cannot read the token file"),
                }
            }
        });
    }

    fn token(&self) -> String {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn post<B: serde::Serialize + Sync, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        repeat: Repeat,
    ) -> Result<T, ClientError> {
        self.send(reqwest::Method::POST, path, body, repeat).await
    }

    async fn send<B: serde::Serialize + Sync, T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
        repeat: Repeat,
    ) -> Result<T, ClientError> {
        let mut reloaded = false;
        let mut repeated = false;
        loop {
            match self.send_once(method.clone(), path, body).await {
                Err(e) if e.closed_before_answer() && repeat == Repeat::Safe && !repeated => {
                    repeated = true;
                    tracing::debug!(error = %e, "the connection closed before any answer; sending again at once");
                }
                Err(e) if e.status() == Some(401) && !reloaded && self.token_file.is_some() => {
                    reloaded = true;
                    match self.reload_token() {
                        Ok(true) => tracing::info!(
                            "the server refused the token; the token file holds a new one, using it"
                        ),
                        Ok(false) => return Err(e),
                        Err(read) => {
                            tracing::error!(error = %read, "the server refused the token and the token file cannot be read");
                            return Err(e);
                        }
                    }
                }
                other => return other,
            }
        }
    }

    async fn send_once<B: serde::Serialize + Sync, T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token())
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                server: self.server.clone(),
                cause: NetworkCause::of(&e),
            })?;
        let status = response.status();
        if status.is_success() {
            let body = read_bounded(response).await?;
            return serde_json::from_slice(&body)
                .map_err(|e| ClientError::Unreadable(format!("the server's answer: {e}")));
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = match read_bounded(response).await {
            Ok(body) => String::from_utf8_lossy(&body).into_owned(),
            Err(_) => String::new(),
        };
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => (Some(body.error.code), body.error.message),
            Err(_) => (None, text.chars().take(300).collect()),
        };
        Err(ClientError::Status {
            status: status.as_u16(),
            code,
            message,
            retry_after,
        })
    }
}

/// The largest answer the agent reads from the server: no answer of the API comes near it, so
/// anything bigger is a broken or hostile server, and is refused before it fills the memory.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, ClientError> {
    let too_big = || {
        ClientError::Unreadable(format!(
            "the server's answer is over {} MiB; refused",
            MAX_ANSWER_BYTES / (1024 * 1024)
        ))
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ClientError::Unreadable(without_url(&e)))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's errors carry the URL; ours never need it (and URLs may carry secrets).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<server>");
    }
    text
}

#[async_trait]
impl OrchestratorClient for HttpClient {
    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatAnswer, ClientError> {
        self.post(
            &format!("/agents/{}/heartbeat", self.agent),
            heartbeat,
            Repeat::Safe,
        )
        .await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<ClaimAnswer, ClientError> {
        self.post(
            &format!("/agents/{}/tasks/claim", self.agent),
            request,
            Repeat::Once,
        )
        .await
    }

    async fn start(&self, task: TaskId, attempt: u32) -> Result<TaskView, ClientError> {
        self.post(
            &format!("/tasks/{task}/start"),
            &StartRequest { attempt },
            Repeat::Safe,
        )
        .await
    }

    async fn report(&self, task: TaskId, report: &AttemptReport) -> Result<TaskView, ClientError> {
        self.post(&format!("/tasks/{task}/result"), report, Repeat::Safe)
            .await
    }

    async fn report_snapshots(
        &self,
        repository: &str,
        list: &SnapshotList,
    ) -> Result<SnapshotsStored, ClientError> {
        self.send(
            reqwest::Method::PUT,
            &format!("/agents/{}/repositories/{repository}/snapshots", self.agent),
            list,
            Repeat::Safe,
        )
        .await
    }
}
