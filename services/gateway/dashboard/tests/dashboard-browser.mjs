// The dashboard in a real headless Chromium, against a real gateway: signing in by pasting a token (bad
// tokens refused with the gateway's reason, sign-out forgets the token), then it goes live, follows a
// delivery's whole lifecycle without reload, survives a gateway restart, and leaves a screenshot.
//
// Environment: GATEWAY_URL, ADMIN_TOKEN, RESTAURANT_TOKEN (store-1), RIDER_TOKEN (r-7), SCREENSHOT (PNG path),
// CHROMIUM (default /usr/bin/chromium).
// Restart protocol: prints the line RESTART_GATEWAY on stdout, then waits for a line RESTARTED on stdin
// (the driver restarts the gateway on the same port in between).
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";
import { Code, WAIT_MS, as, clients, env, newCall, ok, retrying, sleep } from "./lib.mjs";

const gatewayUrl = env("GATEWAY_URL").replace(/\/+$/, "");
const admin = env("ADMIN_TOKEN");
const restaurant = env("RESTAURANT_TOKEN");
const rider = env("RIDER_TOKEN");
const screenshot = env("SCREENSHOT");
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const RESTART_WAIT_MS = 180_000;

class Failure extends Error {}
const check = (cond, message) => {
  if (!cond) throw new Failure(message);
};

// Lines from stdin, read from the start so none is missed.
const stdinLines = [];
const stdinWaiters = [];
let stdinClosed = false;
const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  stdinLines.push(line.trim());
  stdinWaiters.splice(0).forEach((wake) => wake());
});
rl.on("close", () => {
  stdinClosed = true;
  stdinWaiters.splice(0).forEach((wake) => wake());
});

async function waitForStdinLine(expected, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (stdinLines.includes(expected)) return;
    check(!stdinClosed, `stdin closed before the line ${expected}`);
    check(Date.now() < deadline, `no line ${expected} on stdin within ${timeoutMs / 1000} s`);
    await Promise.race([new Promise((wake) => stdinWaiters.push(wake)), sleep(1_000)]);
  }
}

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"], headless: true });
const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
const pageErrors = [];
page.on("pageerror", (err) => pageErrors.push(err.message));
let loads = 0;
page.on("load", () => loads++);
let mainFrameNavigations = 0;
page.on("framenavigated", (frame) => {
  if (frame === page.mainFrame()) mainFrameNavigations++;
});

const row = (id) => `[data-testid="deliveries"] tr[data-call-id="${id}"]`;
const connection = '[data-testid="connection"]';

async function waitState(state, what) {
  try {
    await page.waitForSelector(`${connection}[data-state="${state}"]`, { timeout: WAIT_MS });
  } catch {
    const now = await page.locator(connection).getAttribute("data-state");
    const text = await page.locator(connection).textContent();
    throw new Failure(`${what}: connection did not become ${state} within ${WAIT_MS / 1000} s (it is ${now}: ${text})`);
  }
}

/** Waits until the row's cell `field` has text `text` (and the optional extra condition). */
async function waitCell(id, field, text, what) {
  try {
    await page.waitForFunction(
      ([sel, want]) => document.querySelector(sel)?.textContent === want,
      [`${row(id)} td[data-field="${field}"]`, text],
      { timeout: WAIT_MS },
    );
  } catch {
    const got = await page.locator(`${row(id)} td[data-field="${field}"]`).textContent({ timeout: 1_000 }).catch(() => "(no such row)");
    throw new Failure(`${what}: ${field} of ${id} is "${got}", expected "${text}" within ${WAIT_MS / 1000} s`);
  }
}

async function waitRow(id, what) {
  try {
    await page.waitForSelector(row(id), { timeout: WAIT_MS, state: "attached" });
  } catch {
    throw new Failure(`${what}: no row for ${id} within ${WAIT_MS / 1000} s`);
  }
}

/** A stat's raw value (data-value), waiting until the page has fetched stats at least once. */
async function stat(name) {
  const sel = `[data-stat="${name}"][data-value]`;
  await page.waitForSelector(sel, { timeout: WAIT_MS, state: "attached" });
  return BigInt(await page.locator(sel).getAttribute("data-value"));
}

async function placeCall(api, destination) {
  const req = newCall(destination); // one request id: retrying it is idempotent
  const res = await retrying(`PlaceCall ${destination}`, [Code.Unavailable], () => api.call.placeCall(req, as(restaurant)));
  return res.call.callId;
}

/** Accepts as r-7, waiting for the rider service to learn of the call (it hears of it asynchronously). */
async function accept(api, callId) {
  await retrying("AcceptCall", [Code.NotFound, Code.FailedPrecondition, Code.Aborted, Code.Unavailable], async (attempt) => {
    if (attempt > 0) {
      // An earlier attempt may have succeeded without us seeing the answer.
      const got = await api.rider.getDelivery({ callId }, as(admin)).catch(() => null);
      if (got?.delivery?.riderId === "r-7") return got;
    }
    return api.rider.acceptCall({ callId, riderId: "r-7" }, as(rider));
  });
}

