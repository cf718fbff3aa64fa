//! Who is calling. The edge gateway verifies the caller's token and forwards the subject and role as
//! metadata, signed with the mesh's identity key (`BAEMIN_IDENTITY_KEY`, DESIGN.md "Edge gateway"); the
//! mesh's own services sign their calls to each other the same way, as role `service`. A service
//! verifies the signature before it believes a word of it: a pod that merely reaches a service cannot
//! claim a role. A call without any identity is an internal backend (Istio mTLS and AuthorizationPolicy
//! decide who gets in at all), unless identity is required (`BAEMIN_REQUIRE_IDENTITY`).
//!
//! The proof is an HMAC-SHA256 over role, subject and expiry, in `x-baemin-identity-proof` as
//! `v1.<expiry, unix seconds>.<base64url MAC>`. It lives [`PROOF_TTL`]: long enough for clock skew
//! between replicas, short enough that a proof copied out of a request is soon worthless.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baemin_kernel::{RestaurantId, RiderId};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderValue};
use ring::hmac;

/// Metadata key of the verified subject.
pub const SUBJECT_HEADER: &str = "x-baemin-subject";
/// Metadata key of the verified role: `restaurant`, `rider`, `admin`, or `service` inside the mesh.
pub const ROLE_HEADER: &str = "x-baemin-role";
/// Metadata key of the signature over role, subject and expiry.
pub const PROOF_HEADER: &str = "x-baemin-identity-proof";
/// The role value a mesh service signs its own calls with (never a token's role).
pub const SERVICE_ROLE: &str = "service";

/// How long a signed identity is accepted after it was made.
pub const PROOF_TTL: Duration = Duration::from_secs(60);
/// Clock skew tolerated between the signer and the verifier.
const SKEW: Duration = Duration::from_secs(30);
/// The shortest key accepted: HMAC-SHA256's block of entropy.
pub const MIN_KEY_BYTES: usize = 32;

const PROOF_VERSION: &str = "v1";

/// A role a verified person has. The gateway reads it from the token's `role` claim and passes it on in
/// [`ROLE_HEADER`]; `baemin token` mints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A restaurant: places, reads and cancels its own calls.
    Restaurant,
    /// A rider: takes calls and delivers them.
    Rider,
    /// The company's staff: sees everything.
    Admin,
}

impl Role {
    /// Every role, for tables and tests.
    pub const ALL: [Role; 3] = [Role::Restaurant, Role::Rider, Role::Admin];

    /// The name used in tokens and in `x-baemin-role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restaurant => "restaurant",
            Self::Rider => "rider",
            Self::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, IdentityError> {
        match s {
            "restaurant" => Ok(Self::Restaurant),
            "rider" => Ok(Self::Rider),
            "admin" => Ok(Self::Admin),
            other => Err(IdentityError::UnknownRole(other.escape_debug().to_string())),
        }
    }
}

/// The caller of an RPC, as verified by [`crate::IdentityLayer`] and found in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No identity: another backend inside the mesh, trusted by network policy alone.
    Internal,
    /// One of the mesh's own services, by name, with a signed identity.
    Service(String),
    /// The company's staff: sees everything.
    Admin(String),
    /// A restaurant, by id.
    Restaurant(RestaurantId),
    /// A rider, by id.
    Rider(RiderId),
}

/// The identity metadata is present but cannot be believed: UNAUTHENTICATED, never "internal".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// A role this mesh does not know.
    #[error("role {0:?} is not one of restaurant, rider, admin")]
    UnknownRole(String),
    /// A header that is not visible ASCII, or a role, subject or proof missing from the set.
    #[error("malformed caller identity: {0}")]
    Malformed(&'static str),
    /// The signature does not match: forged, or signed with another key.
    #[error("the caller identity's signature does not verify")]
    Forged,
    /// Signed too long ago (or for too far in the future).
    #[error("the caller identity has expired")]
    Expired,
    /// This service holds no key to verify identity with.
    #[error("this service cannot verify caller identity (no BAEMIN_IDENTITY_KEY)")]
    NoKey,
    /// Identity is required and the call carries none.
    #[error("this service requires a caller identity (BAEMIN_REQUIRE_IDENTITY)")]
    Missing,
}

