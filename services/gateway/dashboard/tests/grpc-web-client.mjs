// A real grpc-web client (connect-node, HTTP/1.1, binary) through the gateway: unary, server streaming and
// the error codes the edge and the services promise.
//
// Environment: GATEWAY_URL, ADMIN_TOKEN, RESTAURANT_TOKEN (store-1), OTHER_RESTAURANT_TOKEN (store-2),
// RIDER_TOKEN (r-7), EXPIRED_TOKEN. Exits 0 when every check passed; prints one "ok: ..." line per check.
import {
  Code,
  ConnectError,
  WAIT_MS,
  as,
  clients,
  env,
  expectCode,
  expectError,
  fail,
  newCall,
  ok,
  tamperSignature,
  unknownUuidV7,
} from "./lib.mjs";
import { DeliveryStatus } from "../src/gen/baemin/report/v1/report_pb.js";

const gatewayUrl = env("GATEWAY_URL");
const admin = env("ADMIN_TOKEN");
const restaurant = env("RESTAURANT_TOKEN");
const otherRestaurant = env("OTHER_RESTAURANT_TOKEN");
const rider = env("RIDER_TOKEN");
const expired = env("EXPIRED_TOKEN");

const { call, report } = clients(gatewayUrl);

/** What is being checked, for the failure message. */
let step = "start";
try {
  // Unary: the restaurant places a call.
  step = "PlaceCall as restaurant store-1";
  const placed = await call.placeCall(newCall(), as(restaurant));
  const callId = placed.call?.callId;
  if (!callId) fail("PlaceCall returned no call id");
  if (placed.call.restaurantId !== "store-1" || placed.call.fee !== 3000n) {
    fail(`PlaceCall returned ${JSON.stringify({ restaurantId: placed.call.restaurantId, fee: String(placed.call.fee) })}`);
  }
  ok(`unary PlaceCall as restaurant store-1 -> call ${callId}`);

  // Unary: the admin reads the stats.
  step = "GetStats as admin";
  const stats = await report.getStats({}, as(admin));
  for (const field of ["called", "accepted", "picked", "completed", "cancelled", "totalFees", "revenue", "settledCount"]) {
    if (typeof stats[field] !== "bigint" || stats[field] < 0n) fail(`GetStats.${field} is ${stats[field]}`);
  }
  ok(
    `unary GetStats as admin -> called=${stats.called} accepted=${stats.accepted} picked=${stats.picked} ` +
      `completed=${stats.completed} cancelled=${stats.cancelled} total_fees=${stats.totalFees} ` +
      `revenue=${stats.revenue} settled_count=${stats.settledCount}`,
  );

  // Server streaming: the placed call's row arrives (snapshot or a later change), then we cancel the stream.
  step = "WatchDeliveryViews as admin";
  {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), WAIT_MS);
    let row;
    try {
      for await (const res of report.watchDeliveryViews({ callId, includeSnapshot: true }, { ...as(admin), timeoutMs: undefined, signal: abort.signal })) {
        if (res.view?.callId === callId) {
          row = res.view;
          break; // the finally block aborts the stream
        }
      }
    } catch (e) {
      if (!abort.signal.aborted) throw e;
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
    if (!row) fail(`WatchDeliveryViews: no row for ${callId} within ${WAIT_MS / 1000} s`);
    if (row.fee !== 3000n || row.restaurantId !== "store-1") {
      fail(`WatchDeliveryViews: row for ${callId} has fee=${row.fee} restaurant=${row.restaurantId}`);
    }
    ok(`server streaming WatchDeliveryViews as admin -> row ${callId} (status ${DeliveryStatus[row.status]}), stream cancelled`);
  }

  // Error codes (expectError catches the expected failures; anything else is a bug in this script).
  step = "error-code checks";
  expectCode("GetStats without a token", await expectError("no token", () => report.getStats({}, as(null))), Code.Unauthenticated);
  expectCode("GetStats with an expired token", await expectError("expired", () => report.getStats({}, as(expired))), Code.Unauthenticated);
  expectCode(
    "GetStats with a wrong signature",
    await expectError("bad signature", () => report.getStats({}, as(tamperSignature(admin)))),
    Code.Unauthenticated,
  );
  expectCode(
    "PlaceCall as rider r-7",
    await expectError("rider places a call", () => call.placeCall(newCall(), as(rider))),
    Code.PermissionDenied,
  );
  expectCode(
    "CancelCall of store-1's call as store-2",
    await expectError("other restaurant cancels", () => call.cancelCall({ callId, reason: "not mine" }, as(otherRestaurant))),
    Code.PermissionDenied,
  );
  expectCode(
    "GetCall of an unknown call id as admin",
    await expectError("unknown call", () => call.getCall({ callId: unknownUuidV7() }, as(admin))),
    Code.NotFound,
  );
  expectCode(
    "PlaceCall with an empty destination",
    await expectError("empty destination", () => call.placeCall(newCall(""), as(restaurant))),
    Code.InvalidArgument,
  );
} catch (e) {
  const err = ConnectError.from(e);
  fail(`${step}: ${Code[err.code]}: ${err.rawMessage}`);
}

console.log("grpc-web client: all checks passed");
