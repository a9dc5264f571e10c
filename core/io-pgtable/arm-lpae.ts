/**
 * @module
 * Arm LPAE (VMSAv8-64) stage-1 and stage-2 tables as the kernel's
 * io-pgtable-arm.c builds them (about v6.12): 4K/16K/64K granules, block
 * entries where the granule allows them (4K: 1G/2M, 16K: 32M, 64K: 512M and
 * 4T with a 52-bit output), stage-2 concatenated start tables (up to 16),
 * TCR/VTCR/MAIR values, the prot → attribute mapping and hardware dirty
 * state (IO_PGTABLE_QUIRK_ARM_HD: DBM with AP[2] as the "clean" bit).
 */

import { IommuError } from "../errors.ts";
import { FieldTable } from "../fields.ts";
import { pgsizeBitmapOf, pgsizeIn, pgsizesOf } from "../pgsize.ts";
import {
  IOMMU_CACHE,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
  IoPgtableQuirk,
} from "../types.ts";
import type { ArmLpaeS1Regs, ArmLpaeS2Regs, IoPgtableCfg, IoPgtableEnv } from "./api.ts";
import { RadixPgtable, sizeName } from "./engine.ts";

const SZ_4K = 0x1000;
const SZ_16K = 0x4000;
const SZ_64K = 0x10000;

/** `ARM_LPAE_MAX_ADDR_BITS`: largest ias/oas the allocator accepts. */
export const ARM_LPAE_MAX_ADDR_BITS = 52;
/** `ARM_LPAE_S2_MAX_CONCAT_PAGES`: most start tables stage 2 concatenates. */
export const ARM_LPAE_S2_MAX_CONCAT_PAGES = 16;
/** `ARM_LPAE_MAX_LEVELS`. */
export const ARM_LPAE_MAX_LEVELS = 4;

/** Descriptor type field (bits 1:0): block. */
export const ARM_LPAE_PTE_TYPE_BLOCK = 1;
/** Descriptor type field: table (levels 0-2) or page (level 3). */
export const ARM_LPAE_PTE_TYPE_TABLE = 3;
/** Descriptor type field at level 3: page. */
export const ARM_LPAE_PTE_TYPE_PAGE = 3;

/** MAIR attribute: device nGnRE. */
export const ARM_LPAE_MAIR_ATTR_DEVICE = 0x04;
/** MAIR attribute: normal non-cacheable. */
export const ARM_LPAE_MAIR_ATTR_NC = 0x44;
/** MAIR attribute: inner non-cacheable, outer write-back RW-allocate. */
export const ARM_LPAE_MAIR_ATTR_INC_OWBRWA = 0xf4;
/** MAIR attribute: normal write-back RW-allocate. */
export const ARM_LPAE_MAIR_ATTR_WBRWA = 0xff;
/** MAIR index of non-cacheable memory. */
export const ARM_LPAE_MAIR_ATTR_IDX_NC = 0;
/** MAIR index of cacheable memory (IOMMU_CACHE). */
export const ARM_LPAE_MAIR_ATTR_IDX_CACHE = 1;
/** MAIR index of device memory (IOMMU_MMIO). */
export const ARM_LPAE_MAIR_ATTR_IDX_DEV = 2;
/** MAIR index of inner-NC/outer-cacheable memory (system cache). */
export const ARM_LPAE_MAIR_ATTR_IDX_INC_OCACHE = 3;
/** The MAIR value the kernel programs: 0xf404ff44. */
export const ARM_LPAE_MAIR: bigint = 0xf404ff44n;

/** TCR.TG0 / VTCR.TG0 encoding of the granule. */
export const ARM_LPAE_TCR_TG0 = { 4096: 0, 65536: 1, 16384: 2 } as const;
/** TCR/VTCR SH values. */
export const ARM_LPAE_TCR_SH = { NS: 0, OS: 2, IS: 3 } as const;
/** TCR/VTCR IRGN/ORGN values. */
export const ARM_LPAE_TCR_RGN = { NC: 0, WBWA: 1, WT: 2, WB: 3 } as const;
/** TCR.IPS / VTCR.PS encoding of each output size the kernel accepts. */
export const ARM_LPAE_TCR_PS: Readonly<Record<number, number>> = {
  32: 0,
  36: 1,
  40: 2,
  42: 3,
  44: 4,
  48: 5,
  52: 6,
};

