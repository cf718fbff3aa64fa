//! The randomized history checker, in the spirit of Jepsen: seeded histories of clients (place, racing
//! accepts, pick-ups, completions, cancellations, a pick-up racing a cancellation, retries with the same
//! key) and faults (payment killed or slow, a service killed, NATS stopped) run against the mesh as its
//! own processes; once every fault has ended, every invariant of DESIGN.md ("Domain") is checked
//! against all four services, payment's table and the event stream. A broken invariant fails the test
//! with the seed, the history (shrunk to a smaller one that still fails, within a time budget) and what
//! broke.
//!
//! `scripts/test` runs it for about a minute. Longer, or one seed again:
//! `BAEMIN_CHECK_SECONDS=1800 [BAEMIN_CHECK_SEED=<seed>] cargo nextest run --workspace -E 'test(randomized_histories)'`
//! (README, "The randomized checker").

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    time::Duration,
};

use baemin_mesh_testkit::{DbKind, SlowProxy};
use baemin_proto::{
    call::v1 as call,
    events::v1::{Envelope, envelope::Event},
    payment::v1 as payment,
    report::v1 as report,
    rider::v1 as rider,
};
use prost::Message as _;
use sea_orm::{ConnectionTrait, Statement};
use tokio::time::Instant;
use tonic::Code;

use crate::{
    histories::{Op, Victim, generate, without_chunks},
    ledger::{connect, count},
    support::{QUICK_REPAIRS, Svc, TestMesh, request_id},
};

/// Besides [`QUICK_REPAIRS`]: redeliveries and a breaker quick enough for a history to settle within
/// the test's patience.
const QUICK: [(&str, &str); 3] = [
    ("PAYMENT_BREAKER_OPEN_WAIT", "500ms"),
    ("EVENT_ACK_WAIT", "2s"),
    ("STARTUP_TIMEOUT", "30s"),
];

/// How long the mesh may take to settle once every fault has ended.
const SETTLE: Duration = Duration::from_secs(60);

/// Longest a client waits for one answer.
const ANSWER: Duration = Duration::from_secs(5);

/// What one run is made of, read from the environment.
struct Plan {
    /// Rounds start while this much time has not passed (at least one round runs).
    budget: Duration,
    /// The first round's seed; round `n` uses `seed + n`.
    seed: u64,
    /// Steps per history.
    steps: usize,
    /// Time spent looking for a smaller failing history.
    shrink: Duration,
}

