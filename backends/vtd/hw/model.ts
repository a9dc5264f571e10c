/**
 * @module
 * The VT-d hardware model: register file, legacy and scalable-mode
 * translation (first stage, second stage, nested, pass-through), context,
 * PASID, IOTLB and device-TLB caches, queued invalidation, primary fault
 * logging, the page request queue and checking mode. It sees only physical
 * memory and its own registers (DESIGN.md, "the two sides of the bus").
 */

import {
  ACCESS_EXEC,
  ACCESS_READ,
  ACCESS_WRITE,
  type Counters,
  type DmaRequest,
  IommuError,
  type IommuHardware,
  type Machine,
  type MmioRegion,
  NO_PASID,
  type PhysMem,
  type RegisterSpec,
  type TranslateResult,
} from "@iommu-lab/core";
import { faultName } from "./faults.ts";
import {
  INFO_CLS_SHIFT,
  INFO_FAULT_SHIFT,
  INFO_KIND_SHIFT,
  INFO_PERM_MASK,
  KIND_FS,
  KIND_NESTED,
  KIND_SS,
  POW2,
  SIZES,
} from "./tlb.ts";
import { cacheTag, NO_PASID_KEY, setOf, tagPasid } from "./assoc.ts";
import {
  type CacheSizes,
  type CtxEntry,
  newCtxEntry,
  newPasidEntry,
  type PasidCacheEntry,
  VtdCaches,
} from "./caches.ts";
import { encodeCap, encodeEcap, type VtdOptions } from "./options.ts";
import {
  ECTL_IM,
  ECTL_IP,
  FRO_OFFSET,
  FSTS,
  FSTS_EVENT_BITS,
  GCMD,
  ICS_IWC,
  IQA_DW,
  IRO_OFFSET,
  PRS_PPR,
  PRS_PRO,
  REG,
  RTADDR_TTM_ABORT,
  RTADDR_TTM_SCALABLE,
  VTD_MMIO_SIZE,
  vtdRegisterSpecs,
} from "./registers.ts";
import {
  PGTT_FL_ONLY,
  PGTT_NESTED,
  PGTT_PT,
  PGTT_SL_ONLY,
  QI_CC_DESC,
  QI_DEIOTLB_DESC,
  QI_DIOTLB_DESC,
  QI_EIOTLB_DESC,
  QI_IEC_DESC,
  QI_IOTLB_DESC,
  QI_IWD_DESC,
  QI_PC_DESC,
  QI_PGRP_RESP_DESC,
  QI_TYPE,
} from "./structures.ts";

const TWO32 = 4294967296;
/** Page-memo slots of structure fetches (walk levels use 1..5 and 9..13). */
const SLOT_ROOT = 16,
  SLOT_CONTEXT = 17,
  SLOT_PASID_DIR = 18,
  SLOT_PASID_TABLE = 19,
  SLOT_QUEUE = 20;
/** Page-memo slot of checking mode's comparison of a cached entry with memory. */
const SLOT_CHECK = 21;
/** Page-memo slot of the invalidation wait descriptor's status write. */
const SLOT_STATUS = 22;
/** Number of page-memo slots. */
const SLOTS = 23;
/** Entries of the direct-mapped memo of table pages behind the slots (a power of two). */
const PAGE_MEMO = 1024;
/**
 * Index into a level-`l` table (1..5) of the address whose low and high
 * 32-bit halves are `lo` and `hi`: bits 12+9(l-1) .. 20+9(l-1), without a
 * floating-point modulo.
 */
function levelIndex(lo: number, hi: number, l: number): number {
  switch (l) {
    case 1:
      return (lo >>> 12) & 511;
    case 2:
      return (lo >>> 21) & 511;
    case 3:
      return ((lo >>> 30) | (hi << 2)) & 511;
    case 4:
      return (hi >>> 7) & 511;
    default:
      return (hi >>> 16) & 511;
  }
}
/** Bytes mapped by one entry of a level-`l` table (index l, 1..5); [6] bounds a 5-level walk. */
const LEVEL_SIZE: readonly number[] = [0, 2 ** 12, 2 ** 21, 2 ** 30, 2 ** 39, 2 ** 48, 2 ** 57];

/** The descriptor tables whose reserved bits are checked, in the index order `#rsv` takes. */
const RSV_TABLES = [
  QI_CC_DESC,
  QI_IOTLB_DESC,
  QI_DIOTLB_DESC,
  QI_IEC_DESC,
  QI_IWD_DESC,
  QI_EIOTLB_DESC,
  QI_PC_DESC,
  QI_DEIOTLB_DESC,
  QI_PGRP_RESP_DESC,
];

/** Reserved masks of the first four words of every RSV_TABLES entry, decoded once. */
function rsvMaskTable(): Uint32Array {
  const out = new Uint32Array(RSV_TABLES.length * 4);
  for (let t = 0; t < RSV_TABLES.length; t++) {
    const m = RSV_TABLES[t].reservedMask();
    for (let i = 0; i < 4; i++) out[t * 4 + i] = m[i];
  }
  return out;
}

/** An injected invalid device-TLB invalidation completion (see injectBadCompletion). */
interface BadCompletion {
  /** Requester ID the completion message carries. */
  sid: number;
  /** The device also sends the valid completion. */
  alsoValid: boolean;
}

/** A primary fault as reported to the fault-event hook. */
export interface VtdFault {
  /** Requester ID. */
  rid: number;
  /** PASID, or -1. */
  pasid: number;
  /** Faulting address. */
  addr: number;
  /** Write request. */
  write: boolean;
  /** Fault reason code. */
  reason: number;
  /** Fault reason name. */
  name: string;
  /** True when recorded in a fault recording register (not suppressed by FPD/overflow). */
  recorded: boolean;
}

/** A stale cache entry found in checking mode. */
export interface VtdStaleReport {
  /** Which cache ("context-cache", "pasid-cache", "iotlb", "device-tlb"). */
  cache: string;
  /** Which entry. */
  entry: string;
  /** The invalidation that was missing. */
  missing: string;
}

/** The VT-d hardware model. */
export class VtdHardware implements IommuHardware, MmioRegion {
  /** Instance name. */
  readonly name: string;
  /** Register window size. */
  readonly size: number = VTD_MMIO_SIZE;
  /** Register window (itself). */
  readonly mmio: MmioRegion;
  /** Window base. */
  readonly mmioBase: number;
  /** Register names. */
  readonly registers: readonly RegisterSpec[];
  /** Counters. */
  readonly counters: Counters;
  /** Checking mode. */
  checking: boolean;
  /** Options. */
  readonly opts: VtdOptions;
  /** Called for every primary fault (recorded or not). */
  faultHook: ((f: VtdFault) => void) | null = null;
  /** Stale entries found in checking mode. */
  readonly staleReports: VtdStaleReport[] = [];
  /** Page group responses received: key `rid:prgi` -> response code. */
  readonly pageResponses: Map<string, number> = new Map();
  /** Outstanding page request groups (`rid:prgi`). */
  readonly outstandingPageRequests: Set<string> = new Set();
  /** Page request groups answered with a failure: `rid:prgi` -> `rid:pasid:page`. */
  readonly #prgPage = new Map<string, string>();
  /** Pages whose page request was refused: the device's retry fails instead of asking again. */
  readonly #denied = new Set<string>();

  readonly #m: Machine;
  readonly #mem: PhysMem;
  readonly #regs = new Uint32Array(VTD_MMIO_SIZE / 4);
  readonly #capLo: number;
  readonly #capHi: number;
  readonly #ecapLo: number;
  readonly #ecapHi: number;
  #rta = 0;
  #ttm = 0;
  #te = false;
  #qie = false;
  #nextFr = 0;
  /** The caches (context, PASID, IOTLB, paging-structure, device TLB). */
  readonly #c: VtdCaches;
  /** The context entry a fresh walk (checking mode) decodes into (never cached). */
  readonly #freshCtx: CtxEntry = newCtxEntry();
  /** The PASID entry a fresh walk decodes into (never cached). */
  readonly #freshPe: PasidCacheEntry = newPasidEntry();
  readonly #atsTimeout = new Set<number>();
  /** Devices whose next device-TLB invalidation is answered with an invalid completion. */
  readonly #badCompletion = new Map<number, BadCompletion>();
  /** SID of the device-TLB invalidation that timed out (for IQERCD.ITESID). */
  #iteSid = 0;
  /** Tag the next top-level walk may use the paging-structure cache with (-1 = none). */
  #pscTag = -1;
  /** The DID of #pscTag (set with it). */
  #pscDid = 0;
  #pscUsed = false;
  #prgi = 0;
  #irqFault: string;
  #irqInv: string;
  #irqPrq: string;
  readonly #w = new Uint32Array(16);
  /** Scratch words of a context or PASID entry being fetched. */
  readonly #fetch = new Uint32Array(16);
  /** Fault recording registers saved around a checking-mode fresh walk. */
  readonly #saveFr: Uint32Array;
  readonly #dw = new Uint32Array(8);
  // walk scratch results
  #wPa = 0;
  #wPerm = 0;
  #wSize = 0;
  /** High-word limit of a table address: bits 51:HAW (host address width = memory width) are reserved. */
  readonly #hawHi: number;
  /** The last walk failed on a not-present entry. */
  #wNotPresent = false;

