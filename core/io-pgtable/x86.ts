/**
 * @module
 * x86-64 4- and 5-level page tables, as VT-d first-stage tables (a DMA
 * domain's table) and as CPU process tables for the SVA
 * layer (`cfg.userMode`: U/S set). 4K pages, 2M and 1G pages (PS) when the
 * page-size bitmap allows them, P/RW/US/PWT/PCD/A/D/PS/XD bits, and the
 * canonical-address check on the input.
 *
 * Entry encoding:
 * - table entries: address | P | RW | US | A (the leaf decides access);
 * - VT-d first-stage DMA leaves, as the kernel's `__domain_mapping` writes
 *   them for a first-level domain (about v6.8): address | P | RW (IOMMU_WRITE)
 *   | US | A | D (IOMMU_WRITE) | PS (2M/1G). A and D are preset (first-stage
 *   tables do not track dirty state); IOMMU_NOEXEC, IOMMU_MMIO and IOMMU_PRIV
 *   are not encoded, as in the kernel;
 * - CPU process-table leaves (`cfg.userMode`): address | P | RW
 *   (IOMMU_WRITE) | US (unless IOMMU_PRIV) | PCD|PWT (IOMMU_MMIO: uncached) |
 *   PS | XD (IOMMU_NOEXEC). A and D start clear: the walker (CPU or IOMMU)
 *   sets them and readAndClearDirty harvests D.
 */

import { IommuError } from "../errors.ts";
import { FieldTable } from "../fields.ts";
import { pgsizeBitmapOf, pgsizeIn, pgsizesOf } from "../pgsize.ts";
import { IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_PRIV, IOMMU_WRITE } from "../types.ts";
import type { IoPgtableCfg, IoPgtableEnv } from "./api.ts";
import { RadixPgtable } from "./engine.ts";

/** x86 page-table entry (any level; PS makes a level-2/3 entry a leaf). */
export const X86_PTE: FieldTable = new FieldTable("X86_PTE", 8, [
  { name: "P", hi: 0, lo: 0 },
  { name: "RW", hi: 1, lo: 1 },
  { name: "US", hi: 2, lo: 2 },
  { name: "PWT", hi: 3, lo: 3 },
  { name: "PCD", hi: 4, lo: 4 },
  { name: "A", hi: 5, lo: 5 },
  { name: "D", hi: 6, lo: 6 },
  { name: "PS", hi: 7, lo: 7 },
  { name: "G", hi: 8, lo: 8 },
  { name: "ADDR", hi: 51, lo: 12, address: true },
  { name: "XD", hi: 63, lo: 63 },
]);

/** Present. */
export const X86_PTE_P = 1 << 0;
/** Writable. */
export const X86_PTE_RW = 1 << 1;
/** User/supervisor (set: user accessible). */
export const X86_PTE_US = 1 << 2;
/** Page write-through. */
export const X86_PTE_PWT = 1 << 3;
/** Page cache disable. */
export const X86_PTE_PCD = 1 << 4;
/** Accessed. */
export const X86_PTE_A = 1 << 5;
/** Dirty. */
export const X86_PTE_D = 1 << 6;
/** Page size: a 2M or 1G leaf at levels 2/3. */
export const X86_PTE_PS = 1 << 7;
/** Execute disable, bit 63: bit 31 of the high half. */
export const X86_PTE_XD_HI = 1 << 31;

const TWO32 = 4294967296;
const SIZES = [0x1000, 2 ** 21, 2 ** 30];

/** An x86-64 4/5-level table in physical memory. */
export class X86Pgtable extends RadixPgtable {
  readonly #user: boolean;
  readonly #canonLimit: number;

  /** ias 48 (4-level) or 57 (5-level); oas up to 52; page sizes 4K (+2M, 1G). */
  constructor(cfg: IoPgtableCfg, env: IoPgtableEnv) {
    const op = "alloc_io_pgtable_ops";
    if (cfg.ias !== 48 && cfg.ias !== 57) {
      throw new IommuError(
        "EINVAL",
        op,
        `X86_64: ias ${cfg.ias} is not supported; allowed: 48 (4-level) or 57 (5-level)`,
      );
    }
    if (!Number.isInteger(cfg.oas) || cfg.oas < 32 || cfg.oas > 52) {
      throw new IommuError("EINVAL", op, `X86_64: oas ${cfg.oas} is outside 32..52 bits`);
    }
    if (!pgsizeIn(cfg.pgsizeBitmap, 0x1000)) {
      throw new IommuError("EINVAL", op, `X86_64: the page-size bitmap must include 4K`);
    }
    if (cfg.quirks !== 0) {
      throw new IommuError(
        "EINVAL",
        op,
        `X86_64: quirks 0x${cfg.quirks.toString(16)} are not supported; allowed: none`,
      );
    }
    const bitmap = pgsizeBitmapOf(pgsizesOf(cfg.pgsizeBitmap).filter((s) => SIZES.includes(s)));
    const levels = cfg.ias === 57 ? 5 : 4;
    const shifts: number[] = [];
    for (let l = 0; l < levels; l++) shifts.push(12 + 9 * (levels - 1 - l));
    super("X86_64", { ...cfg, pgsizeBitmap: bitmap }, env, {
      levels,
      shifts,
      idxBits: shifts.map(() => 9),
      tableBytes: 4096,
      freesCoveredTables: true,
      presentLoMask: X86_PTE_P,
      leafLinearBelow: 2 ** 52,
    });
    this.#user = cfg.userMode === true;
    this.#canonLimit = 2 ** cfg.ias;
  }

