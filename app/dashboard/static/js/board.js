// The charts of the current view: load them (one request for all metrics, at the charts'
// width), draw them, keep live runs polling, zoom, reset, redraw on axis or scale changes.
import * as charts from "./charts.js";
import * as panels from "./panels.js";
import {Loader} from "./loader.js";
import {Poller} from "./poller.js";

const MAX_POINTS = [10, 4000];  // the API's floor; a ceiling for very wide screens

export class Board {
  // hooks: {track(promise), error(e), pollState(text), changed()}
  constructor(container, hooks) {
    this.container = container;
    this.hooks = hooks;
    this.loader = null;
    this.poller = null;
    this.sections = new Map();
    this.lastPoll = null;
    this.polls = 0;
    this.generation = 0;
    this.pending = null;  // the loader of a view being loaded
    new ResizeObserver(() => this.resize()).observe(container);
  }

  clear() {
    this.stop();
    for (const loader of [this.loader, this.pending]) if (loader) loader.abort();
    this.pending = null;
    this.generation += 1;
    this.loader = null;
    this.sections = new Map();
    this.lastPoll = null;
    this.container.replaceChildren();
    this.hooks.pollState("");
  }

  stop() {
    if (this.poller) this.poller.stop();
    this.poller = null;
  }

  // view: {connection, runIds, metrics, x, log, zoom, poll}
  async load(view) {
    this.clear();
    if (!view.runIds.length || !view.metrics.length) return;
    const generation = this.generation;
    this.view = view;
    this.sections = panels.build(this.container, view.metrics, m => this.resetZoom(m),
                                 (m, from, to) => this.zoomTo(m, from, to));
    const first = this.sections.values().next().value.querySelector(".plot");
    const width = Math.round(first.clientWidth || 600);
    const maxPoints = Math.min(MAX_POINTS[1], Math.max(MAX_POINTS[0], width));
    const loader = new Loader(view.connection, view.runIds, view.metrics, maxPoints);
    this.pending = loader;
    try {
      await loader.load();
    } catch (error) {
      if (error.name === "AbortError") return;  // another view was chosen meanwhile
      throw error;
    }
    if (generation !== this.generation) return;  // another view was chosen meanwhile
    performance.mark("dashboard:loaded");  // marks for devtools and bench/bench_dashboard_page.py
    this.loader = loader;
    this.pending = null;
    this.drawAll();
    performance.mark("dashboard:drawn");
    if (view.zoom && this.sections.has(view.zoom.metric))
      await this.zoom(view.zoom.metric, view.zoom.from, view.zoom.to);
    if (generation === this.generation) this.startPolling();
  }

  runs() {
    return this.view.runIds.filter(id => this.loader.runs.has(id))
      .map(id => ({id, name: this.loader.runs.get(id).name}));
  }

  drawAll() {
    for (const metric of this.sections.keys()) this.draw(metric);
  }

  draw(metric) {
    const section = this.sections.get(metric), chart = this.loader.charts.get(metric);
    const runs = this.runs();
    charts.draw(section, chart, runs, {xMode: this.view.x, log: this.view.log,
                                       onZoom: (m, from, to) => this.dragged(m, from, to)});
    panels.summarize(section, chart, runs);
    panels.showZoom(section, chart.zoom);
  }

  // Axis or scale changed: the same data, drawn anew.
  restyle(x, log) {
    if (!this.view) return;
    this.view = {...this.view, x, log};
    if (this.loader) this.drawAll();
  }

  startPolling() {
    if (!this.loader.liveIds().length) {
      this.hooks.pollState("all runs finished");
      return;
    }
    const seconds = this.view.poll || 5;
    this.poller = new Poller(seconds, () => this.hooks.track(this.loader.poll()),
                             (result, error) => this.polled(result, error));
    this.poller.start();
    this.hooks.pollState(this.poller.text());
  }

  polled(result, error) {
    if (error) this.hooks.error(error);
    if (result) {
      this.polls += 1;
      this.lastPoll = result;
      for (const metric of this.loader.changed) {  // a 304 changed nothing
        const chart = this.loader.charts.get(metric);
        if (chart.zoom) panels.summarize(this.sections.get(metric), chart, this.runs());
        else this.draw(metric);
      }
    }
    if (!this.loader.liveIds().length) this.poller.stop();
    this.hooks.pollState(this.poller.text());
    this.hooks.changed();
  }

  dragged(metric, fromX, toX) {
    const chart = this.loader.charts.get(metric);
    this.zoomTo(metric, ...charts.stepRange(chart, fromX, toX, this.view.x));
  }

  zoomTo(metric, from, to) {
    if (!this.loader || !Number.isFinite(from) || !Number.isFinite(to) || to < from) return;
    this.hooks.track(this.zoom(metric, from, to)
      .catch(e => { if (e.name !== "AbortError") this.hooks.error(e); }));
  }

  // Steps from..to of one chart at full resolution; one zoom at a time (the URL holds one).
  async zoom(metric, from, to) {
    for (const [other, chart] of this.loader.charts) {
      if (other !== metric && chart.zoom) {
        chart.zoom = null;
        this.draw(other);
      }
    }
    const generation = this.generation;
    const result = await this.loader.zoom(metric, from, to);
    if (generation !== this.generation || !result) return;
    this.loader.charts.get(metric).zoom.full = result.full;
    this.view = {...this.view, zoom: {metric, from, to}};
    this.draw(metric);
    this.hooks.changed();
  }

  resetZoom(metric) {
    const chart = this.loader && this.loader.charts.get(metric);
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

  // The contract's state().charts: what each chart draws.
  chartsState() {
    const out = {};
    if (this.loader) for (const [metric, chart] of this.loader.charts) out[metric] = chart.toJSON();
    return out;
  }
}
