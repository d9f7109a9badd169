// The charts' data for one view (runs × metrics): the first load at the charts' width, the
// live polls through the cursor (GET form + If-None-Match: an unchanged poll is a 304), and
// zooms asked again at full resolution. One request for all metrics, not one per chart.
import * as api from "./api.js";
import {ChartData, LIVE, absorb, absorbZoom} from "./model.js";

// A zoom asks for every point in its range, unless its runs hold more than this there
// (then the chart's width, like the first load: extremes are kept either way).
const ZOOM_FULL_POINTS = 500_000;

export class Loader {
  constructor(connection, runIds, metrics, maxPoints) {
    this.connection = connection;
    this.runIds = runIds;
    this.metrics = metrics;
    this.maxPoints = maxPoints;
    this.charts = new Map(metrics.map(m => [m, new ChartData(m)]));
    this.runs = new Map();  // run id -> {name, status}
    this.cursor = null;
    this.etag = null;
    this.runErrors = [];
    this.changed = new Set();  // metrics whose charts the last poll changed
    this.aborter = new AbortController();  // a view left has nothing in flight
  }

  abort() {
    this.aborter.abort();
  }

  ask(view, etag = null) {
    return api.histories(this.connection, view, etag, this.aborter.signal);
  }

  view(fields) {
    return {runIds: this.runIds, metrics: this.metrics, maxPoints: this.maxPoints, ...fields};
  }

  async load() {
    const answer = await this.ask(this.view({}));
    for (const chart of this.charts.values()) chart.maxPoints = this.maxPoints;
    const {points} = absorb(this.charts, this.runs, answer.json);
    this.cursor = answer.json.cursor ?? null;
    this.etag = answer.etag;
    this.runErrors = answer.json.run_errors || [];
    return {status: answer.status, bytes: answer.bytes, points};
  }

  liveIds() {
    return this.runIds.filter(id => LIVE.has(this.runs.get(id)?.status));
  }

  // One poll of the live runs; null when none is live (nothing to ask).
  async poll() {
    const live = this.liveIds();
    if (!live.length) return null;
    const answer = await this.ask(this.view({runIds: live, cursor: this.cursor}), this.etag);
    this.changed = new Set();
    if (answer.status === 304) return {status: 304, bytes: 0, points: 0};
    const {points, changed} = absorb(this.charts, this.runs, answer.json);
    this.changed = changed;  // the charts to draw again
    this.cursor = answer.json.cursor ?? this.cursor;
    this.etag = answer.etag;
    return {status: answer.status, bytes: answer.bytes, points};
  }

  // Steps (from, to] of one chart's runs, every point (or the width's worth if huge).
  async zoom(metric, from, to) {
    const chart = this.charts.get(metric);
    const full = estimate(chart, from, to) <= ZOOM_FULL_POINTS;
    const answer = await this.ask(this.view({
      runIds: [...chart.base.keys()].length ? [...chart.base.keys()] : this.runIds,
      metrics: [metric], maxPoints: full ? null : this.maxPoints,
      sinceStep: from - 1, maxStep: to}));
    absorbZoom(chart, answer.json, from, to);
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
