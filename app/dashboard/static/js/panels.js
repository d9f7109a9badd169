// The chart sections' DOM: one section.chart[data-metric] per metric with its title, a
// "reset zoom" button, its own loading state and error line (with "retry"), the plot's box
// and the per-run summary table (last, min, max of the whole history, as the API computed
// them over every point).
import {COLORS, format} from "./charts.js";

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Sections for `metrics`, in order, replacing what #charts held (returns metric -> section).
// on: {reset(metric), zoom(metric, from, to) (the steps typed in a chart's zoom form:
// drag-zoom for the keyboard), retry(metric)}.
export function build(container, metrics, on) {
  const sections = new Map();
  container.replaceChildren(...metrics.map(metric => {
    const section = element("section", "chart");
    section.dataset.metric = metric;
    const head = element("div", "chart-head");
    const title = element("h3", null, metric);
    const zoom = element("span", "zoom-range");
    const reset = element("button", "reset-zoom", "reset zoom");
    reset.type = "button";
    reset.disabled = true;
    reset.setAttribute("aria-label", `Reset zoom of ${metric}`);
    reset.addEventListener("click", () => on.reset(metric));
    head.append(title, zoom, reset);
    const plot = element("div", "plot");
    plot.tabIndex = -1;  // focus lands here after "reset zoom" (the button is then disabled)
    plot.setAttribute("role", "img");
    plot.setAttribute("aria-label", `Chart of ${metric}, one line per run`);
    section.append(head, statusLine(metric, on.retry), plot, zoomForm(metric, on.zoom),
                   summaryTable());
    showLoad(section, "waiting");
    sections.set(metric, section);
    return section;
  }));
  return sections;
}

function statusLine(metric, onRetry) {
  const line = element("p", "chart-status");
  line.setAttribute("aria-live", "polite");
  const retry = element("button", "retry", "retry");
  retry.type = "button";
  retry.hidden = true;
  retry.setAttribute("aria-label", `Load ${metric} again`);
  retry.addEventListener("click", () => onRetry(metric));
  line.append(element("span", "chart-message"), retry);
  return line;
}

const LOAD_TEXT = {waiting: "waiting for the other charts…", loading: "loading…", loaded: ""};

// A chart's load state (section[data-state]: waiting, loading, loaded, error) and its line:
// `text` in words (an error, or a poll or zoom that failed while the chart stays drawn).
export function showLoad(section, state, text = LOAD_TEXT[state]) {
  section.dataset.state = state;
  const line = section.querySelector(".chart-status");
  line.querySelector(".chart-message").textContent = text || "";
  line.classList.toggle("failed", state === "error" || Boolean(text && state === "loaded"));
  line.hidden = !text;
  line.querySelector(".retry").hidden = state !== "error";
}

function zoomForm(metric, onZoom) {
  const details = element("details", "zoom-steps");
  const form = element("form");
  const field = (label, name) => {
    const input = element("input");
    Object.assign(input, {type: "number", name, step: "1", required: true});
    const wrap = element("label", null, label + " ");
    wrap.append(input);
    return wrap;
  };
  const go = element("button", null, "zoom");
  go.type = "submit";
  form.append(field("from step", "from"), field("to step", "to"), go);
  form.addEventListener("submit", event => {
    event.preventDefault();  // never submitted anywhere (CSP form-action 'none')
    const from = Number(form.elements.from.value), to = Number(form.elements.to.value);
    if (Number.isInteger(from) && Number.isInteger(to) && to >= from) onZoom(metric, from, to);
  });
  details.append(element("summary", null, "zoom to steps…"), form);
  return details;
}

function summaryTable() {
  const table = element("table", "summary");
  const row = element("tr");
  for (const name of ["run", "last", "min", "max", "points"]) {
    const th = element("th", null, name);
    th.scope = "col";
    row.append(th);
  }
  table.append(element("thead"), element("tbody"));
  table.tHead.append(row);
  return table;
}

// runs: [{id, name}] in legend order; chart: ChartData (its stats).
export function summarize(section, chart, runs) {
  const rows = runs.filter(run => chart.stats.has(run.id)).map(run => {
    const stats = chart.stats.get(run.id);
    const tr = element("tr");
    tr.dataset.runId = run.id;
    const name = element("td", "run");
    const swatch = element("span", "swatch");
    swatch.style.backgroundColor = COLORS[runs.indexOf(run) % COLORS.length];  // CSSOM: CSP-safe
    name.append(swatch, run.name);
    tr.append(name, element("td", "last", format(stats.last)),
              element("td", "min", format(stats.min)), element("td", "max", format(stats.max)),
              element("td", "points", String(stats.total ?? "–")));
    return tr;
  });
  section.querySelector("table.summary tbody").replaceChildren(...rows);
}

export function showZoom(section, zoom) {
  section.querySelector(".reset-zoom").disabled = !zoom;
  section.querySelector(".zoom-range").textContent =
    zoom ? `steps ${zoom.from} – ${zoom.to}${zoom.full ? ", every point" : ""}` : "";
}
