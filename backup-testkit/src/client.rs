//! A typed client of the server's API for tests, over any transport: the router in process
//! (feature `router`), or HTTP to a real socket (feature `http`). The fixtures every suite needs
//! (a tenant, an agent, a policy, a heartbeat, a claim, the lists) are written here once, with
//! typed ids and bodies; anything else goes through [`Client::call`] with JSON.

use async_trait::async_trait;
use backup_core::{AgentId, BackupRunView, PolicySpec, PolicyView, TaskView, TenantCreated};
use serde_json::{Value, json};

/// Credentials a request carries.
#[derive(Clone, Debug)]
pub enum Auth {
    /// None at all.
    None,
    /// The admin token.
    Admin(String),
    /// A tenant's id and token.
    Tenant {
        /// `X-Tenant-ID`.
        id: String,
        /// Its bearer token.
        token: String,
    },
    /// An agent's token.
    Agent(String),
    /// Headers as given (malformed credentials).
    Raw(Vec<(&'static str, String)>),
}

impl Auth {
    /// A tenant's credentials.
    pub fn tenant(t: &TenantCreated) -> Self {
        Auth::Tenant {
            id: t.id.to_string(),
            token: t.token.clone(),
        }
    }

    /// The headers of these credentials.
    pub fn headers(&self) -> Vec<(String, String)> {
        match self {
            Auth::None => vec![],
            Auth::Admin(token) | Auth::Agent(token) => {
                vec![("authorization".into(), format!("Bearer {token}"))]
            }
            Auth::Tenant { id, token } => vec![
                ("authorization".into(), format!("Bearer {token}")),
                ("x-tenant-id".into(), id.clone()),
            ],
            Auth::Raw(headers) => headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }
}

/// An agent as the tests hold it: its id and its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestAgent {
    /// Its id.
    pub id: AgentId,
    /// Its token (shown once by `POST /agents`).
    pub token: String,
}

impl TestAgent {
    /// Its credentials.
    pub fn auth(&self) -> Auth {
        Auth::Agent(self.token.clone())
    }
}

/// An answer: status, JSON body (`Null` when empty or not JSON) and headers.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The HTTP status (0: no answer at all).
    pub status: u16,
    /// The body as JSON.
    pub body: Value,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub text: String,
}

impl Answer {
    /// An answer from its status, its headers (a header map, or name and value pairs) and its
    /// body's bytes.
    pub fn new<'h, K, V>(
        status: u16,
        headers: impl IntoIterator<Item = (&'h K, &'h V)>,
        bytes: &[u8],
    ) -> Self
    where
        K: AsRef<str> + ?Sized + 'h,
        V: AsRef<[u8]> + ?Sized + 'h,
    {
        Self {
            status,
            body: serde_json::from_slice(bytes).unwrap_or_default(),
            headers: headers
                .into_iter()
                .map(|(k, v)| {
                    let value = String::from_utf8_lossy(v.as_ref()).into_owned();
                    (k.as_ref().to_owned(), value)
                })
                .collect(),
            text: String::from_utf8_lossy(bytes).into_owned(),
        }
    }

    /// The error body's `code`.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// The error body's `field`.
    pub fn field(&self) -> &str {
        self.body["error"]["field"].as_str().unwrap_or_default()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as `T`, asserting the status first.
    ///
    /// # Panics
    /// When the status is not `status` or the body is not a `T`.
    pub fn expect<T: serde::de::DeserializeOwned>(self, status: u16, what: &str) -> T {
        assert_eq!(self.status, status, "{what}: {self:?}");
        serde_json::from_value(self.body.clone())
            .unwrap_or_else(|e| panic!("{what}: {e}: {self:?}"))
    }
}

/// One request as a transport sends it.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path and query.
    pub path: &'a str,
    /// The headers.
    pub headers: Vec<(String, String)>,
    /// The body's bytes, if any.
    pub body: Option<Vec<u8>>,
}

/// How a request reaches the server.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Sends one request; a request that gets no answer is status 0.
    async fn send(&self, request: Request<'_>) -> Answer;
}

/// The API through `transport`.
#[derive(Clone, Debug)]
pub struct Client<T> {
    transport: T,
}

impl<T: Transport> Client<T> {
    /// A client over `transport`.
    pub fn new(transport: T) -> Self {
        Self { transport }
    }

    /// Any request, with a JSON body.
    pub async fn call(&self, method: &str, path: &str, auth: &Auth, body: Option<Value>) -> Answer {
        self.raw(method, path, auth, body.map(|b| b.to_string().into_bytes()))
            .await
    }

