//! The scenarios: what each call does, who makes it, and what else is watched meanwhile.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use baemin::clients::{Clients, Credentials, Transport};
use baemin_mesh_server::identity::Role;
use baemin_proto::{
    call::v1::{self as call, call_service_client::CallServiceClient},
    report::v1 as report,
    rider::v1 as rider,
};
use futures::StreamExt;
use tokio::time::Instant;

use crate::{
    echo,
    load::{Measured, Owned, Plan, Shape, drive},
    mesh::Urls,
    sightings::Sightings,
};

/// How many restaurants (and riders) the load is spread over: one per caller of the closed loop.
const ACTORS: usize = 64;
/// The fee of every benchmark call, KRW.
const FEE: i64 = 3_000;
/// Longest wait for an event to reach a service before a lifecycle counts as failed.
const EVENT_PATIENCE: Duration = Duration::from_secs(30);

/// The mesh the scenarios drive, and how hard.
#[derive(Clone)]
pub struct Target {
    /// Load plan of every scenario.
    pub plan: Plan,
    /// Callers of the closed-loop scenarios.
    pub concurrency: usize,
    /// Straight to the services, one connection each.
    pub clients: Clients,
    /// Through the gateway, one connection, one client per restaurant (each with its own token).
    pub via_gateway: Arc<Vec<CallServiceClient<Transport>>>,
    /// Restaurant and rider ids of this run start with this (runs against a running mesh do not mix).
    pub run: String,
}

impl Target {
    /// Clients of the mesh at `urls`, with restaurant tokens signed by `jwt_secret`.
    pub fn new(plan: Plan, concurrency: usize, urls: &Urls, jwt_secret: &str) -> anyhow::Result<Self> {
        let run = format!("bench-{}", &uuid::Uuid::now_v7().simple().to_string()[..12]);
        let gateway = baemin::clients::channel(&urls.gateway)?;
        let via_gateway = (0..ACTORS)
            .map(|i| {
                let token = baemin::token::mint(
                    jwt_secret,
                    Role::Restaurant,
                    &restaurant(&run, i as u64),
                    Duration::from_secs(3600),
                )?;
                Ok(CallServiceClient::new(baemin::clients::transport(
                    gateway.clone(),
                    Credentials::bearer(Some(&token))?,
                )))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            plan,
            concurrency,
            clients: Clients::new(&urls.services)?,
            via_gateway: Arc::new(via_gateway),
            run,
        })
    }
}

fn restaurant(run: &str, n: u64) -> String {
    format!("{run}-store-{}", n % ACTORS as u64)
}

fn place_request(run: &str, n: u64) -> call::PlaceCallRequest {
    call::PlaceCallRequest {
        request_id: uuid::Uuid::now_v7().simple().to_string(),
        restaurant_id: restaurant(run, n),
        destination: "서울 강남구 테헤란로 427".into(),
        fee: FEE,
    }
}

/// The raw tonic echo, closed loop over one connection.
pub async fn echo(plan: &Plan, concurrency: usize, echo: &echo::EchoProcess) -> anyhow::Result<Measured> {
    let client = echo.client()?;
    Ok(drive("echo (raw tonic)", plan, Shape::Closed(concurrency), move || {
        let mut client = client.clone();
        async move {
            client.echo(echo::message()).await?;
            Ok(())
        }
    })
    .await)
}

/// JetStream publishes, each awaited to its ack, into a scratch file stream (`replicas` copies) on the
/// nats-servers at `nats_url`: the floor under every event figure. Each event of the mesh is one such
/// publish (about the size of an envelope, with its `Nats-Msg-Id`), and a server that syncs every write
/// syncs each before acknowledging it, one after the other within a stream.
pub async fn jetstream_publish(
    plan: &Plan,
    concurrency: usize,
    nats_url: &str,
    replicas: usize,
) -> anyhow::Result<Measured> {
    use async_nats::jetstream::{self, stream};
    const STREAM: &str = "BENCH_FLOOR";
    let servers = baemin_mesh_events::server_addrs(nats_url).map_err(anyhow::Error::msg)?;
    let client = async_nats::connect(servers)
        .await
        .context("connecting to nats-server")?;
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec!["bench.floor.>".into()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .context("creating the scratch stream")?;
    let payload = bytes::Bytes::from(vec![b'e'; 256]);
    let measured = drive("JetStream publish", plan, Shape::Closed(concurrency), {
        let js = js.clone();
        move || {
            let (js, payload) = (js.clone(), payload.clone());
            async move {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", uuid::Uuid::now_v7().to_string().as_str());
                js.publish_with_headers("bench.floor.event", headers, payload)
                    .await?
                    .await?;
                Ok(())
            }
        }
    })
    .await;
    // Best effort: the servers and their storage go with the mesh anyway.
    if let Err(err) = js.delete_stream(STREAM).await {
        eprintln!("warning: the scratch stream {STREAM} was not deleted: {err}");
    }
    Ok(measured)
}

/// The event pipeline seen while PlaceCall runs: every call's lag to the report's stream.
pub struct Placed {
    /// The PlaceCall calls.
    pub calls: Measured,
    /// When each call showed up in the report.
    pub sightings: Sightings,
    /// From the end of the load until the report showed every placed call (None: not within 30 s).
    pub drain: Option<Duration>,
}

/// Who PlaceCall goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Through the gateway, as restaurants with tokens.
    Gateway,
    /// Straight to the call service, as an internal backend.
    Direct,
}

