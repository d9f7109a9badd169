// One uPlot chart per metric, a line per run. uPlot wants one x array shared by all
// series, so the runs' points are merged by x (rows where a run has no point are null
// and the line spans them). With max_points = the chart's width that is a few thousand
// rows: drawing is cheap; nothing here makes a DOM node per point.

export const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                       "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
const HEIGHT = 240;
const plots = new WeakMap();  // section -> uPlot

// [x, y] columns of one run, sorted by x (a poll may append points below the last step;
// over time, points are ordered by step, not timestamp).
function columns(series, xMode, log) {
  const xs = xMode === "time" ? series.column("timestamps").map(t => t / 1000)
                              : series.column("steps");
  const ys = series.column("values");
  let sorted = true;
  for (let i = 1; i < xs.length && sorted; i++) sorted = xs[i - 1] <= xs[i];
  const order = sorted ? null : Uint32Array.from(xs.keys()).sort((a, b) => xs[a] - xs[b]);
  const pick = (column, i) => (order ? column[order[i]] : column[i]);
  const x = new Float64Array(xs.length), y = new Array(xs.length);
  for (let i = 0; i < xs.length; i++) {
    x[i] = pick(xs, i);
    const v = pick(ys, i);
    y[i] = Number.isNaN(v) || (log && v <= 0) ? null : v;  // gaps: NaN, and <= 0 on a log axis
  }
  return [x, y];
}

// uPlot's aligned data: [x, y_run1, y_run2, …], merged by x (k-way, k = runs).
export function aligned(runIds, data, xMode, log) {
  const cols = runIds.map(id => (data.get(id) ? columns(data.get(id), xMode, log)
                                               : [new Float64Array(0), []]));
  const heads = cols.map(() => 0);
  const total = cols.reduce((sum, [x]) => sum + x.length, 0);
  const xs = new Float64Array(total), ys = cols.map(() => []);
  let row = 0;
  for (;;) {
    let x = Infinity;
    cols.forEach(([cx], k) => { if (heads[k] < cx.length && cx[heads[k]] < x) x = cx[heads[k]]; });
    if (x === Infinity) break;
    xs[row] = x;
    cols.forEach(([cx, cy], k) => {
      if (heads[k] < cx.length && cx[heads[k]] === x) ys[k].push(cy[heads[k]++]);
      else ys[k].push(null);
    });
    row += 1;
  }
  return [xs.subarray(0, row), ...ys];
}

// The legend shows, for each run, its point nearest the cursor (rows of other runs are null).
function nearest(u, seriesIdx, closestIdx) {
  const ys = u.data[seriesIdx];
  if (seriesIdx === 0 || ys[closestIdx] != null) return closestIdx;
  for (let d = 1; d < 4096; d++) {
    if (closestIdx - d >= 0 && ys[closestIdx - d] != null) return closestIdx - d;
    if (closestIdx + d < ys.length && ys[closestIdx + d] != null) return closestIdx + d;
  }
  return closestIdx;
}

export function format(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e6 || a < 1e-4) ? v.toExponential(4) : String(+v.toPrecision(6));
}

function options(metric, runs, {xMode, log, width, onZoom}) {
  return {
    width, height: HEIGHT,
    scales: {x: {time: xMode === "time"}, y: log ? {distr: 3} : {}},
    axes: [{label: xMode === "time" ? "time" : "step"},
           {size: 64, values: (u, splits) => splits.map(format)}],
    series: [{label: xMode === "time" ? "time" : "step"},
             ...runs.map((run, i) => ({label: run.name, stroke: COLORS[i % COLORS.length],
                                       width: 1.5, spanGaps: true, points: {show: false},
                                       value: (u, v) => format(v)}))],
    cursor: {drag: {x: true, y: false, setScale: false}, dataIdx: nearest},
    legend: {live: true},
    hooks: {setSelect: [u => {
      if (u.select.width < 4) return;
      const from = u.posToVal(u.select.left, "x");
      const to = u.posToVal(u.select.left + u.select.width, "x");
      u.setSelect({left: 0, top: 0, width: 0, height: 0}, false);
      onZoom(metric, from, to);
    }]},
  };
}

// Draw (or redraw in place) the chart of `section`. runs: [{id, name}] in legend order.
// A new set of runs, x axis or scale builds a new uPlot; new points only set its data.
export function draw(section, chart, runs, view) {
  const target = section.querySelector(".plot");
  const width = Math.max(200, target.clientWidth);
  const data = aligned(runs.map(r => r.id), chart.shown(), view.xMode, view.log);
  const shape = JSON.stringify([runs, view.xMode, view.log]);
  const held = plots.get(section);
  if (held && held.shape === shape) {
    held.plot.setData(data);
    return;
  }
  if (held) held.plot.destroy();
  const plot = new window.uPlot(options(chart.metric, runs, {...view, width}), data, target);
  plots.set(section, {plot, shape});
}

export function resize(section) {
  const held = plots.get(section);
  const target = section.querySelector(".plot");
  if (held && target.clientWidth) held.plot.setSize({width: target.clientWidth, height: HEIGHT});
}

export function remove(section) {
  const held = plots.get(section);
  if (held) held.plot.destroy();
  plots.delete(section);
  section.remove();
}

// The step range [from, to] a drag selected, from x values (steps, or seconds over time).
export function stepRange(chart, from, to, xMode) {
  if (xMode === "step") return [Math.ceil(from), Math.floor(to)];
  let low = Infinity, high = -Infinity;
  for (const series of chart.shown().values()) {
    const t = series.column("timestamps"), s = series.column("steps");
    for (let i = 0; i < t.length; i++) {
      if (t[i] / 1000 >= from && t[i] / 1000 <= to) {
        low = Math.min(low, s[i]);
        high = Math.max(high, s[i]);
      }
    }
  }
  return [low, high];
}
