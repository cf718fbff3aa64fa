//! The ownership matrix (issue 12 §1, OWASP API1 "broken object level authorization"): every method of
//! every service, read from the descriptors, called through a real gateway with a real token for each
//! role, on the caller's own object, on another's, and on none, against real services. Each cell has
//! the gRPC code it must answer; an answer that succeeds must hold no row of anyone else.
//!
//! Who may call a method at all comes from the gateway's policy table (`baemin_gateway::policy`): a role
//! the table refuses is answered PERMISSION_DENIED by the gateway itself, whatever the object. The
//! cells of the roles it admits are written out below, one table row per method, from the ownership
//! rules the services implement (README "Ownership", DESIGN.md "Errors"). A method of the descriptors
//! without a row here fails the test, and so does a row whose roles disagree with the policy table.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Mutex,
    time::Duration,
};

use baemin::{clients::Clients, scenario::eventually};
use baemin_gateway::policy::{Access, access};
use baemin_mesh_server::identity::Role::{self, Admin, Restaurant, Rider};
use baemin_mesh_testkit::DbKind;
use baemin_proto::{call::v1 as call, payment::v1 as payment, report::v1 as report, rider::v1 as rider};
use futures::future::BoxFuture;
use tonic::{Code, Status, Streaming};

use crate::{
    gateway::{start_gateway, through, token},
    support::{PATIENCE, TestMesh, request_id},
};

/// The restaurant every restaurant cell calls as, and the other one.
const STORE_1: &str = "store-1";
const STORE_2: &str = "store-2";
/// The rider every rider cell calls as, and the other one.
const RIDER_7: &str = "rider-7";
const RIDER_8: &str = "rider-8";
/// The admin every admin cell calls as.
const OPS: &str = "ops";

/// How long a watch that must send nothing is listened to.
const QUIET: Duration = Duration::from_millis(500);
/// Open calls set aside for the cells that take, pick up or complete one, or watch one close.
const SPARES: usize = 12;

const OK: Code = Code::Ok;
const DENIED: Code = Code::PermissionDenied;
const NOT_FOUND: Code = Code::NotFound;
const TAKEN: Code = Code::FailedPrecondition;

/// Which object a cell names, seen from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// No object: a list or a watch of everything the caller may see.
    Unnamed,
    /// The caller's own: store-1's call (taken and picked up by rider-7), or the caller as the actor
    /// or the filter.
    Mine,
    /// Another's: store-2's call taken by rider-8, or store-2's idempotency key (for an admin, anyone's
    /// call).
    Theirs,
    /// An open call of store-2 that nobody has taken.
    Open,
    /// The caller's request names another party as the actor or the filter (restaurant_id store-2,
    /// rider_id rider-8).
    AsOther,
    /// A call id nobody has used.
    Unknown,
}
use Case::{AsOther, Mine, Open, Theirs, Unknown, Unnamed};

/// What a row of an answer belongs to.
struct Row {
    call_id: String,
    restaurant: String,
    rider: String,
}

trait AsRow {
    fn row(&self) -> Row;
}

impl AsRow for call::Call {
    fn row(&self) -> Row {
        Row {
            call_id: self.call_id.clone(),
            restaurant: self.restaurant_id.clone(),
            rider: self.rider_id.clone(),
        }
    }
}

impl AsRow for rider::Delivery {
    fn row(&self) -> Row {
        Row {
            call_id: self.call_id.clone(),
            restaurant: self.restaurant_id.clone(),
            rider: self.rider_id.clone(),
        }
    }
}

impl AsRow for report::DeliveryView {
    fn row(&self) -> Row {
        Row {
            call_id: self.call_id.clone(),
            restaurant: self.restaurant_id.clone(),
            rider: self.rider_id.clone(),
        }
    }
}

impl AsRow for payment::Payment {
    fn row(&self) -> Row {
        Row {
            call_id: self.call_id.clone(),
            restaurant: String::new(),
            rider: self.rider_id.clone(),
        }
    }
}

fn rows<'a, T: AsRow + 'a>(items: impl IntoIterator<Item = &'a T>) -> Vec<Row> {
    items.into_iter().map(AsRow::row).collect()
}

/// A cell's answer: the rows it carried, or its status.
type Outcome = Result<Vec<Row>, Status>;
/// Makes the call of one cell: `(world, role, case)`.
type Runner = for<'a> fn(&'a World, Role, Case) -> BoxFuture<'a, Outcome>;

/// One method's row of the matrix.
struct Spec {
    /// The objects tried; a role the gateway refuses is tried with each.
    cases: &'static [Case],
    /// The answer for each role the gateway admits, per object.
    cells: &'static [(Role, Case, Code)],
    run: Runner,
}

macro_rules! runner {
    ($f:ident) => {
        |w, role, case| Box::pin($f(w, role, case))
    };
}

