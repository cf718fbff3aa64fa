//! The gateway's settings, from the environment. A bad value stops start-up with a message naming it.

use std::{net::SocketAddr, time::Duration};

use baemin_mesh_server::{
    config::{ConfigError, Env, Settings},
    identity::IdentityKey,
    tls::{Tls, TlsFiles},
};
use http::HeaderValue;

use baemin_proto::{
    call::v1::call_service_server::SERVICE_NAME as CALL, payment::v1::payment_service_server::SERVICE_NAME as PAYMENT,
    report::v1::report_service_server::SERVICE_NAME as REPORT, rider::v1::rider_service_server::SERVICE_NAME as RIDER,
};

use crate::{auth::Verifier, peer::PeerLimits, rate::Rate};

/// Everything the gateway needs to start.
#[derive(Debug)]
pub struct Config {
    /// `GRPC_ADDR` (default `0.0.0.0:8080`): gRPC, grpc-web and the dashboard on one port.
    pub listen_addr: SocketAddr,
    /// `ADMIN_ADDR` (default `0.0.0.0:9080`): `/metrics`, `/livez`, `/readyz`.
    pub admin_addr: SocketAddr,
    /// `CALL_URL`, `RIDER_URL`, `PAYMENT_URL`, `REPORT_URL` (defaults `http://127.0.0.1:8081`..`8084`):
    /// (gRPC service name, short name, endpoint).
    pub upstreams: Vec<(&'static str, &'static str, tonic::transport::Endpoint)>,
    /// `GATEWAY_JWT_SECRET` or the file `GATEWAY_JWT_SECRET_FILE` names (HS256, at least 32 bytes), with
    /// optional `GATEWAY_JWT_ISSUER` and `GATEWAY_JWT_AUDIENCE`; or `GATEWAY_JWKS_FILE` (a JWKS document),
    /// with both of them required.
    pub verifier: Verifier,
    /// `GATEWAY_RATE_LIMIT` requests per second per subject (default 50), `GATEWAY_RATE_BURST` (default
    /// twice the rate).
    pub rate: Rate,
    /// `MAX_MESSAGE_BYTES` (default 64 KiB).
    pub max_message_bytes: usize,
    /// `REQUEST_READ_TIMEOUT` (default 10 s): longest wait for a request's first message; slower is
    /// DEADLINE_EXCEEDED, and an HTTP/1.1 connection whose request stalls is closed.
    pub request_read_timeout: Duration,
    /// `GATEWAY_MAX_CONNECTIONS_PER_PEER` (default 256), `GATEWAY_MAX_ANONYMOUS_STREAMS_PER_PEER`
    /// (default 16), `GATEWAY_AUTH_FAILURES_PER_PEER` (default 60 a minute): limits per client address,
    /// on what costs the gateway before valid credentials.
    pub peer_limits: PeerLimits,
    /// `GATEWAY_MAX_CONCURRENT_STREAMS` per HTTP/2 connection (default 100).
    pub max_concurrent_streams: u32,
    /// `GATEWAY_MAX_WATCHES_PER_SUBJECT` (default 8): watches a subject may have open at once through
    /// this gateway replica; past it, RESOURCE_EXHAUSTED.
    pub max_watches_per_subject: usize,
    /// `GATEWAY_CORS_ORIGINS`: browser origins allowed to call from another origin, comma-separated
    /// (default none: the dashboard is served from the gateway's own origin and needs no CORS).
    pub cors_origins: Vec<HeaderValue>,
    /// `SHUTDOWN_GRACE` (default 20 s): how long open calls and streams may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// `SHUTDOWN_DELAY` (default 0): after SIGTERM, how long new calls are still accepted while health
    /// says NOT_SERVING, so load balancers stop sending before the port closes (Kubernetes: a few seconds).
    pub shutdown_delay: Duration,
    /// `GATEWAY_TLS_CERT` and `GATEWAY_TLS_KEY` (PEM files, both or neither): TLS on the listener, for
    /// gRPC over HTTP/2 and grpc-web over HTTP/1.1 or HTTP/2 alike. Without them the gateway speaks
    /// plaintext (behind an ingress or a mesh sidecar that terminates TLS).
    pub tls: Option<Tls>,
    /// `BAEMIN_IDENTITY_KEY` (or `BAEMIN_IDENTITY_KEY_FILE`), required: the key the verified identity is
    /// signed with before it is forwarded; the services verify it with the same key.
    pub identity_key: IdentityKey,
}