/** Stage-1 block/page descriptor (a leaf). OA is bits 47:12; with a 64K granule bits 15:12 hold PA[51:48]. */
export const ARM_LPAE_S1_LEAF: FieldTable = new FieldTable("ARM_LPAE_S1_LEAF", 8, [
  { name: "VALID", hi: 0, lo: 0 },
  { name: "TYPE", hi: 1, lo: 1, values: { 0: "BLOCK", 1: "PAGE(L3)" } },
  { name: "ATTRINDX", hi: 4, lo: 2, values: { 0: "NC", 1: "CACHE", 2: "DEV", 3: "INC_OCACHE" } },
  { name: "NS", hi: 5, lo: 5 },
  { name: "AP", hi: 7, lo: 6, values: { 0: "RW_EL1", 1: "RW", 2: "RO_EL1", 3: "RO" } },
  { name: "SH", hi: 9, lo: 8, values: { 0: "NS", 2: "OS", 3: "IS" } },
  { name: "AF", hi: 10, lo: 10 },
  { name: "nG", hi: 11, lo: 11 },
  { name: "OA", hi: 47, lo: 12, address: true },
  { name: "DBM", hi: 51, lo: 51 },
  { name: "CONT", hi: 52, lo: 52 },
  { name: "PXN", hi: 53, lo: 53 },
  { name: "UXN", hi: 54, lo: 54 },
]);

/** Stage-2 block/page descriptor (a leaf). */
export const ARM_LPAE_S2_LEAF: FieldTable = new FieldTable("ARM_LPAE_S2_LEAF", 8, [
  { name: "VALID", hi: 0, lo: 0 },
  { name: "TYPE", hi: 1, lo: 1, values: { 0: "BLOCK", 1: "PAGE(L3)" } },
  {
    name: "MEMATTR",
    hi: 5,
    lo: 2,
    values: { 1: "DEV", 5: "NC", 6: "FWB_WB", 15: "OIWB" },
  },
  { name: "S2AP", hi: 7, lo: 6, values: { 0: "NONE", 1: "R", 2: "W", 3: "RW" } },
  { name: "SH", hi: 9, lo: 8, values: { 0: "NS", 2: "OS", 3: "IS" } },
  { name: "AF", hi: 10, lo: 10 },
  { name: "OA", hi: 47, lo: 12, address: true },
  { name: "DBM", hi: 51, lo: 51 },
  { name: "CONT", hi: 52, lo: 52 },
  { name: "XN", hi: 54, lo: 53 },
]);

/** Table descriptor (levels 0-2). */
export const ARM_LPAE_TABLE: FieldTable = new FieldTable("ARM_LPAE_TABLE", 8, [
  { name: "VALID", hi: 0, lo: 0 },
  { name: "TYPE", hi: 1, lo: 1, values: { 1: "TABLE" } },
  { name: "NEXT", hi: 47, lo: 12, address: true },
  { name: "PXNTABLE", hi: 59, lo: 59 },
  { name: "XNTABLE", hi: 60, lo: 60 },
  { name: "APTABLE", hi: 62, lo: 61 },
  { name: "NSTABLE", hi: 63, lo: 63 },
]);

/** Stage-1 TCR fields the kernel fills (TCR_EL1 / SMMU CD layout for TTBR0). */
export const ARM_LPAE_TCR: FieldTable = new FieldTable("ARM_LPAE_TCR", 8, [
  { name: "T0SZ", hi: 5, lo: 0 },
  { name: "IRGN0", hi: 9, lo: 8, values: { 0: "NC", 1: "WBWA", 2: "WT", 3: "WB" } },
  { name: "ORGN0", hi: 11, lo: 10, values: { 0: "NC", 1: "WBWA", 2: "WT", 3: "WB" } },
  { name: "SH0", hi: 13, lo: 12, values: { 0: "NS", 2: "OS", 3: "IS" } },
  { name: "TG0", hi: 15, lo: 14, values: { 0: "4K", 1: "64K", 2: "16K" } },
  {
    name: "IPS",
    hi: 34,
    lo: 32,
    values: { 0: "32", 1: "36", 2: "40", 3: "42", 4: "44", 5: "48", 6: "52" },
  },
]);

