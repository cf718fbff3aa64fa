//! Development tokens for the gateway: `baemin up` keeps an HS256 secret in `<data-dir>/jwt-secret`
//! (created on first use, readable by its owner only) and hands it to the gateway; `baemin token` signs
//! tokens with it. A deployment uses its identity provider's keys instead (`GATEWAY_JWKS_FILE`).

use std::{
    io::{Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
    time::{Duration, SystemTime},
};

use anyhow::{Context, bail};
use baemin_gateway::auth::{Role, mint_hs256};

const SECRET_FILE: &str = "jwt-secret";
/// Where `baemin up` keeps the mesh's identity key (`BAEMIN_IDENTITY_KEY`).
const IDENTITY_KEY_FILE: &str = "identity-key";

/// The secret kept in `data_dir/file`, created (32 random bytes, hex) if there is none yet.
fn ensure_secret(data_dir: &Path, file: &str) -> anyhow::Result<String> {
    let path = data_dir.join(file);
    if path.exists() {
        return read_secret(&path);
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .with_context(|| format!("reading /dev/urandom for {file}"))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &secret)?;
    Ok(secret)
}

/// Creates `path` (which must not exist) readable and writable by its owner only, holding `text`: what
/// `baemin up` keeps that holds a secret.
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

fn read_secret(path: &Path) -> anyhow::Result<String> {
    let secret = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(secret.trim().to_owned())
}

/// The gateway's secret: `GATEWAY_JWT_SECRET` (or `GATEWAY_JWT_SECRET_FILE`) when set, else the one kept in `data_dir` (created if
/// there is none yet). `baemin up` gives the gateway this same secret, and `baemin token` signs with it.
pub fn secret(data_dir: &Path) -> anyhow::Result<String> {
    from_env_or_kept("GATEWAY_JWT_SECRET", data_dir, SECRET_FILE)
}

/// The secret `key` (or the file `<key>_FILE` names) of the environment, else the one kept in
/// `data_dir/file`.
fn from_env_or_kept(key: &str, data_dir: &Path, file: &str) -> anyhow::Result<String> {
    let env = baemin_mesh_server::config::ProcessEnv;
    match baemin_mesh_server::config::Settings::new(&env).secret(key)? {
        Some(secret) => Ok(secret),
        None => ensure_secret(data_dir, file),
    }
}

/// The mesh's identity key: `BAEMIN_IDENTITY_KEY` (or `BAEMIN_IDENTITY_KEY_FILE`) when set, else the one kept in `data_dir` (created if
/// there is none yet). `baemin up` gives it to the gateway, which signs the identity it forwards, and
/// to every service, which verifies it.
pub fn identity_key(data_dir: &Path) -> anyhow::Result<String> {
    from_env_or_kept("BAEMIN_IDENTITY_KEY", data_dir, IDENTITY_KEY_FILE)
}

/// A token for `subject` as `role`, valid for `ttl`, signed with `secret`.
pub fn mint(secret: &str, role: Role, subject: &str, ttl: Duration) -> anyhow::Result<String> {
    Ok(mint_hs256(secret.as_bytes(), subject, role, SystemTime::now() + ttl)?)
}

/// `30m`, `12h`, `7d`, `90s`.
pub fn parse_ttl(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = digits
        .parse()
        .with_context(|| format!("ttl {text:?}: expected e.g. 30m, 12h, 7d"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" | "" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("ttl {text:?}: the unit must be s, m, h or d"),
    };
    if seconds == 0 {
        bail!("ttl {text:?}: must be more than zero");
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_as_an_operator_writes_them() {
        assert_eq!(parse_ttl("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_ttl("12h").unwrap(), Duration::from_secs(43_200));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_ttl("0h").is_err());
        assert!(parse_ttl("soon").is_err());
        assert!(parse_ttl("5y").is_err());
    }

    #[test]
    fn the_secret_is_made_once_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_secret(dir.path(), SECRET_FILE).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(ensure_secret(dir.path(), SECRET_FILE).unwrap(), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