/// The upstream services: gRPC service name, setting prefix, local default port, name used in messages.
const UPSTREAMS: [(&str, &str, u16, &str); 4] = [
    (CALL, "CALL", 8081, "call"),
    (RIDER, "RIDER", 8082, "rider"),
    (PAYMENT, "PAYMENT", 8083, "payment"),
    (REPORT, "REPORT", 8084, "report"),
];

impl Config {
    /// Reads the configuration from `env`.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let s = Settings::new(env);
        let listen_addr = s.parse("GRPC_ADDR", SocketAddr::from(([0, 0, 0, 0], 8080)))?;
        let upstreams = UPSTREAMS
            .iter()
            .map(|&(service, prefix, port, name)| -> Result<_, ConfigError> {
                let key = format!("{prefix}_URL");
                let url = s.url(&key, &format!("http://127.0.0.1:{port}"), &["http", "https"])?;
                let endpoint = baemin_mesh_client::endpoint(&url, None).map_err(|e| ConfigError::new(&key, &url, e))?;
                Ok((
                    service,
                    name,
                    endpoint.connect_timeout(Duration::from_secs(2)).tcp_nodelay(true),
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let per_second = s.parse("GATEWAY_RATE_LIMIT", 50.0_f64)?;
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(ConfigError::new(
                "GATEWAY_RATE_LIMIT",
                &per_second.to_string(),
                "must be above 0",
            ));
        }
        let burst = s.parse("GATEWAY_RATE_BURST", (per_second * 2.0).max(1.0))?;
        if !(burst.is_finite() && burst >= 1.0) {
            return Err(ConfigError::new(
                "GATEWAY_RATE_BURST",
                &burst.to_string(),
                "must be at least 1",
            ));
        }
        let max_concurrent_streams = s.parse("GATEWAY_MAX_CONCURRENT_STREAMS", 100_u32)?;
        if max_concurrent_streams == 0 {
            return Err(ConfigError::new(
                "GATEWAY_MAX_CONCURRENT_STREAMS",
                "0",
                "must be at least 1",
            ));
        }
        Ok(Self {
            listen_addr,
            admin_addr: s.admin_addr(listen_addr)?,
            upstreams,
            verifier: verifier(&s)?,
            rate: Rate { per_second, burst },
            max_message_bytes: baemin_mesh_runtime::max_message_bytes(&s)?,
            request_read_timeout: s.request_read_timeout()?,
            peer_limits: peer_limits(&s)?,
            max_concurrent_streams,
            max_watches_per_subject: at_least_one(&s, "GATEWAY_MAX_WATCHES_PER_SUBJECT", 8)?,
            cors_origins: cors_origins(&s)?,
            shutdown_grace: s.duration("SHUTDOWN_GRACE", Duration::from_secs(20))?,
            shutdown_delay: s.duration("SHUTDOWN_DELAY", Duration::ZERO)?,
            tls: tls(&s)?,
            identity_key: IdentityKey::from_settings(&s)?.ok_or_else(|| {
                ConfigError::new(
                    "BAEMIN_IDENTITY_KEY",
                    "",
                    "is required: the gateway signs the identity it forwards with it (or set BAEMIN_IDENTITY_KEY_FILE)",
                )
            })?,
        })
    }
}

fn verifier(s: &Settings<'_>) -> Result<Verifier, ConfigError> {
    let issuer = s.raw("GATEWAY_JWT_ISSUER");
    let audience = s.raw("GATEWAY_JWT_AUDIENCE");
    let verifier = match (s.secret("GATEWAY_JWT_SECRET")?, s.raw("GATEWAY_JWKS_FILE")) {
        (Some(secret), None) => {
            Verifier::hs256(secret.as_bytes()).map_err(|e| ConfigError::new("GATEWAY_JWT_SECRET", "(hidden)", e))?
        }
        (None, Some(path)) => {
            // A JWKS is a shared identity provider's: it signs tokens for other applications too, and
            // only `iss` and `aud` tell this gateway's apart.
            if let Some(key) = [("GATEWAY_JWT_ISSUER", &issuer), ("GATEWAY_JWT_AUDIENCE", &audience)]
                .into_iter()
                .find_map(|(key, value)| value.is_none().then_some(key))
            {
                return Err(ConfigError::new(
                    key,
                    "",
                    "with GATEWAY_JWKS_FILE (a shared identity provider) set both GATEWAY_JWT_ISSUER and \
                     GATEWAY_JWT_AUDIENCE, so tokens it issues for other applications are refused",
                ));
            }
            let json = std::fs::read_to_string(&path).map_err(|e| ConfigError::new("GATEWAY_JWKS_FILE", &path, e))?;
            Verifier::jwks(&json).map_err(|e| ConfigError::new("GATEWAY_JWKS_FILE", &path, e))?
        }
        (Some(_), Some(path)) => {
            return Err(ConfigError::new(
                "GATEWAY_JWKS_FILE",
                &path,
                "set GATEWAY_JWT_SECRET (or GATEWAY_JWT_SECRET_FILE) or GATEWAY_JWKS_FILE, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::new(
                "GATEWAY_JWT_SECRET",
                "",
                "the gateway authenticates every call: set GATEWAY_JWT_SECRET or GATEWAY_JWT_SECRET_FILE \
                 (HS256), or GATEWAY_JWKS_FILE",
            ));
        }
    };
    Ok(verifier.with_issuer(issuer).with_audience(audience))
}

fn tls(s: &Settings<'_>) -> Result<Option<Tls>, ConfigError> {
    let files = match (s.raw("GATEWAY_TLS_CERT"), s.raw("GATEWAY_TLS_KEY")) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => TlsFiles {
            cert: cert.into(),
            key: key.into(),
        },
        (Some(cert), None) => {
            return Err(ConfigError::new(
                "GATEWAY_TLS_KEY",
                "",
                format!("GATEWAY_TLS_CERT is {cert}: set the key too"),
            ));
        }
        (None, Some(key)) => {
            return Err(ConfigError::new(
                "GATEWAY_TLS_CERT",
                "",
                format!("GATEWAY_TLS_KEY is {key}: set the certificate too"),
            ));
        }
    };
    Tls::load(&files).map(Some).map_err(|e| {
        let (key, path) = match e.path() {
            Some(path) if path == files.key && path != files.cert => ("GATEWAY_TLS_KEY", path),
            _ => ("GATEWAY_TLS_CERT", files.cert.as_path()),
        };
        ConfigError::new(key, &path.display().to_string(), e)
    })
}

fn peer_limits(s: &Settings<'_>) -> Result<PeerLimits, ConfigError> {
    Ok(PeerLimits {
        connections: at_least_one(s, "GATEWAY_MAX_CONNECTIONS_PER_PEER", 256)?,
        anonymous_streams: at_least_one(s, "GATEWAY_MAX_ANONYMOUS_STREAMS_PER_PEER", 16)?,
        auth_failures_per_minute: at_least_one(s, "GATEWAY_AUTH_FAILURES_PER_PEER", 60)?,
        trusted_proxy_hops: s.parse("GATEWAY_TRUSTED_PROXY_HOPS", 0)?,
    })
}

/// `key`, a count of at least 1, or `default`.
fn at_least_one<T>(s: &Settings<'_>, key: &str, default: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + Default + PartialEq,
    T::Err: std::fmt::Display,
{
    let n = s.parse(key, default)?;
    if n == T::default() {
        return Err(ConfigError::new(key, "0", "must be at least 1"));
    }
    Ok(n)
}

fn cors_origins(s: &Settings<'_>) -> Result<Vec<HeaderValue>, ConfigError> {
    let raw = s.string("GATEWAY_CORS_ORIGINS", "");
    raw.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            let valid = (origin.starts_with("http://") || origin.starts_with("https://")) && !origin.ends_with('/');
            if !valid || origin == "*" {
                return Err(ConfigError::new(
                    "GATEWAY_CORS_ORIGINS",
                    origin,
                    "expected origins like https://ops.example.com (scheme and host, no path, no *)",
                ));
            }
            HeaderValue::from_str(origin).map_err(|e| ConfigError::new("GATEWAY_CORS_ORIGINS", origin, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SECRET: (&str, &str) = ("GATEWAY_JWT_SECRET", "0123456789abcdef0123456789abcdef");
    const IDENTITY: (&str, &str) = ("BAEMIN_IDENTITY_KEY", "fedcba9876543210fedcba9876543210");

    #[test]
    fn defaults_listen_on_8080_and_route_to_the_local_ports() {
        let c = Config::from_env(&[SECRET, IDENTITY]).unwrap();
        assert_eq!(c.listen_addr.port(), 8080);
        let uris: Vec<String> = c.upstreams.iter().map(|(_, _, e)| e.uri().to_string()).collect();
        assert_eq!(
            uris,
            [
                "http://127.0.0.1:8081/",
                "http://127.0.0.1:8082/",
                "http://127.0.0.1:8083/",
                "http://127.0.0.1:8084/"
            ]
        );
        assert_eq!(c.max_message_bytes, 64 * 1024);
        assert_eq!(
            c.rate,
            Rate {
                per_second: 50.0,
                burst: 100.0
            }
        );
        assert!(c.cors_origins.is_empty());
    }

    #[test]
    fn a_bad_setting_stops_start_up_naming_it() {
        let cases: [[(&str, &str); 2]; 8] = [
            [SECRET, ("GATEWAY_RATE_LIMIT", "0")],
            [SECRET, ("GATEWAY_RATE_BURST", "0.5")],
            [SECRET, ("GATEWAY_MAX_CONCURRENT_STREAMS", "0")],
            [SECRET, ("GATEWAY_CORS_ORIGINS", "*")],
            [SECRET, ("CALL_URL", "call:8081")],
            [SECRET, ("MAX_MESSAGE_BYTES", "1")],
            [("GATEWAY_JWT_SECRET", "short"), ("GRPC_ADDR", "0.0.0.0:8080")],
            [SECRET, ("GATEWAY_JWKS_FILE", "/nonexistent/jwks.json")],
        ];
        let keys = [
            "GATEWAY_RATE_LIMIT",
            "GATEWAY_RATE_BURST",
            "GATEWAY_MAX_CONCURRENT_STREAMS",
            "GATEWAY_CORS_ORIGINS",
            "CALL_URL",
            "MAX_MESSAGE_BYTES",
            "GATEWAY_JWT_SECRET",
            "GATEWAY_JWKS_FILE",
        ];
        for (env, key) in cases.iter().zip(keys) {
            let err = Config::from_env(env).unwrap_err();
            assert_eq!(err.key, key, "{err}");
        }
    }

    #[test]
    fn limits_per_peer_default_to_256_connections_16_anonymous_streams_60_failures_and_are_at_least_1() {
        let c = Config::from_env(&[SECRET, IDENTITY]).unwrap();
        assert_eq!(
            c.peer_limits,
            PeerLimits {
                connections: 256,
                anonymous_streams: 16,
                auth_failures_per_minute: 60,
                trusted_proxy_hops: 0,
            }
        );
        let behind_an_ingress = Config::from_env(&[SECRET, IDENTITY, ("GATEWAY_TRUSTED_PROXY_HOPS", "1")]).unwrap();
        assert_eq!(behind_an_ingress.peer_limits.trusted_proxy_hops, 1);
        let err = Config::from_env(&[SECRET, IDENTITY, ("GATEWAY_TRUSTED_PROXY_HOPS", "-1")]).unwrap_err();
        assert_eq!(err.key, "GATEWAY_TRUSTED_PROXY_HOPS");
        for key in [
            "GATEWAY_MAX_CONNECTIONS_PER_PEER",
            "GATEWAY_MAX_ANONYMOUS_STREAMS_PER_PEER",
            "GATEWAY_AUTH_FAILURES_PER_PEER",
        ] {
            let err = Config::from_env(&[SECRET, IDENTITY, (key, "0")]).unwrap_err();
            assert_eq!(err.key, key, "{err}");
        }
    }

    #[test]
    fn a_subject_may_hold_8_watches_by_default_and_at_least_1() {
        assert_eq!(
            Config::from_env(&[SECRET, IDENTITY]).unwrap().max_watches_per_subject,
            8
        );
        let env = [SECRET, IDENTITY, ("GATEWAY_MAX_WATCHES_PER_SUBJECT", "0")];
        assert_eq!(
            Config::from_env(&env).unwrap_err().key,
            "GATEWAY_MAX_WATCHES_PER_SUBJECT"
        );
    }

    #[test]
    fn a_request_read_timeout_under_a_second_stops_start_up() {
        let err = Config::from_env(&[SECRET, ("REQUEST_READ_TIMEOUT", "10ms")]).unwrap_err();
        assert_eq!(err.key, "REQUEST_READ_TIMEOUT", "{err}");
    }

    #[test]
    fn without_an_identity_key_the_gateway_does_not_start() {
        let err = Config::from_env(&[SECRET]).unwrap_err();
        assert_eq!(err.key, "BAEMIN_IDENTITY_KEY", "{err}");
        let err = Config::from_env(&[SECRET, ("BAEMIN_IDENTITY_KEY", "short")]).unwrap_err();
        assert_eq!(err.key, "BAEMIN_IDENTITY_KEY", "{err}");
        assert!(!err.to_string().contains("short"), "the key is never printed: {err}");
    }

    #[test]
    fn without_keys_the_gateway_does_not_start() {
        let env: [(&str, &str); 0] = [];
        let err = Config::from_env(&env).unwrap_err();
        assert!(err.reason.contains("GATEWAY_JWKS_FILE"), "{err}");
    }

    /// A file holding `contents` in the temporary directory, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &str) -> Self {
            let path = std::env::temp_dir().join(format!("baemin-gateway-{}-{name}", std::process::id()));
            std::fs::write(&path, contents).unwrap();
            Self(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn with_a_jwks_the_issuer_and_the_audience_are_required() {
        let jwks = TempFile::new(
            "jwks.json",
            r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
        );
        let file = ("GATEWAY_JWKS_FILE", jwks.path());
        let issuer = ("GATEWAY_JWT_ISSUER", "https://sso.example");
        let audience = ("GATEWAY_JWT_AUDIENCE", "baemin");
        let identity = ("BAEMIN_IDENTITY_KEY", "fedcba9876543210fedcba9876543210");
        assert!(Config::from_env(&[file, issuer, audience, identity]).is_ok());
        for (env, missing) in [
            (vec![file, identity], "GATEWAY_JWT_ISSUER"),
            (vec![file, audience, identity], "GATEWAY_JWT_ISSUER"),
            (vec![file, issuer, identity], "GATEWAY_JWT_AUDIENCE"),
        ] {
            let env: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
            let err = Config::from_env(&env).unwrap_err();
            assert_eq!(err.key, missing, "{err}");
            assert!(
                err.reason.contains("GATEWAY_JWT_ISSUER") && err.reason.contains("GATEWAY_JWT_AUDIENCE"),
                "{err}"
            );
        }
        // An HS256 secret is this gateway's own: issuer and audience stay optional.
        assert!(Config::from_env(&[SECRET, identity]).is_ok());
    }

    #[test]
    fn the_jwt_secret_may_come_from_a_file() {
        let file = TempFile::new("jwt-secret", &format!("{}\n", SECRET.1));
        let identity = ("BAEMIN_IDENTITY_KEY", "fedcba9876543210fedcba9876543210");
        let c = Config::from_env(&[("GATEWAY_JWT_SECRET_FILE", file.path()), identity]).unwrap();
        let token = crate::auth::mint_hs256(
            SECRET.1.as_bytes(),
            "r-7",
            crate::auth::Role::Rider,
            std::time::SystemTime::now() + Duration::from_secs(60),
        )
        .unwrap();
        assert!(c.verifier.verify(Some(&format!("Bearer {token}"))).is_ok());

        let err = Config::from_env(&[SECRET, ("GATEWAY_JWT_SECRET_FILE", file.path()), identity]).unwrap_err();
        assert_eq!(err.key, "GATEWAY_JWT_SECRET_FILE", "{err}");
        let short = TempFile::new("jwt-secret-short", "hunter2");
        let err = Config::from_env(&[("GATEWAY_JWT_SECRET_FILE", short.path()), identity]).unwrap_err();
        assert_eq!(err.key, "GATEWAY_JWT_SECRET", "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    fn test_tls_file(name: &str) -> String {
        format!("{}/../../mesh/testkit/tls/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn tls_takes_a_certificate_and_its_key_or_neither() {
        let cert: &str = &test_tls_file("localhost.pem");
        let key: &str = &test_tls_file("localhost.key");
        let c = Config::from_env(&[SECRET, IDENTITY, ("GATEWAY_TLS_CERT", cert), ("GATEWAY_TLS_KEY", key)]).unwrap();
        assert!(c.tls.is_some());
        assert!(Config::from_env(&[SECRET, IDENTITY]).unwrap().tls.is_none());

        let err = Config::from_env(&[SECRET, IDENTITY, ("GATEWAY_TLS_CERT", cert)]).unwrap_err();
        assert_eq!(err.key, "GATEWAY_TLS_KEY", "a certificate without its key: {err}");
        let err = Config::from_env(&[SECRET, IDENTITY, ("GATEWAY_TLS_KEY", key)]).unwrap_err();
        assert_eq!(err.key, "GATEWAY_TLS_CERT", "a key without its certificate: {err}");
    }

    #[test]
    fn a_tls_file_that_cannot_serve_stops_start_up_naming_its_setting() {
        let cert: &str = &test_tls_file("localhost.pem");
        let key: &str = &test_tls_file("localhost.key");
        let other: &str = &test_tls_file("other.key");
        let err =
            Config::from_env(&[SECRET, IDENTITY, ("GATEWAY_TLS_CERT", cert), ("GATEWAY_TLS_KEY", other)]).unwrap_err();
        assert_eq!(
            err.key, "GATEWAY_TLS_CERT",
            "a key that is not the certificate's: {err}"
        );
        let err = Config::from_env(&[
            SECRET,
            ("GATEWAY_TLS_CERT", cert),
            ("GATEWAY_TLS_KEY", "/nonexistent.key"),
        ])
        .unwrap_err();
        assert_eq!(err.key, "GATEWAY_TLS_KEY", "{err}");
        assert!(err.value.contains("nonexistent.key"), "{err}");
        let err =
            Config::from_env(&[SECRET, IDENTITY, ("GATEWAY_TLS_CERT", key), ("GATEWAY_TLS_KEY", key)]).unwrap_err();
        assert_eq!(
            err.key, "GATEWAY_TLS_CERT",
            "a key where the certificate should be: {err}"
        );
    }

    #[test]
    fn cors_origins_are_a_comma_separated_list() {
        let c = Config::from_env(&[
            SECRET,
            IDENTITY,
            ("GATEWAY_CORS_ORIGINS", "https://ops.example.com, http://localhost:5173"),
        ])
        .unwrap();
        assert_eq!(c.cors_origins, ["https://ops.example.com", "http://localhost:5173"]);
    }
}
