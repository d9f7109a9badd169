// The requests of one chart (one metric, the view's runs): its first load at the chart's
// width, its live polls through its own cursor (GET form + If-None-Match: an unchanged poll
// is a 304, a changed one brings only the new points), and zooms asked again at full
// resolution. One request per chart, not one for the view: a first load of big finished
// runs reads every point from MLflow, and 20 metrics in one answer can outlast any
// http_timeout, while one metric's answer comes well within it (and is then cached per
// metric by the service). A cursor belongs to the metric_keys it was made for, so each
// chart polls with its own.
import * as api from "./api.js";
import {ChartData, LIVE, absorb, absorbZoom} from "./model.js";

// A zoom asks for every point in its range, unless its runs hold more than this there
// (then the chart's width, like the first load: extremes are kept either way).
const ZOOM_FULL_POINTS = 500_000;

export class ChartLoader {
  // runs: the view's Map run id -> {name, status}, shared by its charts (the legend, the
  // run table); signal: aborts everything of a view left.
  constructor({connection, runIds, maxPoints, runs, signal}, metric) {
    Object.assign(this, {connection, runIds, maxPoints, runs, signal, metric});
    this.chart = new ChartData(metric);
    this.chart.maxPoints = maxPoints;
    this.loaded = false;   // its first load answered
    this.charts = new Map([[metric, this.chart]]);
    this.cursor = null;
    this.etag = null;
    this.live = [];        // the runs this chart's last answer showed RUNNING or SCHEDULED
    this.runErrors = [];
    this.changed = false;  // whether the last poll brought anything to draw
  }

  ask(fields, how) {
    const view = {runIds: this.runIds, metrics: [this.metric], maxPoints: this.maxPoints,
                  ...fields};
    return api.histories(this.connection, view, {signal: this.signal, ...how});
  }

  keep(answer) {
    const {points, changed} = absorb(this.charts, this.runs, answer.json);
    this.cursor = answer.json.cursor ?? this.cursor;
    this.etag = answer.etag;
    this.live = answer.json.runs.filter(run => LIVE.has(run.status)).map(run => run.run_id);
    this.changed = changed.size > 0;
    return {status: answer.status, bytes: answer.bytes, points};
  }

  async load(timeout) {
    const answer = await this.ask({}, {timeout});
    this.chart.maxPoints = this.maxPoints;
    this.chart.base = new Map();  // a retry starts afresh
    this.chart.stats = new Map();
    this.runErrors = answer.json.run_errors || [];
    return this.keep(answer);
  }

  // One poll of this chart's live runs; null when none is live (nothing to ask).
  async poll(timeout) {
    if (!this.live.length) return null;
    const answer = await this.ask({runIds: this.live, cursor: this.cursor},
                                  {timeout, etag: this.etag});
    this.changed = false;
    if (answer.status === 304) return {status: 304, bytes: 0, points: 0};
    return this.keep(answer);
  }

  // Steps (from, to] of the chart's runs, every point (or the width's worth if huge).
  async zoom(from, to, timeout) {
    const full = estimate(this.chart, from, to) <= ZOOM_FULL_POINTS;
    const held = [...this.chart.base.keys()];
    const answer = await this.ask({runIds: held.length ? held : this.runIds,
                                   maxPoints: full ? null : this.maxPoints,
                                   sinceStep: from - 1, maxStep: to}, {timeout});
    absorbZoom(this.chart, answer.json, from, to);
    this.chart.zoom.full = full;
    return {status: answer.status, bytes: answer.bytes, full};
  }
}

// How many points the runs hold in [from, to]: the share of the drawn points in the range,
// scaled by each run's total.
function estimate(chart, from, to) {
  let points = 0;
  for (const [runId, series] of chart.base) {
    const steps = series.column("steps");
    let inside = 0;
    for (const step of steps) if (step >= from && step <= to) inside += 1;
    const total = chart.stats.get(runId)?.total ?? steps.length;
    points += steps.length ? (inside / steps.length) * total : 0;
  }
  return points;
}
