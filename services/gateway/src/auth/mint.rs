//! Minting HS256 tokens: what `baemin token` does for development, with the gateway's own secret.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;

use super::Role;

/// A token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The secret is too short to be safe.
    #[error("the HS256 secret must be at least 32 bytes")]
    ShortSecret,
    /// The subject is empty or too long.
    #[error("{0}")]
    Subject(String),
    /// Signing failed.
    #[error("signing the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    role: &'a str,
    iat: u64,
    exp: u64,
}

/// A token for `subject` with `role`, valid until `expires_at`, signed with `secret`.
pub fn mint_hs256(secret: &[u8], subject: &str, role: Role, expires_at: SystemTime) -> Result<String, MintError> {
    if secret.len() < super::MIN_SECRET_BYTES {
        return Err(MintError::ShortSecret);
    }
    let subject = super::valid_subject(subject).map_err(MintError::Subject)?;
    let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let now = unix(SystemTime::now());
    let claims = Claims {
        sub: subject,
        role: role.as_str(),
        iat: now.min(unix(expires_at)),
        exp: unix(expires_at),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}
