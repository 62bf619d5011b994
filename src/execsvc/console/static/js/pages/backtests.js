// Backtests: their status and summary, and the report (fetched with the token, then opened as a download).
import { get } from "../api.js";
import { fmtDateTime, h, replace } from "../dom.js";

export const title = "Backtests";

export function render(container) {
  const list = h("section", { class: "card", "aria-labelledby": "backtests-title" });
  const message = h("p", { class: "error", role: "alert" });
  replace(container, h("h1", {}, "Backtests"), message, list);

  async function report(id, button) {
    button.disabled = true;
    try {
      const blob = await get(`/v1/backtests/${id}/report`);
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: `backtest-${id}.html` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (error) {
      message.textContent = `Could not fetch the report: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  }

  get("/v1/backtests?limit=100").then((page) => {
    replace(list, h("h2", { id: "backtests-title" }, "Runs"),
      page.items.length ? h("table", { id: "backtests" },
        h("caption", { class: "muted" }, "Newest first"),
        h("thead", {}, h("tr", {}, ["Created", "Status", "Progress", "Summary", "Finished", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, page.items.map((b) => h("tr", { "data-backtest-id": b.id, "data-status": b.status },
          h("td", {}, fmtDateTime(b.created_at)), h("td", {}, `${b.status}${b.error ? ` (${b.error})` : ""}`),
          h("td", {}, `${b.progress.done}/${b.progress.total}`),
          h("td", {}, b.summary ? Object.entries(b.summary).slice(0, 4).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("; ") : ""),
          h("td", {}, fmtDateTime(b.finished_at)),
          h("td", {}, b.status === "done"
            ? h("button", { type: "button", onclick: (e) => report(b.id, e.target) }, "Download report") : null)))))
        : h("p", { class: "muted" }, "No backtests (start one with POST /v1/backtests)."));
  }).catch((error) => { message.textContent = `Could not load backtests: ${error.message}`; });
}
