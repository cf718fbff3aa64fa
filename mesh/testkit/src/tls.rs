//! A test CA and a certificate it signed for `localhost` and 127.0.0.1 (in `mesh/testkit/tls/`, valid
//! until 2126; the CA's key was not kept, so nothing else can be signed with it), for TLS listeners.

use std::path::PathBuf;

fn file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tls").join(name)
}

/// The CA certificate (PEM) clients trust.
pub fn ca_pem() -> PathBuf {
    file("ca.pem")
}

/// The server certificate (PEM) for `localhost` and 127.0.0.1.
pub fn cert_pem() -> PathBuf {
    file("localhost.pem")
}

/// The server certificate's private key (PEM).
pub fn key_pem() -> PathBuf {
    file("localhost.key")
}

/// A private key (PEM) that belongs to no certificate here.
pub fn unrelated_key_pem() -> PathBuf {
    file("other.key")
}
