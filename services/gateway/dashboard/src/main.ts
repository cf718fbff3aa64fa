// Wiring: the token, the live watch, the stats refresh and the view.
import { ConnectError } from "@connectrpc/connect";
import { getStats, isAuthError, reportClient, watchDeliveries } from "./client.js";
import { DashboardView } from "./view.js";

/** The admin JWT lives in sessionStorage only: never in a query string, never in localStorage. */
const TOKEN_KEY = "baemin.dashboard.token";
const STATS_DEBOUNCE_MS = 250;
const STATS_EVERY_MS = 5_000;

const view = new DashboardView(document);
const client = reportClient(window.location.origin, () => sessionStorage.getItem(TOKEN_KEY));

/** The running session (watch + stats timer), aborted on sign-out or a new token. */
let session: AbortController | null = null;

/**
 * Takes `#token=<jwt>` from the URL fragment (the identity provider's hand-off; fragments are never sent
 * to servers), keeps it in sessionStorage and removes the fragment from the address bar and history.
 */
function takeTokenFromFragment(): boolean {
  const token = new URLSearchParams(window.location.hash.slice(1)).get("token");
  if (token === null) return false;
  history.replaceState(history.state, "", window.location.pathname + window.location.search);
  if (!token) return false;
  sessionStorage.setItem(TOKEN_KEY, token);
  return true;
}

function start(): void {
  session?.abort();
  session = null;
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    view.connection("signed-out", "Signed out", "");
    view.showSignIn("Paste an admin token to see the deliveries.");
    return;
  }
  const current = new AbortController();
  session = current;
  const { signal } = current;
  view.hideSignIn();
  view.connection("reconnecting", "Connecting…");

  // "Live" once the stream's response headers or first row arrive. Some proxies hold a stream's headers back
  // until its first message, so a GetStats answered while the watch request is open and has not failed
  // counts too: the gateway and the report are reachable and the token is good.
  let watching = false;
  let live = false;
  const goLive = () => {
    if (live) return;
    live = true;
    view.connection("live", "Live");
    view.touched();
  };
  const stats = statsRefresher(signal, () => {
    if (watching) goLive();
  });
  void watchDeliveries(
    client,
    {
      connecting: () => {
        watching = true;
        stats.soon();
      },
      live: () => {
        goLive();
        stats.soon();
      },
      reconnecting: (err, delayMs) => {
        watching = false;
        live = false;
        view.connection("reconnecting", "Reconnecting…", `${describe(err)}; retrying in ${(delayMs / 1000).toFixed(1)} s`);
      },
      signedOut: (err) => signOut(err),
      row: (row) => {
        view.upsert(row);
        view.touched();
        stats.soon();
      },
    },
    signal,
  );
}

/** GetStats now, after row updates (debounced) and every 5 s, until `signal` aborts. */
function statsRefresher(signal: AbortSignal, answered: () => void): { soon(): void } {
  let pending: ReturnType<typeof setTimeout> | undefined;
  let inFlight = false;
  let again = false;
  const fetchNow = async () => {
    pending = undefined;
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    try {
      const s = await getStats(client, signal);
      if (signal.aborted) return;
      view.stats(s);
      view.touched();
      answered();
    } catch (e) {
      const err = ConnectError.from(e);
      if (!signal.aborted && isAuthError(err)) signOut(err);
      // Other failures keep the last figures; the watch shows the connection state.
    } finally {
      inFlight = false;
      if (again && !signal.aborted) {
        again = false;
        soon();
      }
    }
  };
  const soon = () => {
    if (pending === undefined && !signal.aborted) pending = setTimeout(fetchNow, STATS_DEBOUNCE_MS);
  };
  const every = setInterval(() => void fetchNow(), STATS_EVERY_MS);
  signal.addEventListener("abort", () => {
    clearInterval(every);
    clearTimeout(pending);
  });
  void fetchNow();
  return { soon };
}

function signOut(err: ConnectError | null): void {
  session?.abort();
  session = null;
  sessionStorage.removeItem(TOKEN_KEY);
  view.clear();
  if (err) {
    view.connection("signed-out", "Signed out", describe(err));
    view.showSignIn(`The gateway refused the token (${describe(err)}). Paste a valid admin token.`);
  } else {
    view.connection("signed-out", "Signed out", "");
    view.showSignIn("Signed out. Paste an admin token to sign in again.");
  }
}

function describe(err: ConnectError | null): string {
  return err ? err.message : "stream ended";
}

view.onTokenSubmitted((token) => {
  sessionStorage.setItem(TOKEN_KEY, token);
  start();
});
view.onSignOut(() => signOut(null));
window.addEventListener("hashchange", () => {
  if (takeTokenFromFragment()) start();
});

takeTokenFromFragment();
start();
