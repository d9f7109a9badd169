// Live polling of a board's charts: every POLL seconds (the hash's poll=, default 5), each
// chart holding live runs asks for what is new with its own cursor and ETag (an unchanged
// chart is a 304), AT_ONCE at a time; a chart is drawn again only when its answer brought
// points. Stops once every chart's answers show its runs finished; paused while the tab is
// hidden (poller.js). A poll that failed says so on its chart, which keeps what it holds.
import * as panels from "./panels.js";
import {limiter} from "./limit.js";
import {Poller} from "./poller.js";

const AT_ONCE = 3;
// Seconds a poll may take: it is answered from the service's live tail (no MLflow while the
// tail is fresh); short, so that a stuck poll is given up and asked again soon. A tail
// rebuilt (a run sent whole again) must still fit.
const POLL_TIMEOUT = 30;

export class LivePolls {
  constructor(board) {
    this.board = board;
    this.poller = null;
    this.polls = 0;        // rounds answered (200 or 304) since the page loaded
    this.lastPoll = null;  // {status, bytes, points} of the last round
    this.broken = new Set();  // charts whose last poll failed
  }

  get polling() {
    return Boolean(this.poller && this.poller.running);
  }

  due() {
    return this.board.loaded().filter(([, loader]) => loader.live.length);
  }

  // Start polling (again) if any chart holds live runs; the header says what it does.
  start() {
    const hooks = this.board.hooks;
    if (!this.polling && this.due().length) {
      this.poller = new Poller(this.board.view.poll || 5, {
        poll: () => hooks.track(this.round()),
        onPoll: (result, error) => this.polled(result, error),
        onState: () => hooks.pollState(this.poller.text())});
      this.poller.start();
    }
    hooks.pollState(this.poller ? this.poller.text() : "all runs finished");
  }

  stop() {
    if (this.poller) this.poller.stop();
    this.poller = null;
    this.lastPoll = null;
    this.broken = new Set();
  }

  // One poll of every chart with live runs: {status (200 when any chart got something, else
  // 304), bytes, points}, null when none is live; throws when every chart's poll failed.
  async round() {
    const due = this.due();
    if (!due.length) return null;
    const queue = limiter(AT_ONCE);
    const timeout = Math.min(POLL_TIMEOUT, this.board.timeout);  // never above the ceiling
    const answers = await Promise.all(due.map(([metric, loader]) => queue(async () => {
      try {
        const result = await loader.poll(timeout);
        this.show(metric, loader, null);
        return result;
      } catch (error) {
        if (error.name === "AbortError") throw error;  // the view was left
        this.show(metric, loader, error);
        return {error};
      }
    })));
    const answered = answers.filter(a => a && !a.error);
    if (!answered.length) throw answers.find(a => a && a.error).error;
    const sum = key => answered.reduce((total, a) => total + a[key], 0);
    return {status: answered.some(a => a.status === 200) ? 200 : 304, bytes: sum("bytes"),
            points: sum("points")};
  }

  show(metric, loader, error) {
    const section = this.board.sections.get(metric);
    if (error) {
      this.broken.add(metric);
      panels.showLoad(section, "loaded", `Not updated: ${error.message}`);
      return;
    }
    if (this.broken.delete(metric)) panels.showLoad(section, "loaded");
    if (!loader.changed) return;  // a 304, or nothing new for this metric
    if (loader.chart.zoom) panels.summarize(section, loader.chart, this.board.legend());
    else this.board.draw(metric);
  }

  polled(result) {
    if (result) {
      this.polls += 1;
      this.lastPoll = result;
    }
    if (!this.due().length) this.poller.stop();  // every run finished: that answer was complete
    this.board.hooks.pollState(this.poller.text());
    this.board.hooks.changed();
  }
}