    /// Any request, with the body's bytes as they are.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        auth: &Auth,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut headers = auth.headers();
        if body.is_some() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        let request = Request {
            method,
            path,
            headers,
            body,
        };
        self.transport.send(request).await
    }

    /// `GET`.
    pub async fn get(&self, path: &str, auth: &Auth) -> Answer {
        self.call("GET", path, auth, None).await
    }

    /// `POST` with a JSON body.
    pub async fn post(&self, path: &str, auth: &Auth, body: Value) -> Answer {
        self.call("POST", path, auth, Some(body)).await
    }

    /// A tenant, made with the admin token.
    pub async fn create_tenant(&self, admin: &str, name: &str) -> TenantCreated {
        self.post(
            "/tenants",
            &Auth::Admin(admin.into()),
            json!({"name": name}),
        )
        .await
        .expect(201, "POST /tenants")
    }

    /// An agent of `tenant` (host name `<name>.example` unless `name` has a dot).
    pub async fn create_agent(&self, tenant: &TenantCreated, name: &str) -> TestAgent {
        let hostname = if name.contains('.') {
            name.to_owned()
        } else {
            format!("{name}.example")
        };
        let body: Value = self
            .post(
                "/agents",
                &Auth::tenant(tenant),
                json!({"name": name, "hostname": hostname}),
            )
            .await
            .expect(201, "POST /agents");
        TestAgent {
            id: body["id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .expect("an agent id"),
            token: body["token"].as_str().expect("a token").to_owned(),
        }
    }

    /// A policy of `tenant`.
    pub async fn create_policy(&self, tenant: &TenantCreated, body: Value) -> PolicyView {
        self.post("/policies", &Auth::tenant(tenant), body)
            .await
            .expect(201, "POST /policies")
    }

    /// The agent's heartbeat with `body`.
    pub async fn heartbeat(&self, agent: &TestAgent, body: Value) -> Answer {
        self.post(
            &format!("/agents/{}/heartbeat", agent.id),
            &agent.auth(),
            body,
        )
        .await
    }

    /// A heartbeat with nothing to report: the agent is online.
    pub async fn online(&self, agent: &TestAgent) {
        let a = self
            .heartbeat(agent, json!({"runningTasks": 0, "queueDepth": 0}))
            .await;
        assert_eq!(a.status, 200, "heartbeat: {a:?}");
    }

    /// Claims up to `limit` tasks for the agent.
    pub async fn claim(&self, agent: &TestAgent, limit: u32) -> Vec<Value> {
        let a = self
            .post(
                &format!("/agents/{}/tasks/claim", agent.id),
                &agent.auth(),
                json!({"limit": limit}),
            )
            .await;
        assert_eq!(a.status, 200, "claim: {a:?}");
        a.body["tasks"].as_array().cloned().unwrap_or_default()
    }

    /// Run-now of a policy.
    pub async fn run_now(&self, tenant: &TenantCreated, policy: &str) -> Answer {
        self.post(
            &format!("/policies/{policy}/run"),
            &Auth::tenant(tenant),
            json!({}),
        )
        .await
    }

    /// Every item of a tenant list (all pages), as JSON.
    pub async fn all(&self, tenant: &TenantCreated, path: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut cursor: Option<String> = None;
        loop {
            let page = match &cursor {
                Some(c) => format!("{path}{sep}limit=500&cursor={c}"),
                None => format!("{path}{sep}limit=500"),
            };
            let a = self.get(&page, &Auth::tenant(tenant)).await;
            assert_eq!(a.status, 200, "GET {page}: {a:?}");
            items.extend(a.body["items"].as_array().cloned().unwrap_or_default());
            match a.body["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return items,
            }
        }
    }

    /// The tenant's tasks matching `query` (`status=succeeded&policyId=...`).
    pub async fn tasks(&self, tenant: &TenantCreated, query: &str) -> Vec<TaskView> {
        typed(self.all(tenant, &format!("/tasks?{query}")).await)
    }

    /// The tenant's runs matching `query`.
    pub async fn runs(&self, tenant: &TenantCreated, query: &str) -> Vec<BackupRunView> {
        typed(self.all(tenant, &format!("/backup-runs?{query}")).await)
    }
}

/// The API as one tenant: a client and the tenant's credentials.
#[derive(Clone, Debug)]
pub struct TenantApi<T> {
    /// The client.
    pub client: Client<T>,
    /// The tenant, with its token.
    pub tenant: TenantCreated,
}

