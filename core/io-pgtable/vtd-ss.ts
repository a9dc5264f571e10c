/**
 * @module
 * VT-d second-stage tables (`DMA_PTE_*` in drivers/iommu/intel, about
 * v6.12): 3, 4 or 5 levels for a 39, 48 or 57-bit address width, 2M/1G
 * superpages (PS) when the page-size bitmap allows them (SLLPS), R/W
 * permissions, SNP from IOMMU_CACHE, and A/D bits (set by the hardware when
 * the PASID entry enables SSADE) harvested by readAndClearDirty.
 *
 * Entry encoding:
 * - table entries: address | R | W;
 * - leaves: address | R (IOMMU_READ) | W (IOMMU_WRITE) | SNP (IOMMU_CACHE) |
 *   PS (2M/1G).
 * An entry is present when R or W is set (second-stage entries have no P bit).
 */

import { IommuError } from "../errors.ts";
import { FieldTable } from "../fields.ts";
import { pgsizeBitmapOf, pgsizeIn, pgsizesOf } from "../pgsize.ts";
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from "../types.ts";
import type { IoPgtableCfg, IoPgtableEnv } from "./api.ts";
import { RadixPgtable } from "./engine.ts";

/** VT-d second-stage page-table entry. */
export const VTD_SS_PTE: FieldTable = new FieldTable("VTD_SS_PTE", 8, [
  { name: "R", hi: 0, lo: 0 },
  { name: "W", hi: 1, lo: 1 },
  { name: "X", hi: 2, lo: 2 },
  { name: "EMT", hi: 5, lo: 3 },
  { name: "IPAT", hi: 6, lo: 6 },
  { name: "PS", hi: 7, lo: 7 },
  { name: "A", hi: 8, lo: 8 },
  { name: "D", hi: 9, lo: 9 },
  { name: "SNP", hi: 11, lo: 11 },
  { name: "ADDR", hi: 51, lo: 12, address: true },
  { name: "TM", hi: 62, lo: 62 },
]);

/** `DMA_PTE_READ`. */
export const DMA_PTE_READ = 1 << 0;
/** `DMA_PTE_WRITE`. */
export const DMA_PTE_WRITE = 1 << 1;
/** `DMA_PTE_LARGE_PAGE` (PS). */
export const DMA_PTE_LARGE_PAGE = 1 << 7;
/** `DMA_SL_PTE_ACCESS` (A, bit 8). */
export const DMA_SL_PTE_ACCESS = 1 << 8;
/** `DMA_SL_PTE_DIRTY` (D, bit 9). */
export const DMA_SL_PTE_DIRTY = 1 << 9;
/** `DMA_PTE_SNP` (bit 11). */
export const DMA_PTE_SNP = 1 << 11;

/** Address width → levels (the kernel's agaw: 39 → 3, 48 → 4, 57 → 5). */
export const VTD_SS_LEVELS: Readonly<Record<number, number>> = { 39: 3, 48: 4, 57: 5 };

const TWO32 = 4294967296;
const SIZES = [0x1000, 2 ** 21, 2 ** 30];

/** A VT-d second-stage table in physical memory. */
export class VtdSsPgtable extends RadixPgtable {
  /** ias 39/48/57; oas up to 52; page sizes 4K (+2M, 1G). */
  constructor(cfg: IoPgtableCfg, env: IoPgtableEnv) {
    const op = "alloc_io_pgtable_ops";
    const levels = VTD_SS_LEVELS[cfg.ias];
    if (levels === undefined) {
      throw new IommuError(
        "EINVAL",
        op,
        `VTD_SS: address width ${cfg.ias} is not supported; allowed: 39 (3-level), 48 (4-level), 57 (5-level)`,
      );
    }
    if (!Number.isInteger(cfg.oas) || cfg.oas < 32 || cfg.oas > 52) {
      throw new IommuError("EINVAL", op, `VTD_SS: oas ${cfg.oas} is outside 32..52 bits`);
    }
    if (!pgsizeIn(cfg.pgsizeBitmap, 0x1000)) {
      throw new IommuError("EINVAL", op, `VTD_SS: the page-size bitmap must include 4K`);
    }
    if (cfg.quirks !== 0) {
      throw new IommuError(
        "EINVAL",
        op,
        `VTD_SS: quirks 0x${cfg.quirks.toString(16)} are not supported; allowed: none`,
      );
    }
    const shifts: number[] = [];
    for (let l = 0; l < levels; l++) shifts.push(12 + 9 * (levels - 1 - l));
    const bitmap = pgsizeBitmapOf(
      pgsizesOf(cfg.pgsizeBitmap).filter((s) => SIZES.includes(s) && shifts.includes(Math.log2(s))),
    );
    super("VTD_SS", { ...cfg, pgsizeBitmap: bitmap }, env, {
      levels,
      shifts,
      idxBits: shifts.map(() => 9),
      tableBytes: 4096,
      freesCoveredTables: true,
      presentLoMask: DMA_PTE_READ | DMA_PTE_WRITE,
      leafLinearBelow: 2 ** 52,
    });
  }

  /** IOMMU_* prot to leaf attribute bits (protLo/protHi). */
  protected protToPte(prot: number): void {
    let lo = 0;
    if (prot & IOMMU_READ) lo |= DMA_PTE_READ;
    if (prot & IOMMU_WRITE) lo |= DMA_PTE_WRITE;
    if (prot & IOMMU_CACHE) lo |= DMA_PTE_SNP;
    this.protLo = lo;
    this.protHi = 0;
  }

  /** Valid entry test for this format. */
  protected isPresent(lo: number, _hi: number): boolean {
    return (lo & (DMA_PTE_READ | DMA_PTE_WRITE)) !== 0;
  }

  /** Leaf (page or block) test at a level. */
  protected isLeaf(lo: number, _hi: number, level: number): boolean {
    return level === this.levels - 1 || (lo & DMA_PTE_LARGE_PAGE) !== 0;
  }

  /** Address held by an entry (next table or output address). */
  protected addrOf(lo: number, hi: number, _level: number): number {
    return (hi & 0xfffff) * TWO32 + ((lo & 0xfffff000) >>> 0);
  }

  /** Table entry for a next-level table into outLo/outHi. */
  protected encodeTable(table: number, _level: number): void {
    this.outLo = ((table >>> 0) | DMA_PTE_READ | DMA_PTE_WRITE) >>> 0;
    this.outHi = Math.floor(table / TWO32) >>> 0;
  }

  /** Leaf entry for paddr into outLo/outHi. */
  protected encodeLeaf(paddr: number, level: number): void {
    let lo = (paddr >>> 0) | this.protLo;
    if (level !== this.levels - 1) lo |= DMA_PTE_LARGE_PAGE;
    this.outLo = lo >>> 0;
    this.outHi = Math.floor(paddr / TWO32) >>> 0;
  }

  /** Dirty-state test of a leaf. */
  protected isDirty(lo: number, _hi: number): boolean {
    return (lo & DMA_SL_PTE_DIRTY) !== 0;
  }

  /** The leaf with its dirty state cleared, into outLo/outHi. */
  protected cleanDirty(lo: number, hi: number): void {
    this.outLo = (lo & ~DMA_SL_PTE_DIRTY) >>> 0;
    this.outHi = hi;
  }
}