/** VTCR fields (VTCR_EL2 / SMMU STE.S2VTCR layout). */
export const ARM_LPAE_VTCR: FieldTable = new FieldTable("ARM_LPAE_VTCR", 4, [
  { name: "T0SZ", hi: 5, lo: 0 },
  { name: "SL0", hi: 7, lo: 6 },
  { name: "IRGN0", hi: 9, lo: 8, values: { 0: "NC", 1: "WBWA", 2: "WT", 3: "WB" } },
  { name: "ORGN0", hi: 11, lo: 10, values: { 0: "NC", 1: "WBWA", 2: "WT", 3: "WB" } },
  { name: "SH0", hi: 13, lo: 12, values: { 0: "NS", 2: "OS", 3: "IS" } },
  { name: "TG0", hi: 15, lo: 14, values: { 0: "4K", 1: "64K", 2: "16K" } },
  {
    name: "PS",
    hi: 18,
    lo: 16,
    values: { 0: "32", 1: "36", 2: "40", 3: "42", 4: "44", 5: "48", 6: "52" },
  },
]);

/** TCR as a 64-bit value (bigint) from the kernel's `tcr` fields. */
export function encodeArmTcr(tcr: ArmLpaeS1Regs["tcr"]): bigint {
  const w = ARM_LPAE_TCR.encode({
    T0SZ: tcr.tsz,
    IRGN0: tcr.irgn,
    ORGN0: tcr.orgn,
    SH0: tcr.sh,
    TG0: tcr.tg,
    IPS: tcr.ips,
  });
  return (BigInt(w[1]) << 32n) | BigInt(w[0]);
}

/** VTCR as a 32-bit value from the kernel's `vtcr` fields. */
export function encodeArmVtcr(vtcr: ArmLpaeS2Regs["vtcr"]): number {
  return ARM_LPAE_VTCR.encode({
    T0SZ: vtcr.tsz,
    SL0: vtcr.sl,
    IRGN0: vtcr.irgn,
    ORGN0: vtcr.orgn,
    SH0: vtcr.sh,
    TG0: vtcr.tg,
    PS: vtcr.ps,
  })[0];
}

/** What `arm_lpae_alloc_pgtable` (+ the S2 concatenation) decides for a configuration. */
export interface ArmLpaeLayout {
  /** Translation granule in bytes. */
  granule: number;
  /** Page sizes kept from the request. */
  pgsizeBitmap: number;
  /** Input size after clamping. */
  ias: number;
  /** Output size after clamping. */
  oas: number;
  /** Architectural level the walk starts at (0..3). */
  startLevel: number;
  /** Levels walked (4 - startLevel). */
  levels: number;
  /** Index bits of the start-level table (entries = 2^pgdBits). */
  pgdBits: number;
  /** Index bits of other levels (granule shift - 3). */
  bitsPerLevel: number;
}

/**
 * The kernel's sizing: pick the granule from the bitmap
 * (`arm_lpae_restrict_pgsizes`), keep the page sizes it can map, clamp
 * ias/oas to 48 (52 with 64K), count levels, and for stage 2 concatenate up
 * to 16 start tables one level down. Throws EINVAL naming what is allowed.
 */
