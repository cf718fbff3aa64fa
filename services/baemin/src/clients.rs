//! gRPC clients of the four services, from their URLs.

use std::path::Path;

use anyhow::Context;
use baemin_mesh_client::{ResendUnsent, ResendUnsentLayer};
use baemin_proto::{
    call::v1::call_service_client::CallServiceClient, payment::v1::payment_service_client::PaymentServiceClient,
    report::v1::report_service_client::ReportServiceClient, rider::v1::rider_service_client::RiderServiceClient,
};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};
use tower::Layer;

/// What every client sends through: a channel that sends again a call a draining server's connection gave
/// back unsent (`baemin_mesh_client::ResendUnsent`), plus the bearer token when one is configured.
pub type Transport = InterceptedService<ResendUnsent<Channel>, Credentials>;

/// Adds `authorization: Bearer <token>` to every call when a token is configured (calls through the
/// gateway); nothing otherwise (calls straight to a service, as an internal backend).
#[derive(Debug, Clone, Default)]
pub struct Credentials(Option<MetadataValue<Ascii>>);

impl Credentials {
    /// Credentials sending `token`, if any.
    pub fn bearer(token: Option<&str>) -> anyhow::Result<Self> {
        token
            .map(|t| {
                MetadataValue::try_from(format!("Bearer {}", t.trim())).context("the token is not a valid header value")
            })
            .transpose()
            .map(Self)
    }
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Which servers `https://` URLs may be: any the system's roots vouch for, and those of a private CA
/// when one is given (`--ca-file`: a company CA, or the CA of a development certificate).
#[derive(Debug, Clone, Default)]
pub struct Trust(Option<Vec<u8>>);

impl Trust {
    /// The system's roots, plus the PEM certificates in `path` when given.
    pub fn ca_file(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let pem = std::fs::read(path).with_context(|| format!("cannot read the CA file {}", path.display()))?;
        anyhow::ensure!(
            pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----"),
            "{} holds no PEM certificate",
            path.display()
        );
        Ok(Self(Some(pem)))
    }
}

/// Where each service listens.
#[derive(Debug, Clone)]
pub struct Urls {
    /// Call service.
    pub call: String,
    /// Rider service.
    pub rider: String,
    /// Payment service.
    pub payment: String,
    /// Report service.
    pub report: String,
}

impl Default for Urls {
    fn default() -> Self {
        Self {
            call: "http://127.0.0.1:8081".into(),
            rider: "http://127.0.0.1:8082".into(),
            payment: "http://127.0.0.1:8083".into(),
            report: "http://127.0.0.1:8084".into(),
        }
    }
}

/// One client per service; connections open on first use.
#[derive(Clone)]
pub struct Clients {
    /// `baemin.call.v1.CallService`.
    pub call: CallServiceClient<Transport>,
    /// `baemin.rider.v1.RiderService`.
    pub rider: RiderServiceClient<Transport>,
    /// `baemin.payment.v1.PaymentService`.
    pub payment: PaymentServiceClient<Transport>,
    /// `baemin.report.v1.ReportService`.
    pub report: ReportServiceClient<Transport>,
}

impl Clients {
    /// Clients of the services at `urls`, calling as an internal backend (no credentials).
    pub fn new(urls: &Urls) -> anyhow::Result<Self> {
        Self::with_credentials(urls, &Credentials::default())
    }

    /// Clients of the services at `urls` sending `credentials` (for calls through the gateway).
    pub fn with_credentials(urls: &Urls, credentials: &Credentials) -> anyhow::Result<Self> {
        Self::connect(urls, credentials, &Trust::default())
    }

    /// Clients of the services at `urls` sending `credentials`, verifying `https://` servers with `trust`.
    pub fn connect(urls: &Urls, credentials: &Credentials, trust: &Trust) -> anyhow::Result<Self> {
        let transport = |url: &str| -> anyhow::Result<Transport> {
            Ok(transport(channel_trusting(url, trust)?, credentials.clone()))
        };
        Ok(Self {
            call: CallServiceClient::new(transport(&urls.call)?),
            rider: RiderServiceClient::new(transport(&urls.rider)?),
            payment: PaymentServiceClient::new(transport(&urls.payment)?),
            report: ReportServiceClient::new(transport(&urls.report)?),
        })
    }
}

/// What a client of `channel` sends through, with `credentials`.
pub fn transport(channel: Channel, credentials: Credentials) -> Transport {
    InterceptedService::new(ResendUnsentLayer::default().layer(channel), credentials)
}

/// A lazily connecting channel to `url`.
pub fn channel(url: &str) -> anyhow::Result<Channel> {
    channel_trusting(url, &Trust::default())
}

/// A lazily connecting channel to `url`, verifying an `https://` server with `trust`.
pub fn channel_trusting(url: &str, trust: &Trust) -> anyhow::Result<Channel> {
    Ok(baemin_mesh_client::endpoint(url, trust.0.as_deref())
        .with_context(|| format!("invalid URL {url}"))?
        .connect_timeout(std::time::Duration::from_secs(3))
        .connect_lazy())
}
