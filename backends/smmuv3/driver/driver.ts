/**
 * @module
 * The SMMUv3 driver, shaped like drivers/iommu/arm/arm-smmu-v3: probe from
 * the ID registers, queues and stream table (2-level when supported), STE
 * and CD updates with the used-bits algorithm, stage-1 and stage-2 paging
 * domains over the core's LPAE io-pgtable, identity and blocked domains,
 * PASID attach through a per-master CD table, TLB/ATC invalidation with
 * range commands, event and PRI queue handling. It talks to the hardware
 * only through MMIO and memory.
 */

import {
  DomainType,
  type HwInfo,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  type IommuCap,
  type IommuDomain,
  IommuError,
  type IommuKernelHooks,
  type IommuOpsWithHooks,
  type IommuPageResponse,
  type IopfFault,
  type Machine,
  type MmHandle,
  type PciDevice,
  type ResvRegion,
} from "@iommu-lab/core";
import { CR0, GERROR, IRQ_CTRL, OAS_BITS, REG } from "../hw/regs.ts";
import { OP, S1DSS, S1FMT } from "../hw/structs.ts";
import { atcInv, cfgiAll, cfgiCd, cfgiSte, newCmd, tlbiCtx, tlbiVa } from "./cmds.ts";
import { type CmdqStats, DriverCmdq } from "./cmdq.ts";
import { FaultQueues } from "./faults.ts";
import { ffs, NestedDomain, SmmuDomain, StaticDomain, SvaDomain } from "./domain.ts";
import {
  cdUsed,
  type EntryWriter,
  makeAbortSte,
  makeBypassSte,
  makeCdtableSte,
  makeS2Ste,
  steUsed,
  writeEntry,
} from "./entry.ts";

const TWO32 = 4294967296;
/** `STRTAB_SPLIT`. */
export const STRTAB_SPLIT = 8;
/** `STRTAB_MAX_L1_ENTRIES`. */
export const STRTAB_MAX_L1_ENTRIES = 1 << 17;
/** `CTXDESC_L2_ENTRIES`. */
export const CTXDESC_L2_ENTRIES = 1024;
/** `CTXDESC_LINEAR_CDMAX`. */
export const CTXDESC_LINEAR_CDMAX = 10;
/** `MSI_IOVA_BASE` / `MSI_IOVA_LENGTH`: the software MSI window. */
export const MSI_IOVA_BASE = 0x800_0000;
/** Length of the software MSI window. */
export const MSI_IOVA_LENGTH = 0x10_0000;
/** Largest queue the driver allocates (log2 entries). */
const MAX_Q_LOG2 = 8;

/** What the driver read from the ID registers (arm_smmu_device_hw_probe). */
export interface SmmuHwInfo {
  /** Stage 1 / stage 2. */
  s1: boolean;
  /** Stage 2. */
  s2: boolean;
  /** 2-level stream table. */
  st2lvl: boolean;
  /** 2-level CD tables. */
  cd2l: boolean;
  /** ATS / PRI / stalls / range invalidation / MSI / HYP. */
  ats: boolean;
  /** PRI. */
  pri: boolean;
  /** Stall model: stalls supported (0) or forced (2). */
  stalls: boolean;
  /** Range invalidation. */
  rangeInv: boolean;
  /** MSI. */
  msi: boolean;
  /** IDR1.ATTR_TYPES_OVR: STE.SHCFG is honoured. */
  attrTypesOvr: boolean;
  /** HTTU: 0 none, 1 access, 2 access+dirty. */
  httu: number;
  /** ASID / VMID widths. */
  asidBits: number;
  /** VMID bits. */
  vmidBits: number;
  /** SID / SSID widths. */
  sidBits: number;
  /** SSID bits. */
  ssidBits: number;
  /** Output address size. */
  oas: number;
  /** Page sizes. */
  pgsizeBitmap: number;
  /** Queue maxima (log2). */
  cmdqs: number;
  /** Event queue max. */
  evtqs: number;
  /** PRI queue max. */
  priqs: number;
}

/** A CD table of one master. */
export interface CdTable {
  /** Linear table or L1 table address. */
  base: number;
  /** S1FMT. */
  fmt: number;
  /** S1CDMax. */
  cdMax: number;
  /** L2 tables by L1 index (2-level). */
  l2: Map<number, number>;
  /** Pages to free: [addr, order]. */
  allocs: [number, number][];
  /** SSIDs with a valid CD. */
  used: Set<number>;
}

/** `struct arm_smmu_master`: the driver's per-device state. */
export interface Master {
  /** The device. */
  dev: PciDevice;
  /** StreamID (the requester ID). */
  sid: number;
  /** SubstreamID bits in use. */
  ssidBits: number;
  /** ATS enabled (fixed at probe). */
  readonly ats: boolean;
  /** PRI enabled. */
  pri: boolean;
  /** Stalls enabled (CD.S). */
  stallEnabled: boolean;
  /** The CD table, once a stage-1 domain or a PASID is attached. */
  cdTable: CdTable | null;
  /** Domain of the RID (null before the first attach). */
  domain: SmmuDomain | StaticDomain | NestedDomain | null;
  /** Domains attached at each PASID. */
  pasids: Map<number, SmmuDomain>;
}

/** Driver counters. */
export interface DriverStats extends CmdqStats {
  /** CFGI+SYNC rounds of STE updates. */
  steSyncRounds: number;
  /** CFGI+SYNC rounds of CD updates. */
  cdSyncRounds: number;
  /** Event records read. */
  events: number;
  /** Page requests read. */
  pageRequests: number;
  /** TLBI commands issued. */
  tlbi: number;
  /** ATC_INV commands issued. */
  atcInv: number;
}

/** Translation stage of a paging domain. */
export type StageKind = "S1" | "S2";