impl<T: Transport> TenantApi<T> {
    /// The API through `client` as `tenant`.
    pub fn new(client: Client<T>, tenant: TenantCreated) -> Self {
        Self { client, tenant }
    }

    /// The same tenant through another client (another server, a replica).
    pub fn via<U: Transport>(&self, client: Client<U>) -> TenantApi<U> {
        TenantApi::new(client, self.tenant.clone())
    }

    /// Any call as the tenant: status (0 when the server did not answer) and JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let a = self
            .client
            .call(method, path, &Auth::tenant(&self.tenant), body)
            .await;
        (a.status, a.body)
    }

    /// `GET`, which must answer 200: the body.
    ///
    /// # Panics
    /// When the status is another.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call("GET", path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// `POST`, which must succeed (2xx): the body.
    ///
    /// # Panics
    /// When the status is another.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, body) = self.call("POST", path, Some(body)).await;
        assert!((200..300).contains(&status), "POST {path}: {status} {body}");
        body
    }

    /// Every item of a list (all pages).
    pub async fn all(&self, path: &str) -> Vec<Value> {
        self.client.all(&self.tenant, path).await
    }

    /// An agent of the tenant.
    pub async fn agent(&self, name: &str) -> TestAgent {
        self.client.create_agent(&self.tenant, name).await
    }
}

fn typed<T: serde::de::DeserializeOwned>(items: Vec<Value>) -> Vec<T> {
    items
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("a view of the API"))
        .collect()
}

/// A backup policy body: every hour, into `repository`.
pub fn backup_policy(agent: AgentId, repository: &str, paths: &[&str]) -> Value {
    json!({
        "name": "backup", "agentId": agent, "kind": "backup", "schedule": {"every": "1h"},
        "paths": paths, "repository": repository
    })
}

/// The same policy as a typed spec.
pub fn backup_spec(agent: AgentId, repository: &str, paths: &[&str]) -> PolicySpec {
    serde_json::from_value(backup_policy(agent, repository, paths)).expect("a policy spec")
}

#[cfg(feature = "http")]
mod http {
    use super::{Answer, Request, Transport, async_trait};

    /// HTTP to a server on a socket (reqwest).
    #[derive(Clone, Debug)]
    pub struct Http {
        base: String,
        http: reqwest::Client,
    }

    impl Http {
        /// To the server at `base` (`http://127.0.0.1:port`).
        pub fn new(base: &str) -> Self {
            Self {
                base: base.trim_end_matches('/').to_owned(),
                http: reqwest::Client::new(),
            }
        }

        /// The base URL.
        pub fn base(&self) -> &str {
            &self.base
        }
    }

    #[async_trait]
    impl Transport for Http {
        async fn send(&self, request: Request<'_>) -> Answer {
            let method = reqwest::Method::from_bytes(request.method.as_bytes()).expect("a method");
            let mut req = self
                .http
                .request(method, format!("{}{}", self.base, request.path));
            for (k, v) in request.headers {
                req = req.header(k, v);
            }
            if let Some(body) = request.body {
                req = req.body(body);
            }
            match req.send().await {
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    let headers = answer.headers().clone();
                    let bytes = answer.bytes().await.unwrap_or_default();
                    Answer::new(status, &headers, &bytes)
                }
                Err(e) => Answer {
                    status: 0,
                    body: serde_json::Value::Null,
                    headers: vec![],
                    text: e.to_string(),
                },
            }
        }
    }
}
#[cfg(feature = "http")]
pub use http::Http;

#[cfg(feature = "router")]
mod router {
    use axum::{Router, body::Body, http::Request};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::{Answer, Request as ApiRequest, Transport, async_trait};

    /// The router in process (`tower::ServiceExt::oneshot`), no socket.
    #[derive(Clone, Debug)]
    pub struct InProcess(pub Router);

    #[async_trait]
    impl Transport for InProcess {
        async fn send(&self, request: ApiRequest<'_>) -> Answer {
            let mut req = Request::builder().method(request.method).uri(request.path);
            for (k, v) in &request.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let body = request.body.map_or_else(Body::empty, Body::from);
            let response = self
                .0
                .clone()
                .oneshot(req.body(body).expect("a request"))
                .await
                .expect("infallible");
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("a body")
                .to_bytes();
            Answer::new(status, &headers, &bytes)
        }
    }
}
#[cfg(feature = "router")]
pub use router::InProcess;