  /** Build the model; it maps itself on `machine.bus` at `opts.mmioBase`. */
  constructor(machine: Machine, opts: VtdOptions) {
    this.#m = machine;
    this.#mem = machine.mem;
    this.opts = opts;
    this.name = opts.name;
    this.mmio = this;
    this.mmioBase = opts.mmioBase;
    this.checking = opts.checking;
    this.registers = vtdRegisterSpecs(opts.nfr);
    [this.#capLo, this.#capHi] = encodeCap(opts);
    [this.#ecapLo, this.#ecapHi] = encodeEcap(opts);
    this.#saveFr = new Uint32Array(4 * opts.nfr);
    this.#hawHi = machine.mem.sizeBits > 32 ? 2 ** (machine.mem.sizeBits - 32) : 1;
    this.#irqFault = `${this.name}:fault`;
    this.#irqInv = `${this.name}:inv`;
    this.#irqPrq = `${this.name}:prq`;
    this.counters = machine.trace.counters(this.name, {
      translations: 0,
      faults: 0,
      faultsRecorded: 0,
      ctxHits: 0,
      pscHits: 0,
      pscMisses: 0,
      ctxMisses: 0,
      pasidHits: 0,
      pasidMisses: 0,
      iotlbHits: 0,
      iotlbMisses: 0,
      devtlbHits: 0,
      devtlbMisses: 0,
      walkReads: 0,
      qiDescriptors: 0,
      qiCc: 0,
      qiIotlb: 0,
      qiDevIotlb: 0,
      qiIec: 0,
      qiWait: 0,
      qiPiotlb: 0,
      qiPc: 0,
      qiDevPiotlb: 0,
      qiPgrpResp: 0,
      qiErrors: 0,
      qiIce: 0,
      pageRequests: 0,
      pageResponses: 0,
      staleHits: 0,
      evictions: 0,
      ctxEvictions: 0,
      pasidEvictions: 0,
    });
    this.#c = new VtdCaches(opts);
    this.#regs[REG.VER >> 2] = 0x30;
    this.#regs[REG.FECTL >> 2] = ECTL_IM;
    this.#regs[REG.IECTL >> 2] = ECTL_IM;
    this.#regs[REG.PECTL >> 2] = ECTL_IM;
    machine.bus.map(opts.mmioBase, this);
  }

  /** Make `rid`'s next device-TLB invalidation time out (ITE), for tests. */
  injectAtsTimeout(rid: number): void {
    this.#atsTimeout.add(rid);
  }

  /**
   * Make `rid` answer its next device-TLB invalidation with an invalid
   * Invalidation Completion message, for tests: `"itag"` carries an ITag
   * no invalidation is outstanding under (requester ID `rid`), `"sid"` a
   * requester ID other than the one invalidated (`opts.sid`, default
   * `rid ^ 1`). The device does invalidate its ATC. The hardware matches
   * the message to nothing and reports an Invalidation Completion Error
   * (FSTS.ICE, IQERCD.ICESID). The request it sent is then still
   * outstanding, so it times out (ITE), unless `opts.alsoValid`: the
   * device also sends the right completion (the bad one is a stray extra),
   * and the queue goes on.
   */
  injectBadCompletion(
    rid: number,
    kind: "itag" | "sid",
    opts: { sid?: number; alsoValid?: boolean } = {},
  ): void {
    const sid = kind === "sid" ? (opts.sid ?? (rid ^ 1)) & 0xffff : rid;
    if (kind === "sid" && sid === rid) {
      throw new IommuError(
        "EINVAL",
        "inject_bad_completion",
        `a bad source-id completion needs a SID other than the device's 0x${rid.toString(16)}`,
      );
    }
    this.#badCompletion.set(rid, { sid, alsoValid: opts.alsoValid ?? false });
  }

  // -------------------------------------------------------------------------
  // Registers

  /** 32-bit register read. */
  read32(off: number): number {
    switch (off) {
      case REG.CAP:
        return this.#capLo;
      case REG.CAP + 4:
        return this.#capHi;
      case REG.ECAP:
        return this.#ecapLo;
      case REG.ECAP + 4:
        return this.#ecapHi;
      case REG.GCMD:
        return 0;
    }
    return this.#regs[off >> 2] >>> 0;
  }

  /** 32-bit register write with the specification's side effects. */
  write32(off: number, value: number): void {
    value >>>= 0;
    const i = off >> 2;
    switch (off) {
      case REG.VER:
      case REG.CAP:
      case REG.CAP + 4:
      case REG.ECAP:
      case REG.ECAP + 4:
      case REG.GSTS:
      case REG.IQH:
      case REG.IQH + 4:
      case REG.ICS + 0:
        if (off === REG.ICS) this.#regs[i] &= ~(value & ICS_IWC);
        return;
      case REG.GCMD:
        this.#gcmd(value);
        return;
      case REG.CCMD + 4:
        this.#regs[i] = value;
        if (value & 0x80000000) this.#registerCcmd();
        return;
      case IRO_OFFSET + 12:
        this.#regs[i] = value;
        if (value & 0x80000000) this.#registerIotlb();
        return;
      case REG.FSTS: {
        const w1c = value & (FSTS.PFO | FSTS.AFO | FSTS.IQE | FSTS.ICE | FSTS.ITE);
        const stopped = (this.#regs[i] & (FSTS.IQE | FSTS.ITE)) !== 0;
        this.#regs[i] &= ~w1c;
        // Clearing the last of IQE / ITE lets the queue fetch again (ICE never stops it).
        if (stopped && !(this.#regs[i] & (FSTS.IQE | FSTS.ITE))) this.#processQueue();
        return;
      }
      case REG.FECTL:
      case REG.IECTL:
      case REG.PECTL: {
        const wasPending = (this.#regs[i] & ECTL_IP) !== 0;
        this.#regs[i] = (value & ECTL_IM) | (this.#regs[i] & ECTL_IP);
        if (!(value & ECTL_IM) && wasPending) {
          this.#regs[i] &= ~ECTL_IP;
          this.#m.irq.raise(
            off === REG.FECTL ? this.#irqFault : off === REG.IECTL ? this.#irqInv : this.#irqPrq,
          );
        }
        return;
      }
      case REG.IQT:
        this.#regs[i] = value & 0x7fff0;
        this.#processQueue();
        return;
      case REG.IQA:
        this.#regs[i] = value;
        return;
      case REG.PQT:
      case REG.PQT + 4:
        return;
      case REG.PRS:
        this.#regs[i] &= ~(value & (PRS_PPR | PRS_PRO));
        return;
    }
    if (off >= FRO_OFFSET && off < FRO_OFFSET + 16 * this.opts.nfr) {
      // Only F (bit 127) is writable: write 1 to clear.
      if ((off & 15) === 12 && (value & 0x80000000)) {
        this.#regs[i] &= 0x7fffffff;
        this.#updatePpf();
      }
      return;
    }
    this.#regs[i] = value;
  }

  /** 64-bit read as halves. */
  read64(off: number, hiOut: Uint32Array): number {
    hiOut[0] = this.read32(off + 4);
    return this.read32(off);
  }

  /** 64-bit write: low half then high half. */
  write64(off: number, lo: number, hi: number): void {
    if (off === REG.IQT) {
      // As write32(IQT, lo) without its register switch: the tail, then fetch.
      this.#regs[(off + 4) >> 2] = 0;
      this.#regs[off >> 2] = (lo >>> 0) & 0x7fff0;
      this.#processQueue();
      return;
    }
    this.write32(off, lo);
    this.write32(off + 4, hi);
  }

  #gcmd(v: number): void {
    const g = REG.GSTS >> 2;
    let sts = this.#regs[g];
    if (v & GCMD.SRTP) {
      const lo = this.#regs[REG.RTADDR >> 2];
      const hi = this.#regs[(REG.RTADDR + 4) >> 2];
      this.#rta = (hi & 0xfffff) * TWO32 + ((lo & 0xfffff000) >>> 0);
      this.#ttm = (lo >>> 10) & 3;
      this.#c.gen++;
      sts |= GCMD.SRTP;
      if (this.#m.trace.observed) {
        this.#m.trace.emit(this.name, "vtd_reg_dmar_root", {
          addr: this.#rta,
          mode: this.#ttm,
        });
      }
    }
    if ((v & GCMD.TE) && !this.#te) {
      this.#te = true;
      sts |= GCMD.TE;
    } else if (!(v & GCMD.TE) && this.#te) {
      this.#te = false;
      sts &= ~GCMD.TE;
    }
    if ((v & GCMD.QIE) && !this.#qie && this.opts.qi) {
      this.#qie = true;
      sts |= GCMD.QIE;
      this.#regs[REG.IQH >> 2] = 0;
      this.#regs[(REG.IQH + 4) >> 2] = 0;
    } else if (!(v & GCMD.QIE) && this.#qie) {
      this.#qie = false;
      sts &= ~GCMD.QIE;
    }
    if (v & GCMD.IRE) sts |= GCMD.IRE;
    else sts &= ~GCMD.IRE;
    if (v & GCMD.SIRTP) sts |= GCMD.SIRTP;
    if (v & GCMD.SFL) sts |= GCMD.SFL;
    if (v & GCMD.CFI) sts |= GCMD.CFI;
    else sts &= ~GCMD.CFI;
    sts &= ~GCMD.WBF; // write-buffer flush completes at once
    this.#regs[g] = sts >>> 0;
  }

  /** Register-based context-cache invalidation (CCMD_REG). */
  #registerCcmd(): void {
    const lo = this.#regs[REG.CCMD >> 2];
    const hi = this.#regs[(REG.CCMD + 4) >> 2];
    const cirg = (hi >>> 29) & 3;
    this.#c.invContext(this.#ttm === RTADDR_TTM_SCALABLE, cirg, lo & 0xffff, lo >>> 16, hi & 3);
    // ICC clears, CAIG reports the granularity performed.
    this.#regs[(REG.CCMD + 4) >> 2] = (hi & 0x7fffffff & ~(3 << 27)) | (cirg << 27);
  }

  /** Register-based IOTLB invalidation (IVA_REG / IOTLB_REG). */
  #registerIotlb(): void {
    const ivaLo = this.#regs[IRO_OFFSET >> 2];
    const ivaHi = this.#regs[(IRO_OFFSET + 4) >> 2];
    const hi = this.#regs[(IRO_OFFSET + 12) >> 2];
    const iirg = (hi >>> 28) & 3;
    const did = hi & 0xffff;
    const addr = (ivaHi & 0xfffff) * TWO32 + ((ivaLo & 0xfffff000) >>> 0);
    this.#invIotlb(iirg, did, addr, ivaLo & 0x3f, (ivaLo >>> 6) & 1);
    this.#regs[(IRO_OFFSET + 12) >> 2] = (hi & 0x7fffffff & ~(3 << 25)) | (iirg << 25);
  }

  // -------------------------------------------------------------------------
  // Translation