/// PlaceCall under `shape`, with the report's stream watched for every call (event lag, drain).
pub async fn place_calls(target: &Target, route: Route, shape: Shape) -> anyhow::Result<Placed> {
    let sightings = Sightings::default();
    let watcher = watch_report(target, sightings.clone()).await?;
    let n = Arc::new(AtomicU64::new(0));
    let (t, s) = (target.clone(), sightings.clone());
    let name = match (route, shape) {
        (Route::Gateway, _) => "PlaceCall via gateway".to_owned(),
        (Route::Direct, Shape::Closed(_)) => "PlaceCall direct".to_owned(),
        (Route::Direct, Shape::Open(rate)) => format!("event lag @ {rate:.0}/s"),
    };
    let calls = drive(&name, &target.plan, shape, move || {
        let i = n.fetch_add(1, Ordering::Relaxed);
        let mut client = match route {
            Route::Gateway => t.via_gateway[i as usize % ACTORS].clone(),
            Route::Direct => t.clients.call.clone(),
        };
        let (run, s) = (t.run.clone(), s.clone());
        async move {
            let placed = client.place_call(place_request(&run, i)).await?.into_inner();
            let id = placed.call.context("PlaceCall answered no call")?.call_id;
            s.placed(id, Instant::now());
            Ok(())
        }
    })
    .await;
    let drain = drained(&sightings, Duration::from_secs(30)).await;
    drop(watcher);
    Ok(Placed {
        calls,
        sightings,
        drain,
    })
}

/// The whole delivery per caller: place → (the rider board shows it) → accept → pick up → complete,
/// which settles the fee with payment synchronously.
pub struct Lifecycles {
    /// Completed deliveries (latency: the whole lifecycle).
    pub deliveries: Measured,
    /// Deliveries completed in the run (warm-up included).
    pub completed: u64,
    /// Of those, how many the report showed settled within 30 s of the end.
    pub settled_in_report: u64,
}

