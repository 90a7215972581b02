//! Webhooks: where a tenant's events go, and how a receiver knows they came from its server.
//!
//! Each delivery is a POST of the event's JSON with `X-Fleet-Event-Id`, `X-Fleet-Event-Type`,
//! `X-Fleet-Timestamp` (Unix seconds) and `X-Fleet-Signature: sha256=<hex>`, the HMAC-SHA256
//! of `"<timestamp>.<body>"` under the webhook's secret. A receiver checks the signature over
//! the exact bytes it received, refuses timestamps far from its clock (replays), and uses the
//! event id as its idempotency key: delivery is at least once.
//!
//! A receiver, in full: check the signature over the exact bytes received, refuse a timestamp
//! far from its own clock, then take the event (and skip an id it has seen):
//!
//! ```
//! use backup_core::{EventView, sign_webhook, verify_webhook};
//!
//! /// One POST: `timestamp` and `signature` are the X-Fleet-Timestamp and X-Fleet-Signature
//! /// headers, `now` the receiver's Unix time.
//! fn accept(secret: &str, timestamp: &str, signature: &str, body: &[u8], now: i64)
//!     -> Result<EventView, &'static str>
//! {
//!     if !verify_webhook(secret, timestamp, body, signature) {
//!         return Err("401: not signed with our secret");
//!     }
//!     let sent: i64 = timestamp.parse().map_err(|_| "400: a bad timestamp")?;
//!     if (now - sent).abs() > 300 {
//!         return Err("401: more than 5 minutes off: a replay?");
//!     }
//!     serde_json::from_slice(body).map_err(|_| "400: not an event")
//! }
//!
//! let body = br#"{"id":"0190c8e4-6f1a-7cc2-9a39-3c1f0a5e2b11","type":"agent.offline",
//!   "time":"2026-01-01T00:00:00Z","actor":"system","subjectId":null,"data":{}}"#;
//! let signature = sign_webhook("whsec_example", 1_767_225_600, body);
//! let event = accept("whsec_example", "1767225600", &signature, body, 1_767_225_630).unwrap();
//! assert_eq!(event.event_type.as_str(), "agent.offline");
//! assert!(accept("whsec_other", "1767225600", &signature, body, 1_767_225_630).is_err());
//! assert!(accept("whsec_example", "1767225600", &signature, body, 1_767_230_000).is_err());
//! ```

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{Error, EventId, EventType, WebhookId};

/// The header naming the event (the receiver's idempotency key).
pub const HEADER_EVENT_ID: &str = "X-Fleet-Event-Id";
/// The header naming the event's type.
pub const HEADER_EVENT_TYPE: &str = "X-Fleet-Event-Type";
/// The header with the Unix time of this attempt (seconds).
pub const HEADER_TIMESTAMP: &str = "X-Fleet-Timestamp";
/// The header with `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const HEADER_SIGNATURE: &str = "X-Fleet-Signature";

/// The longest webhook URL.
pub(crate) const MAX_WEBHOOK_URL_BYTES: usize = 2048;

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Fleet-Signature` value of `body` sent at `timestamp` (Unix seconds).
pub fn sign_webhook(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Whether `signature` (the `X-Fleet-Signature` header) signs `body` with `timestamp` (the
/// `X-Fleet-Timestamp` header, as received) under `secret`; compared in constant time. The
/// caller also checks that the timestamp is recent.
pub fn verify_webhook(secret: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&tag).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `POST /webhooks` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CreateWebhook {
    /// Where to POST the events (`http://` or `https://`; loopback and private addresses only
    /// when the server allows them: `notifications.allowPrivateTargets`).
    pub url: String,
    /// The event types to deliver, or `["*"]` for all.
    pub events: Vec<String>,
    /// For people.
    #[serde(default)]
    pub description: Option<String>,
}

