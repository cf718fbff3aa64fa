use std::time::{Duration, SystemTime};

use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use ring::signature::KeyPair;

use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn in_an_hour() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}

#[test]
fn a_minted_token_names_its_subject_and_role() {
    let verifier = Verifier::hs256(SECRET).unwrap();
    let token = mint_hs256(SECRET, "r-7", Role::Rider, in_an_hour()).unwrap();
    assert_eq!(
        verifier.verify(Some(&bearer(&token))),
        Ok(Identity {
            subject: "r-7".into(),
            role: Role::Rider
        })
    );
}

#[test]
fn a_rider_or_restaurant_whose_subject_is_no_valid_id_is_refused_at_the_edge() {
    let verifier = Verifier::hs256(SECRET).unwrap();
    for (role, subject) in [
        (Role::Rider, "rider 7"),
        (Role::Restaurant, "store/1"),
        (Role::Rider, &"r".repeat(65)),
    ] {
        let token = mint_hs256(SECRET, subject, role, in_an_hour()).unwrap();
        assert!(
            matches!(verifier.verify(Some(&bearer(&token))), Err(AuthError::Claims(_))),
            "{role} {subject:?}"
        );
    }
    let admin = mint_hs256(SECRET, "ops team", Role::Admin, in_an_hour()).unwrap();
    assert!(
        verifier.verify(Some(&bearer(&admin))).is_ok(),
        "an admin's subject is only a name"
    );
}

#[test]
fn missing_malformed_expired_and_forged_tokens_are_refused_each_with_its_reason() {
    let verifier = Verifier::hs256(SECRET).unwrap();
    assert_eq!(verifier.verify(None), Err(AuthError::Missing));
    assert_eq!(verifier.verify(Some("Basic abc")), Err(AuthError::NotBearer));
    assert!(matches!(
        verifier.verify(Some("Bearer not.a.jwt")),
        Err(AuthError::Invalid(_))
    ));
    let expired = mint_hs256(SECRET, "r-7", Role::Rider, SystemTime::now() - Duration::from_secs(120)).unwrap();
    assert_eq!(verifier.verify(Some(&bearer(&expired))), Err(AuthError::Expired));
    let other = mint_hs256(
        b"another secret of at least 32 bytes!",
        "admin",
        Role::Admin,
        in_an_hour(),
    )
    .unwrap();
    assert!(matches!(
        verifier.verify(Some(&bearer(&other))),
        Err(AuthError::Invalid(_))
    ));
}

#[test]
fn a_token_with_an_unknown_role_or_no_subject_is_refused() {
    let verifier = Verifier::hs256(SECRET).unwrap();
    let exp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let key = EncodingKey::from_secret(SECRET);
    let superuser = jsonwebtoken::encode(
        &Header::default(),
        &serde_json::json!({"sub": "x", "role": "superuser", "exp": exp}),
        &key,
    )
    .unwrap();
    assert!(matches!(
        verifier.verify(Some(&bearer(&superuser))),
        Err(AuthError::Claims(_))
    ));
    let anonymous = jsonwebtoken::encode(
        &Header::default(),
        &serde_json::json!({"role": "admin", "exp": exp}),
        &key,
    )
    .unwrap();
    assert!(matches!(
        verifier.verify(Some(&bearer(&anonymous))),
        Err(AuthError::Claims(_))
    ));
}

#[test]
fn a_short_secret_is_refused_at_start() {
    assert!(matches!(Verifier::hs256(b"short"), Err(KeyError::ShortSecret)));
}

/// An Ed25519 key pair and its public JWK.
fn ed25519_jwk(kid: &str) -> (EncodingKey, serde_json::Value) {
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "kid": kid, "use": "sig"});
    (EncodingKey::from_ed_der(pkcs8.as_ref()), jwk)
}

/// An Ed25519 key pair and its public JWKS document.
fn ed25519(kid: &str) -> (EncodingKey, String) {
    let (key, jwk) = ed25519_jwk(kid);
    (key, serde_json::json!({ "keys": [jwk] }).to_string())
}

/// Seconds since the epoch, `offset` seconds from now.
fn unix_in(offset: i64) -> u64 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    now.checked_add_signed(offset).unwrap()
}

