/**
 * @module
 * Interrupts. A hardware model raises a named line; the handler a driver
 * registered runs later, when the machine delivers pending interrupts (after
 * each DMA transaction and each scenario step), never inside the hardware
 * model's own call stack — as an interrupt arrives after the write that
 * caused it.
 */

/** An interrupt handler. */
export type IrqHandler = () => void;

/** Named interrupt lines with deferred delivery. */
export class InterruptController {
  readonly #handlers = new Map<string, IrqHandler>();
  readonly #pending: string[] = [];
  #delivering = false;
  /** Interrupts raised so far, per line. */
  readonly raised: Record<string, number> = {};
  /** Handler runs so far, per line. */
  readonly handled: Record<string, number> = {};
  /** Deliveries of a line with no handler registered (the interrupt was lost), per line. */
  readonly unhandled: Record<string, number> = {};

  /** Register the handler of `line` (replaces any earlier one). */
  register(line: string, handler: IrqHandler): void {
    this.#handlers.set(line, handler);
  }

  /** Remove the handler of `line`. */
  unregister(line: string): void {
    this.#handlers.delete(line);
  }

  /** Raise `line`: its handler runs at the next `deliver()` (a raised line is pending once). */
  raise(line: string): void {
    this.raised[line] = (this.raised[line] ?? 0) + 1;
    if (!this.#pending.includes(line)) this.#pending.push(line);
  }

  /** True if some line is pending. */
  get pending(): boolean {
    return this.#pending.length > 0;
  }

  /** Lines pending delivery, in raise order. */
  pendingLines(): string[] {
    return [...this.#pending];
  }

  /**
   * Run handlers of pending lines until none is pending (handlers may raise
   * more). A storm (over 10 000 handler runs in one call) stops delivery and
   * leaves the rest pending. A nested call from a handler does nothing.
   */
  deliver(): void {
    if (this.#delivering) return;
    this.#delivering = true;
    try {
      for (let guard = 0; this.#pending.length > 0 && guard < 10_000; guard++) {
        const line = this.#pending.shift()!;
        const h = this.#handlers.get(line);
        if (h) {
          this.handled[line] = (this.handled[line] ?? 0) + 1;
          h();
        } else this.unhandled[line] = (this.unhandled[line] ?? 0) + 1;
      }
    } finally {
      this.#delivering = false;
    }
  }
}
