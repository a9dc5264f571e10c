/**
 * @module
 * The intel-iommu driver model: probes CAP/ECAP through MMIO, builds root,
 * context and PASID tables in memory, runs queued invalidation, and serves
 * paging (first stage when FLTS, else second stage), identity (pass-through)
 * and blocked domains, as drivers/iommu/intel does (about v6.8–v6.12). It
 * talks to the hardware only through MMIO and memory.
 */

import {
  DomainType,
  type DomainType as DomainTypeT,
  type HwInfo,
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  type IommuCap,
  type IommuDomain,
  IommuError,
  type IommuKernelHooks,
  type IommuOpsWithHooks,
  type IommuPageResponse,
  type IopfFault,
  type IotlbGather,
  type Machine,
  type MmHandle,
  type PciDevice,
  type ResvRegion,
} from "@iommu-lab/core";
import { FSTS, GCMD, IQA_DW, PRS_PPR, PRS_PRO, REG, RTADDR_TTM_SCALABLE } from "../hw/registers.ts";
import { faultName } from "../hw/faults.ts";
import { PGTT_FL_ONLY, PGTT_NESTED, PGTT_PT, PGTT_SL_ONLY, QI_TYPE } from "../hw/structures.ts";
import { coreIoPgtableFactory, type PgtableFactory, type VtdPgtable } from "./pgtable.ts";

const TWO32 = 4294967296;
/** `FLPT_DEFAULT_DID`: identity and SVA domains. */
export const FLPT_DEFAULT_DID = 1;
/** `IDA_START_DID`. */
export const IDA_START_DID = 2;
/** Queue entries (`QI_LENGTH`). */
const QI_LENGTH = 256;
/** `PRQ_ORDER`: 2^4 pages. */
const PRQ_ORDER = 4;

/** Driver construction options. */
export interface VtdDriverOptions {
  /** Register window base on the machine bus. */
  mmioBase: number;
  /** Hardware instance name (interrupt lines are `<name>:fault|prq|inv`). */
  hwName: string;
  /** Called when a device is probed (the plugin puts the hardware in front of its DMA). */
  onProbe?: (dev: PciDevice) => void;
  /** Page-table builder (defaults to the built-in VT-d formats). */
  pgtableFactory?: PgtableFactory;
}

interface DevInfo {
  dev: PciDevice;
  pasidDir: number;
  pdts: number;
  dirEntries: number;
  ats: boolean;
  pri: boolean;
  /** pasid -> domain attached there (0 = RID_PASID). */
  domains: Map<number, VtdDomain>;
}

/** Where a domain is attached: a device and a PASID (0 = RID_PASID). */
export interface Attachment {
  /** The device. */
  dev: PciDevice;
  /** The PASID. */
  pasid: number;
}

/** `struct iommu_hwpt_vtd_s1`: a user first-stage table for a nested domain. */
export interface VtdS1Data {
  /** IOMMU_VTD_S1_SRE (1), IOMMU_VTD_S1_EAFE (2), IOMMU_VTD_S1_WPE (4). */
  flags: number;
  /** First-stage table (guest physical = parent IOVA). */
  pgtblAddr: number;
  /** 48 or 57. */
  addrWidth: number;
}

/** A VT-d domain (paging, identity, blocked, SVA or nested). */
export class VtdDomain implements IommuDomain {
  /** Domain type. */
  readonly type: DomainTypeT;
  /** Owning driver. */
  readonly owner: VtdDriver;
  /** Page sizes. */
  pgsizeBitmap: number;
  /** Aperture. */
  geometry: { apertureStart: number; apertureEnd: number; forceAperture: boolean };
  /** Domain ID (0 for blocked). */
  readonly did: number;
  /** First-stage page table (else second stage). */
  readonly firstStage: boolean;
  /** The page table (paging domains). */
  readonly pgtable: VtdPgtable | null;
  /** SVA domains: the CPU mm whose page table is the first stage. */
  mm?: MmHandle;
  /** Nested domains: the nest parent (second stage). */
  parent?: VtdDomain;
  /** Nested domains: the user's first-stage table, width and flags (`iommu_hwpt_vtd_s1`). */
  s1?: VtdS1Data;
  /** Nest parents: nested domains built on this one. */
  readonly nestedChildren: Set<VtdDomain> = new Set();
  /** Where it is attached (the kernel's cache tags). */
  readonly attachments: Attachment[] = [];
  /** Label. */
  readonly label: string;
  /** Inside unmapPages with a gather: walk flushes wait for iotlbSync (freed tables sit on the freelist). */
  deferWalkFlush = false;
  /** A walk flush was deferred: the next sync uses IH=0. */
  walkFlushPending = false;

  /** Built by the driver. */
  constructor(
    owner: VtdDriver,
    type: DomainTypeT,
    did: number,
    firstStage: boolean,
    pgtable: VtdPgtable | null,
    width: number,
  ) {
    this.owner = owner;
    this.type = type;
    this.did = did;
    this.firstStage = firstStage;
    this.pgtable = pgtable;
    this.pgsizeBitmap = pgtable?.pgsizeBitmap ?? 0;
    this.geometry = { apertureStart: 0, apertureEnd: 2 ** width - 1, forceAperture: true };
    const kind = type === DomainType.IDENTITY
      ? "identity"
      : type === DomainType.BLOCKED
      ? "blocked"
      : type === DomainType.SVA
      ? "sva"
      : type === DomainType.NESTED
      ? "nested"
      : "paging";
    this.label = `vtd-${kind}-${did}`;
  }

  /** `attach_dev`: route requests without PASID (RID_PASID) here. */
  attachDev(dev: PciDevice, _old: IommuDomain | null): void {
    if (this.type === DomainType.SVA) {
      throw new IommuError("EINVAL", "attach_dev", "an SVA domain attaches to PASIDs only");
    }
    this.owner.setPasidDomain(this, dev, 0);
  }

  /** `set_dev_pasid`. */
  setDevPasid(dev: PciDevice, pasid: number, _old: IommuDomain | null): void {
    if (pasid === 0) {
      throw new IommuError("EINVAL", "set_dev_pasid", "PASID 0 is the RID_PASID; use attach_dev");
    }
    this.owner.setPasidDomain(this, dev, pasid);
  }

