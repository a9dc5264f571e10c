/**
 * @module
 * The Arm SMMUv3 hardware model: register pages 0 and 1, stream table and
 * context descriptors read from physical memory, stage-1/stage-2/nested
 * walks, a TLB and a configuration cache, the command queue, the event and
 * PRI queues, the stall model, ATS with a per-device ATC, and checking mode.
 * It knows nothing of any driver: it sees only its registers and memory.
 */

import {
  ACCESS_EXEC,
  ACCESS_READ,
  ACCESS_WRITE,
  type Counters,
  type DmaRequest,
  type IommuHardware,
  type Machine,
  type MmioRegion,
  NO_PASID,
  type PhysMem,
  type RegisterSpec,
  type TranslateResult,
} from "@iommu-lab/core";
import type { SmmuFeatures } from "./features.ts";
import {
  CR0,
  GBPA,
  GERROR,
  IDR0,
  IRQ_CTRL,
  OAS_BITS,
  Q_OVF,
  REG,
  SMMU_MMIO_SIZE,
  SMMU_REGISTERS,
} from "./regs.ts";
import {
  CERROR,
  EVT,
  EVT_CLASS,
  EVT_NAME,
  OP,
  OP_NAME,
  PRI_RESP,
  RESUME_ACTION,
  S1DSS,
  STE_CFG,
  STRW,
  SYNC_CS,
} from "./structs.ts";
import {
  ALL_ASIDS,
  ALL_ASIDS_AND_S2,
  atcTag,
  BY_IPA,
  S2_ONLY_ASID,
  type TlbEntry,
  tlbTag,
  TranslationCache,
} from "./tlb.ts";
import {
  newWalkCfg,
  newWalkOut,
  s1StartLevel,
  s2StartLevel,
  tableAt,
  type TableFetchTranslator,
  walk,
  WALK_OK,
  type WalkCfg,
  type WalkOut,
} from "./walk.ts";
import { levelShift, WalkCache, type WalkCacheEntry } from "./walkcache.ts";

const TWO32 = 4294967296;
const INV_TWO32 = 2.3283064365386963e-10; // 2^-32: floor(x * INV_TWO32) is x >> 32 on a double
const TG_SHIFT = [12, 16, 14, -1]; // CD.TG0 / STE.S2TG encoding to granule shift
const CMD_TG_SHIFT = [0, 12, 14, 16]; // TLBI TG field

/** A parsed STE (configuration cache entry). */
export interface SteConfig {
  /** Raw words (for checking mode). */
  words: Uint32Array;
  /** Config field. */
  config: number;
  /** S1 enabled. */
  s1: boolean;
  /** S2 enabled. */
  s2: boolean;
  /** S1FMT. */
  s1fmt: number;
  /** S1ContextPtr. */
  ctxPtr: number;
  /** S1CDMax. */
  cdMax: number;
  /** S1DSS. */
  s1dss: number;
  /** S1STALLD. */
  s1stalld: boolean;
  /** EATS. */
  eats: number;
  /** EL2 regime. */
  el2: boolean;
  /** S2VMID. */
  vmid: number;
  /** Stage-2 walk configuration. */
  s2cfg: WalkCfg;
  /** S2S (stall on stage-2 faults). */
  s2s: boolean;
  /** S2R (record stage-2 faults). */
  s2r: boolean;
  /**
   * The configuration cache's CDs of this StreamID (null until the STE is
   * cached): translate reaches them from the cached STE without a lookup.
   */
  cds: CdCacheSet | null;
}

/**
 * The configuration cache's CDs of one StreamID: one set per StreamID for
 * the SMMU's lifetime, emptied in place by invalidations.
 */
export interface CdCacheSet {
  /** CD 0, used by transactions without a SubstreamID and with SubstreamID 0. */
  cd0: CdConfig | null;
  /** The CDs of SubstreamIDs 1 and up. */
  bySsid: Map<number, CdConfig>;
}

/** A parsed CD (configuration cache entry). */
export interface CdConfig {
  /** Raw words (for checking mode). */
  words: Uint32Array;
  /** ASID. */
  asid: number;
  /** EPD0. */
  epd0: boolean;
  /** CD.S: stall on faults. */
  stall: boolean;
  /** CD.R: record faults. */
  record: boolean;
  /** Stage-1 walk configuration. */
  cfg: WalkCfg;
}

/** A missed invalidation found in checking mode. */
export interface MissedInvalidation {
  /** Which cache was stale: "STE", "CD", "TLB", "ATC", or "WALK" (the walk cache). */
  cache: string;
  /** StreamID. */
  sid: number;
  /** SubstreamID or -1. */
  ssid: number;
  /** Input address (TLB/ATC), else 0. */
  addr: number;
  /** What the cache said versus memory. */
  detail: string;
}

interface Stall {
  sid: number;
  ssid: number;
  page: number;
  stag: number;
  state: number; // 0 waiting, 1 retry, 2 abort/terminate
}

interface PageReq {
  sid: number;
  ssid: number;
  page: number;
  prg: number;
  state: number; // -1 waiting, else PRI_RESP value
}

/** Counter names of the model. */
function newCounters(): Counters {
  return {
    translations: 0,
    bypass: 0,
    aborts: 0,
    steHits: 0,
    steMisses: 0,
    cdHits: 0,
    cdMisses: 0,
    tlbHits: 0,
    tlbMisses: 0,
    atcHits: 0,
    atcMisses: 0,
    walkReads: 0,
    walkCacheS1Hits: 0,
    walkCacheS1Misses: 0,
    walkCacheS2Hits: 0,
    walkCacheS2Misses: 0,
    faults: 0,
    events: 0,
    eventsLost: 0,
    commands: 0,
    syncs: 0,
    cmdErrors: 0,
    stalls: 0,
    pageRequests: 0,
    lostPriRecords: 0,
    missedInvalidations: 0,
    sev: 0,
    ...Object.fromEntries(Object.keys(OP).map((k) => [`cmd_${k}`, 0])),
  };
}

/** The SMMUv3 hardware model. */
export class SmmuV3 implements IommuHardware, MmioRegion {
  /** Instance name (also the MMIO region name). */
  readonly name: string;
  /** Window size. */
  readonly size: number = SMMU_MMIO_SIZE;
  /** The register window (this object). */
  readonly mmio: MmioRegion;
  /** Register window base. */
  readonly mmioBase: number;
  /** Register specs. */
  readonly registers: readonly RegisterSpec[] = SMMU_REGISTERS;
  /** Counters. */
  readonly counters: Counters;
  /** Checking mode. */
  checking = false;
  /** Missed invalidations found in checking mode. */
  readonly missed: MissedInvalidation[] = [];
  /** Features. */
  readonly features: SmmuFeatures;
  /** StreamIDs whose ATC does not answer invalidations (a test hook for CERROR_ATC_INV_SYNC). */
  readonly atcInvTimeout: Set<number> = new Set();

  readonly #m: Machine;
  readonly #mem: PhysMem;
  readonly #regs = new Uint32Array(0x40);
  #cmdqProd = 0;
  #cmdqCons = 0;
  #evtqProd = 0;
  #evtqCons = 0;
  #priqProd = 0;
  #priqCons = 0;
  #atcInvFailed = false;
  #fetchAddr = 0;
  readonly #steCache = new Map<number, SteConfig>();
  /** CD cache: a set per StreamID (never removed, emptied in place). */
  readonly #cdSets = new Map<number, CdCacheSet>();
  /**
   * The STE translate used last (a lookup memo, not a cache of its own):
   * -1 / null when unknown. Every change to #steCache forgets it.
   */
  #memoSid = -1;
  #memoSte: SteConfig | null = null;
  readonly #tlb: TranslationCache;
  /** The walk cache (null: option walk_cache=false). */
  readonly #wc: WalkCache | null;
  /** Stage-2 table fetches of a nested walk skip the walk cache (checking mode's fresh walks). */
  #fresh = false;
  /** StreamID / SubstreamID of the transaction being translated (for checking-mode reports). */
  #curSid = 0;
  #curSsid = -1;
  readonly #irqEvtq: string;
  /** Log2 of the span the last successful translation reported (`out.span`). */
  #okShift = 12;
  readonly #irqPriq: string;
  readonly #irqGerror: string;
  readonly #atc: TranslationCache = new TranslationCache(Number.POSITIVE_INFINITY);
  readonly #stalls: Stall[] = [];
  #nextStag = 1;
  readonly #pageReqs: PageReq[] = [];
  readonly #nextPrg = new Map<number, number>();
  readonly #w = newWalkOut();
  readonly #w2 = newWalkOut();
  readonly #wt = newWalkOut();
  readonly #ev = new Uint32Array(8);
  readonly #cmd = new Uint32Array(4);
  /** The command-queue page read last and its number (null: none, or not backed then). */
  #cmdqPage: Uint32Array | null = null;
  #cmdqPagePfn = -1;
  #ste: SteConfig | null = null;
  readonly #s2fetch: TableFetchTranslator;
  readonly #wcOut = newWalkOut();
  readonly #wc2 = newWalkOut();
  readonly #scratch = newTranslateScratch();