export function armLpaeLayout(
  fmt: "ARM_64_LPAE_S1" | "ARM_64_LPAE_S2",
  cfg: IoPgtableCfg,
): ArmLpaeLayout {
  const op = "alloc_io_pgtable_ops";
  const sizes = pgsizesOf(cfg.pgsizeBitmap);
  let granule = 0;
  if (pgsizeIn(cfg.pgsizeBitmap, SZ_4K)) granule = SZ_4K;
  else if (sizes.some((s) => s < SZ_4K)) granule = 0;
  else if (sizes.length > 0) granule = sizes[0];
  let pageSizes: number[] = [];
  let maxBits = 48;
  if (granule === SZ_4K) pageSizes = [SZ_4K, 2 ** 21, 2 ** 30];
  else if (granule === SZ_16K) pageSizes = [SZ_16K, 2 ** 25];
  else if (granule === SZ_64K) {
    maxBits = 52;
    pageSizes = [SZ_64K, 2 ** 29];
    if (cfg.oas > 48) pageSizes.push(2 ** 42);
  }
  const bitmap = pgsizeBitmapOf(sizes.filter((s) => pageSizes.includes(s)));
  if (bitmap === 0) {
    throw new IommuError(
      "EINVAL",
      op,
      `${fmt}: page sizes [${sizes.map(sizeName).join(", ")}] hold no supported granule; ` +
        `allowed: 4K (with 2M, 1G), 16K (with 32M), 64K (with 512M, 4T for oas > 48)`,
    );
  }
  for (const [name, v] of [["ias", cfg.ias], ["oas", cfg.oas]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > ARM_LPAE_MAX_ADDR_BITS) {
      throw new IommuError(
        "EINVAL",
        op,
        `${fmt}: ${name} ${v} is outside 1..${ARM_LPAE_MAX_ADDR_BITS} bits`,
      );
    }
  }
  const ias = Math.min(cfg.ias, maxBits);
  const oas = Math.min(cfg.oas, maxBits);
  if (ARM_LPAE_TCR_PS[oas] === undefined) {
    throw new IommuError(
      "EINVAL",
      op,
      `${fmt}: oas ${oas} (after clamping to ${maxBits} for the ${
        sizeName(granule)
      } granule) is not one of 32, 36, 40, 42, 44, 48, 52`,
    );
  }
  const pgShift = Math.log2(granule);
  const bpl = pgShift - 3;
  const vaBits = ias - pgShift;
  if (vaBits <= bpl) {
    throw new IommuError(
      "EINVAL",
      op,
      `${fmt}: ias ${ias} is too small for the ${sizeName(granule)} granule; it must exceed ${
        pgShift + bpl
      }`,
    );
  }
  let levels = Math.ceil(vaBits / bpl);
  let startLevel = ARM_LPAE_MAX_LEVELS - levels;
  let pgdBits = vaBits - bpl * (levels - 1);
  if (
    fmt === "ARM_64_LPAE_S2" && startLevel === 0 && 2 ** pgdBits <= ARM_LPAE_S2_MAX_CONCAT_PAGES
  ) {
    pgdBits += bpl;
    startLevel++;
    levels--;
  }
  return {
    granule,
    pgsizeBitmap: bitmap,
    ias,
    oas,
    startLevel,
    levels,
    pgdBits,
    bitsPerLevel: bpl,
  };
}

// Bits of the two halves (lo = bits 31:0, hi = bits 63:32).
const LO_VALID = 1 << 0;
const LO_NS = 1 << 5;
const LO_AP_UNPRIV = 1 << 6;
const LO_AP_RDONLY = 2 << 6;
const LO_SH_OS = 2 << 8;
const LO_SH_IS = 3 << 8;
const LO_AF = 1 << 10;
const LO_NG = 1 << 11;
const LO_HAP_READ = 1 << 6;
const LO_HAP_WRITE = 2 << 6;
const LO_MEMATTR_DEV = 0x1 << 2;
const LO_MEMATTR_NC = 0x5 << 2;
const LO_MEMATTR_FWB_WB = 0x6 << 2;
const LO_MEMATTR_OIWB = 0xf << 2;
const HI_DBM = 1 << (51 - 32);
const HI_XN = 3 << (53 - 32);
const HI_NSTABLE = 1 << (63 - 32);
const TWO32 = 4294967296;
const TWO48 = 2 ** 48;

const S1_QUIRKS = IoPgtableQuirk.ARM_NS | IoPgtableQuirk.ARM_TTBR1 |
  IoPgtableQuirk.ARM_OUTER_WBWA | IoPgtableQuirk.ARM_HD | IoPgtableQuirk.NO_WARN_ON;
const S2_QUIRKS = IoPgtableQuirk.ARM_S2FWB | IoPgtableQuirk.NO_WARN_ON;

/** An Arm LPAE stage-1 or stage-2 table in physical memory. */
export class ArmLpaePgtable extends RadixPgtable {
  /** Sizing the allocator chose. */
  readonly layout: ArmLpaeLayout;
  /** Stage-1 registers (ARM_64_LPAE_S1). */
  readonly s1?: ArmLpaeS1Regs;
  /** Stage-2 registers (ARM_64_LPAE_S2). */
  readonly s2?: ArmLpaeS2Regs;
  readonly #stage1: boolean;
  readonly #addrLoMask: number;
  readonly #packHigh: boolean;