  /** `map_pages`. */
  mapPages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): number {
    if (!this.pgtable) {
      throw new IommuError("EOPNOTSUPP", "map_pages", `${this.label} has no page table`);
    }
    if (iova + pgsize * pgcount - 1 > this.geometry.apertureEnd) {
      // intel_iommu_map: a range past the domain's address width is -EFAULT.
      throw new IommuError(
        "EFAULT",
        "map_pages",
        `iova range 0x${iova.toString(16)}+0x${(pgsize * pgcount).toString(16)} ends beyond ` +
          `the aperture 0x${this.geometry.apertureEnd.toString(16)}; map below it`,
      );
    }
    return this.pgtable.mapPages(iova, paddr, pgsize, pgcount, prot);
  }

  /** `unmap_pages`: clears leaves and gathers the range. */
  unmapPages(iova: number, pgsize: number, pgcount: number, gather: IotlbGather): number {
    if (!this.pgtable) return 0;
    this.deferWalkFlush = true;
    let n: number;
    try {
      n = this.pgtable.unmapPages(iova, pgsize, pgcount, gather);
    } finally {
      this.deferWalkFlush = false;
    }
    if (n > 0) gather.addPage(this, iova, n);
    return n;
  }

  /** `iotlb_sync_map`: in caching mode, invalidate the new range (the IOTLB may cache not-present). */
  iotlbSyncMap(iova: number, size: number): void {
    if (this.owner.cachingMode) this.owner.flushRange(this, iova, iova + size - 1);
  }

  /** `iotlb_sync`. */
  iotlbSync(gather: IotlbGather): void {
    // IH=1 (leaf only) when no page-table page was freed, as intel_iommu_tlb_sync does.
    const ih = gather.freelist.length === 0 && !this.walkFlushPending ? 1 : 0;
    this.walkFlushPending = false;
    if (!gather.empty) this.owner.flushRange(this, gather.start, gather.end, ih);
    // intel_iommu_tlb_sync: table pages unlinked by the unmap go back now
    // that no walk cache can reach them.
    // (Truncating an array is a runtime call that drops its storage: only when needed.)
    if (gather.freelist.length !== 0) {
      this.owner.freePages(gather.freelist);
      gather.freelist.length = 0;
    }
  }

  /** `flush_iotlb_all`. */
  flushIotlbAll(): void {
    this.owner.flushRange(this, 0, Number.MAX_SAFE_INTEGER);
  }

  /** `iova_to_phys`. */
  iovaToPhys(iova: number): number {
    return this.pgtable
      ? this.pgtable.iovaToPhys(iova)
      : this.type === DomainType.IDENTITY
      ? iova
      : 0;
  }

  /** `free`. */
  free(): void {
    if (this.attachments.length > 0) {
      throw new IommuError(
        "EBUSY",
        "domain_free",
        `${this.label} is still attached to ${this.attachments.length} device/PASID(s)`,
      );
    }
    if (this.nestedChildren.size > 0) {
      throw new IommuError(
        "EBUSY",
        "domain_free",
        `${this.label} is the parent of ${this.nestedChildren.size} nested domain(s)`,
      );
    }
    this.parent?.nestedChildren.delete(this);
    this.pgtable?.free();
    this.owner.releaseDid(this.did);
  }
}

/** The intel-iommu driver. */
export class VtdDriver implements IommuOpsWithHooks {
  /** Driver name. */
  readonly name = "intel-iommu";
  /** Page sizes (4K, 2M, 1G as the hardware allows). */
  pgsizeBitmap = 4096;
  /** `sm_supported`. */
  sm = false;
  /** `pasid_supported`. */
  pasidSupported = false;
  /** CAP.CM. */
  cachingMode = false;
  /** Static identity domain. */
  identityDomain!: VtdDomain;
  /** Static blocked domain. */
  blockedDomain!: VtdDomain;

  readonly #m: Machine;
  readonly #base: number;
  readonly #opts: VtdDriverOptions;
  readonly #factory: PgtableFactory;
  readonly #hi = new Uint32Array(1);
  #capLo = 0;
  #capHi = 0;
  #ecapLo = 0;
  #ecapHi = 0;
  #gcmd = 0;
  #root = 0;
  #qBase = 0;
  /**
   * Scratch list of the PASIDs a flushRange has already invalidated: the
   * first `#seenN` entries (a count, not `length = 0`, which is a runtime
   * call that frees the storage the next push reallocates).
   */
  readonly #seen: number[] = [];
  #seenN = 0;
  /**
   * Invalidation-queue errors `qi_check_fault` met, oldest first, as the
   * kernel's qi_dump_fault reports them (kind and the IQERCD detail):
   * `IQE reason N`, `ITE SID 0xS`, `ICE SID 0xS`.
   */
  readonly qiFaults: string[] = [];
  #qTail = 0;
  /** The tail last written to IQT: the hardware's head too, unless `#qHeadUnknown`. */
  #qHwTail = 0;
  /** A queue error was seen and no clean sync since: read IQH for the free-space check. */
  #qHeadUnknown = false;
  #qShift = 4;
  /** Queue size in bytes minus one (a power of two): the tail's wrap mask. */
  #qMask = 0;
  /** The queue's pages' words, backed on first use (a descriptor lies in one page). */
  #qPages: (Uint32Array | null)[] = [];
  #qStatus = 0;
  /** The wait-status address's halves (fixed at init), for the wait descriptor. */
  #qStatusLo = 0;
  #qStatusHi = 0;
  /** The status page's words once the hardware has backed it (its first write). */
  #qStatusWords: Uint32Array | null = null;
  /** Bus addresses of IQT and FSTS (fixed at init). */
  #iqtAddr = 0;
  #fstsAddr = 0;
  #qSeq = 0;
  #prq = 0;
  readonly #ctxTables = new Map<number, number>(); // bus*2+half -> table
  readonly #devs = new Map<PciDevice, DevInfo>();
  readonly #dids = new Set<number>();
  #ndoms = 0;
  #hooks: IommuKernelHooks | null = null;
  #fsLevels = 4;
  #ssAgaw = 2;
  /** Page requests read from the queue. */
  pageRequestsSeen = 0;

  /** Bind to the hardware at `opts.mmioBase` and initialise it (tables, QI, PRQ, TE). */
  constructor(machine: Machine, opts: VtdDriverOptions) {
    this.#m = machine;
    this.#base = opts.mmioBase;
    this.#opts = opts;
    this.#factory = opts.pgtableFactory ?? coreIoPgtableFactory;
    this.#init();
  }

