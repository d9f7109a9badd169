// The charts of the current view. Each chart is loaded by a request of its own (its metric,
// the view's runs, at its width: loader.js says why), AT_ONCE at a time, and drawn as soon
// as its answer comes, with its own loading state, error in words and "retry": a chart
// that failed (say a 504) leaves the others drawn. Then the live runs are polled (live.js),
// and charts are zoomed, reset, redrawn on axis or scale changes.
import * as api from "./api.js";
import * as charts from "./charts.js";
import * as panels from "./panels.js";
import {limiter} from "./limit.js";
import {LivePolls} from "./live.js";
import {ChartLoader} from "./loader.js";

const MAX_POINTS = [10, 4000];  // the API's floor; a ceiling for very wide screens
// Charts asked at once: enough to keep the service busy, few enough that a cold view
// (each chart's runs read whole from MLflow) does not queue up every worker of the service.
const AT_ONCE = 3;

export class Board {
  // hooks: {track(promise), problem(text|null), pollState(text), changed()}
  constructor(container, hooks) {
    this.container = container;
    this.hooks = hooks;
    this.view = null;
    this.generation = 0;
    this.live = new LivePolls(this);
    this.reset();
    new ResizeObserver(() => this.resize()).observe(container);
  }

  reset() {
    this.loaders = new Map();   // metric -> ChartLoader
    this.sections = new Map();  // metric -> section.chart
    this.failed = new Map();    // metric -> why its first load failed, in words
    this.runs = new Map();      // run id -> {name, status}, learnt from any chart's answer
    this.aborter = new AbortController();  // a view left has nothing in flight
  }

  clear() {
    this.live.stop();
    this.aborter.abort();
    this.generation += 1;
    this.reset();
    this.container.replaceChildren();
    this.hooks.pollState("");
  }

  // view: {connection, runIds, metrics, x, log, zoom, poll}. Resolves once every chart was
  // loaded or failed (window.dashboard.ready() waits for it).
  async load(view) {
    this.clear();
    this.view = view;
    if (!view.runIds.length || !view.metrics.length) return;
    const generation = this.generation;
    this.sections = panels.build(this.container, view.metrics, {
      reset: m => this.resetZoom(m), zoom: (m, from, to) => this.zoomTo(m, from, to),
      retry: m => this.retry(m)});
    const first = this.sections.values().next().value.querySelector(".plot");
    const width = Math.round(first.clientWidth || 600);
    const maxPoints = Math.min(MAX_POINTS[1], Math.max(MAX_POINTS[0], width));
    const shared = {connection: view.connection, runIds: view.runIds, maxPoints,
                    runs: this.runs, signal: this.aborter.signal};
    for (const metric of view.metrics) this.loaders.set(metric, new ChartLoader(shared, metric));
    this.timeout = await api.ceiling();  // a first load may take what the operator allows
    if (generation !== this.generation) return;
    const queue = limiter(AT_ONCE);
    await Promise.all(view.metrics.map(metric => queue(
      () => this.loadChart(metric, generation),
      () => panels.showLoad(this.sections.get(metric), "loading"))));
    if (generation !== this.generation) return;
    performance.mark("dashboard:loaded");  // for devtools and bench/bench_dashboard_page.py
    performance.mark("dashboard:drawn");
    this.live.start();
  }

  // One chart's first load (or its retry); never throws: a failure is shown on the chart.
  async loadChart(metric, generation) {
    const loader = this.loaders.get(metric), section = this.sections.get(metric);
    try {
      await loader.load(this.timeout);
    } catch (error) {
      if (error.name === "AbortError" || generation !== this.generation) return;
      loader.loaded = false;
      this.failed.set(metric, error.message);
      panels.showLoad(section, "error", error.message);
      this.report();
      return;
    }
    if (generation !== this.generation) return;
    loader.loaded = true;
    this.failed.delete(metric);
    panels.showLoad(section, "loaded");
    this.draw(metric);
    if (!performance.getEntriesByName("dashboard:first-chart").length)
      performance.mark("dashboard:first-chart");
    this.report();
    const zoom = this.view.zoom;  // a URL's zoom, once its chart is there
    if (zoom && zoom.metric === metric) await this.zoom(metric, zoom.from, zoom.to);
  }

