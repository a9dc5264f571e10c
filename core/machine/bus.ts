/**
 * @module
 * The MMIO bus: register windows at physical addresses. An access outside
 * every window is reported (an `EFAULT` IommuError, and a trace event), never
 * ignored.
 */

import { IommuError } from "../errors.ts";
import type { Counters, Trace } from "../trace.ts";
import type { MmioRegion } from "./mmio.ts";

interface Window {
  base: number;
  region: MmioRegion;
}

/** A listener told of every bus access (for tracing and for pKVM's trap). */
export type MmioAccessHook = (
  kind: "read" | "write",
  addr: number,
  width: 32 | 64,
  region: MmioRegion,
) => void;

/** Bus counters: accesses by kind and accesses that hit no window. */
export interface MmioCounters extends Counters {
  /** Register reads (a 64-bit read counts once). */
  reads: number;
  /** Register writes. */
  writes: number;
  /** Accesses outside every window (refused with EFAULT). */
  unassigned: number;
}

/** Routes 32- and 64-bit register accesses to windows. */
export class MmioBus {
  readonly #windows: Window[] = [];
  #hi = new Uint32Array(1);
  readonly #trace: Trace | null;
  /** Access counters (registered as the `"mmio"` counter set when built with a trace). */
  readonly counters: MmioCounters;
  /** The window of the last access (register accesses come in runs to one device). */
  #last: Window | null = null;
  /** Optional access hook. */
  hook: MmioAccessHook | null = null;

  /** A bus; with `trace`, its counters are registered and refused accesses are traced. */
  constructor(trace: Trace | null = null) {
    this.#trace = trace;
    const initial: MmioCounters = { reads: 0, writes: 0, unassigned: 0 };
    this.counters = trace ? trace.counters("mmio", initial) : initial;
  }

  /**
   * Map `region` at `base` (4-byte aligned, size a positive multiple of 4);
   * overlapping windows are refused with EBUSY.
   */
  map(base: number, region: MmioRegion): void {
    if (!Number.isSafeInteger(base) || base < 0 || base % 4 !== 0) {
      throw new IommuError(
        "EINVAL",
        "mmio_map",
        `window ${region.name}: base ${base} is not a 4-byte aligned address`,
      );
    }
    if (!Number.isInteger(region.size) || region.size <= 0 || region.size % 4 !== 0) {
      throw new IommuError(
        "EINVAL",
        "mmio_map",
        `window ${region.name}: size ${region.size} is not a positive multiple of 4`,
      );
    }
    for (const w of this.#windows) {
      if (base < w.base + w.region.size && w.base < base + region.size) {
        throw new IommuError(
          "EBUSY",
          "mmio_map",
          `window ${region.name} at 0x${base.toString(16)} overlaps ${w.region.name} at 0x${
            w.base.toString(16)
          }`,
        );
      }
    }
    this.#windows.push({ base, region });
  }

  /** The mapped windows, by base address. */
  windows(): { base: number; region: MmioRegion }[] {
    return this.#windows.map((w) => ({ base: w.base, region: w.region })).sort((a, b) =>
      a.base - b.base
    );
  }

  /** Remove the window of `region`. */
  unmap(region: MmioRegion): void {
    const i = this.#windows.findIndex((w) => w.region === region);
    if (i >= 0) this.#windows.splice(i, 1);
    this.#last = null;
  }

  /** The window containing `[addr, addr+len)`, or throw (EINVAL misaligned, EFAULT unassigned). */
  #find(addr: number, len: number, what: string): Window {
    if (what === "read") this.counters.reads++;
    else this.counters.writes++;
    const last = this.#last;
    if (
      last !== null && addr >= last.base && addr + len <= last.base + last.region.size &&
      (addr & (len - 1)) === 0
    ) return last;
    if (addr % len !== 0) {
      throw new IommuError(
        "EINVAL",
        "mmio",
        `${what} of ${len * 8} bits at 0x${addr.toString(16)} is not ${len}-byte aligned`,
      );
    }
    for (const w of this.#windows) {
      if (addr >= w.base && addr + len <= w.base + w.region.size) {
        this.#last = w;
        return w;
      }
    }
    this.counters.unassigned++;
    if (this.#trace?.observed) {
      this.#trace.emit("mmio", "mmio_unassigned", { kind: what, addr, width: len * 8 });
    }
    throw new IommuError(
      "EFAULT",
      "mmio",
      `${what} of ${len * 8} bits at 0x${addr.toString(16)} hits no register window`,
    );
  }

  /**
   * How `[addr, addr+len)` meets the windows: 0 touches none, 1 lies inside
   * one window, 2 touches a window without lying inside it (straddles).
   * For a bus master deciding between memory and registers.
   */
  claims(addr: number, len: number): 0 | 1 | 2 {
    const end = addr + len;
    for (let i = 0; i < this.#windows.length; i++) {
      const w = this.#windows[i];
      const wEnd = w.base + w.region.size;
      if (addr < wEnd && w.base < end) return addr >= w.base && end <= wEnd ? 1 : 2;
    }
    return 0;
  }

  /** The base address of `region`, or -1 when not mapped. */
  baseOf(region: MmioRegion): number {
    return this.#windows.find((w) => w.region === region)?.base ?? -1;
  }

  /** 32-bit read. */
  read32(addr: number): number {
    const w = this.#find(addr, 4, "read");
    this.hook?.("read", addr, 32, w.region);
    return w.region.read32(addr - w.base) >>> 0;
  }

  /** 32-bit write. */
  write32(addr: number, value: number): void {
    const w = this.#find(addr, 4, "write");
    this.hook?.("write", addr, 32, w.region);
    w.region.write32(addr - w.base, value >>> 0);
  }

  /** 64-bit read; returns the low half and stores the high half in `hiOut[0]`. */
  read64Halves(addr: number, hiOut: Uint32Array): number {
    const w = this.#find(addr, 8, "read");
    this.hook?.("read", addr, 64, w.region);
    const off = addr - w.base;
    if (w.region.read64) return w.region.read64(off, hiOut) >>> 0;
    const lo = w.region.read32(off) >>> 0;
    hiOut[0] = w.region.read32(off + 4);
    return lo;
  }

  /** 64-bit write from halves. */
  write64Halves(addr: number, lo: number, hi: number): void {
    const w = this.#find(addr, 8, "write");
    this.hook?.("write", addr, 64, w.region);
    const off = addr - w.base;
    if (w.region.write64) w.region.write64(off, lo >>> 0, hi >>> 0);
    else {
      w.region.write32(off, lo >>> 0);
      w.region.write32(off + 4, hi >>> 0);
    }
  }

  /** 64-bit read as a bigint (API edge). */
  read64(addr: number): bigint {
    const lo = this.read64Halves(addr, this.#hi);
    return (BigInt(this.#hi[0]) << 32n) | BigInt(lo);
  }

  /** 64-bit write of a bigint or a number below 2^53. */
  write64(addr: number, value: bigint | number): void {
    const u = BigInt.asUintN(64, BigInt(value));
    this.write64Halves(addr, Number(u & 0xffffffffn), Number(u >> 32n));
  }
}
