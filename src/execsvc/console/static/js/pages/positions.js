// Balances, positions and PnL: the account on every positions/fills update and every sample; marks live.
import { get } from "../api.js";
import { fmtNum, h, kv, replace, signClass, table } from "../dom.js";
import { lineChart } from "../chart.js";
import { store } from "../store.js";

export const title = "Positions & account";

export function render(container) {
  const account = h("section", { class: "card", id: "account", "aria-labelledby": "account-title" });
  const positions = h("section", { class: "card", id: "positions", "aria-labelledby": "positions-title" });
  const equity = h("section", { class: "card", id: "equity", "aria-labelledby": "equity-title" });
  const message = h("p", { class: "error", role: "alert" });
  replace(container, h("h1", {}, "Positions & account"), message, h("div", { class: "grid" }, account, equity), positions);
  let latest = { account: null, positions: [] };

  function draw() {
    const a = latest.account;
    if (a) {
      replace(account, h("h2", { id: "account-title" }, `Account ${a.id}`),
        kv([["Broker", a.broker], ["Equity", `${fmtNum(a.equity)} ${a.valuation_asset}`],
          ["Realized PnL", h("span", { class: signClass(a.realized_pnl), id: "realized-pnl" }, fmtNum(a.realized_pnl))],
          ["Unrealized PnL", h("span", { class: signClass(a.unrealized_pnl), id: "unrealized-pnl" }, fmtNum(a.unrealized_pnl))],
          ["Fees paid", fmtNum(a.fees_paid, 8)]]),
        h("h3", {}, "Balances"),
        table("Balances by asset", [
          { label: "Asset", cell: (b) => b.asset },
          { label: "Total", num: true, cell: (b) => fmtNum(b.total, 8) },
          { label: "Reserved", num: true, cell: (b) => fmtNum(b.reserved, 8) },
          { label: "Available", num: true, cell: (b) => fmtNum(b.available, 8) }], a.balances));
    }
    replace(positions, h("h2", { id: "positions-title" }, "Positions"),
      latest.positions.length ? table("Open positions, marks live", [
        { label: "Symbol", cell: (p) => p.symbol },
        { label: "Qty", num: true, cell: (p) => p.qty },
        { label: "Avg entry", num: true, cell: (p) => fmtNum(p.avg_entry_price, 8) },
        { label: "Mark", num: true, cell: (p) => fmtNum(mark(p), 8) },
        { label: "Notional", num: true, cell: (p) => fmtNum(Number(p.qty) * mark(p)) },
        { label: "Realized", num: true, cell: (p) => h("span", { class: signClass(p.realized_pnl) }, fmtNum(p.realized_pnl)) },
        { label: "Unrealized", num: true, cell: (p) => h("span", { class: signClass(unrealized(p)) }, fmtNum(unrealized(p))) }],
      latest.positions) : h("p", { class: "muted" }, "No positions."));
    replace(equity, h("h2", { id: "equity-title" }, "Equity this session"),
      lineChart(store.equity, "Equity over the session"),
      h("p", { class: "muted" }, `${store.equity.length} samples, every 5 s and on every fill`));
  }

  // The position's own mark is as of its read; the markets channel's is newer.
  function mark(p) {
    const series = store.marks.get(p.symbol);
    return series?.length ? series[series.length - 1][1] : Number(p.mark_price);
  }
  function unrealized(p) {
    return Number(p.qty) * (mark(p) - Number(p.avg_entry_price));
  }

  async function refresh() {
    try {
      const [a, p] = await Promise.all([get("/v1/account"), get("/v1/positions")]);
      latest = { account: a, positions: p.items };
      store.equity.push([Date.now(), Number(a.equity)]);
      draw();
    } catch (error) {
      message.textContent = `Could not load the account: ${error.message}`;
    }
  }
  const onAccount = (e) => { latest.account = e.detail; draw(); };
  store.addEventListener("positions", refresh);
  store.addEventListener("fills", refresh);
  store.addEventListener("account", onAccount);
  store.addEventListener("markets", draw);
  refresh();
  return {
    dispose() {
      store.removeEventListener("positions", refresh);
      store.removeEventListener("fills", refresh);
      store.removeEventListener("account", onAccount);
      store.removeEventListener("markets", draw);
    },
  };
}
