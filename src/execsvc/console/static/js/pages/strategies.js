// Strategy instances: start and stop, and the last signal with the reasons behind it.
import { get, post } from "../api.js";
import { fmtDateTime, h, kv, replace } from "../dom.js";
import { store } from "../store.js";

export const title = "Strategies";

export function render(container) {
  const list = h("section", { class: "card", "aria-labelledby": "strategies-title" });
  const signal = h("section", { class: "card", id: "signal", "aria-labelledby": "signal-title" },
    h("h2", { id: "signal-title" }, "Signal"), h("p", { class: "muted" }, "Choose an instance's last signal."));
  const message = h("p", { class: "error", role: "alert" });
  replace(container, h("h1", {}, "Strategies"), message, list, signal);

  async function load() {
    try {
      const page = await get("/v1/strategies?limit=100");
      replace(list, h("h2", { id: "strategies-title" }, "Instances"),
        page.items.length ? h("table", { id: "strategies" },
          h("caption", { class: "muted" }, "Instances of the account"),
          h("thead", {}, h("tr", {}, ["Kind", "Symbol", "Timeframe", "Status", "Last bar", "Last signal", ""].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, page.items.map((s) => h("tr", {},
            h("td", {}, s.kind), h("td", {}, s.symbol), h("td", {}, s.timeframe),
            h("td", {}, `${s.status}${s.error ? ` (${s.error})` : ""}`), h("td", {}, fmtDateTime(s.last_bar_at)),
            h("td", {}, s.last_signal ? h("button", { type: "button", onclick: () => showSignal(s.last_signal.id) },
              `${s.last_signal.side} ${s.last_signal.rule} (${s.last_signal.status})`) : "none"),
            h("td", {}, s.status === "running"
              ? h("button", { type: "button", class: "danger", onclick: () => act(s, "stop") }, "Stop")
              : h("button", { type: "button", class: "primary", onclick: () => act(s, "start") }, "Start"))))))
          : h("p", { class: "muted" }, "No instances (create one with POST /v1/strategies)."));
    } catch (error) {
      message.textContent = `Could not load strategies: ${error.message}`;
    }
  }

  async function act(instance, verb) {
    try {
      await post(`/v1/strategies/${instance.id}/${verb}`);
      await load();
    } catch (error) {
      message.textContent = `${verb} failed: ${error.message}`;
    }
  }

  async function showSignal(id) {
    try {
      const s = await get(`/v1/signals/${id}`);
      replace(signal, h("h2", { id: "signal-title" }, `Signal ${s.side} ${s.symbol}`),
        kv([["Rule", s.rule], ["Status", s.status], ["At", fmtDateTime(s.at)], ["Strength", s.strength],
          ["Entry", s.entry], ["Stop loss", s.stop_loss], ["Order", s.order_id], ["Refusal", s.refusal ? JSON.stringify(s.refusal) : null]]),
        h("h3", {}, "Reasons"), h("pre", {}, JSON.stringify(s.reasons, null, 2)));
    } catch (error) {
      message.textContent = `Could not load the signal: ${error.message}`;
    }
  }

  store.addEventListener("signals", load);
  load();
  return { dispose: () => store.removeEventListener("signals", load) };
}
