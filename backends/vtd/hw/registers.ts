/**
 * @module
 * VT-d register file layout: offsets and widths by specification name, the
 * CAP/ECAP capability layouts, and command/status bit positions (VT-d
 * specification 3.x, confirmed against Linux drivers/iommu/intel/iommu.h).
 */

import { FieldTable, type RegisterSpec } from "@iommu-lab/core";

/** Register offsets. */
export const REG = {
  VER: 0x00,
  CAP: 0x08,
  ECAP: 0x10,
  GCMD: 0x18,
  GSTS: 0x1c,
  RTADDR: 0x20,
  CCMD: 0x28,
  FSTS: 0x34,
  FECTL: 0x38,
  FEDATA: 0x3c,
  FEADDR: 0x40,
  FEUADDR: 0x44,
  AFLOG: 0x58,
  PMEN: 0x64,
  PLMBASE: 0x68,
  PLMLIMIT: 0x6c,
  PHMBASE: 0x70,
  PHMLIMIT: 0x78,
  IQH: 0x80,
  IQT: 0x88,
  IQA: 0x90,
  ICS: 0x9c,
  IECTL: 0xa0,
  IEDATA: 0xa4,
  IEADDR: 0xa8,
  IEUADDR: 0xac,
  IQERCD: 0xb0,
  IRTA: 0xb8,
  PQH: 0xc0,
  PQT: 0xc8,
  PQA: 0xd0,
  PRS: 0xdc,
  PECTL: 0xe0,
  PEDATA: 0xe4,
  PEADDR: 0xe8,
  PEUADDR: 0xec,
} as const;

/** Offset of the IOTLB registers (ECAP.IRO × 16): IVA_REG, then IOTLB_REG at +8. */
export const IRO_OFFSET = 0x500;
/** Offset of the fault recording registers (CAP.FRO × 16). */
export const FRO_OFFSET = 0x400;
/** Size of the register window. */
export const VTD_MMIO_SIZE = 0x1000;

/** Every register by specification name (fault recording registers as FRCD_REG_n_LO/HI). */
export function vtdRegisterSpecs(nfr: number): RegisterSpec[] {
  const r = (name: string, offset: number, width: 32 | 64): RegisterSpec => ({
    name,
    offset,
    width,
  });
  const list: RegisterSpec[] = [
    r("VER_REG", REG.VER, 32),
    r("CAP_REG", REG.CAP, 64),
    r("ECAP_REG", REG.ECAP, 64),
    r("GCMD_REG", REG.GCMD, 32),
    r("GSTS_REG", REG.GSTS, 32),
    r("RTADDR_REG", REG.RTADDR, 64),
    r("CCMD_REG", REG.CCMD, 64),
    r("FSTS_REG", REG.FSTS, 32),
    r("FECTL_REG", REG.FECTL, 32),
    r("FEDATA_REG", REG.FEDATA, 32),
    r("FEADDR_REG", REG.FEADDR, 32),
    r("FEUADDR_REG", REG.FEUADDR, 32),
    r("AFLOG_REG", REG.AFLOG, 64),
    r("PMEN_REG", REG.PMEN, 32),
    r("PLMBASE_REG", REG.PLMBASE, 32),
    r("PLMLIMIT_REG", REG.PLMLIMIT, 32),
    r("PHMBASE_REG", REG.PHMBASE, 64),
    r("PHMLIMIT_REG", REG.PHMLIMIT, 64),
    r("IQH_REG", REG.IQH, 64),
    r("IQT_REG", REG.IQT, 64),
    r("IQA_REG", REG.IQA, 64),
    r("ICS_REG", REG.ICS, 32),
    r("IECTL_REG", REG.IECTL, 32),
    r("IEDATA_REG", REG.IEDATA, 32),
    r("IEADDR_REG", REG.IEADDR, 32),
    r("IEUADDR_REG", REG.IEUADDR, 32),
    r("IQERCD_REG", REG.IQERCD, 64),
    r("IRTA_REG", REG.IRTA, 64),
    r("PQH_REG", REG.PQH, 64),
    r("PQT_REG", REG.PQT, 64),
    r("PQA_REG", REG.PQA, 64),
    r("PRS_REG", REG.PRS, 32),
    r("PECTL_REG", REG.PECTL, 32),
    r("PEDATA_REG", REG.PEDATA, 32),
    r("PEADDR_REG", REG.PEADDR, 32),
    r("PEUADDR_REG", REG.PEUADDR, 32),
    r("IVA_REG", IRO_OFFSET, 64),
    r("IOTLB_REG", IRO_OFFSET + 8, 64),
  ];
  for (let i = 0; i < nfr; i++) {
    list.push(r(`FRCD_REG_${i}_LO`, FRO_OFFSET + 16 * i, 64));
    list.push(r(`FRCD_REG_${i}_HI`, FRO_OFFSET + 16 * i + 8, 64));
  }
  return list;
}

/** CAP_REG layout. */
export const CAP_REG: FieldTable = new FieldTable("vtd_cap_reg", 8, [
  { name: "ND", hi: 2, lo: 0 },
  { name: "AFL", hi: 3, lo: 3 },
  { name: "RWBF", hi: 4, lo: 4 },
  { name: "PLMR", hi: 5, lo: 5 },
  { name: "PHMR", hi: 6, lo: 6 },
  { name: "CM", hi: 7, lo: 7 },
  { name: "SAGAW", hi: 12, lo: 8 },
  { name: "MGAW", hi: 21, lo: 16 },
  { name: "ZLR", hi: 22, lo: 22 },
  { name: "FRO", hi: 33, lo: 24 },
  { name: "SLLPS", hi: 37, lo: 34 },
  { name: "PSI", hi: 39, lo: 39 },
  { name: "NFR", hi: 47, lo: 40 },
  { name: "MAMV", hi: 53, lo: 48 },
  { name: "DWD", hi: 54, lo: 54 },
  { name: "DRD", hi: 55, lo: 55 },
  { name: "FL1GP", hi: 56, lo: 56 },
  { name: "PI", hi: 59, lo: 59 },
  { name: "FL5LP", hi: 60, lo: 60 },
  { name: "ECMDS", hi: 61, lo: 61 },
  { name: "ESIRTPS", hi: 62, lo: 62 },
  { name: "ESRTPS", hi: 63, lo: 63 },
]);

