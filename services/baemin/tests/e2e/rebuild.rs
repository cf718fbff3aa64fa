//! `baemin report rebuild`: the mesh plays deliveries, the report converges, and the read model rebuilt
//! from the events stream into a fresh SQLite file equals the live report, row for row; the command
//! refuses a target that already holds a model.

use std::process::ExitCode;

use baemin::{
    cli::Cli,
    scenario::{self, Script, eventually},
};
use baemin_mesh_events::{STREAM_NAME, outbox};
use baemin_mesh_testkit::DbKind;
use baemin_proto::{call::v1 as call, report::v1 as report, rider::v1 as rider};
use clap::Parser;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::{
    flows::place,
    support::{PATIENCE, Svc, TestMesh},
};

/// Events the services have written and not published yet, over every service's database.
async fn unpublished(mesh: &TestMesh) -> anyhow::Result<u64> {
    let mut total = 0;
    for svc in [Svc::Payment, Svc::Call, Svc::Rider, Svc::Report] {
        let db = baemin_mesh_store::open(mesh.database_url(svc), 1).await?;
        total += outbox::entity::Entity::find()
            .filter(outbox::entity::Column::PublishedAt.is_null())
            .count(&db)
            .await?;
        db.close().await?;
    }
    Ok(total)
}

/// Waits until every event is published and the live report has applied the whole stream: from then
/// on the live model no longer changes.
async fn wait_quiet(mesh: &TestMesh) {
    let js = async_nats::jetstream::new(async_nats::connect(mesh.nats.url()).await.expect("nats"));
    eventually(PATIENCE, "every event published and applied by the report", || {
        let js = js.clone();
        async move {
            if unpublished(mesh).await? > 0 {
                return Ok(None);
            }
            let last = js.get_stream(STREAM_NAME).await?.info().await?.state.last_sequence;
            let live = baemin_report::rebuild::live_progress(&js).await?;
            Ok(live.filter(|l| l.delivered_sequence == last && l.pending == 0 && l.ack_pending == 0))
        }
    })
    .await
    .expect("the mesh to settle");
}

/// `baemin --report-url <live> report rebuild --nats-url <nats> --into <into> [--compare]`.
async fn baemin_rebuild(mesh: &TestMesh, into: &str, compare: bool) -> ExitCode {
    let report_url = mesh.report.as_ref().expect("report running").url();
    let nats_url = mesh.nats.url();
    let mut args = vec![
        "baemin",
        "--report-url",
        &report_url,
        "report",
        "rebuild",
        "--nats-url",
        &nats_url,
        "--into",
        into,
    ];
    if compare {
        args.push("--compare");
    }
    baemin::run(Cli::parse_from(args)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_rebuilt_from_the_stream_equals_the_live_one() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let clients = mesh.clients.clone();
    // Two whole deliveries, a call cancelled, one left open, one accepted and not picked up.
    for rider in ["rider-1", "rider-2"] {
        let script = Script {
            rider: rider.into(),
            ..Script::default()
        };
        scenario::play(&clients, &script, &mut |_| {}).await.expect("scenario");
    }
    let cancelled = place(&mesh, "store-2", 4_000).await.call_id;
    clients
        .call
        .clone()
        .cancel_call(call::CancelCallRequest {
            call_id: cancelled.clone(),
            reason: "closed early".into(),
        })
        .await
        .expect("cancel");
    place(&mesh, "store-3", 5_000).await;
    let accepted = place(&mesh, "store-3", 6_000).await.call_id;
    eventually(PATIENCE, "the rider service to see the call", || {
        let mut r = clients.rider.clone();
        let call_id = accepted.clone();
        async move {
            Ok(r.get_delivery(rider::GetDeliveryRequest { call_id })
                .await
                .ok()
                .map(|_| ()))
        }
    })
    .await
    .expect("rider sees the call");
    clients
        .rider
        .clone()
        .accept_call(rider::AcceptCallRequest {
            call_id: accepted.clone(),
            rider_id: "rider-3".into(),
        })
        .await
        .expect("accept");
    scenario::wait_view(&clients, &cancelled, PATIENCE, |v| {
        v.status() == report::DeliveryStatus::Cancelled && v.payment_state() == report::PaymentState::Voided
    })
    .await
    .expect("the report shows the cancellation voided");
    wait_quiet(&mesh).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let into = format!("sqlite://{}/rebuilt.db?mode=rwc", dir.path().display());
    assert_eq!(
        baemin_rebuild(&mesh, &into, true).await,
        ExitCode::SUCCESS,
        "rebuild --compare finds no difference"
    );
    let live = baemin::rebuild::live_rows(&mut clients.report.clone())
        .await
        .expect("live rows");
    let rebuilt = baemin_report::rebuild::rows(&into).await.expect("rebuilt rows");
    assert_eq!(live.len(), 5);
    assert_eq!(rebuilt, live);
    let statuses: Vec<_> = live.iter().map(|v| v.status()).collect();
    for status in [
        report::DeliveryStatus::Completed,
        report::DeliveryStatus::Cancelled,
        report::DeliveryStatus::Called,
        report::DeliveryStatus::Accepted,
    ] {
        assert!(statuses.contains(&status), "{status:?} in {statuses:?}");
    }

    assert_eq!(
        baemin_rebuild(&mesh, &into, false).await,
        ExitCode::FAILURE,
        "a target that holds a model is refused"
    );
    assert_eq!(baemin_report::rebuild::rows(&into).await.expect("rows"), live);
    mesh.stop().await;
}