/** The SMMUv3 driver (an IommuOps). */
export class SmmuV3Driver implements IommuOpsWithHooks {
  /** Driver name. */
  readonly name = "arm-smmu-v3";
  /** Page sizes. */
  readonly pgsizeBitmap: number;
  /** ID-register features. */
  readonly info: SmmuHwInfo;
  /** Counters. */
  readonly stats: DriverStats;
  /** The identity domain. */
  readonly identityDomain: IommuDomain;
  /** The blocked domain. */
  readonly blockedDomain: IommuDomain;
  /** The command queue. */
  readonly cmdq: DriverCmdq;
  /** The event and PRI queues (set up at reset). */
  faults!: FaultQueues;

  /** The machine. */
  readonly m: Machine;
  readonly #regs: number;
  readonly #hwName: string;
  #hooks: IommuKernelHooks | null = null;
  readonly #masters = new Map<number, Master>();
  #strtab = 0;
  #strtab2lvl = false;
  #strtabLog2 = 0;
  readonly #l2 = new Map<number, number>();
  readonly #asids = new Set<number>();
  readonly #vmids = new Set<number>();
  readonly #cmd = newCmd();
  /** Reusable 4-word command buffers for invRange (the ring copies them; grown on demand). */
  readonly #cmdPool: Uint32Array[] = [];
  /** Probed masters with ATS enabled (none: no domain has an ATC to invalidate). */
  #atsMasters = 0;
  /** invRange's last granule and its log2, and last leaf page size with its TTL hint. */
  #tgGranule = 0;
  #tgShift = 0;
  #ttlPgsize = 0;
  #ttl = 0;
  readonly #target = new Uint32Array(16);

  /**
   * Which devices sit behind this SMMU (the firmware's IORT ID mapping);
   * probe refuses the others with ENODEV.
   */
  readonly owns: (dev: PciDevice) => boolean;

  /**
   * Probe the SMMU at `regs` (its interrupt lines are named
   * `<hwName>:<line>`); `owns` says which devices are behind it (all by default).
   */
  constructor(
    machine: Machine,
    regs: number,
    hwName: string,
    owns: (dev: PciDevice) => boolean = () => true,
  ) {
    this.owns = owns;
    this.m = machine;
    this.#regs = regs;
    this.#hwName = hwName;
    this.info = this.#probeHw();
    this.pgsizeBitmap = this.info.pgsizeBitmap;
    this.stats = machine.trace.counters(`${hwName}-drv`, {
      commands: 0,
      syncs: 0,
      doorbells: 0,
      errors: 0,
      steSyncRounds: 0,
      cdSyncRounds: 0,
      events: 0,
      pageRequests: 0,
      tlbi: 0,
      atcInv: 0,
    }) as DriverStats;
    const cmdqLog2 = Math.min(this.info.cmdqs, MAX_Q_LOG2);
    const cmdqBase = machine.pages.allocPages(Math.max(0, cmdqLog2 + 4 - 12));
    this.cmdq = new DriverCmdq(machine, regs, cmdqBase, cmdqLog2, this.info.msi, this.stats);
    this.identityDomain = new StaticDomain(this, DomainType.IDENTITY);
    this.blockedDomain = new StaticDomain(this, DomainType.BLOCKED);
    this.#reset();
  }

  #r32(off: number): number {
    return this.m.bus.read32(this.#regs + off);
  }
  #w32(off: number, v: number): void {
    this.m.bus.write32(this.#regs + off, v);
  }

