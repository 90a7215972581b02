//! Enrollment: machines join by themselves. A tenant makes an enrollment token (it expires, it
//! has a number of uses, it can be revoked) and puts it on its machines (an image, a
//! provisioning script); an agent without credentials presents it once, gets its own agent id
//! and token, and keeps them. Fleets are then not set up by hand, one agent at a time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{AgentId, Error, TenantId};

/// The longest an enrollment token lives.
pub const MAX_ENROLLMENT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The most uses of one enrollment token.
pub const MAX_ENROLLMENT_USES: u32 = 100_000;

/// An enrollment token's id (its value is shown once).
pub type EnrollmentTokenId = uuid::Uuid;

/// `POST /enrollment-tokens` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CreateEnrollmentToken {
    /// For people (what the token is for).
    #[serde(default)]
    pub description: Option<String>,
    /// How long it works, a humantime duration of 1 minute to 30 days (`24h`, `7days`).
    pub expires_in: String,
    /// How many agents may enroll with it (1-100000).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100000))]
    pub max_uses: u32,
}

impl CreateEnrollmentToken {
    /// Checks every field; the lifetime.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `expiresIn`, `maxUses` or `description`.
    pub fn validate(&self) -> Result<Duration, Error> {
        let expected = "a duration of 1m to 30days, like 24h or 7days";
        let ttl = humantime::parse_duration(&self.expires_in)
            .map_err(|_| Error::invalid("expiresIn", &self.expires_in, expected))?;
        if ttl < Duration::from_secs(60) || ttl > MAX_ENROLLMENT_TTL {
            return Err(Error::invalid("expiresIn", &self.expires_in, expected));
        }
        if !(1..=MAX_ENROLLMENT_USES).contains(&self.max_uses) {
            return Err(Error::invalid(
                "maxUses",
                self.max_uses,
                format!("1-{MAX_ENROLLMENT_USES}"),
            ));
        }
        if let Some(d) = &self.description {
            crate::validate_name("description", d)?;
        }
        Ok(ttl)
    }
}

/// An enrollment token as the API lists it (never its value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentTokenView {
    /// Its id.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: EnrollmentTokenId,
    /// For people.
    pub description: Option<String>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// How many agents may enroll with it.
    pub max_uses: u32,
    /// How many did.
    pub uses: u32,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// `POST /enrollment-tokens` answer: the view and the token, shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentTokenCreated {
    /// The token.
    #[serde(flatten)]
    pub view: EnrollmentTokenView,
    /// Its value, for `enrollmentToken` in the agents' configuration; shown once.
    pub token: String,
}

/// `POST /enroll` body (with `Authorization: Bearer <enrollment token>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EnrollRequest {
    /// The new agent's name (unique among the tenant's live agents).
    pub name: String,
    /// The machine's host name.
    pub hostname: String,
}

/// `POST /enroll` answer: the agent's own credentials.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Enrolled {
    /// The new agent's id.
    pub agent_id: AgentId,
    /// Its token, shown once.
    pub token: String,
    /// Its tenant.
    pub tenant_id: TenantId,
}

impl std::fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolled")
            .field("agent_id", &self.agent_id)
            .field("token", &"<hidden>")
            .field("tenant_id", &self.tenant_id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(expires_in: &str, max_uses: u32) -> CreateEnrollmentToken {
        CreateEnrollmentToken {
            description: None,
            expires_in: expires_in.into(),
            max_uses,
        }
    }

    #[test]
    fn a_token_lives_a_minute_to_thirty_days_for_one_to_100000_agents() {
        assert_eq!(
            create("24h", 10).validate().expect("valid"),
            Duration::from_secs(86_400)
        );
        for (bad, field) in [
            (create("31days", 1), "expiresIn"),
            (create("30s", 1), "expiresIn"),
            (create("soon", 1), "expiresIn"),
            (create("1h", 0), "maxUses"),
            (create("1h", 100_001), "maxUses"),
        ] {
            assert_eq!(bad.validate().expect_err(field).field(), Some(field));
        }
        let shown = format!(
            "{:?}",
            Enrolled {
                agent_id: AgentId::new(),
                token: "rft_a_secret".into(),
                tenant_id: TenantId::new(),
            }
        );
        assert!(!shown.contains("secret"), "{shown}");
    }
}
