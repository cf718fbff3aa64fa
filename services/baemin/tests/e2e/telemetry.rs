//! Observability end to end: one trace per delivery step across every service (exported over OTLP to
//! a collector in this test), and the metrics each admin port serves after the seed's scenario,
//! read with a Prometheus text parser.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use baemin::scenario::{self, Script, eventually};
use baemin_mesh_testkit::{CollectedSpan, DbKind, OtlpCollector};
use baemin_proto::call::v1 as call;
use prometheus_parse::{Sample, Scrape, Value};

use crate::support::{PATIENCE, Svc, TestMesh};

/// The samples of `/metrics` at `admin_url`, parsed.
async fn scrape(admin_url: &str) -> Vec<Sample> {
    let addr: SocketAddr = admin_url.trim_start_matches("http://").parse().unwrap();
    let (status, head, body) = crate::gateway::http1(addr, "GET", "/metrics", &[], &[]).await;
    assert!(status.contains("200"), "{status}\n{head}");
    let text = String::from_utf8(body).unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"))
        .samples
}

/// The value of the sample `metric` whose labels include all of `labels`; 0 when there is none.
fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{metric} is not a plain number"),
        })
        .collect();
    assert!(
        matching.len() <= 1,
        "{metric} {labels:?} matches {} samples",
        matching.len()
    );
    matching.first().copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_seed_scenario_each_admin_port_counts_what_happened() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let script = Script {
        patience: PATIENCE,
        ..Script::default()
    };
    let outcome = scenario::play(&mesh.clients, &script, &mut |_| {}).await.unwrap();
    let unknown = mesh
        .clients
        .call
        .clone()
        .get_call(call::GetCallRequest {
            call_id: "0190c3c8-0000-7000-8000-000000000000".into(),
        })
        .await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);
    let admin = |svc| mesh.admin_url(svc).unwrap();

    let call = scrape(&admin(Svc::Call)).await;
    let rpc = |method, code| {
        [
            ("rpc_service", "baemin.call.v1.CallService"),
            ("rpc_method", method),
            ("rpc_grpc_status_code", code),
        ]
    };
    assert_eq!(
        value(
            &call,
            "baemin_rpc_server_duration_seconds_count",
            &rpc("PlaceCall", "0")
        ),
        1.0
    );
    assert_eq!(
        value(&call, "baemin_rpc_server_duration_seconds_count", &rpc("GetCall", "5")),
        1.0,
        "NOT_FOUND counted by its code"
    );
    let register = [("rpc_method", "RegisterCost"), ("rpc_grpc_status_code", "0")];
    assert_eq!(value(&call, "baemin_rpc_client_duration_seconds_count", &register), 1.0);
    assert_eq!(
        value(&call, "baemin_breaker_state", &[("dependency", "payment")]),
        0.0,
        "closed"
    );
    assert_eq!(
        value(&call, "baemin_breaker_refused_total", &[("dependency", "payment")]),
        0.0
    );
    let pool = value(&call, "baemin_db_pool_connections", &[("state", "idle")])
        + value(&call, "baemin_db_pool_connections", &[("state", "in_use")]);
    assert!(pool >= 1.0, "the pool's connections are counted: {pool}");
    let inserts = [("operation", "INSERT"), ("outcome", "ok")];
    assert!(
        value(&call, "baemin_db_statement_duration_seconds_count", &inserts) >= 2.0,
        "the call and its outbox row"
    );
    let placed = [("subject", "baemin.events.call.placed")];
    assert_eq!(value(&call, "baemin_outbox_published_total", &placed), 1.0);

    let rider = scrape(&admin(Svc::Rider)).await;
    for subject in ["call.accepted", "delivery.picked", "delivery.completed"] {
        let subject = format!("baemin.events.{subject}");
        assert_eq!(
            value(&rider, "baemin_outbox_published_total", &[("subject", &subject)]),
            1.0,
            "{subject}"
        );
    }
    let settle = [("rpc_method", "Settle"), ("rpc_grpc_status_code", "0")];
    assert_eq!(value(&rider, "baemin_rpc_client_duration_seconds_count", &settle), 1.0);

    let payment = scrape(&admin(Svc::Payment)).await;
    assert_eq!(
        value(&payment, "baemin_payment_fees_registered_won_total", &[]),
        3_000.0
    );
    assert_eq!(
        value(&payment, "baemin_payment_revenue_won_total", &[]),
        outcome.payment.commission as f64
    );
    assert_eq!(value(&payment, "baemin_payment_rider_payouts_won_total", &[]), 2_700.0);
    assert_eq!(value(&payment, "baemin_payment_fees_voided_won_total", &[]), 0.0);

    // The report consumes every event: placed, registered, accepted, picked, completed, settled.
    let report_admin = admin(Svc::Report);
    let applied = eventually(PATIENCE, "the report to count its applied events", || {
        let url = report_admin.clone();
        async move {
            let samples = scrape(&url).await;
            let applied: f64 = samples
                .iter()
                .filter(|s| s.metric == "baemin_events_processed_total" && s.labels.get("outcome") == Some("applied"))
                .map(|s| match s.value {
                    Value::Counter(v) | Value::Untyped(v) => v,
                    _ => 0.0,
                })
                .sum();
            Ok((applied >= 6.0).then_some(applied))
        }
    })
    .await
    .unwrap();
    assert_eq!(applied, 6.0, "each event applied once");

    // Probes on the same port.
    let addr: SocketAddr = admin(Svc::Call).trim_start_matches("http://").parse().unwrap();
    let (ready, _, _) = crate::gateway::http1(addr, "GET", "/readyz", &[], &[]).await;
    assert!(ready.contains("200"), "{ready}");
    mesh.stop().await;
}