/// The matrix: "package.Service/Method" → its row.
fn table() -> BTreeMap<&'static str, Spec> {
    BTreeMap::from([
        // The call service: a restaurant places, reads, lists, cancels and watches its own calls only.
        (
            "baemin.call.v1.CallService/PlaceCall",
            Spec {
                // Theirs: replaying store-2's idempotency key (keys are scoped to the restaurant, so
                // this is a new call of the caller's, never store-2's call).
                cases: &[Mine, Theirs, AsOther],
                cells: &[
                    (Restaurant, Mine, OK),
                    (Restaurant, Theirs, OK),
                    (Restaurant, AsOther, DENIED),
                    (Admin, AsOther, OK),
                ],
                run: runner!(place_call),
            },
        ),
        (
            "baemin.call.v1.CallService/GetCall",
            Spec {
                cases: &[Mine, Theirs, Unknown],
                cells: &[
                    (Restaurant, Mine, OK),
                    (Restaurant, Theirs, DENIED),
                    (Restaurant, Unknown, NOT_FOUND),
                    (Admin, Theirs, OK),
                    (Admin, Unknown, NOT_FOUND),
                ],
                run: runner!(get_call),
            },
        ),
        (
            "baemin.call.v1.CallService/ListCalls",
            Spec {
                cases: &[Unnamed, Mine, AsOther],
                cells: &[
                    (Restaurant, Unnamed, OK),
                    (Restaurant, Mine, OK),
                    (Restaurant, AsOther, DENIED),
                    (Admin, Unnamed, OK),
                    (Admin, AsOther, OK),
                ],
                run: runner!(list_calls),
            },
        ),
        (
            "baemin.call.v1.CallService/CancelCall",
            Spec {
                cases: &[Mine, Theirs, Unknown],
                cells: &[
                    (Restaurant, Mine, OK),
                    (Restaurant, Theirs, DENIED),
                    (Restaurant, Unknown, NOT_FOUND),
                    (Admin, Theirs, OK),
                    (Admin, Unknown, NOT_FOUND),
                ],
                run: runner!(cancel_call),
            },
        ),
        (
            "baemin.call.v1.CallService/WatchCall",
            Spec {
                cases: &[Mine, Theirs, Unknown],
                cells: &[
                    (Restaurant, Mine, OK),
                    (Restaurant, Theirs, DENIED),
                    (Restaurant, Unknown, NOT_FOUND),
                    (Admin, Theirs, OK),
                    (Admin, Unknown, NOT_FOUND),
                ],
                run: runner!(watch_call),
            },
        ),
        // The rider service: riders see the open calls and their own deliveries, and act as themselves.
        (
            "baemin.rider.v1.RiderService/ListOpenCalls",
            Spec {
                cases: &[Unnamed],
                cells: &[(Rider, Unnamed, OK), (Admin, Unnamed, OK)],
                run: runner!(list_open_calls),
            },
        ),
        (
            "baemin.rider.v1.RiderService/WatchOpenCalls",
            Spec {
                // Mine / Theirs: a call closes while watching, taken by the caller / by rider-8.
                cases: &[Unnamed, Mine, Theirs],
                cells: &[
                    (Rider, Unnamed, OK),
                    (Rider, Mine, OK),
                    (Rider, Theirs, OK),
                    (Admin, Unnamed, OK),
                    (Admin, Theirs, OK),
                ],
                run: runner!(watch_open_calls),
            },
        ),
        (
            "baemin.rider.v1.RiderService/AcceptCall",
            Spec {
                cases: &[Mine, Theirs, AsOther, Unknown],
                cells: &[
                    (Rider, Mine, OK),
                    // Already taken by rider-8: the accept race's answer, naming nobody.
                    (Rider, Theirs, TAKEN),
                    (Rider, AsOther, DENIED),
                    (Rider, Unknown, NOT_FOUND),
                    (Admin, Theirs, OK),
                    (Admin, Unknown, NOT_FOUND),
                ],
                run: runner!(accept_call),
            },
        ),
        (
            "baemin.rider.v1.RiderService/PickUp",
            Spec {
                cases: &[Mine, Theirs, AsOther, Unknown],
                cells: &[
                    (Rider, Mine, OK),
                    (Rider, Theirs, DENIED),
                    (Rider, AsOther, DENIED),
                    (Rider, Unknown, NOT_FOUND),
                    (Admin, Theirs, OK),
                    (Admin, Unknown, NOT_FOUND),
                ],
                run: runner!(pick_up),
            },
        ),
        (
            "baemin.rider.v1.RiderService/CompleteDelivery",
            Spec {
                cases: &[Mine, Theirs, AsOther, Unknown],
                cells: &[
                    (Rider, Mine, OK),
                    (Rider, Theirs, DENIED),
                    (Rider, AsOther, DENIED),
                    (Rider, Unknown, NOT_FOUND),
                    (Admin, Theirs, OK),
                    (Admin, Unknown, NOT_FOUND),
                ],
                run: runner!(complete_delivery),
            },
        ),
        (
            "baemin.rider.v1.RiderService/GetDelivery",
            Spec {
                cases: &[Mine, Theirs, Open, Unknown],
                cells: &[
                    (Rider, Mine, OK),
                    (Rider, Theirs, DENIED),
                    (Rider, Open, OK),
                    (Rider, Unknown, NOT_FOUND),
                    (Admin, Theirs, OK),
                    (Admin, Open, OK),
                    (Admin, Unknown, NOT_FOUND),
                ],
                run: runner!(get_delivery),
            },
        ),
        (
            "baemin.rider.v1.RiderService/ListDeliveries",
            Spec {
                cases: &[Unnamed, Mine, AsOther],
                cells: &[
                    (Rider, Unnamed, OK),
                    (Rider, Mine, OK),
                    (Rider, AsOther, DENIED),
                    (Admin, Unnamed, OK),
                    (Admin, AsOther, OK),
                ],
                run: runner!(list_deliveries),
            },
        ),
        // Payment: its writes are the mesh's own; its reads the company's.
        (
            "baemin.payment.v1.PaymentService/RegisterCost",
            Spec {
                cases: &[Mine, Theirs],
                cells: &[],
                run: runner!(register_cost),
            },
        ),
        (
            "baemin.payment.v1.PaymentService/HoldCost",
            Spec {
                cases: &[Mine, Theirs],
                cells: &[],
                run: runner!(hold_cost),
            },
        ),
        (
            "baemin.payment.v1.PaymentService/Settle",
            Spec {
                cases: &[Mine, Theirs],
                cells: &[],
                run: runner!(settle),
            },
        ),
        (
            "baemin.payment.v1.PaymentService/VoidCost",
            Spec {
                cases: &[Mine, Theirs],
                cells: &[],
                run: runner!(void_cost),
            },
        ),
        (
            "baemin.payment.v1.PaymentService/GetPayment",
            Spec {
                cases: &[Mine, Theirs, Unknown],
                cells: &[(Admin, Theirs, OK), (Admin, Unknown, NOT_FOUND)],
                run: runner!(get_payment),
            },
        ),
        // The report: a restaurant its own calls' rows, a rider its own deliveries', the company all.
        (
            "baemin.report.v1.ReportService/GetDeliveryView",
            Spec {
                cases: &[Mine, Theirs, Open, Unknown],
                cells: &[
                    (Restaurant, Mine, OK),
                    (Restaurant, Theirs, DENIED),
                    (Restaurant, Open, DENIED),
                    (Restaurant, Unknown, NOT_FOUND),
                    (Rider, Mine, OK),
                    (Rider, Theirs, DENIED),
                    // Not a delivery of the rider's (the open board is the rider service's).
                    (Rider, Open, DENIED),
                    (Rider, Unknown, NOT_FOUND),
                    (Admin, Theirs, OK),
                    (Admin, Open, OK),
                    (Admin, Unknown, NOT_FOUND),
                ],
                run: runner!(get_delivery_view),
            },
        ),
        (
            "baemin.report.v1.ReportService/ListDeliveryViews",
            Spec {
                cases: &[Unnamed, Mine, AsOther],
                cells: &[
                    (Restaurant, Unnamed, OK),
                    (Restaurant, Mine, OK),
                    (Restaurant, AsOther, DENIED),
                    (Rider, Unnamed, OK),
                    (Rider, Mine, OK),
                    (Rider, AsOther, DENIED),
                    (Admin, Unnamed, OK),
                    (Admin, AsOther, OK),
                ],
                run: runner!(list_delivery_views),
            },
        ),
        (
            "baemin.report.v1.ReportService/WatchDeliveryViews",
            Spec {
                // A watch of a row the caller may not see (yet) is open and silent, not refused: a row
                // becomes visible when it becomes the caller's (a rider watching the call it accepts).
                cases: &[Unnamed, Mine, Theirs, Open, Unknown],
                cells: &[
                    (Restaurant, Unnamed, OK),
                    (Restaurant, Mine, OK),
                    (Restaurant, Theirs, OK),
                    (Restaurant, Open, OK),
                    (Restaurant, Unknown, OK),
                    (Rider, Unnamed, OK),
                    (Rider, Mine, OK),
                    (Rider, Theirs, OK),
                    (Rider, Open, OK),
                    (Rider, Unknown, OK),
                    (Admin, Unnamed, OK),
                    (Admin, Theirs, OK),
                    (Admin, Unknown, OK),
                ],
                run: runner!(watch_delivery_views),
            },
        ),
        (
            "baemin.report.v1.ReportService/GetStats",
            Spec {
                cases: &[Unnamed],
                cells: &[(Admin, Unnamed, OK)],
                run: runner!(get_stats),
            },
        ),
    ])
}

