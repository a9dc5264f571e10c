/**
 * @module
 * SMMUv3 register map (pages 0 and 1) and register field layouts, by their
 * architecture names. Offsets and bits as in arm-smmu-v3.h (about v6.12).
 */

import { FieldTable, type RegisterSpec } from "@iommu-lab/core";

/** Register offsets in the MMIO window (page 1 starts at 0x10000). */
export const REG = {
  IDR0: 0x0,
  IDR1: 0x4,
  IDR2: 0x8,
  IDR3: 0xc,
  IDR4: 0x10,
  IDR5: 0x14,
  IIDR: 0x18,
  AIDR: 0x1c,
  CR0: 0x20,
  CR0ACK: 0x24,
  CR1: 0x28,
  CR2: 0x2c,
  STATUSR: 0x40,
  GBPA: 0x44,
  AGBPA: 0x48,
  IRQ_CTRL: 0x50,
  IRQ_CTRLACK: 0x54,
  GERROR: 0x60,
  GERRORN: 0x64,
  GERROR_IRQ_CFG0: 0x68,
  GERROR_IRQ_CFG1: 0x70,
  GERROR_IRQ_CFG2: 0x74,
  STRTAB_BASE: 0x80,
  STRTAB_BASE_CFG: 0x88,
  CMDQ_BASE: 0x90,
  CMDQ_PROD: 0x98,
  CMDQ_CONS: 0x9c,
  EVTQ_BASE: 0xa0,
  EVTQ_IRQ_CFG0: 0xb0,
  EVTQ_IRQ_CFG1: 0xb8,
  EVTQ_IRQ_CFG2: 0xbc,
  PRIQ_BASE: 0xc0,
  PRIQ_IRQ_CFG0: 0xd0,
  PRIQ_IRQ_CFG1: 0xd8,
  PRIQ_IRQ_CFG2: 0xdc,
  EVTQ_PROD: 0x100a8,
  EVTQ_CONS: 0x100ac,
  PRIQ_PROD: 0x100c8,
  PRIQ_CONS: 0x100cc,
} as const;

/** Size of the register window: two 64 KiB pages. */
export const SMMU_MMIO_SIZE = 0x20000;

const WIDE = new Set([
  "GERROR_IRQ_CFG0",
  "STRTAB_BASE",
  "CMDQ_BASE",
  "EVTQ_BASE",
  "PRIQ_BASE",
  "EVTQ_IRQ_CFG0",
  "PRIQ_IRQ_CFG0",
]);

/** Every register as a {@link RegisterSpec} (64-bit ones with width 64). */
export const SMMU_REGISTERS: readonly RegisterSpec[] = Object.entries(REG).map((
  [name, offset],
) => ({ name, offset, width: WIDE.has(name) ? 64 : 32 }));

/** IDR0 bits. */
export const IDR0 = {
  S2P: 1 << 0,
  S1P: 1 << 1,
  TTF_AARCH64: 2 << 2,
  COHACC: 1 << 4,
  BTM: 1 << 5,
  HTTU_SHIFT: 6,
  HYP: 1 << 9,
  ATS: 1 << 10,
  ASID16: 1 << 12,
  MSI: 1 << 13,
  SEV: 1 << 14,
  PRI: 1 << 16,
  VMID16: 1 << 18,
  CD2L: 1 << 19,
  TTENDIAN_LE: 2 << 21,
  STALL_MODEL_SHIFT: 24,
  ST_LVL_2LVL: 1 << 27,
} as const;

/** CR0 bits. */
export const CR0 = { SMMUEN: 1, PRIQEN: 2, EVTQEN: 4, CMDQEN: 8, ATSCHK: 16 } as const;
/** IRQ_CTRL bits. */
export const IRQ_CTRL = { GERROR_IRQEN: 1, PRIQ_IRQEN: 2, EVTQ_IRQEN: 4 } as const;
/** GERROR bits. */
export const GERROR = {
  CMDQ_ERR: 1 << 0,
  EVTQ_ABT_ERR: 1 << 2,
  PRIQ_ABT_ERR: 1 << 3,
  MSI_CMDQ_ABT_ERR: 1 << 4,
  MSI_EVTQ_ABT_ERR: 1 << 5,
  MSI_PRIQ_ABT_ERR: 1 << 6,
  MSI_GERROR_ABT_ERR: 1 << 7,
  SFM_ERR: 1 << 8,
} as const;
/** GBPA bits. */
export const GBPA = { ABORT: 1 << 20, UPDATE: 1 << 31 } as const;
/** Queue PROD/CONS overflow flag (PROD.OVFLG, CONS.OVACKFLG). */
export const Q_OVF = 0x80000000;

