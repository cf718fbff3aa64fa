//! Installing the process's telemetry: the `tracing` subscriber (filter, OpenTelemetry, log lines)
//! and, when an OTLP endpoint is configured, the span exporter.

use std::io::IsTerminal;

use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    trace::{Sampler, SdkTracerProvider},
};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::logfmt::WithTraceIds;

/// Noisy dependencies are kept to warnings unless `RUST_LOG` says otherwise.
const QUIET: &str = "sea_orm_migration=warn,sqlx=warn,async_nats=warn,h2=warn,hyper=warn,tower=warn,opentelemetry=warn";

/// What is traced whatever `RUST_LOG` says: the mesh's spans (targets `baemin…`), warnings elsewhere.
const TRACED: &str = "warn,baemin=info";

/// How the process reports, from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (e.g. `http://otel-collector:4317`): spans are exported there over
    /// OTLP/gRPC. Unset: nothing is exported (trace ids are still made and passed on, for the logs).
    pub otlp_endpoint: Option<String>,
    /// `OTEL_TRACES_SAMPLER_ARG` (0..=1, default 1): the share of new traces kept. A trace begun
    /// elsewhere keeps its caller's decision.
    pub sample_ratio: f64,
    /// `LOG_FORMAT=json`: one JSON object per line; otherwise compact human lines.
    pub json: bool,
    /// `LOG_COLOR` (`always`, `never`; default: when stderr is a terminal and `NO_COLOR` is unset).
    pub colour: bool,
    /// `RUST_LOG`, else `info` with noisy dependencies at `warn`.
    pub filter: String,
}

/// A telemetry setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{key}={value}: {reason}")]
pub struct TelemetryError {
    /// The variable.
    pub key: &'static str,
    /// Its value.
    pub value: String,
    /// Why it cannot be used.
    pub reason: String,
}

impl TelemetrySettings {
    /// Reads the settings through `var` (the process environment, or a test's map).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, TelemetryError> {
        let var = |key: &str| var(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let otlp_endpoint = var("OTEL_EXPORTER_OTLP_ENDPOINT");
        if let Some(endpoint) = &otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(TelemetryError {
                key: "OTEL_EXPORTER_OTLP_ENDPOINT",
                value: endpoint.clone(),
                reason: "expected an http:// or https:// URL of an OTLP/gRPC collector".into(),
            });
        }
        let sample_ratio = match var("OTEL_TRACES_SAMPLER_ARG") {
            None => 1.0,
            Some(raw) => match raw.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    return Err(TelemetryError {
                        key: "OTEL_TRACES_SAMPLER_ARG",
                        value: raw,
                        reason: "expected a ratio from 0 to 1".into(),
                    });
                }
            },
        };
        let json = var("LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json"));
        let colour = match var("LOG_COLOR").as_deref() {
            Some("always") => true,
            Some("never") => false,
            _ => std::io::stderr().is_terminal() && var("NO_COLOR").is_none(),
        };
        let filter = var("RUST_LOG").unwrap_or_else(|| format!("info,{QUIET}"));
        Ok(Self {
            otlp_endpoint,
            sample_ratio,
            json,
            colour: colour && !json,
            filter,
        })
    }
}

/// The installed telemetry; [`Telemetry::shutdown`] exports what is buffered before the process exits.
#[must_use = "shut telemetry down before exiting, or buffered spans are lost"]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter.
    pub async fn shutdown(self) {
        // The exporter's flush blocks its thread on the async gRPC client: not on a runtime thread.
        let provider = self.provider;
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(error) = provider.shutdown() {
                eprintln!("telemetry: exporting the last spans failed: {error}");
            }
        })
        .await;
    }
}

/// Installs telemetry for service `service` (version `version`) as the process's global subscriber.
/// Later calls (tests running several services in one process) install nothing and return a handle
/// whose shutdown does nothing.
pub fn init(service: &'static str, version: &'static str, settings: &TelemetrySettings) -> Telemetry {
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", service),
            KeyValue::new("service.namespace", "baemin"),
            KeyValue::new("service.version", version),
            KeyValue::new("service.instance.id", instance_id()),
        ])
        .build();
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    provider = match &settings.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build();
            match exporter {
                Ok(exporter) => provider
                    .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                        settings.sample_ratio,
                    ))))
                    .with_batch_exporter(exporter),
                Err(error) => {
                    eprintln!("{service}: traces will not be exported to {endpoint}: {error}");
                    provider.with_sampler(Sampler::AlwaysOff)
                }
            }
        }
        // Ids are still made and propagated (log lines across services correlate); nothing is recorded.
        None => provider.with_sampler(Sampler::AlwaysOff),
    };
    let provider = provider.build();
    let tracer = provider.tracer(service);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_error_records_to_exceptions(true);
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(settings.colour);
    let lines = if settings.json {
        lines
            .json()
            .with_current_span(true)
            .event_format(WithTraceIds::json(
                tracing_subscriber::fmt::format()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true),
            ))
            .boxed()
    } else {
        lines
            .event_format(WithTraceIds::human(
                tracing_subscriber::fmt::format().compact().with_ansi(settings.colour),
            ))
            .boxed()
    };
    // `RUST_LOG` decides which lines are written, not which spans are traced: the mesh's own spans
    // (and the events inside them) always reach OpenTelemetry.
    let lines = lines.with_filter(EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info")));
    let otel = otel.with_filter(EnvFilter::new(TRACED));
    if tracing_subscriber::registry().with(otel).with(lines).try_init().is_ok() {
        opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
        // For spans made with the OpenTelemetry API directly (database statements, timed afterwards).
        opentelemetry::global::set_tracer_provider(provider.clone());
        crate::panic::log_panics();
    }
    Telemetry { provider }
}

/// `HOSTNAME` (a pod's name) when set, else a fresh id.
fn instance_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .map(|h| format!("{h}/{}", std::process::id()))
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<TelemetrySettings, TelemetryError> {
        TelemetrySettings::from_lookup(|key| vars.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn without_an_endpoint_nothing_is_exported_and_every_trace_would_be_kept() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.otlp_endpoint, None);
        assert!((s.sample_ratio - 1.0).abs() < f64::EPSILON);
        assert!(!s.json);
    }

    #[test]
    fn a_bad_endpoint_or_ratio_is_refused_naming_the_variable() {
        let err = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]).unwrap_err();
        assert_eq!(err.key, "OTEL_EXPORTER_OTLP_ENDPOINT");
        for ratio in ["1.5", "-0.1", "half"] {
            let err = settings(&[("OTEL_TRACES_SAMPLER_ARG", ratio)]).unwrap_err();
            assert_eq!(err.key, "OTEL_TRACES_SAMPLER_ARG");
        }
        let s = settings(&[("OTEL_TRACES_SAMPLER_ARG", "0.25"), ("LOG_FORMAT", "JSON")]).unwrap();
        assert!((s.sample_ratio - 0.25).abs() < f64::EPSILON);
        assert!(s.json && !s.colour);
    }
}