/** Sign-in on a page of its own: no token, a malformed one, a rider's, then the admin's, then sign-out. */
async function signInFlow() {
  const p = await browser.newPage();
  p.on("pageerror", (err) => pageErrors.push(err.message));
  const state = () => p.locator(connection).getAttribute("data-state");
  const form = '[data-testid="signin"]';
  const message = '[data-testid="signin-message"]';
  const submit = async (token) => {
    await p.fill(`${form} input[name="token"]`, token);
    await p.click(`${form} button[type="submit"]`);
  };
  const refused = async (what, reason) => {
    try {
      await p.waitForFunction(
        ([f, m, want]) => !document.querySelector(f).hidden && document.querySelector(m).textContent.includes(want),
        [form, message, reason],
        { timeout: WAIT_MS },
      );
    } catch {
      throw new Failure(`${what}: the sign-in form does not say "${reason}" (it says "${await p.locator(message).textContent()}")`);
    }
    check((await state()) === "signed-out", `${what}: connection is ${await state()}, not signed-out`);
    check((await p.evaluate(() => sessionStorage.getItem("baemin.dashboard.token"))) === null, `${what}: the refused token was kept`);
  };

  await p.goto(`${gatewayUrl}/`, { waitUntil: "load", timeout: WAIT_MS });
  await p.waitForSelector(`${form}:not([hidden])`, { timeout: WAIT_MS });
  check((await state()) === "signed-out", `without a token the connection is ${await state()}`);
  ok("without a token the page asks for one");

  await submit("not-a-jwt");
  await refused("a malformed token", "refused the token");
  ok(`a malformed token: ${await p.locator(message).textContent()}`);
  await submit(rider);
  await refused("a rider's token", "refused the token");
  ok(`a rider's token: ${await p.locator(message).textContent()}`);

  await submit(`Bearer ${admin}`);
  try {
    await p.waitForSelector(`${connection}[data-state="live"]`, { timeout: WAIT_MS });
  } catch {
    throw new Failure(`the admin token pasted: connection is ${await state()}, not live`);
  }
  check(await p.locator(form).isHidden(), "the sign-in form is still shown when live");
  check((await p.evaluate(() => sessionStorage.getItem("baemin.dashboard.token"))) === admin, "the pasted token is not in sessionStorage");
  ok("the admin token pasted (with its Bearer prefix): live");

  await p.click('[data-testid="sign-out"]');
  await p.waitForSelector(`${form}:not([hidden])`, { timeout: WAIT_MS });
  check((await state()) === "signed-out", `after sign-out the connection is ${await state()}`);
  check((await p.evaluate(() => sessionStorage.getItem("baemin.dashboard.token"))) === null, "sign-out kept the token");
  check((await p.locator('[data-testid="deliveries"] tbody tr').count()) === 0, "sign-out left rows on the screen");
  ok("sign-out: token forgotten, rows cleared, sign-in form shown");
  await p.close();
}

