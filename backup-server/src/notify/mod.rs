//! Webhook delivery: a loop beside the scheduler claims due deliveries (leased, so that no two
//! replicas attempt one at once), POSTs each event signed with its webhook's secret, and
//! settles it: delivered on any 2xx, retried with a capped exponential backoff otherwise, given
//! up after `notifications.maxRetryHours`. The client follows no redirect, waits 10 s at most,
//! and resolves names only to addresses the server may reach (`target.rs`).

mod target;

use std::time::Duration;

use backup_core::{
    DeliveryStatus, HEADER_EVENT_ID, HEADER_EVENT_TYPE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
    sign_webhook,
};
use backup_store::{DeliveryOutcome, DueDelivery};
use tokio::sync::watch;

pub(crate) use target::check_target;

use crate::{AppState, metrics::OutcomeLabels};

/// One attempt's time limit.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed delivery is this replica's: past it (a crash), another may attempt it.
/// Longer than an attempt can take, with room for settling it.
const LEASE: Duration = Duration::from_secs(20);
/// Deliveries attempted at once.
const BATCH: u32 = 16;

/// The delivery client: no redirects, a 10 s limit, the guarded resolver.
fn client(allow_private: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(ATTEMPT_TIMEOUT)
        .user_agent(concat!("restic-fleet/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(std::sync::Arc::new(target::GuardedResolver {
            allow_private,
        }))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// One attempt of one delivery.
async fn attempt(
    client: &reqwest::Client,
    delivery: &DueDelivery,
    now: i64,
    allow_private: bool,
) -> DeliveryOutcome {
    // A host written as an address never reaches the resolver: it is checked here.
    if let Err(e) = check_literal(&delivery.url, allow_private) {
        return DeliveryOutcome::Failed {
            status: None,
            error: e,
        };
    }
    let body = serde_json::to_vec(&delivery.event).unwrap_or_default();
    let signature = sign_webhook(&delivery.secret, now, &body);
    let sent = client
        .post(&delivery.url)
        .header("content-type", "application/json")
        .header(HEADER_EVENT_ID, delivery.event.id.to_string())
        .header(HEADER_EVENT_TYPE, delivery.event.event_type.as_str())
        .header(HEADER_TIMESTAMP, now.to_string())
        .header(HEADER_SIGNATURE, signature)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(answer) if answer.status().is_success() => DeliveryOutcome::Delivered {
            status: answer.status().as_u16(),
        },
        Ok(answer) => DeliveryOutcome::Failed {
            status: Some(answer.status().as_u16()),
            error: format!("the receiver answered {}", answer.status()),
        },
        // The URL may hold a credential in its query: errors are shown without it.
        Err(e) => DeliveryOutcome::Failed {
            status: None,
            error: error_text(&e.without_url()),
        },
    }
}

/// An error and its causes, one line.
fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn check_literal(url: &str, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    let ip = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => std::net::IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => std::net::IpAddr::V6(ip),
        _ => return Ok(()),
    };
    if target::is_public(ip) {
        Ok(())
    } else {
        Err(format!(
            "{ip} is not a public address (notifications.allowPrivateTargets is off)"
        ))
    }
}

/// Claims and attempts what is due; returns how many it attempted.
pub(crate) async fn deliver_due(state: &AppState, client: &reqwest::Client) -> usize {
    let config = state.config().notifications;
    let store = state.store();
    let due = match store.claim_deliveries(BATCH, LEASE).await {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(error = %e, "cannot claim webhook deliveries");
            return 0;
        }
    };
    let now = store.clock().now().timestamp();
    let mut attempts = tokio::task::JoinSet::new();
    for delivery in due {
        let (client, state) = (client.clone(), state.clone());
        attempts.spawn(async move {
            let outcome = attempt(&client, &delivery, now, config.allow_private_targets).await;
            let retry_base = Duration::from_secs(u64::from(config.retry_base_seconds));
            let give_up = Duration::from_secs(u64::from(config.max_retry_hours) * 3600);
            let settled = state
                .store()
                .settle_delivery(&delivery, &outcome, retry_base, give_up)
                .await;
            let label = match (&outcome, &settled) {
                (DeliveryOutcome::Delivered { .. }, _) => "delivered",
                (_, Ok(DeliveryStatus::Failed)) => "failed",
                _ => "retried",
            };
            state
                .metrics()
                .webhook_deliveries
                .get_or_create(&OutcomeLabels {
                    outcome: label.into(),
                })
                .inc();
            match (&outcome, settled) {
                (_, Err(e)) => {
                    tracing::warn!(webhook = %delivery.webhook_id, event = %delivery.event.id, error = %e, "cannot record a webhook delivery (it is attempted again when its lease lapses)");
                }
                (DeliveryOutcome::Failed { error, .. }, Ok(status)) => {
                    tracing::info!(webhook = %delivery.webhook_id, event = %delivery.event.id, attempt = delivery.attempt, %error, status = status.as_str(), "webhook delivery failed");
                }
                (DeliveryOutcome::Delivered { .. }, Ok(_)) => {
                    tracing::debug!(webhook = %delivery.webhook_id, event = %delivery.event.id, "webhook delivered");
                }
            }
        });
    }
    let n = attempts.len();
    while attempts.join_next().await.is_some() {}
    n
}

/// The delivery loop, until `stop`: a full batch is followed at once by the next, otherwise it
/// looks again within a second.
pub(crate) async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let client = client(state.config().notifications.allow_private_targets);
    loop {
        let attempted = deliver_due(&state, &client).await;
        if attempted >= BATCH as usize {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
