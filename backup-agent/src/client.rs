//! How the agent reaches the server: a small trait, so an embedder can swap the transport (a
//! message bus, an in-process call), and the HTTP implementation.

use std::time::Duration;

use async_trait::async_trait;
use backup_core::{
    AgentId, AttemptReport, ClaimAnswer, ClaimRequest, ErrorBody, ErrorCode, Heartbeat,
    HeartbeatAnswer, StartRequest, TaskId, TaskView,
};

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No answer: connection refused, reset, timed out.
    #[error("server unreachable: {0}")]
    Unreachable(String),
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

impl ClientError {
    /// Whether a result should stay in the outbox and be sent again: network errors, 408, 429
    /// and 5xx. Any other 4xx is final (the entry is dropped and logged).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable(_) | ClientError::Invalid(_) => true,
            ClientError::Unreadable(_) => false,
            ClientError::Status { status, .. } => matches!(status, 408 | 429) || *status >= 500,
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
}

/// The HTTP client (reqwest, rustls).
#[derive(Debug, Clone)]
pub struct HttpClient {
    base: String,
    agent: AgentId,
    token: String,
    http: reqwest::Client,
}

impl HttpClient {
    /// A client for `base` (`http://host:port`) speaking as `agent` with `token`.
    ///
    /// # Errors
    /// When the HTTP stack cannot be set up.
    pub fn new(base: &str, agent: AgentId, token: String) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("backup-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Invalid(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            agent,
            token,
            http,
        })
    }

    async fn post<B: serde::Serialize + Sync, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(without_url(&e)))?;
        let status = response.status();
        if status.is_success() {
            return response
                .json()
                .await
                .map_err(|e| ClientError::Unreadable(without_url(&e)));
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
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
        self.post(&format!("/agents/{}/heartbeat", self.agent), heartbeat)
            .await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<ClaimAnswer, ClientError> {
        self.post(&format!("/agents/{}/tasks/claim", self.agent), request)
            .await
    }

    async fn start(&self, task: TaskId, attempt: u32) -> Result<TaskView, ClientError> {
        self.post(&format!("/tasks/{task}/start"), &StartRequest { attempt })
            .await
    }

    async fn report(&self, task: TaskId, report: &AttemptReport) -> Result<TaskView, ClientError> {
        self.post(&format!("/tasks/{task}/result"), report).await
    }
}
