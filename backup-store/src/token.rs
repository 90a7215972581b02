//! API tokens: 256 random bits, shown once, stored only as SHA-256 hashes.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Result, StoreError};

/// Who a token belongs to, by its prefix (so a leaked token says what it is).
#[derive(Clone, Copy, Debug)]
pub(crate) enum TokenKind {
    Tenant,
    Agent,
    /// A dashboard session's cookie.
    Session,
    /// A dashboard form's CSRF token (not a credential on its own).
    Csrf,
    /// A webhook's signing key (kept as it is: the server signs with it).
    WebhookSecret,
    /// An enrollment token (agents create themselves with it).
    Enrollment,
}

/// A new token: a kind prefix and 64 hex digits (256 bits from the OS's generator).
pub(crate) fn generate(kind: TokenKind) -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Internal(format!("no randomness for a token: {e}")))?;
    let prefix = match kind {
        TokenKind::Tenant => "rft_t_",
        TokenKind::Agent => "rft_a_",
        TokenKind::Session => "rft_s_",
        TokenKind::Csrf => "",
        TokenKind::WebhookSecret => "whsec_",
        TokenKind::Enrollment => "rft_e_",
    };
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// The stored form: hex SHA-256.
pub(crate) fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares a presented token with a stored hash in constant time.
pub(crate) fn matches(token: &str, stored_hash: &str) -> bool {
    same_hash(&hash(token), stored_hash)
}

/// Compares two hashes in constant time.
pub(crate) fn same_hash(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}
