/**
 * @module
 * The flat IOMMU hardware model: a register window on the machine's bus, a
 * device table and flat page tables read from physical memory, and an IOTLB
 * (FIFO replacement) that only an invalidation empties, so a driver that
 * forgets to invalidate sees stale translations, as on silicon.
 */

import {
  ACCESS_READ,
  ACCESS_WRITE,
  type Counters,
  type DmaRequest,
  type IommuHardware,
  type Machine,
  type MmioRegion,
  NO_PASID,
  type RegisterSpec,
  type TranslateResult,
} from "@iommu-lab/core";
import {
  APERTURE_START,
  FaultReason,
  FLAT_PAGE,
  FLAT_VERSION,
  MMIO_SIZE,
  MODE_BLOCKED,
  MODE_IDENTITY,
  MODE_TRANSLATE,
  PTE_R,
  PTE_V,
  PTE_W,
  REG_CTRL,
  REG_DT_BASE,
  REG_FAULT_ADDR,
  REG_FAULT_STATUS,
  REG_ID,
  REG_INV,
  REG_STATUS,
} from "./regs.ts";

/** Construction parameters of the flat IOMMU model. */
export interface FlatHwConfig {
  /** Instance name (counter set, trace source, interrupt line prefix). */
  name: string;
  /** Physical address of the register window. */
  mmioBase: number;
  /** The aperture ends at 2^apertureBits (25..31). */
  apertureBits: number;
  /** IOTLB entries (a power of two). */
  iotlbEntries: number;
}

/** The counters a flat IOMMU keeps. */
export interface FlatCounters extends Counters {
  /** Translations requested. */
  translations: number;
  /** IOTLB hits. */
  iotlb_hits: number;
  /** IOTLB misses. */
  iotlb_misses: number;
  /** Device table entry reads (8-byte reads). */
  dte_reads: number;
  /** Page-table entry reads (8-byte reads). */
  walk_reads: number;
  /** Faults reported. */
  faults: number;
  /** Invalidate-all commands. */
  inv_all: number;
  /** Checking mode: cache hits that disagreed with memory. */
  stale_hits: number;
}

const FAULT_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(FaultReason).map(([k, v]) => [v, k]),
);

/** The flat IOMMU hardware model. */
export class FlatIommuHw implements IommuHardware, MmioRegion {
  /** Instance name. */
  readonly name: string;
  /** Register window size. */
  readonly size: number = MMIO_SIZE;
  /** The register window (this object). */
  readonly mmio: MmioRegion;
  /** Base of the register window. */
  readonly mmioBase: number;
  /** Register names and offsets. */
  readonly registers: readonly RegisterSpec[] = [
    { name: "FLAT_ID", offset: REG_ID, width: 32 },
    { name: "FLAT_CTRL", offset: REG_CTRL, width: 32 },
    { name: "FLAT_STATUS", offset: REG_STATUS, width: 32 },
    { name: "FLAT_INV", offset: REG_INV, width: 32 },
    { name: "FLAT_DT_BASE", offset: REG_DT_BASE, width: 64 },
    { name: "FLAT_FAULT_STATUS", offset: REG_FAULT_STATUS, width: 32 },
    { name: "FLAT_FAULT_ADDR", offset: REG_FAULT_ADDR, width: 64 },
  ];
  /** Counters. */
  readonly counters: FlatCounters;
  /** Checking mode: every IOTLB hit is compared with a fresh walk. */
  checking = false;
  /** The interrupt line raised when a fault is recorded. */
  readonly faultIrq: string;

  readonly #m: Machine;
  readonly #apertureEnd: number;
  readonly #apertureBits: number;
  readonly #iotlbLog2: number;
  // Registers.
  #ctrl = 0;
  #status = 0;
  #dtLo = 0;
  #dtHi = 0;
  #faultStatus = 0;
  #faultAddrLo = 0;
  #faultAddrHi = 0;
  // Latched device table.
  #dtBase = 0;
  #dtEntries = 0;
  // IOTLB: FIFO of (rid, pfn) -> (pa page, perm).
  readonly #tlbKey: Float64Array;
  readonly #tlbPa: Float64Array;
  readonly #tlbPerm: Uint8Array;
  readonly #tlbIndex = new Map<number, number>();
  #tlbNext = 0;
  #reason = 0;