/// Whether `method` on `case` shows the riders' open-call board, whose rows name no rider.
fn shows_the_board(method: &str, case: Case) -> bool {
    match method {
        "baemin.rider.v1.RiderService/ListOpenCalls" | "baemin.rider.v1.RiderService/WatchOpenCalls" => true,
        "baemin.rider.v1.RiderService/GetDelivery" => case == Open,
        _ => false,
    }
}
/// Methods whose answer is figures, not rows.
const ROWLESS: [&str; 1] = ["baemin.report.v1.ReportService/GetStats"];

/// Every method of every service in the descriptors, as "package.Service/Method".
fn described_methods() -> BTreeSet<String> {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(baemin_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = BTreeSet::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                methods.insert(format!("{}.{}/{}", file.package(), service.name(), method.name()));
            }
        }
    }
    methods
}

/// The roles the gateway admits to `method`.
fn admitted(method: &str) -> &'static [Role] {
    let (service, name) = method.split_once('/').unwrap();
    match access(service, name) {
        Access::Roles(roles) => roles,
        Access::Internal => &[],
        Access::Unknown => panic!("{method} is in the descriptors but not in the gateway's policy table"),
    }
}

/// One cell to run: a method, a role, an object, and the code it must answer.
struct Cell {
    method: &'static str,
    role: Role,
    case: Case,
    expected: Code,
    /// Refused by the gateway's policy table (not by the service).
    at_gateway: bool,
}

