//! W3C trace context (`traceparent`, `tracestate`) in and out of gRPC metadata, NATS headers and the
//! outbox, so a trace continues across every hop.

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TraceContextExt,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header carrying the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Puts `cx` into `headers` (nothing when `cx` carries no valid span).
pub fn inject_http(cx: &Context, headers: &mut http::HeaderMap) {
    inject_with(cx, |key, value| {
        if let (Ok(name), Ok(value)) = (http::HeaderName::try_from(key), http::HeaderValue::try_from(value)) {
            headers.insert(name, value);
        }
    });
}

/// The context `headers` carry (empty when none, or malformed).
pub fn extract_http(headers: &http::HeaderMap) -> Context {
    extract_with(|key| headers.get(key).and_then(|v| v.to_str().ok()).map(str::to_owned))
}

/// Puts `cx` through `set(key, value)`: for any carrier (NATS headers, a map).
pub fn inject_with(cx: &Context, set: impl FnMut(&str, String)) {
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(cx, &mut Setter(set));
    }
}

/// The context `get(key)` carries: for any carrier.
pub fn extract_with(get: impl Fn(&str) -> Option<String>) -> Context {
    let carrier = Getter {
        traceparent: get(TRACEPARENT),
        tracestate: get("tracestate"),
    };
    TraceContextPropagator::new().extract(&carrier)
}

/// The `traceparent` of `span`, to store with what it produced (an outbox row).
pub fn traceparent_of(span: &Span) -> Option<String> {
    let mut traceparent = None;
    inject_with(&span.context(), |key, value| {
        if key == TRACEPARENT {
            traceparent = Some(value);
        }
    });
    traceparent
}

/// The context a stored `traceparent` names.
pub fn from_traceparent(traceparent: &str) -> Context {
    extract_with(|key| (key == TRACEPARENT).then(|| traceparent.to_owned()))
}

struct Setter<F>(F);

impl<F: FnMut(&str, String)> Injector for Setter<F> {
    fn set(&mut self, key: &str, value: String) {
        (self.0)(key, value);
    }
}

struct Getter {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Extractor for Getter {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent.as_deref(),
            "tracestate" => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        [TRACEPARENT, "tracestate"]
            .into_iter()
            .filter(|k| self.get(k).is_some())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    use super::*;

    fn remote(sampled: bool) -> Context {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            flags,
            true,
            TraceState::default(),
        ))
    }

    #[test]
    fn a_context_survives_http_headers_with_its_sampling_decision() {
        for sampled in [true, false] {
            let mut headers = http::HeaderMap::new();
            inject_http(&remote(sampled), &mut headers);
            let back = extract_http(&headers);
            let sc = back.span().span_context().clone();
            assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
            assert_eq!(sc.is_sampled(), sampled);
        }
    }

    #[test]
    fn a_stored_traceparent_names_the_same_span() {
        let mut stored = None;
        inject_with(&remote(true), |k, v| {
            if k == TRACEPARENT {
                stored = Some(v);
            }
        });
        let stored = stored.unwrap();
        assert_eq!(stored, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let back = from_traceparent(&stored);
        assert_eq!(back.span().span_context().span_id().to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn no_context_writes_no_header_and_garbage_reads_as_none() {
        let mut headers = http::HeaderMap::new();
        inject_http(&Context::new(), &mut headers);
        assert!(headers.is_empty());
        headers.insert(TRACEPARENT, http::HeaderValue::from_static("00-zz-yy-01"));
        assert!(!extract_http(&headers).span().span_context().is_valid());
    }
}