  /** Build the model; the caller maps it on the bus at `features.base`. */
  constructor(machine: Machine, features: SmmuFeatures) {
    this.#m = machine;
    this.#mem = machine.mem;
    this.features = features;
    this.name = features.name;
    // Interrupt line names built once (an event must not build a string).
    this.#irqEvtq = `${features.name}:evtq`;
    this.#irqPriq = `${features.name}:priq`;
    this.#irqGerror = `${features.name}:gerror`;
    this.mmio = this;
    this.mmioBase = features.base;
    this.counters = machine.trace.counters(features.name, newCounters());
    this.#tlb = new TranslationCache(features.tlbSize);
    this.#wc = features.walkCache ? new WalkCache(features.walkCacheSize) : null;
    this.#initIdr();
    this.#s2fetch = {
      tableAddr: (ipa: number, out: WalkOut): number => {
        const ste = this.#ste!;
        const wc = this.#fresh ? null : this.#wc;
        if (wc === null) {
          walk(this.#mem, ste.s2cfg, ipa, false, false, true, null, true, this.#wt);
        } else {
          const tag = tlbTag(ste.el2 ? 1 : 0, ste.el2 ? 0 : ste.vmid, S2_ONLY_ASID);
          walk(this.#mem, ste.s2cfg, ipa, false, false, true, null, true, this.#wt, wc, tag);
          this.#noteWalkCache(this.#wt, ste, null, ipa, tag);
        }
        this.counters.walkReads += this.#wt.reads;
        if (this.#wt.fault !== WALK_OK) {
          out.fault = this.#wt.fault;
          out.ipa = ipa;
          return -1;
        }
        return this.#wt.oa;
      },
    };
  }

  #initIdr(): void {
    const f = this.features;
    const r = this.#regs;
    let idr0 = IDR0.TTF_AARCH64 | IDR0.COHACC | IDR0.TTENDIAN_LE;
    if (f.s1) idr0 |= IDR0.S1P;
    if (f.s2) idr0 |= IDR0.S2P;
    if (f.st2lvl) idr0 |= IDR0.ST_LVL_2LVL;
    if (f.cd2l) idr0 |= IDR0.CD2L;
    if (f.asid16) idr0 |= IDR0.ASID16;
    if (f.vmid16) idr0 |= IDR0.VMID16;
    if (f.ats) idr0 |= IDR0.ATS;
    if (f.pri) idr0 |= IDR0.PRI;
    if (f.hyp) idr0 |= IDR0.HYP;
    if (f.msi) idr0 |= IDR0.MSI;
    if (f.sev) idr0 |= IDR0.SEV;
    idr0 |= (f.httu === "dirty" ? 2 : f.httu === "access" ? 1 : 0) << IDR0.HTTU_SHIFT;
    idr0 |= (f.stall === "stall" ? 0 : f.stall === "terminate" ? 1 : 2) << IDR0.STALL_MODEL_SHIFT;
    r[REG.IDR0 >> 2] = idr0 >>> 0;
    r[REG.IDR1 >> 2] = (1 << 27) /* ATTR_TYPES_OVR */ | (f.cmdqs << 21) | (f.evtqs << 16) |
      (f.priqs << 11) | (f.ssidBits << 6) | f.sidBits;
    r[REG.IDR3 >> 2] = f.rangeInv ? 1 << 10 : 0;
    r[REG.IDR5 >> 2] = (f.gran64k ? 1 << 6 : 0) | (f.gran16k ? 1 << 5 : 0) |
      (f.gran4k ? 1 << 4 : 0) | OAS_BITS.indexOf(f.oas) | (0x10 << 16);
    r[REG.AIDR >> 2] = 0x2; // SMMUv3.2
  }

  // -------------------------------------------------------------------------
  // Registers

