//! A webhook receiver for the tests: a real HTTP server on loopback that records every request
//! (headers and body), answers as told (2xx, 503, or slowly), can be stopped (connection
//! refused) and started again on the same port, and notes when one event is being delivered
//! twice at the same time.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use backup_core::{EventView, verify_webhook};

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 204.
    Ok,
    /// 503.
    Unavailable,
    /// 204 after a pause.
    Slow(Duration),
}

/// One request as it arrived.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) event: EventView,
    pub(crate) signed: bool,
    pub(crate) answered: u16,
}

#[derive(Default)]
struct Inner {
    answer: Option<Answer>,
    received: Vec<Received>,
    in_flight: HashMap<String, u32>,
    arrived: Vec<String>,
    overlapping: u32,
    secret: String,
}

/// The receiver; `url()` is its hook.
pub(crate) struct Receiver {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// An open request of one event: counted while it lives, also when the server that sent it
/// dies and the request is dropped unanswered.
struct Open {
    inner: Arc<Mutex<Inner>>,
    id: String,
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Ok(mut state) = self.inner.lock()
            && let Some(n) = state.in_flight.get_mut(&self.id)
        {
            *n -= 1;
        }
    }
}

async fn hook(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id = header("x-fleet-event-id");
    let answer = {
        let mut state = inner.lock().expect("lock");
        let n = state.in_flight.entry(id.clone()).or_default();
        *n += 1;
        if *n > 1 {
            state.overlapping += 1;
        }
        state.arrived.push(id.clone());
        state.answer.unwrap_or(Answer::Ok)
    };
    let open = Open {
        inner: inner.clone(),
        id: id.clone(),
    };
    if let Answer::Slow(pause) = answer {
        tokio::time::sleep(pause).await;
    }
    let status = match answer {
        Answer::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::NO_CONTENT,
    };
    drop(open);
    let mut state = inner.lock().expect("lock");
    let signed = verify_webhook(
        &state.secret,
        &header("x-fleet-timestamp"),
        &body,
        &header("x-fleet-signature"),
    );
    if let Ok(event) = serde_json::from_slice::<EventView>(&body) {
        assert_eq!(
            event.id.to_string(),
            id,
            "X-Fleet-Event-Id names the body's event"
        );
        assert_eq!(header("x-fleet-event-type"), event.event_type.as_str());
        state.received.push(Received {
            event,
            signed,
            answered: status.as_u16(),
        });
    }
    status
}

impl Receiver {
    /// Listening on a free loopback port, answering 204.
    pub(crate) async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut r = Receiver {
            addr,
            inner: Arc::new(Mutex::new(Inner::default())),
            server: None,
        };
        r.serve(listener);
        r
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(self.inner.clone());
        self.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The webhook's secret, to check signatures with.
    pub(crate) fn set_secret(&self, secret: &str) {
        secret.clone_into(&mut self.inner.lock().expect("lock").secret);
    }

    pub(crate) fn answer(&self, answer: Answer) {
        self.inner.lock().expect("lock").answer = Some(answer);
    }

    /// Stops listening: deliveries meet a refused connection.
    pub(crate) fn down(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Listens again on the same port.
    pub(crate) async fn up(&mut self) {
        self.down();
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }

    /// Every request that carried an event.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.inner.lock().expect("lock").received.clone()
    }

    /// The event ids of every request, as soon as it arrived (before it was answered).
    pub(crate) fn arrived(&self) -> Vec<String> {
        self.inner.lock().expect("lock").arrived.clone()
    }

    /// The events answered with a 2xx.
    pub(crate) fn delivered(&self) -> Vec<EventView> {
        self.received()
            .into_iter()
            .filter(|r| r.answered < 300)
            .map(|r| r.event)
            .collect()
    }

    /// How many times one event arrived while an earlier request of it was still open.
    pub(crate) fn overlapping(&self) -> u32 {
        self.inner.lock().expect("lock").overlapping
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}