/** Field layouts of the registers (for `inspect decode` and tests). */
export const REGISTER_FIELDS: Record<string, FieldTable> = {
  IDR0: new FieldTable("IDR0", 4, [
    { name: "S2P", hi: 0, lo: 0 },
    { name: "S1P", hi: 1, lo: 1 },
    { name: "TTF", hi: 3, lo: 2, values: { 2: "AARCH64", 3: "AARCH32_64" } },
    { name: "COHACC", hi: 4, lo: 4 },
    { name: "BTM", hi: 5, lo: 5 },
    { name: "HTTU", hi: 7, lo: 6, values: { 0: "NONE", 1: "ACCESS", 2: "ACCESS_DIRTY" } },
    { name: "HYP", hi: 9, lo: 9 },
    { name: "ATS", hi: 10, lo: 10 },
    { name: "ASID16", hi: 12, lo: 12 },
    { name: "MSI", hi: 13, lo: 13 },
    { name: "SEV", hi: 14, lo: 14 },
    { name: "ATOS", hi: 15, lo: 15 },
    { name: "PRI", hi: 16, lo: 16 },
    { name: "VMW", hi: 17, lo: 17 },
    { name: "VMID16", hi: 18, lo: 18 },
    { name: "CD2L", hi: 19, lo: 19 },
    { name: "TTENDIAN", hi: 22, lo: 21, values: { 0: "MIXED", 2: "LE", 3: "BE" } },
    { name: "STALL_MODEL", hi: 25, lo: 24, values: { 0: "STALL", 1: "TERMINATE", 2: "FORCE" } },
    { name: "ST_LEVEL", hi: 28, lo: 27, values: { 0: "LINEAR", 1: "2LVL" } },
  ]),
  IDR1: new FieldTable("IDR1", 4, [
    { name: "SIDSIZE", hi: 5, lo: 0 },
    { name: "SSIDSIZE", hi: 10, lo: 6 },
    { name: "PRIQS", hi: 15, lo: 11 },
    { name: "EVTQS", hi: 20, lo: 16 },
    { name: "CMDQS", hi: 25, lo: 21 },
    { name: "ATTR_TYPES_OVR", hi: 27, lo: 27 },
    { name: "REL", hi: 28, lo: 28 },
    { name: "QUEUES_PRESET", hi: 29, lo: 29 },
    { name: "TABLES_PRESET", hi: 30, lo: 30 },
  ]),
  IDR3: new FieldTable("IDR3", 4, [
    { name: "HAD", hi: 2, lo: 2 },
    { name: "FWB", hi: 8, lo: 8 },
    { name: "RIL", hi: 10, lo: 10 },
  ]),
  IDR5: new FieldTable("IDR5", 4, [
    {
      name: "OAS",
      hi: 2,
      lo: 0,
      values: { 0: "32", 1: "36", 2: "40", 3: "42", 4: "44", 5: "48", 6: "52" },
    },
    { name: "GRAN4K", hi: 4, lo: 4 },
    { name: "GRAN16K", hi: 5, lo: 5 },
    { name: "GRAN64K", hi: 6, lo: 6 },
    { name: "VAX", hi: 11, lo: 10 },
    { name: "STALL_MAX", hi: 31, lo: 16 },
  ]),
  CR0: new FieldTable("CR0", 4, [
    { name: "SMMUEN", hi: 0, lo: 0 },
    { name: "PRIQEN", hi: 1, lo: 1 },
    { name: "EVTQEN", hi: 2, lo: 2 },
    { name: "CMDQEN", hi: 3, lo: 3 },
    { name: "ATSCHK", hi: 4, lo: 4 },
  ]),
  STRTAB_BASE: new FieldTable("STRTAB_BASE", 8, [
    { name: "ADDR", hi: 51, lo: 6, address: true },
    { name: "RA", hi: 62, lo: 62 },
  ]),
  STRTAB_BASE_CFG: new FieldTable("STRTAB_BASE_CFG", 4, [
    { name: "LOG2SIZE", hi: 5, lo: 0 },
    { name: "SPLIT", hi: 10, lo: 6 },
    { name: "FMT", hi: 17, lo: 16, values: { 0: "LINEAR", 1: "2LVL" } },
  ]),
  Q_BASE: new FieldTable("Q_BASE", 8, [
    { name: "LOG2SIZE", hi: 4, lo: 0 },
    { name: "ADDR", hi: 51, lo: 5, address: true },
    { name: "RWA", hi: 62, lo: 62 },
  ]),
  GERROR: new FieldTable("GERROR", 4, [
    { name: "CMDQ_ERR", hi: 0, lo: 0 },
    { name: "EVTQ_ABT_ERR", hi: 2, lo: 2 },
    { name: "PRIQ_ABT_ERR", hi: 3, lo: 3 },
    { name: "MSI_CMDQ_ABT_ERR", hi: 4, lo: 4 },
    { name: "MSI_EVTQ_ABT_ERR", hi: 5, lo: 5 },
    { name: "MSI_PRIQ_ABT_ERR", hi: 6, lo: 6 },
    { name: "MSI_GERROR_ABT_ERR", hi: 7, lo: 7 },
    { name: "SFM_ERR", hi: 8, lo: 8 },
  ]),
  CMDQ_CONS: new FieldTable("CMDQ_CONS", 4, [
    { name: "RD", hi: 19, lo: 0 },
    { name: "ERR", hi: 30, lo: 24, values: { 0: "NONE", 1: "ILL", 2: "ABT", 3: "ATC_INV_SYNC" } },
  ]),
};

/** IDR5.OAS encoding to bits. */
export const OAS_BITS: readonly number[] = [32, 36, 40, 42, 44, 48, 52];
