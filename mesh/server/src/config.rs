//! Configuration from the environment (12-factor), typed and parsed once, testable without `set_var`.

use std::{collections::HashMap, fmt::Display, str::FromStr, time::Duration};

/// Where settings come from: the process environment, or a map in tests.
pub trait Env {
    /// The raw value of `key`, if set.
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn var(&self, key: &str) -> Option<String> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned())
    }
}

/// A setting that is present but unusable. The process stops at start with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad setting {key}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub key: String,
    /// What it held.
    pub value: String,
    /// Why it cannot be used.
    pub reason: String,
}

impl ConfigError {
    /// A bad value of `key`.
    pub fn new(key: &str, value: &str, reason: impl Display) -> Self {
        Self {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Reads typed settings from an [`Env`]; blank values count as unset.
pub struct Settings<'a> {
    env: &'a dyn Env,
}

impl<'a> Settings<'a> {
    /// Settings read from `env`.
    pub fn new(env: &'a dyn Env) -> Self {
        Self { env }
    }

    /// The value of `key`, trimmed, or `None` when unset or blank.
    pub fn raw(&self, key: &str) -> Option<String> {
        self.env.var(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// The value of `key` or `default`.
    pub fn string(&self, key: &str, default: &str) -> String {
        self.raw(key).unwrap_or_else(|| default.to_owned())
    }

    /// `key` parsed as `T`, or `default` when unset.
    pub fn parse<T>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| ConfigError::new(key, &v, e)),
        }
    }

    /// `ADMIN_ADDR`, the admin HTTP port (metrics, probes): by default the gRPC address with the port
    /// 1000 higher (8081 -> 9081), or port 0 when the gRPC port is 0 (tests).
    pub fn admin_addr(&self, grpc: std::net::SocketAddr) -> Result<std::net::SocketAddr, ConfigError> {
        let default = default_admin_addr(grpc).ok_or_else(|| {
            ConfigError::new(
                "ADMIN_ADDR",
                "",
                format!("set it: GRPC_ADDR's port {} + 1000 is not a port", grpc.port()),
            )
        })?;
        let addr = self.parse("ADMIN_ADDR", default)?;
        if addr.port() != 0
            && addr.port() == grpc.port()
            && (addr.ip() == grpc.ip() || addr.ip().is_unspecified() || grpc.ip().is_unspecified())
        {
            return Err(ConfigError::new(
                "ADMIN_ADDR",
                &addr.to_string(),
                "must differ from GRPC_ADDR",
            ));
        }
        Ok(addr)
    }

    /// `key` as a duration in milliseconds (`250`, `250ms`) or seconds (`2s`), or `default`.
    pub fn duration(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        let Some(v) = self.raw(key) else {
            return Ok(default);
        };
        let (digits, unit) = match v.strip_suffix("ms") {
            Some(d) => (d, 1),
            None => match v.strip_suffix('s') {
                Some(d) => (d, 1000),
                None => (v.as_str(), 1),
            },
        };
        let n: u64 = digits
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(key, &v, "expected milliseconds like 250ms or seconds like 2s"))?;
        if n == 0 {
            return Err(ConfigError::new(key, &v, "must be greater than zero"));
        }
        Ok(Duration::from_millis(n * unit))
    }

