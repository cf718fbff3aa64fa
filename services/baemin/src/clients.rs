//! gRPC clients of the four services, from their URLs.

use anyhow::Context;
use baemin_proto::{
    call::v1::call_service_client::CallServiceClient, payment::v1::payment_service_client::PaymentServiceClient,
    report::v1::report_service_client::ReportServiceClient, rider::v1::rider_service_client::RiderServiceClient,
};
use tonic::transport::{Channel, Endpoint};

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
    pub call: CallServiceClient<Channel>,
    /// `baemin.rider.v1.RiderService`.
    pub rider: RiderServiceClient<Channel>,
    /// `baemin.payment.v1.PaymentService`.
    pub payment: PaymentServiceClient<Channel>,
    /// `baemin.report.v1.ReportService`.
    pub report: ReportServiceClient<Channel>,
}

impl Clients {
    /// Clients of the services at `urls`.
    pub fn new(urls: &Urls) -> anyhow::Result<Self> {
        Ok(Self {
            call: CallServiceClient::new(channel(&urls.call)?),
            rider: RiderServiceClient::new(channel(&urls.rider)?),
            payment: PaymentServiceClient::new(channel(&urls.payment)?),
            report: ReportServiceClient::new(channel(&urls.report)?),
        })
    }
}

/// A lazily connecting channel to `url`.
pub fn channel(url: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("invalid URL {url}"))?
        .connect_timeout(std::time::Duration::from_secs(3))
        .connect_lazy())
}