  #reg(off: number): number {
    return this.#regs[off >> 2];
  }

  /** MMIO 32-bit read. */
  read32(offset: number): number {
    switch (offset) {
      case REG.CMDQ_PROD:
        return this.#cmdqProd;
      case REG.CMDQ_CONS:
        return this.#cmdqCons;
      case REG.EVTQ_PROD:
      case 0xa8:
        return this.#evtqProd;
      case REG.EVTQ_CONS:
      case 0xac:
        return this.#evtqCons;
      case REG.PRIQ_PROD:
      case 0xc8:
        return this.#priqProd;
      case REG.PRIQ_CONS:
      case 0xcc:
        return this.#priqCons;
    }
    if (offset < 0x100) return this.#regs[offset >> 2];
    return 0;
  }

  /** MMIO 32-bit write. */
  write32(offset: number, value: number): void {
    value >>>= 0;
    if (this.#m.trace.observed) {
      this.#m.trace.emit(this.name, "smmuv3_write_mmio", { addr: offset, val: value });
    }
    const r = this.#regs;
    if (offset === REG.CMDQ_PROD) {
      // The doorbell: the most frequent write, before the general dispatch.
      this.#cmdqProd = value & this.#qMask(REG.CMDQ_BASE);
      this.#processCmdq();
      return;
    }
    switch (offset) {
      case REG.IDR0:
      case REG.IDR1:
      case REG.IDR2:
      case REG.IDR3:
      case REG.IDR4:
      case REG.IDR5:
      case REG.IIDR:
      case REG.AIDR:
      case REG.CR0ACK:
      case REG.IRQ_CTRLACK:
      case REG.GERROR:
      case REG.STATUSR:
        return; // read-only
      case REG.CR0: {
        r[REG.CR0 >> 2] = value & 0x1f;
        r[REG.CR0ACK >> 2] = value & 0x1f;
        this.#processCmdq();
        return;
      }
      case REG.GBPA:
        if (value & GBPA.UPDATE) r[REG.GBPA >> 2] = value & ~GBPA.UPDATE & 0x1fffff;
        return;
      case REG.IRQ_CTRL:
        r[REG.IRQ_CTRL >> 2] = value & 7;
        r[REG.IRQ_CTRLACK >> 2] = value & 7;
        return;
      case REG.GERRORN:
        r[REG.GERRORN >> 2] = value;
        this.#processCmdq();
        return;
      case REG.CMDQ_PROD:
        this.#cmdqProd = value & this.#qMask(REG.CMDQ_BASE);
        this.#processCmdq();
        return;
      case REG.CMDQ_CONS:
        // Writable only while the queue is disabled.
        if (!(r[REG.CR0 >> 2] & CR0.CMDQEN)) this.#cmdqCons = value & this.#qMask(REG.CMDQ_BASE);
        return;
      case REG.EVTQ_PROD:
      case 0xa8:
        if (!(r[REG.CR0 >> 2] & CR0.EVTQEN)) this.#evtqProd = value;
        return;
      case REG.EVTQ_CONS:
      case 0xac:
        this.#evtqCons = value & (this.#qMask(REG.EVTQ_BASE) | Q_OVF);
        return;
      case REG.PRIQ_PROD:
      case 0xc8:
        if (!(r[REG.CR0 >> 2] & CR0.PRIQEN)) this.#priqProd = value;
        return;
      case REG.PRIQ_CONS:
      case 0xcc:
        this.#priqCons = value & (this.#qMask(REG.PRIQ_BASE) | Q_OVF);
        return;
    }
    if (offset < 0x100) {
      r[offset >> 2] = value;
      if (offset === REG.CMDQ_BASE || offset === REG.CMDQ_BASE + 4) {
        this.#clampQ(REG.CMDQ_BASE, this.features.cmdqs);
      }
      if (offset === REG.EVTQ_BASE || offset === REG.EVTQ_BASE + 4) {
        this.#clampQ(REG.EVTQ_BASE, this.features.evtqs);
      }
      if (offset === REG.PRIQ_BASE || offset === REG.PRIQ_BASE + 4) {
        this.#clampQ(REG.PRIQ_BASE, this.features.priqs);
      }
    }
  }

  /** MMIO 64-bit read. */
  read64(offset: number, hiOut: Uint32Array): number {
    hiOut[0] = this.read32(offset + 4);
    return this.read32(offset);
  }

  /** MMIO 64-bit write. */
  write64(offset: number, lo: number, hi: number): void {
    this.write32(offset, lo);
    this.write32(offset + 4, hi);
  }

  #clampQ(base: number, max: number): void {
    const lo = this.#regs[base >> 2];
    if ((lo & 0x1f) > max) this.#regs[base >> 2] = ((lo & ~0x1f) | max) >>> 0;
  }

  /** log2 size of a queue. */
  #qLog(base: number): number {
    return this.#regs[base >> 2] & 0x1f;
  }

  /** Mask of the index+wrap bits. */
  #qMask(base: number): number {
    return Q_WRAP_MASK[this.#qLog(base)];
  }

  #qBase(base: number): number {
    const lo = this.#regs[base >> 2];
    const hi = this.#regs[(base >> 2) + 1];
    return (hi & 0xfffff) * TWO32 + ((lo & ~0x1f) >>> 0);
  }

  // -------------------------------------------------------------------------
  // Queues written by the SMMU

  /** Write an event record (if the queue is enabled); sets overflow when full. */
  #writeEvent(ev: Uint32Array): void {
    const r = this.#regs;
    this.counters.events++;
    if (this.#m.trace.observed) {
      this.#m.trace.emit(this.name, "smmuv3_record_event", {
        type: EVT_NAME[ev[0] & 0xff] ?? ev[0] & 0xff,
        sid: ev[1],
        addr: ev[5] * TWO32 + ev[4],
      });
    }
    if (!(r[REG.CR0 >> 2] & CR0.EVTQEN)) {
      this.counters.eventsLost++;
      return;
    }
    const log = this.#qLog(REG.EVTQ_BASE);
    const p = this.#evtqProd;
    const c = this.#evtqCons;
    const idxMask = Q_IDX_MASK[log];
    const wrap = POW2[log];
    const full = (p & idxMask) === (c & idxMask) && (p & wrap) !== (c & wrap);
    if (full) {
      this.counters.eventsLost++;
      // Overflow: PROD.OVFLG becomes the inverse of CONS.OVACKFLG.
      if (((p ^ c) & Q_OVF) === 0) this.#evtqProd = (p ^ Q_OVF) >>> 0;
      this.#raise(this.#irqEvtq, IRQ_CTRL.EVTQ_IRQEN);
      return;
    }
    const addr = this.#qBase(REG.EVTQ_BASE) + (p & idxMask) * 32;
    if (addr + 32 > this.#mem.limit) {
      this.counters.eventsLost++;
      this.#gerror(GERROR.EVTQ_ABT_ERR);
      return;
    }
    this.#mem.writeWords(addr, ev);
    this.#evtqProd = ((p & Q_OVF) | (((p & (wrap * 2 - 1)) + 1) & (wrap * 2 - 1))) >>> 0;
    this.#raise(this.#irqEvtq, IRQ_CTRL.EVTQ_IRQEN);
  }

  /** Queue a PRI record; false when the queue is off or full (the request is lost). */
  #writePri(rec: Uint32Array): boolean {
    const r = this.#regs;
    if (!(r[REG.CR0 >> 2] & CR0.PRIQEN)) return false;
    const log = this.#qLog(REG.PRIQ_BASE);
    const p = this.#priqProd;
    const c = this.#priqCons;
    const idxMask = Q_IDX_MASK[log];
    const wrap = POW2[log];
    if ((p & idxMask) === (c & idxMask) && (p & wrap) !== (c & wrap)) {
      this.counters.lostPriRecords++;
      if (((p ^ c) & Q_OVF) === 0) this.#priqProd = (p ^ Q_OVF) >>> 0;
      this.#raise(this.#irqPriq, IRQ_CTRL.PRIQ_IRQEN);
      return false;
    }
    const addr = this.#qBase(REG.PRIQ_BASE) + (p & idxMask) * 16;
    if (addr + 16 > this.#mem.limit) {
      this.counters.lostPriRecords++;
      this.#gerror(GERROR.PRIQ_ABT_ERR);
      return false;
    }
    this.#mem.writeWords(addr, rec.subarray(0, 4));
    this.#priqProd = ((p & Q_OVF) | (((p & (wrap * 2 - 1)) + 1) & (wrap * 2 - 1))) >>> 0;
    this.#raise(this.#irqPriq, IRQ_CTRL.PRIQ_IRQEN);
    return true;
  }

  /** Raise interrupt `line` (a name from {@link #irqLines}) when its IRQ_CTRL enable is set. */
  #raise(line: string, enableBit: number): void {
    if (this.#regs[REG.IRQ_CTRL >> 2] & enableBit) this.#m.irq.raise(line);
  }

  #gerror(bit: number): void {
    const r = this.#regs;
    // An error is active when GERROR and GERRORN differ in its bit; toggle only if not already active.
    if (((r[REG.GERROR >> 2] ^ r[REG.GERRORN >> 2]) & bit) === 0) {
      r[REG.GERROR >> 2] = (r[REG.GERROR >> 2] ^ bit) >>> 0;
      this.#raise(this.#irqGerror, IRQ_CTRL.GERROR_IRQEN);
    }
  }

  // -------------------------------------------------------------------------
  // Command queue

  #processCmdq(): void {
    const r = this.#regs;
    if (!(r[REG.CR0 >> 2] & CR0.CMDQEN)) return;
    if ((r[REG.GERROR >> 2] ^ r[REG.GERRORN >> 2]) & GERROR.CMDQ_ERR) return; // stopped on error
    const log = this.#qLog(REG.CMDQ_BASE);
    const wrapMask = Q_WRAP_MASK[log];
    const idxMask = Q_IDX_MASK[log];
    const base = this.#qBase(REG.CMDQ_BASE);
    let cons = this.#cmdqCons & wrapMask;
    const cmd = this.#cmd;
    const mem = this.#mem;
    const stats = mem.stats;
    // The ring page read last, kept across doorbells (a backed page's words never move).
    let page = this.#cmdqPage;
    let pagePfn = this.#cmdqPagePfn;
    // The ring's first page and its base's offset in it: an entry's page and word come
    // from 32-bit integer offsets (no division per command).
    const basePfn = Math.floor(base / 4096);
    const baseOff = base - basePfn * 4096;
    // When the whole ring lies inside memory no entry needs the bounds check.
    const allIn = base + (idxMask + 1) * 16 <= mem.limit;
    while (cons !== (this.#cmdqProd & wrapMask)) {
      const off = baseOff + (cons & idxMask) * 16;
      if (!allIn && base + (cons & idxMask) * 16 + 16 > mem.limit) {
        this.#cmdError(cons, CERROR.ABT);
        return;
      }
      // A command is 16-byte aligned, so it lies in one page: read its words in place
      // (counted as four reads, as read32 would); the page is looked up when it changes
      // (a backed page's words never move; an unbacked one is asked again).
      const pfn = basePfn + (off >>> 12);
      if (pfn !== pagePfn || page === null) {
        page = mem.pageWords(pfn);
        pagePfn = pfn;
        this.#cmdqPage = page;
        this.#cmdqPagePfn = pfn;
      }
      stats.reads += 4;
      if (page === null) {
        cmd[0] =
          cmd[1] =
          cmd[2] =
          cmd[3] =
            0;
      } else {
        const i = (off & 4095) >>> 2;
        cmd[0] = page[i];
        cmd[1] = page[i + 1];
        cmd[2] = page[i + 2];
        cmd[3] = page[i + 3];
      }
      const err = this.#execute(cmd);
      if (err !== CERROR.NONE) {
        this.#cmdError(cons, err);
        return;
      }
      cons = (cons + 1) & wrapMask;
      this.#cmdqCons = cons;
    }
  }

  #cmdError(cons: number, err: number): void {
    this.#cmdqCons = (cons | (err << 24)) >>> 0;
    this.counters.cmdErrors++;
    if (this.#m.trace.observed) {
      this.#m.trace.emit(this.name, "smmuv3_cmdq_consume_error", { cons, err });
    }
    this.#gerror(GERROR.CMDQ_ERR);
  }

  /** Execute one command; returns a CERROR code. */
  #execute(c: Uint32Array): number {
    const op = c[0] & 0xff;
    const f = this.features;
    this.counters.commands++;
    countOpcode(this.counters, op);
    // Read once for the opcode event and the TLBI event: the TLB drops between them call
    // out to nobody, and emit itself re-checks (a listener the first event removes).
    const observed = this.#m.trace.observed;
    if (observed) {
      const name = OP_NAME[op];
      this.#m.trace.emit(this.name, "smmuv3_cmdq_opcode", {
        opcode: name ?? `0x${op.toString(16)}`,
      });
    }
    const sid = c[1];
    const ssid = (c[0] >>> 12) & 0xfffff;
    const vmid = c[1] & 0xffff;
    const asid = c[1] >>> 16;
    switch (op) {
      // The strict unmap's commands first (the cases are compared in order).
      case OP.TLBI_NH_VA:
      case OP.TLBI_NH_VAA:
      case OP.TLBI_EL2_VA:
      case OP.TLBI_EL2_VAA:
      case OP.TLBI_S2_IPA: {
        if ((op === OP.TLBI_EL2_VA || op === OP.TLBI_EL2_VAA) && !f.hyp) return CERROR.ILL;
        if (op === OP.TLBI_S2_IPA && !f.s2) return CERROR.ILL;
        const tg = (c[2] >>> 10) & 3;
        const num = (c[0] >>> 12) & 0x1f;
        const scale = (c[0] >>> 20) & 0x1f;
        const addrHi = op === OP.TLBI_S2_IPA ? c[3] & 0xfffff : c[3] & 0xfffff; // model addresses < 2^52
        const addr = addrHi * TWO32 + ((c[2] & 0xfffff000) >>> 0);
        let size = 1;
        if (tg !== 0 && f.rangeInv) size = (num + 1) * POW2[scale + CMD_TG_SHIFT[tg]];
        const el2 = op === OP.TLBI_EL2_VA || op === OP.TLBI_EL2_VAA ? 1 : 0;
        const a = op === OP.TLBI_NH_VA || op === OP.TLBI_EL2_VA ? asid : -1;
        if (op === OP.TLBI_S2_IPA) this.#tlb.dropRange(0, vmid, BY_IPA, addr, size);
        else this.#tlb.dropRange(el2, el2 ? 0 : vmid, a, addr, size);
        const leaf = (c[2] & 1) !== 0;
        const ttl = (c[2] >>> 8) & 3;
        const wc = this.#wc;
        if (!leaf && wc !== null) {
          // Leaf=0: table descriptors over the range go too; with a TTL hint (and TG) only
          // those read at level TTL (none for TTL=3), as an implementation may.
          const only = ttl !== 0 && tg !== 0 ? levelShift(ttl, CMD_TG_SHIFT[tg]) : -1;
          if (op === OP.TLBI_S2_IPA) wc.dropRange(0, vmid, BY_IPA, addr, size, only);
          else wc.dropRange(el2, el2 ? 0 : vmid, a, addr, size, only);
        }
        if (observed) {
          this.#m.trace.emit(this.name, "smmuv3_cmdq_tlbi", {
            op: OP_NAME[op],
            vmid,
            asid,
            addr,
            size,
            leaf,
            ttl,
            tg,
          });
        }
        return CERROR.NONE;
      }
      case OP.CMD_SYNC: {
        this.counters.syncs++;
        if (this.#atcInvFailed) {
          this.#atcInvFailed = false;
          return CERROR.ATC_INV_SYNC;
        }
        const cs = (c[0] >>> 12) & 3;
        if (cs === 3) return CERROR.ILL;
        if (cs === SYNC_CS.IRQ) {
          const msiAddr = (c[3] & 0xfffff) * TWO32 + ((c[2] & 0xfffffffc) >>> 0);
          if (msiAddr !== 0 && f.msi) {
            if (msiAddr + 4 > this.#mem.limit) this.#gerror(GERROR.MSI_CMDQ_ABT_ERR);
            else this.#mem.write32(msiAddr, c[1]);
          } else {
            this.#m.irq.raise(`${this.name}:cmdq-sync`);
          }
        } else if (cs === SYNC_CS.SEV) {
          this.counters.sev++;
        }
        if (this.#m.trace.observed) this.#m.trace.emit(this.name, "smmuv3_cmdq_sync", { cs });
        return CERROR.NONE;
      }
      case OP.PREFETCH_CONFIG: {
        // Load the STE (and the CD when SSV) into the configuration cache; faults are not reported.
        if (!this.#steCache.has(sid) && this.#fetchSte(sid, this.#scratch) === 0) {
          this.#cacheSte(sid, this.#scratch.ste);
        }
        const ste = this.#steCache.get(sid);
        if (ste !== undefined && ste.s1 && (c[0] & 0x800) !== 0 && !ste.s2) {
          const set = ste.cds!;
          if (cdGet(set, ssid) === null && this.#fetchCd(ste, ssid, this.#scratch) === 0) {
            cdSet(set, ssid, cloneCd(this.#scratch.cd));
          }
        }
        return CERROR.NONE;
      }
      case OP.PREFETCH_ADDR:
        return CERROR.NONE;
      case OP.CFGI_STE:
        this.#invalidateSte(sid, (c[2] & 1) === 0);
        if (this.#m.trace.observed) this.#m.trace.emit(this.name, "smmuv3_cmdq_cfgi_ste", { sid });
        return CERROR.NONE;
      case OP.CFGI_STE_RANGE: {
        const range = c[2] & 0x1f;
        if (range === 31) {
          this.#forgetConfigMemo();
          this.#steCache.clear();
          for (const set of this.#cdSets.values()) {
            set.cd0 = null;
            set.bySsid.clear();
          }
        } else {
          const n = 2 ** (range + 1);
          const first = sid - (sid % n);
          for (const k of [...this.#steCache.keys()]) {
            if (k >= first && k < first + n) this.#invalidateSte(k, true);
          }
        }
        if (this.#m.trace.observed) {
          this.#m.trace.emit(this.name, "smmuv3_cmdq_cfgi_ste_range", { sid, range });
        }
        return CERROR.NONE;
      }
      case OP.CFGI_CD:
        {
          const set = this.#cdSets.get(sid);
          if (set !== undefined) cdDelete(set, c[0] & 0x800 ? ssid : 0);
        }
        if (this.#m.trace.observed) {
          this.#m.trace.emit(this.name, "smmuv3_cmdq_cfgi_cd", { sid, ssid });
        }
        return CERROR.NONE;
      case OP.CFGI_CD_ALL:
        this.#dropCds(sid);
        return CERROR.NONE;
      case OP.TLBI_NH_ALL:
        this.#tlb.dropContexts(0, vmid, ALL_ASIDS);
        this.#wc?.dropContexts(0, vmid, ALL_ASIDS);
        return CERROR.NONE;
      case OP.TLBI_NH_ASID:
        this.#tlb.dropContexts(0, vmid, asid);
        this.#wc?.dropContexts(0, vmid, asid);
        return CERROR.NONE;
      case OP.TLBI_EL2_ALL:
        if (!f.hyp) return CERROR.ILL;
        this.#tlb.dropContexts(1, 0, ALL_ASIDS_AND_S2);
        this.#wc?.dropContexts(1, 0, ALL_ASIDS_AND_S2);
        return CERROR.NONE;
      case OP.TLBI_EL2_ASID:
        if (!f.hyp) return CERROR.ILL;
        this.#tlb.dropContexts(1, 0, asid);
        this.#wc?.dropContexts(1, 0, asid);
        return CERROR.NONE;
      case OP.TLBI_S12_VMALL:
        if (!f.s2) return CERROR.ILL;
        this.#tlb.dropContexts(0, vmid, ALL_ASIDS_AND_S2);
        this.#wc?.dropContexts(0, vmid, ALL_ASIDS_AND_S2);
        return CERROR.NONE;
      case OP.TLBI_NSNH_ALL:
        this.#tlb.dropAllEl1();
        this.#wc?.dropAllEl1();
        return CERROR.NONE;
      case OP.ATC_INV: {
        if (!f.ats) return CERROR.ILL;
        const sizeLog = c[2] & 0x3f;
        const addr = (c[3] & 0xfffff) * TWO32 + ((c[2] & 0xfffff000) >>> 0);
        const span = 2 ** (sizeLog + 12);
        const start = addr - (addr % span);
        const global = (c[0] & 0x200) !== 0;
        const ssv = (c[0] & 0x800) !== 0;
        this.#atc.dropAtc(sid, ssv ? ssid : -1, global, start, span, sizeLog >= 52);
        if (this.atcInvTimeout.has(sid)) this.#atcInvFailed = true;
        return CERROR.NONE;
      }
      case OP.PRI_RESP: {
        if (!f.pri) return CERROR.ILL;
        const prg = c[2] & 0x1ff;
        const resp = (c[2] >>> 12) & 3;
        for (const pr of this.#pageReqs) {
          if (pr.sid === sid && pr.prg === prg && pr.state < 0) pr.state = resp;
        }
        return CERROR.NONE;
      }
      case OP.RESUME: {
        const stag = c[2] & 0xffff;
        const action = (c[0] >>> 12) & 3;
        for (let i = 0; i < this.#stalls.length; i++) {
          const s = this.#stalls[i];
          if (s.sid === sid && s.stag === stag && s.state === 0) {
            // Retry: the transaction is walked again; terminate/abort: it fails once, then is gone.
            if (action === RESUME_ACTION.RETRY) this.#stalls.splice(i, 1);
            else s.state = 2;
            break;
          }
        }
        return CERROR.NONE;
      }
      case OP.STALL_TERM:
        for (const s of this.#stalls) if (s.sid === sid && s.state === 0) s.state = 2;
        return CERROR.NONE;
      default:
        return CERROR.ILL;
    }
  }

  #invalidateSte(sid: number, withCds: boolean): void {
    this.#forgetConfigMemo();
    this.#steCache.delete(sid);
    if (withCds) this.#dropCds(sid);
  }

  /** Forget the translate memo of the configuration caches (call on every change to them). */
  #forgetConfigMemo(): void {
    this.#memoSid = -1;
    this.#memoSte = null;
  }

  /** The CD set of `sid` (created empty on first use). */
  #cdSet(sid: number): CdCacheSet {
    let set = this.#cdSets.get(sid);
    if (set === undefined) {
      set = { cd0: null, bySsid: new Map() };
      this.#cdSets.set(sid, set);
    }
    return set;
  }

  /** Cache the STE of `sid` (a copy of `ste`), linked to the StreamID's CD set. */
  #cacheSte(sid: number, ste: SteConfig): SteConfig {
    const c = cloneSte(ste);
    c.cds = this.#cdSet(sid);
    this.#forgetConfigMemo();
    this.#steCache.set(sid, c);
    return c;
  }

  #dropCds(sid: number): void {
    const set = this.#cdSets.get(sid);
    if (set !== undefined) {
      set.cd0 = null;
      set.bySsid.clear();
    }
  }

  // -------------------------------------------------------------------------
  // Configuration fetch

  /** Fetch and parse the STE of `sid` from memory; returns an EVT code or 0 with `out` set. */
  #fetchSte(sid: number, sc: TranslateScratch): number {
    const r = this.#regs;
    const f = this.features;
    const cfg = r[REG.STRTAB_BASE_CFG >> 2];
    const log2size = cfg & 0x3f;
    const split = (cfg >>> 6) & 0x1f;
    const fmt = (cfg >>> 16) & 3;
    const base = (r[(REG.STRTAB_BASE >> 2) + 1] & 0xfffff) * TWO32 +
      ((r[REG.STRTAB_BASE >> 2] & ~0x3f) >>> 0);
    if (sid >= POW2[Math.min(log2size, f.sidBits)]) return EVT.C_BAD_STREAMID;
    let steAddr: number;
    if (fmt === 1 && f.st2lvl) {
      const l1 = base + Math.floor(sid * INV_POW2[split]) * 8;
      if (l1 + 8 > this.#mem.limit) return this.#fetchFault(EVT.F_STE_FETCH, l1);
      const lo = this.#mem.read32(l1);
      const hi = this.#mem.read32(l1 + 4);
      const span = lo & 0x1f;
      if (span === 0 || span > split + 1) return EVT.C_BAD_STREAMID;
      // A level-2 table holds 2^(SPAN-1) STEs.
      const idx = sid - Math.floor(sid * INV_POW2[split]) * POW2[split];
      if (idx >= POW2[span - 1]) return EVT.C_BAD_STREAMID;
      steAddr = (hi & 0xfffff) * TWO32 + ((lo & ~0x3f) >>> 0) + idx * 64;
    } else if (fmt === 0) {
      steAddr = base + sid * 64;
    } else {
      return EVT.C_BAD_STREAMID;
    }
    if (steAddr + 64 > this.#mem.limit) return this.#fetchFault(EVT.F_STE_FETCH, steAddr);
    const w = sc.steWords;
    this.#mem.readWords(steAddr, w, 16);
    return this.#parseSte(w, sc.ste);
  }

  /** Parse STE words into `o`; returns 0 or C_BAD_STE. */
  #parseSte(w: Uint32Array, o: SteConfig): number {
    const f = this.features;
    o.words.set(w);
    if ((w[0] & 1) === 0) return EVT.C_BAD_STE;
    const config = (w[0] >>> 1) & 7;
    o.config = config;
    if (config !== 0 && config < 4) return EVT.C_BAD_STE;
    o.s1 = config === STE_CFG.S1_TRANS || config === STE_CFG.NESTED;
    o.s2 = config === STE_CFG.S2_TRANS || config === STE_CFG.NESTED;
    if ((o.s1 && !f.s1) || (o.s2 && !f.s2)) return EVT.C_BAD_STE;
    o.s1fmt = (w[0] >>> 4) & 3;
    o.ctxPtr = (w[1] & 0xfffff) * TWO32 + ((w[0] & ~0x3f) >>> 0);
    o.cdMax = w[1] >>> 27;
    o.s1dss = w[2] & 3;
    o.s1stalld = (w[2] & (1 << 27)) !== 0;
    o.eats = (w[2] >>> 28) & 3;
    const strw = (w[2] >>> 30) & 3;
    o.el2 = strw === STRW.EL2;
    o.vmid = f.vmid16 ? w[4] & 0xffff : w[4] & 0xff;
    if (o.s1) {
      if (o.cdMax > f.ssidBits) return EVT.C_BAD_STE;
      if (o.cdMax > 0 && o.s1fmt !== 0 && !f.cd2l) return EVT.C_BAD_STE;
      if (o.s1fmt === 3) return EVT.C_BAD_STE;
      if (o.s1dss === 3) return EVT.C_BAD_STE;
      if (strw === 1 || strw === 3 || (o.el2 && (!f.hyp || o.s2))) return EVT.C_BAD_STE;
    }
    if (o.eats !== 0 && !f.ats) return EVT.C_BAD_STE;
    if (o.eats === 3) return EVT.C_BAD_STE;
    if (o.s2) {
      const vtcr = w[5];
      const t0sz = vtcr & 0x3f;
      const sl0 = (vtcr >>> 6) & 3;
      const tg = (vtcr >>> 14) & 3;
      const ps = (vtcr >>> 16) & 7;
      if ((w[5] & (1 << 19)) === 0) return EVT.C_BAD_STE; // S2AA64 must be set (AArch64 only)
      const g = TG_SHIFT[tg];
      if (
        g < 0 || (g === 12 && !f.gran4k) || (g === 14 && !f.gran16k) || (g === 16 && !f.gran64k)
      ) {
        return EVT.C_BAD_STE;
      }
      const inBits = 64 - t0sz;
      if (inBits > 48 || inBits < 24) return EVT.C_BAD_STE;
      if (sl0 === 3) return EVT.C_BAD_STE;
      const start = s2StartLevel(sl0, g);
      const stride = g - 3;
      // Bits resolved at the start level; more than 4 extra bits needs > 16 concatenated tables.
      const startBits = inBits - (g + stride * (3 - start));
      if (startBits < 1 || startBits > stride + 4) return EVT.C_BAD_STE;
      const c = o.s2cfg;
      c.stage = 2;
      c.ttb = (w[7] & 0xfffff) * TWO32 + ((w[6] & ~0xf) >>> 0);
      c.inBits = inBits;
      c.granShift = g;
      c.outBits = Math.min(OAS_BITS[Math.min(ps, 6)], f.oas);
      c.startLevel = start;
      c.ha = (w[5] & (1 << 24)) !== 0 && f.httu !== "none";
      c.hd = (w[5] & (1 << 23)) !== 0 && f.httu === "dirty";
      o.s2s = (w[5] & (1 << 25)) !== 0;
      o.s2r = (w[5] & (1 << 26)) !== 0;
    } else {
      o.s2s = false;
      o.s2r = false;
    }
    return 0;
  }

  /** Fetch CD `ssid` (-1: none) for `ste`; returns an EVT code or 0 with `sc.cd` set. */
  #fetchCd(ste: SteConfig, ssid: number, sc: TranslateScratch): number {
    const idx = ssid < 0 ? 0 : ssid;
    let cdAddr: number;
    if (ste.cdMax === 0 || ste.s1fmt === 0) {
      cdAddr = ste.ctxPtr + idx * 64;
    } else {
      const leafBits = ste.s1fmt === 1 ? 6 : 10;
      const l1Idx = Math.floor(idx * INV_POW2[leafBits]);
      let l1 = ste.ctxPtr + l1Idx * 8;
      if (ste.s2) {
        l1 = this.#s2fetch.tableAddr(l1, this.#w2);
        if (l1 < 0) return -this.#w2.fault;
      }
      if (l1 + 8 > this.#mem.limit) return this.#fetchFault(EVT.F_CD_FETCH, l1);
      const lo = this.#mem.read32(l1);
      const hi = this.#mem.read32(l1 + 4);
      if ((lo & 1) === 0) return EVT.C_BAD_SUBSTREAMID;
      cdAddr = (hi & 0xfffff) * TWO32 + ((lo & 0xfffff000) >>> 0) +
        (idx - l1Idx * POW2[leafBits]) * 64;
    }
    if (ste.s2) {
      cdAddr = this.#s2fetch.tableAddr(cdAddr, this.#w2);
      if (cdAddr < 0) return -this.#w2.fault;
    }
    if (cdAddr + 64 > this.#mem.limit) return this.#fetchFault(EVT.F_CD_FETCH, cdAddr);
    this.#mem.readWords(cdAddr, sc.cdWords, 16);
    return this.#parseCd(sc.cdWords, sc.cd);
  }

  /** Parse CD words; returns 0 or C_BAD_CD. */
  #parseCd(w: Uint32Array, o: CdConfig): number {
    const f = this.features;
    o.words.set(w);
    if ((w[0] & 0x80000000) === 0) return EVT.C_BAD_CD;
    if ((w[1] & (1 << 9)) === 0) return EVT.C_BAD_CD; // AA64
    const t0sz = w[0] & 0x3f;
    const tg = (w[0] >>> 6) & 3;
    const g = TG_SHIFT[tg];
    o.epd0 = (w[0] & (1 << 14)) !== 0;
    if (!o.epd0) {
      if (
        g < 0 || (g === 12 && !f.gran4k) || (g === 14 && !f.gran16k) || (g === 16 && !f.gran64k)
      ) {
        return EVT.C_BAD_CD;
      }
      if (t0sz < 16 || t0sz > 39) return EVT.C_BAD_CD;
    }
    const ips = w[1] & 7;
    o.asid = f.asid16 ? w[1] >>> 16 : (w[1] >>> 16) & 0xff;
    o.stall = (w[1] & (1 << 12)) !== 0;
    o.record = (w[1] & (1 << 13)) !== 0;
    const c = o.cfg;
    c.stage = 1;
    c.ttb = (w[3] & 0xfffff) * TWO32 + ((w[2] & ~0xf) >>> 0);
    c.inBits = 64 - t0sz;
    c.granShift = g < 0 ? 12 : g;
    c.outBits = Math.min(OAS_BITS[Math.min(ips, 6)], f.oas);
    c.startLevel = s1StartLevel(c.inBits, c.granShift);
    c.ha = (w[1] & (1 << 11)) !== 0 && f.httu !== "none";
    c.hd = (w[1] & (1 << 10)) !== 0 && f.httu === "dirty";
    return 0;
  }

  // -------------------------------------------------------------------------
  // Translation

  /** Translate one transaction (never throws for bad tables: they are events). */
  translate(req: DmaRequest, out: TranslateResult): void {
    this.counters.translations++;
    out.pending = false;
    out.fault = "";
    out.faultCode = 0;
    const r = this.#regs;
    if (!(r[REG.CR0 >> 2] & CR0.SMMUEN)) {
      if (r[REG.GBPA >> 2] & GBPA.ABORT) return this.#abort(out, "GBPA_ABORT", 0);
      return this.#bypass(req, out);
    }
    const sid = req.rid;
    const ssid = req.pasid;
    const sc = this.#scratch;
    if (this.#stalls.length > 0) {
      // A stalled transaction waits for CMD_RESUME; a terminated one fails.
      const page = Math.floor(req.addr * INV_POW2[12]) * 4096;
      for (let i = 0; i < this.#stalls.length; i++) {
        const s = this.#stalls[i];
        if (s.sid !== sid || s.ssid !== ssid || s.page !== page) continue;
        if (s.state === 0) return this.#pending(out, "STALLED");
        this.#stalls.splice(i, 1);
        return this.#abort(out, "STALL_TERMINATED", EVT.F_TRANSLATION);
      }
    }
    // Stream table (through the configuration cache).
    let ste = sid === this.#memoSid ? this.#memoSte! : this.#steCache.get(sid);
    if (ste !== undefined) {
      this.#memoSid = sid;
      this.#memoSte = ste;
      this.counters.steHits++;
      if (this.checking) this.#checkSte(sid, ste);
    } else {
      this.counters.steMisses++;
      const e = this.#fetchSte(sid, sc);
      if (e !== 0) return this.#event(req, out, e, 0, 0, false, false);
      ste = this.#cacheSte(sid, sc.ste);
      this.#dropCds(sid);
    }
    this.#ste = ste;
    if (ste.config === STE_CFG.ABORT) return this.#abort(out, "STE_ABORT", 0);
    if (ste.config === STE_CFG.BYPASS) {
      if (ssid !== NO_PASID) {
        return this.#event(req, out, EVT.C_BAD_SUBSTREAMID, 0, 0, false, false);
      }
      return this.#bypass(req, out);
    }
    // ATS devices: device ATC, translation requests and PRI.
    if (ste.eats !== 0 && this.features.ats) {
      const dev = this.#m.pci.byRid(sid);
      if (dev !== undefined && dev.ats) return this.#atsPath(req, out, ste, dev.pri);
    }
    this.#translateUntranslated(req, out, ste, true);
  }

  /**
   * The untranslated path: CD, TLB, walks, events. `record` is false for the
   * translation requests of PRI-capable ATS devices: their translation faults
   * go back in the completion (and become page requests), configuration
   * errors are still recorded.
   */
  #translateUntranslated(
    req: DmaRequest,
    out: TranslateResult,
    ste: SteConfig,
    record: boolean,
  ): void {
    const sid = req.rid;
    const ssid = req.pasid;
    this.#curSid = sid;
    this.#curSsid = ssid;
    const write = (req.access & ACCESS_WRITE) !== 0;
    const exec = (req.access & ACCESS_EXEC) !== 0;
    let cd: CdConfig | null = null;
    let s1 = ste.s1;
    if (s1) {
      if (ssid !== NO_PASID) {
        if (
          ste.cdMax === 0 || ssid >= POW2[ste.cdMax] || (ssid === 0 && ste.s1dss === S1DSS.SSID0)
        ) {
          return this.#event(req, out, EVT.C_BAD_SUBSTREAMID, 0, 0, false, false);
        }
      } else if (ste.cdMax !== 0) {
        if (ste.s1dss === S1DSS.TERMINATE) {
          return this.#event(req, out, EVT.F_STREAM_DISABLED, 0, 0, false, false);
        }
        if (ste.s1dss === S1DSS.BYPASS) s1 = false;
      }
    }
    if (s1) {
      const set = ste.cds!;
      cd = ssid <= 0 ? set.cd0 : set.bySsid.get(ssid) ?? null;
      if (cd !== null) {
        this.counters.cdHits++;
        if (this.checking) this.#checkCd(sid, ssid, ste, cd);
      } else {
        this.counters.cdMisses++;
        const sc = this.#scratch;
        const e = this.#fetchCd(ste, ssid, sc);
        if (e < 0) {
          // Stage-2 fault fetching the CD.
          this.#w.faultStage = 2;
          this.#w.ipa = this.#w2.ipa;
          return this.#event(req, out, -e, EVT_CLASS.CD, this.#w2.ipa, true, !record);
        }
        if (e !== 0) return this.#event(req, out, e, 0, 0, false, false);
        cd = cloneCd(sc.cd);
        cdSet(set, ssid, cd);
      }
    }
    // TLB.
    const el2 = ste.el2 ? 1 : 0;
    const tag = tlbTag(el2, el2 ? 0 : ste.vmid, cd !== null ? cd.asid : S2_ONLY_ASID);
    if (cd === null && !ste.s2) return this.#bypass(req, out); // S1DSS bypass with no stage 2
    const e = this.#tlb.lookup(tag, req.addr);
    if (e !== undefined) {
      const perm = req.priv ? e.permP : e.permU;
      if (permits(perm, req.access)) {
        this.counters.tlbHits++;
        if (this.checking) this.#checkTlb(req, ste, cd, e);
        return this.#ok(out, e.pa + (req.addr - e.va), perm, e.sizeShift);
      }
    }
    this.counters.tlbMisses++;
    const w = this.#w;
    let oa = req.addr;
    let ipa = req.addr;
    let sizeShift = 64;
    let permP = 7, permU = 7;
    if (cd !== null) {
      if (cd.epd0) {
        w.fault = EVT.F_TRANSLATION;
        w.faultStage = 1;
        w.faultOnTableFetch = false;
        return this.#walkFault(req, out, ste, cd, record);
      }
      walk(
        this.#mem,
        cd.cfg,
        req.addr,
        write,
        exec,
        req.priv,
        ste.s2 ? this.#s2fetch : null,
        true,
        w,
        this.#wc,
        tag,
      );
      this.counters.walkReads += w.reads;
      if (this.#wc !== null) this.#noteWalkCache(w, ste, cd, req.addr, tag);
      if (w.fault !== WALK_OK) return this.#walkFault(req, out, ste, cd, record);
      ipa = oa = w.oa;
      sizeShift = w.sizeShift;
      const p1 = (w.r ? ACCESS_READ : 0) | (w.w ? ACCESS_WRITE : 0) | (w.x ? ACCESS_EXEC : 0);
      // The entry holds the permissions for the requester's privilege; the other one misses.
      permP = req.priv ? p1 : 0;
      permU = req.priv ? 0 : p1;
    }
    if (ste.s2) {
      const wc = this.#wc;
      if (wc === null) walk(this.#mem, ste.s2cfg, ipa, write, exec, true, null, true, w);
      else {
        const s2Tag = tlbTag(el2, el2 ? 0 : ste.vmid, S2_ONLY_ASID);
        walk(this.#mem, ste.s2cfg, ipa, write, exec, true, null, true, w, wc, s2Tag);
        this.#noteWalkCache(w, ste, null, ipa, s2Tag);
      }
      this.counters.walkReads += w.reads;
      if (w.fault !== WALK_OK) {
        w.ipa = ipa;
        return this.#walkFault(req, out, ste, cd, record);
      }
      oa = w.oa;
      if (w.sizeShift < sizeShift) sizeShift = w.sizeShift;
      const p2 = (w.r ? ACCESS_READ : 0) | (w.w ? ACCESS_WRITE : 0) | (w.x ? ACCESS_EXEC : 0);
      permP &= p2;
      permU &= p2;
    }
    // Aligned bases without fmod: floor(x * 2^-s) * 2^s.
    const span = POW2[sizeShift];
    const inv = INV_POW2[sizeShift];
    const va = Math.floor(req.addr * inv) * span;
    const te = this.#tlb.recycled();
    te.va = va;
    te.pa = oa - (req.addr - va);
    te.ipa = Math.floor(ipa * inv) * span;
    te.sizeShift = sizeShift;
    te.permP = permP;
    te.permU = permU;
    te.nested = cd !== null && ste.s2;
    this.#tlb.insert(tag, te);
    this.#ok(out, oa, req.priv ? permP : permU, sizeShift);
  }

  #atsPath(req: DmaRequest, out: TranslateResult, ste: SteConfig, pri: boolean): void {
    const key = atcTag(req.rid, req.pasid);
    const page = Math.floor(req.addr * INV_POW2[12]) * 4096;
    const e = this.#atc.lookup(key, req.addr);
    if (e !== undefined) {
      const perm = req.priv ? e.permP : e.permU;
      if (permits(perm, req.access)) {
        this.counters.atcHits++;
        if (this.checking) this.#checkAtc(req, ste, e);
        return this.#ok(out, e.pa + (req.addr - e.va), perm, e.sizeShift);
      }
    }
    this.counters.atcMisses++;
    // An outstanding page request for this page: wait for its response.
    for (let i = 0; i < this.#pageReqs.length; i++) {
      const pr = this.#pageReqs[i];
      if (pr.sid !== req.rid || pr.ssid !== req.pasid || pr.page !== page) continue;
      if (pr.state < 0) return this.#pending(out, "PRI_PENDING");
      this.#pageReqs.splice(i, 1);
      if (pr.state !== PRI_RESP.SUCC) {
        return this.#abort(out, pr.state === PRI_RESP.DENY ? "PRI_RESP_DENY" : "PRI_RESP_FAIL", 0);
      }
      break;
    }
    // Translation request (faults are not recorded; they come back in the completion).
    this.#translateUntranslated(req, out, ste, !pri);
    if (out.ok) {
      const sh = this.#okShift;
      const base = Math.floor(req.addr * INV_POW2[sh]) * POW2[sh];
      const e = this.#atc.recycled();
      e.va = base;
      e.pa = out.pa - (req.addr - base);
      e.ipa = 0;
      e.sizeShift = sh;
      e.permP = out.perm;
      e.permU = out.perm;
      e.nested = false;
      this.#atc.insert(key, e);
      return;
    }
    if (!pri || out.faultCode < EVT.F_TRANSLATION || out.faultCode > EVT.F_PERMISSION) return;
    // Page request.
    const prg = this.#nextPrg.get(req.rid) ?? 0;
    this.#nextPrg.set(req.rid, (prg + 1) & 0x1ff);
    const rec = this.#ev;
    for (let i = 0; i < 8; i++) rec[i] = 0; // (TypedArray.fill is a runtime call)
    rec[0] = req.rid;
    const ssv = req.pasid !== NO_PASID;
    rec[1] = ((ssv ? req.pasid : 0) & 0xfffff) | (req.priv ? 1 << 26 : 0) |
      (req.access & ACCESS_EXEC ? 1 << 27 : 0) |
      (req.access & ACCESS_READ || !(req.access & ACCESS_WRITE) ? 1 << 28 : 0) |
      (req.access & ACCESS_WRITE ? 1 << 29 : 0) | (1 << 30) | (ssv ? 1 << 31 : 0);
    rec[1] >>>= 0;
    rec[2] = (prg | page) >>> 0; // page bits 31:12 (| takes them modulo 2^32)
    rec[3] = Math.floor(page / TWO32) >>> 0;
    if (this.#writePri(rec)) {
      this.counters.pageRequests++;
      this.#pageReqs.push({ sid: req.rid, ssid: req.pasid, page, prg, state: -1 });
      if (this.#m.trace.observed) {
        this.#m.trace.emit(this.name, "smmuv3_page_request", {
          sid: req.rid,
          ssid: req.pasid,
          addr: page,
          prg,
        });
      }
      return this.#pending(out, "PRI_PENDING");
    }
  }

  #walkFault(
    req: DmaRequest,
    out: TranslateResult,
    ste: SteConfig,
    cd: CdConfig | null,
    record: boolean,
  ): void {
    const w = this.#w;
    const s2 = w.faultStage === 2;
    const cls = w.faultOnTableFetch ? EVT_CLASS.TTD : EVT_CLASS.IN;
    const code = w.fault;
    // Stall model.
    const model = this.features.stall;
    const stallCfg = s2 ? ste.s2s : cd !== null && cd.stall && !ste.s1stalld;
    const stallable = code >= EVT.F_TRANSLATION && code <= EVT.F_PERMISSION;
    const stall = record && stallable && model !== "terminate" && (model === "force" || stallCfg);
    const rec = record && (stall || (s2 ? ste.s2r : cd === null || cd.record));
    if (stall) {
      const page = Math.floor(req.addr * INV_POW2[12]) * 4096;
      const stag = this.#nextStag;
      this.#nextStag = (this.#nextStag + 1) & 0xffff || 1;
      this.#stalls.push({ sid: req.rid, ssid: req.pasid, page, stag, state: 0 });
      this.counters.stalls++;
      this.#fillEvent(req, code, cls, w.ipa, s2, stag, true);
      this.#writeEvent(this.#ev);
      this.counters.faults++;
      return this.#pending(out, "STALLED");
    }
    this.#event(req, out, code, cls, w.ipa, s2, !rec);
  }

  #fillEvent(
    req: DmaRequest,
    id: number,
    cls: number,
    ipa: number,
    s2: boolean,
    stag: number,
    stall: boolean,
  ): void {
    const ev = this.#ev;
    for (let i = 0; i < 8; i++) ev[i] = 0; // (TypedArray.fill is a runtime call)
    const ssv = req.pasid !== NO_PASID;
    ev[0] = (id | (ssv ? 0x800 : 0) | (((ssv ? req.pasid : 0) & 0xfffff) << 12)) >>> 0;
    ev[1] = req.rid >>> 0;
    if (
      id >= EVT.F_TRANSLATION && id <= EVT.F_PERMISSION || id === EVT.F_BAD_ATS_TREQ ||
      id === EVT.F_WALK_EABT
    ) {
      ev[2] = (stag | (stall ? 0x80000000 : 0)) >>> 0;
      ev[3] = ((req.priv ? 1 << 1 : 0) | (req.access & ACCESS_EXEC ? 1 << 2 : 0) |
        (req.access & ACCESS_WRITE ? 0 : 1 << 3) | (s2 ? 1 << 7 : 0) | (cls << 8)) >>> 0;
      ev[4] = req.addr >>> 0;
      ev[5] = Math.floor(req.addr * INV_TWO32);
      if (s2) {
        ev[6] = (ipa & 0xfffff000) >>> 0;
        ev[7] = Math.floor(ipa * INV_TWO32) & 0xfffff;
      }
    } else if (id === EVT.F_STE_FETCH || id === EVT.F_CD_FETCH) {
      // FetchAddr: bits 51:3 of the address whose fetch failed.
      ev[6] = (this.#fetchAddr & 0xfffffff8) >>> 0;
      ev[7] = Math.floor(this.#fetchAddr * INV_TWO32) & 0xfffff;
    }
  }

  /** Remember the address of a failed STE/CD fetch for the event record. */
  #fetchFault(id: number, addr: number): number {
    this.#fetchAddr = addr;
    return id;
  }

  /** Fault the request with event `id` (recorded unless `silent`). */
  #event(
    req: DmaRequest,
    out: TranslateResult,
    id: number,
    cls: number,
    ipa: number,
    s2: boolean,
    silent: boolean,
  ): void {
    this.counters.faults++;
    if (!silent) {
      this.#fillEvent(req, id, cls, ipa, s2, 0, false);
      this.#writeEvent(this.#ev);
    }
    out.ok = false;
    out.pa = 0;
    out.perm = 0;
    out.span = 0;
    out.fault = EVT_NAME[id] ?? `EVT_0x${id.toString(16)}`;
    out.faultCode = id;
  }

  #abort(out: TranslateResult, why: string, code: number): void {
    this.counters.aborts++;
    out.ok = false;
    out.pa = 0;
    out.perm = 0;
    out.span = 0;
    out.fault = why;
    out.faultCode = code;
  }

  #pending(out: TranslateResult, why: string): void {
    out.ok = false;
    out.pending = true;
    out.pa = 0;
    out.perm = 0;
    out.span = 0;
    out.fault = why;
    out.faultCode = 0;
  }

  #bypass(req: DmaRequest, out: TranslateResult): void {
    this.counters.bypass++;
    this.#ok(out, req.addr, ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC, 12);
  }

  #ok(out: TranslateResult, pa: number, perm: number, sizeShift: number): void {
    out.ok = true;
    out.pa = pa;
    out.perm = perm;
    const sh = sizeShift > 52 ? 52 : sizeShift;
    this.#okShift = sh;
    out.span = POW2[sh];
  }

  // -------------------------------------------------------------------------
  // Checking mode

  #report(cache: string, sid: number, ssid: number, addr: number, detail: string): void {
    this.counters.missedInvalidations++;
    this.missed.push({ cache, sid, ssid, addr, detail });
    if (this.#m.trace.observed) {
      this.#m.trace.emit(this.name, "smmuv3_missed_invalidation", {
        cache,
        sid,
        ssid,
        addr,
        detail,
      });
    }
  }

  #checkSte(sid: number, ste: SteConfig): void {
    const sc = this.#scratch;
    const e = this.#fetchSte(sid, sc);
    if (e !== 0 || !sameWords(sc.ste.words, ste.words)) {
      this.#report(
        "STE",
        sid,
        -1,
        0,
        e !== 0 ? `memory STE now gives ${EVT_NAME[e]}` : "STE words differ from memory",
      );
    }
  }

  #checkCd(sid: number, ssid: number, ste: SteConfig, cd: CdConfig): void {
    const sc = this.#scratch;
    this.#fresh = true;
    const e = this.#fetchCd(ste, ssid, sc);
    this.#fresh = false;
    if (e !== 0 || !sameWords(sc.cd.words, cd.words)) {
      this.#report(
        "CD",
        sid,
        ssid,
        0,
        e !== 0 ? `memory CD now gives event ${Math.abs(e)}` : "CD words differ from memory",
      );
    }
  }

  /**
   * Count a walk's walk-cache hit or miss (stage 1 when `cd` is given) and,
   * in checking mode, compare a hit with the table descriptor in memory.
   */
  #noteWalkCache(w: WalkOut, ste: SteConfig, cd: CdConfig | null, addr: number, tag: number): void {
    const s1 = cd !== null;
    if (w.wcLevel < 0) {
      if (s1) this.counters.walkCacheS1Misses++;
      else this.counters.walkCacheS2Misses++;
      return;
    }
    if (s1) this.counters.walkCacheS1Hits++;
    else this.counters.walkCacheS2Hits++;
    if (this.checking) this.#checkWalkCache(w.wcLevel, w.wcTable, ste, cd, addr, tag);
  }

  #checkWalkCache(
    level: number,
    cached: number,
    ste: SteConfig,
    cd: CdConfig | null,
    addr: number,
    tag: number,
  ): void {
    const cfg = cd !== null ? cd.cfg : ste.s2cfg;
    const wasFresh = this.#fresh;
    this.#fresh = true;
    const fresh = tableAt(
      this.#mem,
      cfg,
      addr,
      level,
      cd !== null && ste.s2 ? this.#s2fetch : null,
      this.#wc2,
    );
    this.#fresh = wasFresh;
    if (fresh === cached) return;
    const shift = levelShift(level, cfg.granShift);
    const span = POW2[shift];
    const base = Math.floor(addr * INV_POW2[shift]) * span;
    const hex = (v: number) => "0x" + v.toString(16);
    const el2 = ste.el2;
    const vmid = el2 ? 0 : ste.vmid;
    let ctx: string, missing: string;
    if (cd === null) {
      ctx = `stage 2, VMID ${vmid}`;
      missing = `TLBI_S2_IPA with Leaf=0 (and TTL 0 or ${level}) covering IPA ${
        hex(addr)
      }, or TLBI_S12_VMALL of VMID ${vmid}`;
    } else {
      const asid = tag % 131072;
      ctx = el2 ? `stage 1 EL2, ASID ${asid}` : `stage 1, VMID ${vmid} ASID ${asid}`;
      const op = el2 ? "TLBI_EL2_VA" : "TLBI_NH_VA";
      missing = `${op} with Leaf=0 (and TTL 0 or ${level}) covering ${hex(addr)}, or ${
        el2 ? "TLBI_EL2_ASID" : "TLBI_NH_ASID"
      } of ASID ${asid}`;
    }
    this.#report(
      "WALK",
      this.#curSid,
      this.#curSsid,
      addr,
      `walk cache (${ctx}) level ${level} entry [${hex(base)}, ${hex(base + span)}) gives table ${
        hex(cached)
      }, memory ${
        fresh < 0 ? "has no table descriptor there" : "has table " + hex(fresh)
      }; missing invalidation: ${missing}`,
    );
  }

  #freshWalk(req: DmaRequest, ste: SteConfig, cd: CdConfig | null, out: WalkOut): number {
    // Walk without updating memory and without the walk cache; returns output address or -1.
    this.#fresh = true;
    try {
      return this.#freshWalkInner(req, ste, cd, out);
    } finally {
      this.#fresh = false;
    }
  }

  #freshWalkInner(req: DmaRequest, ste: SteConfig, cd: CdConfig | null, out: WalkOut): number {
    let a = req.addr;
    let sizeShift = 64;
    if (cd !== null) {
      if (cd.epd0) return -1;
      walk(this.#mem, cd.cfg, a, false, false, true, ste.s2 ? this.#s2fetch : null, false, out);
      if (out.fault !== WALK_OK) return -1;
      a = out.oa;
      sizeShift = out.sizeShift;
    }
    if (ste.s2) {
      walk(this.#mem, ste.s2cfg, a, false, false, true, null, false, out);
      if (out.fault !== WALK_OK) return -1;
      a = out.oa;
      if (out.sizeShift < sizeShift) sizeShift = out.sizeShift;
    }
    out.sizeShift = sizeShift;
    return a;
  }

  #checkTlb(req: DmaRequest, ste: SteConfig, cd: CdConfig | null, e: TlbEntry): void {
    const w = this.#wcOut;
    const pa = this.#freshWalk(req, ste, cd, w);
    const cached = e.pa + (req.addr - e.va);
    if (pa !== cached) {
      this.#report(
        "TLB",
        req.rid,
        req.pasid,
        req.addr,
        pa < 0
          ? `TLB maps to 0x${cached.toString(16)}, memory has no translation`
          : `TLB maps to 0x${cached.toString(16)}, memory to 0x${pa.toString(16)}`,
      );
    }
  }

  #checkAtc(req: DmaRequest, ste: SteConfig, e: TlbEntry): void {
    // The ATC is checked against a full walk of the current configuration.
    const cd = ste.s1 && ste.cds !== null ? cdGet(ste.cds, req.pasid) : null;
    if (ste.s1 && cd === null) return;
    const pa = this.#freshWalk(req, ste, cd, this.#wcOut);
    const cached = e.pa + (req.addr - e.va);
    if (pa !== cached) {
      this.#report(
        "ATC",
        req.rid,
        req.pasid,
        req.addr,
        `ATC maps to 0x${cached.toString(16)}, memory to ${
          pa < 0 ? "nothing" : "0x" + pa.toString(16)
        }`,
      );
    }
  }

  // -------------------------------------------------------------------------
  // Introspection for tests and reports (not visible to drivers).

  /** Number of TLB entries. */
  get tlbEntries(): number {
    return this.#tlb.size;
  }

  /** The walk cache's entries (empty with walk_cache=false). */
  get walkCacheEntries(): WalkCacheEntry[] {
    return this.#wc === null ? [] : this.#wc.entries();
  }

  /** Outstanding stalls as {sid, stag}. */
  get stalledTransactions(): { sid: number; ssid: number; stag: number; addr: number }[] {
    return this.#stalls.filter((s) => s.state === 0).map((s) => ({
      sid: s.sid,
      ssid: s.ssid,
      stag: s.stag,
      addr: s.page,
    }));
  }

  /** Outstanding page requests. */
  get pendingPageRequests(): { sid: number; ssid: number; prg: number; addr: number }[] {
    return this.#pageReqs.filter((p) => p.state < 0).map((p) => ({
      sid: p.sid,
      ssid: p.ssid,
      prg: p.prg,
      addr: p.page,
    }));
  }
}

