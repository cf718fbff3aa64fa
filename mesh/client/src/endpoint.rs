//! One way to turn a URL into an endpoint, for every client in the mesh: `http://` is plaintext (inside
//! the cluster, where the sidecar adds mTLS), `https://` is TLS verified against the system's roots and,
//! when given, a private CA (a company CA, a development certificate).

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// An endpoint for `url`, trusting `ca_pem` (PEM) besides the system's roots for `https://` URLs.
pub fn endpoint(url: &str, ca_pem: Option<&[u8]>) -> Result<Endpoint, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(url.to_owned())?;
    if endpoint.uri().scheme_str() != Some("https") {
        return Ok(endpoint);
    }
    let tls = ClientTlsConfig::new().with_native_roots();
    let tls = match ca_pem {
        Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
        None => tls,
    };
    endpoint.tls_config(tls)
}
