//! Log lines carrying the trace and span ids of the span they were written in, so a line leads to its
//! trace and a trace to its lines: `trace_id=… span_id=…` before a human line, `"trace_id"` and
//! `"span_id"` fields in a JSON one.

use std::fmt;

use opentelemetry::trace::{TraceContextExt, TraceId};
use tracing::{Event, Subscriber};
use tracing_subscriber::{
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

/// Wraps an event formatter, adding the current span's trace and span ids.
pub(crate) struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

impl<F> WithTraceIds<F> {
    pub(crate) fn human(inner: F) -> Self {
        Self { inner, json: false }
    }

    pub(crate) fn json(inner: F) -> Self {
        Self { inner, json: true }
    }
}

/// The trace and span ids of the innermost span of the event's context, when it has valid ones.
fn ids<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<(TraceId, opentelemetry::trace::SpanId)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let span = ctx.lookup_current()?;
    let cx =
        tracing::dispatcher::get_default(|dispatch| tracing_opentelemetry::get_otel_context(&span.id(), dispatch))?;
    let span_context = cx.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| (span_context.trace_id(), span_context.span_id()))
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let ids = ids(ctx);
        if !self.json {
            if let Some((trace, span)) = ids {
                write!(writer, "trace_id={trace} span_id={span} ")?;
            }
            return self.inner.format_event(ctx, writer, event);
        }
        let Some((trace, span)) = ids else {
            return self.inner.format_event(ctx, writer, event);
        };
        // The JSON formatter writes one object; the ids go in as its first fields.
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"trace_id\":\"{trace}\",\"span_id\":\"{span}\",{rest}"),
            None => writer.write_str(&line),
        }
    }
}
