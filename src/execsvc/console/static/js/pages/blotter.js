// Orders, live: the latest page from the API, then every change from the `orders` channel as it happens.
import { del, get, query } from "../api.js";
import { fmtNum, fmtTime, h, kv, replace } from "../dom.js";
import { store, upsertOrder } from "../store.js";

export const title = "Blotter";
const WORKING = new Set(["pending_new", "open", "partially_filled"]);
const STATUSES = ["", "open", "pending_new", "partially_filled", "filled", "pending_cancel", "canceled", "rejected",
  "expired", "unknown"];

export function render(container) {
  const filters = { status: "", symbol: "", side: "" };
  let selected = null;
  let cursor = null;
  let scheduled = false;
  const tbody = h("tbody", { id: "blotter-rows" });
  const count = h("span", { class: "muted", id: "blotter-count", "aria-live": "polite" });
  const detail = h("section", { class: "card", id: "order-detail", "aria-labelledby": "order-detail-title" },
    h("h2", { id: "order-detail-title" }, "Order"), h("p", { class: "muted" }, "Choose an order to see its history."));
  const more = h("button", { type: "button", id: "blotter-more", hidden: true, onclick: () => load(true) }, "Load older");
  const message = h("p", { class: "error", role: "alert" });

  const select = (label, key, options) => h("div", {},
    h("label", { for: `filter-${key}` }, label),
    h("select", { id: `filter-${key}`, onchange: (e) => { filters[key] = e.target.value; load(false); } },
      options.map((o) => h("option", { value: o }, o || "any"))));

  const symbolInput = h("input", { id: "filter-symbol", placeholder: "BTC/USDT", size: 12,
    onchange: (e) => { filters.symbol = e.target.value.trim().toUpperCase(); load(false); } });

  replace(container,
    h("h1", {}, "Blotter"),
    h("div", { class: "split" },
      h("section", { class: "card", "aria-labelledby": "orders-title" },
        h("h2", { id: "orders-title" }, "Orders ", count),
        h("form", { class: "filters", role: "search", "aria-label": "Filter orders", onsubmit: (e) => e.preventDefault() },
          select("Status", "status", STATUSES),
          h("div", {}, h("label", { for: "filter-symbol" }, "Symbol"), symbolInput),
          select("Side", "side", ["", "buy", "sell"])),
        message,
        h("div", { class: "scroll" },
          h("table", { id: "blotter" },
            h("caption", { class: "muted" }, "Newest first; updates live"),
            h("thead", {}, h("tr", {}, ["Created", "Symbol", "Side", "Type", "Qty", "Price", "Status", "Filled",
              "Avg price", "Client id", ""].map((c, i) => h("th", { scope: "col", class: i >= 4 && i <= 8 && i !== 6 ? "num" : "" }, c)))),
            tbody)),
        more),
      detail));

  function matches(o) {
    if (filters.status && o.status !== filters.status) return false;
    if (filters.symbol && o.symbol !== filters.symbol) return false;
    if (filters.side && o.side !== filters.side) return false;
    return true;
  }

  // A limit order's limit; a stop order's trigger, marked as such; nothing for a market order.
  function priceOf(o) {
    if (o.limit_price != null) return o.limit_price;
    return o.stop_price != null ? `stop ${o.stop_price}` : "";
  }

  function row(o) {
    const working = WORKING.has(o.status);
    return h("tr", { "data-order-id": o.id, "data-status": o.status, class: o.id === selected ? "selected" : "" },
      h("td", {}, fmtTime(o.created_at)),
      h("td", {}, o.symbol),
      h("td", { class: `side-${o.side}` }, o.side),
      h("td", {}, o.type),
      h("td", { class: "num" }, o.qty),
      h("td", { class: "num" }, priceOf(o)),
      h("td", {}, h("span", { class: `status status-${o.status}` }, o.status)),
      h("td", { class: "num" }, o.filled_qty),
      h("td", { class: "num" }, fmtNum(o.avg_fill_price, 8)),
      h("td", { class: "cid", title: o.client_order_id }, o.client_order_id),
      h("td", {},
        h("button", { type: "button", "aria-label": `Details of ${o.client_order_id}`, onclick: () => show(o.id) }, "Details"),
        " ",
        working ? h("button", { type: "button", class: "danger", "aria-label": `Cancel ${o.client_order_id}`,
          onclick: (e) => cancel(o, e.target) }, "Cancel") : null));
  }

  function draw() {
    scheduled = false;
    const orders = [...store.orders.values()].filter(matches)
      .sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
    replace(tbody, orders.slice(0, 500).map(row));
    count.textContent = `(${orders.length})`;
    if (selected) renderDetail(selected);
  }

  function schedule() {
    if (!scheduled) { scheduled = true; requestAnimationFrame(draw); }
  }

  async function load(older) {
    message.textContent = "";
    try {
      const page = await get(`/v1/orders${query({ ...filters, limit: 100, cursor: older ? cursor : "" })}`);
      page.items.forEach((o) => upsertOrder(o));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      draw();
    } catch (error) {
      message.textContent = `Could not load orders: ${error.message}`;
    }
  }

  async function cancel(order, button) {
    button.disabled = true;
    try {
      upsertOrder(await del(`/v1/orders/${order.id}`));
      schedule();
    } catch (error) {
      message.textContent = `Cancel of ${order.client_order_id} failed: ${error.message}`;
      button.disabled = false;
    }
  }

  // Every page of an order's history after `cursor` (a seq; none: from the start), oldest first.
  async function eventsAfter(id, cursor) {
    const items = [];
    for (;;) {
      const page = await get(`/v1/orders/${id}/events${query({ limit: 500, cursor })}`);
      items.push(...page.items);
      if (!page.next_cursor) return items;
      cursor = page.next_cursor;
    }
  }

  let loading = 0; // answers to an earlier read of the details are dropped when a later one has started
  async function show(id) {
    selected = id;
    draw();
    const ticket = ++loading;
    try {
      const [order, fills, events] = await Promise.all([get(`/v1/orders/${id}`), get(`/v1/fills${query({ order_id: id })}`),
        eventsAfter(id, undefined)]);
      if (ticket !== loading || selected !== id) return;
      renderDetail(id, order, fills.items, events);
    } catch (error) {
      if (ticket !== loading) return;
      replace(detail, h("h2", { id: "order-detail-title" }, "Order"), h("p", { class: "error" }, error.message));
    }
  }

  // The fills and the history's new events are read when the stream shows the selected order changed.
  async function refresh(id) {
    const ticket = ++loading;
    const last = detailData.events?.length ? String(detailData.events[detailData.events.length - 1].seq) : undefined;
    try {
      const [fills, events] = await Promise.all([get(`/v1/fills${query({ order_id: id })}`), eventsAfter(id, last)]);
      if (ticket !== loading || detailData.id !== id) return;
      detailData.fills = fills.items;
      detailData.events = [...(detailData.events || []), ...events];
      renderDetail(id);
    } catch (error) {
      if (ticket !== loading) return;
      detailData.updated = null; // read again on the next change, or the next draw
      message.textContent = `Could not refresh the order's history: ${error.message}`;
    }
  }

  let detailData = {};
  function renderDetail(id, order, fills, events) {
    if (order) detailData = { id, order, fills, events, updated: order.updated_at };
    if (detailData.id !== id) return;
    const o = store.orders.get(id) || detailData.order;
    if (o.updated_at !== detailData.updated) {
      detailData.updated = o.updated_at;
      refresh(id);
    }
    const risk = detailData.order?.risk;
    const history = detailData.events || [];
    replace(detail,
      h("h2", { id: "order-detail-title", tabindex: "-1" }, `Order ${o.client_order_id}`),
      kv([["Id", o.id], ["Status", o.status], ["Symbol", o.symbol], ["Side", o.side], ["Type", `${o.type} ${o.time_in_force}`],
        ["Qty", o.qty], ["Limit price", o.limit_price], ["Stop price", o.stop_price], ["Filled", `${o.filled_qty} @ ${o.avg_fill_price ?? "–"}`], ["Fees", `${o.fees} ${o.fee_asset}`],
        ["Source", o.source], ["Created", o.created_at], ["Updated", o.updated_at],
        ["Rejected", o.reject_code ? `${o.reject_code}: ${o.reject_reason}` : null]]),
      h("h3", {}, "Risk decision"),
      risk ? h("div", { id: "risk-decision" },
        h("p", {}, risk.approved ? "Approved" : "Denied"),
        risk.violations.length ? h("ul", {}, risk.violations.map((v) => h("li", {}, `${v.rule}: ${v.message ?? ""}`))) : null,
        h("p", { class: "muted" }, `Checks: ${risk.checks.join(", ") || "none"}`))
        : h("p", { class: "muted" }, "No risk audit recorded."),
      h("h3", {}, "History"),
      history.length ? h("ol", { id: "order-history" }, history.map((e) =>
        h("li", {}, `${fmtTime(e.at)} ${e.from_status ?? "new"} → ${e.to_status}: ${e.reason}`)))
        : h("p", { class: "muted" }, "No events recorded."),
      h("h3", {}, "Fills"),
      detailData.fills?.length ? h("ul", {}, detailData.fills.map((f) => h("li", {}, `${fmtTime(f.created_at)} ${f.qty} @ ${f.price}`)))
        : h("p", { class: "muted" }, "No fills."));
  }

  store.addEventListener("orders", schedule);
  draw();
  load(false);
  return { dispose: () => store.removeEventListener("orders", schedule) };
}