  retry(metric) {
    if (!this.failed.has(metric)) return;
    const generation = this.generation;
    panels.showLoad(this.sections.get(metric), "loading");
    this.hooks.track(this.loadChart(metric, generation).then(() => {
      if (generation === this.generation && this.loaders.get(metric).loaded) this.live.start();
    }));
  }

  // The error line: charts not loaded, and runs an answer named in its run_errors.
  problem() {
    const parts = [];
    const failed = [...this.failed];
    if (failed.length === 1) parts.push(`The chart of ${failed[0][0]} did not load: ${failed[0][1]}`);
    else if (failed.length) parts.push(`${failed.length} charts did not load: ${failed[0][1]}`);
    const runErrors = new Map();
    for (const loader of this.loaders.values())
      for (const error of loader.runErrors) runErrors.set(error.run_id, error);
    if (runErrors.size) {
      const first = runErrors.values().next().value;
      parts.push(`${runErrors.size} run(s) not shown: ${api.words(first.code, first.message)}`);
    }
    return parts.length ? parts.join("; ") : null;
  }

  report() {
    this.hooks.problem(this.problem());
    this.hooks.changed();
  }

  loaded() {
    return [...this.loaders].filter(([, loader]) => loader.loaded);
  }

  // The charts drawn: Map metric -> ChartData (the CSV download).
  charts() {
    return new Map(this.loaded().map(([metric, loader]) => [metric, loader.chart]));
  }

  legend() {
    return this.view.runIds.filter(id => this.runs.has(id))
      .map(id => ({id, name: this.runs.get(id).name}));
  }

  drawAll() {
    for (const [metric] of this.loaded()) this.draw(metric);
  }

  draw(metric) {
    const section = this.sections.get(metric), chart = this.loaders.get(metric).chart;
    const runs = this.legend();
    charts.draw(section, chart, runs, {xMode: this.view.x, log: this.view.log,
                                       onZoom: (m, from, to) => this.dragged(m, from, to)});
    panels.summarize(section, chart, runs);
    panels.showZoom(section, chart.zoom);
  }

  // Axis or scale changed: the same data, drawn anew.
  restyle(x, log) {
    if (!this.view) return;
    this.view = {...this.view, x, log};
    this.drawAll();
  }

  dragged(metric, fromX, toX) {
    const chart = this.loaders.get(metric).chart;
    this.zoomTo(metric, ...charts.stepRange(chart, fromX, toX, this.view.x));
  }

  zoomTo(metric, from, to) {
    if (!this.loaders.get(metric)?.loaded || !Number.isFinite(from) || !Number.isFinite(to) ||
        to < from) return;
    this.hooks.track(this.zoom(metric, from, to));
  }

  // Steps from..to of one chart at full resolution; one zoom at a time (the URL holds one).
  // A zoom that failed says so on its chart, which stays as it was.
  async zoom(metric, from, to) {
    for (const [other, loader] of this.loaded()) {
      if (other !== metric && loader.chart.zoom) {
        loader.chart.zoom = null;
        this.draw(other);
      }
    }
    const generation = this.generation, section = this.sections.get(metric);
    try {
      await this.loaders.get(metric).zoom(from, to, this.timeout);
    } catch (error) {
      if (error.name === "AbortError" || generation !== this.generation) return;
      panels.showLoad(section, "loaded", `Zoom not loaded: ${error.message}`);
      return;
    }
    if (generation !== this.generation) return;
    panels.showLoad(section, "loaded");
    this.view = {...this.view, zoom: {metric, from, to}};
    this.draw(metric);
    this.hooks.changed();
  }

  resetZoom(metric) {
    const chart = this.loaders.get(metric)?.chart;
    if (!chart || !chart.zoom) return;
    chart.zoom = null;
    this.view = {...this.view, zoom: null};
    this.draw(metric);
    this.hooks.changed();
    this.sections.get(metric).querySelector(".plot").focus();
  }

  resize() {
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => {
      for (const section of this.sections.values()) charts.resize(section);
    });
  }

  // The contract's state().charts: what each chart draws, and how its first load went.
  chartsState() {
    const out = {};
    for (const [metric, loader] of this.loaders) {
      out[metric] = {...loader.chart.toJSON(), state: this.sections.get(metric).dataset.state,
                     error: this.failed.get(metric) ?? null};
    }
    return out;
  }
}
