// What the charts hold: per metric, per run, the API's points in the order they came, in
// growable typed arrays (no object per point). A poll with the cursor appends a run's new
// points (since_cursor true) or replaces what is held of it (false), as docs/api.md says.

export const LIVE = new Set(["RUNNING", "SCHEDULED"]);

// A run's points of one metric: steps, values (NaN for the API's null), timestamps (ms).
export class Series {
  constructor(capacity = 16) {
    this.length = 0;
    this.steps = new Float64Array(capacity);
    this.values = new Float64Array(capacity);
    this.timestamps = new Float64Array(capacity);
  }

  static of(history) {
    const series = new Series(Math.max(16, history.length));
    series.append(history);
    return series;
  }

  append(history) {
    const need = this.length + history.length;
    if (need > this.steps.length) this.grow(Math.max(need, this.steps.length * 2));
    let i = this.length;
    for (const point of history) {
      this.steps[i] = point.step;
      this.values[i] = point.value === null ? NaN : point.value;
      this.timestamps[i] = point.timestamp;
      i += 1;
    }
    this.length = i;
  }

  grow(capacity) {
    for (const name of ["steps", "values", "timestamps"]) {
      const bigger = new Float64Array(capacity);
      bigger.set(this[name].subarray(0, this.length));
      this[name] = bigger;
    }
  }

  column(name) {
    return this[name].subarray(0, this.length);
  }

  // JSON-able, as the API sent it (NaN back to null).
  toJSON() {
    return {steps: Array.from(this.column("steps")),
            values: Array.from(this.column("values"), v => (Number.isNaN(v) ? null : v)),
            timestamps: Array.from(this.column("timestamps"))};
  }
}

// One chart's data: its runs' series (`base`: the full view, kept up to date by polls),
// the zoomed range asked again (`zoom`), and each run's summary of its whole history.
export class ChartData {
  constructor(metric) {
    this.metric = metric;
    this.base = new Map();   // run id -> Series
    this.stats = new Map();  // run id -> {last, min, max, total}
    this.zoom = null;        // {from, to, runs: Map run id -> Series}
    this.maxPoints = 0;
  }

  shown() {
    return this.zoom ? this.zoom.runs : this.base;
  }

  toJSON() {
    const runs = {};
    for (const [runId, series] of this.shown()) runs[runId] = series.toJSON();
    return {runs, zoom: this.zoom ? [this.zoom.from, this.zoom.to] : null,
            maxPoints: this.maxPoints};
  }
}

function statsOf(history) {
  return {last: history.last_value, min: history.min_value, max: history.max_value,
          total: history.total_points};
}

// Fold a /mlflow/runs answer into `charts` (Map metric -> ChartData); `runs` (Map run id ->
// {name, status}) learns each run's status. Returns how many points came, and the metrics
// whose charts changed.
export function absorb(charts, runs, answer) {
  let points = 0;
  const changed = new Set();
  for (const run of answer.runs) {
    runs.set(run.run_id, {name: run.run_name || run.run_id, status: run.status});
    for (const history of run.metrics_history) {
      const chart = charts.get(history.metric_name);
      if (!chart) continue;
      const held = chart.base.get(run.run_id);
      if (run.since_cursor && held) held.append(history.history);
      else chart.base.set(run.run_id, Series.of(history.history));
      if (history.history.length || !(run.since_cursor && held)) changed.add(chart.metric);
      chart.stats.set(run.run_id, statsOf(history));
      points += history.history.length;
    }
  }
  return {points, changed};
}

// A zoom's answer: the range's points replace what the chart shows (not its base).
export function absorbZoom(chart, answer, from, to) {
  const zoomed = new Map();
  for (const run of answer.runs)
    for (const history of run.metrics_history)
      if (history.metric_name === chart.metric)
        zoomed.set(run.run_id, Series.of(history.history));
  chart.zoom = {from, to, runs: zoomed};
}
