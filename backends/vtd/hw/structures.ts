/**
 * @module
 * Bit-exact layouts of the VT-d in-memory structures and queue descriptors
 * (Intel VT-d specification 3.x; positions confirmed against Linux
 * drivers/iommu/intel/{iommu.h,pasid.h}, about v6.8–v6.15). Bit 0 is bit 0 of
 * the structure's first little-endian 32-bit word.
 */

import { FieldTable } from "@iommu-lab/core";

/** Root entry (128-bit), legacy and scalable mode (LCTP/UCTP halves). */
export const ROOT_ENTRY: FieldTable = new FieldTable("vtd_root_entry", 16, [
  { name: "LP", hi: 0, lo: 0 },
  { name: "LCTP", hi: 63, lo: 12, address: true },
  { name: "UP", hi: 64, lo: 64 },
  { name: "UCTP", hi: 127, lo: 76, address: true, addressShift: 12 },
]);

/** Legacy-mode context entry (128-bit). */
export const LEGACY_CONTEXT_ENTRY: FieldTable = new FieldTable("vtd_context_entry", 16, [
  { name: "P", hi: 0, lo: 0 },
  { name: "FPD", hi: 1, lo: 1 },
  {
    name: "TT",
    hi: 3,
    lo: 2,
    values: { 0: "MULTI_LEVEL", 1: "DEV_IOTLB", 2: "PASS_THROUGH", 3: "RESERVED" },
  },
  { name: "SLPTPTR", hi: 63, lo: 12, address: true },
  { name: "AW", hi: 66, lo: 64, values: { 1: "39-bit", 2: "48-bit", 3: "57-bit" } },
  { name: "DID", hi: 87, lo: 72 },
]);

/** Scalable-mode context entry (256-bit). */
export const SM_CONTEXT_ENTRY: FieldTable = new FieldTable("vtd_sm_context_entry", 32, [
  { name: "P", hi: 0, lo: 0 },
  { name: "FPD", hi: 1, lo: 1 },
  { name: "DTE", hi: 2, lo: 2 },
  { name: "PASIDE", hi: 3, lo: 3 },
  { name: "PRE", hi: 4, lo: 4 },
  { name: "PDTS", hi: 11, lo: 9 },
  { name: "PASIDDIRPTR", hi: 63, lo: 12, address: true },
  { name: "RID_PASID", hi: 83, lo: 64 },
]);

/** PASID directory entry (64-bit). */
export const PASID_DIR_ENTRY: FieldTable = new FieldTable("vtd_pasid_dir_entry", 8, [
  { name: "P", hi: 0, lo: 0 },
  { name: "FPD", hi: 1, lo: 1 },
  { name: "SMPTBLPTR", hi: 63, lo: 12, address: true },
]);

/** PASID table entry (512-bit). */
export const PASID_ENTRY: FieldTable = new FieldTable("vtd_pasid_entry", 64, [
  { name: "P", hi: 0, lo: 0 },
  { name: "FPD", hi: 1, lo: 1 },
  { name: "AW", hi: 4, lo: 2, values: { 1: "39-bit", 2: "48-bit", 3: "57-bit" } },
  {
    name: "PGTT",
    hi: 8,
    lo: 6,
    values: { 1: "FL_ONLY", 2: "SL_ONLY", 3: "NESTED", 4: "PASS_THROUGH" },
  },
  { name: "SSADE", hi: 9, lo: 9 },
  { name: "SLPTPTR", hi: 63, lo: 12, address: true },
  { name: "DID", hi: 79, lo: 64 },
  { name: "PWSNP", hi: 87, lo: 87 },
  { name: "PGSNP", hi: 88, lo: 88 },
  { name: "SRE", hi: 128, lo: 128 },
  { name: "ERE", hi: 129, lo: 129 },
  { name: "FLPM", hi: 131, lo: 130, values: { 0: "4-level", 1: "5-level" } },
  { name: "WPE", hi: 132, lo: 132 },
  { name: "EAFE", hi: 135, lo: 135 },
  { name: "FLPTPTR", hi: 191, lo: 140, address: true, addressShift: 12 },
]);

/** PGTT values. */
export const PGTT_FL_ONLY = 1;
/** PGTT: second stage only. */
export const PGTT_SL_ONLY = 2;
/** PGTT: nested. */
export const PGTT_NESTED = 3;
/** PGTT: pass-through. */
export const PGTT_PT = 4;

