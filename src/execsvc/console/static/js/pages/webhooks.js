// Webhook subscriptions, each one's delivery log, and replay of a dead letter.
import { get, post, query } from "../api.js";
import { fmtDateTime, h, replace } from "../dom.js";

export const title = "Webhooks";

export function render(container) {
  const list = h("section", { class: "card", "aria-labelledby": "webhooks-title" });
  const deliveries = h("section", { class: "card", id: "deliveries", "aria-labelledby": "deliveries-title" },
    h("h2", { id: "deliveries-title" }, "Deliveries"), h("p", { class: "muted" }, "Choose a subscription."));
  const message = h("p", { class: "error", role: "alert" });
  const notice = h("p", { class: "muted", role: "status", id: "delivery-notice" });
  replace(container, h("h1", {}, "Webhooks"), message, notice, list, deliveries);
  let chosen = null;
  let status = "";

  async function load() {
    try {
      const page = await get("/v1/webhooks");
      replace(list, h("h2", { id: "webhooks-title" }, "Subscriptions"),
        page.items.length ? h("table", { id: "webhooks" },
          h("caption", { class: "muted" }, "Endpoints and the events they receive"),
          h("thead", {}, h("tr", {}, ["URL", "Events", "Enabled", "Description", ""].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, page.items.map((w) => h("tr", {},
            h("td", {}, w.url), h("td", {}, w.events.join(", ")),
            h("td", {}, w.enabled ? "yes" : `no${w.disabled_reason ? ` (${w.disabled_reason})` : ""}`),
            h("td", {}, w.description ?? ""),
            h("td", {}, h("button", { type: "button", onclick: () => { chosen = w; loadDeliveries(); } }, "Deliveries"))))))
          : h("p", { class: "muted" }, "No subscriptions (create them with POST /v1/webhooks)."));
    } catch (error) {
      message.textContent = `Could not load webhooks: ${error.message}`;
    }
  }

  async function loadDeliveries() {
    try {
      const page = await get(`/v1/webhooks/${chosen.id}/deliveries${query({ status, limit: 100 })}`);
      const filter = h("select", { id: "delivery-status", onchange: (e) => { status = e.target.value; loadDeliveries(); } },
        ["", "pending", "succeeded", "dead"].map((s) => h("option", { value: s, selected: s === status }, s || "any")));
      replace(deliveries, h("h2", { id: "deliveries-title" }, `Deliveries to ${chosen.url}`),
        h("div", { class: "filters" }, h("div", {}, h("label", { for: "delivery-status" }, "Status"), filter)),
        h("table", {},
          h("caption", { class: "muted" }, "Newest first"),
          h("thead", {}, h("tr", {}, ["Created", "Event", "Status", "Attempts", "Last answer", "Next attempt", ""].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", { id: "delivery-rows" }, page.items.map((d) => h("tr", { "data-delivery-id": d.id, "data-status": d.status },
            h("td", {}, fmtDateTime(d.created_at)), h("td", {}, d.event_type), h("td", {}, d.status),
            h("td", { class: "num" }, d.attempts), h("td", {}, d.last_status_code ?? d.last_error ?? ""),
            h("td", {}, d.status === "pending" ? fmtDateTime(d.next_attempt_at) : ""),
            h("td", {}, d.status === "dead" ? h("button", { type: "button", onclick: () => replay(d) }, "Replay") : null))))));
    } catch (error) {
      message.textContent = `Could not load deliveries: ${error.message}`;
    }
  }

  async function replay(delivery) {
    try {
      const queued = await post(`/v1/webhooks/deliveries/${delivery.id}/replay`);
      notice.textContent = `The ${queued.event_type} delivery is queued again (${queued.status}).`;
      await loadDeliveries();
    } catch (error) {
      message.textContent = `Replay failed: ${error.message}`;
    }
  }

  load();
}
