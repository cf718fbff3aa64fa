//! Who is calling: a bearer JWT, verified with an HS256 secret or the keys of a JWKS file, whose claims
//! give the subject (`sub`) and one role (`role`: `restaurant`, `rider` or `admin`). Expiry is required
//! and checked, not-before (`nbf`) checked when present, each with [`LEEWAY_SECS`] for clock skew; issuer
//! and audience are checked when configured (the gateway's configuration requires them with a JWKS).

mod mint;

use std::{fmt, str::FromStr};

pub use baemin_mesh_server::identity::Role;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::Deserialize;

pub use mint::{MintError, mint_hs256};

/// The shortest HS256 secret accepted, for verifying and for minting.
const MIN_SECRET_BYTES: usize = 32;

/// Clock skew tolerated between the token's issuer and the gateway, on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// `subject` trimmed, if it is 1 to 128 characters: what a token may name, minted or verified.
fn valid_subject(subject: &str) -> Result<&str, String> {
    let subject = subject.trim();
    if subject.is_empty() || subject.chars().count() > 128 {
        return Err("the subject must be 1 to 128 characters".into());
    }
    Ok(subject)
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's subject: a restaurant id, a rider id, or a staff member.
    pub subject: String,
    /// Its role.
    pub role: Role,
}

/// Why a request is UNAUTHENTICATED. The message goes to the caller: it says what is wrong with the
/// credentials, never anything about the keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization` header.
    #[error("missing credentials: send `authorization: Bearer <token>`")]
    Missing,
    /// Not `Bearer <token>`.
    #[error("the authorization header is not `Bearer <token>`")]
    NotBearer,
    /// The token has expired.
    #[error("the token has expired")]
    Expired,
    /// The token's `nbf` (not before) is still in the future.
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    /// Bad signature, unknown key, malformed token, wrong issuer or audience.
    #[error("the token is not valid: {0}")]
    Invalid(String),
    /// Valid signature, unusable claims.
    #[error("the token's claims are not usable: {0}")]
    Claims(String),
}

/// The verifier could not be set up from configuration.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The HS256 secret is too short to be safe.
    #[error("the HS256 secret must be at least 32 bytes")]
    ShortSecret,
    /// The JWKS document does not parse.
    #[error("the JWKS document is not valid: {0}")]
    Jwks(String),
    /// The JWKS holds no key this gateway can use.
    #[error("the JWKS has no usable signing key (each needs a supported `alg`)")]
    NoKeys,
}

/// Where verification keys come from.
enum Keys {
    Secret(DecodingKey),
    Jwks(Vec<JwksKey>),
}

struct JwksKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies bearer tokens.
pub struct Verifier {
    keys: Keys,
    issuer: Option<String>,
    audience: Option<String>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = match &self.keys {
            Keys::Secret(_) => "HS256 secret".to_owned(),
            Keys::Jwks(keys) => format!("{} JWKS keys", keys.len()),
        };
        f.debug_struct("Verifier")
            .field("keys", &keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    role: String,
    /// Only its type is checked here: jsonwebtoken skips an `nbf` that is not a number, which must not
    /// pass for a token without one.
    #[serde(default, rename = "nbf")]
    _nbf: Option<f64>,
}

impl Verifier {
    /// Tokens signed with HS256 and `secret` (at least 32 bytes).
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::ShortSecret);
        }
        Ok(Self {
            keys: Keys::Secret(DecodingKey::from_secret(secret)),
            issuer: None,
            audience: None,
        })
    }

    /// Tokens signed by one of the keys of the JWKS document `json` (RSA, EC or Ed25519 keys with `alg`).
    pub fn jwks(json: &str) -> Result<Self, KeyError> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| KeyError::Jwks(e.to_string()))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let Some(algorithm) = jwk
                .common
                .key_algorithm
                .and_then(|a| Algorithm::from_str(&a.to_string()).ok())
            else {
                continue;
            };
            if matches!(algorithm, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                // A shared secret has no place in a published key set.
                continue;
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError::Jwks(e.to_string()))?;
            keys.push(JwksKey {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        Ok(Self {
            keys: Keys::Jwks(keys),
            issuer: None,
            audience: None,
        })
    }

    /// Also require this `iss` claim.
    pub fn with_issuer(mut self, issuer: Option<String>) -> Self {
        self.issuer = issuer;
        self
    }

    /// Also require this `aud` claim.
    pub fn with_audience(mut self, audience: Option<String>) -> Self {
        self.audience = audience;
        self
    }

    /// The caller named by the `authorization` header value.
    pub fn verify(&self, authorization: Option<&str>) -> Result<Identity, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::NotBearer)?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        // The keys the token may be signed with: with a JWKS, those of its `alg` (and `kid`, when it
        // names one). Without a `kid`, every key of the algorithm is a candidate: during a key rotation
        // the provider publishes old and new keys, and the token may be signed with either.
        let (algorithm, candidates): (Algorithm, Vec<&DecodingKey>) = match &self.keys {
            Keys::Secret(key) => (Algorithm::HS256, vec![key]),
            Keys::Jwks(keys) => (
                header.alg,
                keys.iter()
                    .filter(|k| k.algorithm == header.alg && (header.kid.is_none() || k.kid == header.kid))
                    .map(|k| &k.key)
                    .collect(),
            ),
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        // The signature is checked before the claims: a key whose signature does not match passes the
        // token on to the next; any other outcome (accepted, or refused for its claims) is the answer.
        let mut outcome = None;
        for key in candidates {
            let decoded = jsonwebtoken::decode::<Claims>(token, key, &validation);
            let bad_signature =
                matches!(&decoded, Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature);
            outcome = Some(decoded);
            if !bad_signature {
                break;
            }
        }
        let outcome =
            outcome.ok_or_else(|| AuthError::Invalid("signed with a key this gateway does not know".into()))?;
        let data = outcome.map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            jsonwebtoken::errors::ErrorKind::Json(_) | jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => {
                AuthError::Claims(e.to_string())
            }
            _ => AuthError::Invalid(e.to_string()),
        })?;
        let role = data
            .claims
            .role
            .parse()
            .map_err(|e: baemin_mesh_server::identity::IdentityError| AuthError::Claims(e.to_string()))?;
        let subject = valid_subject(&data.claims.sub).map_err(AuthError::Claims)?;
        // The services take a restaurant's or rider's subject as its id: refuse here what they would.
        baemin_mesh_server::identity::Caller::of_role(role, subject).map_err(|e| AuthError::Claims(e.to_string()))?;
        Ok(Identity {
            subject: subject.to_owned(),
            role,
        })
    }
}

#[cfg(test)]
mod tests;
