// Transport, auth and the reconnecting watch: everything that talks to the gateway.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import type { DeliveryView, GetStatsResponse } from "./gen/baemin/report/v1/report_pb.js";
import { ReportService } from "./gen/baemin/report/v1/report_pb.js";

export type Report = Client<typeof ReportService>;

/** Builds the ReportService client: grpc-web, binary, same origin, `authorization: Bearer` on every call. */
export function reportClient(baseUrl: string, token: () => string | null): Report {
  const auth: Interceptor = (next) => (req) => {
    const t = token();
    if (t) req.header.set("authorization", `Bearer ${t}`);
    return next(req);
  };
  const transport = createGrpcWebTransport({ baseUrl, useBinaryFormat: true, interceptors: [auth] });
  return createClient(ReportService, transport);
}

/** True for the errors that mean "this token will not do": show the token form, do not retry. */
export function isAuthError(err: ConnectError): boolean {
  return err.code === Code.Unauthenticated || err.code === Code.PermissionDenied;
}

export function getStats(client: Report, signal?: AbortSignal): Promise<GetStatsResponse> {
  return client.getStats({}, { signal, timeoutMs: 10_000 });
}

export type WatchEvents = {
  /** A stream request was sent (first connection or a reconnection). */
  connecting(): void;
  /** The stream is open (response headers or a row arrived). */
  live(): void;
  /** The stream ended or failed; the next attempt starts after `delayMs`. */
  reconnecting(err: ConnectError | null, delayMs: number): void;
  /** The gateway refused the token; the watch has stopped. */
  signedOut(err: ConnectError): void;
  row(view: DeliveryView): void;
};

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 5_000;

/**
 * Keeps one `WatchDeliveryViews({includeSnapshot: true})` stream open until `signal` aborts.
 * Each (re)connection replays the snapshot first, so rows are upserts by call id. When the stream ends or
 * fails for any reason other than UNAUTHENTICATED / PERMISSION_DENIED it waits (500 ms, doubling to 5 s,
 * back to 500 ms once a stream has been open) and reconnects.
 */
export async function watchDeliveries(client: Report, on: WatchEvents, signal: AbortSignal): Promise<void> {
  let delay = FIRST_DELAY_MS;
  while (!signal.aborted) {
    let failure: ConnectError | null = null;
    let open = false;
    const opened = () => {
      if (!open) {
        open = true;
        delay = FIRST_DELAY_MS;
        on.live();
      }
    };
    const started = Date.now();
    on.connecting();
    try {
      const stream = client.watchDeliveryViews({ includeSnapshot: true }, { signal, onHeader: opened });
      for await (const res of stream) {
        opened();
        if (res.view) on.row(res.view);
      }
    } catch (e) {
      if (signal.aborted) return;
      failure = ConnectError.from(e);
      if (isAuthError(failure)) {
        on.signedOut(failure);
        return;
      }
    }
    if (signal.aborted) return;
    if (Date.now() - started > MAX_DELAY_MS) delay = FIRST_DELAY_MS; // it was up for a while: retry soon
    on.reconnecting(failure, delay);
    await sleep(delay, signal);
    delay = Math.min(delay * 2, MAX_DELAY_MS);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}
