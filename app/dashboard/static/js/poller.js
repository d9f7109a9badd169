// Live polling: every `seconds`, one poll of the runs still live (Board.pollRound); stops by
// itself once the answers show every run finished. One poll at a time: the next is timed
// from the end of the last, so a slow answer never piles polls up. While the tab is hidden
// nothing is asked (dashboards are often left open in a background tab: each would poll
// for nobody); once it is visible again, it polls at once.

export class Poller {
  // poll(): a promise of {status, bytes, points}, or null when nothing is live any more.
  // onPoll(result|null, error|null): after each poll; onState(): paused or polling again.
  constructor(seconds, {poll, onPoll, onState}) {
    Object.assign(this, {seconds, poll, onPoll, onState});
    this.timer = null;
    this.running = false;
    this.asking = false;  // a poll is out
    this.visibility = () => this.visibilityChanged();
  }

  start() {
    this.running = true;
    document.addEventListener("visibilitychange", this.visibility);
    this.schedule();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = null;
    document.removeEventListener("visibilitychange", this.visibility);
  }

  get paused() {
    return this.running && document.hidden;
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.running && !document.hidden)
      this.timer = setTimeout(() => this.tick(), this.seconds * 1000);
  }

  visibilityChanged() {
    if (!this.running) return;
    if (document.hidden) {
      clearTimeout(this.timer);  // a poll out now ends, and nothing is scheduled after it
      this.timer = null;
    } else if (!this.asking) {
      this.tick();  // what happened while hidden, now
    }
    this.onState();  // the header says paused / polling
  }

  async tick() {
    clearTimeout(this.timer);
    this.timer = null;
    if (!this.running) return;
    this.asking = true;
    let result = null, error = null;
    try {
      result = await this.poll();
    } catch (e) {
      error = e;  // shown; polling goes on (MLflow may be back at the next poll)
    }
    this.asking = false;
    if (!this.running) return;  // stopped (another view) while this poll was out
    if (result === null && !error) this.stop();  // every run finished
    this.onPoll(result, error);
    this.schedule();
  }

  text() {
    if (!this.running) return "all runs finished";
    return this.paused ? "live: paused while this tab is hidden"
                       : `live: polling every ${this.seconds} s`;
  }
}