let exitCode = 0;
try {
  await signInFlow();

  // Open the page with the token in the fragment.
  await page.goto(`${gatewayUrl}/#token=${admin}`, { waitUntil: "load", timeout: WAIT_MS });
  await waitState("live", "first connection");
  ok("page opened and the connection is live");
  check(!page.url().includes("#"), `the token fragment is still in the URL: ${page.url().replace(admin, "<token>")}`);
  check((await page.evaluate(() => sessionStorage.getItem("baemin.dashboard.token"))) === admin, "the token is not in sessionStorage");
  check((await page.evaluate(() => localStorage.length)) === 0, "the page wrote to localStorage");
  ok("token taken from the fragment into sessionStorage; fragment removed");

  // Marks this document: a reload would lose the mark.
  await page.evaluate(() => {
    window.__dashboardTestMark = true;
  });
  const navigationsBefore = mainFrameNavigations;
  const completedBefore = await stat("completed");
  const revenueBefore = await stat("revenue");
  ok(`stats shown: completed=${completedBefore} revenue=${revenueBefore}`);

  // Drive the lifecycle through the gateway.
  let api = clients(gatewayUrl);
  const first = await placeCall(api, "browser test: delivered");
  const second = await placeCall(api, "browser test: cancelled");
  ok(`placed ${first} and ${second} as store-1`);
  await accept(api, first);
  await api.rider.pickUp({ callId: first, riderId: "r-7" }, as(rider));
  await api.rider.completeDelivery({ callId: first, riderId: "r-7" }, as(rider));
  ok(`r-7 accepted, picked up and completed ${first}`);
  await api.call.cancelCall({ callId: second, reason: "browser test" }, as(restaurant));
  ok(`store-1 cancelled ${second}`);

  // The page follows, without reload.
  await waitRow(first, "first call");
  await waitRow(second, "second call");
  ok("both rows appeared");
  await waitCell(first, "status", "COMPLETED", "first call");
  await waitCell(first, "rider_id", "r-7", "first call");
  try {
    await page.waitForFunction(
      (sel) => Number(document.querySelector(sel)?.getAttribute("data-value") ?? "0") > 0,
      `${row(first)} td[data-field="settled_amount"]`,
      { timeout: WAIT_MS },
    );
  } catch {
    throw new Failure(`first call: no settled amount within ${WAIT_MS / 1000} s`);
  }
  const settled = await page.locator(`${row(first)} td[data-field="settled_amount"]`).textContent();
  ok(`first row: COMPLETED by r-7, settled ${settled}`);
  await waitCell(second, "status", "CANCELLED", "second call");
  ok("second row: CANCELLED");

  try {
    await page.waitForFunction(
      ([completed, revenue]) => {
        const v = (name) => document.querySelector(`[data-stat="${name}"]`)?.getAttribute("data-value");
        return v("completed") === completed && BigInt(v("revenue") ?? "0") > BigInt(revenue);
      },
      [String(completedBefore + 1n), String(revenueBefore)],
      { timeout: WAIT_MS },
    );
  } catch {
    throw new Failure(
      `stats: expected completed=${completedBefore + 1n} and revenue > ${revenueBefore}, ` +
        `the page shows completed=${await stat("completed")} revenue=${await stat("revenue")}`,
    );
  }
  ok(`stats: completed ${completedBefore} -> ${await stat("completed")}, revenue ${revenueBefore} -> ${await stat("revenue")}`);

  // Gateway restart: the page must notice, reconnect and go on.
  await page.evaluate((sel) => {
    const el = document.querySelector(sel);
    window.__connectionStates = [el.dataset.state];
    new MutationObserver(() => window.__connectionStates.push(el.dataset.state)).observe(el, {
      attributes: true,
      attributeFilter: ["data-state"],
    });
  }, connection);
  console.log("RESTART_GATEWAY");
  await waitForStdinLine("RESTARTED", RESTART_WAIT_MS);
  ok("gateway restarted");
  try {
    await page.waitForFunction(() => window.__connectionStates.includes("reconnecting"), null, { timeout: WAIT_MS });
  } catch {
    throw new Failure(`after the restart the page never showed reconnecting (states: ${await page.evaluate(() => window.__connectionStates.join(" -> "))})`);
  }
  try {
    await page.waitForFunction(
      () => {
        const s = window.__connectionStates;
        return s.lastIndexOf("live") > s.indexOf("reconnecting") && s[s.length - 1] === "live";
      },
      null,
      { timeout: WAIT_MS },
    );
  } catch {
    throw new Failure(`after the restart the page did not come back live (states: ${await page.evaluate(() => window.__connectionStates.join(" -> "))})`);
  }
  ok(`connection went ${await page.evaluate(() => window.__connectionStates.join(" -> "))}`);

  api = clients(gatewayUrl); // fresh connections to the new gateway process
  const third = await placeCall(api, "browser test: after restart");
  await waitRow(third, "call placed after the restart");
  ok(`row ${third} placed after the restart appeared`);
  try {
    await page.waitForFunction(
      (rows) => {
        const waiting = [...document.querySelectorAll(`${rows} td[data-field="status"]`)].filter((td) => td.textContent === "CALLED");
        return document.querySelector('[data-stat="called"]')?.getAttribute("data-value") === String(waiting.length) && waiting.length > 0;
      },
      '[data-testid="deliveries"] tbody tr',
      { timeout: WAIT_MS },
    );
  } catch {
    throw new Failure(`after the restart the CALLED count (${await stat("called")}) never matched the CALLED rows`);
  }
  ok(`stats after the restart: called ${await stat("called")}, as many as CALLED rows`);

  // No reload at any point.
  check(loads === 1, `the page loaded ${loads} times`);
  check(mainFrameNavigations === navigationsBefore, `the main frame navigated ${mainFrameNavigations - navigationsBefore} more time(s)`);
  check(await page.evaluate(() => window.__dashboardTestMark === true), "the document was replaced (reload)");
  check(pageErrors.length === 0, `uncaught errors in the page: ${pageErrors.join("; ")}`);
  ok("no reload: one load, no navigation, same document; no uncaught errors");

  await page.screenshot({ path: screenshot, fullPage: true });
  ok(`screenshot saved to ${screenshot}`);
  console.log("dashboard browser test: all checks passed");
} catch (e) {
  exitCode = 1;
  console.error(`FAIL: ${e instanceof Failure ? e.message : e?.stack ?? e}`);
  if (pageErrors.length) console.error(`page errors: ${pageErrors.join("; ")}`);
  await page.screenshot({ path: screenshot, fullPage: true }).then(
    () => console.error(`screenshot of the failure saved to ${screenshot}`),
    () => {},
  );
} finally {
  rl.close();
  await browser.close().catch(() => {});
}
process.exit(exitCode);