  /** Validate `cfg` as `arm_64_lpae_alloc_pgtable_s1/_s2` do and allocate the start table(s). */
  constructor(fmt: "ARM_64_LPAE_S1" | "ARM_64_LPAE_S2", cfg: IoPgtableCfg, env: IoPgtableEnv) {
    const op = "alloc_io_pgtable_ops";
    const stage1 = fmt === "ARM_64_LPAE_S1";
    const allowed = stage1 ? S1_QUIRKS : S2_QUIRKS;
    if ((cfg.quirks & ~allowed) !== 0) {
      throw new IommuError(
        "EINVAL",
        op,
        `${fmt}: quirks 0x${cfg.quirks.toString(16)} include unsupported bits; allowed: ${
          stage1 ? "ARM_NS, ARM_TTBR1, ARM_OUTER_WBWA, ARM_HD, NO_WARN_ON" : "ARM_S2FWB, NO_WARN_ON"
        }`,
      );
    }
    if (cfg.quirks & IoPgtableQuirk.ARM_TTBR1) {
      throw new IommuError(
        "EOPNOTSUPP",
        op,
        `${fmt}: IO_PGTABLE_QUIRK_ARM_TTBR1 (upper VA range) is not modelled; use TTBR0 tables`,
      );
    }
    if (stage1 && cfg.coherentWalk && (cfg.quirks & IoPgtableQuirk.ARM_OUTER_WBWA)) {
      throw new IommuError(
        "EINVAL",
        op,
        `${fmt}: ARM_OUTER_WBWA only applies to a non-coherent walk (coherent walks are already WBWA)`,
      );
    }
    const lay = armLpaeLayout(fmt, cfg);
    const shifts: number[] = [];
    const idxBits: number[] = [];
    const pgShift = Math.log2(lay.granule);
    for (let l = 0; l < lay.levels; l++) {
      shifts.push(pgShift + lay.bitsPerLevel * (lay.levels - 1 - l));
      idxBits.push(l === 0 ? lay.pgdBits : lay.bitsPerLevel);
    }
    super(fmt, { ...cfg, pgsizeBitmap: lay.pgsizeBitmap, ias: lay.ias, oas: lay.oas }, env, {
      levels: lay.levels,
      shifts,
      idxBits,
      tableBytes: lay.granule,
      presentLoMask: LO_VALID,
      // The output address sits in place below 2^48 (a 64K granule packs PA[51:48] into bits 15:12).
      leafLinearBelow: 2 ** 48,
    });
    this.rangeErrno = "ERANGE";
    this.layout = lay;
    this.#stage1 = stage1;
    this.#addrLoMask = (~(lay.granule - 1)) >>> 0;
    this.#packHigh = lay.granule === SZ_64K;
    const coherent = cfg.coherentWalk;
    const tg = ARM_LPAE_TCR_TG0[lay.granule as 4096 | 16384 | 65536];
    const ps = ARM_LPAE_TCR_PS[lay.oas];
    if (stage1) {
      const outer = !coherent && (cfg.quirks & IoPgtableQuirk.ARM_OUTER_WBWA) !== 0;
      this.s1 = {
        ttbr: this.root,
        tcr: {
          ips: ps,
          tg,
          sh: coherent ? ARM_LPAE_TCR_SH.IS : ARM_LPAE_TCR_SH.OS,
          orgn: coherent || outer ? ARM_LPAE_TCR_RGN.WBWA : ARM_LPAE_TCR_RGN.NC,
          irgn: coherent ? ARM_LPAE_TCR_RGN.WBWA : ARM_LPAE_TCR_RGN.NC,
          tsz: 64 - lay.ias,
        },
        mair: ARM_LPAE_MAIR,
      };
    } else {
      let sl = lay.startLevel;
      if (lay.granule === SZ_4K) sl++; // SL0 is encoded differently for 4K
      this.s2 = {
        vttbr: this.root,
        vtcr: {
          ps,
          tg,
          sh: coherent ? ARM_LPAE_TCR_SH.IS : ARM_LPAE_TCR_SH.OS,
          orgn: coherent ? ARM_LPAE_TCR_RGN.WBWA : ARM_LPAE_TCR_RGN.NC,
          irgn: coherent ? ARM_LPAE_TCR_RGN.WBWA : ARM_LPAE_TCR_RGN.NC,
          sl: ~sl & 3,
          tsz: 64 - lay.ias,
        },
      };
    }
  }

  /** Number of concatenated start tables (1 unless stage 2 concatenated). */
  get concatenatedTables(): number {
    return Math.max(1, this.rootBytes / this.granule);
  }

