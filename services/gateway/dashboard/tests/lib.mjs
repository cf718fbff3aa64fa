// Shared by the Node tests: environment, grpc-web clients through the gateway, small helpers.
import { randomBytes, randomUUID } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { CallService } from "../src/gen/baemin/call/v1/call_pb.js";
import { ReportService } from "../src/gen/baemin/report/v1/report_pb.js";
import { RiderService } from "../src/gen/baemin/rider/v1/rider_pb.js";

export { Code, ConnectError };

/** Per wait: the report is eventually consistent. */
export const WAIT_MS = 20_000;

/** A required environment variable, or exit with a message naming it. */
export function env(name) {
  const value = process.env[name];
  if (!value) fail(`environment variable ${name} is not set`);
  return value;
}

export function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

export function ok(message) {
  console.log(`ok: ${message}`);
}

/**
 * CallService, RiderService and ReportService clients through the gateway, speaking grpc-web (binary) over
 * HTTP/1.1. A new call to `clients()` opens new connections (used after a gateway restart).
 */
export function clients(gatewayUrl) {
  const transport = createGrpcWebTransport({ baseUrl: gatewayUrl, httpVersion: "1.1", useBinaryFormat: true });
  return {
    call: createClient(CallService, transport),
    rider: createClient(RiderService, transport),
    report: createClient(ReportService, transport),
  };
}

/** Call options carrying `authorization: Bearer <token>` (none when token is null). */
export function as(token, extra = {}) {
  return { timeoutMs: 15_000, ...extra, headers: token ? { authorization: `Bearer ${token}` } : {} };
}

/** A PlaceCall request for store-1 with a fresh idempotency key. */
export function newCall(destination = "서울 송파구 위례성대로 2", fee = 3000n) {
  return { requestId: randomUUID(), restaurantId: "store-1", destination, fee };
}

/** A well-formed UUIDv7 (RFC 9562) that names no call. */
export function unknownUuidV7() {
  const b = randomBytes(16);
  const ms = BigInt(Date.now());
  for (let i = 0; i < 6; i++) b[i] = Number((ms >> BigInt(8 * (5 - i))) & 0xffn);
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The same JWT with its signature bytes changed (still well-formed base64url, so only the MAC is wrong). */
export function tamperSignature(jwt) {
  const parts = jwt.split(".");
  if (parts.length !== 3) fail("ADMIN_TOKEN is not a JWT (header.payload.signature)");
  const sig = Buffer.from(parts[2], "base64url");
  if (sig.length === 0) fail("ADMIN_TOKEN has an empty signature");
  // Flip every bit of the last bytes: changing only the last base64url character may touch padding bits.
  for (let i = Math.max(0, sig.length - 4); i < sig.length; i++) sig[i] ^= 0xff;
  const tampered = sig.toString("base64url");
  if (tampered === parts[2]) fail("could not alter the signature");
  return `${parts[0]}.${parts[1]}.${tampered}`;
}

/** Runs `fn` and returns the ConnectError it throws; fails if it succeeds. */
export async function expectError(what, fn) {
  try {
    await fn();
  } catch (e) {
    return ConnectError.from(e);
  }
  fail(`${what}: expected an error, the call succeeded`);
}

/** Asserts an error's code, with both codes named in the message. */
export function expectCode(what, err, code) {
  if (err.code !== code) {
    fail(`${what}: expected ${Code[code]}, got ${Code[err.code]} (${err.rawMessage})`);
  }
  ok(`${what} -> ${Code[code]}`);
}

/**
 * Retries `fn` while it fails with one of `codes` (eventual consistency, a gateway coming back) until
 * `WAIT_MS` has passed; then throws an Error naming the last code.
 */
export async function retrying(what, codes, fn, waitMs = WAIT_MS) {
  const deadline = Date.now() + waitMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      const err = ConnectError.from(e);
      if (!codes.includes(err.code) || Date.now() > deadline) {
        throw new Error(`${what}: ${Code[err.code]} ${err.rawMessage} (after ${attempt + 1} attempt(s))`);
      }
      await sleep(Math.min(250 * 2 ** attempt, 2_000));
    }
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