    /// `REQUEST_READ_TIMEOUT`: how long a client may take to send a request's first message (default
    /// 10 s, at least 1 s). Slower calls are DEADLINE_EXCEEDED, so a client that sends headers and never
    /// a body holds no stream, nor an HTTP/1.1 connection, beyond it.
    pub fn request_read_timeout(&self) -> Result<Duration, ConfigError> {
        let limit = self.duration("REQUEST_READ_TIMEOUT", crate::DEFAULT_REQUEST_READ_TIMEOUT)?;
        if limit < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "REQUEST_READ_TIMEOUT",
                &format!("{limit:?}"),
                "must be at least 1s",
            ));
        }
        Ok(limit)
    }

    /// `key` as a URL with one of the given schemes, or `default`.
    pub fn url(&self, key: &str, default: &str, schemes: &[&str]) -> Result<String, ConfigError> {
        let v = self.string(key, default);
        if has_scheme(&v, schemes) {
            Ok(v)
        } else {
            Err(ConfigError::new(key, &v, expected_scheme(schemes)))
        }
    }

    /// A secret setting: the value of `key`, or the contents of the file named by `<key>_FILE` (surrounding
    /// whitespace, such as the newline editors add, trimmed), `None` when neither is set. The file form is
    /// how Kubernetes Secrets and Docker secrets are mounted: the value never shows in the environment.
    /// Errors never hold the secret: both set, or a file that cannot be read or is empty, name
    /// `<key>_FILE` and its path.
    pub fn secret(&self, key: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.secret_from(key)?.map(|secret| secret.value))
    }

    /// A secret URL (it may hold a password) with one of the given schemes, read as [`Settings::secret`]
    /// does, or `default`. A bad one is named with its password and its query (where a password may also
    /// be) hidden.
    pub fn secret_url(&self, key: &str, default: &str, schemes: &[&str]) -> Result<String, ConfigError> {
        let Some(Secret { value: v, file }) = self.secret_from(key)? else {
            return self.url(key, default, schemes);
        };
        if has_scheme(&v, schemes) {
            return Ok(v);
        }
        Err(match file {
            None => ConfigError::new(key, &redact_url(&v), expected_scheme(schemes)),
            Some((file_key, path)) => ConfigError::new(
                &file_key,
                &path,
                format!("{} (it holds {})", expected_scheme(schemes), redact_url(&v)),
            ),
        })
    }

    /// The secret `key`, and where it came from.
    fn secret_from(&self, key: &str) -> Result<Option<Secret>, ConfigError> {
        let file_key = format!("{key}_FILE");
        let path = match (self.raw(key), self.raw(&file_key)) {
            (value, None) => return Ok(value.map(|value| Secret { value, file: None })),
            (Some(_), Some(path)) => {
                return Err(ConfigError::new(
                    &file_key,
                    &path,
                    format!("set {key} or {file_key}, not both"),
                ));
            }
            (None, Some(path)) => path,
        };
        let contents = std::fs::read_to_string(&path).map_err(|e| ConfigError::new(&file_key, &path, e))?;
        let value = contents.trim();
        if value.is_empty() {
            return Err(ConfigError::new(&file_key, &path, "the file is empty"));
        }
        Ok(Some(Secret {
            value: value.to_owned(),
            file: Some((file_key, path)),
        }))
    }
}

/// A secret setting's value and, when it was read from a file, `(<key>_FILE, path)`.
struct Secret {
    value: String,
    file: Option<(String, String)>,
}

/// Whether `url` is `<scheme>://<something>` for one of `schemes`.
fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    schemes.iter().any(|s| {
        url.strip_prefix(s)
            .and_then(|rest| rest.strip_prefix("://"))
            .is_some_and(|rest| !rest.is_empty())
    })
}

fn expected_scheme(schemes: &[&str]) -> String {
    format!("expected a URL starting with {}://", schemes.join("://, "))
}

/// `url` fit for a message: the password of its user info and the values of its query replaced by
/// `***`; anything that is not `scheme://…` entirely hidden (it may be a bare password).
pub fn redact_url(url: &str) -> String {
    const HIDDEN: &str = "***";
    let Some((scheme, rest)) = url.split_once("://") else {
        return HIDDEN.to_owned();
    };
    // The last `@` ends the user info, so a password with a stray `@`, `/` or `?` stays inside it; a
    // "user" holding `/`, `?` or `#` is a path or query before an `@`, hidden whole.
    let (user, rest) = match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            _ if userinfo.contains(['/', '?', '#']) => (format!("{HIDDEN}@"), host),
            Some((user, _)) => (format!("{user}:{HIDDEN}@"), host),
            None => (format!("{userinfo}@"), host),
        },
        None => (String::new(), rest),
    };
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) => format!("{name}={HIDDEN}"),
                    None => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => rest.to_owned(),
    };
    format!("{scheme}://{user}{rest}")
}

