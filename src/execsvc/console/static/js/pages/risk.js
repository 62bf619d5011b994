// The risk view: trading state and why, headroom per limit, breakers, the kill switch and the limits (admin).
import { get, post, put, session } from "../api.js";
import { fmtDateTime, fmtNum, h, kv, replace, table } from "../dom.js";
import { store } from "../store.js";
import { confirmAction } from "./confirm.js";

export const title = "Risk";

export function render(container) {
  const state = h("section", { class: "card", id: "risk-state", "aria-labelledby": "risk-state-title" });
  const headroom = h("section", { class: "card", id: "headroom", "aria-labelledby": "headroom-title" });
  const breakers = h("section", { class: "card", id: "breakers", "aria-labelledby": "breakers-title" });
  const kill = h("section", { class: "card", id: "kill-switch", "aria-labelledby": "kill-title" });
  const limits = h("section", { class: "card", id: "limits", "aria-labelledby": "limits-title" });
  const message = h("p", { class: "error", role: "alert", id: "risk-message" });
  replace(container, h("h1", {}, "Risk"), message, h("div", { class: "grid" }, state, kill), headroom,
    h("div", { class: "grid" }, breakers, limits));

  function drawState(s) {
    const scope = (name, v) => [name, h("span", { class: `state-${v.state}` },
      `${v.state}${v.reason ? ` — ${v.reason}` : ""}${v.changed_by ? ` (by ${v.changed_by}, ${fmtDateTime(v.changed_at)})` : ""}`)];
    replace(state, h("h2", { id: "risk-state-title" }, "Trading state"),
      h("p", { id: "trading-state", "data-state": s.state, class: `state-${s.state}` }, h("strong", {}, s.state.toUpperCase())),
      kv([scope("Account", s.account), scope("Service", s.global),
        ["Today's PnL", `${fmtNum(s.pnl.today)} ${s.pnl.currency}${s.pnl.breached ? " (daily loss limit breached)" : ""}`],
        ["Open orders", String(s.open_orders.total)]]),
      s.restrictions.length ? [h("h3", {}, "Restrictions"), h("ul", {}, s.restrictions.map((r) =>
        h("li", {}, `${r.rule}: ${r.state}${r.reason ? ` — ${r.reason}` : ""}${r.until ? ` until ${fmtDateTime(r.until)}` : ""}`)))] : null,
      s.events.length ? [h("h3", {}, "Recent events"), h("ul", { class: "plain" }, s.events.slice(0, 10).map((e) =>
        h("li", {}, `${fmtDateTime(e.at)} ${e.scope} ${e.kind} → ${e.state}${e.reason ? ` (${e.reason})` : ""}${e.actor ? ` by ${e.actor}` : ""}`)))] : null);
    replace(headroom, h("h2", { id: "headroom-title" }, "Headroom per limit"),
      s.headroom.length ? h("table", {},
        h("caption", { class: "muted" }, "Used against each limit in force"),
        h("thead", {}, h("tr", {}, ["Rule", "Symbol", "Used", "Limit", "Remaining", "Use"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, s.headroom.map((r) => {
          const limit = Math.abs(Number(r.limit)) || 1;
          const used = Math.max(0, Number(r.used));
          const label = `${r.rule}${r.symbol ? ` ${r.symbol}` : ""}`;
          return h("tr", {}, h("td", {}, r.rule), h("td", {}, r.symbol ?? "all"), h("td", { class: "num" }, fmtNum(r.used)),
            h("td", { class: "num" }, fmtNum(r.limit)), h("td", { class: "num" }, fmtNum(r.remaining)),
            h("td", {}, h("meter", { min: 0, max: limit, low: limit * 0.7, high: limit * 0.9, optimum: 0,
              value: Math.min(used, limit), "aria-label": `${label}: ${Math.round((used / limit) * 100)}% used` })));
        }))) : h("p", { class: "muted" }, "No limits in force."));
    replace(breakers, h("h2", { id: "breakers-title" }, "Venue breakers"),
      s.breakers.length ? table("Circuit breakers per broker", [
        { label: "Broker", cell: (b) => b.broker }, { label: "State", cell: (b) => b.state },
        { label: "Failures", num: true, cell: (b) => `${b.recent_failures}/${b.failure_threshold}` },
        { label: "Opened", cell: (b) => fmtDateTime(b.opened_at) }, { label: "Retry at", cell: (b) => fmtDateTime(b.retry_at) }],
      s.breakers) : h("p", { class: "muted" }, "No breakers."));
    drawKill(s);
  }

  function drawKill(s) {
    const admin = session.admin;
    const act = async (question, label, path, body) => {
      const reason = await confirmAction(question, "");
      if (reason === null) return;
      try {
        await post(path, { ...body, reason });
        await refresh();
      } catch (error) {
        message.textContent = `${label} failed: ${error.message}`;
      }
    };
    const mine = (label, path, body) =>
      act(`${label} trading for account ${s.account_id}?`, label, path, { ...body, account_id: s.account_id });
    // The service-wide switch (scope "global"): it stops every account, not just this token's, so it is a section
    // of its own, shown to admin tokens only, and its confirmation says so.
    const everyone = (label, path, body) =>
      act(`${label} trading for ALL accounts of the service, not only ${s.account_id}? Open orders are left as they are.`,
        label, path, { ...body, scope: "global" });
    replace(kill, h("h2", { id: "kill-title" }, "Kill switch"),
      admin ? null : h("p", { class: "muted" }, "Halting and resuming need a token with the admin scope."),
      h("h3", { id: "kill-account-title" }, `This account (${s.account_id})`),
      h("div", { class: "actions", role: "group", "aria-labelledby": "kill-account-title" },
        h("button", { type: "button", class: "danger", id: "halt", disabled: !admin || s.account.state === "halted",
          onclick: () => mine("Halt", "/v1/risk/halt", { state: "halted", cancel_open_orders: true }) }, "Halt (cancel open orders)"),
        h("button", { type: "button", id: "reducing", disabled: !admin || s.account.state === "reducing",
          onclick: () => mine("Reduce-only", "/v1/risk/halt", { state: "reducing" }) }, "Reducing only"),
        h("button", { type: "button", class: "primary", id: "resume", disabled: !admin || s.account.state === "active",
          onclick: () => mine("Resume", "/v1/risk/resume", {}) }, "Resume")),
      admin ? [
        h("h3", { id: "kill-global-title" }, "All accounts (service-wide)"),
        h("p", { class: "muted", id: "global-state" }, `Service state: ${s.global.state}${s.global.reason ? ` — ${s.global.reason}` : ""}`),
        h("div", { class: "actions", role: "group", "aria-labelledby": "kill-global-title" },
          h("button", { type: "button", class: "danger", id: "halt-global", disabled: s.global.state === "halted",
            onclick: () => everyone("Halt", "/v1/risk/halt", { state: "halted" }) }, "Halt all accounts"),
          h("button", { type: "button", class: "primary", id: "resume-global", disabled: s.global.state === "active",
            onclick: () => everyone("Resume", "/v1/risk/resume", {}) }, "Lift the halt on all accounts")),
      ] : null);
  }

  async function drawLimits() {
    if (!session.admin) {
      replace(limits, h("h2", { id: "limits-title" }, "Limits"), h("p", { class: "muted" }, "Reading and editing limits needs the admin scope."));
      return;
    }
    try {
      const [current, history] = await Promise.all([get("/v1/risk/limits"), get("/v1/risk/limits/history")]);
      const editor = h("textarea", { id: "limits-editor", spellcheck: "false" }, JSON.stringify(current.overrides, null, 2));
      const save = async () => {
        let body;
        try { body = JSON.parse(editor.value); } catch (error) { message.textContent = `Not JSON: ${error.message}`; return; }
        const reason = await confirmAction("Replace this account's limit overrides?", "limits edited in the console");
        if (reason === null) return;
        try { await put("/v1/risk/limits", body); await drawLimits(); await refresh(); } catch (error) { message.textContent = `Saving limits failed: ${error.message}`; }
      };
      replace(limits, h("h2", { id: "limits-title" }, `Limits (version ${current.version})`),
        h("label", { for: "limits-editor" }, "Overrides (JSON; null switches a check off, a limit left out takes the default)"),
        editor, h("div", { class: "actions" }, h("button", { type: "button", class: "primary", onclick: save }, "Save limits")),
        h("h3", {}, "In force"), h("pre", {}, JSON.stringify(current.effective, null, 1)),
        h("h3", {}, "History"), h("ul", { class: "plain", id: "limits-history" }, history.items.map((v) =>
          h("li", {}, `v${v.version} by ${v.changed_by} at ${fmtDateTime(v.changed_at)}: ${JSON.stringify(v.overrides.limits ?? {})}`))));
    } catch (error) {
      replace(limits, h("h2", { id: "limits-title" }, "Limits"), h("p", { class: "error" }, error.message));
    }
  }

  async function refresh() {
    try {
      drawState(await get("/v1/risk/state"));
    } catch (error) {
      message.textContent = `Could not load the risk state: ${error.message}`;
    }
  }
  const onSession = () => { refresh(); drawLimits(); };
  store.addEventListener("risk", refresh);
  store.addEventListener("session", onSession);
  refresh();
  drawLimits();
  return {
    dispose() {
      store.removeEventListener("risk", refresh);
      store.removeEventListener("session", onSession);
    },
  };
}