  // --- MMIO helpers
  #r32(off: number): number {
    return this.#m.bus.read32(this.#base + off);
  }
  #w32(off: number, v: number): void {
    this.#m.bus.write32(this.#base + off, v >>> 0);
  }
  #w64(off: number, v: number): void {
    // v >>> 0 is v mod 2^32 for a non-negative integer below 2^53 (no floating modulo).
    this.#m.bus.write64Halves(this.#base + off, v >>> 0, Math.floor(v / TWO32) >>> 0);
  }
  #capBit(n: number): number {
    return n < 32 ? (this.#capLo >>> n) & 1 : (this.#capHi >>> (n - 32)) & 1;
  }
  #ecapBit(n: number): number {
    return n < 32 ? (this.#ecapLo >>> n) & 1 : (this.#ecapHi >>> (n - 32)) & 1;
  }

  #init(): void {
    const bus = this.#m.bus;
    this.#capLo = bus.read64Halves(this.#base + REG.CAP, this.#hi);
    this.#capHi = this.#hi[0];
    this.#ecapLo = bus.read64Halves(this.#base + REG.ECAP, this.#hi);
    this.#ecapHi = this.#hi[0];
    const smts = this.#ecapBit(43) === 1;
    this.sm = smts;
    this.pasidSupported = smts && this.#ecapBit(40) === 1;
    this.cachingMode = this.#capBit(7) === 1;
    if (!this.#ecapBit(1)) {
      throw new IommuError(
        "ENODEV",
        "intel_iommu_init",
        "ECAP.QI is clear; this driver model needs queued invalidation",
      );
    }
    this.#ndoms = 2 ** (4 + 2 * (this.#capLo & 7));
    const sagaw = (this.#capLo >>> 8) & 0x1f;
    const mgaw = ((this.#capLo >>> 16) & 0x3f) + 1;
    this.#ssAgaw = 0;
    for (let a = 3; a >= 1; a--) {
      if ((sagaw >> a) & 1 && 30 + 9 * a <= mgaw) {
        this.#ssAgaw = a;
        break;
      }
    }
    if (this.#ssAgaw === 0) {
      throw new IommuError(
        "ENODEV",
        "intel_iommu_init",
        `no usable AGAW in SAGAW 0x${sagaw.toString(16)}`,
      );
    }
    const useFs = this.sm && this.#ecapBit(47) === 1;
    const sllps = (this.#capHi >>> 2) & 0xf;
    this.pgsizeBitmap = 4096 + (useFs || (sllps & 1) ? 2097152 : 0) +
      ((useFs ? this.#capBit(56) : (sllps >> 1) & 1) ? 1073741824 : 0);
    this.#fsLevels = 4;
    // Root table.
    const pages = this.#m.pages;
    this.#root = pages.allocPage();
    this.#w64(REG.RTADDR, this.#root + (this.sm ? RTADDR_TTM_SCALABLE << 10 : 0));
    this.#w32(REG.GCMD, this.#gcmd | GCMD.SRTP);
    if (!(this.#r32(REG.GSTS) & GCMD.SRTP)) {
      throw new IommuError("EIO", "iommu_set_root_entry", "GSTS.RTPS did not set");
    }
    // Queued invalidation.
    this.#qShift = 4 + (smts ? 1 : 0);
    const qPages = (QI_LENGTH << this.#qShift) / 4096;
    this.#qBase = pages.allocPages(Math.log2(qPages));
    this.#qMask = QI_LENGTH * (1 << this.#qShift) - 1;
    this.#qPages = new Array<Uint32Array | null>(qPages).fill(null);
    this.#qStatus = pages.allocPage();
    this.#qStatusLo = this.#qStatus >>> 0;
    this.#qStatusHi = Math.floor(this.#qStatus / TWO32);
    this.#iqtAddr = this.#base + REG.IQT;
    this.#fstsAddr = this.#base + REG.FSTS;
    this.#w64(REG.IQT, 0);
    this.#w64(REG.IQA, this.#qBase + (smts ? IQA_DW : 0) + Math.log2(qPages));
    this.#gcmd |= GCMD.QIE;
    this.#w32(REG.GCMD, this.#gcmd);
    if (!(this.#r32(REG.GSTS) & GCMD.QIE)) {
      throw new IommuError("EIO", "dmar_enable_qi", "GSTS.QIES did not set");
    }
    // Fault interrupts.
    this.#m.irq.register(`${this.#opts.hwName}:fault`, () => this.#faultIrq());
    this.#w32(REG.FECTL, 0);
    // Page request queue.
    if (this.sm && this.#ecapBit(29)) {
      this.#prq = pages.allocPages(PRQ_ORDER);
      this.#w64(REG.PQH, 0);
      this.#w64(REG.PQT, 0);
      this.#w64(REG.PQA, this.#prq + PRQ_ORDER);
      this.#m.irq.register(`${this.#opts.hwName}:prq`, () => this.#prqIrq());
      this.#w32(REG.PECTL, 0);
    }
    // Global invalidations, then translation on.
    this.#qiCc(1, 0, 0, 0);
    if (this.sm) this.#qiDesc(QI_TYPE.PC | (3 << 4), 0, 0, 0);
    this.#qiDesc(QI_TYPE.IOTLB | (1 << 4), 0, 0, 0);
    this.#qiSync();
    this.#gcmd |= GCMD.TE;
    this.#w32(REG.GCMD, this.#gcmd);
    if (!(this.#r32(REG.GSTS) & GCMD.TE)) {
      throw new IommuError("EIO", "iommu_enable_translation", "GSTS.TES did not set");
    }
    this.#dids.add(0);
    this.#dids.add(FLPT_DEFAULT_DID);
    this.identityDomain = new VtdDomain(
      this,
      DomainType.IDENTITY,
      FLPT_DEFAULT_DID,
      false,
      null,
      52,
    );
    this.blockedDomain = new VtdDomain(this, DomainType.BLOCKED, 0, false, null, 0);
  }

  // --- queued invalidation

  #qiDesc(w0: number, w1: number, w2: number, w3: number): void {
    if (this.#m.trace.observed) {
      // The kernel's intel_iommu:qi_submit tracepoint (qw0, qw1).
      this.#m.trace.emit(this.name, "qi_submit", {
        qw0: (BigInt(w1 >>> 0) << 32n) | BigInt(w0 >>> 0),
        qw1: (BigInt(w3 >>> 0) << 32n) | BigInt(w2 >>> 0),
      });
    }
    const dsz = 1 << this.#qShift;
    const next = (this.#qTail + dsz) & this.#qMask;
    // Free space as the kernel's free_cnt: with no error pending the
    // hardware has consumed everything up to the last IQT write.
    const head = this.#qHeadUnknown ? this.#r32(REG.IQH) & 0x7fff0 : this.#qHwTail;
    if (next === head) {
      // Queue full: let the hardware catch up.
      this.#w64(REG.IQT, this.#qTail);
      this.#qHwTail = this.#qTail;
      this.#qHeadUnknown = true; // an error may have stopped it: ask until the next sync
    }
    const mem = this.#m.mem;
    // The queue is page-aligned: a descriptor lies in one page.
    const pi = this.#qTail >>> 12;
    let p = this.#qPages[pi];
    if (p === null) p = this.#qPages[pi] = mem.backPageWords(this.#qBase / 4096 + pi);
    const o = (this.#qTail & 0xfff) >>> 2;
    p[o] = w0;
    p[o + 1] = w1;
    p[o + 2] = w2;
    p[o + 3] = w3;
    if (dsz === 32) {
      p[o + 4] =
        p[o + 5] =
        p[o + 6] =
        p[o + 7] =
          0;
    }
    mem.stats.writes += dsz >>> 2;
    this.#qTail = next;
  }

  /** Append a wait descriptor, submit, and check for queue errors (`qi_submit_sync`). */
  #qiSync(): void {
    const seq = (++this.#qSeq) >>> 0;
    this.#qiDesc(QI_TYPE.IWD | (1 << 5) | (1 << 6), seq, this.#qStatusLo, this.#qStatusHi);
    // The tail is below 2^19: the high half of IQT is 0.
    const bus = this.#m.bus;
    bus.write64Halves(this.#iqtAddr, this.#qTail, 0);
    this.#qHwTail = this.#qTail;
    const fsts = bus.read32(this.#fstsAddr);
    // IQE and ITE stop the queue; ICE does not.
    this.#qHeadUnknown = (fsts & (FSTS.IQE | FSTS.ITE)) !== 0;
    if (fsts & (FSTS.IQE | FSTS.ITE | FSTS.ICE)) this.#qiDumpFault(fsts);
    if (fsts & FSTS.IQE) {
      // qi_check_fault: overwrite the bad descriptor (at IQH) with the wait
      // descriptor, then clear IQE so the hardware resumes past it.
      const dsz = 1 << this.#qShift;
      const qsize = QI_LENGTH * dsz;
      const bad = this.#qBase + (this.#r32(REG.IQH) & 0x7fff0);
      const wait = this.#qBase + (this.#qTail - dsz + qsize) % qsize;
      const mem = this.#m.mem;
      for (let i = 0; i < dsz; i += 4) mem.write32(bad + i, mem.read32(wait + i));
      this.#w32(REG.FSTS, FSTS.IQE);
      throw new IommuError(
        "EINVAL",
        "qi_submit_sync",
        "invalidation queue error (IQE): a descriptor was malformed",
      );
    }
    if (fsts & FSTS.ITE) {
      this.#w32(REG.FSTS, FSTS.ITE);
      throw new IommuError(
        "ETIMEDOUT",
        "qi_submit_sync",
        "device-TLB invalidation timed out (ITE)",
      );
    }
    if (fsts & FSTS.ICE) {
      // An unexpected or invalid device-TLB invalidation completion: the
      // invalidations themselves completed, so only the status is cleared
      // and the submission succeeds (the kernel logs it and returns 0).
      this.#w32(REG.FSTS, FSTS.ICE);
    }
    if (this.#qStatusRead() !== seq) {
      throw new IommuError("EIO", "qi_submit_sync", "wait descriptor status was not written");
    }
  }

  /** The wait-status word (counted as one memory read, as read32 would). */
  #qStatusRead(): number {
    const mem = this.#m.mem;
    let p = this.#qStatusWords;
    if (p === null) {
      p = this.#qStatusWords = mem.pageWords(this.#qStatus / 4096);
      if (p === null) return mem.read32(this.#qStatus);
    }
    mem.stats.reads++;
    return p[0];
  }

  /** qi_dump_fault: record each queue error FSTS shows with its IQERCD detail. */
  #qiDumpFault(fsts: number): void {
    const lo = this.#r32(REG.IQERCD), hi = this.#r32(REG.IQERCD + 4);
    if (fsts & FSTS.IQE) this.qiFaults.push(`IQE reason ${lo & 0xf}`);
    if (fsts & FSTS.ITE) this.qiFaults.push(`ITE SID 0x${(hi & 0xffff).toString(16)}`);
    if (fsts & FSTS.ICE) this.qiFaults.push(`ICE SID 0x${(hi >>> 16).toString(16)}`);
  }

  #qiCc(gran: number, did: number, sid: number, fm: number): void {
    this.#qiDesc(QI_TYPE.CC | (gran << 4) | (did << 16), sid | (fm << 16), 0, 0);
  }

  // --- probe

  /** `probe_device`: claim every PCI function on segment 0; write its SM context entry. */
  probeDevice(dev: PciDevice): void {
    if (dev.segment !== 0) {
      throw new IommuError(
        "ENODEV",
        "probe_device",
        `${dev.bdf} is not behind this IOMMU (segment 0 only)`,
      );
    }
    if (this.#devs.has(dev)) return;
    const ats = dev.ats && this.#ecapBit(2) === 1;
    const pri = dev.pri && ats && this.#ecapBit(29) === 1 && this.sm;
    const maxPasids = this.maxPasidsFor(dev);
    const info: DevInfo = {
      dev,
      pasidDir: 0,
      pdts: 0,
      dirEntries: 0,
      ats,
      pri,
      domains: new Map(),
    };
    const ctxTable = this.#contextTable(dev.bus, dev.devfn);
    if (this.sm) {
      const entries = Math.max(512, maxPasids / 64);
      const order = Math.log2((entries * 8) / 4096);
      info.pasidDir = this.#m.pages.allocPages(order);
      info.dirEntries = entries;
      info.pdts = Math.log2(entries) - 7;
      // intel_pasid_setup_sm_context: clear, RID_PASID, dir pointer + PDTS, DTE, PASIDE, PRE, P.
      const ce = ctxTable + (dev.devfn & 0x7f) * 32;
      const mem = this.#m.mem;
      for (let i = 0; i < 8; i++) mem.write32(ce + 4 * i, 0);
      let lo = (info.pasidDir % TWO32) | (info.pdts << 9);
      if (ats) lo |= 4;
      if (maxPasids > 0) lo |= 8;
      if (pri) lo |= 16;
      mem.write32(ce + 8, 0); // RID_PASID = IOMMU_NO_PASID
      mem.write32(ce + 4, Math.floor(info.pasidDir / TWO32));
      mem.write32(ce, (lo | 1) >>> 0);
      if (this.cachingMode) {
        this.#qiCc(3, 0, dev.rid, 0);
        this.#qiDesc(QI_TYPE.PC | (3 << 4), 0, 0, 0);
        this.#qiDesc(QI_TYPE.IOTLB | (1 << 4), 0, 0, 0);
        this.#qiSync();
      }
    }
    dev.iommu ??= { priv: null, maxPasids: 0, groupId: -1 };
    dev.iommu.maxPasids = maxPasids;
    this.#devs.set(dev, info);
    this.#opts.onProbe?.(dev);
  }

  /** `dev->iommu->max_pasids` this driver gives `dev`. */
  maxPasidsFor(dev: PciDevice): number {
    if (!this.pasidSupported || dev.pasidBits === 0) return 0;
    const pss = (this.#ecapHi >>> 3) & 0x1f;
    return Math.min(2 ** dev.pasidBits, 2 ** (pss + 1));
  }

  /** `max_pasids` as set at probe. */
  maxPasids(dev: PciDevice): number {
    return this.#devs.has(dev) ? this.maxPasidsFor(dev) : 0;
  }

  #contextTable(bus: number, devfn: number): number {
    const half = this.sm && devfn >= 128 ? 1 : 0;
    const key = bus * 2 + half;
    let t = this.#ctxTables.get(key);
    if (t !== undefined) return t;
    t = this.#m.pages.allocPage();
    this.#ctxTables.set(key, t);
    const ra = this.#root + bus * 16 + half * 8;
    this.#m.mem.write32(ra + 4, Math.floor(t / TWO32));
    this.#m.mem.write32(ra, ((t % TWO32) | 1) >>> 0);
    return t;
  }

  /** `release_device`: tear down every PASID entry and the context entry. */
  releaseDevice(dev: PciDevice): void {
    const info = this.#devs.get(dev);
    if (!info) return;
    for (const pasid of [...info.domains.keys()]) {
      this.setPasidDomain(this.blockedDomain, dev, pasid);
    }
    if (this.sm) {
      const ce = this.#contextTable(dev.bus, dev.devfn) + (dev.devfn & 0x7f) * 32;
      this.#m.mem.write32(ce, 0);
      this.#qiCc(3, 0, dev.rid, 0);
      this.#qiDesc(QI_TYPE.PC | (3 << 4), 0, 0, 0);
      this.#qiDesc(QI_TYPE.IOTLB | (1 << 4), 0, 0, 0);
      this.#qiSync();
    }
    this.#devs.delete(dev);
  }

  // --- domains

  /** `capable`. */
  /** `hw_info`: `struct iommu_hw_info_vtd` {flags, __reserved, cap_reg, ecap_reg}. */
  hwInfo(_dev: PciDevice): HwInfo {
    return {
      type: "INTEL_VTD",
      data: Uint32Array.from([0, 0, this.#capLo, this.#capHi, this.#ecapLo, this.#ecapHi]),
    };
  }

  /**
   * `domain_alloc_sva`: a first-stage domain over the mm's CPU page table,
   * with DID `FLPT_DEFAULT_DID` (as intel/svm.c); attached per PASID only.
   */
  domainAllocSva(dev: PciDevice, mm: MmHandle): VtdDomain {
    if (!this.sm || !this.#ecapBit(47) || this.maxPasidsFor(dev) === 0) {
      throw new IommuError(
        "EOPNOTSUPP",
        "domain_alloc_sva",
        `${dev.bdf}: SVA needs scalable mode, first-stage translation and a PASID-capable device`,
      );
    }
    if (mm.levels !== 4 && !(mm.levels === 5 && this.#capBit(60))) {
      throw new IommuError(
        "EINVAL",
        "domain_alloc_sva",
        `mm has ${mm.levels} levels; 4 (or 5 with FL5LP) allowed`,
      );
    }
    const d = new VtdDomain(
      this,
      DomainType.SVA,
      FLPT_DEFAULT_DID,
      true,
      null,
      mm.levels === 5 ? 52 : 47,
    );
    d.mm = mm;
    return d;
  }

  /**
   * `domain_alloc_nested` (iommufd `IOMMU_HWPT_DATA_VTD_S1`): a user first
   * stage over a nest-parent second-stage domain, with its own DID.
   */
  domainAllocNested(
    _dev: PciDevice,
    parent: IommuDomain,
    flags: number,
    userData: unknown,
  ): VtdDomain {
    const op = "domain_alloc_nested";
    if (!this.sm || !this.#ecapBit(26)) {
      throw new IommuError("EOPNOTSUPP", op, "nesting needs scalable mode and ECAP.NEST");
    }
    if (flags !== 0) {
      throw new IommuError("EOPNOTSUPP", op, `flags 0x${flags.toString(16)}: none allowed`);
    }
    if (
      !(parent instanceof VtdDomain) || parent.owner !== this || !parent.pgtable ||
      parent.firstStage
    ) {
      throw new IommuError(
        "EINVAL",
        op,
        "the parent must be a second-stage paging domain of this IOMMU (NEST_PARENT)",
      );
    }
    const d = userData as Partial<VtdS1Data> | null;
    if (!d || typeof d.pgtblAddr !== "number" || typeof d.addrWidth !== "number") {
      throw new IommuError("EINVAL", op, "user data must be { flags, pgtblAddr, addrWidth }");
    }
    const f = d.flags ?? 0;
    if (f & ~7) {
      throw new IommuError(
        "EOPNOTSUPP",
        op,
        `S1 flags 0x${f.toString(16)}: allowed SRE 1, EAFE 2, WPE 4`,
      );
    }
    if (d.addrWidth !== 48 && !(d.addrWidth === 57 && this.#capBit(60))) {
      throw new IommuError(
        "EINVAL",
        op,
        `addr_width ${d.addrWidth}: 48 (or 57 with FL5LP) allowed`,
      );
    }
    if (d.pgtblAddr % 4096 !== 0) {
      throw new IommuError("EINVAL", op, "pgtbl_addr must be 4 KiB aligned");
    }
    const did = this.#allocDid(op);
    const dom = new VtdDomain(
      this,
      DomainType.NESTED,
      did,
      true,
      null,
      d.addrWidth === 57 ? 52 : 47,
    );
    dom.parent = parent;
    dom.s1 = { flags: f, pgtblAddr: d.pgtblAddr, addrWidth: d.addrWidth };
    this.#dids.add(did);
    parent.nestedChildren.add(dom);
    return dom;
  }

  capable(_dev: PciDevice, cap: IommuCap): boolean {
    if (cap === "CACHE_COHERENCY" || cap === "DEFERRED_FLUSH") return true;
    if (cap === "ENFORCE_CACHE_COHERENCY") return this.#ecapBit(7) === 1;
    return false;
  }

  /** `domain_alloc_paging_flags`: first stage when FLTS (else second stage). */
  domainAllocPaging(_dev: PciDevice | null, flags: number): VtdDomain {
    if (flags & ~0xf) {
      throw new IommuError(
        "EOPNOTSUPP",
        "domain_alloc_paging_flags",
        `unknown flags 0x${flags.toString(16)}`,
      );
    }
    const nestParent = (flags & 1) !== 0;
    const useFs = this.sm && this.#ecapBit(47) === 1 && !nestParent;
    if (!useFs && !(this.#ecapBit(46) === 1 || !this.sm)) {
      throw new IommuError(
        "EOPNOTSUPP",
        "domain_alloc_paging_flags",
        "neither first- nor second-stage translation is supported",
      );
    }
    const did = this.#allocDid("domain_alloc_paging_flags");
    const levels = useFs ? this.#fsLevels : this.#ssAgaw + 2;
    const bitmap = useFs
      ? 4096 + 2097152 + (this.#capBit(56) ? 1073741824 : 0)
      : 4096 + ((this.#capHi >>> 2) & 1 ? 2097152 : 0) + ((this.#capHi >>> 3) & 1 ? 1073741824 : 0);
    let domain: VtdDomain | null = null;
    const tlb = {
      tlbFlushAll: () => domain && this.flushRange(domain, 0, Number.MAX_SAFE_INTEGER),
      tlbFlushWalk: (iova: number, size: number) => {
        if (!domain) return;
        if (domain.deferWalkFlush) domain.walkFlushPending = true;
        else this.flushRange(domain, iova, iova + size - 1, 0);
      },
    };
    const pt = this.#factory(useFs ? "FS" : "SS", levels, bitmap, {
      mem: this.#m.mem,
      pages: this.#m.pages,
    }, tlb);
    this.#dids.add(did);
    // First-stage input addresses are canonical: the kernel leaves bit N-1
    // out of the aperture (2^47 - 1 with 4 levels), so IOVAs stay in the
    // lower half. The model's addresses stop at 52 bits.
    domain = new VtdDomain(
      this,
      DomainType.UNMANAGED,
      did,
      useFs,
      pt,
      Math.min(12 + 9 * levels - (useFs ? 1 : 0), 52),
    );
    return domain;
  }

  /** A free domain ID from IDA_START_DID (not yet reserved), or ENOSPC. */
  #allocDid(op: string): number {
    for (let d = IDA_START_DID; d < this.#ndoms; d++) if (!this.#dids.has(d)) return d;
    throw new IommuError("ENOSPC", op, `all ${this.#ndoms} domain IDs are in use`);
  }

  /** Return page-table pages to the kernel allocator (`iommu_put_pages_list`). */
  freePages(list: readonly number[]): void {
    for (const p of list) if (this.#m.pages.isAllocated(p)) this.#m.pages.free(p);
  }

  /** Give a DID back. */
  releaseDid(did: number): void {
    if (did >= IDA_START_DID) this.#dids.delete(did);
  }

  /** `get_resv_regions`: the x86 MSI window. */
  getResvRegions(_dev: PciDevice): ResvRegion[] {
    return [{ start: 0xfee00000, length: 0x100000, prot: 0, type: "MSI" }];
  }

  /** Receive the kernel hooks. */
  setKernelHooks(hooks: IommuKernelHooks): void {
    this.#hooks = hooks;
  }

  /**
   * Route `pasid` of `dev` to `domain` (attach for RID_PASID 0, set_dev_pasid
   * otherwise). Validates first; an existing entry is torn down (P cleared,
   * then PASID cache, IOTLB and device TLB flushed in the kernel's order)
   * before the new entry is written with P last.
   */
  setPasidDomain(domain: VtdDomain, dev: PciDevice, pasid: number): void {
    const info = this.#devs.get(dev);
    if (!info) {
      throw new IommuError("ENODEV", "attach_dev", `${dev.bdf} was not probed by ${this.name}`);
    }
    if (!this.sm) {
      if (pasid !== 0) {
        throw new IommuError(
          "EOPNOTSUPP",
          "set_dev_pasid",
          "PASIDs need scalable mode (ECAP.SMTS)",
        );
      }
      this.#legacyAttach(domain, info);
      return;
    }
    if (pasid !== 0 && pasid >= this.maxPasidsFor(dev)) {
      throw new IommuError(
        "EINVAL",
        "set_dev_pasid",
        `PASID ${pasid} is beyond ${dev.bdf}'s max_pasids ${this.maxPasidsFor(dev)}`,
      );
    }
    if (domain.type === DomainType.IDENTITY && !this.#ecapBit(6)) {
      throw new IommuError("EINVAL", "attach_dev", "ECAP.PT is clear: no pass-through");
    }
    // Locate (allocating if needed, before any change) the PASID table.
    const dirIdx = Math.floor(pasid / 64);
    const mem = this.#m.mem;
    const de = info.pasidDir + dirIdx * 8;
    let table: number;
    if (mem.read32(de) & 1) {
      table = (mem.read32(de + 4) & 0xfffff) * TWO32 + ((mem.read32(de) & 0xfffff000) >>> 0);
    } else {
      if (domain.type === DomainType.BLOCKED) table = -1;
      else {
        table = this.#m.pages.allocPage();
        mem.write32(de + 4, Math.floor(table / TWO32));
        mem.write32(de, ((table % TWO32) | 1) >>> 0);
      }
    }
    const pe = table + (pasid % 64) * 64;
    const old = info.domains.get(pasid);
    if (old === domain) return;
    if (old && table >= 0) {
      // intel_pasid_tear_down_entry.
      const w0 = mem.read32(pe);
      const pgtt = (w0 >>> 6) & 7;
      mem.write32(pe, w0 & ~1);
      this.#qiDesc(QI_TYPE.PC | (1 << 4) | (old.did << 16), pasid, 0, 0);
      if (pgtt === PGTT_PT || pgtt === PGTT_FL_ONLY) {
        this.#qiDesc(QI_TYPE.EIOTLB | (2 << 4) | (old.did << 16), pasid, 0, 0);
      } else this.#qiDesc(QI_TYPE.IOTLB | (2 << 4) | (old.did << 16), 0, 0, 0);
      if (info.ats) this.#devtlbAll(info, pasid);
      this.#qiSync();
      for (let i = 0; i < 16; i++) mem.write32(pe + 4 * i, 0);
      const k = old.attachments.findIndex((a) => a.dev === dev && a.pasid === pasid);
      if (k >= 0) old.attachments.splice(k, 1);
      info.domains.delete(pasid);
    }
    if (domain.type === DomainType.BLOCKED) return;
    // Write the new entry, P last.
    const w = new Uint32Array(16);
    if (domain.type === DomainType.IDENTITY) {
      w[0] = (this.#ssAgaw << 2) | (PGTT_PT << 6);
      w[2] = FLPT_DEFAULT_DID;
    } else if (domain.type === DomainType.NESTED) {
      // intel_pasid_setup_nested: FS from the user, SS from the parent.
      const s1 = domain.s1!;
      const ss = domain.parent!.pgtable!;
      w[0] = ((ss.root % TWO32) >>> 0) | ((ss.levels - 2) << 2) | (PGTT_NESTED << 6);
      w[1] = Math.floor(ss.root / TWO32);
      w[2] = domain.did | (1 << 23);
      w[4] = ((s1.pgtblAddr % TWO32) >>> 0) | (s1.flags & 1) | (s1.addrWidth === 57 ? 1 << 2 : 0) |
        ((s1.flags & 4) ? 1 << 4 : 0) | ((s1.flags & 2) ? 1 << 7 : 0);
      w[5] = Math.floor(s1.pgtblAddr / TWO32);
    } else if (domain.firstStage) {
      const root = domain.mm ? domain.mm.pgdPhys : domain.pgtable!.root;
      const levels = domain.mm ? domain.mm.levels : domain.pgtable!.levels;
      w[4] = ((root % TWO32) >>> 0) | (levels === 5 ? 1 << 2 : 0);
      w[5] = Math.floor(root / TWO32);
      w[0] = (this.#ssAgaw << 2) | (PGTT_FL_ONLY << 6);
      w[2] = domain.did | (1 << 23); // DID, PWSNP
    } else {
      const root = domain.pgtable!.root;
      w[0] = ((root % TWO32) >>> 0) | ((domain.pgtable!.levels - 2) << 2) | (PGTT_SL_ONLY << 6);
      w[1] = Math.floor(root / TWO32);
      w[2] = domain.did | (1 << 23);
    }
    for (let i = 15; i >= 1; i--) mem.write32(pe + 4 * i, w[i]);
    mem.write32(pe, (w[0] | 1) >>> 0);
    if (this.cachingMode) {
      // pasid_flush_caches in caching mode.
      this.#qiDesc(QI_TYPE.PC | (1 << 4) | (domain.did << 16), pasid, 0, 0);
      if (domain.firstStage || domain.type === DomainType.IDENTITY) {
        this.#qiDesc(QI_TYPE.EIOTLB | (2 << 4) | (domain.did << 16), pasid, 0, 0);
      } else this.#qiDesc(QI_TYPE.IOTLB | (2 << 4) | (domain.did << 16), 0, 0, 0);
      this.#qiSync();
    }
    info.domains.set(pasid, domain);
    domain.attachments.push({ dev, pasid });
  }

  /**
   * Legacy mode (`domain_context_mapping_one` after `device_block_translation`):
   * a present entry is cleared and flushed (context cache device-selective,
   * IOTLB domain-selective for the old DID, device TLB), then the new entry
   * is written with P last: TT pass-through for identity, else multi-level
   * (device-IOTLB for ATS devices), SLPTPTR, AW and DID.
   */
  #legacyAttach(domain: VtdDomain, info: DevInfo): void {
    const dev = info.dev;
    if (
      domain.type !== DomainType.BLOCKED && domain.type !== DomainType.IDENTITY && domain.firstStage
    ) {
      throw new IommuError(
        "EINVAL",
        "attach_dev",
        "a first-stage domain cannot be used in legacy mode",
      );
    }
    if (domain.type === DomainType.IDENTITY && !this.#ecapBit(6)) {
      throw new IommuError("EINVAL", "attach_dev", "ECAP.PT is clear: no pass-through");
    }
    const old = info.domains.get(0);
    if (old === domain) return;
    const mem = this.#m.mem;
    const ce = this.#contextTable(dev.bus, dev.devfn) + dev.devfn * 16;
    if (old) {
      mem.write32(ce, 0);
      this.#qiCc(3, old.did, dev.rid, 0);
      this.#qiDesc(QI_TYPE.IOTLB | (2 << 4) | (old.did << 16), 0, 0, 0);
      if (info.ats) this.#devtlbAll(info, 0);
      this.#qiSync();
      for (let i = 1; i < 4; i++) mem.write32(ce + 4 * i, 0);
      const k = old.attachments.findIndex((a) => a.dev === dev);
      if (k >= 0) old.attachments.splice(k, 1);
      info.domains.delete(0);
    }
    if (domain.type === DomainType.BLOCKED) return;
    let lo: number;
    let hi = 0;
    let aw = this.#ssAgaw;
    if (domain.type === DomainType.IDENTITY) {
      lo = 2 << 2; // TT = pass-through
    } else {
      const root = domain.pgtable!.root;
      lo = ((root % TWO32) | ((info.ats ? 1 : 0) << 2)) >>> 0;
      hi = Math.floor(root / TWO32);
      aw = domain.pgtable!.levels - 2;
    }
    mem.write32(ce + 12, 0);
    mem.write32(ce + 8, (aw | (domain.did << 8)) >>> 0);
    mem.write32(ce + 4, hi);
    mem.write32(ce, (lo | 1) >>> 0);
    if (this.cachingMode) {
      this.#qiCc(3, 0, dev.rid, 0);
      this.#qiDesc(QI_TYPE.IOTLB | (2 << 4) | (domain.did << 16), 0, 0, 0);
      this.#qiSync();
    }
    info.domains.set(0, domain);
    domain.attachments.push({ dev, pasid: 0 });
  }

  #devtlbAll(info: DevInfo, pasid: number): void {
    const sid = info.dev.rid;
    // Whole address space: S=1 with every address bit below 63 set.
    if (pasid === 0) {
      this.#qiDesc(
        QI_TYPE.DIOTLB | ((sid & 0xf) << 12),
        (sid | (((sid >>> 4) & 0xfff) << 20)) >>> 0,
        0xfffff001,
        0x7fffffff,
      );
    } else {this.#qiDesc(
        QI_TYPE.DEIOTLB | ((sid & 0xf) << 12) | (sid << 16),
        (pasid | (((sid >>> 4) & 0xfff) << 20)) >>> 0,
        0xfffff800,
        0x7fffffff,
      );}
  }

  /**
   * `cache_tag_flush_range`: invalidate `[start, end]` for every place the
   * domain is attached: PASID-based IOTLB (first stage) or IOTLB PSI/DSI
   * (second stage) with the aligned AM, then device TLBs, then wait.
   */
  flushRange(domain: VtdDomain, start: number, end: number, ih = 0): void {
    const nested = domain.nestedChildren.size !== 0;
    let users = domain.attachments.length;
    if (nested) { for (const c of domain.nestedChildren) users += c.attachments.length; }
    if (users === 0) return;
    const all = end >= Number.MAX_SAFE_INTEGER;
    let addr = 0;
    let mask = 52;
    if (!all && end - start < 4096 && (start & 0xfff) <= (end & 0xfff)) {
      // One page (the strict unmap's case): AM 0 at the page's address.
      mask = 0;
      addr = start - (start & 0xfff);
    } else if (!all) {
      const pfn = Math.floor(start / 4096);
      const pages = Math.floor(end / 4096) - pfn + 1;
      // The smallest power of two >= pages (no log2/pow on this path).
      let aligned = 1;
      mask = 0;
      while (aligned < pages) {
        aligned *= 2;
        mask++;
      }
      if (pfn % aligned !== 0) {
        const endPfn = pfn + pages - 1;
        // Lowest bit above `mask` where pfn and endPfn agree from there up.
        while (mask < 52 && Math.floor(pfn / aligned) !== Math.floor(endPfn / aligned)) {
          mask++;
          aligned *= 2;
        }
      }
      addr = Math.floor(pfn / aligned) * aligned * 4096;
    }
    // PASIDs already flushed for this DID (-1: the whole second stage); few, so an array.
    this.#seenN = 0;
    const atts = domain.attachments;
    for (let i = 0; i < atts.length; i++) {
      this.#flushTag(domain.did, domain.firstStage, atts[i], all, addr, mask, ih);
    }
    // A nest parent's second stage also backs its nested children (cache
    // tags of type NESTING_IOTLB/DEVTLB): IOTLB invalidation with their DIDs.
    if (nested) {
      for (const child of domain.nestedChildren) {
        this.#seenN = 0;
        for (const a of child.attachments) {
          // The device TLB caches nested results by IOVA: flush it whole (NESTING_DEVTLB).
          this.#flushTag(child.did, false, a, all, addr, mask, ih, true);
        }
      }
    }
    this.#qiSync();
  }

  /** Whether `flushRange` has already invalidated `pasid` (-1: the second stage). */
  #seenHas(pasid: number): boolean {
    const seen = this.#seen;
    for (let i = 0; i < this.#seenN; i++) if (seen[i] === pasid) return true;
    return false;
  }

  /** Record `pasid` as invalidated by this `flushRange`. */
  #seenAdd(pasid: number): void {
    if (this.#seenN < this.#seen.length) this.#seen[this.#seenN] = pasid;
    else this.#seen.push(pasid);
    this.#seenN++;
  }

  /** One cache tag of `flushRange`: IOTLB / PASID-IOTLB for (did, pasid), then the device TLB. */
  #flushTag(
    did: number,
    firstStage: boolean,
    a: Attachment,
    all: boolean,
    addr: number,
    mask: number,
    ih: number,
    wholeDevtlb = false,
  ): void {
    const mamv = (this.#capHi >>> 16) & 0x3f;
    const psi = (this.#capHi >>> 7) & 1;
    const dw = this.#capBit(54), dr = this.#capBit(55);
    if (!this.#seenHas(a.pasid)) {
      this.#seenAdd(a.pasid);
      if (firstStage) {
        if (all || mask > mamv) {
          this.#qiDesc(QI_TYPE.EIOTLB | (2 << 4) | (did << 16), a.pasid, 0, 0);
        } else {
          this.#qiDesc(
            QI_TYPE.EIOTLB | (3 << 4) | (did << 16),
            a.pasid,
            ((addr >>> 0) | (ih << 6) | mask) >>> 0,
            Math.floor(addr / TWO32),
          );
        }
      } else if (!this.#seenHas(-1)) {
        this.#seenAdd(-1);
        const base = QI_TYPE.IOTLB | (dw << 6) | (dr << 7) | (did << 16);
        if (all || !psi || mask > mamv) this.#qiDesc(base | (2 << 4), 0, 0, 0);
        else {
          this.#qiDesc(
            base | (3 << 4),
            0,
            ((addr >>> 0) | (ih << 6) | mask) >>> 0,
            Math.floor(addr / TWO32),
          );
        }
      }
    }
    const info = this.#devs.get(a.dev);
    if (!info?.ats) return;
    if (all || mask >= 52 || wholeDevtlb) {
      this.#devtlbAll(info, a.pasid);
      return;
    }
    const sid = a.dev.rid;
    let da = addr;
    let s = 0;
    if (mask > 0) {
      da = addr + 2 ** (12 + mask - 1) - 4096;
      s = 1;
    }
    if (a.pasid === 0) {
      this.#qiDesc(
        QI_TYPE.DIOTLB | ((sid & 0xf) << 12),
        (sid | (((sid >>> 4) & 0xfff) << 20)) >>> 0,
        ((da >>> 0) | s) >>> 0,
        Math.floor(da / TWO32),
      );
    } else {
      this.#qiDesc(
        QI_TYPE.DEIOTLB | ((sid & 0xf) << 12) | (sid << 16),
        (a.pasid | (((sid >>> 4) & 0xfff) << 20)) >>> 0,
        ((da >>> 0) | (s << 11)) >>> 0,
        Math.floor(da / TWO32),
      );
    }
  }

  // --- faults and page requests

  #faultIrq(): void {
    const fsts = this.#r32(REG.FSTS);
    if (fsts & FSTS.PPF) {
      const fro = (((this.#capHi & 3) << 8) | (this.#capLo >>> 24)) * 16;
      const nfr = ((this.#capHi >>> 8) & 0xff) + 1;
      for (let i = 0; i < nfr; i++) {
        const off = fro + 16 * i;
        const w3 = this.#r32(off + 12);
        if (!(w3 & 0x80000000)) continue;
        const w2 = this.#r32(off + 8);
        const addr = this.#r32(off + 4) * TWO32 + (this.#r32(off) >>> 0);
        const sid = w2 & 0xffff;
        const reason = w3 & 0xff;
        const write = ((w3 >>> 30) & 1) === 0;
        this.#w32(off + 12, 0x80000000);
        this.#hooks?.reportIommuFault(
          this.#m.pci.byRid(sid) ?? null,
          addr,
          write,
          faultName(reason),
        );
      }
    }
    if (fsts & FSTS.PFO) this.#w32(REG.FSTS, FSTS.PFO);
  }

  #prqIrq(): void {
    this.#w32(REG.PRS, PRS_PPR);
    const size = 4096 * 2 ** PRQ_ORDER;
    let head = this.#r32(REG.PQH) & 0x7ffe0;
    const tail = this.#r32(REG.PQT) & 0x7ffe0;
    const mem = this.#m.mem;
    while (head !== tail) {
      const a = this.#prq + head;
      const w0 = mem.read32(a),
        w1 = mem.read32(a + 4),
        w2 = mem.read32(a + 8),
        w3 = mem.read32(a + 12);
      this.pageRequestsSeen++;
      if (this.#m.trace.observed) {
        this.#m.trace.emit(this.name, "prq_report", { dw0: w0, dw1: w1, dw2: w2, dw3: w3 });
      }
      const rid = w0 >>> 16;
      const pasidP = (w0 >>> 8) & 1;
      const evt: IopfFault = {
        type: "PAGE_REQ",
        prm: {
          flags: (pasidP ? IOMMU_FAULT_PAGE_REQUEST_PASID_VALID : 0) |
            ((w2 >>> 2) & 1 ? IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE : 0),
          pasid: pasidP ? w1 & 0xfffff : 0,
          grpid: (w2 >>> 3) & 0x1ff,
          perm: (w2 & 1 ? IOMMU_FAULT_PERM_READ : 0) | (w2 & 2 ? IOMMU_FAULT_PERM_WRITE : 0) |
            ((w1 >>> 20) & 1 ? IOMMU_FAULT_PERM_EXEC : 0) |
            ((w1 >>> 21) & 1 ? IOMMU_FAULT_PERM_PRIV : 0),
          addr: w3 * TWO32 + ((w2 & 0xfffff000) >>> 0),
          privateData: [0, 0],
        },
      };
      head = (head + 32) % size;
      this.#w64(REG.PQH, head);
      const dev = this.#m.pci.byRid(rid);
      if (dev && this.#hooks) this.#hooks.reportDeviceFault(dev, evt);
      else if (dev) {
        this.pageResponse(dev, evt, { pasid: evt.prm.pasid, grpid: evt.prm.grpid, code: 1 });
      }
    }
    if (this.#r32(REG.PRS) & PRS_PRO) this.#w32(REG.PRS, PRS_PRO);
  }

  /** `page_response`: write a page group response descriptor and wait. */
  pageResponse(dev: PciDevice, evt: IopfFault, msg: IommuPageResponse): void {
    const pasidP = (evt.prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) ? 1 : 0;
    const last = (evt.prm.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE) ? 1 : 0;
    const code = msg.code === 0 ? 0 : msg.code === 1 ? 1 : 0xf;
    this.#qiDesc(
      QI_TYPE.PGRP_RESP | (pasidP << 4) | (code << 12) | (dev.rid << 16),
      pasidP ? msg.pasid & 0xfffff : 0,
      ((last << 2) | ((msg.grpid & 0x1ff) << 3)) >>> 0,
      0,
    );
    this.#qiSync();
  }

  /** Submit one raw descriptor and wait (for tests and tools). */
  submitRaw(w0: number, w1: number, w2: number, w3: number): void {
    this.#qiDesc(w0, w1, w2, w3);
    this.#qiSync();
  }
}
