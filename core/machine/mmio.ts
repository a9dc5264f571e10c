/**
 * @module
 * MMIO register windows. A hardware model exposes its registers as an
 * {@link MmioRegion}; the machine's bus routes 32- and 64-bit accesses to the
 * window that contains them. A 64-bit access reaches the region as one
 * `write64`/`read64` call when the region implements it, else as two 32-bit
 * accesses, low word first.
 */

/** A device's register window. Offsets are relative to the window base. */
export interface MmioRegion {
  /** Name for traces and errors, e.g. `"vtd0"`. */
  readonly name: string;
  /** Window size in bytes. */
  readonly size: number;
  /** 32-bit read at `offset`. */
  read32(offset: number): number;
  /** 32-bit write at `offset`. */
  write32(offset: number, value: number): void;
  /** Optional single-copy-atomic 64-bit read as halves (returns low, writes high into `hiOut[0]`). */
  read64?(offset: number, hiOut: Uint32Array): number;
  /** Optional single-copy-atomic 64-bit write from halves. */
  write64?(offset: number, lo: number, hi: number): void;
}
