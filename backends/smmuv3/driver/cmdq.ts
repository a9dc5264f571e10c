/**
 * @module
 * The driver's command queue (arm_smmu_cmdq): a ring in memory the driver
 * fills and whose PROD it publishes through MMIO; completion by CMD_SYNC
 * with an MSI write into the sync entry itself (as the kernel's
 * MSI-polling mode) or SEV with CONS polling; command errors recovered as
 * arm_smmu_cmdq_skip_err does (an illegal command is replaced by a
 * CMD_SYNC, then GERRORN acknowledges the error).
 */

import { IommuError, type Machine } from "@iommu-lab/core";
import { CERROR } from "../hw/structs.ts";
import { GERROR, REG } from "../hw/regs.ts";
import { newCmd, sync } from "./cmds.ts";

/** Counters of the driver's queue use. */
export interface CmdqStats {
  /** Commands written. */
  commands: number;
  /** CMD_SYNCs issued. */
  syncs: number;
  /** PROD doorbells. */
  doorbells: number;
  /** Command errors recovered. */
  errors: number;
  /** Index signature for the counter registry. */
  [k: string]: number;
}

/** The driver side of the command queue. */
export class DriverCmdq {
  /** Base physical address of the ring. */
  readonly base: number;
  /** Log2 of the number of entries. */
  readonly log2: number;
  /** 2^log2 - 1: the index bits of PROD/CONS. */
  readonly #idxMask: number;
  /** 2^log2: the wrap bit. */
  readonly #wrapBit: number;
  /** 2^(log2+1) - 1: index and wrap bits. */
  readonly #wrapMask: number;
  #prod = 0;
  /** The ring page written last (a backed page's words never move) and its number. */
  #page: Uint32Array | null = null;
  #pagePfn = -1;
  /** The ring's first page number and the offset of its base in that page. */
  readonly #basePfn: number;
  readonly #baseOff: number;
  /** Every entry is 16-byte aligned and inside memory: written in place. */
  readonly #inPlace: boolean;
  readonly #m: Machine;
  readonly #regs: number;
  readonly #msi: boolean;
  readonly #sync = newCmd();
  readonly #hi = new Uint32Array(1);
  /** Counters. */
  readonly stats: CmdqStats;
  /** Last command error seen (CERROR code) — for tests and reports. */
  lastError = 0;

  /** Use the ring at `base` (2^log2 entries); registers at `regs`. */
  constructor(
    machine: Machine,
    regs: number,
    base: number,
    log2: number,
    msi: boolean,
    stats: CmdqStats,
  ) {
    this.#m = machine;
    this.#regs = regs;
    this.base = base;
    this.log2 = log2;
    this.#wrapBit = 2 ** log2;
    this.#idxMask = this.#wrapBit - 1;
    this.#wrapMask = this.#wrapBit * 2 - 1;
    this.#msi = msi;
    this.stats = stats;
    this.#basePfn = Math.floor(base / 4096);
    this.#baseOff = base - this.#basePfn * 4096;
    this.#inPlace = base % 16 === 0 && base + this.#wrapBit * 16 <= machine.mem.limit;
  }

