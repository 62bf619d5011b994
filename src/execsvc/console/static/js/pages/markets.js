// Listed markets with their rules and live marks (the `markets` channel), and a chart of the chosen one.
import { get } from "../api.js";
import { fmtDateTime, fmtNum, h, replace } from "../dom.js";
import { lineChart } from "../chart.js";
import { recordMarket, store } from "../store.js";

export const title = "Markets";

export function render(container) {
  let chosen = null;
  let scheduled = false;
  const list = h("section", { class: "card", "aria-labelledby": "markets-title" });
  const chart = h("section", { class: "card", id: "market-chart", "aria-labelledby": "chart-title" });
  const message = h("p", { class: "error", role: "alert" });
  replace(container, h("h1", {}, "Markets"), message, list, chart);

  function draw() {
    scheduled = false;
    const markets = [...store.markets.values()].sort((a, b) => a.symbol.localeCompare(b.symbol));
    if (!chosen && markets.length) chosen = markets[0].symbol;
    replace(list, h("h2", { id: "markets-title" }, "Symbols"),
      h("table", { id: "markets" },
        h("caption", { class: "muted" }, "Trading rules and marks, live"),
        h("thead", {}, h("tr", {}, ["Symbol", "Tick size", "Qty step", "Min qty", "Min notional", "Mark", "Mark time", ""]
          .map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, markets.map((m) => h("tr", { "data-symbol": m.symbol, class: m.symbol === chosen ? "selected" : "" },
          h("td", {}, m.symbol), h("td", {}, m.tick_size), h("td", {}, m.qty_step), h("td", {}, m.min_qty),
          h("td", {}, m.min_notional), h("td", { class: "num mark" }, fmtNum(m.mark_price, 8)),
          h("td", {}, fmtDateTime(m.mark_time)),
          h("td", {}, h("button", { type: "button", "aria-pressed": String(m.symbol === chosen),
            onclick: () => { chosen = m.symbol; draw(); } }, `Chart ${m.symbol}`)))))));
    replace(chart, h("h2", { id: "chart-title" }, chosen ? `${chosen} mark` : "Mark"),
      lineChart(store.marks.get(chosen) || [], `${chosen} mark price over the session`),
      h("p", { class: "muted" }, "Marks received since the console opened."));
  }
  const schedule = () => { if (!scheduled) { scheduled = true; requestAnimationFrame(draw); } };

  get("/v1/markets").then((page) => { page.items.forEach(recordMarket); draw(); })
    .catch((error) => { message.textContent = `Could not load markets: ${error.message}`; });
  store.addEventListener("markets", schedule);
  draw();
  return { dispose: () => store.removeEventListener("markets", schedule) };
}