impl Plan {
    fn from_env() -> Self {
        let number = |key: &str| std::env::var(key).ok().and_then(|v| v.parse::<u64>().ok());
        let seed = number("BAEMIN_CHECK_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
        Self {
            budget: Duration::from_secs(number("BAEMIN_CHECK_SECONDS").unwrap_or(60)),
            seed,
            steps: number("BAEMIN_CHECK_STEPS").map_or(60, |n| n as usize),
            shrink: Duration::from_secs(number("BAEMIN_CHECK_SHRINK_SECONDS").unwrap_or(180)),
        }
    }
}

/// How a history's mesh is set up, from its seed (so a seed alone reproduces a run): SQLite or
/// PostgreSQL, `reject` or `defer`, each seed in turn.
#[derive(Debug, Clone, Copy)]
struct Setup {
    kind: DbKind,
    fallback: &'static str,
}

impl Setup {
    fn of_seed(seed: u64) -> Self {
        Self {
            kind: if seed.is_multiple_of(2) {
                DbKind::Sqlite
            } else {
                DbKind::Postgres
            },
            fallback: if (seed / 2).is_multiple_of(2) {
                "reject"
            } else {
                "defer"
            },
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_histories_of_clients_and_faults_keep_every_domain_invariant() {
    let plan = Plan::from_env();
    let started = Instant::now();
    println!(
        "checker: seed {} (BAEMIN_CHECK_SEED), {} steps per history, about {:?}",
        plan.seed, plan.steps, plan.budget
    );
    let mut round = 0;
    while round == 0 || started.elapsed() < plan.budget {
        let seed = plan.seed.wrapping_add(round);
        let setup = Setup::of_seed(seed);
        let history = generate(seed, plan.steps);
        match run(setup, &history).await {
            Ok(summary) => println!("checker: round {round}, seed {seed}, {setup:?}: {summary}"),
            Err(broken) => {
                let (history, broken) = shrink(setup, history, broken, plan.shrink).await;
                panic!("{}", failure_report(seed, setup, &history, &broken));
            }
        }
        round += 1;
    }
    println!("checker: {round} histories, every invariant held");
}

/// Runs `history` on a fresh mesh, ends every fault, and checks the invariants until they hold or
/// [`SETTLE`] passes. `Ok` is a one-line summary; `Err` what still breaks.
async fn run(setup: Setup, history: &[Op]) -> Result<String, Vec<String>> {
    let mut settings = QUICK_REPAIRS.to_vec();
    settings.extend(QUICK);
    settings.push(("PLACE_CALL_FALLBACK", setup.fallback));
    let mut mesh = TestMesh::processes(setup.kind, &settings).await;
    // Call and rider reach payment through a proxy that can slow it down; payment restarts on its
    // address, so the proxy finds it again.
    let proxy = SlowProxy::start(mesh.addr(Svc::Payment).expect("payment runs")).await;
    mesh.set("PAYMENT_URL", proxy.url());
    for svc in [Svc::Call, Svc::Rider] {
        mesh.stop_service(svc).await;
        mesh.start_service(svc).await;
    }
    let mut world = World {
        mesh,
        proxy,
        slots: HashMap::new(),
        told: Told::default(),
        broken: Vec::new(),
        nats_down: false,
        waiting_for_nats: Vec::new(),
    };
    let verbose = std::env::var_os("BAEMIN_CHECK_VERBOSE").is_some();
    for (n, op) in history.iter().enumerate() {
        let before = world.told.answers.clone();
        world.apply(op).await;
        if verbose {
            let after: Vec<_> = world
                .told
                .answers
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(*v))
                .map(|(k, (ok, refused))| {
                    let (ok0, refused0) = before.get(k).copied().unwrap_or_default();
                    format!("{k}: {} ok, {} refused", ok - ok0, refused - refused0)
                })
                .collect();
            println!("  {n:>3}. {op}  -> {}", after.join("; "));
        }
    }
    world.end_faults().await;
    let deadline = Instant::now() + SETTLE;
    let outcome = loop {
        let broken = world.audit().await;
        if broken.is_empty() {
            break Ok(world.summary());
        }
        if Instant::now() >= deadline {
            break Err(broken);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let World {
        mesh, told, mut broken, ..
    } = world;
    mesh.stop().await;
    // What a client was told that contradicts itself fails at once, settled or not.
    broken.extend(told.contradictions);
    match outcome {
        Ok(summary) if broken.is_empty() => Ok(summary),
        Ok(_) => Err(broken),
        Err(mut still) => {
            still.extend(broken);
            Err(still)
        }
    }
}

/// Looks for a shorter history that still breaks an invariant, leaving out chunks of steps (halves,
/// then quarters, …) for as long as `budget` allows. Returns the shortest found and what it broke.
async fn shrink(setup: Setup, history: Vec<Op>, broken: Vec<String>, budget: Duration) -> (Vec<Op>, Vec<String>) {
    let started = Instant::now();
    let (mut best, mut best_broken) = (history, broken);
    let mut chunk = best.len() / 2;
    while chunk >= 1 && started.elapsed() < budget {
        let mut smaller = None;
        for candidate in without_chunks(&best, chunk) {
            if started.elapsed() >= budget {
                break;
            }
            if let Err(broken) = run(setup, &candidate).await {
                smaller = Some((candidate, broken));
                break;
            }
        }
        match smaller {
            Some((candidate, broken)) => {
                println!("checker: still fails with {} steps", candidate.len());
                (best, best_broken) = (candidate, broken);
                chunk = chunk.min(best.len() / 2);
            }
            None => chunk /= 2,
        }
    }
    (best, best_broken)
}

fn failure_report(seed: u64, setup: Setup, history: &[Op], broken: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "an invariant broke: seed {seed} ({setup:?}); rerun with BAEMIN_CHECK_SEED={seed} BAEMIN_CHECK_SECONDS=0"
    );
    let _ = writeln!(out, "smallest failing history found ({} steps):", history.len());
    for (n, op) in history.iter().enumerate() {
        let _ = writeln!(out, "  {n:>3}. {op}");
    }
    let _ = writeln!(out, "broken:");
    for b in broken {
        let _ = writeln!(out, "  - {b}");
    }
    out
}

/// What the clients were told OK, and anything they were told that contradicts itself.
#[derive(Default)]
struct Told {
    /// Slot → the call id PlaceCall answered.
    placed: HashMap<usize, String>,
    /// Call id → the rider an AcceptCall was answered OK for.
    taken_by: HashMap<String, String>,
    picked: HashSet<String>,
    /// Call id → the rider told its completion is OK.
    completed: HashMap<String, String>,
    cancelled: HashSet<String>,
    /// OK answers and refusals, per step kind.
    answers: HashMap<&'static str, (usize, usize)>,
    contradictions: Vec<String>,
}

impl Told {
    fn answered(&mut self, kind: &'static str, ok: bool) {
        let tally = self.answers.entry(kind).or_default();
        if ok {
            tally.0 += 1;
        } else {
            tally.1 += 1;
        }
    }
}

/// A mesh running a history.
struct World {
    mesh: TestMesh,
    proxy: SlowProxy,
    /// Slot → (idempotency key, fee), made by the slot's first PlaceCall.
    slots: HashMap<usize, (String, i64)>,
    told: Told,
    /// Answers no fault explains (a client's mistake answered INTERNAL, …).
    broken: Vec<String>,
    /// Whether NATS is stopped: a service started now would wait in its start-up for NATS, so it is
    /// started once NATS is back.
    nats_down: bool,
    /// Services to start once NATS is back.
    waiting_for_nats: Vec<Svc>,
}

impl World {
    async fn apply(&mut self, op: &Op) {
        match op {
            Op::Place { slot } => self.place(*slot).await,
            Op::PlaceConcurrently { slot, copies } => {
                let (key, fee) = self.slot(*slot);
                let places = (0..*copies).map(|_| {
                    let mut client = self.mesh.clients.call.clone();
                    let request = place_request(&key, fee);
                    async move { answer(client.place_call(request)).await }
                });
                for outcome in futures::future::join_all(places).await {
                    self.record_place(*slot, outcome);
                }
            }
            Op::Accept { slot, riders } => {
                let Some(call_id) = self.call(*slot) else { return };
                // Riders take calls they see on the board.
                self.wait_on_board(&call_id).await;
                let accepts = riders.iter().map(|r| {
                    let mut client = self.mesh.clients.rider.clone();
                    let request = rider::AcceptCallRequest {
                        call_id: call_id.clone(),
                        rider_id: format!("r-{r}"),
                    };
                    async move { (format!("r-{r}"), answer(client.accept_call(request)).await) }
                });
                for (rider_id, outcome) in futures::future::join_all(accepts).await {
                    self.told.answered("accept", outcome.is_ok());
                    match outcome {
                        Ok(_) => {
                            self.told.taken_by.insert(call_id.clone(), rider_id);
                        }
                        Err(status) => self.unexplained("AcceptCall", &status),
                    }
                }
            }
            Op::PickUp { slot, rider } => {
                let Some(call_id) = self.call(*slot) else { return };
                let outcome = self.pick_up(&call_id, &self.rider(&call_id, *rider)).await;
                self.record_pick_up(&call_id, outcome);
            }
            Op::Complete { slot, rider } => {
                let Some(call_id) = self.call(*slot) else { return };
                let rider_id = self.rider(&call_id, *rider);
                let mut client = self.mesh.clients.rider.clone();
                let request = rider::CompleteDeliveryRequest {
                    call_id: call_id.clone(),
                    rider_id: rider_id.clone(),
                };
                let outcome = answer(client.complete_delivery(request)).await;
                self.told.answered("complete", outcome.is_ok());
                match outcome {
                    Ok(_) => {
                        self.told.completed.insert(call_id, rider_id);
                    }
                    Err(status) => self.unexplained("CompleteDelivery", &status),
                }
            }
            Op::Cancel { slot } => {
                let Some(call_id) = self.call(*slot) else { return };
                let outcome = self.cancel(&call_id).await;
                self.record_cancel(&call_id, outcome);
            }
            Op::PickUpWhileCancelling { slot, rider } => {
                let Some(call_id) = self.call(*slot) else { return };
                let rider_id = self.rider(&call_id, *rider);
                let (picked, cancelled) = tokio::join!(self.pick_up(&call_id, &rider_id), self.cancel(&call_id));
                self.record_pick_up(&call_id, picked);
                self.record_cancel(&call_id, cancelled);
            }
            Op::PaymentDown => self.mesh.kill_service(Svc::Payment).await,
            Op::PaymentUp => self.start_if_down(Svc::Payment).await,
            Op::PaymentSlow => self.proxy.set_delay(Duration::from_millis(300)),
            Op::PaymentFast => self.proxy.set_delay(Duration::ZERO),
            Op::Kill(victim) => self.mesh.kill_service(svc(*victim)).await,
            Op::Restart(victim) => self.start_if_down(svc(*victim)).await,
            Op::NatsDown => {
                self.mesh.nats.stop();
                self.nats_down = true;
            }
            Op::NatsUp => self.nats_up().await,
        }
    }

    /// Waits (up to a couple of seconds: the rider service or NATS may be down) until the rider service
    /// has the call.
    async fn wait_on_board(&self, call_id: &str) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let mut client = self.mesh.clients.rider.clone();
            let request = rider::GetDeliveryRequest {
                call_id: call_id.to_owned(),
            };
            if answer(client.get_delivery(request)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The key and fee of `slot`, made at its first PlaceCall.
    fn slot(&mut self, slot: usize) -> (String, i64) {
        self.slots
            .entry(slot)
            .or_insert_with(|| (request_id(), 1_000 + 10 * slot as i64))
            .clone()
    }

    async fn place(&mut self, slot: usize) {
        let (key, fee) = self.slot(slot);
        let mut client = self.mesh.clients.call.clone();
        let outcome = answer(client.place_call(place_request(&key, fee))).await;
        self.record_place(slot, outcome);
    }

    fn record_place(&mut self, slot: usize, outcome: Result<tonic::Response<call::PlaceCallResponse>, tonic::Status>) {
        self.told.answered("place", outcome.is_ok());
        match outcome {
            Ok(placed) => {
                let call_id = placed.into_inner().call.expect("call").call_id;
                if let Some(earlier) = self.told.placed.insert(slot, call_id.clone())
                    && earlier != call_id
                {
                    self.told.contradictions.push(format!(
                        "one key, two calls: slot #{slot} was answered {earlier} and then {call_id}"
                    ));
                }
            }
            Err(status) => self.unexplained("PlaceCall", &status),
        }
    }

    async fn pick_up(&self, call_id: &str, rider_id: &str) -> Result<(), tonic::Status> {
        let mut client = self.mesh.clients.rider.clone();
        let request = rider::PickUpRequest {
            call_id: call_id.to_owned(),
            rider_id: rider_id.to_owned(),
        };
        answer(client.pick_up(request)).await.map(drop)
    }

    fn record_pick_up(&mut self, call_id: &str, outcome: Result<(), tonic::Status>) {
        self.told.answered("pick up", outcome.is_ok());
        match outcome {
            Ok(()) => {
                self.told.picked.insert(call_id.to_owned());
            }
            Err(status) => self.unexplained("PickUp", &status),
        }
    }

    async fn cancel(&self, call_id: &str) -> Result<call::Call, tonic::Status> {
        let mut client = self.mesh.clients.call.clone();
        let request = call::CancelCallRequest {
            call_id: call_id.to_owned(),
            reason: "the customer left".into(),
        };
        answer(client.cancel_call(request))
            .await
            .map(|r| r.into_inner().call.expect("call"))
    }

    fn record_cancel(&mut self, call_id: &str, outcome: Result<call::Call, tonic::Status>) {
        self.told.answered("cancel", outcome.is_ok());
        match outcome {
            Ok(cancelled) if cancelled.status() == call::CallStatus::Cancelled => {
                self.told.cancelled.insert(call_id.to_owned());
            }
            Ok(other) => self.told.contradictions.push(format!(
                "CancelCall of {call_id} answered OK with status {:?}",
                other.status()
            )),
            Err(status) => self.unexplained("CancelCall", &status),
        }
    }

    /// An error no fault explains: INTERNAL ever, or UNKNOWN while nothing is down (a killed
    /// service's broken connection may surface as UNKNOWN).
    fn unexplained(&mut self, rpc: &str, status: &tonic::Status) {
        let calm = !self.nats_down
            && [Svc::Payment, Svc::Call, Svc::Rider, Svc::Report]
                .into_iter()
                .all(|svc| self.mesh.admin_url(svc).is_some());
        if status.code() == Code::Internal || (calm && status.code() == Code::Unknown) {
            self.broken
                .push(format!("{rpc} answered {:?}: {}", status.code(), status.message()));
        }
    }

    fn call(&self, slot: usize) -> Option<String> {
        self.told.placed.get(&slot).cloned()
    }

    /// `r-<rider>`, or the rider an AcceptCall of `call_id` was answered OK for (`r-0` if none).
    fn rider(&self, call_id: &str, rider: Option<u8>) -> String {
        match rider {
            Some(r) => format!("r-{r}"),
            None => self.told.taken_by.get(call_id).cloned().unwrap_or_else(|| "r-0".into()),
        }
    }

    async fn start_if_down(&mut self, svc: Svc) {
        if self.nats_down {
            if !self.waiting_for_nats.contains(&svc) {
                self.waiting_for_nats.push(svc);
            }
        } else if self.mesh.admin_url(svc).is_none() {
            self.mesh.start_service(svc).await;
        }
    }

    async fn nats_up(&mut self) {
        if self.nats_down {
            self.mesh.nats.restart().await;
            self.nats_down = false;
        }
        for svc in std::mem::take(&mut self.waiting_for_nats) {
            self.start_if_down(svc).await;
        }
    }

    /// Ends every fault: payment at full speed, NATS and every service running.
    async fn end_faults(&mut self) {
        self.proxy.set_delay(Duration::ZERO);
        self.nats_up().await;
        for svc in [Svc::Payment, Svc::Call, Svc::Rider, Svc::Report] {
            self.start_if_down(svc).await;
        }
    }

    fn summary(&self) -> String {
        let mut kinds: Vec<_> = self.told.answers.iter().collect();
        kinds.sort();
        let answers: Vec<String> = kinds
            .into_iter()
            .map(|(kind, (ok, refused))| format!("{kind} {ok} ok/{refused} refused"))
            .collect();
        format!(
            "{} calls; {}; told OK: {} picked up, {} completed, {} cancelled",
            self.told.placed.len(),
            answers.join(", "),
            self.told.picked.len(),
            self.told.completed.len(),
            self.told.cancelled.len()
        )
    }

    /// Every invariant of DESIGN.md ("Domain"), as the services, payment's table and the event stream
    /// say now; what breaks, in words.
    async fn audit(&self) -> Vec<String> {
        let mut broken = Vec::new();
        let calls = match all_calls(&self.mesh).await {
            Ok(calls) => calls,
            Err(status) => return vec![format!("ListCalls failed: {status:?}")],
        };
        for (slot, call_id) in &self.told.placed {
            if !calls.contains_key(call_id) {
                broken.push(format!(
                    "PlaceCall of slot #{slot} answered OK with {call_id}, which does not exist"
                ));
            }
        }
        let payments = match payment_rows(&self.mesh).await {
            Ok(rows) => rows,
            Err(err) => return vec![format!("cannot read payment's table: {err}")],
        };
        for (call_id, status) in &payments {
            if status != "VOIDED" && !calls.contains_key(call_id) {
                broken.push(format!("a fee stays {status} for call {call_id}, which does not exist"));
            }
        }
        let events = match stream_counts(&self.mesh).await {
            Ok(events) => events,
            Err(err) => return vec![format!("cannot read the event stream: {err}")],
        };
        for (call_id, c) in &calls {
            self.audit_call(call_id, c, &events, &mut broken).await;
        }
        // Quiescence: nothing left under way (write-ahead marks and intents all finished).
        for (svc, what, sql) in LEFT_UNDER_WAY {
            let n = count_rows(&self.mesh, svc, sql).await;
            if n > 0 {
                broken.push(format!("{n} {what} still under way"));
            }
        }
        broken
    }

    async fn audit_call(
        &self,
        call_id: &str,
        c: &call::Call,
        events: &HashMap<(String, &'static str), usize>,
        broken: &mut Vec<String>,
    ) {
        let clients = &self.mesh.clients;
        let id = || call_id.to_owned();
        let delivery = clients
            .rider
            .clone()
            .get_delivery(rider::GetDeliveryRequest { call_id: id() })
            .await;
        let view = clients
            .report
            .clone()
            .get_delivery_view(report::GetDeliveryViewRequest { call_id: id() })
            .await;
        let paid = clients
            .payment
            .clone()
            .get_payment(payment::GetPaymentRequest { call_id: id() })
            .await;
        let (Ok(delivery), Ok(view), Ok(paid)) = (delivery, view, paid) else {
            broken.push(format!(
                "call {call_id}: not known to every service yet (rider, report, payment)"
            ));
            return;
        };
        let d = delivery.into_inner().delivery.expect("delivery");
        let v = view.into_inner().view.expect("view");
        let p = paid.into_inner().payment.expect("payment");
        let status = c.status();
        let mut wrong = |what: String| broken.push(format!("call {call_id} ({status:?}): {what}"));
        // One status everywhere (the rider service names CALLED "OPEN"; the numbers are shared).
        if d.status != c.status || v.status != c.status {
            wrong(format!("rider says {:?}, report says {:?}", d.status(), v.status()));
        }
        if d.fee != c.fee || v.fee != c.fee || p.fee != c.fee {
            wrong(format!(
                "fees differ: call {}, rider {}, report {}, payment {}",
                c.fee, d.fee, v.fee, p.fee
            ));
        }
        let (paid_status, call_state, view_state) = (
            p.status().as_str_name().trim_start_matches("PAYMENT_STATUS_"),
            c.payment_state().as_str_name().trim_start_matches("PAYMENT_STATE_"),
            v.payment_state().as_str_name().trim_start_matches("PAYMENT_STATE_"),
        );
        let want = match status {
            call::CallStatus::Cancelled => "VOIDED",
            call::CallStatus::Completed => "SETTLED",
            _ => "REGISTERED",
        };
        if (paid_status, call_state, view_state) != (want, want, want) {
            wrong(format!(
                "payment state: payment {paid_status}, call {call_state}, report {view_state}; want {want}"
            ));
        }
        let settled_events = events.get(&(call_id.to_owned(), "settled")).copied().unwrap_or(0);
        let voided_events = events.get(&(call_id.to_owned(), "voided")).copied().unwrap_or(0);
        match status {
            call::CallStatus::Completed => {
                if settled_events != 1
                    || p.rider_payout <= 0
                    || d.payout != p.rider_payout
                    || c.settled_amount != p.rider_payout
                    || v.settled_amount != p.rider_payout
                {
                    wrong(format!(
                        "settled {settled_events} times; payout payment {}, rider {}, call {}, report {}",
                        p.rider_payout, d.payout, c.settled_amount, v.settled_amount
                    ));
                }
                if p.rider_id != d.rider_id {
                    wrong(format!("paid to {} but delivered by {}", p.rider_id, d.rider_id));
                }
            }
            call::CallStatus::Cancelled if voided_events != 1 => wrong(format!("voided {voided_events} times")),
            call::CallStatus::Picked if p.rider_id != d.rider_id || p.held_at.is_none() => wrong(format!(
                "picked up by {} but the fee is held for {:?}",
                d.rider_id, p.rider_id
            )),
            call::CallStatus::Called | call::CallStatus::Accepted if p.held_at.is_some() => wrong(format!(
                "the fee is held for {} but the pick-up was never recorded",
                p.rider_id
            )),
            _ => {}
        }
        if settled_events > 1 || voided_events > 1 {
            wrong(format!("settled {settled_events} and voided {voided_events} times"));
        }
        // No OK answer reversed.
        if self.told.picked.contains(call_id)
            && !matches!(status, call::CallStatus::Picked | call::CallStatus::Completed)
        {
            wrong("PickUp was answered OK".into());
        }
        if let Some(rider_id) = self.told.completed.get(call_id)
            && (status != call::CallStatus::Completed || &p.rider_id != rider_id)
        {
            wrong(format!("CompleteDelivery by {rider_id} was answered OK"));
        }
        if self.told.cancelled.contains(call_id) && status != call::CallStatus::Cancelled {
            wrong("CancelCall was answered OK".into());
        }
    }
}

fn svc(victim: Victim) -> Svc {
    match victim {
        Victim::Call => Svc::Call,
        Victim::Rider => Svc::Rider,
        Victim::Report => Svc::Report,
    }
}

/// A client's answer within [`ANSWER`]; a client that waited longer gives up (DEADLINE_EXCEEDED).
async fn answer<T>(
    request: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<tonic::Response<T>, tonic::Status> {
    tokio::time::timeout(ANSWER, request)
        .await
        .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("the client gave up")))
}

/// Every call the call service knows, by id.
async fn all_calls(mesh: &TestMesh) -> Result<HashMap<String, call::Call>, tonic::Status> {
    let mut calls = HashMap::new();
    let mut page_token = String::new();
    loop {
        let page = mesh
            .clients
            .call
            .clone()
            .list_calls(call::ListCallsRequest {
                page_size: 100,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        calls.extend(page.calls.into_iter().map(|c| (c.call_id.clone(), c)));
        if page.next_page_token.is_empty() {
            return Ok(calls);
        }
        page_token = page.next_page_token;
    }
}

/// What a settled mesh has no rows of: (database, what, the count).
const LEFT_UNDER_WAY: [(Svc, &str, &str); 4] = [
    (
        Svc::Call,
        "cancellations",
        "SELECT COUNT(*) AS n FROM calls WHERE cancel_requested_at IS NOT NULL",
    ),
    (
        Svc::Call,
        "PlaceCall intents",
        "SELECT COUNT(*) AS n FROM registrations",
    ),
    (
        Svc::Rider,
        "pick-up holds",
        "SELECT COUNT(*) AS n FROM deliveries WHERE hold_requested_at IS NOT NULL",
    ),
    (
        Svc::Rider,
        "settlements",
        "SELECT COUNT(*) AS n FROM deliveries WHERE settle_requested_at IS NOT NULL",
    ),
];

async fn count_rows(mesh: &TestMesh, svc: Svc, sql: &str) -> i64 {
    let db = connect(mesh.database_url(svc)).await;
    let n = count(&db, sql).await;
    db.close().await.ok();
    n
}

/// Every row of payment's table: call id → status.
async fn payment_rows(mesh: &TestMesh) -> Result<Vec<(String, String)>, sea_orm::DbErr> {
    let db = connect(mesh.database_url(Svc::Payment)).await;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT call_id, status FROM payments",
        ))
        .await;
    db.close().await.ok();
    rows?
        .into_iter()
        .map(|r| Ok((r.try_get("", "call_id")?, r.try_get("", "status")?)))
        .collect()
}

fn place_request(key: &str, fee: i64) -> call::PlaceCallRequest {
    call::PlaceCallRequest {
        request_id: key.to_owned(),
        restaurant_id: "checker".into(),
        destination: "Seoul".into(),
        fee,
    }
}

/// How many PaymentSettled and PaymentVoided events the stream holds per call id.
async fn stream_counts(mesh: &TestMesh) -> anyhow::Result<HashMap<(String, &'static str), usize>> {
    use futures::StreamExt;
    let client = async_nats::connect(mesh.nats.url()).await?;
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream(baemin_mesh_events::STREAM_NAME).await?;
    let total = stream.info().await?.state.messages as usize;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    let mut counts = HashMap::new();
    for _ in 0..total {
        let Some(message) = tokio::time::timeout(ANSWER, messages.next()).await?.transpose()? else {
            break;
        };
        let envelope = Envelope::decode(message.payload.as_ref())?;
        let kind = match envelope.event {
            Some(Event::PaymentSettled(_)) => "settled",
            Some(Event::PaymentVoided(_)) => "voided",
            _ => continue,
        };
        *counts.entry((envelope.call_id, kind)).or_default() += 1;
    }
    Ok(counts)
}