/** ECAP_REG layout. */
export const ECAP_REG: FieldTable = new FieldTable("vtd_ecap_reg", 8, [
  { name: "C", hi: 0, lo: 0 },
  { name: "QI", hi: 1, lo: 1 },
  { name: "DT", hi: 2, lo: 2 },
  { name: "IR", hi: 3, lo: 3 },
  { name: "EIM", hi: 4, lo: 4 },
  { name: "PT", hi: 6, lo: 6 },
  { name: "SC", hi: 7, lo: 7 },
  { name: "IRO", hi: 17, lo: 8 },
  { name: "MHMV", hi: 23, lo: 20 },
  { name: "MTS", hi: 25, lo: 25 },
  { name: "NEST", hi: 26, lo: 26 },
  { name: "PRS", hi: 29, lo: 29 },
  { name: "ERS", hi: 30, lo: 30 },
  { name: "SRS", hi: 31, lo: 31 },
  { name: "NWFS", hi: 33, lo: 33 },
  { name: "EAFS", hi: 34, lo: 34 },
  { name: "PSS", hi: 39, lo: 35 },
  { name: "PASID", hi: 40, lo: 40 },
  { name: "DIT", hi: 41, lo: 41 },
  { name: "PDS", hi: 42, lo: 42 },
  { name: "SMTS", hi: 43, lo: 43 },
  { name: "VCS", hi: 44, lo: 44 },
  { name: "SLADS", hi: 45, lo: 45 },
  { name: "SLTS", hi: 46, lo: 46 },
  { name: "FLTS", hi: 47, lo: 47 },
  { name: "SMPWC", hi: 48, lo: 48 },
  { name: "RPS", hi: 49, lo: 49 },
  { name: "PMS", hi: 51, lo: 51 },
]);

/** GCMD_REG / GSTS_REG bits (same positions). */
export const GCMD = {
  TE: 1 << 31,
  SRTP: 1 << 30,
  SFL: 1 << 29,
  EAFL: 1 << 28,
  WBF: 1 << 27,
  QIE: 1 << 26,
  IRE: 1 << 25,
  SIRTP: 1 << 24,
  CFI: 1 << 23,
} as const;

/** One-shot GCMD bits: their GSTS status is not a persistent enable. */
export const GCMD_ONE_SHOT: number = (GCMD.SRTP | GCMD.SFL | GCMD.WBF | GCMD.SIRTP) >>> 0;

/** RTADDR_REG translation-table mode (bits 11:10). */
export const RTADDR_TTM_LEGACY = 0;
/** Scalable mode (the kernel's DMA_RTADDR_SMT = bit 10). */
export const RTADDR_TTM_SCALABLE = 1;
/** Abort-DMA mode. */
export const RTADDR_TTM_ABORT = 3;

/** FSTS_REG bits. */
export const FSTS = {
  PFO: 1 << 0,
  PPF: 1 << 1,
  AFO: 1 << 2,
  APF: 1 << 3,
  IQE: 1 << 4,
  ICE: 1 << 5,
  ITE: 1 << 6,
} as const;

/** FSTS_REG layout (32 bits; PFO, AFO, IQE, ICE, ITE, PRO are RW1C). */
export const FSTS_REG: FieldTable = new FieldTable("vtd_fsts_reg", 4, [
  { name: "PFO", hi: 0, lo: 0 },
  { name: "PPF", hi: 1, lo: 1 },
  { name: "AFO", hi: 2, lo: 2 },
  { name: "APF", hi: 3, lo: 3 },
  { name: "IQE", hi: 4, lo: 4 },
  { name: "ICE", hi: 5, lo: 5 },
  { name: "ITE", hi: 6, lo: 6 },
  { name: "PRO", hi: 7, lo: 7 },
  { name: "FRI", hi: 15, lo: 8 },
]);

/**
 * IQERCD_REG layout (VT-d 3.x and later): IQEI is valid while FSTS.IQE is
 * set, ITESID while FSTS.ITE is set, ICESID while FSTS.ICE is set; each SID
 * is captured only when its status bit was clear at detection.
 */
export const IQERCD_REG: FieldTable = new FieldTable("vtd_iqercd_reg", 8, [
  { name: "IQEI", hi: 3, lo: 0 },
  { name: "ITESID", hi: 47, lo: 32 },
  { name: "ICESID", hi: 63, lo: 48 },
]);

/** FSTS bits whose setting is a fault-event interrupt condition only when none of them was set. */
export const FSTS_EVENT_BITS: number = FSTS.PFO | FSTS.PPF | FSTS.IQE | FSTS.ICE | FSTS.ITE;

/** FECTL / IECTL / PECTL: interrupt mask and pending. */
export const ECTL_IM: number = (1 << 31) >>> 0;
/** Interrupt pending. */
export const ECTL_IP = 1 << 30;

/** ICS_REG: invalidation wait descriptor complete. */
export const ICS_IWC = 1;
/** PRS_REG: pending page request. */
export const PRS_PPR = 1;
/** PRS_REG: page request overflow. */
export const PRS_PRO = 2;

/** IQA_REG: 256-bit descriptor width (bit 11). */
export const IQA_DW = 1 << 11;
