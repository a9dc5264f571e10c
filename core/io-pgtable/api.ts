/**
 * @module
 * The io-pgtable factory contract: `allocIoPgtable(fmt, cfg, env)` builds a
 * page table in physical memory and returns its ops plus the register values
 * a driver programs (TTBR/TCR/MAIR, VTTBR/VTCR, or the root pointer and
 * level count for x86 and VT-d tables).
 */

import type { FlushOps, IoPgtableOps } from "../types.ts";
import type { PhysMem } from "../machine/memory.ts";
import type { PageAllocator } from "../machine/page-alloc.ts";

/** Page-table formats. */
export type IoPgtableFormat =
  /** Arm LPAE stage 1 (VMSAv8-64), 4K/16K/64K granules. */
  | "ARM_64_LPAE_S1"
  /** Arm LPAE stage 2, with concatenated start tables. */
  | "ARM_64_LPAE_S2"
  /** x86-64 4/5-level (VT-d first stage and CPU page tables). */
  | "X86_64"
  /** VT-d second stage, 3/4/5 levels by address width. */
  | "VTD_SS";

/** `struct io_pgtable_cfg` inputs. */
export interface IoPgtableCfg {
  /** IO_PGTABLE_QUIRK_* bits. */
  quirks: number;
  /** Requested page sizes; the format narrows it to what it supports (read back from the result). */
  pgsizeBitmap: number;
  /** Input address size in bits. */
  ias: number;
  /** Output address size in bits. */
  oas: number;
  /** Walker is cache coherent. */
  coherentWalk: boolean;
  /** Flush callbacks, or null. */
  tlb: FlushOps | null;
  /**
   * X86_64 only: build a CPU process page table (the SVA layer's mm): U/S
   * set unless IOMMU_PRIV, XD from IOMMU_NOEXEC, PCD|PWT from IOMMU_MMIO,
   * A/D left to the walker. Without it the table is a VT-d first-stage DMA
   * table encoded as the kernel's intel driver does (US|A, D when
   * writable). Ignored by the other formats.
   */
  userMode?: boolean;
  /**
   * Model experiment, not the kernel: unlink and free every table page an
   * unmap leaves empty (flushing its walk, pages through the gather's
   * freelist). The kernel frees a table only when an unmap covers its whole
   * span (or when the page table is freed); that is the default.
   */
  freeEmptyTables?: boolean;
}

/** Stage-1 register values (`arm_lpae_s1_cfg`). */
export interface ArmLpaeS1Regs {
  /** TTBR0 (table base). */
  ttbr: number;
  /** TCR fields. */
  tcr: { ips: number; tg: number; sh: number; orgn: number; irgn: number; tsz: number };
  /** MAIR (as a bigint: all 64 bits matter). */
  mair: bigint;
}

/** Stage-2 register values (`arm_lpae_s2_cfg`). */
export interface ArmLpaeS2Regs {
  /** VTTBR (table base). */
  vttbr: number;
  /** VTCR fields. */
  vtcr: { ps: number; tg: number; sh: number; orgn: number; irgn: number; sl: number; tsz: number };
}

/** A live page table. */
export interface IoPgtable extends IoPgtableOps {
  /** Its format. */
  readonly fmt: IoPgtableFormat;
  /** The configuration, with `pgsizeBitmap` narrowed to what the format maps. */
  readonly cfg: Readonly<IoPgtableCfg>;
  /** Physical address of the top-level table. */
  readonly root: number;
  /** Number of levels walked from the root. */
  readonly levels: number;
  /** Arm stage-1 registers (ARM_64_LPAE_S1). */
  readonly s1?: ArmLpaeS1Regs;
  /** Arm stage-2 registers (ARM_64_LPAE_S2). */
  readonly s2?: ArmLpaeS2Regs;
}

/** Memory a page table lives in. */
export interface IoPgtableEnv {
  /** Physical memory the tables are written to. */
  mem: PhysMem;
  /** Allocator for table pages. */
  pages: PageAllocator;
}
