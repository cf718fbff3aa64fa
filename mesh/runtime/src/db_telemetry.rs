//! What the database does, seen from telemetry: every statement is timed into
//! `baemin_db_statement_duration_seconds{operation,outcome}` and becomes a client span (`db.system.name`,
//! `db.operation.name`) under the span it ran in — the RPC or event being handled — so a transaction
//! shows as its statements and its COMMIT (and, on PostgreSQL, its BEGIN). Never the values,
//! which may hold personal data.

use baemin_mesh_store::Db;
use std::time::{Duration, SystemTime};

use baemin_mesh_telemetry::{Family, Histogram, LatencyBuckets, Metrics};
use opentelemetry::{
    KeyValue, global,
    trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

type Labels = Vec<(&'static str, &'static str)>;

/// Reports every statement `db` runs (transactions included) into `metrics` and the current span.
pub(crate) fn observe(db: &mut Db, metrics: &Metrics) {
    let durations: Family<Labels, Histogram, LatencyBuckets> = metrics.latency_family(
        "db_statement_duration",
        "Time each database statement took, by operation and outcome",
    );
    let system = match db.backend() {
        baemin_mesh_store::Backend::Postgres => "postgresql",
        baemin_mesh_store::Backend::Sqlite => "sqlite",
    };
    db.set_metric_callback(move |info| {
        let operation = operation(&info.statement.sql);
        let outcome = if info.failed { "error" } else { "ok" };
        durations
            .get_or_create(&vec![("operation", operation), ("outcome", outcome)])
            .observe(info.elapsed.as_secs_f64());
        note(system, operation, info.elapsed, info.failed);
    });
}

/// A span for a statement that just ran for `elapsed`, as a child of the current span.
fn note(system: &'static str, operation: &'static str, elapsed: Duration, failed: bool) {
    let current = tracing::Span::current();
    if current.is_disabled() {
        return;
    }
    let parent = current.context();
    if !parent.span().span_context().is_sampled() {
        return;
    }
    let tracer = global::tracer("baemin.db");
    let end = SystemTime::now();
    let mut span = tracer
        .span_builder(operation)
        .with_kind(SpanKind::Client)
        .with_start_time(end.checked_sub(elapsed).unwrap_or(end))
        .with_attributes([
            KeyValue::new("db.system.name", system),
            KeyValue::new("db.operation.name", operation),
        ])
        .start_with_context(&tracer, &parent);
    if failed {
        span.set_status(Status::error("the statement failed"));
    }
    span.end_with_timestamp(end);
}

/// The statement's operation, from its first keyword.
fn operation(sql: &str) -> &'static str {
    let first = sql.split_whitespace().next().unwrap_or("");
    const KNOWN: [&str; 10] = [
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT",
        "CREATE",
        "WITH",
    ];
    KNOWN
        .into_iter()
        .find(|k| first.eq_ignore_ascii_case(k))
        .unwrap_or("OTHER")
}

#[cfg(test)]
mod tests {
    use super::operation;

    #[test]
    fn statements_are_named_by_their_first_keyword_only() {
        assert_eq!(operation("  select * from calls where id = $1"), "SELECT");
        assert_eq!(operation("INSERT INTO outbox_events VALUES (?)"), "INSERT");
        assert_eq!(operation("PRAGMA journal_mode=WAL"), "OTHER");
    }
}
