/**
 * @module
 * The virtual clock: nanoseconds that advance only when the model says so,
 * with one-shot timers (the flush queue's 10 ms timer, delayed work). Nothing
 * in the model reads the wall clock.
 */

import { IommuError } from "../errors.ts";

interface Timer {
  id: number;
  at: number;
  fn: () => void;
}

/** Virtual time in nanoseconds with one-shot timers fired in time order. */
export class VirtualClock {
  #now = 0;
  #timers: Timer[] = [];
  #nextId = 1;

  /** Current virtual time (ns). */
  now(): number {
    return this.#now;
  }

  /** Arm a one-shot timer `delayNs` from now; returns its id. */
  setTimer(delayNs: number, fn: () => void): number {
    if (!(delayNs >= 0 && Number.isFinite(delayNs))) {
      throw new IommuError(
        "EINVAL",
        "set_timer",
        `delay ${delayNs} ns is not a finite, non-negative time`,
      );
    }
    const t = { id: this.#nextId++, at: this.#now + Math.max(0, delayNs), fn };
    let i = this.#timers.length;
    while (i > 0 && this.#timers[i - 1].at > t.at) i--;
    this.#timers.splice(i, 0, t);
    return t.id;
  }

  /** Cancel a timer; returns whether it was pending. */
  cancelTimer(id: number): boolean {
    const i = this.#timers.findIndex((t) => t.id === id);
    if (i < 0) return false;
    this.#timers.splice(i, 1);
    return true;
  }

  /** Number of pending timers. */
  get pendingTimers(): number {
    return this.#timers.length;
  }

  /** Due time of the earliest pending timer, or -1 when none. */
  get nextTimerAt(): number {
    return this.#timers.length > 0 ? this.#timers[0].at : -1;
  }

  /** Advance time by `ns`, firing due timers in order (each sees its own due time as now). */
  advance(ns: number): void {
    if (!(ns >= 0 && Number.isFinite(ns))) {
      throw new IommuError(
        "EINVAL",
        "clock_advance",
        `${ns} ns is not a finite, non-negative step`,
      );
    }
    this.advanceTo(this.#now + ns);
  }

  /** Fire every pending timer (and those they arm) in time order; returns how many fired. */
  runAll(limit = 1_000_000): number {
    let n = 0;
    while (this.#timers.length > 0 && n < limit) {
      this.advanceTo(this.#timers[0].at);
      n++;
    }
    return n;
  }

  /** Advance to absolute time `t` (never backwards), firing due timers. */
  advanceTo(t: number): void {
    if (Number.isNaN(t)) throw new IommuError("EINVAL", "clock_advance", `time NaN is not a time`);
    while (this.#timers.length > 0 && this.#timers[0].at <= t) {
      const timer = this.#timers.shift()!;
      if (timer.at > this.#now) this.#now = timer.at;
      timer.fn();
    }
    if (t > this.#now) this.#now = t;
  }
}
