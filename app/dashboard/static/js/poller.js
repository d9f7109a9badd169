// Live polling: every `seconds`, one poll of the runs still live (Loader.poll); stops by
// itself once an answer shows every run finished. One poll at a time: the next is timed
// from the end of the last, so a slow answer never piles polls up.

export class Poller {
  // poll(): a promise of {status, bytes, points}, or null when nothing is live any more.
  // onPoll(result|null, error|null): after each poll.
  constructor(seconds, poll, onPoll) {
    this.seconds = seconds;
    this.poll = poll;
    this.onPoll = onPoll;
    this.timer = null;
    this.running = false;
    this.polls = 0;
  }

  start() {
    this.running = true;
    this.schedule();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = null;
  }

  schedule() {
    if (this.running) this.timer = setTimeout(() => this.tick(), this.seconds * 1000);
  }

  async tick() {
    if (!this.running) return;
    let result = null, error = null;
    try {
      result = await this.poll();
    } catch (e) {
      error = e;  // shown; polling goes on (MLflow may be back at the next poll)
    }
    if (!this.running) return;  // stopped (another view) while this poll was out
    if (result) this.polls += 1;
    if (result === null && !error) this.running = false;  // every run finished
    this.onPoll(result, error);
    this.schedule();
  }

  text() {
    return this.running ? `live: polling every ${this.seconds} s` : "all runs finished";
  }
}