/// The cells of `table`: the written cells of the roles the gateway admits, and PERMISSION_DENIED for
/// every object of every other role. Fails when a row disagrees with the policy table.
fn cells(table: &BTreeMap<&'static str, Spec>) -> Vec<Cell> {
    let mut out = Vec::new();
    for (&method, spec) in table {
        let admitted = admitted(method);
        let written: BTreeSet<&str> = spec.cells.iter().map(|(role, _, _)| role.as_str()).collect();
        let policy: BTreeSet<&str> = admitted.iter().map(|role| role.as_str()).collect();
        assert_eq!(
            written, policy,
            "{method}: the roles with cells must be the roles the gateway admits"
        );
        for &(role, case, expected) in spec.cells {
            assert!(spec.cases.contains(&case), "{method}: {case:?} is not in its cases");
            out.push(Cell {
                method,
                role,
                case,
                expected,
                at_gateway: false,
            });
        }
        for role in Role::ALL.into_iter().filter(|role| !admitted.contains(role)) {
            for &case in spec.cases {
                out.push(Cell {
                    method,
                    role,
                    case,
                    expected: DENIED,
                    at_gateway: true,
                });
            }
        }
    }
    out
}

/// The mesh behind the gateway, its callers, and the objects the cells name.
struct World {
    /// Straight to the services, as an internal backend (set-up only).
    internal: Clients,
    /// Through the gateway as store-1, rider-7 and ops (the cells' callers), and as rider-8.
    store1: Clients,
    rider7: Clients,
    ops: Clients,
    rider8: Clients,
    /// store-1's call, taken and picked up by rider-7.
    mine: String,
    /// store-2's call, taken by rider-8, and the idempotency key it was placed with.
    theirs: String,
    theirs_request_id: String,
    /// store-2's call, open.
    open: String,
    /// A call id nobody used.
    unknown: String,
    /// Open calls of store-1 for the cells that change one.
    spares: Mutex<Vec<String>>,
}

impl World {
    fn as_(&self, role: Role) -> &Clients {
        match role {
            Restaurant => &self.store1,
            Rider => &self.rider7,
            Admin => &self.ops,
        }
    }

    /// The call a cell of `case` names.
    fn object(&self, case: Case) -> String {
        match case {
            Mine => self.mine.clone(),
            Theirs => self.theirs.clone(),
            Open => self.open.clone(),
            Unknown => self.unknown.clone(),
            Unnamed | AsOther => panic!("{case:?} names no call"),
        }
    }

    /// A spare open call brought (as an internal backend) to `status` by `rider`.
    async fn spare(&self, status: rider::DeliveryStatus, by: &str) -> String {
        let id = self
            .spares
            .lock()
            .unwrap()
            .pop()
            .expect("enough spare calls: raise SPARES");
        let mut r = self.internal.rider.clone();
        if status != rider::DeliveryStatus::Open {
            r.accept_call(rider::AcceptCallRequest {
                call_id: id.clone(),
                rider_id: by.into(),
            })
            .await
            .unwrap();
        }
        if status == rider::DeliveryStatus::Picked {
            r.pick_up(rider::PickUpRequest {
                call_id: id.clone(),
                rider_id: by.into(),
            })
            .await
            .unwrap();
        }
        id
    }

    /// A fresh call of `restaurant`, placed as an internal backend.
    async fn fresh_call(&self, restaurant: &str) -> String {
        self.internal
            .call
            .clone()
            .place_call(place_request(restaurant))
            .await
            .unwrap()
            .into_inner()
            .call
            .unwrap()
            .call_id
    }