/// The spans of one trace, by span id.
fn trace_of<'a>(spans: &'a [CollectedSpan], root: &CollectedSpan) -> HashMap<&'a str, &'a CollectedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id == root.trace_id)
        .map(|s| (s.span_id.as_str(), s))
        .collect()
}

/// The span named `name` from `service` in `trace`.
fn find<'a>(trace: &HashMap<&str, &'a CollectedSpan>, service: &str, name: &str) -> &'a CollectedSpan {
    let found: Vec<_> = trace
        .values()
        .filter(|s| s.service == service && s.name == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {name} span from {service} in the trace; it has: {:?}",
        trace
            .values()
            .map(|s| format!("{}:{}", s.service, s.name))
            .collect::<Vec<_>>()
    );
    found[0]
}

fn assert_child(child: &CollectedSpan, parent: &CollectedSpan) {
    assert_eq!(
        child.parent_span_id, parent.span_id,
        "{}:{} should be a child of {}:{}",
        child.service, child.name, parent.service, parent.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_step_is_one_trace_across_call_payment_rider_and_report_over_grpc_and_nats() {
    let collector = OtlpCollector::start().await;
    let endpoint = collector.endpoint();
    let mut mesh = TestMesh::processes(DbKind::Sqlite, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]).await;
    let script = Script {
        patience: PATIENCE,
        ..Script::default()
    };
    let outcome = scenario::play(&mesh.clients, &script, &mut |_| {}).await.unwrap();
    let call_id = outcome.call.call_id.clone();
    // Let the report and call apply payment.settled, then stop everything: SIGTERM flushes the spans.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for svc in [Svc::Report, Svc::Rider, Svc::Call, Svc::Payment] {
        mesh.stop_service(svc).await;
    }
    let spans = collector.spans();
    assert!(!spans.is_empty(), "nothing was exported");

    // PlaceCall -> RegisterCost (sync) -> call.placed -> rider's board and the report.
    let place = spans
        .iter()
        .find(|s| s.service == "call" && s.name == "baemin.call.v1.CallService/PlaceCall")
        .expect("the PlaceCall server span");
    assert_eq!(place.kind, "server");
    assert_eq!(place.attribute("rpc.system"), Some("grpc"));
    assert_eq!(place.attribute("rpc.grpc.status_code"), Some("0"));
    let statements: Vec<&str> = spans
        .iter()
        .filter(|s| s.parent_span_id == place.span_id && s.attribute("db.system.name") == Some("sqlite"))
        .map(|s| s.name.as_str())
        .collect();
    for operation in ["SELECT", "INSERT"] {
        assert!(
            statements.contains(&operation),
            "PlaceCall's statements show as child spans: {statements:?}"
        );
    }
    let trace = trace_of(&spans, place);
    let register_client = find(&trace, "call", "baemin.payment.v1.PaymentService/RegisterCost");
    assert_eq!(register_client.kind, "client");
    assert_child(register_client, place);
    let register_server = trace
        .values()
        .find(|s| s.service == "payment" && s.kind == "server" && s.name.ends_with("/RegisterCost"))
        .expect("payment's RegisterCost in the same trace");
    assert_child(register_server, register_client);
    let publish = find(&trace, "call", "baemin.events.call.placed publish");
    assert_eq!(publish.kind, "producer");
    assert_child(publish, place);
    for consumer in ["rider", "report"] {
        let process = find(&trace, consumer, "baemin.events.call.placed process");
        assert_eq!(process.kind, "consumer");
        assert_eq!(process.attribute("messaging.system"), Some("nats"));
        assert_child(process, publish);
    }
    // payment.registered is published by payment inside RegisterCost: the report applies it in this trace too.
    let registered = find(&trace, "payment", "baemin.events.payment.registered publish");
    assert_child(registered, register_server);
    assert_child(
        find(&trace, "report", "baemin.events.payment.registered process"),
        registered,
    );

    // CompleteDelivery -> Settle (sync) -> delivery.completed and payment.settled -> report and call.
    let complete = spans
        .iter()
        .find(|s| {
            s.service == "rider"
                && s.name == "baemin.rider.v1.RiderService/CompleteDelivery"
                && trace_of(&spans, s)
                    .values()
                    .any(|p| p.name.contains("delivery.completed publish"))
        })
        .expect("the CompleteDelivery server span");
    assert_ne!(complete.trace_id, place.trace_id, "another step, another trace");
    let trace = trace_of(&spans, complete);
    let settle_client = find(&trace, "rider", "baemin.payment.v1.PaymentService/Settle");
    assert_child(settle_client, complete);
    let settle_server = trace
        .values()
        .find(|s| s.service == "payment" && s.kind == "server" && s.name.ends_with("/Settle"))
        .expect("payment's Settle in the same trace");
    assert_child(settle_server, settle_client);
    let completed = find(&trace, "rider", "baemin.events.delivery.completed publish");
    assert_child(
        find(&trace, "report", "baemin.events.delivery.completed process"),
        completed,
    );
    assert_child(
        find(&trace, "call", "baemin.events.delivery.completed process"),
        completed,
    );
    let settled = find(&trace, "payment", "baemin.events.payment.settled publish");
    assert_child(settled, settle_server);
    assert_child(find(&trace, "report", "baemin.events.payment.settled process"), settled);
    assert_child(find(&trace, "call", "baemin.events.payment.settled process"), settled);
    assert!(
        trace
            .values()
            .all(|s| s.attribute("messaging.message.id").is_none_or(|id| !id.is_empty())),
        "consumer spans name the event they applied"
    );
    let _ = call_id;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_shows_in_the_trace_as_its_transition_and_each_refusal() {
    let collector = OtlpCollector::start().await;
    let endpoint = collector.endpoint();
    let mut mesh = TestMesh::processes(DbKind::Sqlite, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]).await;
    mesh.kill_service(Svc::Payment).await;
    // Payment is gone: calls fail until the window (10 calls at least) opens the circuit, then fail fast.
    let mut refused = 0;
    for i in 0..30 {
        let placed = mesh
            .clients
            .call
            .clone()
            .place_call(call::PlaceCallRequest {
                request_id: format!("open-circuit-{i}"),
                restaurant_id: "store-1".into(),
                destination: "서울".into(),
                fee: 3_000,
            })
            .await;
        let status = placed.expect_err("payment is down: PlaceCall cannot succeed");
        if status.message().contains("circuit is open") {
            refused += 1;
        }
    }
    assert!(refused > 0, "the circuit never opened");
    mesh.stop_service(Svc::Call).await;

    let events: Vec<(String, Vec<(String, String)>)> = collector
        .spans()
        .into_iter()
        .filter(|s| s.service == "call")
        .flat_map(|s| s.events)
        .collect();
    let opened = events
        .iter()
        .filter(|(name, _)| name.starts_with("circuit opened"))
        .count();
    assert_eq!(opened, 1, "the transition to open is one span event: {events:?}");
    let refusals: Vec<&Vec<(String, String)>> = events
        .iter()
        .filter(|(name, _)| name == "circuit refused the call")
        .map(|(_, attributes)| attributes)
        .collect();
    assert_eq!(refusals.len(), refused, "every refused call is a span event");
    assert!(
        refusals
            .iter()
            .all(|a| a.contains(&("breaker.dependency".into(), "payment".into()))
                && a.contains(&("breaker.state".into(), "open".into()))),
        "{refusals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_carry_trace_ids_inside_rpcs_and_never_a_token_or_the_secret() {
    use baemin_gateway::auth::Role;
    use baemin_mesh_server::probe;

    use crate::gateway::{SECRET, through, token};

    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], baemin_mesh_testkit::free_port()));
    let url = |svc| format!("http://{}", mesh.addr(svc).unwrap());
    let mut gateway = tokio::process::Command::new(env!("CARGO_BIN_EXE_baemin"))
        .args(["serve", "gateway"])
        .env("GRPC_ADDR", addr.to_string())
        .env("ADMIN_ADDR", "127.0.0.1:0")
        .env("CALL_URL", url(Svc::Call))
        .env("RIDER_URL", url(Svc::Rider))
        .env("PAYMENT_URL", url(Svc::Payment))
        .env("REPORT_URL", url(Svc::Report))
        .env("GATEWAY_JWT_SECRET", String::from_utf8(SECRET.to_vec()).unwrap())
        .env("BAEMIN_IDENTITY_KEY", baemin_mesh_testkit::TEST_IDENTITY_KEY)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let gateway_url = format!("http://{addr}");
    let started = tokio::time::Instant::now();
    while !probe::is_serving(&gateway_url).await {
        assert!(started.elapsed() < PATIENCE, "the gateway did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restaurant = token(Role::Restaurant, "store-1");
    let store = through(&gateway_url, Some(&restaurant));
    store
        .call
        .clone()
        .place_call(call::PlaceCallRequest {
            request_id: crate::support::request_id(),
            restaurant_id: "store-1".into(),
            destination: "서울".into(),
            fee: 3_000,
        })
        .await
        .unwrap();
    let forged = format!("{}x", &restaurant[..restaurant.len() - 1]);
    let refused = through(&gateway_url, Some(&forged))
        .call
        .clone()
        .get_call(call::GetCallRequest { call_id: "x".into() })
        .await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated);
    probe::terminate(gateway.id().unwrap());
    assert!(gateway.wait().await.unwrap().success());

    let text = std::fs::read_to_string(log.path()).unwrap();
    let secret = String::from_utf8(SECRET.to_vec()).unwrap();
    let signature = |jwt: &str| jwt.rsplit('.').next().unwrap().to_owned();
    for needle in [secret, signature(&restaurant), signature(&forged), "Bearer".to_owned()] {
        assert!(
            !text.contains(&needle),
            "the log holds a secret or token part: {needle}"
        );
    }
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let in_rpc: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| {
            l["spans"].as_array().is_some_and(|spans| {
                spans
                    .iter()
                    .any(|s| s["name"].as_str().is_some_and(|n| n.starts_with("rpc.")))
            })
        })
        .collect();
    assert!(
        !in_rpc.is_empty(),
        "some lines were written inside RPCs ({} lines)",
        lines.len()
    );
    for line in in_rpc {
        let trace_id = line["trace_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no trace_id: {line}"));
        assert_eq!(trace_id.len(), 32, "{line}");
        assert_eq!(line["span_id"].as_str().map(str::len), Some(16), "{line}");
    }
    mesh.stop().await;
}