/// The mesh's shared HMAC key: the gateway and services sign identity with it, services verify it.
#[derive(Clone)]
pub struct IdentityKey(hmac::Key);

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityKey(..)")
    }
}

/// A key shorter than [`MIN_KEY_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be at least {MIN_KEY_BYTES} bytes")]
pub struct KeyTooShort;

impl IdentityKey {
    /// The key made of `secret`, at least [`MIN_KEY_BYTES`] long.
    pub fn new(secret: &[u8]) -> Result<Self, KeyTooShort> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyTooShort);
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    /// Puts a signed identity (`role`, `subject`) into `headers`, replacing any there, valid for
    /// [`PROOF_TTL`] from `now`. The subject must be a valid header value.
    pub fn sign_into(
        &self,
        headers: &mut HeaderMap,
        role: &str,
        subject: &str,
        now: SystemTime,
    ) -> Result<(), IdentityError> {
        let subject_value =
            HeaderValue::from_str(subject).map_err(|_| IdentityError::Malformed("subject is not a header value"))?;
        let role_value =
            HeaderValue::from_str(role).map_err(|_| IdentityError::Malformed("role is not a header value"))?;
        let expires = unix_secs(now + PROOF_TTL);
        let tag = hmac::sign(&self.0, &signed_text(role, subject, expires));
        let proof = format!("{PROOF_VERSION}.{expires}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        let proof = HeaderValue::from_str(&proof).map_err(|_| IdentityError::Malformed("proof"))?;
        headers.insert(ROLE_HEADER, role_value);
        headers.insert(SUBJECT_HEADER, subject_value);
        headers.insert(PROOF_HEADER, proof);
        Ok(())
    }

    fn verify(&self, role: &str, subject: &str, proof: &str, now: SystemTime) -> Result<(), IdentityError> {
        let malformed = || IdentityError::Malformed("proof is not v1.<expiry>.<mac>");
        let mut parts = proof.splitn(3, '.');
        let (Some(PROOF_VERSION), Some(expires), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed());
        };
        let expires: u64 = expires.parse().map_err(|_| malformed())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| malformed())?;
        hmac::verify(&self.0, &signed_text(role, subject, expires), &tag).map_err(|_| IdentityError::Forged)?;
        let now = unix_secs(now);
        let fresh = now <= expires.saturating_add(SKEW.as_secs())
            && expires <= now.saturating_add((PROOF_TTL + SKEW).as_secs());
        if fresh { Ok(()) } else { Err(IdentityError::Expired) }
    }
}

impl IdentityKey {
    /// `BAEMIN_IDENTITY_KEY` (or the file `BAEMIN_IDENTITY_KEY_FILE` names), if set.
    pub fn from_settings(s: &crate::config::Settings<'_>) -> Result<Option<Self>, crate::config::ConfigError> {
        const KEY: &str = "BAEMIN_IDENTITY_KEY";
        let Some(secret) = s.secret(KEY)? else {
            return Ok(None);
        };
        Self::new(secret.as_bytes())
            .map(Some)
            .map_err(|e| crate::config::ConfigError::new(KEY, "(hidden)", e))
    }
}