/** Invalidation descriptor type codes (bits 3:0 of the first qword). */
export const QI_TYPE = {
  CC: 0x1,
  IOTLB: 0x2,
  DIOTLB: 0x3,
  IEC: 0x4,
  IWD: 0x5,
  EIOTLB: 0x6,
  PC: 0x7,
  DEIOTLB: 0x8,
  PGRP_RESP: 0x9,
  PSTRM_RESP: 0xa,
} as const;

const TYPE = { name: "TYPE", hi: 3, lo: 0 } as const;

/** Context-cache invalidate descriptor. */
export const QI_CC_DESC: FieldTable = new FieldTable("vtd_qi_cc", 16, [
  TYPE,
  { name: "GRAN", hi: 5, lo: 4, values: { 1: "GLOBAL", 2: "DOMAIN", 3: "DEVICE" } },
  { name: "DID", hi: 31, lo: 16 },
  { name: "SID", hi: 47, lo: 32 },
  { name: "FM", hi: 49, lo: 48 },
]);

/** IOTLB invalidate descriptor. */
export const QI_IOTLB_DESC: FieldTable = new FieldTable("vtd_qi_iotlb", 16, [
  TYPE,
  { name: "GRAN", hi: 5, lo: 4, values: { 1: "GLOBAL", 2: "DOMAIN", 3: "PAGE" } },
  { name: "DW", hi: 6, lo: 6 },
  { name: "DR", hi: 7, lo: 7 },
  { name: "DID", hi: 31, lo: 16 },
  { name: "AM", hi: 69, lo: 64 },
  { name: "IH", hi: 70, lo: 70 },
  { name: "ADDR", hi: 127, lo: 76, address: true, addressShift: 12 },
]);

/** Device-TLB invalidate descriptor. */
export const QI_DIOTLB_DESC: FieldTable = new FieldTable("vtd_qi_dev_iotlb", 16, [
  TYPE,
  { name: "PFSID_LO", hi: 15, lo: 12 },
  { name: "QDEP", hi: 20, lo: 16 },
  { name: "SID", hi: 47, lo: 32 },
  { name: "PFSID_HI", hi: 63, lo: 52 },
  { name: "S", hi: 64, lo: 64 },
  { name: "ADDR", hi: 127, lo: 76, address: true, addressShift: 12 },
]);

/** Interrupt-entry-cache invalidate descriptor. */
export const QI_IEC_DESC: FieldTable = new FieldTable("vtd_qi_iec", 16, [
  TYPE,
  { name: "G", hi: 4, lo: 4, values: { 0: "GLOBAL", 1: "INDEX" } },
  { name: "IM", hi: 31, lo: 27 },
  { name: "IIDX", hi: 47, lo: 32 },
]);

/** Invalidation wait descriptor. */
export const QI_IWD_DESC: FieldTable = new FieldTable("vtd_qi_wait", 16, [
  TYPE,
  { name: "IF", hi: 4, lo: 4 },
  { name: "SW", hi: 5, lo: 5 },
  { name: "FN", hi: 6, lo: 6 },
  { name: "PD", hi: 7, lo: 7 },
  { name: "STATUS_DATA", hi: 63, lo: 32 },
  { name: "STATUS_ADDR", hi: 127, lo: 66, address: true, addressShift: 2 },
]);

/** PASID-based IOTLB invalidate descriptor. */
export const QI_EIOTLB_DESC: FieldTable = new FieldTable("vtd_qi_piotlb", 16, [
  TYPE,
  { name: "GRAN", hi: 5, lo: 4, values: { 2: "ALL_IN_PASID", 3: "PAGE" } },
  { name: "DID", hi: 31, lo: 16 },
  { name: "PASID", hi: 51, lo: 32 },
  { name: "AM", hi: 69, lo: 64 },
  { name: "IH", hi: 70, lo: 70 },
  { name: "ADDR", hi: 127, lo: 76, address: true, addressShift: 12 },
]);

/** PASID-cache invalidate descriptor. */
export const QI_PC_DESC: FieldTable = new FieldTable("vtd_qi_pc", 16, [
  TYPE,
  { name: "GRAN", hi: 5, lo: 4, values: { 0: "DOMAIN", 1: "PASID", 3: "GLOBAL" } },
  { name: "DID", hi: 31, lo: 16 },
  { name: "PASID", hi: 51, lo: 32 },
]);

