// The console shell: login, navigation between pages, the stream, and the session's samples.
import { get, session } from "./api.js";
import { h, replace } from "./dom.js";
import { Stream } from "./stream.js";
import { changed, recordMarket, store, upsertOrder } from "./store.js";
import * as blotter from "./pages/blotter.js";

// The blotter comes with the first paint; the other pages load when first opened.
const PAGES = {
  blotter: () => Promise.resolve(blotter),
  positions: () => import("./pages/positions.js"),
  risk: () => import("./pages/risk.js"),
  markets: () => import("./pages/markets.js"),
  webhooks: () => import("./pages/webhooks.js"),
  strategies: () => import("./pages/strategies.js"),
  backtests: () => import("./pages/backtests.js"),
};
let routing = 0;
const CHANNELS = ["orders", "fills", "positions", "risk", "markets", "signals"];
let stream = null;
let current = null;
let sampler = null;

function showLogin(message) {
  document.getElementById("login").hidden = false;
  document.getElementById("nav").hidden = true;
  document.getElementById("session").hidden = true;
  replace(document.getElementById("page"));
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("token").focus();
}

function startSession() {
  // The page is drawn at once; a refused token comes back as a 401 (or a 4401 close) and logs out.
  document.getElementById("login").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("session").hidden = false;
  stream = new Stream(session.token, CHANNELS);
  stream.addEventListener("authenticated", (e) => {
    session.accountId = e.detail.account_id;
    session.scopes = e.detail.scopes;
    document.getElementById("who").textContent = `${e.detail.account_id}${session.admin ? " (admin)" : ""}`;
    changed("session");
  });
  stream.addEventListener("orders", (e) => {
    const d = e.detail;
    if (d.snapshot) d.items.forEach((o) => upsertOrder(o));
    else upsertOrder(d.data);
    changed("orders");
  });
  stream.addEventListener("markets", (e) => {
    const d = e.detail;
    (d.snapshot ? d.items : [d.data]).forEach(recordMarket);
    changed("markets");
  });
  for (const name of ["fills", "positions", "risk", "signals"]) {
    stream.addEventListener(name, (e) => store.dispatchEvent(new CustomEvent(name, { detail: e.detail })));
  }
  route();
  stream.start();
  window.execsvcStream = stream; // for the browser tests and the curious: lastSeq, connects
  sampleEquity();
  sampler = setInterval(sampleEquity, 5000);
}

async function sampleEquity() {
  try {
    const account = await get("/v1/account");
    store.equity.push([Date.now(), Number(account.equity)]);
    if (store.equity.length > 2000) store.equity.shift();
    store.dispatchEvent(new CustomEvent("account", { detail: account }));
  } catch {
    // a failed sample is skipped; the next one is five seconds away
  }
}

function logout(message = "Logged out.") {
  stream?.stop();
  stream = null;
  clearInterval(sampler);
  session.token = null;
  store.orders.clear();
  store.equity.length = 0;
  current?.dispose?.();
  current = null;
  showLogin(message);
}

async function route() {
  if (!session.token || !stream) return;
  const name = (location.hash.replace(/^#\//, "") || "blotter").split("?")[0];
  const page = PAGES[name] ? name : "blotter";
  const ticket = ++routing;
  const module = await PAGES[page]();
  if (ticket !== routing || !stream) return; // another page was asked for meanwhile, or the session ended
  current?.dispose?.();
  const container = document.getElementById("page");
  replace(container);
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === `#/${page}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  current = module.render(container) || null;
  document.title = `${module.title} · execsvc console`;
}

document.getElementById("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  session.token = input.value.trim();
  input.value = "";
  startSession();
});
document.getElementById("logout").addEventListener("click", () => logout());
window.addEventListener("hashchange", () => { route(); document.getElementById("main").focus(); });
window.addEventListener("execsvc:unauthorized", () => {
  if (session.token) logout("The token was refused (unknown, revoked, or without orders:read).");
});
document.getElementById("confirm-cancel").addEventListener("click", () => document.getElementById("confirm").close("cancel"));

if (session.token) startSession();
else showLogin();

export { h };