fn signed_text(role: &str, subject: &str, expires: u64) -> Vec<u8> {
    format!("baemin-identity-{PROOF_VERSION}\n{role}\n{subject}\n{expires}").into_bytes()
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Caller {
    /// Reads and verifies the caller from request headers. No identity headers at all is
    /// [`Caller::Internal`] unless `required`; anything else must carry a proof `key` verifies.
    pub fn from_headers(
        headers: &HeaderMap,
        key: Option<&IdentityKey>,
        required: bool,
        now: SystemTime,
    ) -> Result<Self, IdentityError> {
        let [role, subject, proof] = [ROLE_HEADER, SUBJECT_HEADER, PROOF_HEADER].map(|k| headers.get(k));
        if role.is_none() && subject.is_none() && proof.is_none() {
            return if required {
                Err(IdentityError::Missing)
            } else {
                Ok(Self::Internal)
            };
        }
        fn text<'h>(value: Option<&'h HeaderValue>, what: &'static str) -> Result<&'h str, IdentityError> {
            value
                .ok_or(IdentityError::Malformed(what))?
                .to_str()
                .map_err(|_| IdentityError::Malformed(what))
                .and_then(|v| {
                    if v.is_empty() {
                        Err(IdentityError::Malformed(what))
                    } else {
                        Ok(v)
                    }
                })
        }
        let role = text(role, "role missing or not visible ASCII")?;
        let subject = text(subject, "subject missing or not visible ASCII")?;
        let proof = text(proof, "proof missing or not visible ASCII")?;
        let key = key.ok_or(IdentityError::NoKey)?;
        key.verify(role, subject, proof, now)?;
        if role == SERVICE_ROLE {
            return Ok(Self::Service(subject.to_owned()));
        }
        Self::of_role(role.parse()?, subject)
    }

    /// The caller `subject` with `role`; a restaurant or rider subject must be a valid id of its kind
    /// (the gateway refuses such tokens before signing them, with this same check).
    pub fn of_role(role: Role, subject: &str) -> Result<Self, IdentityError> {
        Ok(match role {
            Role::Admin => Self::Admin(subject.to_owned()),
            Role::Restaurant => Self::Restaurant(
                RestaurantId::parse(subject, SUBJECT_HEADER)
                    .map_err(|_| IdentityError::Malformed("the subject is not a valid restaurant id"))?,
            ),
            Role::Rider => Self::Rider(
                RiderId::parse(subject, SUBJECT_HEADER)
                    .map_err(|_| IdentityError::Malformed("the subject is not a valid rider id"))?,
            ),
        })
    }

    /// The caller [`crate::IdentityLayer`] verified for `request`; [`Caller::Internal`] when the
    /// request never went through it (a handler called directly in a unit test).
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        request.extensions().get::<Self>().cloned().unwrap_or(Self::Internal)
    }

    /// Whether the caller may see and do everything (the mesh's own callers and admins).
    pub fn is_company(&self) -> bool {
        matches!(self, Self::Internal | Self::Service(_) | Self::Admin(_))
    }

    /// Whether the caller is the mesh itself, not a person (payment's writes accept only these).
    pub fn is_mesh(&self) -> bool {
        matches!(self, Self::Internal | Self::Service(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn key() -> IdentityKey {
        IdentityKey::new(SECRET).unwrap()
    }

    fn signed(role: &str, subject: &str, at: SystemTime) -> HeaderMap {
        let mut headers = HeaderMap::new();
        key().sign_into(&mut headers, role, subject, at).unwrap();
        headers
    }

    fn read(headers: &HeaderMap) -> Result<Caller, IdentityError> {
        Caller::from_headers(headers, Some(&key()), false, SystemTime::now())
    }

    #[test]
    fn no_identity_is_an_internal_backend_unless_identity_is_required() {
        let none = HeaderMap::new();
        assert_eq!(read(&none), Ok(Caller::Internal));
        assert_eq!(
            Caller::from_headers(&none, Some(&key()), true, SystemTime::now()),
            Err(IdentityError::Missing)
        );
    }

    #[test]
    fn a_signed_identity_is_believed_with_its_role_and_subject() {
        let now = SystemTime::now();
        assert_eq!(read(&signed("rider", "r-1", now)), Caller::of_role(Role::Rider, "r-1"));
        assert_eq!(
            read(&signed("restaurant", "s-1", now)),
            Caller::of_role(Role::Restaurant, "s-1")
        );
        // Signed, but not an id of its kind: malformed identity, UNAUTHENTICATED like any other.
        assert!(matches!(
            read(&signed("rider", "rider 7", now)),
            Err(IdentityError::Malformed(_))
        ));
        assert_eq!(read(&signed("admin", "ops", now)), Ok(Caller::Admin("ops".into())));
        assert_eq!(
            read(&signed(SERVICE_ROLE, "call", now)),
            Ok(Caller::Service("call".into()))
        );
        assert!(read(&signed("admin", "ops", now)).unwrap().is_company());
        assert!(!read(&signed("admin", "ops", now)).unwrap().is_mesh());
    }

    #[test]
    fn claimed_identity_without_a_valid_proof_is_refused_never_internal() {
        let now = SystemTime::now();
        let mut bare = HeaderMap::new();
        bare.insert(ROLE_HEADER, HeaderValue::from_static("admin"));
        bare.insert(SUBJECT_HEADER, HeaderValue::from_static("root"));
        assert!(matches!(read(&bare), Err(IdentityError::Malformed(_))));

        let mut swapped = signed("rider", "r-1", now);
        swapped.insert(SUBJECT_HEADER, HeaderValue::from_static("r-2"));
        assert_eq!(read(&swapped), Err(IdentityError::Forged));
        let mut promoted = signed("rider", "r-1", now);
        promoted.insert(ROLE_HEADER, HeaderValue::from_static("admin"));
        assert_eq!(read(&promoted), Err(IdentityError::Forged));

        let mut other_key = HeaderMap::new();
        IdentityKey::new(&[7u8; 32])
            .unwrap()
            .sign_into(&mut other_key, "admin", "root", now)
            .unwrap();
        assert_eq!(read(&other_key), Err(IdentityError::Forged));

        // A role with a non-visible byte used to read as "no identity": an internal caller.
        let mut invisible = signed("rider", "r-1", now);
        invisible.insert(ROLE_HEADER, HeaderValue::from_bytes("rider\u{a0}".as_bytes()).unwrap());
        assert!(matches!(read(&invisible), Err(IdentityError::Malformed(_))));
        let mut proof_only = HeaderMap::new();
        proof_only.insert(PROOF_HEADER, HeaderValue::from_static("v1.1.x"));
        assert!(matches!(read(&proof_only), Err(IdentityError::Malformed(_))));
        for garbage in [
            "",
            "v1",
            "v1.x.y",
            "v2.1.AAAA",
            "v1.99999999999999999999999.AAAA",
            "v1.1.!!",
        ] {
            let mut h = signed("rider", "r-1", now);
            h.insert(PROOF_HEADER, HeaderValue::from_str(garbage).unwrap());
            assert!(read(&h).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn an_old_proof_expires_and_a_service_without_a_key_believes_no_identity() {
        let long_ago = SystemTime::now() - PROOF_TTL - SKEW - Duration::from_secs(1);
        assert_eq!(read(&signed("admin", "ops", long_ago)), Err(IdentityError::Expired));
        let from_the_future = SystemTime::now() + Duration::from_secs(3600);
        assert_eq!(
            read(&signed("admin", "ops", from_the_future)),
            Err(IdentityError::Expired)
        );
        assert_eq!(
            Caller::from_headers(
                &signed("admin", "ops", SystemTime::now()),
                None,
                false,
                SystemTime::now()
            ),
            Err(IdentityError::NoKey)
        );
    }

    #[test]
    fn an_unknown_role_is_refused_even_when_signed_and_keys_are_long_enough() {
        assert!(matches!(
            read(&signed("guest", "x", SystemTime::now())),
            Err(IdentityError::UnknownRole(_))
        ));
        assert_eq!(IdentityKey::new(&[1u8; 31]).unwrap_err(), KeyTooShort);
    }
}
