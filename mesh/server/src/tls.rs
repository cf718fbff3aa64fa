//! TLS on a listener: rustls (ring), a certificate chain and key from PEM files, and ALPN offering both
//! `h2` and `http/1.1`, so native gRPC and grpc-web over HTTP/1.1 share one TLS port. (tonic's own
//! `ServerTlsConfig` offers `h2` only; rustls then refuses a client that offers only `http/1.1`.)
//!
//! Handshakes run concurrently with accepting, each under a deadline, so a client that connects and
//! says nothing holds up nobody else.

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::{Stream, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self, ServerConfig,
        crypto::ring,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
    server::TlsStream,
};

/// How long a client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at most; past it, new connections wait in the listen backlog.
const MAX_PENDING_HANDSHAKES: usize = 1024;

/// Where the server's certificate chain and private key are (PEM files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate.
    pub key: PathBuf,
}

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// A file held no PEM certificate (or no private key) that could be parsed.
    #[error("{path} holds no {what}")]
    Missing { path: PathBuf, what: &'static str },
    /// rustls refused the pair: the key does not belong to the certificate, or an unsupported algorithm.
    #[error("certificate and key: {0}")]
    Rejected(#[from] rustls::Error),
}

impl TlsError {
    /// The file at fault, when it is one file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Read { path, .. } | Self::Missing { path, .. } => Some(path),
            Self::Rejected(_) => None,
        }
    }
}

/// A listener's TLS configuration, loaded and checked.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads `files`: TLS 1.2 and 1.3 with rustls' safe defaults, ALPN `h2` then `http/1.1`.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let chain = read(&files.cert)?;
        let certs = CertificateDer::pem_slice_iter(&chain)
            .collect::<Result<Vec<_>, _>>()
            .ok()
            .filter(|certs| !certs.is_empty())
            .ok_or_else(|| TlsError::Missing {
                path: files.cert.clone(),
                what: "PEM certificate",
            })?;
        let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(|_| TlsError::Missing {
            path: files.key.clone(),
            what: "PEM private key",
        })?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The TLS connections established over `tcp`'s connections (`TcpStream`s, or connections wrapping
    /// them). Failed or timed-out handshakes are logged and dropped; errors accepting TCP connections pass
    /// through (the server logs and goes on).
    pub fn incoming<S, IO>(&self, tcp: S) -> TlsIncoming<S, IO>
    where
        S: Stream<Item = io::Result<IO>> + Unpin,
    {
        TlsIncoming {
            tcp: Some(tcp),
            acceptor: self.acceptor.clone(),
            handshakes: FuturesUnordered::new(),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A stream of established TLS connections (see [`Tls::incoming`]).
pub struct TlsIncoming<S, IO> {
    /// `None` once the listener has ended.
    tcp: Option<S>,
    acceptor: TlsAcceptor,
    handshakes: FuturesUnordered<BoxFuture<'static, Option<TlsStream<IO>>>>,
}

impl<S, IO> TlsIncoming<S, IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn handshake(&self, stream: IO) -> BoxFuture<'static, Option<TlsStream<IO>>> {
        let accept = self.acceptor.accept(stream);
        Box::pin(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
                Ok(Ok(tls)) => Some(tls),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    None
                }
            }
        })
    }
}

impl<S, IO> Stream for TlsIncoming<S, IO>
where
    S: Stream<Item = io::Result<IO>> + Unpin,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Item = io::Result<TlsStream<IO>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        while this.handshakes.len() < MAX_PENDING_HANDSHAKES
            && let Some(tcp) = this.tcp.as_mut()
        {
            match tcp.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    let handshake = this.handshake(stream);
                    this.handshakes.push(handshake);
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => this.tcp = None,
                Poll::Pending => break,
            }
        }
        loop {
            match this.handshakes.poll_next_unpin(cx) {
                Poll::Ready(Some(Some(tls))) => return Poll::Ready(Some(Ok(tls))),
                Poll::Ready(Some(None)) => continue,
                // No handshake in progress: done if the listener is, else woken by the listener.
                Poll::Ready(None) if this.tcp.is_none() => return Poll::Ready(None),
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/tls").join(name)
    }

    fn files(cert: &str, key: &str) -> TlsFiles {
        TlsFiles {
            cert: fixture(cert),
            key: fixture(key),
        }
    }

    #[test]
    fn a_certificate_with_its_own_key_loads() {
        Tls::load(&files("localhost.pem", "localhost.key")).unwrap();
    }

    #[test]
    fn a_key_that_does_not_belong_to_the_certificate_is_refused() {
        let error = Tls::load(&files("localhost.pem", "other.key")).unwrap_err();
        assert!(matches!(error, TlsError::Rejected(_)), "{error}");
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let error = Tls::load(&files("nowhere.pem", "localhost.key")).unwrap_err();
        assert!(error.to_string().contains("nowhere.pem"), "{error}");
    }

    #[test]
    fn a_key_given_as_the_certificate_is_refused_as_holding_no_certificate() {
        let error = Tls::load(&files("localhost.key", "localhost.key")).unwrap_err();
        assert!(
            matches!(
                error,
                TlsError::Missing {
                    what: "PEM certificate",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn a_certificate_given_as_the_key_is_refused_as_holding_no_key() {
        let error = Tls::load(&files("localhost.pem", "localhost.pem")).unwrap_err();
        assert!(
            matches!(
                error,
                TlsError::Missing {
                    what: "PEM private key",
                    ..
                }
            ),
            "{error}"
        );
    }
}