  /** True for a CPU process table (U/S set). */
  get userMode(): boolean {
    return this.#user;
  }

  /** IOMMU_* prot to leaf attribute bits (protLo/protHi). */
  protected protToPte(prot: number): void {
    let lo = X86_PTE_P;
    if (prot & IOMMU_WRITE) lo |= X86_PTE_RW;
    if (this.#user) {
      if (!(prot & IOMMU_PRIV)) lo |= X86_PTE_US;
      if (prot & IOMMU_MMIO) lo |= X86_PTE_PCD | X86_PTE_PWT;
      this.protHi = (prot & IOMMU_NOEXEC) ? X86_PTE_XD_HI : 0;
    } else {
      lo |= X86_PTE_US | X86_PTE_A;
      if (prot & IOMMU_WRITE) lo |= X86_PTE_D;
      this.protHi = 0;
    }
    this.protLo = lo;
  }

  /**
   * Canonical form: bits 63:ias-1 must all equal bit ias-1. Addresses are
   * numbers below 2^53, so an upper-half address is passed masked to `ias`
   * bits (DESIGN.md "Numbers"); anything at or above 2^ias is non-canonical.
   */
  protected override checkIova(op: string, iova: number, size: number): void {
    const limit = this.#canonLimit;
    if (iova >= limit || iova + size > limit) {
      throw new IommuError(
        "EINVAL",
        op,
        `iova range [0x${iova.toString(16)}, 0x${(iova + size).toString(16)}) is not canonical ` +
          `for ${this.levels}-level paging: bits 63:${this.cfg.ias - 1} must equal bit ${
            this.cfg.ias - 1
          } (pass upper-half addresses masked to ${this.cfg.ias} bits)`,
      );
    }
  }

  /** Valid entry test for this format. */
  protected isPresent(lo: number, _hi: number): boolean {
    return (lo & X86_PTE_P) !== 0;
  }

  /** Leaf (page or block) test at a level. */
  protected isLeaf(lo: number, _hi: number, level: number): boolean {
    return level === this.levels - 1 || (lo & X86_PTE_PS) !== 0;
  }

  /** Address held by an entry (next table or output address). */
  protected addrOf(lo: number, hi: number, level: number): number {
    // Large pages keep PAT at bit 12; their address is aligned to the page size.
    const mask = level === this.levels - 1 || (lo & X86_PTE_PS) === 0 ? 0xfffff000 : 0xffffe000;
    return (hi & 0xfffff) * TWO32 + ((lo & mask) >>> 0);
  }

  /** Table entry for a next-level table into outLo/outHi. */
  protected encodeTable(table: number, _level: number): void {
    this.outLo = ((table >>> 0) | X86_PTE_P | X86_PTE_RW | X86_PTE_US | X86_PTE_A) >>> 0;
    this.outHi = Math.floor(table / TWO32) >>> 0;
  }

  /** Leaf entry for paddr into outLo/outHi. */
  protected encodeLeaf(paddr: number, level: number): void {
    let lo = (paddr >>> 0) | this.protLo;
    if (level !== this.levels - 1) lo |= X86_PTE_PS;
    this.outLo = lo >>> 0;
    this.outHi = (Math.floor(paddr / TWO32) | this.protHi) >>> 0;
  }

  /** Dirty-state test of a leaf. */
  protected isDirty(lo: number, _hi: number): boolean {
    return (lo & X86_PTE_D) !== 0;
  }

  /** The leaf with its dirty state cleared, into outLo/outHi. */
  protected cleanDirty(lo: number, hi: number): void {
    this.outLo = (lo & ~X86_PTE_D) >>> 0;
    this.outHi = hi;
  }
}
