/**
 * @module
 * Device DMA. A {@link DmaMaster} is the bus-master side of a PCI function:
 * it issues reads, writes and PCIe AtomicOps with the device's requester ID
 * (after bridge aliasing) and optional PASID, through the translator in front
 * of the device (the IOMMU hardware model), or straight to memory when there
 * is none.
 *
 * A transfer is translated chunk by chunk, reusing each translation over the
 * span it covers. Every chunk is translated before any byte moves, so a
 * transfer that faults anywhere transfers nothing. A chunk whose physical
 * address lies in an MMIO window (an MSI doorbell, a peer device's
 * registers) is delivered to the registers as 32-bit accesses; it must be
 * 4-byte aligned and lie inside one window, else the transfer is a bus
 * error. After each transaction the machine's pending interrupts are
 * delivered.
 */

import { IommuError } from "../errors.ts";
import type { Machine } from "./machine.ts";
import type { PciDevice } from "./pci.ts";
import {
  ACCESS_ATOMIC,
  ACCESS_EXEC,
  ACCESS_READ,
  ACCESS_WRITE,
  newDmaRequest,
  newTranslateResult,
  NO_PASID,
} from "./translate.ts";

/** Per-transaction attributes. */
export interface DmaOptions {
  /** PASID (PCIe PASID TLP prefix); absent = request without PASID. */
  pasid?: number;
  /** Privileged-mode request (PASID prefix PMR bit). */
  priv?: boolean;
  /** Execute (instruction fetch) request; reads only. */
  exec?: boolean;
  /**
   * Requester ID to emit, for a device with DMA alias quirks: must be one of
   * the topology's aliases of the device. Default: what the topology delivers
   * (the device's own ID, or the alias of the bridge above it).
   */
  rid?: number;
}

/** Outcome of one DMA transaction. */
export interface DmaResult {
  /** True when the whole transfer completed. */
  ok: boolean;
  /** Bytes transferred (0 when the transfer faulted or is pending). */
  bytes: number;
  /** Reads: the data read; atomics: the old value (little-endian, `width` bytes); else null. */
  data: Uint8Array | null;
  /** Fault reason when not ok (the translator's name, or `"DMA_MASK"` / `"BUS_ERROR"`). */
  fault: string;
  /** The translator's fault/event code (0 for machine-level faults). */
  faultCode: number;
  /** First failing input address (valid when not ok). */
  faultAddr: number;
  /** A page request was sent or the transaction stalled: retry after the response. */
  pending: boolean;
}

/** Names of the DMA counter set `machine.trace.counters("dma", ...)`. */
export interface DmaCounters {
  /** Read transactions issued. */
  reads: number;
  /** Write transactions issued. */
  writes: number;
  /** Atomic transactions issued. */
  atomics: number;
  /** Bytes transferred (reads + writes + atomic operands). */
  bytes: number;
  /** Transactions that faulted. */
  faults: number;
  /** Transactions left pending (page request / stall). */
  pending: number;
  /** Translations requested (one per chunk). */
  translations: number;
  /** Other counters a caller may add to the set. */
  [name: string]: number;
}

/** Fault reason: the address is beyond the device's DMA mask (the device cannot emit it). */
export const DMA_FAULT_MASK = "DMA_MASK";
/** Fault reason: the translated address is beyond physical memory (no completer). */
export const DMA_FAULT_BUS = "BUS_ERROR";

/** The DMA engine of one PCI function. Use `machine.master(dev)` for the cached one. */
export class DmaMaster {
  /** The machine the device lives on. */
  readonly machine: Machine;
  /** The device. */
  readonly dev: PciDevice;
  /** The shared DMA counter set of the machine. */
  readonly counters: DmaCounters;
  readonly #req = newDmaRequest();
  readonly #res = newTranslateResult();
  /** Translated chunks of the current transfer: pa, length pairs. */
  #chunks = new Float64Array(32);
  /** Per chunk: 1 when it targets MMIO registers. */
  #mmio = new Uint8Array(16);
  #anyMmio = false;
  #nChunks = 0;
  #fault = "";
  #faultCode = 0;
  #faultAddr = 0;
  #pending = false;