  #probeHw(): SmmuHwInfo {
    const idr0 = this.#r32(REG.IDR0);
    const idr1 = this.#r32(REG.IDR1);
    const idr3 = this.#r32(REG.IDR3);
    const idr5 = this.#r32(REG.IDR5);
    let pg = 0;
    if (idr5 & (1 << 4)) pg += 0x1000 + 0x20_0000 + 0x4000_0000;
    if (idr5 & (1 << 5)) pg += 0x4000 + 0x200_0000;
    if (idr5 & (1 << 6)) pg += 0x1_0000 + 0x2000_0000;
    const stallModel = (idr0 >>> 24) & 3;
    return {
      s1: (idr0 & 2) !== 0,
      s2: (idr0 & 1) !== 0,
      st2lvl: ((idr0 >>> 27) & 3) === 1,
      cd2l: (idr0 & (1 << 19)) !== 0,
      ats: (idr0 & (1 << 10)) !== 0,
      pri: (idr0 & (1 << 16)) !== 0,
      stalls: stallModel === 0 || stallModel === 2,
      rangeInv: (idr3 & (1 << 10)) !== 0,
      msi: (idr0 & (1 << 13)) !== 0,
      attrTypesOvr: (idr1 & (1 << 27)) !== 0,
      httu: (idr0 >>> 6) & 3,
      asidBits: idr0 & (1 << 12) ? 16 : 8,
      vmidBits: idr0 & (1 << 18) ? 16 : 8,
      sidBits: idr1 & 0x3f,
      ssidBits: (idr1 >>> 6) & 0x1f,
      oas: OAS_BITS[Math.min(idr5 & 7, 6)],
      pgsizeBitmap: pg,
      cmdqs: (idr1 >>> 21) & 0x1f,
      evtqs: (idr1 >>> 16) & 0x1f,
      priqs: (idr1 >>> 11) & 0x1f,
    };
  }

  /** arm_smmu_device_reset: tables, queues, invalidate all, enable. */
  #reset(): void {
    const info = this.info;
    const pages = this.m.pages;
    // Disable everything first.
    this.#w32(REG.CR0, 0);
    this.#w32(REG.CR1, (3 << 10) | (1 << 8) | (1 << 6) | (3 << 4) | (1 << 2) | 1);
    this.#w32(REG.CR2, 1 << 1); // RECINVSID
    // Stream table.
    if (info.st2lvl) {
      const l1Entries = Math.min(
        2 ** Math.max(0, info.sidBits - STRTAB_SPLIT),
        STRTAB_MAX_L1_ENTRIES,
      );
      const bytes = l1Entries * 8;
      this.#strtab = pages.allocPages(Math.max(0, Math.ceil(Math.log2(bytes)) - 12));
      this.#strtab2lvl = true;
      this.#strtabLog2 = Math.log2(l1Entries) + STRTAB_SPLIT;
      this.m.bus.write64(this.#regs + REG.STRTAB_BASE, BigInt(this.#strtab) | (1n << 62n));
      this.#w32(REG.STRTAB_BASE_CFG, (1 << 16) | (STRTAB_SPLIT << 6) | this.#strtabLog2);
    } else {
      this.#strtabLog2 = Math.min(info.sidBits, 16);
      const bytes = 64 * 2 ** this.#strtabLog2;
      this.#strtab = pages.allocPages(Math.max(0, Math.ceil(Math.log2(bytes)) - 12));
      this.m.bus.write64(this.#regs + REG.STRTAB_BASE, BigInt(this.#strtab) | (1n << 62n));
      this.#w32(REG.STRTAB_BASE_CFG, this.#strtabLog2);
      const abort = makeAbortSte(new Uint32Array(16));
      for (let i = 0; i < 2 ** this.#strtabLog2; i++) {
        this.m.mem.writeWords(this.#strtab + i * 64, abort);
      }
    }
    // Command queue, then invalidate everything.
    this.cmdq.program();
    this.#w32(REG.CR0, CR0.CMDQEN);
    const c = this.#cmd;
    this.cmdq.issueOne(cfgiAll(c), true);
    this.cmdq.issueOne(tlbiCtx(c, OP.TLBI_NSNH_ALL, 0, 0), true);
    if ((this.#r32(REG.IDR0) & (1 << 9)) !== 0) {
      this.cmdq.issueOne(tlbiCtx(c, OP.TLBI_EL2_ALL, 0, 0), true);
    }
    // Event queue.
    const evtqLog2 = Math.min(info.evtqs, MAX_Q_LOG2);
    const evtq = pages.allocPages(Math.max(0, evtqLog2 + 5 - 12));
    this.m.bus.write64(this.#regs + REG.EVTQ_BASE, BigInt(evtq) | BigInt(evtqLog2) | (1n << 62n));
    this.#w32(REG.EVTQ_PROD, 0);
    this.#w32(REG.EVTQ_CONS, 0);
    let cr0 = CR0.CMDQEN | CR0.EVTQEN;
    let priq = 0;
    let priqLog2 = 0;
    if (info.pri) {
      priqLog2 = Math.min(info.priqs, MAX_Q_LOG2);
      priq = pages.allocPages(Math.max(0, priqLog2 + 4 - 12));
      this.m.bus.write64(this.#regs + REG.PRIQ_BASE, BigInt(priq) | BigInt(priqLog2) | (1n << 62n));
      this.#w32(REG.PRIQ_PROD, 0);
      this.#w32(REG.PRIQ_CONS, 0);
      cr0 |= CR0.PRIQEN;
    }
    this.faults = new FaultQueues(
      {
        machine: this.m,
        regs: this.#regs,
        cmdq: this.cmdq,
        master: (sid) => this.#masters.get(sid),
        hooks: () => this.#hooks,
        stats: this.stats,
      },
      evtq,
      evtqLog2,
      priq,
      priqLog2,
    );
    this.#w32(REG.CR0, cr0);
    // Interrupts.
    const irq = this.m.irq;
    irq.register(`${this.#hwName}:evtq`, () => this.handleEvtq());
    irq.register(`${this.#hwName}:priq`, () => this.handlePriq());
    irq.register(`${this.#hwName}:gerror`, () => this.handleGerror());
    this.#w32(
      REG.IRQ_CTRL,
      IRQ_CTRL.GERROR_IRQEN | IRQ_CTRL.EVTQ_IRQEN | (info.pri ? IRQ_CTRL.PRIQ_IRQEN : 0),
    );
    if (info.ats) cr0 |= CR0.ATSCHK;
    this.#w32(REG.CR0, cr0 | CR0.SMMUEN);
    if ((this.#r32(REG.CR0ACK) & CR0.SMMUEN) === 0) {
      throw new IommuError(
        "ENODEV",
        "arm_smmu_device_reset",
        "SMMUEN was not acknowledged in CR0ACK",
      );
    }
  }

  /** Receive the kernel hooks. */
  setKernelHooks(hooks: IommuKernelHooks): void {
    this.#hooks = hooks;
  }

  // -------------------------------------------------------------------------
  // Stream table and STE writes

  #steAddr(sid: number): number {
    if (!this.#strtab2lvl) return this.#strtab + sid * 64;
    const l2 = this.#l2.get(Math.floor(sid / 2 ** STRTAB_SPLIT));
    if (l2 === undefined) {
      throw new IommuError("ENODEV", "arm_smmu_get_step", `no L2 stream table for SID ${sid}`);
    }
    return l2 + (sid % 2 ** STRTAB_SPLIT) * 64;
  }

  /** arm_smmu_init_l2_strtab: allocate the L2 table of `sid` (abort STEs) and publish its L1 descriptor. */
  #ensureL2(sid: number): void {
    if (!this.#strtab2lvl) return;
    const l1 = Math.floor(sid / 2 ** STRTAB_SPLIT);
    if (this.#l2.has(l1)) return;
    const l2 = this.m.pages.allocPages(2); // 256 STEs * 64 B = 16 KiB
    const abort = makeAbortSte(new Uint32Array(16));
    for (let i = 0; i < 2 ** STRTAB_SPLIT; i++) this.m.mem.writeWords(l2 + i * 64, abort);
    this.#l2.set(l1, l2);
    this.m.mem.write64(
      this.#strtab + l1 * 8,
      ((l2 % TWO32) | (STRTAB_SPLIT + 1)) >>> 0,
      Math.floor(l2 / TWO32),
    );
    // arm_smmu_sync_std_for_sid: CFGI_STE with leaf = false.
    this.cmdq.issueOne(cfgiSte(this.#cmd, sid, false), true);
  }

  /** Write the STE of `master` to `target` with the used-bits algorithm. */
  #writeSte(master: Master, target: Uint32Array): void {
    const addr = this.#steAddr(master.sid);
    const mem = this.m.mem;
    const cmdq = this.cmdq;
    const c = this.#cmd;
    const w: EntryWriter = {
      used: steUsed,
      read(out: Uint32Array): void {
        mem.readWords(addr, out, 16);
      },
      write(i: number, lo: number, hi: number): void {
        mem.write64(addr + i * 8, lo, hi);
      },
      sync(): void {
        cmdq.issueOne(cfgiSte(c, master.sid, true), true);
      },
    };
    const rounds = writeEntry(w, target);
    this.stats.steSyncRounds += rounds;
    if (this.m.trace.observed) {
      this.m.trace.emit(`${this.#hwName}-drv`, "arm_smmu_write_ste", {
        sid: master.sid,
        config: (target[0] >>> 1) & 7,
        rounds,
      });
    }
    // The SMMU may have cached translations under the old config via ATS.
    if (master.ats) this.#atcInvMaster(master, 0, 0, true);
  }

  // -------------------------------------------------------------------------
  // CD tables

  #allocCdTable(master: Master): CdTable {
    const pages = this.m.pages;
    const maxContexts = 2 ** master.ssidBits;
    if (!this.info.cd2l || maxContexts <= CTXDESC_L2_ENTRIES) {
      const bytes = Math.max(64, maxContexts * 64);
      const order = Math.max(0, Math.ceil(Math.log2(bytes)) - 12);
      const base = pages.allocPages(order);
      return {
        base,
        fmt: S1FMT.LINEAR,
        cdMax: master.ssidBits,
        l2: new Map(),
        allocs: [[base, order]],
        used: new Set(),
      };
    }
    const l1Entries = Math.ceil(maxContexts / CTXDESC_L2_ENTRIES);
    const order = Math.max(0, Math.ceil(Math.log2(l1Entries * 8)) - 12);
    const base = pages.allocPages(order);
    return {
      base,
      fmt: S1FMT.L2_64K,
      cdMax: master.ssidBits,
      l2: new Map(),
      allocs: [[base, order]],
      used: new Set(),
    };
  }

  #cdAddr(master: Master, ssid: number, alloc: boolean): number {
    const t = master.cdTable!;
    if (t.fmt === S1FMT.LINEAR) return t.base + ssid * 64;
    const l1 = Math.floor(ssid / CTXDESC_L2_ENTRIES);
    let l2 = t.l2.get(l1);
    if (l2 === undefined) {
      if (!alloc) return -1;
      l2 = this.m.pages.allocPages(4); // 1024 CDs * 64 B = 64 KiB
      t.allocs.push([l2, 4]);
      t.l2.set(l1, l2);
      this.m.mem.write64(t.base + l1 * 8, ((l2 % TWO32) | 1) >>> 0, Math.floor(l2 / TWO32));
      // arm_smmu_sync_cd for the L1 descriptor: CFGI_CD leaf=false.
      this.cmdq.issueOne(cfgiCd(this.#cmd, master.sid, ssid, false), true);
    }
    return l2 + (ssid % CTXDESC_L2_ENTRIES) * 64;
  }

  /** Write CD `ssid` of `master` to `target` (all zero = clear) with the used-bits algorithm. */
  #writeCd(master: Master, ssid: number, target: Uint32Array): void {
    const addr = this.#cdAddr(master, ssid, true);
    const mem = this.m.mem;
    const cmdq = this.cmdq;
    const c = this.#cmd;
    const w: EntryWriter = {
      used: cdUsed,
      read(out: Uint32Array): void {
        mem.readWords(addr, out, 16);
      },
      write(i: number, lo: number, hi: number): void {
        mem.write64(addr + i * 8, lo, hi);
      },
      sync(): void {
        cmdq.issueOne(cfgiCd(c, master.sid, ssid, true), true);
      },
    };
    const rounds = writeEntry(w, target);
    this.stats.cdSyncRounds += rounds;
    if (this.m.trace.observed) {
      this.m.trace.emit(`${this.#hwName}-drv`, "arm_smmu_write_cd", {
        sid: master.sid,
        ssid,
        valid: (target[0] & 0x80000000) !== 0,
        rounds,
      });
    }
    if ((target[0] & 0x80000000) !== 0) master.cdTable!.used.add(ssid);
    else master.cdTable!.used.delete(ssid);
  }

  // -------------------------------------------------------------------------
  // IommuOps

  /** `capable`. */
  capable(_dev: PciDevice, cap: IommuCap): boolean {
    return cap === "CACHE_COHERENCY" || cap === "NOEXEC" || cap === "DEFERRED_FLUSH" ||
      (cap === "DIRTY_TRACKING" && this.info.httu === 2);
  }

  /** `probe_device`. */
  probeDevice(dev: PciDevice): void {
    const sid = dev.rid;
    if (!this.owns(dev)) {
      throw new IommuError("ENODEV", "arm_smmu_probe_device", `${dev.bdf} is not behind this SMMU`);
    }
    if (sid >= 2 ** Math.min(this.info.sidBits, this.#strtabLog2)) {
      throw new IommuError(
        "ENODEV",
        "arm_smmu_probe_device",
        `StreamID ${sid} is beyond the stream table`,
      );
    }
    if (this.#masters.has(sid)) return;
    this.#ensureL2(sid);
    let ssidBits = Math.min(this.info.ssidBits, dev.pasidBits);
    if (!this.info.cd2l) ssidBits = Math.min(ssidBits, CTXDESC_LINEAR_CDMAX);
    const master: Master = {
      dev,
      sid,
      ssidBits,
      ats: this.info.ats && dev.ats,
      pri: this.info.pri && dev.pri && dev.ats,
      stallEnabled: this.info.stalls && dev.canStall,
      cdTable: null,
      domain: null,
      pasids: new Map(),
    };
    this.#masters.set(sid, master);
    if (master.ats) this.#atsMasters++;
    if (dev.iommu) {
      dev.iommu.priv = master;
      dev.iommu.maxPasids = ssidBits > 0 ? 2 ** ssidBits : 0;
    }
  }

  /** `release_device`: the STE goes back to abort. */
  releaseDevice(dev: PciDevice): void {
    const master = this.#masters.get(dev.rid);
    if (!master) return;
    this.#writeSte(master, makeAbortSte(this.#target));
    this.#freeCdTable(master);
    for (const d of master.pasids.values()) d.masters.delete(master);
    master.pasids.clear();
    this.#leaveOld(master, null);
    master.domain = null;
    this.#masters.delete(dev.rid);
    if (master.ats) this.#atsMasters--;
  }

  #freeCdTable(master: Master): void {
    if (!master.cdTable) return;
    for (const [a] of master.cdTable.allocs) this.m.pages.free(a);
    master.cdTable = null;
  }

  /**
   * `domain_alloc_sva`: a domain sharing `mm` (an AArch64 4-level table) for
   * PASID attach; needs stage 1 and a PASID-capable master.
   */
  domainAllocSva(dev: PciDevice, mm: MmHandle): IommuDomain {
    const master = this.#master(dev, "arm_smmu_sva_domain_alloc");
    if (!this.info.s1 || master.ssidBits === 0) {
      throw new IommuError(
        "EOPNOTSUPP",
        "arm_smmu_sva_domain_alloc",
        `${dev.bdf}: SVA needs stage 1 and a device with PASIDs`,
      );
    }
    if (mm.levels !== 4) {
      throw new IommuError(
        "EINVAL",
        "arm_smmu_sva_domain_alloc",
        `mm has ${mm.levels} levels; 4 (48-bit VA) allowed`,
      );
    }
    return new SvaDomain(this, mm);
  }

  /** `hw_info`: `struct iommu_hw_info_arm_smmuv3` {flags, __reserved, idr[6], iidr, aidr}. */
  hwInfo(_dev: PciDevice): HwInfo {
    const data = new Uint32Array(10);
    for (let i = 0; i < 6; i++) data[2 + i] = this.#r32(REG.IDR0 + 4 * i);
    data[8] = this.#r32(REG.IIDR);
    data[9] = this.#r32(REG.AIDR);
    return { type: "ARM_SMMUV3", data };
  }

  /**
   * `domain_alloc_nested` (IOMMU_HWPT_DATA_ARM_SMMUV3): a user stage-1
   * configuration (the guest's STE words 0-1, `{ ste: [lo0, hi0, lo1, hi1] }`)
   * over a stage-2 nest parent. The vSTE may only be abort, bypass or stage 1,
   * with only the S1 fields the kernel allows; anything else is EIO.
   */
  domainAllocNested(
    _dev: PciDevice,
    parent: IommuDomain,
    flags: number,
    userData: unknown,
  ): IommuDomain {
    const op = "arm_smmu_domain_alloc_nesting";
    if (flags !== 0) {
      throw new IommuError("EOPNOTSUPP", op, `flags 0x${flags.toString(16)} not supported`);
    }
    if (!(parent instanceof SmmuDomain) || parent.stage !== "S2" || !parent.nestParent) {
      throw new IommuError(
        "EINVAL",
        op,
        "the parent must be a stage-2 NEST_PARENT domain of this SMMU",
      );
    }
    const ste = (userData as { ste?: ArrayLike<number> } | null)?.ste;
    if (!ste || ste.length !== 4) {
      throw new IommuError(
        "EINVAL",
        op,
        "user data must be { ste: [4 x u32] } (vSTE words 0 and 1)",
      );
    }
    const v = Uint32Array.from(ste);
    // Allowed: V, CONFIG, S1FMT, S1CTXPTR, S1CDMAX; S1DSS, S1CIR, S1COR, S1CSH, S1STALLD, EATS.
    const allowed = [0xffffffff, 0xf80fffff, 0x3800_00ff, 0];
    for (let i = 0; i < 4; i++) {
      if ((v[i] & ~allowed[i]) !== 0) {
        throw new IommuError(
          "EIO",
          op,
          `vSTE word ${i} sets bits 0x${(v[i] & ~allowed[i]).toString(16)} a guest may not set`,
        );
      }
    }
    const cfg = (v[0] >>> 1) & 7;
    if ((v[0] & 1) && cfg !== 0 && cfg !== 4 && cfg !== 5) {
      throw new IommuError(
        "EIO",
        op,
        `vSTE config ${cfg} is not ABORT(0), BYPASS(4) or S1_TRANS(5)`,
      );
    }
    return new NestedDomain(this, parent, v);
  }

  /** Attach the RID to a nested domain: stage 1 from the vSTE, stage 2 from the parent. */
  attachNested(dev: PciDevice, domain: NestedDomain): void {
    const master = this.#master(dev, "arm_smmu_attach_dev_nested");
    if (master.pasids.size > 0) {
      throw new IommuError(
        "EBUSY",
        "arm_smmu_attach_dev_nested",
        "PASIDs are attached (arm_smmu_ssids_in_use); a nested domain takes the whole CD table",
      );
    }
    const parent = domain.parent;
    parent.finalise();
    const t = this.#target;
    const s2 = parent.pgtable!.s2!;
    const v = domain.vste;
    const cfg = (v[0] >>> 1) & 7;
    if ((v[0] & 1) === 0 || cfg === 0) makeAbortSte(t);
    else {
      makeS2Ste(
        t,
        parent.id,
        s2.vtcr,
        s2.vttbr,
        master.ats,
        master.stallEnabled,
        this.info.attrTypesOvr,
      );
      if (cfg === 5) {
        // NESTED: guest S1 words over the parent's stage 2.
        t[0] = ((v[0] & ~0xe) | (7 << 1)) >>> 0;
        t[1] = v[1];
        t[2] = ((t[2] & (3 << 28)) | (v[2] & ~(3 << 28))) >>> 0;
        t[3] = 0;
      }
    }
    this.#writeSte(master, t);
    this.#leaveOld(master, domain);
    parent.masters.add(master);
    master.domain = domain;
  }

  /** Forget `master` in its old RID domain (unless still used at a PASID). */
  #leaveOld(master: Master, next: unknown): void {
    const old = master.domain;
    const oldPaging = old instanceof NestedDomain ? old.parent : old;
    const nextPaging = next instanceof NestedDomain ? next.parent : next;
    if (
      oldPaging instanceof SmmuDomain && oldPaging !== nextPaging &&
      ![...master.pasids.values()].includes(oldPaging)
    ) oldPaging.masters.delete(master);
  }

  /** `get_resv_regions`: the software MSI window. */
  getResvRegions(_dev: PciDevice): ResvRegion[] {
    return [{ start: MSI_IOVA_BASE, length: MSI_IOVA_LENGTH, prot: 1 | 2 | 16, type: "SW_MSI" }];
  }

  /** `max_pasids` of the device. */
  maxPasids(dev: PciDevice): number {
    const m = this.#masters.get(dev.rid);
    return m && m.ssidBits > 0 ? 2 ** m.ssidBits : 0;
  }

  /** `domain_alloc_paging_flags`: stage 1 when implemented (stage 2 for NEST_PARENT or S2-only). */
  domainAllocPaging(_dev: PciDevice | null, flags: number): IommuDomain {
    if ((flags & ~0xf) !== 0) {
      throw new IommuError(
        "EOPNOTSUPP",
        "arm_smmu_domain_alloc_paging_flags",
        `unsupported flags 0x${flags.toString(16)}`,
      );
    }
    let stage: StageKind = this.info.s1 ? "S1" : "S2";
    if (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) {
      if (!this.info.s2) {
        throw new IommuError(
          "EOPNOTSUPP",
          "arm_smmu_domain_alloc_paging_flags",
          "nest parent needs stage 2",
        );
      }
      stage = "S2";
    }
    if ((flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) && (stage !== "S1" || this.info.httu !== 2)) {
      throw new IommuError(
        "EOPNOTSUPP",
        "arm_smmu_domain_alloc_paging_flags",
        "dirty tracking needs stage 1 and HTTU access+dirty (IDR0.HTTU = 2)",
      );
    }
    const dom = new SmmuDomain(this, stage);
    dom.nestParent = (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0;
    dom.dirtyTracking = (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0;
    return dom;
  }

  /** Allocate an ASID (1..) or VMID (1..). */
  allocId(kind: StageKind): number {
    const set = kind === "S1" ? this.#asids : this.#vmids;
    const max = 2 ** (kind === "S1" ? this.info.asidBits : this.info.vmidBits);
    for (let i = 1; i < max; i++) {
      if (!set.has(i)) {
        set.add(i);
        return i;
      }
    }
    throw new IommuError(
      "ENOSPC",
      "arm_smmu_domain_finalise",
      `no free ${kind === "S1" ? "ASID" : "VMID"}`,
    );
  }

  /** Release an ASID/VMID. */
  freeId(kind: StageKind, id: number): void {
    (kind === "S1" ? this.#asids : this.#vmids).delete(id);
  }

  /** `page_response`: PRI_RESP for PRI masters, RESUME for stalls. */
  pageResponse(dev: PciDevice, evt: IopfFault, msg: IommuPageResponse): void {
    const master = this.#masters.get(dev.rid);
    if (master) this.faults.pageResponse(master, evt, msg);
  }

  // -------------------------------------------------------------------------
  // Attach

  #master(dev: PciDevice, op: string): Master {
    const m = this.#masters.get(dev.rid);
    if (!m) throw new IommuError("ENODEV", op, `${dev.bdf} was not probed by this SMMU`);
    return m;
  }

  /** Attach the RID of `dev` to `domain` (paging, identity or blocked). */
  attachRid(dev: PciDevice, domain: SmmuDomain | StaticDomain): void {
    const master = this.#master(dev, "arm_smmu_attach_dev");
    const t = this.#target;
    if (domain instanceof SmmuDomain) {
      domain.finalise();
      if (domain.stage === "S1") {
        if (!master.cdTable) master.cdTable = this.#allocCdTable(master);
        // CD 0 first (the STE may already point at the table), then the STE.
        this.#writeCd(master, 0, domain.makeCd(master, new Uint32Array(16)));
        this.#writeSte(master, this.#cdtableSte(master, S1DSS.SSID0));
      } else {
        if (master.pasids.size > 0) {
          throw new IommuError(
            "EBUSY",
            "arm_smmu_attach_dev",
            "PASIDs are attached (arm_smmu_ssids_in_use): a stage-2 domain cannot be the RID " +
              "domain until they are detached",
          );
        }
        this.#writeSte(
          master,
          makeS2Ste(
            t,
            domain.id,
            domain.pgtable!.s2!.vtcr,
            domain.pgtable!.s2!.vttbr,
            master.ats,
            master.stallEnabled,
            this.info.attrTypesOvr,
          ),
        );
        // The STE no longer points at the CD table: it can go.
        if (master.cdTable) this.#freeCdTable(master);
      }
      domain.masters.add(master);
    } else {
      if (master.pasids.size > 0) {
        // Keep the CD table for the PASIDs; the RID itself is bypassed or terminated.
        // The STE first (it stops using CD 0), then CD 0 is cleared (as the kernel orders it).
        this.#writeSte(
          master,
          this.#cdtableSte(
            master,
            domain.type === DomainType.IDENTITY ? S1DSS.BYPASS : S1DSS.TERMINATE,
          ),
        );
        if (master.cdTable!.used.has(0)) this.#writeCd(master, 0, new Uint32Array(16));
      } else {
        this.#writeSte(
          master,
          domain.type === DomainType.IDENTITY
            ? makeBypassSte(t, this.info.attrTypesOvr)
            : makeAbortSte(t),
        );
        if (master.cdTable) this.#freeCdTable(master);
      }
    }
    this.#leaveOld(master, domain);
    master.domain = domain;
  }

  #cdtableSte(master: Master, s1dss: number): Uint32Array {
    const t = master.cdTable!;
    return makeCdtableSte(
      this.#target,
      t.base,
      t.cdMax === 0 ? 0 : t.fmt,
      t.cdMax,
      t.cdMax === 0 ? 0 : s1dss,
      master.ats,
      this.info.stalls && !master.stallEnabled,
      this.info.attrTypesOvr,
    );
  }

  /** Attach `pasid` of `dev` to a stage-1 `domain`, or detach it (domain null). */
  setPasid(dev: PciDevice, pasid: number, domain: SmmuDomain | null): void {
    const master = this.#master(dev, "arm_smmu_set_dev_pasid");
    if (pasid <= 0 || pasid >= 2 ** master.ssidBits) {
      throw new IommuError(
        "EINVAL",
        "arm_smmu_set_dev_pasid",
        `PASID ${pasid} is outside 1..${2 ** master.ssidBits - 1}`,
      );
    }
    if (domain === null) {
      const old = master.pasids.get(pasid);
      if (!old) return;
      this.#writeCd(master, pasid, new Uint32Array(16));
      master.pasids.delete(pasid);
      if (![...master.pasids.values()].includes(old)) old.masters.delete(master);
      if (master.ats) this.#atcInvMaster(master, pasid, 0, true);
      // The last PASID gone: an identity/blocked RID goes back to a plain bypass/abort STE.
      const rid = master.domain;
      if (master.pasids.size === 0 && rid instanceof StaticDomain) this.attachRid(dev, rid);
      return;
    }
    if (domain.stage !== "S1") {
      throw new IommuError(
        "EINVAL",
        "arm_smmu_set_dev_pasid",
        "only stage-1 domains can be attached to a PASID",
      );
    }
    // arm_smmu_set_pasid: the CD table must already be in the STE (a stage-1 RID domain), or
    // the RID domain must be identity/blocked (the STE becomes a CD table STE with S1DSS).
    const rid = master.domain;
    if ((rid instanceof SmmuDomain && rid.stage === "S2") || rid instanceof NestedDomain) {
      throw new IommuError(
        "EINVAL",
        "arm_smmu_set_dev_pasid",
        `the RID is attached to a ${
          rid instanceof NestedDomain ? "nested" : "stage-2"
        } domain; PASIDs need a stage-1, identity or blocked RID domain`,
      );
    }
    domain.finalise();
    if (!master.cdTable) master.cdTable = this.#allocCdTable(master);
    const prev = master.pasids.get(pasid);
    this.#writeCd(master, pasid, domain.makeCd(master, new Uint32Array(16)));
    master.pasids.set(pasid, domain);
    domain.masters.add(master);
    if (prev !== undefined && prev !== domain) {
      // Replaced: the old domain no longer reaches this PASID (arm_smmu_remove_master_domain).
      if (master.domain !== prev && ![...master.pasids.values()].includes(prev)) {
        prev.masters.delete(master);
      }
      if (master.ats) this.#atcInvMaster(master, pasid, 0, true);
    }
    // Make sure the STE points at the CD table (RID identity/blocked keep S1DSS bypass/terminate).
    const s1dss = rid instanceof SmmuDomain
      ? S1DSS.SSID0
      : rid !== null && rid.type === DomainType.IDENTITY
      ? S1DSS.BYPASS
      : S1DSS.TERMINATE;
    this.#writeSte(master, this.#cdtableSte(master, s1dss));
  }

  // -------------------------------------------------------------------------
  // Invalidation

  /** arm_smmu_tlb_inv_range_domain: TLBI by VA/IPA (range when supported), SYNC, then ATC. */
  invRange(domain: SmmuDomain, iova: number, size: number, granule: number, leaf: boolean): void {
    if (size === 0) return;
    if (domain.granule !== this.#tgGranule) {
      this.#tgGranule = domain.granule;
      this.#tgShift = log2Exact(domain.granule);
      this.#ttlPgsize = 0;
    }
    const tgShift = this.#tgShift;
    // Commands go to reusable buffers counted by `n` (resetting an array's length
    // released its backing store, so every push reallocated it).
    let n = 0;
    const s1 = domain.stage === "S1";
    const op = s1 ? OP.TLBI_NH_VA : OP.TLBI_S2_IPA;
    const vmid = s1 ? 0 : domain.id;
    const asid = s1 ? domain.id : 0;
    if (!this.info.rangeInv && size >= POW2[tgShift - 3] * domain.granule) {
      // CMDQ_MAX_TLBI_OPS: past this many commands, invalidate the whole context.
      this.flushAll(domain);
      return;
    }
    const end = iova + size;
    let a = iova;
    if (this.info.rangeInv && size * INV_POW2[tgShift] >= 2 ** 31) {
      // SCALE is 5 bits: a range this large cannot be encoded; invalidate the context.
      this.flushAll(domain);
      return;
    }
    if (this.info.rangeInv) {
      let numPages = Math.floor(size * INV_POW2[tgShift]);
      const tg = (tgShift - 10) / 2;
      let ttl = 0;
      if (leaf) {
        if (granule !== this.#ttlPgsize) {
          this.#ttlPgsize = granule;
          this.#ttl = 4 - Math.floor((log2Exact(granule) - 3) / (tgShift - 3));
        }
        ttl = this.#ttl;
      } else if ((numPages & 31) === 1) numPages++;
      while (a < end && numPages > 0) {
        const scale = ffs(numPages);
        const num = Math.floor(numPages * INV_POW2[scale]) & 31;
        tlbiVa(this.#poolCmd(n++), op, vmid, asid, a, leaf, num - 1, scale, ttl, tg);
        const inv = num * POW2[scale + tgShift];
        numPages -= num * POW2[scale];
        a += inv;
      }
    } else {
      for (; a < end; a += granule) {
        tlbiVa(this.#poolCmd(n++), op, vmid, asid, a, leaf, 0, 0, 0, 0);
      }
    }
    this.stats.tlbi += n;
    this.cmdq.issueN(this.#cmdPool, n, true);
    if (domain.nestParent) {
      // Changing a nest parent's stage 2 invalidates every nested stage-1 entry of its VMID.
      this.stats.tlbi++;
      this.cmdq.issueOne(tlbiCtx(this.#cmd, OP.TLBI_NH_ALL, domain.id, 0), true);
    }
    this.#atcInvDomain(domain, iova, size);
  }

  /** The `i`th reusable command buffer (allocated once, on first use). */
  #poolCmd(i: number): Uint32Array {
    const pool = this.#cmdPool;
    while (pool.length <= i) pool.push(newCmd());
    return pool[i];
  }

  /** Invalidate every TLB entry of the domain (TLBI_NH_ASID / TLBI_S12_VMALL) and its ATCs. */
  flushAll(domain: SmmuDomain): void {
    const c = this.#cmd;
    if (domain.stage === "S1") tlbiCtx(c, OP.TLBI_NH_ASID, 0, domain.id);
    else tlbiCtx(c, OP.TLBI_S12_VMALL, domain.id, 0);
    this.stats.tlbi++;
    this.cmdq.issueOne(c, true);
    this.#atcInvDomain(domain, 0, 0);
  }

  #atcInvDomain(domain: SmmuDomain, iova: number, size: number): void {
    if (this.#atsMasters === 0) return; // no master has an ATC
    for (const master of domain.masters) {
      if (!master.ats) continue;
      const rid = master.domain;
      if (rid === domain || (rid instanceof NestedDomain && rid.parent === domain)) {
        this.#atcInvMaster(master, 0, iova, size === 0, size);
      }
      for (const [pasid, d] of master.pasids) {
        if (d === domain) this.#atcInvMaster(master, pasid, iova, size === 0, size);
      }
    }
  }

  /** arm_smmu_atc_inv_to_cmd + SYNC for one master/SSID. */
  #atcInvMaster(master: Master, ssid: number, iova: number, all: boolean, size = 0): void {
    const c = this.#cmd;
    if (all) atcInv(c, master.sid, ssid, 0, 52);
    else {
      // Smallest naturally aligned span covering [iova, iova+size).
      const first = Math.floor(iova / 4096);
      const last = Math.floor((iova + size - 1) / 4096);
      let log = 0;
      while (Math.floor(first / 2 ** log) !== Math.floor(last / 2 ** log)) log++;
      atcInv(c, master.sid, ssid, Math.floor(first / 2 ** log) * 2 ** log * 4096, log);
    }
    this.stats.atcInv++;
    this.cmdq.issueOne(c, true);
  }

  // -------------------------------------------------------------------------
  // Event and PRI queues (the interrupt threads)

  /** Drain the event queue. */
  handleEvtq(): void {
    this.faults.handleEvtq();
  }

  /** Drain the PRI queue. */
  handlePriq(): void {
    this.faults.handlePriq();
  }

  /** The gerror interrupt: command errors are recovered inline by the queue; others are acknowledged. */
  handleGerror(): void {
    const gerror = this.#r32(REG.GERROR);
    const gerrorn = this.#r32(REG.GERRORN);
    const active = (gerror ^ gerrorn) & ~GERROR.CMDQ_ERR;
    if (active) this.#w32(REG.GERRORN, (gerrorn ^ active) >>> 0);
  }
}

/** 2^n for n in 0..64 (no Math.pow on the invalidation path). */
const POW2: Float64Array = Float64Array.from({ length: 65 }, (_, i) => 2 ** i);
/** 2^-n for n in 0..64 (`x * INV_POW2[n]` is `x / 2^n`, exactly). */
const INV_POW2: Float64Array = Float64Array.from({ length: 65 }, (_, i) => 2 ** -i);

/** log2 of a power of two (exact; Math.log2 otherwise). */
function log2Exact(x: number): number {
  if (x >= 1 && x <= 0x4000_0000 && (x & (x - 1)) === 0) return 31 - Math.clz32(x);
  return Math.log2(x);
}