/// See [`Lifecycles`].
pub async fn lifecycle(target: &Target) -> anyhow::Result<Lifecycles> {
    let board = Sightings::default();
    let watcher = watch_board(target, board.clone()).await?;
    let before = stats(target).await?;
    let n = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let (t, done) = (target.clone(), Arc::clone(&completed));
    let deliveries = drive(
        "full lifecycle",
        &target.plan,
        Shape::Closed(target.concurrency),
        move || {
            let i = n.fetch_add(1, Ordering::Relaxed);
            let (mut c, run, board, done) = (t.clients.clone(), t.run.clone(), board.clone(), Arc::clone(&done));
            async move {
                let placed = c.call.place_call(place_request(&run, i)).await?.into_inner();
                let call_id = placed.call.context("PlaceCall answered no call")?.call_id;
                let on_board = tokio::time::timeout(EVENT_PATIENCE, board.wait_seen(&call_id)).await;
                board.forget(&call_id);
                on_board.context("the rider board did not show the call within 30 s")?;
                let rider_id = format!("{run}-rider-{}", i % ACTORS as u64);
                let ids = || (call_id.clone(), rider_id.clone());
                let (call_id, rider_id) = ids();
                c.rider
                    .accept_call(rider::AcceptCallRequest { call_id, rider_id })
                    .await?;
                let (call_id, rider_id) = ids();
                c.rider.pick_up(rider::PickUpRequest { call_id, rider_id }).await?;
                let (call_id, rider_id) = ids();
                c.rider
                    .complete_delivery(rider::CompleteDeliveryRequest { call_id, rider_id })
                    .await?;
                done.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        },
    )
    .await;
    drop(watcher);
    let completed = completed.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    let settled_in_report = loop {
        let settled = stats(target).await?.settled_count.saturating_sub(before.settled_count);
        let settled = u64::try_from(settled).unwrap_or_default();
        if settled >= completed || Instant::now() >= deadline {
            break settled;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    Ok(Lifecycles {
        deliveries,
        completed,
        settled_in_report,
    })
}

/// GetDeliveryView of rows the report holds, closed loop.
pub async fn get_view(target: &Target) -> anyhow::Result<Measured> {
    let ids = Arc::new(known_rows(target).await?);
    anyhow::ensure!(!ids.is_empty(), "the report holds no rows to read");
    let n = Arc::new(AtomicU64::new(0));
    let t = target.clone();
    Ok(drive(
        "GetDeliveryView",
        &target.plan,
        Shape::Closed(target.concurrency),
        move || {
            let i = n.fetch_add(1, Ordering::Relaxed) as usize;
            let mut report = t.clients.report.clone();
            let call_id = ids[i % ids.len()].clone();
            async move {
                report
                    .get_delivery_view(report::GetDeliveryViewRequest { call_id })
                    .await?;
                Ok(())
            }
        },
    )
    .await)
}

/// ListDeliveryViews, first page of 20 (newest first), closed loop.
pub async fn list_views(target: &Target) -> anyhow::Result<Measured> {
    let t = target.clone();
    Ok(drive(
        "ListDeliveryViews",
        &target.plan,
        Shape::Closed(target.concurrency),
        move || {
            let mut report = t.clients.report.clone();
            async move {
                let page = report
                    .list_delivery_views(report::ListDeliveryViewsRequest {
                        page_size: 20,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                anyhow::ensure!(!page.views.is_empty(), "ListDeliveryViews returned an empty page");
                Ok(())
            }
        },
    )
    .await)
}

/// Up to 2,000 call ids the report holds.
async fn known_rows(target: &Target) -> anyhow::Result<Vec<String>> {
    let mut report = target.clients.report.clone();
    let mut ids = Vec::new();
    let mut page_token = String::new();
    while ids.len() < 2_000 {
        let page = report
            .list_delivery_views(report::ListDeliveryViewsRequest {
                page_size: 200,
                page_token,
                ..Default::default()
            })
            .await
            .context("ListDeliveryViews")?
            .into_inner();
        ids.extend(page.views.into_iter().map(|v| v.call_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok(ids)
}

async fn stats(target: &Target) -> anyhow::Result<report::GetStatsResponse> {
    Ok(target
        .clients
        .report
        .clone()
        .get_stats(report::GetStatsRequest {})
        .await
        .context("GetStats")?
        .into_inner())
}

/// Waits until every placed call was seen; how long that took, or None after `patience`.
async fn drained(sightings: &Sightings, patience: Duration) -> Option<Duration> {
    let started = Instant::now();
    while sightings.unseen() > 0 {
        if started.elapsed() >= patience {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Some(started.elapsed())
}

/// Notes every row the report streams (its first showing is its CALLED row). Returns once the stream is
/// open, so no call placed afterwards is missed; the watch ends when the returned task is dropped.
async fn watch_report(target: &Target, sightings: Sightings) -> anyhow::Result<Owned<()>> {
    let mut stream = target
        .clients
        .report
        .clone()
        .watch_delivery_views(report::WatchDeliveryViewsRequest::default())
        .await
        .context("WatchDeliveryViews")?
        .into_inner();
    Ok(Owned::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            if let Some(view) = message.view {
                sightings.seen(&view.call_id, Instant::now());
            }
        }
    }))
}

/// Notes every call the rider board opens, until the returned task is dropped.
async fn watch_board(target: &Target, sightings: Sightings) -> anyhow::Result<Owned<()>> {
    let mut stream = target
        .clients
        .rider
        .clone()
        .watch_open_calls(rider::WatchOpenCallsRequest {})
        .await
        .context("WatchOpenCalls")?
        .into_inner();
    Ok(Owned::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            if message.change() == rider::watch_open_calls_response::Change::Opened
                && let Some(call) = message.call
            {
                sightings.seen(&call.call_id, Instant::now());
            }
        }
    }))
}
