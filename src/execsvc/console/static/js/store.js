// What the console knows, fed by the REST API at start and by the stream afterwards.
export const store = new EventTarget();

store.orders = new Map(); // id -> order (the newest updated_at wins)
store.marks = new Map(); // symbol -> [[ms, price]]
store.markets = new Map(); // symbol -> market
store.equity = []; // [[ms, equity]] sampled over the session

export function upsertOrder(order) {
  const known = store.orders.get(order.id);
  if (!known || known.updated_at <= order.updated_at) store.orders.set(order.id, order);
}

export function recordMarket(market) {
  store.markets.set(market.symbol, market);
  if (market.mark_price === null || market.mark_price === undefined) return;
  const series = store.marks.get(market.symbol) || [];
  const at = market.mark_time ? Date.parse(market.mark_time) : Date.now();
  if (!series.length || series[series.length - 1][0] < at) series.push([at, Number(market.mark_price)]);
  if (series.length > 600) series.splice(0, series.length - 600);
  store.marks.set(market.symbol, series);
}

export function changed(name) {
  store.dispatchEvent(new Event(name));
}
