// Rendering. Every piece of data reaches the DOM through textContent or an attribute, never innerHTML.
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { DeliveryView, GetStatsResponse } from "./gen/baemin/report/v1/report_pb.js";
import { DeliveryStatus, PaymentState } from "./gen/baemin/report/v1/report_pb.js";

export type ConnectionState = "live" | "reconnecting" | "signed-out";

/** The table keeps the newest rows only (the snapshot sends at most 1,000 too). */
const MAX_ROWS = 1_000;

const won = new Intl.NumberFormat("ko-KR", { style: "currency", currency: "KRW" });
const count = new Intl.NumberFormat("ko-KR");
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** Table columns, in order: `data-field` name and how a row fills the cell. */
const COLUMNS: ReadonlyArray<[string, (v: DeliveryView, cell: HTMLTableCellElement) => void]> = [
  ["call_id", (v, c) => text(c, v.callId, "mono")],
  ["restaurant_id", (v, c) => text(c, v.restaurantId)],
  ["destination", (v, c) => text(c, v.destination)],
  ["fee", (v, c) => money(c, v.fee)],
  ["status", (v, c) => badge(c, enumName(DeliveryStatus, v.status), "status")],
  ["rider_id", (v, c) => text(c, v.riderId)],
  ["settled_amount", (v, c) => money(c, v.settledAmount, v.paymentState !== PaymentState.SETTLED)],
  ["payment_state", (v, c) => badge(c, enumName(PaymentState, v.paymentState), "payment")],
  ["called_at", (v, c) => time(c, v.calledAt)],
  ["accepted_at", (v, c) => time(c, v.acceptedAt)],
  ["picked_at", (v, c) => time(c, v.pickedAt)],
  ["completed_at", (v, c) => time(c, v.completedAt)],
  ["cancelled_at", (v, c) => time(c, v.cancelledAt)],
];

const STATS = ["called", "accepted", "picked", "completed", "cancelled", "total_fees", "revenue", "settled_count"] as const;
const MONEY_STATS = new Set<string>(["total_fees", "revenue"]);

export class DashboardView {
  private readonly rows = new Map<string, HTMLTableRowElement>();
  private readonly tbody: HTMLTableSectionElement;
  private readonly empty: HTMLElement;
  private readonly connectionEl: HTMLElement;
  private readonly detailEl: HTMLElement;
  private readonly lastUpdateEl: HTMLTimeElement;
  private readonly signin: HTMLFormElement;
  private readonly signinMessage: HTMLElement;
  private readonly tokenInput: HTMLInputElement;
  private readonly signOutButton: HTMLButtonElement;

  constructor(private readonly doc: Document) {
    this.tbody = must(doc.querySelector<HTMLTableSectionElement>('[data-testid="deliveries"] tbody'));
    this.empty = must(doc.querySelector<HTMLElement>('[data-testid="empty"]'));
    this.connectionEl = must(doc.querySelector<HTMLElement>('[data-testid="connection"]'));
    this.detailEl = must(doc.querySelector<HTMLElement>('[data-testid="connection-detail"]'));
    this.lastUpdateEl = must(doc.querySelector<HTMLTimeElement>('[data-testid="last-update"]'));
    this.signin = must(doc.querySelector<HTMLFormElement>('[data-testid="signin"]'));
    this.signinMessage = must(doc.querySelector<HTMLElement>('[data-testid="signin-message"]'));
    this.tokenInput = must(this.signin.querySelector<HTMLInputElement>('input[name="token"]'));
    this.signOutButton = must(doc.querySelector<HTMLButtonElement>('[data-testid="sign-out"]'));
  }

  /** Inserts or updates one row, keyed by call id; rows stay newest first. */
  upsert(view: DeliveryView): void {
    if (!view.callId) return;
    const version = view.updatedAt ? `${view.updatedAt.seconds}.${view.updatedAt.nanos}` : "";
    let tr = this.rows.get(view.callId);
    if (tr && version && tr.dataset.version === version) return; // a snapshot replay after a reconnect
    if (!tr) {
      tr = this.doc.createElement("tr");
      tr.dataset.callId = view.callId;
      for (const [field] of COLUMNS) {
        const td = this.doc.createElement("td");
        td.dataset.field = field;
        tr.append(td);
      }
      this.tbody.insertBefore(tr, this.rowAfter(view.callId));
      this.rows.set(view.callId, tr);
      this.trim();
    }
    COLUMNS.forEach(([, fill], i) => fill(view, tr.cells[i]!));
    tr.dataset.status = enumName(DeliveryStatus, view.status).toLowerCase();
    tr.dataset.version = version;
    flash(tr);
    this.empty.hidden = this.rows.size > 0;
  }