    /// The call and the acting rider of a rider command: the caller's own delivery brought to
    /// `status` (Mine), rider-8's (Theirs, for an admin a fresh one), or rider-7 claiming rider-8
    /// (AsOther) on `as_other`.
    async fn command(&self, role: Role, case: Case, status: rider::DeliveryStatus, as_other: &str) -> (String, String) {
        match (role, case) {
            (Rider, Mine) => (self.spare(status, RIDER_7).await, RIDER_7.into()),
            (Admin, Theirs) => (self.spare(status, RIDER_8).await, RIDER_8.into()),
            (_, AsOther) => (as_other.to_owned(), RIDER_8.into()),
            // Refused at the gateway whatever they name; own-looking objects so a leak would show.
            (_, case) => (self.object(case), me(role).into()),
        }
    }
}

fn me(role: Role) -> &'static str {
    match role {
        Restaurant => STORE_1,
        Rider => RIDER_7,
        Admin => OPS,
    }
}

fn place_request(restaurant: &str) -> call::PlaceCallRequest {
    call::PlaceCallRequest {
        request_id: request_id(),
        restaurant_id: restaurant.into(),
        destination: "서울 송파구 올림픽로 300".into(),
        fee: 3_000,
    }
}

/// Reads `stream` until a message satisfies `done`; every message read on the way is returned. A
/// message that never comes is DEADLINE_EXCEEDED, with what was awaited.
async fn read_until<T>(
    stream: &mut Streaming<T>,
    what: &str,
    mut done: impl FnMut(&T) -> bool,
) -> Result<Vec<T>, Status> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "(test) {what} did not arrive within {PATIENCE:?}"
                )));
            }
            Ok(Err(status)) => return Err(status),
            Ok(Ok(None)) => return Err(Status::aborted(format!("(test) the stream ended before {what}"))),
            Ok(Ok(Some(message))) => {
                let stop = done(&message);
                seen.push(message);
                if stop {
                    return Ok(seen);
                }
            }
        }
    }
}

/// Everything `stream` sends within [`QUIET`].
async fn read_quiet<T>(stream: &mut Streaming<T>) -> Result<Vec<T>, Status> {
    let deadline = tokio::time::Instant::now() + QUIET;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) | Ok(Ok(None)) => return Ok(seen),
            Ok(Err(status)) => return Err(status),
            Ok(Ok(Some(message))) => seen.push(message),
        }
    }
}

// ---- the runners, one per method ----

async fn place_call(w: &World, role: Role, case: Case) -> Outcome {
    let restaurant = if case == AsOther { STORE_2 } else { me(role) };
    let mut request = place_request(restaurant);
    if case == Theirs {
        request.request_id = w.theirs_request_id.clone();
    }
    let answer = w.as_(role).call.clone().place_call(request).await?;
    Ok(rows(answer.get_ref().call.as_ref()))
}

async fn get_call(w: &World, role: Role, case: Case) -> Outcome {
    let call_id = w.object(case);
    let answer = w
        .as_(role)
        .call
        .clone()
        .get_call(call::GetCallRequest { call_id })
        .await?;
    Ok(rows(answer.get_ref().call.as_ref()))
}

async fn list_calls(w: &World, role: Role, case: Case) -> Outcome {
    let restaurant_id = match case {
        Unnamed => String::new(),
        Mine => me(role).into(),
        _ => STORE_2.into(),
    };
    let answer = w
        .as_(role)
        .call
        .clone()
        .list_calls(call::ListCallsRequest {
            page_size: 100,
            restaurant_id,
            ..Default::default()
        })
        .await?;
    Ok(rows(&answer.get_ref().calls))
}

async fn cancel_call(w: &World, role: Role, case: Case) -> Outcome {
    let call_id = match (role, case) {
        (Restaurant, Mine) => w.fresh_call(STORE_1).await,
        (Admin, Theirs) => w.fresh_call(STORE_2).await,
        (_, case) => w.object(case),
    };
    let answer = w
        .as_(role)
        .call
        .clone()
        .cancel_call(call::CancelCallRequest {
            call_id,
            reason: "ownership matrix".into(),
        })
        .await?;
    Ok(rows(answer.get_ref().call.as_ref()))
}

async fn watch_call(w: &World, role: Role, case: Case) -> Outcome {
    let call_id = w.object(case);
    let mut stream = w
        .as_(role)
        .call
        .clone()
        .watch_call(call::WatchCallRequest { call_id })
        .await?
        .into_inner();
    let first = read_until(&mut stream, "the call's first message", |_| true).await?;
    Ok(first.iter().flat_map(|m| m.call.as_ref()).map(AsRow::row).collect())
}

async fn list_open_calls(w: &World, role: Role, _case: Case) -> Outcome {
    let answer = w
        .as_(role)
        .rider
        .clone()
        .list_open_calls(rider::ListOpenCallsRequest {
            page_size: 100,
            ..Default::default()
        })
        .await?;
    Ok(rows(&answer.get_ref().calls))
}