/** PASID-based device-TLB invalidate descriptor. */
export const QI_DEIOTLB_DESC: FieldTable = new FieldTable("vtd_qi_dev_piotlb", 16, [
  TYPE,
  { name: "QDEP", hi: 8, lo: 4 },
  { name: "PFSID_LO", hi: 15, lo: 12 },
  { name: "SID", hi: 31, lo: 16 },
  { name: "PASID", hi: 51, lo: 32 },
  { name: "PFSID_HI", hi: 63, lo: 52 },
  { name: "G", hi: 64, lo: 64 },
  { name: "S", hi: 75, lo: 75 },
  { name: "ADDR", hi: 127, lo: 76, address: true, addressShift: 12 },
]);

/** Page group response descriptor. */
export const QI_PGRP_RESP_DESC: FieldTable = new FieldTable("vtd_qi_page_grp_resp", 16, [
  TYPE,
  { name: "PASID_P", hi: 4, lo: 4 },
  { name: "PDP", hi: 5, lo: 5 },
  { name: "RESP", hi: 15, lo: 12, values: { 0: "SUCCESS", 1: "INVALID", 15: "FAILURE" } },
  { name: "RID", hi: 31, lo: 16 },
  { name: "PASID", hi: 51, lo: 32 },
  { name: "LPIG", hi: 66, lo: 66 },
  { name: "PRG_INDEX", hi: 75, lo: 67 },
]);

/** Page request descriptor (256-bit, written by hardware into the page request queue). */
export const PAGE_REQ_DESC: FieldTable = new FieldTable("vtd_page_req_dsc", 32, [
  { name: "TYPE", hi: 7, lo: 0 },
  { name: "PASID_P", hi: 8, lo: 8 },
  { name: "PDP", hi: 9, lo: 9 },
  { name: "RID", hi: 31, lo: 16 },
  { name: "PASID", hi: 51, lo: 32 },
  { name: "EXE", hi: 52, lo: 52 },
  { name: "PM", hi: 53, lo: 53 },
  { name: "RD", hi: 64, lo: 64 },
  { name: "WR", hi: 65, lo: 65 },
  { name: "LPIG", hi: 66, lo: 66 },
  { name: "PRG_INDEX", hi: 75, lo: 67 },
  { name: "ADDR", hi: 127, lo: 76, address: true, addressShift: 12 },
  { name: "PRIV_DATA0", hi: 191, lo: 128 },
  { name: "PRIV_DATA1", hi: 255, lo: 192 },
]);

/** Primary fault recording register (128-bit). */
export const FAULT_RECORD: FieldTable = new FieldTable("vtd_fault_record", 16, [
  { name: "FI", hi: 63, lo: 12, address: true },
  { name: "SID", hi: 79, lo: 64 },
  { name: "T2", hi: 92, lo: 92 },
  { name: "PRIV", hi: 93, lo: 93 },
  { name: "EXE", hi: 94, lo: 94 },
  { name: "PP", hi: 95, lo: 95 },
  { name: "FR", hi: 103, lo: 96 },
  { name: "PV", hi: 123, lo: 104 },
  { name: "AT", hi: 125, lo: 124 },
  { name: "T1", hi: 126, lo: 126, values: { 0: "WRITE", 1: "READ" } },
  { name: "F", hi: 127, lo: 127 },
]);

/** Every VT-d structure and descriptor, by name, for `inspect decode`. */
export const VTD_STRUCTURES: Record<string, FieldTable> = {
  root_entry: ROOT_ENTRY,
  context_entry: LEGACY_CONTEXT_ENTRY,
  sm_context_entry: SM_CONTEXT_ENTRY,
  pasid_dir_entry: PASID_DIR_ENTRY,
  pasid_entry: PASID_ENTRY,
  qi_cc: QI_CC_DESC,
  qi_iotlb: QI_IOTLB_DESC,
  qi_dev_iotlb: QI_DIOTLB_DESC,
  qi_iec: QI_IEC_DESC,
  qi_wait: QI_IWD_DESC,
  qi_piotlb: QI_EIOTLB_DESC,
  qi_pc: QI_PC_DESC,
  qi_dev_piotlb: QI_DEIOTLB_DESC,
  qi_page_grp_resp: QI_PGRP_RESP_DESC,
  page_req_dsc: PAGE_REQ_DESC,
  fault_record: FAULT_RECORD,
};