  /** Forgets every row, figure and update time (on sign-out). */
  clear(): void {
    this.rows.clear();
    this.tbody.replaceChildren();
    this.empty.hidden = false;
    this.stats(null);
    this.lastUpdateEl.removeAttribute("datetime");
    this.lastUpdateEl.textContent = "—";
  }

  stats(s: GetStatsResponse | null): void {
    for (const name of STATS) {
      const el = this.doc.querySelector<HTMLElement>(`[data-stat="${name}"]`);
      if (!el) continue;
      if (!s) {
        el.textContent = "—";
        delete el.dataset.value;
        continue;
      }
      const value = statValue(s, name);
      el.dataset.value = value.toString();
      el.textContent = MONEY_STATS.has(name) ? won.format(value) : count.format(value);
    }
  }

  connection(state: ConnectionState, label: string, detail = ""): void {
    if (this.connectionEl.dataset.state !== state) this.connectionEl.dataset.state = state;
    this.connectionEl.textContent = label;
    this.detailEl.textContent = detail;
    this.signOutButton.hidden = state === "signed-out";
  }

  /** Records that fresh data just arrived. */
  touched(at = new Date()): void {
    this.lastUpdateEl.dateTime = at.toISOString();
    this.lastUpdateEl.textContent = clock.format(at);
  }

  showSignIn(message: string): void {
    this.signinMessage.textContent = message;
    this.signin.hidden = false;
    this.tokenInput.value = "";
    this.tokenInput.focus();
  }

  hideSignIn(): void {
    this.signin.hidden = true;
    this.tokenInput.value = "";
  }

  onTokenSubmitted(handler: (token: string) => void): void {
    this.signin.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const token = this.tokenInput.value.trim().replace(/^Bearer\s+/i, "");
      if (token) handler(token);
    });
  }

  onSignOut(handler: () => void): void {
    this.signOutButton.addEventListener("click", handler);
  }

  /** The first row whose call id sorts below `callId` (UUIDv7 ids sort by creation time), or null. */
  private rowAfter(callId: string): HTMLTableRowElement | null {
    const last = this.tbody.lastElementChild as HTMLTableRowElement | null;
    if (!last || (last.dataset.callId ?? "") > callId) return null; // the snapshot arrives newest first
    for (const tr of this.tbody.rows) {
      if ((tr.dataset.callId ?? "") < callId) return tr;
    }
    return null;
  }

  private trim(): void {
    while (this.rows.size > MAX_ROWS) {
      const last = this.tbody.lastElementChild as HTMLTableRowElement | null;
      if (!last) break;
      this.rows.delete(last.dataset.callId ?? "");
      last.remove();
    }
  }
}

function statValue(s: GetStatsResponse, name: (typeof STATS)[number]): bigint {
  switch (name) {
    case "called":
      return s.called;
    case "accepted":
      return s.accepted;
    case "picked":
      return s.picked;
    case "completed":
      return s.completed;
    case "cancelled":
      return s.cancelled;
    case "total_fees":
      return s.totalFees;
    case "revenue":
      return s.revenue;
    case "settled_count":
      return s.settledCount;
  }
}

/** "COMPLETED" for DeliveryStatus.COMPLETED; "" for UNSPECIFIED or an unknown number. */
function enumName(e: Record<number, string>, value: number): string {
  const name = e[value];
  return name && name !== "UNSPECIFIED" ? name : "";
}

function text(cell: HTMLTableCellElement, value: string, className = ""): void {
  cell.textContent = value || "—";
  cell.className = value ? className : "none";
}

function money(cell: HTMLTableCellElement, value: bigint, unset = false): void {
  if (unset && value === 0n) {
    cell.textContent = "—";
    cell.className = "none num";
    delete cell.dataset.value;
    return;
  }
  cell.textContent = won.format(value);
  cell.className = "num";
  cell.dataset.value = value.toString();
}

function badge(cell: HTMLTableCellElement, name: string, kind: string): void {
  cell.textContent = name || "—";
  cell.className = name ? `badge ${kind}-${name.toLowerCase()}` : "none";
}

function time(cell: HTMLTableCellElement, ts: Timestamp | undefined): void {
  if (!ts) {
    cell.replaceChildren("—");
    cell.className = "none";
    return;
  }
  const at = timestampDate(ts);
  const el = cell.ownerDocument.createElement("time");
  el.dateTime = at.toISOString();
  el.title = dateTime.format(at);
  el.textContent = clock.format(at);
  cell.replaceChildren(el);
  cell.className = "time";
}

/** Briefly highlights a row that just changed. */
function flash(tr: HTMLTableRowElement): void {
  tr.animate?.([{ backgroundColor: "#fff3bf" }, { backgroundColor: "transparent" }], { duration: 1_200, easing: "ease-out" });
}

function must<T>(el: T | null): T {
  if (!el) throw new Error("dashboard: index.html is missing an element the page needs");
  return el;
}