/// Every metric name the mesh exports, from the text of `/metrics`: sample names, and the names a
/// registered family's samples take (`_total`, `_bucket`, `_count`, `_sum`) even before its first sample.
fn exported_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_count", "_sum"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// The metric names `expr` selects, parsed as PromQL (Grafana's `$__rate_interval` read as 5m).
fn metrics_in(expr: &str) -> Vec<String> {
    use promql_parser::parser::{self, Expr};
    fn walk(expr: &Expr, out: &mut Vec<String>) {
        match expr {
            Expr::VectorSelector(v) => out.extend(v.name.clone()),
            Expr::MatrixSelector(m) => out.extend(m.vs.name.clone()),
            Expr::Aggregate(a) => {
                walk(&a.expr, out);
                if let Some(p) = &a.param {
                    walk(p, out);
                }
            }
            Expr::Unary(u) => walk(&u.expr, out),
            Expr::Binary(b) => {
                walk(&b.lhs, out);
                walk(&b.rhs, out);
            }
            Expr::Paren(p) => walk(&p.expr, out),
            Expr::Subquery(s) => walk(&s.expr, out),
            Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, out)),
            Expr::Extension(_) | Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        }
    }
    let expr = expr.replace("$__rate_interval", "5m");
    let parsed = parser::parse(&expr).unwrap_or_else(|e| panic!("does not parse as PromQL: {e}\n{expr}"));
    let mut names = Vec::new();
    walk(&parsed, &mut names);
    assert!(!names.is_empty(), "selects no metric: {expr}");
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_rules_and_the_dashboard_parse_and_use_only_metrics_the_services_export() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = crate::gateway::start_gateway(&mesh, &[]).await;
    let script = Script {
        patience: PATIENCE,
        ..Script::default()
    };
    scenario::play(&mesh.clients, &script, &mut |_| {}).await.unwrap();
    let mut exported = std::collections::BTreeSet::new();
    let admins = [Svc::Call, Svc::Rider, Svc::Payment, Svc::Report]
        .map(|svc| mesh.admin_url(svc).unwrap())
        .into_iter()
        .chain([gateway.admin_url()]);
    for admin in admins {
        let addr: SocketAddr = admin.trim_start_matches("http://").parse().unwrap();
        let (_, _, body) = crate::gateway::http1(addr, "GET", "/metrics", &[], &[]).await;
        exported.extend(exported_names(&String::from_utf8(body).unwrap()));
    }

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../helm/baemin/files");
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("alerts.yaml")).unwrap()).unwrap();
    let mut alerts = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert").to_owned();
            let expr = rule["expr"].as_str().unwrap_or_else(|| panic!("{name}: no expr"));
            for metric in metrics_in(expr) {
                assert!(
                    exported.contains(&metric),
                    "{name} uses {metric}, which no service exports"
                );
            }
            assert!(rule["annotations"]["summary"].is_string(), "{name}: no summary");
            alerts.push(name);
        }
    }
    for wanted in [
        "BaeminCircuitOpen",
        "BaeminEventLagHigh",
        "BaeminSettlementBacklogGrowing",
        "BaeminDeadLetters",
        "BaeminRpcErrorRatio",
    ] {
        assert!(alerts.iter().any(|a| a == wanted), "{wanted} missing from {alerts:?}");
    }

    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            for metric in metrics_in(target["expr"].as_str().expect("expr")) {
                assert!(
                    exported.contains(&metric),
                    "panel {} uses {metric}, which no service exports",
                    panel["title"]
                );
            }
        }
    }
    gateway.stop().await;
    mesh.stop().await;
}