  /** Program CMDQ_BASE/PROD/CONS (queue disabled). */
  program(): void {
    const bus = this.#m.bus;
    bus.write64(this.#regs + REG.CMDQ_BASE, BigInt(this.base) | BigInt(this.log2) | (1n << 62n));
    bus.write32(this.#regs + REG.CMDQ_PROD, 0);
    bus.write32(this.#regs + REG.CMDQ_CONS, 0);
    this.#prod = 0;
    this.#lastCons = 0;
  }

  #cons(): number {
    return this.#m.bus.read32(this.#regs + REG.CMDQ_CONS);
  }

  /** Last CONS value read (the ring is known not to be full relative to it). */
  #lastCons = 0;

  #full(cons: number): boolean {
    const n = this.#wrapBit;
    return (this.#prod & this.#idxMask) === (cons & this.#idxMask) &&
      (this.#prod & n) !== (cons & n);
  }

  /** Append one command (ringing PROD first when the ring is full). */
  #append(cmd: Uint32Array): void {
    // Read CONS only when the ring looks full against the last value seen.
    if (this.#full(this.#lastCons) && this.#full(this.#lastCons = this.#cons())) {
      this.#doorbell();
      this.#waitCons();
    }
    const idx = this.#prod & this.#idxMask;
    if (!this.#inPlace) {
      // Not reachable with an allocated ring (misaligned or past memory); exact anyway.
      this.#m.mem.writeWords(this.base + idx * 16, cmd);
      this.#prod = (this.#prod + 1) & this.#wrapMask;
      this.stats.commands++;
      return;
    }
    // A 16-byte aligned entry lies in one page: write its words in place (as
    // mem.writeWords would, counted in mem.stats), the page looked up on change.
    // Page and word from the ring's page and offset (32-bit integers, no division).
    const off = this.#baseOff + idx * 16;
    const pfn = this.#basePfn + (off >>> 12);
    if (pfn !== this.#pagePfn) {
      this.#page = this.#m.mem.backPageWords(pfn);
      this.#pagePfn = pfn;
    }
    const w = this.#page!;
    const i = (off & 4095) >>> 2;
    w[i] = cmd[0];
    w[i + 1] = cmd[1];
    w[i + 2] = cmd[2];
    w[i + 3] = cmd[3];
    this.#m.mem.stats.writes += 4;
    this.#prod = (this.#prod + 1) & this.#wrapMask;
    this.stats.commands++;
  }

  #doorbell(): void {
    this.stats.doorbells++;
    this.#m.bus.write32(this.#regs + REG.CMDQ_PROD, this.#prod);
  }

  /** Wait until CONS reaches PROD, recovering command errors (bounded, then ETIMEDOUT). */
  #waitCons(): void {
    for (let tries = 0; tries < 64; tries++) {
      const cons = this.#cons();
      this.#lastCons = cons;
      if ((cons & this.#wrapMask) === this.#prod) return;
      this.#handleError();
    }
    throw new IommuError(
      "ETIMEDOUT",
      "arm_smmu_cmdq_issue",
      "CMD_SYNC timeout: the command queue stopped",
    );
  }

  /** arm_smmu_cmdq_skip_err + GERRORN acknowledgement, if a command error is active. */
  #handleError(): void {
    const bus = this.#m.bus;
    const gerror = bus.read32(this.#regs + REG.GERROR);
    const gerrorn = bus.read32(this.#regs + REG.GERRORN);
    if (((gerror ^ gerrorn) & GERROR.CMDQ_ERR) === 0) {
      throw new IommuError(
        "ETIMEDOUT",
        "arm_smmu_cmdq_issue",
        "command queue stalled with no error reported",
      );
    }
    const cons = this.#cons();
    const err = (cons >>> 24) & 0x7f;
    this.lastError = err;
    this.stats.errors++;
    if (err === CERROR.ILL) {
      // Replace the illegal command by a CMD_SYNC (no completion signal).
      const idx = cons & this.#idxMask;
      this.#m.mem.writeWords(this.base + idx * 16, sync(newCmd(), 0, 0, 0));
    }
    // ABT: retry; ATC_INV_SYNC: the CMD_SYNC is repeated (it may fail again).
    bus.write32(this.#regs + REG.GERRORN, (gerrorn ^ (GERROR.CMDQ_ERR)) >>> 0);
  }

  /** Issue `cmds` (each a 4-word command) and optionally a CMD_SYNC; waits for completion. */
  issue(cmds: readonly Uint32Array[], withSync: boolean): void {
    for (let i = 0; i < cmds.length; i++) this.#append(cmds[i]);
    if (withSync) this.#issueSync();
    else {
      this.#doorbell();
      this.#waitCons();
    }
  }

  /** Issue the first `n` of `cmds` (a reused pool) and optionally a CMD_SYNC; waits for completion. */
  issueN(cmds: readonly Uint32Array[], n: number, withSync: boolean): void {
    for (let i = 0; i < n; i++) this.#append(cmds[i]);
    if (withSync) this.#issueSync();
    else {
      this.#doorbell();
      this.#waitCons();
    }
  }

  /** Issue one command (optionally followed by CMD_SYNC). */
  issueOne(cmd: Uint32Array, withSync: boolean): void {
    this.#append(cmd);
    if (withSync) this.#issueSync();
    else {
      this.#doorbell();
      this.#waitCons();
    }
  }

  /**
   * The first word of the ring entry at `a` as mem.read32 reads it (counted in
   * mem.stats): from the ring page written last when the entry lies in it.
   */
  #readEntryWord0(a: number): number {
    if (!this.#inPlace) return this.#m.mem.read32(a);
    const off = this.#baseOff + (a - this.base);
    if (this.#basePfn + (off >>> 12) !== this.#pagePfn) return this.#m.mem.read32(a);
    this.#m.mem.stats.reads++;
    return this.#page![(off & 4095) >>> 2];
  }

  /** CMD_SYNC and wait: MSI write of 0 into the sync entry's first word (polled), else CONS. */
  #issueSync(): void {
    this.stats.syncs++;
    const idx = this.#prod & this.#idxMask;
    const a = this.base + idx * 16;
    if (this.#msi) sync(this.#sync, 1, a, 0);
    else sync(this.#sync, 2, 0, 0);
    this.#append(this.#sync);
    this.#doorbell();
    this.#waitCons();
    if (this.#msi && this.#readEntryWord0(a) !== 0) {
      // The sync entry was replaced or the MSI write failed; CONS already passed it.
      this.#hi[0] = 0;
    }
  }
}