async fn watch_open_calls(w: &World, role: Role, case: Case) -> Outcome {
    use rider::watch_open_calls_response::Change;
    let mut stream = w
        .as_(role)
        .rider
        .clone()
        .watch_open_calls(rider::WatchOpenCallsRequest {})
        .await?
        .into_inner();
    // The board first (oldest first: the spares, then store-2's open call).
    let mut seen = read_until(&mut stream, "the open call on the board", |m| {
        m.call.as_ref().is_some_and(|c| c.call_id == w.open)
    })
    .await?;
    if case != Unnamed {
        // A call closes while the caller watches: taken by the caller (Mine) or by rider-8 (Theirs).
        let (taker, taker_id) = if case == Mine {
            (&w.rider7, RIDER_7)
        } else {
            (&w.rider8, RIDER_8)
        };
        let spare = w.spare(rider::DeliveryStatus::Open, taker_id).await;
        taker
            .rider
            .clone()
            .accept_call(rider::AcceptCallRequest {
                call_id: spare.clone(),
                rider_id: taker_id.into(),
            })
            .await
            .unwrap();
        seen.extend(
            read_until(&mut stream, "the taken call's closed notice", |m| {
                m.change() == Change::Closed && m.call.as_ref().is_some_and(|c| c.call_id == spare)
            })
            .await?,
        );
    }
    Ok(seen.iter().flat_map(|m| m.call.as_ref()).map(AsRow::row).collect())
}

async fn accept_call(w: &World, role: Role, case: Case) -> Outcome {
    let open = w.open.clone();
    let (call_id, rider_id) = w.command(role, case, rider::DeliveryStatus::Open, &open).await;
    let answer = w
        .as_(role)
        .rider
        .clone()
        .accept_call(rider::AcceptCallRequest { call_id, rider_id })
        .await?;
    Ok(rows(answer.get_ref().delivery.as_ref()))
}

async fn pick_up(w: &World, role: Role, case: Case) -> Outcome {
    let theirs = w.theirs.clone();
    let (call_id, rider_id) = w.command(role, case, rider::DeliveryStatus::Accepted, &theirs).await;
    let answer = w
        .as_(role)
        .rider
        .clone()
        .pick_up(rider::PickUpRequest { call_id, rider_id })
        .await?;
    Ok(rows(answer.get_ref().delivery.as_ref()))
}

async fn complete_delivery(w: &World, role: Role, case: Case) -> Outcome {
    let theirs = w.theirs.clone();
    let (call_id, rider_id) = w.command(role, case, rider::DeliveryStatus::Picked, &theirs).await;
    let answer = w
        .as_(role)
        .rider
        .clone()
        .complete_delivery(rider::CompleteDeliveryRequest { call_id, rider_id })
        .await?;
    Ok(rows(answer.get_ref().delivery.as_ref()))
}

async fn get_delivery(w: &World, role: Role, case: Case) -> Outcome {
    let call_id = w.object(case);
    let answer = w
        .as_(role)
        .rider
        .clone()
        .get_delivery(rider::GetDeliveryRequest { call_id })
        .await?;
    Ok(rows(answer.get_ref().delivery.as_ref()))
}

async fn list_deliveries(w: &World, role: Role, case: Case) -> Outcome {
    let rider_id = match case {
        Unnamed => String::new(),
        Mine => me(role).into(),
        _ => RIDER_8.into(),
    };
    let answer = w
        .as_(role)
        .rider
        .clone()
        .list_deliveries(rider::ListDeliveriesRequest {
            page_size: 100,
            rider_id,
            ..Default::default()
        })
        .await?;
    Ok(rows(&answer.get_ref().deliveries))
}

async fn register_cost(w: &World, role: Role, case: Case) -> Outcome {
    let call_id = w.object(case);
    let answer = w
        .as_(role)
        .payment
        .clone()
        .register_cost(payment::RegisterCostRequest { call_id, fee: 3_000 })
        .await?;
    Ok(rows(answer.get_ref().payment.as_ref()))
}

async fn hold_cost(w: &World, role: Role, case: Case) -> Outcome {
    let rider_id = if case == Mine { RIDER_7 } else { RIDER_8 }.to_owned();
    let call_id = w.object(case);
    let answer = w
        .as_(role)
        .payment
        .clone()
        .hold_cost(payment::HoldCostRequest { call_id, rider_id })
        .await?;
    Ok(rows(answer.get_ref().payment.as_ref()))
}

async fn settle(w: &World, role: Role, case: Case) -> Outcome {
    let rider_id = if case == Mine { RIDER_7 } else { RIDER_8 }.to_owned();
    let call_id = w.object(case);
    let answer = w
        .as_(role)
        .payment
        .clone()
        .settle(payment::SettleRequest { call_id, rider_id })
        .await?;
    Ok(rows(answer.get_ref().payment.as_ref()))
}

async fn void_cost(w: &World, role: Role, case: Case) -> Outcome {
    let call_id = w.object(case);
    let answer = w
        .as_(role)
        .payment
        .clone()
        .void_cost(payment::VoidCostRequest { call_id })
        .await?;
    Ok(rows(answer.get_ref().payment.as_ref()))
}