  /** Build the model and map its registers on `machine.bus`. */
  constructor(machine: Machine, cfg: FlatHwConfig) {
    this.#m = machine;
    this.name = cfg.name;
    this.mmio = this;
    this.mmioBase = cfg.mmioBase;
    this.#apertureBits = cfg.apertureBits;
    this.#apertureEnd = 2 ** cfg.apertureBits;
    this.#iotlbLog2 = Math.log2(cfg.iotlbEntries);
    this.#tlbKey = new Float64Array(cfg.iotlbEntries).fill(-1);
    this.#tlbPa = new Float64Array(cfg.iotlbEntries);
    this.#tlbPerm = new Uint8Array(cfg.iotlbEntries);
    this.faultIrq = `${cfg.name}.fault`;
    this.counters = machine.trace.counters<FlatCounters>(cfg.name, {
      translations: 0,
      iotlb_hits: 0,
      iotlb_misses: 0,
      dte_reads: 0,
      walk_reads: 0,
      faults: 0,
      inv_all: 0,
      stale_hits: 0,
    });
    machine.bus.map(cfg.mmioBase, this);
  }

  /** MMIO 32-bit read. */
  read32(offset: number): number {
    switch (offset) {
      case REG_ID:
        return (FLAT_VERSION | (this.#apertureBits << 8) | (this.#iotlbLog2 << 16)) >>> 0;
      case REG_CTRL:
        return this.#ctrl;
      case REG_STATUS:
        return this.#status;
      case REG_INV:
        return 0; // invalidation completes at once
      case REG_DT_BASE:
        return this.#dtLo;
      case REG_DT_BASE + 4:
        return this.#dtHi;
      case REG_FAULT_STATUS:
        return this.#faultStatus;
      case REG_FAULT_ADDR:
        return this.#faultAddrLo;
      case REG_FAULT_ADDR + 4:
        return this.#faultAddrHi;
      default:
        return 0; // reserved: reads as zero
    }
  }

  /** MMIO 32-bit write. */
  write32(offset: number, value: number): void {
    switch (offset) {
      case REG_CTRL:
        this.#ctrl = value & 1;
        if (this.#ctrl) {
          // Latch the device table when translation is enabled.
          this.#dtBase = (this.#dtHi & 0xfffff) * 4294967296 + ((this.#dtLo & 0xfffff000) >>> 0);
          this.#dtEntries = 2 ** Math.min(16, this.#dtLo & 0x1f);
        }
        this.#status = this.#ctrl;
        break;
      case REG_INV:
        if (value & 1) this.invalidateAll();
        break;
      case REG_DT_BASE:
        this.#dtLo = value >>> 0;
        break;
      case REG_DT_BASE + 4:
        this.#dtHi = value >>> 0;
        break;
      case REG_FAULT_STATUS:
        this.#faultStatus = (this.#faultStatus & ~(value & 3)) >>> 0; // RW1C on FAULT/OVERFLOW
        if ((this.#faultStatus & 1) === 0) this.#faultStatus = 0;
        break;
      default:
        break; // read-only or reserved: ignored
    }
  }

  /** Empty the IOTLB (what writing FLAT_INV.ALL does). */
  invalidateAll(): void {
    this.counters.inv_all++;
    this.#tlbKey.fill(-1);
    this.#tlbIndex.clear();
    this.#tlbNext = 0;
    if (this.#m.trace.observed) this.#m.trace.emit(this.name, "flat_iommu_inv_all", {});
  }

  /** Number of valid IOTLB entries (for tests and reports). */
  get iotlbOccupancy(): number {
    return this.#tlbIndex.size;
  }

  #fault(req: DmaRequest, out: TranslateResult, reason: number): void {
    out.ok = false;
    out.pending = false;
    out.fault = FAULT_NAMES[reason];
    out.faultCode = reason;
    this.counters.faults++;
    if ((this.#faultStatus & 1) === 0) {
      const write = (req.access & ACCESS_WRITE) !== 0 ? 1 : 0;
      this.#faultStatus = (1 | (reason << 4) | (write << 8) | ((req.rid & 0xffff) << 16)) >>> 0;
      this.#faultAddrLo = req.addr % 4294967296;
      this.#faultAddrHi = Math.floor(req.addr / 4294967296);
      this.#m.irq.raise(this.faultIrq);
    } else {
      this.#faultStatus |= 2;
    }
    if (this.#m.trace.observed) {
      this.#m.trace.emit(this.name, "flat_iommu_fault", {
        rid: req.rid,
        addr: req.addr,
        reason: out.fault,
        write: (req.access & ACCESS_WRITE) !== 0,
      });
    }
  }

  /**
   * Walk memory for `req`: returns the PTE's low word (PA in `out.pa`), -1
   * for an identity-mode device, or 0 with the fault reason in `#reason`.
   */
  #walk(req: DmaRequest, out: TranslateResult): number {
    const mem = this.#m.mem;
    const rid = req.rid & 0xffff;
    if (rid >= this.#dtEntries) {
      this.#reason = FaultReason.DT_OVERFLOW;
      return 0;
    }
    this.counters.dte_reads++;
    const dteAddr = this.#dtBase + rid * 8;
    const dLo = mem.read32(dteAddr), dHi = mem.read32(dteAddr + 4);
    if ((dLo & PTE_V) === 0) {
      this.#reason = FaultReason.DTE_INVALID;
      return 0;
    }
    const mode = (dLo >>> 1) & 3;
    if (mode === MODE_IDENTITY) return -1;
    if (mode === MODE_BLOCKED || mode !== MODE_TRANSLATE) {
      this.#reason = FaultReason.BLOCKED;
      return 0;
    }
    const addr = req.addr;
    if (addr < APERTURE_START || addr >= this.#apertureEnd) {
      this.#reason = FaultReason.OUT_OF_APERTURE;
      return 0;
    }
    const table = (dHi & 0xfffff) * 4294967296 + ((dLo & 0xfffff000) >>> 0);
    const pteAddr = table + Math.floor((addr - APERTURE_START) / FLAT_PAGE) * 8;
    this.counters.walk_reads++;
    const pLo = mem.read32(pteAddr), pHi = mem.read32(pteAddr + 4);
    if ((pLo & PTE_V) === 0) {
      this.#reason = FaultReason.PTE_NOT_PRESENT;
      return 0;
    }
    out.pa = (pHi & 0xfffff) * 4294967296 + ((pLo & 0xfffff000) >>> 0);
    return pLo;
  }

  /** Translate one DMA request (never throws: bad tables are faults). */
  translate(req: DmaRequest, out: TranslateResult): void {
    this.counters.translations++;
    out.span = FLAT_PAGE;
    if (this.#ctrl === 0) { // translation disabled: DMA passes untranslated
      out.ok = true;
      out.pa = req.addr;
      out.perm = 7;
      out.fault = "";
      out.faultCode = 0;
      out.pending = false;
      return;
    }
    if (req.pasid !== NO_PASID) {
      this.#fault(req, out, FaultReason.PASID_UNSUPPORTED);
      return;
    }
    const pfn = Math.floor(req.addr / FLAT_PAGE);
    let perm = 0;
    let pagePa = 0;
    const cacheable = req.addr < this.#apertureEnd;
    const key = cacheable ? (req.rid & 0xffff) * 524288 + pfn : -1;
    const slot = cacheable ? this.#tlbIndex.get(key) : undefined;
    if (slot !== undefined) {
      this.counters.iotlb_hits++;
      perm = this.#tlbPerm[slot];
      pagePa = this.#tlbPa[slot];
      if (this.checking) this.#check(req, out, pagePa, perm);
    } else {
      this.counters.iotlb_misses++;
      const pte = this.#walk(req, out);
      if (pte === 0) {
        this.#fault(req, out, this.#reason);
        return;
      }
      if (pte === -1) {
        out.ok = true;
        out.pa = req.addr;
        out.perm = 7;
        out.fault = "";
        out.faultCode = 0;
        out.pending = false;
        return;
      }
      perm = (pte & PTE_R ? ACCESS_READ : 0) | (pte & PTE_W ? ACCESS_WRITE : 0);
      pagePa = out.pa;
      this.#insert(key, pagePa, perm);
    }
    // An instruction fetch needs read permission (no separate execute bit).
    const need = (req.access & ACCESS_WRITE ? ACCESS_WRITE : 0) |
      (req.access & 5 ? ACCESS_READ : 0);
    if ((perm & need) !== need) {
      this.#fault(req, out, FaultReason.PERMISSION);
      return;
    }
    out.ok = true;
    out.pa = pagePa + (req.addr % FLAT_PAGE);
    out.perm = perm;
    out.fault = "";
    out.faultCode = 0;
    out.pending = false;
  }

  #insert(key: number, pa: number, perm: number): void {
    const slot = this.#tlbNext;
    this.#tlbNext = (slot + 1) & (this.#tlbKey.length - 1);
    const old = this.#tlbKey[slot];
    if (old >= 0) this.#tlbIndex.delete(old);
    this.#tlbKey[slot] = key;
    this.#tlbPa[slot] = pa;
    this.#tlbPerm[slot] = perm;
    this.#tlbIndex.set(key, slot);
  }

  #check(req: DmaRequest, out: TranslateResult, pagePa: number, perm: number): void {
    const pte = this.#walk(req, out);
    const memPerm = pte > 0 ? (pte & PTE_R ? 1 : 0) | (pte & PTE_W ? 2 : 0) : -1;
    const memPa = pte > 0 ? out.pa : -1;
    if (pte !== -1 && (memPa !== pagePa || memPerm !== perm)) {
      this.counters.stale_hits++;
      this.#m.trace.emit(this.name, "flat_iommu_stale_iotlb", {
        rid: req.rid,
        addr: req.addr,
        cached_pa: pagePa,
        memory_pa: memPa,
        reason: "missed invalidation: the IOTLB entry differs from the page table",
      });
    }
  }
}
