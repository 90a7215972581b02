//! Credentials: an agent's id and token come from its file (`agentId`, `token` or
//! `tokenFile`), else from `<stateDir>/credentials.json`, else it enrolls itself with an
//! enrollment token (`enrollmentToken` or `enrollmentTokenFile`): `POST /enroll` once, the
//! answer kept in `credentials.json` (mode 0600, written atomically), so that every later start
//! reuses it and the enrollment token spends one use per machine.

use std::path::{Path, PathBuf};

use backup_core::{AgentId, EnrollRequest, Enrolled, TenantId};
use serde::{Deserialize, Serialize};

use crate::{AgentConfig, AgentError};

/// The file in the state directory that keeps an enrolled agent's credentials.
pub const CREDENTIALS_FILE: &str = "credentials.json";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    agent_id: AgentId,
    token: String,
    tenant_id: TenantId,
}

fn credentials_path(config: &AgentConfig) -> PathBuf {
    config.state_dir.join(CREDENTIALS_FILE)
}

fn enrollment_token(config: &AgentConfig) -> Result<Option<String>, AgentError> {
    if let Some(token) = config
        .enrollment_token
        .as_deref()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(Some(token.trim().to_owned()));
    }
    let Some(file) = &config.enrollment_token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(file).map_err(|e| {
        AgentError::Config(format!(
            "enrollmentTokenFile: cannot read {}: {e}",
            file.display()
        ))
    })?;
    Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty()))
}

fn read_credentials(path: &Path) -> Result<Option<Credentials>, AgentError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            AgentError::State(format!(
                "{} is unreadable ({e}); move it away to enroll again",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AgentError::State(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Makes sure `config` names the agent and its token: as written, from the credentials an
/// earlier enrollment kept, or by enrolling now with `hostname` (the name is the `name` key,
/// else the host name). Without credentials and without an enrollment token, `config` stays
/// as it is (and the agent's start names the missing keys).
///
/// # Errors
/// [`AgentError::Config`] when the server refuses the enrollment token (unknown, revoked,
/// expired, used up) or the name; [`AgentError::Io`] when the server cannot be reached;
/// [`AgentError::State`] when the credentials cannot be kept.
pub async fn ensure_credentials(
    config: &mut AgentConfig,
    hostname: &str,
) -> Result<(), AgentError> {
    let has_token = config
        .token
        .as_deref()
        .is_some_and(|t| !t.trim().is_empty())
        || config.token_file.is_some();
    if config.agent_id.is_some() && has_token {
        return Ok(());
    }
    let path = credentials_path(config);
    if let Some(kept) = read_credentials(&path)? {
        config.agent_id = Some(kept.agent_id.to_string());
        config.token = Some(kept.token);
        return Ok(());
    }
    let Some(enrollment) = enrollment_token(config)? else {
        return Ok(());
    };
    let name = config.name.clone().unwrap_or_else(|| hostname.to_owned());
    let enrolled = enroll(&config.orchestrator_url, &enrollment, &name, hostname).await?;
    std::fs::create_dir_all(&config.state_dir).map_err(|e| {
        AgentError::State(format!("cannot create {}: {e}", config.state_dir.display()))
    })?;
    let kept = Credentials {
        agent_id: enrolled.agent_id,
        token: enrolled.token.clone(),
        tenant_id: enrolled.tenant_id,
    };
    let bytes = serde_json::to_vec_pretty(&kept).unwrap_or_default();
    crate::state::write_atomically(&config.state_dir, &path, &bytes)
        .map_err(|e| AgentError::State(format!("cannot write {}: {e}", path.display())))?;
    tracing::info!(agent = %enrolled.agent_id, %name, credentials = %path.display(), "enrolled with the server");
    config.agent_id = Some(enrolled.agent_id.to_string());
    config.token = Some(enrolled.token);
    Ok(())
}

async fn enroll(
    server: &str,
    token: &str,
    name: &str,
    hostname: &str,
) -> Result<Enrolled, AgentError> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| AgentError::Io(format!("an HTTP client: {e}")))?;
    let url = format!("{}/enroll", server.trim_end_matches('/'));
    let body = EnrollRequest {
        name: name.to_owned(),
        hostname: hostname.to_owned(),
    };
    let answer = client
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| {
            AgentError::Io(format!(
                "cannot reach {server} to enroll: {}",
                e.without_url()
            ))
        })?;
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    let message = || {
        serde_json::from_str::<backup_core::ErrorBody>(&text)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| text.chars().take(200).collect())
    };
    match status.as_u16() {
        201 | 200 => serde_json::from_str(&text).map_err(|e| {
            AgentError::Io(format!("the server's enrollment answer is unreadable: {e}"))
        }),
        401 => Err(AgentError::Config(
            "enrollmentToken: the server refused it (unknown, revoked, expired or used up); \
             make a new one with POST /enrollment-tokens"
                .into(),
        )),
        409 => Err(AgentError::Config(format!("name: {}", message()))),
        _ => Err(AgentError::Io(format!(
            "enrolling at {server}: the server answered {status}: {}",
            message()
        ))),
    }
}