impl CreateWebhook {
    /// Checks the shape: the URL's scheme and length, known event types.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `url`, `events` or `description`.
    pub fn validate(&self) -> Result<(), Error> {
        let url = self.url.as_str();
        if url.len() > MAX_WEBHOOK_URL_BYTES
            || !(url.starts_with("http://") || url.starts_with("https://"))
            || url.chars().any(char::is_control)
        {
            return Err(Error::invalid(
                "url",
                url.chars().take(100).collect::<String>(),
                format!("an http:// or https:// URL of at most {MAX_WEBHOOK_URL_BYTES} bytes"),
            ));
        }
        if self.events.is_empty() {
            return Err(Error::invalid("events", "[]", "[\"*\"] or event types"));
        }
        for (i, e) in self.events.iter().enumerate() {
            if e != "*" {
                e.parse::<EventType>().map_err(|_| {
                    Error::invalid(
                        format!("events[{i}]"),
                        e,
                        "\"*\" or an event type such as agent.offline",
                    )
                })?;
            }
        }
        if let Some(d) = &self.description {
            crate::validate_name("description", d)?;
        }
        Ok(())
    }

    /// Whether it delivers events of `event_type`.
    pub fn wants(events: &[String], event_type: EventType) -> bool {
        events.iter().any(|e| e == "*" || e == event_type.as_str())
    }
}

/// A webhook as the API shows it (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    /// Its id.
    pub id: WebhookId,
    /// Where it delivers.
    pub url: String,
    /// What it delivers.
    pub events: Vec<String>,
    /// For people.
    pub description: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// `POST /webhooks` answer: the view and its secret, shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookCreated {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The key of its signatures; shown once.
    pub secret: String,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeliveryStatus {
    /// Not delivered yet; tried again at `nextAttemptAt`.
    Pending,
    /// A 2xx answered it.
    Delivered,
    /// Given up after `notifications.maxRetryHours`.
    Failed,
}

impl DeliveryStatus {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
        .ok_or_else(|| Error::invalid("status", s, "pending, delivered or failed"))
    }
}

/// One event's delivery to one webhook, with its attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// The event delivered (the receiver's idempotency key).
    pub event_id: EventId,
    /// Its type.
    pub event_type: EventType,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// When it is tried next, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last attempt, if one answered.
    pub last_status: Option<u16>,
    /// What went wrong last (a timeout, a refused connection, a non-2xx).
    pub last_error: Option<String>,
    /// When the event was made.
    pub created_at: DateTime<Utc>,
    /// When a 2xx answered it.
    pub delivered_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_covers_the_timestamp_and_every_byte() {
        let body = br#"{"type":"agent.offline"}"#;
        let sig = sign_webhook("s3cret", 1_700_000_000, body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify_webhook("s3cret", "1700000000", body, &sig));
        assert!(!verify_webhook("other", "1700000000", body, &sig));
        assert!(!verify_webhook(
            "s3cret",
            "1700000000",
            br#"{"type":"agent.online"}"#,
            &sig
        ));
        assert!(!verify_webhook("s3cret", "1700000000", body, "sha256=zz"));
        assert!(!verify_webhook("s3cret", "1700000000", body, &sig[7..]));
        // The known answer of RFC 4231's test case 2 form: key "Jefe".
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").expect("key");
        m.update(b"what do ya want for nothing?");
        let hex: String = m
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_webhook_names_known_types_and_a_web_url() {
        let ok = CreateWebhook {
            url: "https://hooks.example/fleet".into(),
            events: vec!["agent.offline".into(), "task.failed_permanently".into()],
            description: None,
        };
        ok.validate().expect("valid");
        for (url, events, field) in [
            ("ftp://x", vec!["*"], "url"),
            ("https://x", vec![], "events"),
            ("https://x", vec!["*", "agent.gone"], "events[1]"),
        ] {
            let w = CreateWebhook {
                url: url.into(),
                events: events.into_iter().map(str::to_owned).collect(),
                description: None,
            };
            assert_eq!(w.validate().expect_err(field).field(), Some(field));
        }
        assert!(CreateWebhook::wants(&["*".into()], EventType::AgentOnline));
        assert!(!CreateWebhook::wants(
            &["agent.offline".into()],
            EventType::AgentOnline
        ));
    }
}