interface TranslateScratch {
  steWords: Uint32Array;
  cdWords: Uint32Array;
  ste: SteConfig;
  cd: CdConfig;
}

/** Queue PROD/CONS index+wrap masks by log2 size (no Math.pow per command). */
const Q_WRAP_MASK: Uint32Array = Uint32Array.from({ length: 32 }, (_, i) => 2 ** (i + 1) - 1);
/** Queue index masks by log2 size. */
const Q_IDX_MASK: Uint32Array = Uint32Array.from({ length: 32 }, (_, i) => 2 ** i - 1);

/** 2^n for n in 0..52 (spans without Math.pow on the hot path). */
const POW2: Float64Array = Float64Array.from({ length: 53 }, (_, i) => 2 ** i);
/** 2^-n for n in 0..52: `Math.floor(a * INV_POW2[n])` is `a >> n` on a double, exactly. */
const INV_POW2: Float64Array = Float64Array.from({ length: 53 }, (_, i) => 2 ** -i);

/**
 * Count a command of opcode `op` under `cmd_<NAME>` (one named increment per
 * opcode, literal cases as in {@link OP}: a computed key on the 48-field
 * counter set cost as much as executing the command).
 */
function countOpcode(c: Counters, op: number): void {
  switch (op) {
    case 0x01: // PREFETCH_CONFIG
      c.cmd_PREFETCH_CONFIG++;
      return;
    case 0x02: // PREFETCH_ADDR
      c.cmd_PREFETCH_ADDR++;
      return;
    case 0x03: // CFGI_STE
      c.cmd_CFGI_STE++;
      return;
    case 0x04: // CFGI_STE_RANGE
      c.cmd_CFGI_STE_RANGE++;
      return;
    case 0x05: // CFGI_CD
      c.cmd_CFGI_CD++;
      return;
    case 0x06: // CFGI_CD_ALL
      c.cmd_CFGI_CD_ALL++;
      return;
    case 0x07: // CFGI_VMS_PIDM
      c.cmd_CFGI_VMS_PIDM++;
      return;
    case 0x10: // TLBI_NH_ALL
      c.cmd_TLBI_NH_ALL++;
      return;
    case 0x11: // TLBI_NH_ASID
      c.cmd_TLBI_NH_ASID++;
      return;
    case 0x12: // TLBI_NH_VA
      c.cmd_TLBI_NH_VA++;
      return;
    case 0x13: // TLBI_NH_VAA
      c.cmd_TLBI_NH_VAA++;
      return;
    case 0x18: // TLBI_EL3_ALL
      c.cmd_TLBI_EL3_ALL++;
      return;
    case 0x1a: // TLBI_EL3_VA
      c.cmd_TLBI_EL3_VA++;
      return;
    case 0x20: // TLBI_EL2_ALL
      c.cmd_TLBI_EL2_ALL++;
      return;
    case 0x21: // TLBI_EL2_ASID
      c.cmd_TLBI_EL2_ASID++;
      return;
    case 0x22: // TLBI_EL2_VA
      c.cmd_TLBI_EL2_VA++;
      return;
    case 0x23: // TLBI_EL2_VAA
      c.cmd_TLBI_EL2_VAA++;
      return;
    case 0x28: // TLBI_S12_VMALL
      c.cmd_TLBI_S12_VMALL++;
      return;
    case 0x2a: // TLBI_S2_IPA
      c.cmd_TLBI_S2_IPA++;
      return;
    case 0x30: // TLBI_NSNH_ALL
      c.cmd_TLBI_NSNH_ALL++;
      return;
    case 0x40: // ATC_INV
      c.cmd_ATC_INV++;
      return;
    case 0x41: // PRI_RESP
      c.cmd_PRI_RESP++;
      return;
    case 0x44: // RESUME
      c.cmd_RESUME++;
      return;
    case 0x45: // STALL_TERM
      c.cmd_STALL_TERM++;
      return;
    case 0x46: // CMD_SYNC
      c.cmd_CMD_SYNC++;
      return;
  }
}