async fn get_payment(w: &World, role: Role, case: Case) -> Outcome {
    let call_id = w.object(case);
    let answer = w
        .as_(role)
        .payment
        .clone()
        .get_payment(payment::GetPaymentRequest { call_id })
        .await?;
    Ok(rows(answer.get_ref().payment.as_ref()))
}

async fn get_delivery_view(w: &World, role: Role, case: Case) -> Outcome {
    let call_id = w.object(case);
    let answer = w
        .as_(role)
        .report
        .clone()
        .get_delivery_view(report::GetDeliveryViewRequest { call_id })
        .await?;
    Ok(rows(answer.get_ref().view.as_ref()))
}

async fn list_delivery_views(w: &World, role: Role, case: Case) -> Outcome {
    let named = match case {
        Unnamed => String::new(),
        Mine => me(role).into(),
        _ if role == Rider => RIDER_8.into(),
        _ => STORE_2.into(),
    };
    let mut request = report::ListDeliveryViewsRequest {
        page_size: 100,
        ..Default::default()
    };
    if role == Rider {
        request.rider_id = named;
    } else {
        request.restaurant_id = named;
    }
    let answer = w.as_(role).report.clone().list_delivery_views(request).await?;
    Ok(rows(&answer.get_ref().views))
}

async fn watch_delivery_views(w: &World, role: Role, case: Case) -> Outcome {
    let call_id = if case == Unnamed { String::new() } else { w.object(case) };
    let mut stream = w
        .as_(role)
        .report
        .clone()
        .watch_delivery_views(report::WatchDeliveryViewsRequest {
            call_id,
            include_snapshot: true,
        })
        .await?
        .into_inner();
    let seen = match case {
        // The snapshot, newest first, down to the caller's own (first-placed) call.
        Unnamed => {
            read_until(&mut stream, "the snapshot down to store-1's call", |m| {
                m.view.as_ref().is_some_and(|v| v.call_id == w.mine)
            })
            .await?
        }
        Mine => read_until(&mut stream, "the call's row", |_| true).await?,
        Theirs | Open if role == Admin => read_until(&mut stream, "the call's row", |_| true).await?,
        // Rows the caller may not see (and one that does not exist): whatever arrives is checked.
        _ => read_quiet(&mut stream).await?,
    };
    Ok(seen.iter().flat_map(|m| m.view.as_ref()).map(AsRow::row).collect())
}

async fn get_stats(w: &World, role: Role, _case: Case) -> Outcome {
    w.as_(role).report.clone().get_stats(report::GetStatsRequest {}).await?;
    Ok(Vec::new())
}

// ---- the set-up and the run ----

/// Places the fixtures through the gateway and waits until the rider and report services have them.
async fn world(mesh: &TestMesh, url: &str) -> World {
    let clients = |role, subject| through(url, Some(&token(role, subject)));
    let (store1, store2) = (clients(Restaurant, STORE_1), clients(Restaurant, STORE_2));
    let (rider7, rider8) = (clients(Rider, RIDER_7), clients(Rider, RIDER_8));
    let place = |client: &Clients, request: call::PlaceCallRequest| {
        let mut c = client.call.clone();
        async move { c.place_call(request).await.unwrap().into_inner().call.unwrap().call_id }
    };
    // Placed in this order, so the board (oldest first) lists the spares before store-2's open call.
    let mine = place(&store1, place_request(STORE_1)).await;
    let theirs_request = place_request(STORE_2);
    let theirs_request_id = theirs_request.request_id.clone();
    let theirs = place(&store2, theirs_request).await;
    let mut spares = Vec::new();
    for _ in 0..SPARES {
        spares.push(place(&store1, place_request(STORE_1)).await);
    }
    let open = place(&store2, place_request(STORE_2)).await;
    for id in spares.iter().chain([&mine, &theirs, &open]) {
        crate::ledger::wait_for_rider_service(&mesh.clients, id).await;
    }
    let take = |client: &Clients, call_id: &str, rider_id: &str| {
        let mut r = client.rider.clone();
        let request = rider::AcceptCallRequest {
            call_id: call_id.into(),
            rider_id: rider_id.into(),
        };
        async move { r.accept_call(request).await.unwrap() }
    };
    take(&rider7, &mine, RIDER_7).await;
    rider7
        .rider
        .clone()
        .pick_up(rider::PickUpRequest {
            call_id: mine.clone(),
            rider_id: RIDER_7.into(),
        })
        .await
        .unwrap();
    take(&rider8, &theirs, RIDER_8).await;
    for (id, rider_id, status) in [
        (&mine, RIDER_7, report::DeliveryStatus::Picked),
        (&theirs, RIDER_8, report::DeliveryStatus::Accepted),
        (&open, "", report::DeliveryStatus::Called),
    ] {
        let what = format!("the report to show {id} {status:?} by {rider_id:?}");
        eventually(PATIENCE, &what, || {
            let mut r = mesh.clients.report.clone();
            let call_id = id.clone();
            async move {
                let view = r.get_delivery_view(report::GetDeliveryViewRequest { call_id }).await;
                Ok(view
                    .ok()
                    .and_then(|v| v.into_inner().view)
                    .filter(|v| v.rider_id == rider_id && v.status() == status))
            }
        })
        .await
        .unwrap();
    }
    World {
        internal: mesh.clients.clone(),
        ops: clients(Admin, OPS),
        store1,
        rider7,
        rider8,
        mine,
        theirs,
        theirs_request_id,
        open,
        unknown: baemin_kernel::CallId::generate().to_string(),
        spares: Mutex::new(spares),
    }
}

