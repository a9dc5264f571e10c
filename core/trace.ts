/**
 * @module
 * Typed trace events and counters. Events are named like kernel tracepoints
 * and QEMU trace events (`"iommu:map"`, `"vtd_inv_desc"`, `"smmuv3_cmdq_opcode"`).
 * Emitting costs nothing when tracing is off: callers test `trace.enabled`
 * before building an event object. Counters are plain objects of numbers
 * that components increment directly on their hot paths and register here
 * for reports.
 */

/** A field value in a trace event. */
export type TraceValue = number | string | boolean | bigint;

/** One trace event. */
export interface TraceEvent {
  /** Virtual time in nanoseconds when it happened. */
  t: number;
  /** Tracepoint name, e.g. `"iommu:map"`. */
  name: string;
  /** Emitting component, e.g. `"vtd0"` or `"smmu0"`. */
  source: string;
  /** Fields, as a tracepoint's TP_printk would show them. */
  fields: Record<string, TraceValue>;
}

/** A counter set: names to counts, incremented in place. */
export type Counters = Record<string, number>;

/** Something that says what time it is (the machine's virtual clock). */
export interface TimeSource {
  /** Current virtual time in nanoseconds. */
  now(): number;
}

/** Trace sink and counter registry of one machine. */
export class Trace {
  /** True when events are being recorded; test it before building an event. */
  enabled = false;
  /** Recorded events, in order. */
  readonly events: TraceEvent[] = [];
  /** Listeners called for every event (e.g. checking-mode reports). */
  readonly #listeners: ((e: TraceEvent) => void)[] = [];
  readonly #counters = new Map<string, Counters>();
  #time: TimeSource = { now: () => 0 };
  /** Events are dropped past this many (oldest kept); counts stay exact. */
  limit = 1_000_000;
  /** Events dropped because of `limit`. */
  dropped = 0;

  /** Use `clock` for event timestamps. */
  setTimeSource(clock: TimeSource): void {
    this.#time = clock;
  }

  /** Record an event if tracing is on (and always notify listeners). */
  emit(source: string, name: string, fields: Record<string, TraceValue> = {}): void {
    if (!this.enabled && this.#listeners.length === 0) return;
    const e: TraceEvent = { t: this.#time.now(), name, source, fields };
    if (this.enabled) {
      if (this.events.length < this.limit) this.events.push(e);
      else this.dropped++;
    }
    for (const l of this.#listeners) l(e);
  }

  /** True when an emit would be observed (tracing on or a listener present). */
  get observed(): boolean {
    return this.enabled || this.#listeners.length > 0;
  }

  /** Call `fn` for every event from now on; returns an unsubscribe function. */
  listen(fn: (e: TraceEvent) => void): () => void {
    this.#listeners.push(fn);
    return () => {
      const i = this.#listeners.indexOf(fn);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  /**
   * The counter set of `source`, created with the given names at zero if new.
   * Components keep the returned object and increment its fields directly.
   */
  counters<T extends Counters>(source: string, initial: T): T {
    const existing = this.#counters.get(source);
    if (existing) {
      for (const k of Object.keys(initial)) existing[k] ??= 0;
      return existing as T;
    }
    const c = { ...initial };
    this.#counters.set(source, c);
    return c;
  }

  /** A copy of every counter set. */
  snapshot(): Record<string, Counters> {
    const out: Record<string, Counters> = {};
    for (const [k, v] of this.#counters) out[k] = { ...v };
    return out;
  }

  /** Zero every counter (sets stay registered) and clear recorded events. */
  reset(): void {
    for (const c of this.#counters.values()) for (const k of Object.keys(c)) c[k] = 0;
    this.events.length = 0;
    this.dropped = 0;
  }

  /** Events as JSON lines (bigints printed as hex strings). */
  toJsonLines(): string {
    return this.events.map((e) =>
      JSON.stringify(e, (_k, v) => typeof v === "bigint" ? "0x" + v.toString(16) : v)
    ).join("\n");
  }
}