#[test]
fn a_token_signed_by_a_jwks_key_is_verified_and_one_signed_by_another_key_is_not() {
    let (key, jwks) = ed25519("k1");
    let verifier = Verifier::jwks(&jwks)
        .unwrap()
        .with_issuer(Some("https://sso.example".into()));
    let exp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let mut header = Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("k1".into());
    let claims = serde_json::json!({"sub": "ops-1", "role": "admin", "exp": exp, "iss": "https://sso.example"});
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    assert_eq!(
        verifier.verify(Some(&bearer(&token))),
        Ok(Identity {
            subject: "ops-1".into(),
            role: Role::Admin
        })
    );
    let (stranger, _) = ed25519("k1");
    let forged = jsonwebtoken::encode(&header, &claims, &stranger).unwrap();
    assert!(matches!(
        verifier.verify(Some(&bearer(&forged))),
        Err(AuthError::Invalid(_))
    ));
    let wrong_issuer = serde_json::json!({"sub": "ops-1", "role": "admin", "exp": exp, "iss": "https://evil.example"});
    let token = jsonwebtoken::encode(&header, &wrong_issuer, &key).unwrap();
    assert!(matches!(
        verifier.verify(Some(&bearer(&token))),
        Err(AuthError::Invalid(_))
    ));
    // An HS256 token cannot pass as a JWKS one ("alg" confusion).
    let hs = mint_hs256(SECRET, "ops-1", Role::Admin, in_an_hour()).unwrap();
    assert!(matches!(
        verifier.verify(Some(&bearer(&hs))),
        Err(AuthError::Invalid(_))
    ));
}

#[test]
fn a_jwks_without_usable_keys_is_refused_at_start() {
    assert!(matches!(Verifier::jwks("{\"keys\": []}"), Err(KeyError::NoKeys)));
    assert!(matches!(Verifier::jwks("not json"), Err(KeyError::Jwks(_))));
}

#[test]
fn a_token_not_valid_yet_is_refused_like_an_expired_one() {
    let verifier = Verifier::hs256(SECRET).unwrap();
    let key = EncodingKey::from_secret(SECRET);
    let with_nbf = |nbf: serde_json::Value| {
        let claims = serde_json::json!({"sub": "r-7", "role": "rider", "exp": unix_in(3600), "nbf": nbf});
        bearer(&jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap())
    };
    let later = with_nbf(unix_in(LEEWAY_SECS as i64 + 60).into());
    assert_eq!(verifier.verify(Some(&later)), Err(AuthError::NotYetValid));
    // A clock a little ahead of the gateway's is tolerated, as for `exp`.
    let skewed = with_nbf(unix_in(LEEWAY_SECS as i64 / 2).into());
    assert!(verifier.verify(Some(&skewed)).is_ok());
    let started = with_nbf(unix_in(-60).into());
    assert!(verifier.verify(Some(&started)).is_ok());
    // An `nbf` that is not a time is not the same as none.
    let garbled = with_nbf("tomorrow".into());
    assert!(matches!(verifier.verify(Some(&garbled)), Err(AuthError::Claims(_))));
}

#[test]
fn a_token_without_kid_is_tried_against_every_key_of_its_algorithm() {
    let (old, old_jwk) = ed25519_jwk("2024");
    let (new, new_jwk) = ed25519_jwk("2025");
    let verifier = Verifier::jwks(&serde_json::json!({ "keys": [old_jwk, new_jwk] }).to_string()).unwrap();
    let no_kid = Header::new(jsonwebtoken::Algorithm::EdDSA);
    let claims = serde_json::json!({"sub": "ops-1", "role": "admin", "exp": unix_in(3600)});
    for key in [&old, &new] {
        let token = jsonwebtoken::encode(&no_kid, &claims, key).unwrap();
        assert_eq!(
            verifier.verify(Some(&bearer(&token))).map(|i| i.subject),
            Ok("ops-1".to_owned())
        );
    }
    // The key that verifies the signature decides: an expired token says so, not "unknown key".
    let expired = serde_json::json!({"sub": "ops-1", "role": "admin", "exp": unix_in(-3600)});
    let token = jsonwebtoken::encode(&no_kid, &expired, &new).unwrap();
    assert_eq!(verifier.verify(Some(&bearer(&token))), Err(AuthError::Expired));
    // Signed by no key of the set.
    let (stranger, _) = ed25519_jwk("2025");
    let token = jsonwebtoken::encode(&no_kid, &claims, &stranger).unwrap();
    assert!(matches!(
        verifier.verify(Some(&bearer(&token))),
        Err(AuthError::Invalid(_))
    ));
    // A `kid` still picks its key only.
    let mut kid_old = Header::new(jsonwebtoken::Algorithm::EdDSA);
    kid_old.kid = Some("2024".into());
    let token = jsonwebtoken::encode(&kid_old, &claims, &new).unwrap();
    assert!(matches!(
        verifier.verify(Some(&bearer(&token))),
        Err(AuthError::Invalid(_))
    ));
}