/// The admin address that goes with gRPC address `grpc`: the same host, port + 1000 (8081 -> 9081), or
/// port 0 when `grpc`'s is 0; `None` when port + 1000 is not a port.
pub fn default_admin_addr(grpc: std::net::SocketAddr) -> Option<std::net::SocketAddr> {
    let port = match grpc.port() {
        0 => 0,
        p => p.checked_add(1000)?,
    };
    Some(std::net::SocketAddr::new(grpc.ip(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_and_blank_values_fall_back_to_defaults() {
        let env = [("BLANK", "  ")];
        let s = Settings::new(&env);
        assert_eq!(s.parse("MISSING", 7u32), Ok(7));
        assert_eq!(s.parse("BLANK", 7u32), Ok(7));
    }

    #[test]
    fn a_bad_number_names_the_setting() {
        let env = [("PAYMENT_COMMISSION_BPS", "ten")];
        let err = Settings::new(&env)
            .parse::<u32>("PAYMENT_COMMISSION_BPS", 1000)
            .unwrap_err();
        assert_eq!(err.key, "PAYMENT_COMMISSION_BPS");
        assert!(err.to_string().contains("PAYMENT_COMMISSION_BPS=\"ten\""), "{err}");
    }

    #[test]
    fn durations_accept_ms_and_s_and_refuse_zero_and_garbage() {
        let env = [("A", "250ms"), ("B", "2s"), ("C", "40"), ("D", "0s"), ("E", "soon")];
        let s = Settings::new(&env);
        let d = Duration::from_secs(9);
        assert_eq!(s.duration("A", d), Ok(Duration::from_millis(250)));
        assert_eq!(s.duration("B", d), Ok(Duration::from_secs(2)));
        assert_eq!(s.duration("C", d), Ok(Duration::from_millis(40)));
        assert!(s.duration("D", d).is_err());
        assert!(s.duration("E", d).is_err());
        assert_eq!(s.duration("F", d), Ok(d));
    }

    #[test]
    fn urls_must_have_an_allowed_scheme_and_a_host() {
        let env = [("NATS_URL", "localhost:4222"), ("PAYMENT_URL", "http://")];
        let s = Settings::new(&env);
        assert!(s.url("NATS_URL", "nats://127.0.0.1:4222", &["nats"]).is_err());
        assert!(s.url("PAYMENT_URL", "http://x", &["http", "https"]).is_err());
        assert_eq!(s.url("OTHER", "nats://a:1", &["nats"]), Ok("nats://a:1".to_owned()));
    }

    #[test]
    fn the_request_read_timeout_defaults_to_10s_and_is_at_least_1s() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(Settings::new(&none).request_read_timeout(), Ok(Duration::from_secs(10)));
        let env = [("REQUEST_READ_TIMEOUT", "2s")];
        assert_eq!(Settings::new(&env).request_read_timeout(), Ok(Duration::from_secs(2)));
        let env = [("REQUEST_READ_TIMEOUT", "500ms")];
        assert_eq!(
            Settings::new(&env).request_read_timeout().unwrap_err().key,
            "REQUEST_READ_TIMEOUT"
        );
    }

    /// A file holding `contents` in the temporary directory, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &str) -> Self {
            let path = std::env::temp_dir().join(format!("baemin-config-{}-{name}", std::process::id()));
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
    fn a_secret_comes_from_its_variable_or_the_file_its_file_variable_names() {
        let file = TempFile::new("secret-from-file", "from the file\n");
        let env = [("A", "  from the environment "), ("B_FILE", file.path())];
        let s = Settings::new(&env);
        assert_eq!(s.secret("A"), Ok(Some("from the environment".to_owned())));
        assert_eq!(
            s.secret("B"),
            Ok(Some("from the file".to_owned())),
            "the newline is trimmed"
        );
        assert_eq!(s.secret("C"), Ok(None));
    }

    #[test]
    fn a_secret_set_twice_or_in_a_missing_or_empty_file_names_the_file_never_the_secret() {
        let file = TempFile::new("secret-twice", "hunter2-in-a-file");
        let empty = TempFile::new("secret-empty", " \n");
        let env = [
            ("BOTH", "hunter2-in-the-env"),
            ("BOTH_FILE", file.path()),
            ("MISSING_FILE", "/nonexistent/secret"),
            ("EMPTY_FILE", empty.path()),
        ];
        let s = Settings::new(&env);

        let err = s.secret("BOTH").unwrap_err();
        assert_eq!(err.key, "BOTH_FILE", "{err}");
        assert!(err.reason.contains("BOTH ") && err.reason.contains("not both"), "{err}");
        assert_eq!(err.value, file.path());

        let err = s.secret("MISSING").unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.value.as_str()),
            ("MISSING_FILE", "/nonexistent/secret")
        );

        let err = s.secret("EMPTY").unwrap_err();
        assert_eq!((err.key.as_str(), err.value.as_str()), ("EMPTY_FILE", empty.path()));
        assert!(err.reason.contains("empty"), "{err}");

        for err in [s.secret("BOTH"), s.secret("MISSING"), s.secret("EMPTY")] {
            let message = err.unwrap_err().to_string();
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn a_bad_secret_url_is_named_with_its_password_hidden() {
        let file = TempFile::new("secret-url", "mysql://app:hunter2@db/call\n");
        let env = [
            ("DATABASE_URL", "mysql://app:hunter2@db:3306/call?password=hunter2"),
            ("FROM_FILE_FILE", file.path()),
            ("GOOD", "postgres://app:hunter2@db/call"),
            ("NOT_A_URL", "hunter2"),
        ];
        let s = Settings::new(&env);
        let schemes = ["sqlite", "postgres"];

        assert_eq!(
            s.secret_url("GOOD", "sqlite://x", &schemes),
            Ok("postgres://app:hunter2@db/call".to_owned())
        );
        assert_eq!(
            s.secret_url("UNSET", "sqlite://x", &schemes),
            Ok("sqlite://x".to_owned())
        );
        let err = s.secret_url("DATABASE_URL", "sqlite://x", &schemes).unwrap_err();
        assert_eq!(err.key, "DATABASE_URL");
        assert_eq!(err.value, "mysql://app:***@db:3306/call?password=***");
        let err = s.secret_url("FROM_FILE", "sqlite://x", &schemes).unwrap_err();
        assert_eq!((err.key.as_str(), err.value.as_str()), ("FROM_FILE_FILE", file.path()));
        assert!(err.reason.contains("mysql://app:***@db/call"), "{err}");
        let err = s.secret_url("NOT_A_URL", "sqlite://x", &schemes).unwrap_err();
        assert_eq!(err.value, "***");
    }

    #[test]
    fn redacting_a_url_keeps_everything_but_passwords_and_query_values() {
        assert_eq!(redact_url("postgres://app@db/call"), "postgres://app@db/call");
        assert_eq!(
            redact_url("sqlite://data/call.db?mode=rwc"),
            "sqlite://data/call.db?mode=***"
        );
        assert_eq!(redact_url("postgres://app:p@ss/w?rd@db/call"), "postgres://***@db/call");
        assert_eq!(redact_url("postgres://app:p@ss@db/call"), "postgres://app:***@db/call");
        assert_eq!(
            redact_url("postgres://db/call?password=hunter2&name=a@b"),
            "postgres://***@b"
        );
        assert_eq!(redact_url("app:hunter2@db/call"), "***");
    }
}
