// A small inline-SVG line chart of [time, value] points.
const NS = "http://www.w3.org/2000/svg";

export function lineChart(points, label) {
  const width = 1000;
  const height = 200;
  const pad = 28;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  if (points.length < 2) {
    const text = document.createElementNS(NS, "text");
    text.setAttribute("x", pad);
    text.setAttribute("y", height / 2);
    text.textContent = "Collecting data…";
    svg.append(text);
    return svg;
  }
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (x) => pad + ((x - x0) / (x1 - x0 || 1)) * (width - 2 * pad);
  const sy = (y) => height - pad / 2 - ((y - y0) / (y1 - y0)) * (height - pad);
  const line = document.createElementNS(NS, "polyline");
  line.setAttribute("points", points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "));
  svg.append(line);
  for (const [y, v] of [[sy(y1), y1], [sy(y0), y0]]) {
    const text = document.createElementNS(NS, "text");
    text.setAttribute("x", 2);
    text.setAttribute("y", y + 3);
    text.textContent = v.toLocaleString([], { maximumFractionDigits: 2 });
    svg.append(text);
  }
  return svg;
}
