// Live refresh: runs one page's refresh function every pollMs() (never two at once).

import { pollMs } from "./settings.js";

export class Poller {
  constructor(onError) {
    this.onError = onError;
    this.timer = null;
    this.refresh = null;
    this.generation = 0;
  }

  /** Poll `refresh` (async) from now on, replacing whatever was polled before. */
  start(refresh) {
    this.stop();
    this.refresh = refresh;
    this.schedule(this.generation);
  }

  stop() {
    this.generation += 1;
    clearTimeout(this.timer);
    this.timer = null;
    this.refresh = null;
  }

  /** The interval changed: restart the wait with the new one. */
  reschedule() {
    if (!this.refresh) return;
    clearTimeout(this.timer);
    this.schedule(this.generation);
  }

  schedule(generation) {
    const interval = pollMs();
    if (interval <= 0) return;
    this.timer = setTimeout(async () => {
      if (generation !== this.generation || !this.refresh) return;
      try {
        // a hidden tab does not poll; it catches up (after_step) once shown again
        if (!document.hidden) await this.refresh();
      } catch (err) {
        if (generation === this.generation) this.onError(err);
      }
      if (generation === this.generation) this.schedule(generation);
    }, interval);
  }
}