  /** Translate a DMA request (never throws for bad tables: those are faults). */
  translate(req: DmaRequest, out: TranslateResult): void {
    try {
      this.#translate(req, out);
    } catch (e) {
      // A structure pointer beyond physical memory: the access fault of
      // whatever was being fetched, never an exception.
      if (!(e instanceof IommuError) || e.errno !== "EFAULT") throw e;
      this.#pscTag = -1;
      this.#fault(out, req, this.#accessCode, false, true);
    }
  }

  /** Fault reason for a failed memory access by the structure fetch in progress. */
  #accessCode = 0x38;
  // Memo of the last context/PASID cache lookup (see #translate).
  #memoRid = -1;
  #memoReqPasid = 0;
  #memoGen = -1;
  #memoCtx: CtxEntry | null = null;
  #memoPe: PasidCacheEntry | null = null;
  #memoPasid = 0;

  #translate(req: DmaRequest, out: TranslateResult): void {
    this.counters.translations++;
    out.pending = false;
    if (!this.#te) {
      out.ok = true;
      out.pa = req.addr;
      out.perm = ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC;
      out.span = 4096;
      out.fault = "";
      out.faultCode = 0;
      return;
    }
    const rid = req.rid;
    // Device TLB (ATS-translated requests): consulted first.
    const c = this.#c;
    const t = c.devtlbs[rid];
    if (t !== undefined) {
      const slot = t.live === 0
        ? -1
        : c.lookupDev(rid, req.pasid === NO_PASID ? NO_PASID_KEY : req.pasid, req.addr);
      const inf = slot >= 0 ? t.info[slot] : 0;
      if (slot >= 0 && ((inf & INFO_PERM_MASK) & req.access) === req.access) {
        t.touch(slot);
        this.counters.devtlbHits++;
        const iova = t.key[slot], pa = t.val[slot];
        if (this.checking) {
          const tk = t.tkey[slot] - t.epochBase;
          this.#checkTlbHit(
            "device-tlb",
            rid,
            tagPasid(Math.floor(tk / 4)),
            iova,
            pa,
            inf & INFO_PERM_MASK,
            (inf >>> INFO_KIND_SHIFT) & 3,
            req,
            rid,
          );
        }
        out.ok = true;
        out.pa = pa + (req.addr - iova);
        out.perm = inf & INFO_PERM_MASK;
        out.span = SIZES[(inf >>> INFO_CLS_SHIFT) & 3];
        out.fault = "";
        out.faultCode = 0;
        return;
      }
      this.counters.devtlbMisses++;
    }
    if (this.#ttm === RTADDR_TTM_ABORT || this.#ttm === 2) {
      this.#fault(out, req, 0x30, false, false);
      return;
    }
    if (
      rid === this.#memoRid && req.pasid === this.#memoReqPasid && this.#memoGen === this.#c.gen &&
      !this.checking
    ) {
      // Same requester as the last translation and no context/PASID cache
      // change since: the same cache hits, without the lookups.
      this.counters.ctxHits++;
      const mpe = this.#memoPe;
      if (mpe === null) this.#translateLegacy(this.#memoCtx!, req, out);
      else {
        this.counters.pasidHits++;
        this.#translateScalable(this.#memoCtx!, mpe, this.#memoPasid, req, out);
      }
      return;
    }
    this.#memoRid = -1;
    const sm = this.#ttm === RTADDR_TTM_SCALABLE;
    const ctx = this.#context(rid, sm, out, req, true);
    if (ctx === null) return;
    if (!sm) {
      this.#memo(rid, req.pasid, ctx, null, 0);
      this.#translateLegacy(ctx, req, out);
      return;
    }
    let pasid = req.pasid;
    if (pasid === NO_PASID) {
      pasid = this.opts.rps ? ctx.ridPasid : 0;
    } else {
      if (!ctx.paside) {
        this.#fault(out, req, 0x45, ctx.fpd, false);
        return;
      }
    }
    const pe = this.#pasidEntry(ctx, pasid, out, req, true);
    if (pe === null) return;
    this.#memo(rid, req.pasid, ctx, pe, pasid);
    this.#translateScalable(ctx, pe, pasid, req, out);
  }

  /** Remember the cached entries `rid`/`reqPasid` resolved to (valid while the cache generation holds). */
  #memo(
    rid: number,
    reqPasid: number,
    ctx: CtxEntry,
    pe: PasidCacheEntry | null,
    pasid: number,
  ): void {
    this.#memoRid = rid;
    this.#memoReqPasid = reqPasid;
    this.#memoGen = this.#c.gen;
    this.#memoCtx = ctx;
    this.#memoPe = pe;
    this.#memoPasid = pasid;
  }

  #translateLegacy(ctx: CtxEntry, req: DmaRequest, out: TranslateResult): void {
    if (req.pasid !== NO_PASID) {
      this.#fault(out, req, 0x31, ctx.fpd, false);
      return;
    }
    if (ctx.tt === 2) {
      this.#passThrough(req, out);
      return;
    }
    const tag = cacheTag(ctx.did, 0);
    if (this.#iotlbTry(tag, ctx.did, req, out, ctx.rid, ctx.fpd)) return;
    this.#wNotPresent = false;
    this.#pscTag = tag;
    this.#pscDid = ctx.did;
    this.#pscUsed = false;
    const code = this.#ssWalk(ctx.slptr, ctx.aw + 2, req.addr, req.access, false, false);
    if (code === 0 && this.#pscUsed && this.checking) this.#checkPsc(req, ctx.rid, ctx.did, -1, 0);
    if (code !== 0) {
      if (this.#pscUsed && this.checking) this.#checkPsc(req, ctx.rid, ctx.did, -1, code);
      if (this.#wNotPresent && this.opts.cm) {
        this.#fillNegative(tag, ctx.did, req.addr, KIND_SS, code);
      }
      this.#fault(out, req, code, ctx.fpd, false);
      return;
    }
    this.#fill(tag, ctx.did, req.addr, KIND_SS, out, ctx.tt === 1 ? ctx.rid : -1, NO_PASID);
  }

  #passThrough(req: DmaRequest, out: TranslateResult): void {
    out.ok = true;
    out.pa = req.addr;
    out.perm = ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC;
    out.span = 4096;
    out.fault = "";
    out.faultCode = 0;
  }

  /**
   * IOTLB lookup for `tag` (DID `did`): a hit (or caching mode's cached
   * fault) completes `out` and returns true; a miss returns false.
   */
  #iotlbTry(
    tag: number,
    did: number,
    req: DmaRequest,
    out: TranslateResult,
    rid: number,
    fpd: boolean,
  ): boolean {
    const c = this.#c;
    const addr = req.addr;
    const pfn = Math.floor(addr / 4096);
    if (tag !== this.#lastTag || pfn !== this.#lastPfn || this.#lastTlbGen !== c.tlbGen) {
      // Otherwise: the same 4 KiB page of the same tag as the last lookup,
      // and no IOTLB entry added or removed since: the lookup would find the
      // same slot (already the most recently used of its set).
      const slot = c.lookup(tag, did, addr);
      this.#lastTag = tag;
      this.#lastPfn = pfn;
      this.#lastTlbGen = c.tlbGen;
      this.#lastSlot = slot;
      if (slot >= 0) {
        const t = c.iotlb;
        t.touch(slot);
        const inf = t.info[slot];
        this.#lastInfo = inf;
        this.#lastDelta = t.val[slot] - t.key[slot];
        this.#lastSpan = SIZES[(inf >>> INFO_CLS_SHIFT) & 3];
      }
    }
    const slot = this.#lastSlot;
    if (slot < 0) {
      this.counters.iotlbMisses++;
      return false;
    }
    const inf = this.#lastInfo;
    const fault = inf >>> INFO_FAULT_SHIFT;
    if (fault !== 0) {
      // Caching mode: a not-present result cached until invalidated.
      this.counters.iotlbHits++;
      if (this.checking && this.#freshWalk(req, rid) >= 0) {
        const iova = c.iotlb.key[slot];
        this.#stale(
          "iotlb",
          `not-present DID ${did} PASID ${tagPasid(tag)} iova 0x${iova.toString(16)}`,
          `invalidation after map in caching mode (iotlb_sync_map: DID ${did} addr 0x${
            iova.toString(16)
          })`,
        );
      }
      this.#fault(out, req, fault, fpd, false);
      return true;
    }
    const perm = inf & INFO_PERM_MASK;
    if ((perm & req.access) === req.access) {
      this.counters.iotlbHits++;
      if (this.checking) {
        const t = c.iotlb;
        this.#checkTlbHit(
          "iotlb",
          did,
          tagPasid(tag),
          t.key[slot],
          t.val[slot],
          perm,
          (inf >>> INFO_KIND_SHIFT) & 3,
          req,
          rid,
        );
      }
      out.ok = true;
      out.pa = this.#lastDelta + addr;
      out.perm = perm;
      out.span = this.#lastSpan;
      out.fault = "";
      out.faultCode = 0;
      return true;
    }
    this.counters.iotlbMisses++;
    return false;
  }

  // Memo of the last IOTLB lookup (see #iotlbTry).
  #lastTag = -1;
  #lastPfn = -1;
  #lastTlbGen = -1;
  #lastSlot = -1;
  /** The info word of #lastSlot, its output minus input address, and its size. */
  #lastInfo = 0;
  #lastDelta = 0;
  #lastSpan = 0;

  /** Caching mode: cache the not-present result `code` of the 4 KiB page of `addr`. */
  #fillNegative(tag: number, did: number, addr: number, kind: number, code: number): void {
    const iova = addr - ((addr >>> 0) & 4095);
    this.#c.insert(tag, did, iova, 0, 4096, 0, kind, code, false);
  }

  /**
   * Cache the walk's result (#wPa/#wPerm/#wSize) of `addr` for `tag` (DID
   * `did`), and in the device TLB of `devtlbRid` (unless -1) when the
   * device has ATS; complete `out`.
   */
  #fill(
    tag: number,
    did: number,
    addr: number,
    kind: number,
    out: TranslateResult,
    devtlbRid: number,
    reqPasid: number,
  ): void {
    const size = this.#wSize;
    const iova = addr - ((addr >>> 0) & (size - 1)); // size <= 1 GiB: no modulo
    const pa = this.#wPa - (addr - iova);
    const perm = this.#wPerm;
    const ev = this.#c.iotlb.evictions;
    // The lookup of this translation found nothing (#lastSlot < 0): no entry to replace.
    this.#c.insert(tag, did, iova, pa, size, perm, kind, 0, this.#lastSlot < 0);
    if (this.#c.iotlb.evictions !== ev) this.counters.evictions++;
    if (devtlbRid >= 0 && this.#m.pci.byRid(devtlbRid)?.ats) {
      const pk = reqPasid === NO_PASID ? NO_PASID_KEY : reqPasid;
      if (this.#c.insertDev(devtlbRid, pk, iova, pa, size, perm, kind)) this.counters.evictions++;
    }
    out.ok = true;
    out.pa = this.#wPa;
    out.perm = perm;
    out.span = size;
    out.fault = "";
    out.faultCode = 0;
  }

  #translateScalable(
    ctx: CtxEntry,
    pe: PasidCacheEntry,
    pasid: number,
    req: DmaRequest,
    out: TranslateResult,
  ): void {
    const pgtt = pe.pgtt;
    // Only requests with PASID carry a privilege (PM); the others are user requests.
    const priv = req.priv && req.pasid !== NO_PASID;
    if (priv && pgtt !== PGTT_PT && pgtt !== PGTT_SL_ONLY && !pe.sre) {
      this.#fault(out, req, 0x5d, pe.fpd, false);
      return;
    }
    if ((req.access & ACCESS_EXEC) && pgtt !== PGTT_PT && pgtt !== PGTT_SL_ONLY && !pe.ere) {
      this.#fault(out, req, 0x5c, pe.fpd, false);
      return;
    }
    if (pgtt === PGTT_PT) {
      this.#passThrough(req, out);
      return;
    }
    const tag = cacheTag(pe.did, pasid);
    if (this.#iotlbTry(tag, pe.did, req, out, ctx.rid, pe.fpd || ctx.fpd)) return;
    this.#wNotPresent = false;
    let code: number;
    let kind: number;
    this.#pscTag = tag;
    this.#pscDid = pe.did;
    this.#pscUsed = false;
    if (pgtt === PGTT_SL_ONLY) {
      code = this.#ssWalk(pe.slptr, pe.aw + 2, req.addr, req.access, pe.ssade, true);
      kind = KIND_SS;
    } else {
      code = this.#fsWalk(pe, req.addr, req.access, priv, pgtt === PGTT_NESTED);
      kind = pgtt === PGTT_NESTED ? KIND_NESTED : KIND_FS;
    }
    if (code !== 0) {
      const recoverable = code === 0x61 || code === 0x69 || code === 0x75 || code === 0x76 ||
        code === 0x71;
      if (recoverable && ctx.pre && this.opts.prs) {
        const dev = this.#m.pci.byRid(ctx.rid);
        const pageKey = `${ctx.rid}:${req.pasid}:${req.addr - (req.addr % 4096)}`;
        if (dev?.pri && this.#denied.delete(pageKey)) {
          // The device got Invalid Request / Response Failure for this page.
          out.ok = false;
          out.pa = 0;
          out.perm = 0;
          out.span = 0;
          out.pending = false;
          out.fault = "PAGE_RESPONSE_INVALID";
          out.faultCode = code;
          return;
        }
        if (dev?.pri) {
          this.#pageRequest(req, out, pasid);
          return;
        }
      }
      if (this.#pscUsed && this.checking) {
        this.#checkPsc(req, ctx.rid, pe.did, pgtt === PGTT_SL_ONLY ? -1 : pasid, code);
      }
      if (this.#wNotPresent && this.opts.cm) {
        this.#fillNegative(tag, pe.did, req.addr, kind, code);
      }
      this.#fault(out, req, code, pe.fpd || ctx.fpd, false);
      return;
    }
    if (this.#pscUsed && this.checking) {
      this.#checkPsc(req, ctx.rid, pe.did, pgtt === PGTT_SL_ONLY ? -1 : pasid, 0);
    }
    this.#fill(tag, pe.did, req.addr, kind, out, ctx.dte ? ctx.rid : -1, req.pasid);
  }

  /** Checking mode after a walk that used a paging-structure cache entry. */
  #checkPsc(req: DmaRequest, rid: number, did: number, pasid: number, code: number): void {
    const pa = code === 0 ? this.#wPa : -1, perm = this.#wPerm, size = this.#wSize;
    const fresh = this.#freshWalk(req, rid);
    if (fresh !== pa || (code === 0 && this.#wPerm !== perm)) {
      const region = req.addr - (req.addr % 2097152);
      this.#stale(
        pasid < 0 ? "second-stage paging-structure cache" : "first-stage paging-structure cache",
        `DID ${did}${pasid >= 0 ? ` PASID ${pasid}` : ""} region 0x${region.toString(16)}`,
        pasid < 0
          ? `IOTLB invalidation with IH=0 (DID ${did} covering 0x${region.toString(16)})`
          : `PASID-based IOTLB invalidation with IH=0 (DID ${did} PASID ${pasid} covering 0x${
            region.toString(16)
          })`,
      );
    }
    this.#wPa = pa;
    this.#wPerm = perm;
    this.#wSize = size;
  }

  // --- walks: results in #wPa/#wPerm/#wSize, return 0 or a fault reason.

  /** Page (pfn) last read through each slot (second stage: level; first stage: 8 + level; SLOT_*). */
  readonly #slotPfn: Float64Array = new Float64Array(SLOTS).fill(-1);
  /** That page's live words (PhysMem keeps a backed page's array for its lifetime). */
  readonly #slotWords: (Uint32Array | null)[] = new Array(SLOTS).fill(null);
  /** Pages (pfn) of the direct-mapped page memo, by pfn & (PAGE_MEMO - 1). */
  readonly #memoPfn: Float64Array = new Float64Array(PAGE_MEMO).fill(-1);
  /** Their live words. */
  readonly #memoWords: (Uint32Array | null)[] = new Array(PAGE_MEMO).fill(null);
  /**
   * The live words of page `pfn` (null when never written), through a
   * direct-mapped memo of backed pages (PhysMem keeps a backed page's array
   * for its lifetime; an unbacked page is never remembered).
   */
  #page(pfn: number): Uint32Array | null {
    const k = pfn & (PAGE_MEMO - 1);
    if (this.#memoPfn[k] === pfn) return this.#memoWords[k];
    const p = this.#mem.pageWords(pfn);
    if (p !== null) {
      this.#memoPfn[k] = pfn;
      this.#memoWords[k] = p;
    }
    return p;
  }

  /**
   * Read `n` words at `a` (a structure that does not cross a page) into
   * #fetch, counted as `n` memory reads, through the slot's remembered page;
   * beyond physical memory it throws EFAULT as read32 does.
   */
  #fetchWords(a: number, n: number, slot: number, f: Uint32Array = this.#fetch): Uint32Array {
    const mem = this.#mem;
    const pfn = Math.floor(a / 4096);
    let p: Uint32Array | null;
    if (this.#slotPfn[slot] === pfn) p = this.#slotWords[slot];
    else {
      if (!(a >= 0 && a + 4 * n <= mem.limit)) {
        f.fill(0, 0, n);
        return mem.readWords(a, f, n);
      }
      p = this.#page(pfn);
      if (p !== null) {
        this.#slotPfn[slot] = pfn;
        this.#slotWords[slot] = p;
      }
    }
    mem.stats.reads += n;
    if (p === null) f.fill(0, 0, n);
    else {
      const o = (a & 0xfff) >>> 2;
      for (let i = 0; i < n; i++) f[i] = p[o + i];
    }
    return f;
  }

  /** The entry last loaded by #loadEntry: low and high words. */
  #eLo = 0;
  #eHi = 0;

  /**
   * Load the 8-byte-aligned table entry at `ea` into #eLo/#eHi (counted as
   * two memory reads), through the slot's remembered page; beyond physical
   * memory it throws EFAULT as read32 does (the access fault of the fetch).
   */
  #loadEntry(ea: number, slot: number): void {
    const mem = this.#mem;
    const pfn = Math.floor(ea / 4096);
    let p: Uint32Array | null;
    if (this.#slotPfn[slot] === pfn) p = this.#slotWords[slot];
    else {
      if (!(ea >= 0 && ea + 8 <= mem.limit)) {
        this.#eLo = mem.read32(ea);
        this.#eHi = mem.read32(ea + 4);
        return;
      }
      p = this.#page(pfn);
      if (p !== null) {
        this.#slotPfn[slot] = pfn;
        this.#slotWords[slot] = p;
      }
    }
    mem.stats.reads += 2;
    if (p === null) {
      this.#eLo = 0;
      this.#eHi = 0;
      return;
    }
    const o = (ea & 0xfff) >>> 2;
    this.#eLo = p[o];
    this.#eHi = p[o + 1];
  }

  /** Second-stage walk. `levels` 3..5. */
  #ssWalk(
    root: number,
    levels: number,
    addr: number,
    access: number,
    ssade: boolean,
    sm: boolean,
  ): number {
    const mem = this.#mem;
    const tag = this.#pscTag;
    this.#pscTag = -1; // nested walks inside this one do not use it
    this.#accessCode = sm ? 0x68 : 0x7;
    if (addr >= LEVEL_SIZE[levels + 1]) return sm ? 0x73 : 0x4;
    let table = root;
    let perm = ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC;
    let start = levels;
    const aLo = addr >>> 0, aHi = (addr - aLo) / TWO32;
    // Paging-structure cache: the leaf table of this 2 MiB region.
    const psc = this.#c.pscSs;
    const region = aHi * 2048 + (aLo >>> 21);
    let set = 0, tk = 0;
    if (tag >= 0) {
      set = setOf((aLo >>> 21) | (aHi << 11), this.#pscDid, 0, psc.mask);
      tk = psc.keyOf(tag, 0);
      const slot = psc.find(set, tk, region);
      if (slot >= 0) {
        psc.touch(slot);
        this.counters.pscHits++;
        this.#pscUsed = true;
        table = psc.val[slot];
        perm = psc.info[slot];
        start = 1;
      } else this.counters.pscMisses++;
    }
    for (let l = start; l >= 1; l--) {
      const size = LEVEL_SIZE[l];
      const ea = table + levelIndex(aLo, aHi, l) * 8;
      this.counters.walkReads++;
      this.#loadEntry(ea, l);
      let lo = this.#eLo;
      const hi = this.#eHi;
      if ((lo & 3) === 0) {
        this.#wNotPresent = true;
        return sm ? 0x69 : ((access & ACCESS_WRITE) ? 0x5 : 0x6);
      }
      const ps = (lo >>> 7) & 1;
      // Bits 51:HAW are reserved (61:52 are ignored).
      if ((hi & 0xfffff) >= this.#hawHi) return sm ? 0x6a : 0xc;
      if (ps && (l > 3 || l === 1 || !((this.opts.sllps >> (l - 2)) & 1))) {
        return sm ? 0x6a : 0xc;
      }
      const p = (lo & 1) | ((lo & 2) !== 0 ? ACCESS_WRITE : 0) | ACCESS_EXEC;
      perm &= p;
      const leaf = l === 1 || ps === 1;
      if (ssade) {
        let nlo = lo | 0x100;
        if (leaf && (access & ACCESS_WRITE)) nlo |= 0x200;
        // Written only when a bit changes (int32 vs uint32 compared by bits).
        if ((nlo ^ lo) !== 0) {
          mem.write32(ea, nlo >>> 0);
          lo = nlo >>> 0;
        }
      }
      const next = (hi & 0xfffff) * TWO32 + ((lo & 0xfffff000) >>> 0);
      if (leaf) {
        // A leaf maps at most 1 GiB (size - 1 fits the low word): no modulo.
        if (((lo & 0xfffff000) & (size - 1)) !== 0) return sm ? 0x6a : 0xc;
        if ((access & ACCESS_WRITE) && !(perm & ACCESS_WRITE)) return sm ? 0x69 : 0x5;
        if ((access & ACCESS_READ) && !(perm & ACCESS_READ)) return sm ? 0x69 : 0x6;
        this.#wPa = next + (aLo & (size - 1));
        this.#wPerm = perm;
        this.#wSize = size;
        return 0;
      }
      if (l === 2 && tag >= 0) psc.insertNew(set, tk, region, next, perm, this.#pscDid);
      table = next;
    }
    return sm ? 0x6a : 0xc;
  }

  /** First-stage walk (optionally nested through the second stage). */
  #fsWalk(
    pe: PasidCacheEntry,
    addr: number,
    access: number,
    priv: boolean,
    nested: boolean,
  ): number {
    const mem = this.#mem;
    const tag = nested ? -1 : this.#pscTag;
    this.#pscTag = -1;
    this.#accessCode = 0x60;
    const levels = pe.flpm === 1 ? 5 : 4;
    if (levels === 4 && addr >= 140737488355328) return 0x70; // 2^47
    let table = pe.flptr;
    let rw = 1;
    let us = 1;
    let xd = 0;
    let ssSize = 2 ** 52;
    let start = levels;
    const aLo = addr >>> 0, aHi = (addr - aLo) / TWO32;
    // Paging-structure cache: the leaf table of this 2 MiB region.
    const psc = this.#c.pscFs;
    const region = aHi * 2048 + (aLo >>> 21);
    let set = 0, tk = 0;
    if (tag >= 0) {
      set = setOf((aLo >>> 21) | (aHi << 11), this.#pscDid, 0, psc.mask);
      tk = psc.keyOf(tag, 0);
      const slot = psc.find(set, tk, region);
      if (slot >= 0) {
        psc.touch(slot);
        this.counters.pscHits++;
        this.#pscUsed = true;
        table = psc.val[slot];
        const p = psc.info[slot];
        rw = p & 1;
        us = (p >>> 1) & 1;
        xd = (p >>> 2) & 1;
        start = 1;
      } else this.counters.pscMisses++;
    }
    for (let l = start; l >= 1; l--) {
      let ea = table + levelIndex(aLo, aHi, l) * 8;
      if (nested) {
        const c = this.#ssWalk(pe.slptr, pe.aw + 2, ea, ACCESS_READ | ACCESS_WRITE, pe.ssade, true);
        if (c !== 0) return c;
        ea = this.#wPa;
        this.#accessCode = 0x60;
      }
      this.counters.walkReads++;
      this.#loadEntry(ea, 8 + l);
      let lo = this.#eLo;
      const hi = this.#eHi;
      if ((lo & 1) === 0) {
        this.#wNotPresent = true;
        return 0x61;
      }
      const ps = (lo >>> 7) & 1;
      if (ps && (l > 3 || l === 1 || (l === 3 && !this.opts.fl1gp))) return 0x62;
      // Bits 51:HAW are reserved (62:52 are ignored).
      if ((hi & 0xfffff) >= this.#hawHi) return 0x62;
      rw &= (lo >>> 1) & 1;
      us &= (lo >>> 2) & 1;
      xd |= hi >>> 31;
      const leaf = l === 1 || ps === 1;
      let nlo = lo | 0x20;
      if (leaf && (access & ACCESS_WRITE)) nlo |= 0x40;
      // Written only when a bit changes (int32 vs uint32 compared by bits).
      if ((nlo ^ lo) !== 0) {
        mem.write32(ea, nlo >>> 0);
        lo = nlo >>> 0;
      }
      const next = (hi & 0xfffff) * TWO32 + ((lo & 0xfffff000) >>> 0);
      if (leaf) {
        const size = LEVEL_SIZE[l];
        // A leaf maps at most 1 GiB (size - 1 fits the low word): no modulo.
        if (((lo & 0xfffff000) & (size - 1)) !== 0) return 0x62;
        if (!priv && !us) return 0x71;
        const canWrite = rw === 1 || (priv && !pe.wpe);
        if ((access & ACCESS_WRITE) && !canWrite) return 0x75;
        if ((access & ACCESS_EXEC) && xd) return 0x72;
        let perm = ACCESS_READ | (canWrite ? ACCESS_WRITE : 0) | (xd ? 0 : ACCESS_EXEC);
        let pa = next + (aLo & (size - 1));
        if (nested) {
          const c = this.#ssWalk(pe.slptr, pe.aw + 2, pa, access, pe.ssade, true);
          if (c !== 0) return c;
          pa = this.#wPa;
          perm &= this.#wPerm;
          ssSize = this.#wSize;
        }
        this.#wPa = pa;
        this.#wPerm = perm;
        this.#wSize = Math.min(size, ssSize);
        return 0;
      }
      if (l === 2 && tag >= 0) {
        psc.insertNew(set, tk, region, next, rw | (us << 1) | (xd << 2), this.#pscDid);
      }
      table = next;
    }
    return 0x62;
  }

  // --- structure fetches (with caches)

  #context(
    rid: number,
    sm: boolean,
    out: TranslateResult,
    req: DmaRequest,
    useCache: boolean,
  ): CtxEntry | null {
    if (useCache) {
      const c = this.#c.ctxLookup(rid);
      if (c !== null && c.sm === sm) {
        this.counters.ctxHits++;
        if (this.checking) this.#checkRaw("context-cache", c.addr, c.raw, c.rawLen, rid, -1, 0);
        return c;
      }
      this.counters.ctxMisses++;
    }
    const bus = rid >>> 8;
    const devfn = rid & 0xff;
    const ra = this.#rta + bus * 16;
    this.#accessCode = sm ? 0x38 : 0x8;
    this.counters.walkReads++;
    const rw = this.#fetchWords(ra, 4, SLOT_ROOT);
    const r0 = rw[0], r1 = rw[1], r2 = rw[2], r3 = rw[3];
    let ctp: number;
    if (!sm) {
      if (!(r0 & 1)) return this.#fault(out, req, 0x1, false, true);
      if ((r0 & 0xffe) || r2 || r3) return this.#fault(out, req, 0xa, false, true);
      ctp = (r1 & 0xfffff) * TWO32 + ((r0 & 0xfffff000) >>> 0) + devfn * 16;
    } else {
      const upper = devfn >= 128;
      const plo = upper ? r2 : r0;
      const phi = upper ? r3 : r1;
      if (!(plo & 1)) return this.#fault(out, req, 0x39, false, true);
      if ((r0 & 0xffe) || (r2 & 0xffe)) return this.#fault(out, req, 0x3a, false, true);
      ctp = (phi & 0xfffff) * TWO32 + ((plo & 0xfffff000) >>> 0) + (devfn & 0x7f) * 32;
    }
    const n = sm ? 8 : 4;
    this.counters.walkReads++;
    this.#accessCode = sm ? 0x40 : 0x9;
    const f = this.#fetchWords(ctp, n, SLOT_CONTEXT);
    const w0 = f[0], w1 = f[1], w2 = f[2];
    const fpd = (w0 & 2) !== 0;
    if (!(w0 & 1)) {
      // FPD is only meaningful in a present entry.
      return this.#fault(out, req, sm ? 0x41 : 0x2, false, true);
    }
    // Decode and check first; then fill a recycled entry (no allocation once warm).
    let tt = 0, slptr = 0, aw = 0, did = 0, pdts = 0, pasidDir = 0, ridPasid = 0;
    let dte = false, paside = false, pre = false;
    if (!sm) {
      tt = (w0 >>> 2) & 3;
      slptr = (w1 & 0xfffff) * TWO32 + ((w0 & 0xfffff000) >>> 0);
      aw = w2 & 7;
      did = (w2 >>> 8) & 0xffff;
      if ((w0 & 0xff0) || (w2 & 0xf8) || (w2 >>> 24) || f[3]) {
        return this.#fault(out, req, 0xb, fpd, true);
      }
      const badTt = tt === 3 || (tt === 1 && !this.opts.dt) || (tt === 2 && !this.opts.pt);
      const badAw = tt !== 2 && !((this.opts.sagaw >> aw) & 1);
      if (badTt || badAw) return this.#fault(out, req, 0x3, fpd, true);
    } else {
      dte = (w0 & 4) !== 0;
      paside = (w0 & 8) !== 0;
      pre = (w0 & 16) !== 0;
      pdts = (w0 >>> 9) & 7;
      pasidDir = (w1 & 0xfffff) * TWO32 + ((w0 & 0xfffff000) >>> 0);
      ridPasid = w2 & 0xfffff;
      if ((w0 & 0x1e0) || (w2 >>> 20) || f[3] || f[4] || f[5] || f[6] || f[7]) {
        return this.#fault(out, req, 0x42, fpd, true);
      }
      if (dte && !this.opts.dt) return this.#fault(out, req, 0x43, fpd, true);
      if (pre && !this.opts.prs) return this.#fault(out, req, 0x43, fpd, true);
    }
    let e = this.#freshCtx;
    if (useCache) {
      const cc = this.#c.ctx, ev = cc.evictions;
      e = this.#c.ctxInsert(rid, did);
      if (cc.evictions !== ev) this.counters.ctxEvictions++;
    }
    e.rid = rid;
    e.sm = sm;
    e.fpd = fpd;
    e.tt = tt;
    e.slptr = slptr;
    e.aw = aw;
    e.did = did;
    e.dte = dte;
    e.paside = paside;
    e.pre = pre;
    e.pdts = pdts;
    e.pasidDir = pasidDir;
    e.ridPasid = ridPasid;
    e.addr = ctp;
    if (useCache) {
      // The words as fetched, for checking mode (a fresh walk's entry is dropped: no copy).
      const raw = e.raw;
      for (let i = 0; i < n; i++) raw[i] = f[i];
      e.rawLen = n;
    } else e.rawLen = 0;
    return e;
  }

  #pasidEntry(
    ctx: CtxEntry,
    pasid: number,
    out: TranslateResult,
    req: DmaRequest,
    useCache: boolean,
  ): PasidCacheEntry | null {
    if (useCache) {
      const c = this.#c.pasidLookup(ctx.rid, pasid);
      if (c !== null) {
        this.counters.pasidHits++;
        if (this.checking) {
          this.#checkRaw("pasid-cache", c.addr, c.raw, 16, ctx.rid, pasid, c.did);
        }
        return c;
      }
      this.counters.pasidMisses++;
    }
    if (pasid >= POW2[ctx.pdts + 7] * 64 || pasid >= POW2[this.opts.pss + 1]) {
      return this.#fault(out, req, 0x46, ctx.fpd, true);
    }
    const da = ctx.pasidDir + Math.floor(pasid / 64) * 8;
    this.#accessCode = 0x50;
    this.counters.walkReads++;
    this.#loadEntry(da, SLOT_PASID_DIR);
    const d0 = this.#eLo, d1 = this.#eHi;
    if (!(d0 & 1)) return this.#fault(out, req, 0x51, ctx.fpd, true);
    if (d0 & 0xffc) return this.#fault(out, req, 0x52, ctx.fpd || (d0 & 2) !== 0, true);
    const ta = (d1 & 0xfffff) * TWO32 + ((d0 & 0xfffff000) >>> 0) + (pasid % 64) * 64;
    this.counters.walkReads++;
    this.#accessCode = 0x58;
    const w = this.#fetchWords(ta, 16, SLOT_PASID_TABLE);
    const w0 = w[0], w4 = w[4];
    const fpd = ctx.fpd || (w0 & 2) !== 0;
    if (!(w0 & 1)) return this.#fault(out, req, 0x59, ctx.fpd, true);
    // reserved: bits 11:10, 86:80, 127:89, 139:136 except 135/133?, 191 beyond + words 6..15
    if (
      (w0 & 0xc00) || (w[2] & 0x007f0000) || (w[2] >>> 25) || w[3] || (w4 & 0x740) ||
      w[6] || w[7] || w[8] || w[9] || w[10] || w[11] || w[12] || w[13] || w[14] || w[15] ||
      (w[5] & 0xfff00000)
    ) {
      return this.#fault(out, req, 0x5a, fpd, true);
    }
    // Decode and check first; then fill a recycled entry (no allocation once warm).
    const pgtt = (w0 >>> 6) & 7, aw = (w0 >>> 2) & 7, ssade = (w0 & 0x200) !== 0;
    const sre = (w4 & 1) !== 0, flpm = (w4 >>> 2) & 3;
    const o = this.opts;
    const usesSs = pgtt === PGTT_SL_ONLY || pgtt === PGTT_NESTED;
    const usesFs = pgtt === PGTT_FL_ONLY || pgtt === PGTT_NESTED;
    const bad = pgtt === 0 || pgtt > 4 ||
      (pgtt === PGTT_FL_ONLY && !o.flts) || (pgtt === PGTT_SL_ONLY && !o.slts) ||
      (pgtt === PGTT_NESTED && !(o.nest && o.flts && o.slts)) || (pgtt === PGTT_PT && !o.pt) ||
      (usesSs && !((o.sagaw >> aw) & 1)) ||
      (usesFs && (flpm > 1 || (flpm === 1 && !o.fl5lp))) ||
      (ssade && !o.slads);
    if (bad) return this.#fault(out, req, 0x5b, fpd, true);
    if (sre && !o.srs) return this.#fault(out, req, 0x5b, fpd, true);
    const did = w[2] & 0xffff;
    let e = this.#freshPe;
    if (useCache) {
      const pc = this.#c.pasid, ev = pc.evictions;
      e = this.#c.pasidInsert(ctx.rid, pasid, did);
      if (pc.evictions !== ev) this.counters.pasidEvictions++;
    }
    e.rid = ctx.rid;
    e.pasid = pasid;
    e.fpd = fpd;
    e.pgtt = pgtt;
    e.aw = aw;
    e.ssade = ssade;
    e.slptr = (w[1] & 0xfffff) * TWO32 + ((w0 & 0xfffff000) >>> 0);
    e.did = did;
    e.sre = sre;
    e.ere = (w4 & 2) !== 0;
    e.flpm = flpm;
    e.wpe = (w4 & 0x10) !== 0;
    e.flptr = (w[5] & 0xfffff) * TWO32 + ((w4 & 0xfffff000) >>> 0);
    e.addr = ta;
    if (useCache) {
      // The words as fetched, for checking mode (a fresh walk's entry is dropped: no copy).
      const raw = e.raw;
      for (let i = 0; i < 16; i++) raw[i] = w[i];
    }
    return e;
  }

  // -------------------------------------------------------------------------
  // Faults and page requests

  #fault(
    out: TranslateResult,
    req: DmaRequest,
    code: number,
    fpd: boolean,
    _structure: boolean,
  ): null {
    out.ok = false;
    out.pa = 0;
    out.perm = 0;
    out.span = 0;
    out.faultCode = code;
    out.fault = faultName(code);
    out.pending = false;
    this.counters.faults++;
    const write = (req.access & ACCESS_WRITE) !== 0;
    let recorded = false;
    if (!fpd) recorded = this.#record(req, code, write);
    if (this.#m.trace.observed) {
      this.#m.trace.emit(this.name, "vtd_dmar_fault", {
        sid: req.rid,
        pasid: req.pasid,
        addr: req.addr,
        write,
        reason: code,
        name: out.fault,
        recorded,
      });
    }
    this.faultHook?.({
      rid: req.rid,
      pasid: req.pasid,
      addr: req.addr,
      write,
      reason: code,
      name: out.fault,
      recorded,
    });
    return null;
  }

  #record(req: DmaRequest, code: number, write: boolean): boolean {
    const fs = REG.FSTS >> 2;
    if (this.#regs[fs] & FSTS.PFO) return false;
    const i = (FRO_OFFSET + 16 * this.#nextFr) >> 2;
    if (this.#regs[i + 3] & 0x80000000) {
      this.#regs[fs] |= FSTS.PFO;
      return false;
    }
    const addr = req.addr - (req.addr % 4096);
    this.#regs[i] = addr % TWO32 >>> 0;
    this.#regs[i + 1] = Math.floor(addr / TWO32) >>> 0;
    const pp = req.pasid !== NO_PASID;
    this.#regs[i + 2] = (req.rid & 0xffff) | (pp ? 0x80000000 : 0) | (req.priv ? 1 << 29 : 0) |
      ((req.access & ACCESS_EXEC) ? 1 << 30 : 0);
    this.#regs[i + 3] = ((code & 0xff) | ((pp ? req.pasid & 0xfffff : 0) << 8) |
      (write ? 0 : 1 << 30) | 0x80000000) >>> 0;
    const wasPending = (this.#regs[fs] & FSTS.PPF) !== 0;
    this.#regs[fs] = (this.#regs[fs] & ~(0xff << 8)) | FSTS.PPF | (this.#nextFr << 8);
    this.#nextFr = (this.#nextFr + 1) % this.opts.nfr;
    this.counters.faultsRecorded++;
    if (!wasPending) this.#event(REG.FECTL, this.#irqFault);
    return true;
  }

  #updatePpf(): void {
    let any = false;
    for (let k = 0; k < this.opts.nfr; k++) {
      if (this.#regs[((FRO_OFFSET + 16 * k) >> 2) + 3] & 0x80000000) any = true;
    }
    if (!any) this.#regs[REG.FSTS >> 2] &= ~FSTS.PPF;
  }

  #event(ctlOff: number, line: string): void {
    const c = ctlOff >> 2;
    if (this.#regs[c] & ECTL_IM) this.#regs[c] |= ECTL_IP;
    else this.#m.irq.raise(line);
  }

  #pageRequest(req: DmaRequest, out: TranslateResult, pasid: number): void {
    out.ok = false;
    out.pa = 0;
    out.perm = 0;
    out.span = 0;
    out.pending = true;
    out.fault = "PAGE_REQUEST";
    out.faultCode = 0;
    const prs = REG.PRS >> 2;
    const aLo = this.#regs[REG.PQA >> 2], aHi = this.#regs[(REG.PQA + 4) >> 2];
    const base = (aHi & 0xfffff) * TWO32 + ((aLo & 0xfffff000) >>> 0);
    const size = 4096 * POW2[aLo & 7];
    const head = this.#regs[REG.PQH >> 2] & 0x7ffe0;
    const tail = this.#regs[REG.PQT >> 2] & 0x7ffe0;
    if (base === 0 || (tail + 32) % size === head || (this.#regs[prs] & PRS_PRO)) {
      this.#regs[prs] |= PRS_PRO;
      out.pending = false;
      out.fault = "PAGE_REQUEST_OVERFLOW";
      return;
    }
    const prgi = this.#prgi;
    this.#prgi = (this.#prgi + 1) & 0x1ff;
    const pp = req.pasid !== NO_PASID;
    const d = this.#dw;
    d.fill(0);
    d[0] = 1 | (pp ? 0x100 : 0) | ((req.rid & 0xffff) << 16);
    d[1] = (pp ? pasid & 0xfffff : 0) | ((req.access & ACCESS_EXEC) ? 1 << 20 : 0) |
      (req.priv ? 1 << 21 : 0);
    const page = req.addr - (req.addr % 4096);
    d[2] = ((req.access & ACCESS_READ) ? 1 : 0) | ((req.access & ACCESS_WRITE) ? 2 : 0) | 4 |
      (prgi << 3) | ((page % TWO32) >>> 0);
    d[3] = Math.floor(page / TWO32) >>> 0;
    this.#mem.writeWords(base + tail, d);
    this.#regs[REG.PQT >> 2] = (tail + 32) % size;
    this.outstandingPageRequests.add(`${req.rid}:${prgi}`);
    this.#prgPage.set(`${req.rid}:${prgi}`, `${req.rid}:${req.pasid}:${page}`);
    this.counters.pageRequests++;
    if (this.#m.trace.observed) {
      this.#m.trace.emit(this.name, "vtd_prq", {
        sid: req.rid,
        pasid: req.pasid,
        addr: page,
        prgi,
      });
    }
    if (!(this.#regs[prs] & PRS_PPR)) {
      this.#regs[prs] |= PRS_PPR;
      this.#event(REG.PECTL, this.#irqPrq);
    } else {
      this.#event(REG.PECTL, this.#irqPrq);
    }
  }

  // -------------------------------------------------------------------------
  // Queued invalidation

  #processQueue(): void {
    if (!this.#qie) return;
    const fs = REG.FSTS >> 2;
    // IQE and ITE stop descriptor fetching until software clears them; an
    // Invalidation Completion Error does not (the invalidation it concerns
    // has been executed; only a completion message was unexpected).
    if (this.#regs[fs] & (FSTS.IQE | FSTS.ITE)) return;
    const aLo = this.#regs[REG.IQA >> 2], aHi = this.#regs[(REG.IQA + 4) >> 2];
    const base = (aHi & 0xfffff) * TWO32 + ((aLo & 0xfffff000) >>> 0);
    const wide = (aLo & IQA_DW) !== 0;
    const dsz = wide ? 32 : 16;
    const qsize = 4096 << (aLo & 7);
    let head = this.#regs[REG.IQH >> 2] & 0x7fff0;
    const tail = this.#regs[REG.IQT >> 2] & 0x7fff0;
    const w = this.#w;
    if ((wide && (tail & 0x10)) || tail >= qsize || head >= qsize) {
      // IQT misaligned for 256-bit descriptors, or beyond the queue.
      this.#qiError(head, 1);
      this.#event(REG.FECTL, this.#irqFault);
      return;
    }
    if (wide && !this.opts.smts) {
      this.#qiError(head, 2); // 256-bit descriptors need scalable-mode support
      this.#event(REG.FECTL, this.#irqFault);
      return;
    }
    const nw = dsz >> 2;
    while (head !== tail) {
      let err: number;
      try {
        // A descriptor never crosses a page (the queue is page-aligned).
        if (nw === 4) {
          w[4] =
            w[5] =
            w[6] =
            w[7] =
              0;
        }
        this.#fetchWords(base + head, nw, SLOT_QUEUE, w);
        this.counters.qiDescriptors++;
        err = this.#descriptor(w, wide);
      } catch (e) {
        // The queue (or a status address) is outside physical memory.
        if (!(e instanceof IommuError) || e.errno !== "EFAULT") throw e;
        err = 1;
      }
      if (err !== 0) {
        if (err === -1) {
          // ITE: the pending descriptors (up to the tail) are discarded.
          const before = this.#regs[fs];
          if (!(before & FSTS.ITE)) this.#setErrSid(false, this.#iteSid);
          this.#regs[fs] |= FSTS.ITE;
          this.#regs[REG.IQH >> 2] = tail;
          this.counters.qiErrors++;
          if (this.#m.trace.observed) {
            this.#m.trace.emit(this.name, "vtd_inv_qi_ite", { sid: this.#iteSid });
          }
          // Not a new interrupt condition while another status field is set.
          if (!(before & FSTS_EVENT_BITS)) this.#event(REG.FECTL, this.#irqFault);
          return;
        }
        this.#regs[REG.IQH >> 2] = head;
        this.#qiError(head, err);
        this.#event(REG.FECTL, this.#irqFault);
        return;
      }
      head = (head + dsz) % qsize;
      this.#regs[REG.IQH >> 2] = head;
    }
  }

  /**
   * The wait descriptor's status write of `v` at the 4-byte aligned `a`,
   * counted as one memory write as write32 would, through the status slot's
   * remembered page once write32 has backed it (beyond physical memory
   * write32 throws EFAULT).
   */
  #statusWrite(a: number, v: number): void {
    const pfn = Math.floor(a / 4096);
    const mem = this.#mem;
    if (this.#slotPfn[SLOT_STATUS] === pfn) {
      mem.stats.writes++;
      this.#slotWords[SLOT_STATUS]![(a & 0xfff) >>> 2] = v;
      return;
    }
    mem.write32(a, v);
    const p = mem.pageWords(pfn);
    if (p !== null) {
      this.#slotPfn[SLOT_STATUS] = pfn;
      this.#slotWords[SLOT_STATUS] = p;
    }
  }

  /** Record an ITE (`ice` false) or ICE source-id in IQERCD bits 47:32 or 63:48. */
  #setErrSid(ice: boolean, sid: number): void {
    const i = (REG.IQERCD + 4) >> 2, v = this.#regs[i];
    this.#regs[i] = ice
      ? ((v & 0xffff) | ((sid & 0xffff) << 16)) >>> 0
      : (v & 0xffff0000) | (sid & 0xffff);
  }

  /**
   * An Invalidation Completion Error: a device-TLB invalidation completion
   * with requester ID `sid` matched no outstanding invalidation. Sets
   * FSTS.ICE (capturing ICESID when ICE was clear) and signals a fault
   * event unless another fault status field was already set. The queue
   * keeps running.
   */
  #ice(sid: number): void {
    const fs = REG.FSTS >> 2, before = this.#regs[fs];
    if (!(before & FSTS.ICE)) this.#setErrSid(true, sid);
    this.#regs[fs] |= FSTS.ICE;
    this.counters.qiIce++;
    if (this.#m.trace.observed) this.#m.trace.emit(this.name, "vtd_inv_qi_ice", { sid });
    if (!(before & FSTS_EVENT_BITS)) this.#event(REG.FECTL, this.#irqFault);
  }

  /**
   * The completion of a device-TLB invalidation of `sid` just executed:
   * 0 when it completes, -1 when it times out (ITE, with an invalid
   * completion first when one was injected).
   */
  #devtlbCompletion(sid: number): number {
    const bad = this.#badCompletion.get(sid);
    if (bad === undefined) return 0;
    this.#badCompletion.delete(sid);
    this.#ice(bad.sid);
    if (bad.alsoValid) return 0;
    this.#iteSid = sid;
    return -1;
  }

  #qiError(_head: number, code: number): void {
    this.counters.qiErrors++;
    this.#regs[REG.FSTS >> 2] |= FSTS.IQE;
    this.#regs[REG.IQERCD >> 2] = code & 0xf; // IQEI
    if (this.#m.trace.observed) this.#m.trace.emit(this.name, "vtd_inv_qi_error", { code });
  }

  /** Handle one descriptor; 0 = ok, -1 = ITE, >0 = IQE with that IQEI code. */
  #descriptor(w: Uint32Array, wide: boolean): number {
    const type = w[0] & 0xf;
    if ((w[0] >>> 9) & 7) return 1; // type bits 11:9 must be 0 here
    if (wide && (w[4] | w[5] | w[6] | w[7])) return 1;
    if (this.#m.trace.observed) {
      this.#m.trace.emit(this.name, "vtd_inv_desc", {
        type,
        lo: w[0],
        hi: w[1],
        w2: w[2],
        w3: w[3],
      });
    }
    const sm = this.#ttm === RTADDR_TTM_SCALABLE;
    switch (type) {
      case QI_TYPE.CC: {
        if (this.#rsv(w, 0)) return 1;
        this.counters.qiCc++;
        this.#c.invContext(
          this.#ttm === RTADDR_TTM_SCALABLE,
          (w[0] >>> 4) & 3,
          w[0] >>> 16,
          w[1] & 0xffff,
          (w[1] >>> 16) & 3,
        );
        return 0;
      }
      case QI_TYPE.IOTLB: {
        if (this.#rsv(w, 1)) return 1;
        this.counters.qiIotlb++;
        const addr = (w[3] & 0xfffff) * TWO32 + ((w[2] & 0xfffff000) >>> 0);
        this.#invIotlb((w[0] >>> 4) & 3, w[0] >>> 16, addr, w[2] & 0x3f, (w[2] >>> 6) & 1);
        return 0;
      }
      case QI_TYPE.DIOTLB: {
        if (this.#rsv(w, 2)) return 1;
        this.counters.qiDevIotlb++;
        const sid = w[1] & 0xffff;
        if (this.#atsTimeout.delete(sid)) {
          this.#iteSid = sid;
          return -1;
        }
        this.#c.invDevtlb(sid, -1, w[2], w[3]);
        return this.#badCompletion.size === 0 ? 0 : this.#devtlbCompletion(sid);
      }
      case QI_TYPE.IEC:
        if (this.#rsv(w, 3)) return 1;
        this.counters.qiIec++;
        return 0;
      case QI_TYPE.IWD: {
        if (this.#rsv(w, 4)) return 1;
        this.counters.qiWait++;
        if (w[0] & 0x20) {
          const a = (w[3] & 0xfffff) * TWO32 + ((w[2] & 0xfffffffc) >>> 0);
          this.#statusWrite(a, w[1]);
        }
        if (w[0] & 0x10) {
          this.#regs[REG.ICS >> 2] |= ICS_IWC;
          this.#event(REG.IECTL, this.#irqInv);
        }
        return 0;
      }
      case QI_TYPE.EIOTLB: {
        if (!sm && !this.opts.smts) return 1;
        if (this.#rsv(w, 5)) return 1;
        this.counters.qiPiotlb++;
        const gran = (w[0] >>> 4) & 3;
        if (gran < 2) return 1;
        const addr = (w[3] & 0xfffff) * TWO32 + ((w[2] & 0xfffff000) >>> 0);
        this.#c.invPiotlb(gran, w[0] >>> 16, w[1] & 0xfffff, addr, w[2] & 0x3f, (w[2] >>> 6) & 1);
        return 0;
      }
      case QI_TYPE.PC: {
        if (this.#rsv(w, 6)) return 1;
        this.counters.qiPc++;
        const gran = (w[0] >>> 4) & 3;
        if (gran === 2) return 1;
        this.#c.invPasidCache(gran, w[0] >>> 16, w[1] & 0xfffff);
        return 0;
      }
      case QI_TYPE.DEIOTLB: {
        if (this.#rsv(w, 7)) return 1;
        this.counters.qiDevPiotlb++;
        const sid = w[0] >>> 16;
        if (this.#atsTimeout.delete(sid)) {
          this.#iteSid = sid;
          return -1;
        }
        const global = (w[2] & 1) !== 0;
        this.#c.invDevtlb(
          sid,
          global ? -2 : w[1] & 0xfffff,
          w[2] & ~0x7ff | ((w[2] >>> 11) & 1),
          w[3],
        );
        return this.#badCompletion.size === 0 ? 0 : this.#devtlbCompletion(sid);
      }
      case QI_TYPE.PGRP_RESP: {
        if (this.#rsv(w, 8)) return 1;
        this.counters.qiPgrpResp++;
        this.counters.pageResponses++;
        const rid = w[0] >>> 16;
        const prgi = (w[2] >>> 3) & 0x1ff;
        const key = `${rid}:${prgi}`;
        this.outstandingPageRequests.delete(key);
        const respCode = (w[0] >>> 12) & 0xf;
        this.pageResponses.set(key, respCode);
        const page = this.#prgPage.get(key);
        this.#prgPage.delete(key);
        if (page !== undefined && respCode !== 0) this.#denied.add(page);
        if (this.#m.trace.observed) {
          this.#m.trace.emit(this.name, "vtd_prq_response", {
            sid: rid,
            prgi,
            code: (w[0] >>> 12) & 0xf,
          });
        }
        return 0;
      }
      default:
        return 1;
    }
  }

  /** Reserved-bit masks of the first 128 bits of each descriptor, 4 words per table, by table. */
  readonly #rsvMasks: Uint32Array = rsvMaskTable();
  /** True when a reserved bit of descriptor table `t` (RSV_*) is set in `w`. */
  #rsv(w: Uint32Array, t: number): boolean {
    const m = this.#rsvMasks, o = t * 4;
    return ((w[0] & m[o]) | (w[1] & m[o + 1]) | (w[2] & m[o + 2]) | (w[3] & m[o + 3])) !== 0;
  }

  #invIotlb(gran: number, did: number, addr: number, am: number, ih = 0): void {
    this.#c.invIotlb(this.#ttm === RTADDR_TTM_SCALABLE, gran, did, addr, am, ih);
    if (this.#m.trace.observed) {
      this.#m.trace.emit(this.name, "vtd_inv_desc_iotlb", { gran, did, addr, am });
    }
  }

  // -------------------------------------------------------------------------
  // Checking mode

  #checkRaw(
    cache: string,
    addr: number,
    raw: readonly number[],
    n: number,
    rid: number,
    pasid: number,
    did: number,
  ) {
    const mem = this.#mem;
    let p: Uint32Array | null = null, o = 0, direct = false;
    if (addr >= 0 && addr + 4 * n <= mem.limit && (addr & 3) === 0) {
      // Compare in place through the remembered page; reads counted as read32 would.
      const pfn = Math.floor(addr / 4096);
      if (this.#slotPfn[SLOT_CHECK] === pfn) p = this.#slotWords[SLOT_CHECK];
      else {
        p = this.#page(pfn);
        if (p !== null) {
          this.#slotPfn[SLOT_CHECK] = pfn;
          this.#slotWords[SLOT_CHECK] = p;
        }
      }
      o = (addr & 0xfff) >>> 2;
      direct = true;
    }
    for (let i = 0; i < n; i++) {
      let v: number;
      if (direct) {
        mem.stats.reads++;
        v = p === null ? 0 : p[o + i];
      } else v = mem.read32(addr + 4 * i);
      if (v !== raw[i]) {
        const missing = cache === "context-cache"
          ? `context-cache invalidation (device-selective SID 0x${rid.toString(16)})`
          : `PASID-cache invalidation (PASID-selective DID ${did} PASID ${pasid})`;
        this.#stale(
          cache,
          `rid 0x${rid.toString(16)}${pasid >= 0 ? ` pasid ${pasid}` : ""}`,
          missing,
        );
        return;
      }
    }
  }

  /** Checking mode: compare a TLB hit (its DID, PASID, input/output address, perm, kind) with a fresh walk. */
  #checkTlbHit(
    cache: string,
    did: number,
    pasid: number,
    iova: number,
    epa: number,
    perm: number,
    kind: number,
    req: DmaRequest,
    rid: number,
  ): void {
    // A fresh walk of memory, bypassing every cache and leaving them untouched.
    const pa = this.#freshWalk(req, rid);
    if (pa === epa + (req.addr - iova) && (this.#wPerm & perm) === perm) return;
    const missing = cache === "device-tlb"
      ? `device-TLB invalidation (SID 0x${rid.toString(16)} addr 0x${iova.toString(16)})`
      : kind === KIND_SS
      ? `IOTLB invalidation (DID ${did} addr 0x${iova.toString(16)})`
      : `PASID-based IOTLB invalidation (DID ${did} PASID ${pasid} addr 0x${iova.toString(16)})`;
    this.#stale(
      cache,
      `DID ${did} PASID ${pasid} iova 0x${iova.toString(16)} -> 0x${epa.toString(16)}`,
      missing,
    );
  }

  readonly #scratch: TranslateResult = {
    ok: false,
    pa: 0,
    perm: 0,
    span: 0,
    fault: "",
    faultCode: 0,
    pending: false,
  };

  #freshWalk(req: DmaRequest, rid: number): number {
    this.#pscTag = -1;
    const out = this.#scratch;
    const sm = this.#ttm === RTADDR_TTM_SCALABLE;
    const hook = this.faultHook;
    this.faultHook = null;
    const regs = this.#regs, saveFr = this.#saveFr, fr0 = FRO_OFFSET >> 2;
    for (let i = 0; i < saveFr.length; i++) saveFr[i] = regs[fr0 + i];
    const saveFsts = regs[REG.FSTS >> 2];
    const saveNext = this.#nextFr;
    const code = this.#freshWalkInner(req, rid, sm, out);
    // Leave the fault state as it was: a fresh walk records nothing.
    for (let i = 0; i < saveFr.length; i++) regs[fr0 + i] = saveFr[i];
    regs[REG.FSTS >> 2] = saveFsts;
    this.#nextFr = saveNext;
    this.faultHook = hook;
    return code === 0 ? this.#wPa : -1;
  }

  /** The walk of #freshWalk: 0, a fault reason, or -1 for a structure fault. */
  #freshWalkInner(req: DmaRequest, rid: number, sm: boolean, out: TranslateResult): number {
    const ctx = this.#context(rid, sm, out, req, false);
    if (ctx === null) return -1;
    let code = 0;
    if (!sm) {
      if (ctx.tt === 2) {
        this.#wPa = req.addr;
        this.#wPerm = 7;
      } else code = this.#ssWalk(ctx.slptr, ctx.aw + 2, req.addr, req.access, false, false);
    } else {
      const pasid = req.pasid === NO_PASID ? (this.opts.rps ? ctx.ridPasid : 0) : req.pasid;
      const pe = this.#pasidEntry(ctx, pasid, out, req, false);
      if (pe === null) return -1;
      if (pe.pgtt === PGTT_PT) {
        this.#wPa = req.addr;
        this.#wPerm = 7;
      } else if (pe.pgtt === PGTT_SL_ONLY) {
        code = this.#ssWalk(pe.slptr, pe.aw + 2, req.addr, req.access, pe.ssade, true);
      } else {
        const priv = req.priv && req.pasid !== NO_PASID;
        code = this.#fsWalk(pe, req.addr, req.access, priv, pe.pgtt === PGTT_NESTED);
      }
    }
    return code;
  }

  #stale(cache: string, entry: string, missing: string): void {
    this.counters.staleHits++;
    const r = { cache, entry, missing };
    this.staleReports.push(r);
    if (this.#m.trace.observed) {
      this.#m.trace.emit(this.name, "vtd_check_stale", { cache, entry, missing });
    }
  }

  // -------------------------------------------------------------------------
  // Introspection for tests and reports (not used by the driver).

  /** Number of entries in each cache. */
  cacheSizes(): CacheSizes {
    return this.#c.sizes();
  }

  /** True when the IOTLB holds a translation of `addr` for (did, pasid). */
  iotlbHas(did: number, pasid: number, addr: number): boolean {
    return this.#c.lookup(cacheTag(did, pasid), did, addr) >= 0;
  }

  /** True when `rid`'s device TLB holds `addr` (pasid -1 = without PASID). */
  devtlbHas(rid: number, pasid: number, addr: number): boolean {
    return this.#c.lookupDev(rid, pasid < 0 ? NO_PASID_KEY : pasid, addr) >= 0;
  }

  /** True when the context cache holds `rid`. */
  contextCached(rid: number): boolean {
    return this.#c.ctxHas(rid);
  }

  /** True when the PASID cache holds (rid, pasid). */
  pasidCached(rid: number, pasid: number): boolean {
    return this.#c.pasidHas(rid, pasid);
  }
}