/// What is wrong with `cell`'s answer `outcome`, if anything.
fn judge(cell: &Cell, outcome: &Outcome) -> Option<String> {
    let rows = match outcome {
        Err(status) if status.code() != cell.expected => {
            return Some(format!("answered {:?} {:?}", status.code(), status.message()));
        }
        Err(status) => {
            let by_gateway = status.message().contains("may not call") || status.message().contains("mesh only");
            return (cell.at_gateway && !by_gateway)
                .then(|| format!("refused, but not by the gateway's policy: {:?}", status.message()));
        }
        Ok(_) if cell.expected != OK => return Some(format!("answered OK, not {:?}", cell.expected)),
        Ok(rows) => rows,
    };
    let me = me(cell.role);
    let board = shows_the_board(cell.method, cell.case);
    let foreign: Vec<String> = rows
        .iter()
        .filter(|row| match cell.role {
            Restaurant => row.restaurant != me,
            Rider => row.rider != me && !(board && row.rider.is_empty()),
            Admin => false,
        })
        .map(|row| {
            format!(
                "call {} of {:?} carried by {:?}",
                row.call_id, row.restaurant, row.rider
            )
        })
        .collect();
    if !foreign.is_empty() {
        return Some(format!("answered rows that are not the caller's: {foreign:?}"));
    }
    if matches!(cell.case, Mine | Unnamed) && rows.is_empty() && !ROWLESS.contains(&cell.method) {
        return Some("answered no row at all (its own rows were expected)".into());
    }
    if cell.role == Admin && cell.case == Unnamed && !ROWLESS.contains(&cell.method) {
        let restaurants: BTreeSet<&str> = rows.iter().map(|row| row.restaurant.as_str()).collect();
        if restaurants.len() < 2 {
            return Some(format!("the company saw the rows of {restaurants:?} only"));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_answers_each_role_by_the_policy_and_no_caller_reads_a_foreign_row() {
    let table = table();
    let listed: BTreeSet<String> = table.keys().map(|&m| m.to_owned()).collect();
    let described = described_methods();
    assert!(described.len() >= 20, "read the descriptors: {described:?}");
    assert_eq!(
        listed, described,
        "every method of the descriptors needs a row in the ownership matrix, and only those"
    );
    let cells = cells(&table);

    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let gateway = start_gateway(&mesh, &[("GATEWAY_RATE_LIMIT", "10000")]).await;
    let w = world(&mesh, &gateway.url()).await;

    let mut wrong = Vec::new();
    for cell in &cells {
        let outcome = (table[cell.method].run)(&w, cell.role, cell.case).await;
        if let Some(why) = judge(cell, &outcome) {
            wrong.push(format!(
                "{} as {} on {:?} (expected {:?}): {why}",
                cell.method, cell.role, cell.case, cell.expected
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cells are wrong:\n{}",
        wrong.len(),
        cells.len(),
        wrong.join("\n")
    );

    // The refusals changed nothing: the fixtures are as the set-up left them.
    let delivery = |call_id: &String| {
        let mut r = mesh.clients.rider.clone();
        let call_id = call_id.clone();
        async move {
            let d = r
                .get_delivery(rider::GetDeliveryRequest { call_id })
                .await
                .unwrap()
                .into_inner()
                .delivery
                .unwrap();
            (d.status(), d.rider_id)
        }
    };
    assert_eq!(
        delivery(&w.mine).await,
        (rider::DeliveryStatus::Picked, RIDER_7.to_owned())
    );
    assert_eq!(
        delivery(&w.theirs).await,
        (rider::DeliveryStatus::Accepted, RIDER_8.to_owned())
    );
    assert_eq!(delivery(&w.open).await, (rider::DeliveryStatus::Open, String::new()));
    for id in [&w.mine, &w.theirs] {
        let fee = mesh
            .clients
            .payment
            .clone()
            .get_payment(payment::GetPaymentRequest { call_id: id.clone() })
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(
            fee.status(),
            payment::PaymentStatus::Registered,
            "{id}: not settled, not voided"
        );
        let stored = mesh
            .clients
            .call
            .clone()
            .get_call(call::GetCallRequest { call_id: id.clone() })
            .await
            .unwrap()
            .into_inner()
            .call
            .unwrap();
        assert_ne!(stored.status(), call::CallStatus::Cancelled, "{id}");
    }
    eprintln!("ownership matrix: {} cells over {} methods", cells.len(), table.len());
    gateway.stop().await;
    mesh.stop().await;
}
