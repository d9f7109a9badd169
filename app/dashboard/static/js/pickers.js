// The choices: an experiment (searchable list), its runs (status filter, name search,
// newest first), and metrics (picked, or all). DOM only: main.js owns the state and
// passes callbacks.

const $ = selector => document.querySelector(selector);

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

export function renderExperiments(experiments, chosenId, onChoose) {
  const needle = $("#experiment-search").value.trim().toLowerCase();
  const list = $("#experiments");
  list.replaceChildren(...experiments
    .filter(e => !needle || e.name.toLowerCase().includes(needle) || e.experiment_id === needle)
    .map(e => {
      const button = element("button", {type: "button", textContent: e.name,
                                         dataset: {experimentId: e.experiment_id}});
      button.setAttribute("aria-pressed", String(e.experiment_id === chosenId));
      button.addEventListener("click", () => onChoose(e.experiment_id));
      return element("li", {}, button);
    }));
}

export function duration(run) {
  const seconds = run.duration_seconds ??
    (run.start_time && !run.end_time ? (Date.now() - run.start_time) / 1000 : null);
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds), d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${h} h`;
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "–";
}

function params(run) {
  const text = Object.entries(run.parameters || {}).map(([k, v]) => `${k}=${v}`).join(", ");
  return element("td", {className: "params", textContent: text, title: text});
}

// Rows of the runs table: the listing filtered by name; each with a checkbox.
export function renderRuns(runs, pickedIds, onToggle) {
  const needle = $("#run-search").value.trim().toLowerCase();
  const picked = new Set(pickedIds);
  const rows = runs
    .filter(r => !needle || (r.run_name || "").toLowerCase().includes(needle) ||
                 r.run_id.startsWith(needle))
    .map(run => {
      const name = run.run_name || run.run_id;
      const box = element("input", {type: "checkbox", className: "pick-run", value: run.run_id,
                                    checked: picked.has(run.run_id)});
      box.setAttribute("aria-label", `Plot ${name}`);
      box.addEventListener("change", () => onToggle(run.run_id, box.checked));
      return element("tr", {dataset: {runId: run.run_id}},
        element("td", {}, box),
        element("td", {className: "name", textContent: name, title: run.run_id}),
        element("td", {className: `status ${run.status.toLowerCase()}`, textContent: run.status}),
        element("td", {textContent: duration(run)}),
        element("td", {textContent: run.user_id || "–"}),
        element("td", {textContent: when(run.start_time)}),
        params(run));
    });
  $("#runs tbody").replaceChildren(...rows);
}

// The metric keys the listed runs have (their latest values), sorted.
export function metricKeys(runs) {
  const keys = new Set();
  for (const run of runs) for (const key of Object.keys(run.metrics_summary || {})) keys.add(key);
  return [...keys].sort();
}

export function renderMetrics(keys, pickedKeys, onChange) {
  const picked = new Set(pickedKeys);
  const all = $("#all-metrics");
  all.checked = keys.length > 0 && keys.every(k => picked.has(k));
  all.disabled = keys.length === 0;
  all.onchange = () => onChange(all.checked ? [...keys] : []);
  const boxes = keys.map(key => {
    const box = element("input", {type: "checkbox", className: "pick-metric", value: key,
                                  checked: picked.has(key)});
    box.addEventListener("change", () => {
      const now = [...document.querySelectorAll("input.pick-metric:checked")].map(b => b.value);
      onChange(now);
    });
    return element("label", {className: "metric"}, box, " ", key);
  });
  document.querySelector("#metrics .metric-list").replaceChildren(...boxes);
}

// A poll learnt runs' statuses: the table's cells follow, in place (focus stays put).
export function updateStatuses(statuses) {
  for (const [runId, {status}] of statuses) {
    const cell = document.querySelector(`#runs tr[data-run-id="${CSS.escape(runId)}"] td.status`);
    if (cell && cell.textContent !== status) {
      cell.textContent = status;
      cell.className = `status ${status.toLowerCase()}`;
    }
  }
}