  /** A master for `dev` on `machine`. */
  constructor(machine: Machine, dev: PciDevice) {
    this.machine = machine;
    this.dev = dev;
    this.counters = machine.trace.counters<DmaCounters>("dma", {
      reads: 0,
      writes: 0,
      atomics: 0,
      bytes: 0,
      faults: 0,
      pending: 0,
      translations: 0,
    });
  }

  /** Read `len` bytes at device address `addr`. */
  read(addr: number, len: number, opts?: DmaOptions): DmaResult {
    const op = "dma_read";
    this.#checkRange(op, addr, len);
    const access = opts?.exec ? ACCESS_READ | ACCESS_EXEC : ACCESS_READ;
    this.#prepare(op, access, opts);
    this.counters.reads++;
    if (!this.#translateAll(addr, len)) return this.#failed(op, addr, len);
    const data = new Uint8Array(len);
    const mem = this.machine.mem;
    if (this.#nChunks === 1 && !this.#anyMmio) mem.readBytes(this.#chunks[0], len, data);
    else {
      let off = 0;
      for (let i = 0; i < this.#nChunks; i++) {
        const pa = this.#chunks[2 * i], n = this.#chunks[2 * i + 1];
        if (this.#mmio[i]) this.#mmioRead(pa, n, data, off);
        else mem.readBytes(pa, n, data.subarray(off, off + n));
        off += n;
      }
    }
    this.counters.bytes += len;
    if (this.machine.trace.observed) this.#emit("dma_read", addr, len);
    if (this.machine.irq.pending) this.machine.irq.deliver();
    return { ok: true, bytes: len, data, fault: "", faultCode: 0, faultAddr: 0, pending: false };
  }

  /** Write `data` at device address `addr`; a faulting write writes nothing. */
  write(addr: number, data: Uint8Array, opts?: DmaOptions): DmaResult {
    const op = "dma_write";
    if (!(data instanceof Uint8Array)) {
      throw new IommuError("EINVAL", op, `data must be a Uint8Array`);
    }
    const len = data.length;
    this.#checkRange(op, addr, len);
    if (opts?.exec) {
      throw new IommuError("EINVAL", op, `exec applies to reads only (an instruction fetch)`);
    }
    this.#prepare(op, ACCESS_WRITE, opts);
    this.counters.writes++;
    if (!this.#translateAll(addr, len)) return this.#failed(op, addr, len);
    const mem = this.machine.mem;
    if (this.#nChunks === 1 && !this.#anyMmio) mem.writeBytes(this.#chunks[0], data);
    else {
      let off = 0;
      for (let i = 0; i < this.#nChunks; i++) {
        const pa = this.#chunks[2 * i], n = this.#chunks[2 * i + 1];
        if (this.#mmio[i]) this.#mmioWrite(pa, n, data, off);
        else mem.writeBytes(pa, data.subarray(off, off + n));
        off += n;
      }
    }
    this.counters.bytes += len;
    if (this.machine.trace.observed) this.#emit("dma_write", addr, len);
    if (this.machine.irq.pending) this.machine.irq.deliver();
    return {
      ok: true,
      bytes: len,
      data: null,
      fault: "",
      faultCode: 0,
      faultAddr: 0,
      pending: false,
    };
  }

  /**
   * A PCIe AtomicOp of `width` bytes at naturally aligned `addr`: FetchAdd
   * (`"add"`, wraps), Swap (`"swap"`) or CompareAndSwap (`"cas"`: stores
   * `operand` only if the old value equals `compare`). Translated as a read
   * and a write. `data` holds the old value.
   */
  atomic(
    op: "add" | "swap" | "cas",
    addr: number,
    width: 4 | 8,
    operand: bigint,
    compare?: bigint,
    opts?: DmaOptions,
  ): DmaResult {
    const name = "dma_atomic";
    if (op !== "add" && op !== "swap" && op !== "cas") {
      throw new IommuError("EINVAL", name, `operation "${op}" is not one of add, swap, cas`);
    }
    if (width !== 4 && width !== 8) {
      throw new IommuError("EINVAL", name, `width ${width} is not 4 or 8 bytes`);
    }
    if (typeof operand !== "bigint") {
      throw new IommuError("EINVAL", name, `operand must be a bigint`);
    }
    if (op === "cas" && typeof compare !== "bigint") {
      throw new IommuError("EINVAL", name, `cas needs a bigint compare value`);
    }
    this.#checkRange(name, addr, width);
    if (addr % width !== 0) {
      throw new IommuError(
        "EINVAL",
        name,
        `address 0x${addr.toString(16)} is not aligned to the ${width}-byte operand`,
      );
    }
    if (opts?.exec) throw new IommuError("EINVAL", name, `exec applies to reads only`);
    this.#prepare(name, ACCESS_ATOMIC, opts);
    this.counters.atomics++;
    if (!this.#translateAll(addr, width)) return this.#failed(name, addr, width);
    if (this.#anyMmio) {
      this.#fault = DMA_FAULT_BUS;
      this.#faultCode = 0;
      this.#faultAddr = addr;
      return this.#failed(name, addr, width);
    }
    const pa = this.#chunks[0];
    const mem = this.machine.mem;
    const bits = width * 8;
    const old = width === 4 ? BigInt(mem.read32(pa)) : mem.read64n(pa);
    let next = old;
    if (op === "add") next = BigInt.asUintN(bits, old + operand);
    else if (op === "swap") next = BigInt.asUintN(bits, operand);
    else if (old === BigInt.asUintN(bits, compare!)) next = BigInt.asUintN(bits, operand);
    if (width === 4) mem.write32(pa, Number(next));
    else mem.write64n(pa, next);
    const data = new Uint8Array(width);
    for (let i = 0; i < width; i++) data[i] = Number((old >> BigInt(8 * i)) & 0xffn);
    this.counters.bytes += width;
    if (this.machine.trace.observed) this.#emit("dma_atomic", addr, width);
    if (this.machine.irq.pending) this.machine.irq.deliver();
    return { ok: true, bytes: width, data, fault: "", faultCode: 0, faultAddr: 0, pending: false };
  }

  #mmioRead(pa: number, n: number, data: Uint8Array, off: number): void {
    const bus = this.machine.bus;
    for (let k = 0; k < n; k += 4) {
      const v = bus.read32(pa + k);
      data[off + k] = v & 0xff;
      data[off + k + 1] = (v >>> 8) & 0xff;
      data[off + k + 2] = (v >>> 16) & 0xff;
      data[off + k + 3] = v >>> 24;
    }
  }

  #mmioWrite(pa: number, n: number, data: Uint8Array, off: number): void {
    const bus = this.machine.bus;
    for (let k = 0; k < n; k += 4) {
      const o = off + k;
      bus.write32(pa + k, data[o] | (data[o + 1] << 8) | (data[o + 2] << 16) | (data[o + 3] << 24));
    }
  }

  #checkRange(op: string, addr: number, len: number): void {
    if (!Number.isSafeInteger(addr) || addr < 0) {
      throw new IommuError("EINVAL", op, `address ${addr} is not an integer in 0..2^53-1`);
    }
    if (!Number.isSafeInteger(len) || len <= 0) {
      throw new IommuError("EINVAL", op, `length ${len} is not a positive integer`);
    }
  }

  #prepare(op: string, access: number, opts: DmaOptions | undefined): void {
    const dev = this.dev;
    const req = this.#req;
    const pci = this.machine.pci;
    let pasid = NO_PASID;
    if (opts?.pasid !== undefined) {
      pasid = opts.pasid;
      if (dev.pasidBits === 0) {
        throw new IommuError(
          "EINVAL",
          op,
          `${dev.name} has no PASID capability; it cannot send PASID ${pasid}`,
        );
      }
      if (!Number.isInteger(pasid) || pasid < 0 || pasid >= 2 ** dev.pasidBits) {
        throw new IommuError(
          "EINVAL",
          op,
          `PASID ${pasid} is outside 0..${
            2 ** dev.pasidBits - 1
          } (${dev.name} has ${dev.pasidBits} PASID bits)`,
        );
      }
    }
    let rid = pci.dmaRidOf(dev);
    if (opts?.rid !== undefined && opts.rid !== rid) {
      if (!pci.dmaAliases(dev).some((a) => a.rid === opts.rid)) {
        throw new IommuError(
          "EINVAL",
          op,
          `requester ID 0x${opts.rid.toString(16)} is not a DMA alias of ${dev.name}`,
        );
      }
      rid = opts.rid;
    }
    req.rid = rid;
    req.pasid = pasid;
    req.access = access;
    req.priv = opts?.priv ?? false;
  }

  /** Translate `[addr, addr+len)` into chunks; false (with fault fields set) on the first failure. */
  #translateAll(addr: number, len: number): boolean {
    this.#nChunks = 0;
    this.#anyMmio = false;
    this.#pending = false;
    const end = addr + len;
    const mask = this.dev.dmaMask;
    if (end - 1 > mask) {
      this.#fault = DMA_FAULT_MASK;
      this.#faultCode = 0;
      this.#faultAddr = addr > mask ? addr : mask + 1;
      return false;
    }
    const tr = this.machine.pci.translatorOf(this.dev);
    const req = this.#req, res = this.#res;
    const limit = this.machine.mem.limit;
    const bus = this.machine.bus;
    for (let a = addr; a < end;) {
      req.addr = a;
      this.counters.translations++;
      tr.translate(req, res);
      if (!res.ok) {
        this.#fault = res.fault;
        this.#faultCode = res.faultCode;
        this.#faultAddr = a;
        this.#pending = res.pending;
        return false;
      }
      const span = res.span >= 4096 ? res.span : 4096;
      const regionEnd = a - (a % span) + span;
      const n = (regionEnd < end ? regionEnd : end) - a;
      if (res.pa < 0 || res.pa + n > limit) {
        this.#fault = DMA_FAULT_BUS;
        this.#faultCode = 0;
        this.#faultAddr = a;
        return false;
      }
      const claim = bus.claims(res.pa, n);
      if (claim !== 0 && (claim === 2 || res.pa % 4 !== 0 || n % 4 !== 0)) {
        // Straddles a register window, or a register access that is not 32-bit aligned.
        this.#fault = DMA_FAULT_BUS;
        this.#faultCode = 0;
        this.#faultAddr = a;
        return false;
      }
      const k = this.#nChunks;
      if (2 * k + 2 > this.#chunks.length) {
        const bigger = new Float64Array(this.#chunks.length * 2);
        bigger.set(this.#chunks);
        this.#chunks = bigger;
        const kinds = new Uint8Array(this.#mmio.length * 2);
        kinds.set(this.#mmio);
        this.#mmio = kinds;
      }
      if (claim === 1) this.#anyMmio = true;
      // Merge with the previous chunk when physically contiguous and of the same kind.
      if (
        k > 0 && this.#mmio[k - 1] === claim &&
        this.#chunks[2 * k - 2] + this.#chunks[2 * k - 1] === res.pa
      ) {
        this.#chunks[2 * k - 1] += n;
      } else {
        this.#chunks[2 * k] = res.pa;
        this.#chunks[2 * k + 1] = n;
        this.#mmio[k] = claim;
        this.#nChunks = k + 1;
      }
      a += n;
    }
    return true;
  }

  #failed(op: string, addr: number, len: number): DmaResult {
    if (this.#pending) this.counters.pending++;
    else this.counters.faults++;
    if (this.machine.trace.observed) {
      this.machine.trace.emit(this.dev.name, "dma_fault", {
        op,
        rid: this.#req.rid,
        pasid: this.#req.pasid,
        addr,
        len,
        fault_addr: this.#faultAddr,
        reason: this.#fault,
        code: this.#faultCode,
        pending: this.#pending,
      });
    }
    if (this.machine.irq.pending) this.machine.irq.deliver();
    return {
      ok: false,
      bytes: 0,
      data: null,
      fault: this.#fault,
      faultCode: this.#faultCode,
      faultAddr: this.#faultAddr,
      pending: this.#pending,
    };
  }

  #emit(name: string, addr: number, len: number): void {
    this.machine.trace.emit(this.dev.name, name, {
      rid: this.#req.rid,
      pasid: this.#req.pasid,
      addr,
      len,
      pa: this.#chunks[0],
      chunks: this.#nChunks,
    });
  }
}

/** Read a result's `data` as a little-endian unsigned value (an atomic's old value). */
export function dmaResultValue(r: DmaResult): bigint {
  if (!r.data) {
    throw new IommuError(
      "EINVAL",
      "dma_result",
      `the transaction returned no data (${r.fault || "a write"})`,
    );
  }
  let v = 0n;
  for (let i = r.data.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(r.data[i]);
  return v;
}