  /** `arm_lpae_prot_to_pte`. */
  protected protToPte(prot: number): void {
    const q = this.cfg.quirks;
    let lo = LO_AF;
    let hi = 0;
    if (this.#stage1) {
      lo |= LO_NG;
      if (!(prot & IOMMU_WRITE) && (prot & IOMMU_READ)) lo |= LO_AP_RDONLY;
      else if (q & IoPgtableQuirk.ARM_HD) hi |= HI_DBM;
      if (!(prot & IOMMU_PRIV)) lo |= LO_AP_UNPRIV;
      if (prot & IOMMU_MMIO) lo |= ARM_LPAE_MAIR_ATTR_IDX_DEV << 2;
      else if (prot & IOMMU_CACHE) lo |= ARM_LPAE_MAIR_ATTR_IDX_CACHE << 2;
      if (q & IoPgtableQuirk.ARM_NS) lo |= LO_NS;
    } else {
      if (prot & IOMMU_READ) lo |= LO_HAP_READ;
      if (prot & IOMMU_WRITE) lo |= LO_HAP_WRITE;
      if (prot & IOMMU_MMIO) lo |= LO_MEMATTR_DEV;
      else if (prot & IOMMU_CACHE) {
        lo |= (q & IoPgtableQuirk.ARM_S2FWB) ? LO_MEMATTR_FWB_WB : LO_MEMATTR_OIWB;
      } else lo |= LO_MEMATTR_NC;
    }
    lo |= (prot & IOMMU_CACHE) ? LO_SH_IS : LO_SH_OS;
    if (prot & IOMMU_NOEXEC) hi |= HI_XN;
    this.protLo = lo;
    this.protHi = hi;
  }

  /** Address bits of an entry for `paddr` (`paddr_to_iopte`), into outLo/outHi. */
  #addrBits(paddr: number): void {
    let lo = paddr >>> 0;
    const hi = Math.floor(paddr / TWO32) & 0xffff;
    if (this.#packHigh && paddr >= TWO48) lo |= (Math.floor(paddr / TWO48) & 0xf) << 12;
    this.outLo = lo;
    this.outHi = hi;
  }

  /** Valid entry test for this format. */
  protected isPresent(lo: number, _hi: number): boolean {
    return (lo & LO_VALID) !== 0;
  }

  /** Leaf (page or block) test at a level. */
  protected isLeaf(lo: number, _hi: number, level: number): boolean {
    return level === this.levels - 1 || (lo & 3) === ARM_LPAE_PTE_TYPE_BLOCK;
  }

  /** Address held by an entry (next table or output address). */
  protected addrOf(lo: number, hi: number, _level: number): number {
    let a = (hi & 0xffff) * TWO32 + ((lo & this.#addrLoMask) >>> 0);
    if (this.#packHigh) a += ((lo >>> 12) & 0xf) * TWO48;
    return a;
  }

  /** Table entry for a next-level table into outLo/outHi. */
  protected encodeTable(table: number, _level: number): void {
    this.#addrBits(table);
    this.outLo = (this.outLo | ARM_LPAE_PTE_TYPE_TABLE) >>> 0;
    if (this.cfg.quirks & IoPgtableQuirk.ARM_NS) this.outHi = (this.outHi | HI_NSTABLE) >>> 0;
  }

  /** Leaf entry for paddr into outLo/outHi. */
  protected encodeLeaf(paddr: number, level: number): void {
    this.#addrBits(paddr);
    const type = level === this.levels - 1 ? ARM_LPAE_PTE_TYPE_PAGE : ARM_LPAE_PTE_TYPE_BLOCK;
    this.outLo = (this.outLo | this.protLo | type) >>> 0;
    this.outHi = (this.outHi | this.protHi) >>> 0;
  }

  /** Writeable-dirty: DBM set and AP[2] (read-only) clear. */
  protected isDirty(lo: number, hi: number): boolean {
    return (hi & HI_DBM) !== 0 && (lo & LO_AP_RDONLY) === 0;
  }

  /** The leaf with its dirty state cleared, into outLo/outHi. */
  protected cleanDirty(lo: number, hi: number): void {
    this.outLo = (lo | LO_AP_RDONLY) >>> 0;
    this.outHi = hi;
  }

  /** Refuse dirty harvesting where the format has none. */
  protected override checkDirtySupport(): void {
    if (!this.#stage1) {
      throw new IommuError(
        "EINVAL",
        "read_and_clear_dirty",
        `${this.fmt} tables do not track dirty state; only ARM_64_LPAE_S1 with IO_PGTABLE_QUIRK_ARM_HD does`,
      );
    }
  }
}