function newSte(): SteConfig {
  return {
    words: new Uint32Array(16),
    config: 0,
    s1: false,
    s2: false,
    s1fmt: 0,
    ctxPtr: 0,
    cdMax: 0,
    s1dss: 0,
    s1stalld: false,
    eats: 0,
    el2: false,
    vmid: 0,
    s2cfg: newWalkCfg(),
    s2s: false,
    s2r: false,
    cds: null,
  };
}

function newCd(): CdConfig {
  return {
    words: new Uint32Array(16),
    asid: 0,
    epd0: false,
    stall: false,
    record: false,
    cfg: newWalkCfg(),
  };
}

function newTranslateScratch(): TranslateScratch {
  return {
    steWords: new Uint32Array(16),
    cdWords: new Uint32Array(16),
    ste: newSte(),
    cd: newCd(),
  };
}

function cloneSte(s: SteConfig): SteConfig {
  return { ...s, words: s.words.slice(), s2cfg: { ...s.s2cfg } };
}

/** The cached CD of `ssid` (NO_PASID and 0: CD 0), or null. */
function cdGet(set: CdCacheSet, ssid: number): CdConfig | null {
  return ssid <= 0 ? set.cd0 : set.bySsid.get(ssid) ?? null;
}

/** Cache `cd` as the CD of `ssid` (NO_PASID and 0: CD 0). */
function cdSet(set: CdCacheSet, ssid: number, cd: CdConfig): void {
  if (ssid <= 0) set.cd0 = cd;
  else set.bySsid.set(ssid, cd);
}

/** Drop the cached CD of `ssid` (NO_PASID and 0: CD 0). */
function cdDelete(set: CdCacheSet, ssid: number): void {
  if (ssid <= 0) set.cd0 = null;
  else set.bySsid.delete(ssid);
}

function cloneCd(c: CdConfig): CdConfig {
  return { ...c, words: c.words.slice(), cfg: { ...c.cfg } };
}

function sameWords(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function permits(perm: number, access: number): boolean {
  if (access & ACCESS_WRITE && !(perm & ACCESS_WRITE)) return false;
  if (access & ACCESS_EXEC && !(perm & ACCESS_EXEC)) return false;
  if (access & ACCESS_READ && !(perm & ACCESS_READ)) return false;
  return true;
}
