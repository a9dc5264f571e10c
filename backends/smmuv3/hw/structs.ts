/**
 * @module
 * SMMUv3 in-memory structures as field tables: STE, CD, level-1 stream-table
 * and CD-table descriptors, every command, the event record and the PRI
 * record. Bit positions follow the Arm SMMUv3 architecture as the Linux
 * driver spells them (arm-smmu-v3.h, about v6.12), counted from bit 0 of the
 * structure's first little-endian word.
 *
 * Address fields in the first doubleword decode as addresses; address fields
 * in later doublewords (TTB0, S2TTB, command addresses, MSI address, IPA)
 * hold the raw field, i.e. the address shifted right by the field's low bit
 * within its doubleword (TTB0 and S2TTB: 4; VA/IPA: 12; MSIAddress: 2).
 */

import { FieldTable } from "@iommu-lab/core";

/** STE config values (STE.Config, bits 3:1). */
export const STE_CFG = {
  ABORT: 0,
  BYPASS: 4,
  S1_TRANS: 5,
  S2_TRANS: 6,
  NESTED: 7,
} as const;

/** STE.S1DSS values. */
export const S1DSS = { TERMINATE: 0, BYPASS: 1, SSID0: 2 } as const;
/** STE.S1FMT values. */
export const S1FMT = { LINEAR: 0, L2_4K: 1, L2_64K: 2 } as const;
/** STE.EATS values. */
export const EATS = { ABT: 0, TRANS: 1, S1CHK: 2 } as const;
/** STE.STRW values. */
export const STRW = { NSEL1: 0, EL2: 2 } as const;

/** Stream table entry: 64 bytes. */
export const STE: FieldTable = new FieldTable("STE", 64, [
  { name: "V", hi: 0, lo: 0 },
  {
    name: "CONFIG",
    hi: 3,
    lo: 1,
    values: { 0: "ABORT", 4: "BYPASS", 5: "S1_TRANS", 6: "S2_TRANS", 7: "NESTED" },
  },
  { name: "S1FMT", hi: 5, lo: 4, values: { 0: "LINEAR", 1: "4K_L2", 2: "64K_L2" } },
  { name: "S1ContextPtr", hi: 51, lo: 6, address: true },
  { name: "S1CDMax", hi: 63, lo: 59 },
  { name: "S1DSS", hi: 65, lo: 64, values: { 0: "TERMINATE", 1: "BYPASS", 2: "SSID0" } },
  { name: "S1CIR", hi: 67, lo: 66 },
  { name: "S1COR", hi: 69, lo: 68 },
  { name: "S1CSH", hi: 71, lo: 70 },
  { name: "S1STALLD", hi: 91, lo: 91 },
  { name: "EATS", hi: 93, lo: 92, values: { 0: "ABT", 1: "TRANS", 2: "S1CHK" } },
  { name: "STRW", hi: 95, lo: 94, values: { 0: "NSEL1", 2: "EL2" } },
  { name: "SHCFG", hi: 109, lo: 108, values: { 1: "INCOMING" } },
  { name: "S2VMID", hi: 143, lo: 128 },
  { name: "S2T0SZ", hi: 165, lo: 160 },
  { name: "S2SL0", hi: 167, lo: 166 },
  { name: "S2IR0", hi: 169, lo: 168 },
  { name: "S2OR0", hi: 171, lo: 170 },
  { name: "S2SH0", hi: 173, lo: 172 },
  { name: "S2TG", hi: 175, lo: 174, values: { 0: "4K", 1: "64K", 2: "16K" } },
  { name: "S2PS", hi: 178, lo: 176 },
  { name: "S2AA64", hi: 179, lo: 179 },
  { name: "S2ENDI", hi: 180, lo: 180 },
  { name: "S2AFFD", hi: 181, lo: 181 },
  { name: "S2PTW", hi: 182, lo: 182 },
  { name: "S2HD", hi: 183, lo: 183 },
  { name: "S2HA", hi: 184, lo: 184 },
  { name: "S2S", hi: 185, lo: 185 },
  { name: "S2R", hi: 186, lo: 186 },
  { name: "S2TTB", hi: 243, lo: 196 },
]);

/** Context descriptor: 64 bytes. */
export const CD: FieldTable = new FieldTable("CD", 64, [
  { name: "T0SZ", hi: 5, lo: 0 },
  { name: "TG0", hi: 7, lo: 6, values: { 0: "4K", 1: "64K", 2: "16K" } },
  { name: "IRGN0", hi: 9, lo: 8 },
  { name: "ORGN0", hi: 11, lo: 10 },
  { name: "SH0", hi: 13, lo: 12 },
  { name: "EPD0", hi: 14, lo: 14 },
  { name: "ENDI", hi: 15, lo: 15 },
  { name: "T1SZ", hi: 21, lo: 16 },
  { name: "TG1", hi: 23, lo: 22 },
  { name: "IRGN1", hi: 25, lo: 24 },
  { name: "ORGN1", hi: 27, lo: 26 },
  { name: "SH1", hi: 29, lo: 28 },
  { name: "EPD1", hi: 30, lo: 30 },
  { name: "V", hi: 31, lo: 31 },
  {
    name: "IPS",
    hi: 34,
    lo: 32,
    values: { 0: "32", 1: "36", 2: "40", 3: "42", 4: "44", 5: "48", 6: "52" },
  },
  { name: "AFFD", hi: 35, lo: 35 },
  { name: "WXN", hi: 36, lo: 36 },
  { name: "UWXN", hi: 37, lo: 37 },
  { name: "TBI0", hi: 38, lo: 38 },
  { name: "TBI1", hi: 39, lo: 39 },
  { name: "PAN", hi: 40, lo: 40 },
  { name: "AA64", hi: 41, lo: 41 },
  { name: "HD", hi: 42, lo: 42 },
  { name: "HA", hi: 43, lo: 43 },
  { name: "S", hi: 44, lo: 44 },
  { name: "R", hi: 45, lo: 45 },
  { name: "A", hi: 46, lo: 46 },
  { name: "ASET", hi: 47, lo: 47 },
  { name: "ASID", hi: 63, lo: 48 },
  { name: "NSCFG0", hi: 64, lo: 64 },
  { name: "HAD0", hi: 65, lo: 65 },
  { name: "TTB0", hi: 115, lo: 68 },
  { name: "HAD1", hi: 129, lo: 129 },
  { name: "TTB1", hi: 179, lo: 132 },
  { name: "MAIR0", hi: 223, lo: 192 },
  { name: "MAIR1", hi: 255, lo: 224 },
  { name: "AMAIR0", hi: 287, lo: 256 },
  { name: "AMAIR1", hi: 319, lo: 288 },
]);

/** Level-1 stream-table descriptor: 8 bytes. */
export const L1_STD: FieldTable = new FieldTable("L1_STD", 8, [
  { name: "SPAN", hi: 4, lo: 0 },
  { name: "L2Ptr", hi: 51, lo: 6, address: true },
]);

/** Level-1 context-descriptor-table descriptor: 8 bytes. */
export const L1_CD: FieldTable = new FieldTable("L1_CD", 8, [
  { name: "V", hi: 0, lo: 0 },
  { name: "L2Ptr", hi: 51, lo: 12, address: true },
]);

/** Command opcodes. */
export const OP = {
  PREFETCH_CONFIG: 0x01,
  PREFETCH_ADDR: 0x02,
  CFGI_STE: 0x03,
  CFGI_STE_RANGE: 0x04,
  CFGI_CD: 0x05,
  CFGI_CD_ALL: 0x06,
  CFGI_VMS_PIDM: 0x07,
  TLBI_NH_ALL: 0x10,
  TLBI_NH_ASID: 0x11,
  TLBI_NH_VA: 0x12,
  TLBI_NH_VAA: 0x13,
  TLBI_EL3_ALL: 0x18,
  TLBI_EL3_VA: 0x1a,
  TLBI_EL2_ALL: 0x20,
  TLBI_EL2_ASID: 0x21,
  TLBI_EL2_VA: 0x22,
  TLBI_EL2_VAA: 0x23,
  TLBI_S12_VMALL: 0x28,
  TLBI_S2_IPA: 0x2a,
  TLBI_NSNH_ALL: 0x30,
  ATC_INV: 0x40,
  PRI_RESP: 0x41,
  RESUME: 0x44,
  STALL_TERM: 0x45,
  CMD_SYNC: 0x46,
} as const;

/** `CMDQ_CFGI_1_RANGE` value that makes CFGI_STE_RANGE invalidate every STE (the CFGI_ALL form). */
export const CFGI_ALL_RANGE = 31;

const OP_FIELD = { name: "OP", hi: 7, lo: 0 } as const;
const SSV = { name: "SSV", hi: 11, lo: 11 } as const;
const SSID = { name: "SSID", hi: 31, lo: 12 } as const;
const SID = { name: "SID", hi: 63, lo: 32 } as const;
const NUM = { name: "NUM", hi: 16, lo: 12 } as const;
const SCALE = { name: "SCALE", hi: 24, lo: 20 } as const;
const VMID = { name: "VMID", hi: 47, lo: 32 } as const;
const ASID = { name: "ASID", hi: 63, lo: 48 } as const;
const LEAF = { name: "Leaf", hi: 64, lo: 64 } as const;
const TTL = { name: "TTL", hi: 73, lo: 72 } as const;
const TG = { name: "TG", hi: 75, lo: 74, values: { 0: "none", 1: "4K", 2: "16K", 3: "64K" } };
const VA = { name: "Address", hi: 127, lo: 76 } as const;
const IPA = { name: "Address", hi: 115, lo: 76 } as const;

function cmd(name: string, fields: FieldTable["fields"]): FieldTable {
  return new FieldTable(name, 16, [OP_FIELD, ...fields]);
}

/** Every command layout by name (16 bytes each). */
export const COMMANDS: Record<string, FieldTable> = {
  CMD_PREFETCH_CONFIG: cmd("CMD_PREFETCH_CONFIG", [SSV, SSID, SID]),
  CMD_PREFETCH_ADDR: cmd("CMD_PREFETCH_ADDR", [
    SSV,
    SSID,
    SID,
    { name: "Size", hi: 68, lo: 64 },
    { name: "Address", hi: 127, lo: 76 },
  ]),
  CMD_CFGI_STE: cmd("CMD_CFGI_STE", [SID, LEAF]),
  CMD_CFGI_STE_RANGE: cmd("CMD_CFGI_STE_RANGE", [SID, { name: "Range", hi: 68, lo: 64 }]),
  CMD_CFGI_CD: cmd("CMD_CFGI_CD", [SSID, SID, LEAF]),
  CMD_CFGI_CD_ALL: cmd("CMD_CFGI_CD_ALL", [SID]),
  CMD_TLBI_NH_ALL: cmd("CMD_TLBI_NH_ALL", [VMID]),
  CMD_TLBI_NH_ASID: cmd("CMD_TLBI_NH_ASID", [VMID, ASID]),
  CMD_TLBI_NH_VA: cmd("CMD_TLBI_NH_VA", [NUM, SCALE, VMID, ASID, LEAF, TTL, TG, VA]),
  CMD_TLBI_NH_VAA: cmd("CMD_TLBI_NH_VAA", [NUM, SCALE, VMID, LEAF, TTL, TG, VA]),
  CMD_TLBI_EL2_ALL: cmd("CMD_TLBI_EL2_ALL", []),
  CMD_TLBI_EL2_ASID: cmd("CMD_TLBI_EL2_ASID", [ASID]),
  CMD_TLBI_EL2_VA: cmd("CMD_TLBI_EL2_VA", [NUM, SCALE, ASID, LEAF, TTL, TG, VA]),
  CMD_TLBI_EL2_VAA: cmd("CMD_TLBI_EL2_VAA", [NUM, SCALE, LEAF, TTL, TG, VA]),
  CMD_TLBI_S12_VMALL: cmd("CMD_TLBI_S12_VMALL", [VMID]),
  CMD_TLBI_S2_IPA: cmd("CMD_TLBI_S2_IPA", [NUM, SCALE, VMID, LEAF, TTL, TG, IPA]),
  CMD_TLBI_NSNH_ALL: cmd("CMD_TLBI_NSNH_ALL", []),
  CMD_ATC_INV: cmd("CMD_ATC_INV", [
    { name: "Global", hi: 9, lo: 9 },
    SSV,
    SSID,
    SID,
    { name: "Size", hi: 69, lo: 64 },
    { name: "Address", hi: 127, lo: 76 },
  ]),
  CMD_PRI_RESP: cmd("CMD_PRI_RESP", [
    SSV,
    SSID,
    SID,
    { name: "PRGIndex", hi: 72, lo: 64 },
    { name: "Resp", hi: 77, lo: 76, values: { 0: "DENY", 1: "FAIL", 2: "SUCC" } },
  ]),
  CMD_RESUME: cmd("CMD_RESUME", [
    { name: "Action", hi: 13, lo: 12, values: { 0: "TERM", 1: "RETRY", 2: "ABORT" } },
    SID,
    { name: "STAG", hi: 79, lo: 64 },
  ]),
  CMD_STALL_TERM: cmd("CMD_STALL_TERM", [SID]),
  CMD_SYNC: cmd("CMD_SYNC", [
    { name: "CS", hi: 13, lo: 12, values: { 0: "SIG_NONE", 1: "SIG_IRQ", 2: "SIG_SEV" } },
    { name: "MSH", hi: 23, lo: 22 },
    { name: "MSIAttr", hi: 27, lo: 24 },
    { name: "MSIData", hi: 63, lo: 32 },
    { name: "MSIAddress", hi: 115, lo: 66 },
  ]),
};

/** Command name by opcode. */
export const OP_NAME: Record<number, string> = Object.fromEntries(
  Object.entries(OP).map(([k, v]) => [v, k]),
);

/** Event IDs. */
export const EVT = {
  F_UUT: 0x01,
  C_BAD_STREAMID: 0x02,
  F_STE_FETCH: 0x03,
  C_BAD_STE: 0x04,
  F_BAD_ATS_TREQ: 0x05,
  F_STREAM_DISABLED: 0x06,
  F_TRANSL_FORBIDDEN: 0x07,
  C_BAD_SUBSTREAMID: 0x08,
  F_CD_FETCH: 0x09,
  C_BAD_CD: 0x0a,
  F_WALK_EABT: 0x0b,
  F_TRANSLATION: 0x10,
  F_ADDR_SIZE: 0x11,
  F_ACCESS: 0x12,
  F_PERMISSION: 0x13,
  F_TLB_CONFLICT: 0x20,
  F_CFG_CONFLICT: 0x21,
  E_PAGE_REQUEST: 0x24,
  F_VMS_FETCH: 0x25,
} as const;

/** Event name by ID. */
export const EVT_NAME: Record<number, string> = Object.fromEntries(
  Object.entries(EVT).map(([k, v]) => [v, k]),
);

/** Event CLASS values. */
export const EVT_CLASS = { CD: 0, TTD: 1, IN: 2 } as const;

const EVT_COMMON = [
  { name: "EventID", hi: 7, lo: 0, values: EVT_NAME },
  { name: "SSV", hi: 11, lo: 11 },
  { name: "SubstreamID", hi: 31, lo: 12 },
  { name: "StreamID", hi: 63, lo: 32 },
];

/** The generic event record (32 bytes) with the translation-fault fields. */
export const EVENT: FieldTable = new FieldTable("EVENT", 32, [
  ...EVT_COMMON,
  { name: "STAG", hi: 79, lo: 64 },
  { name: "Stall", hi: 95, lo: 95 },
  { name: "PnU", hi: 97, lo: 97 },
  { name: "InD", hi: 98, lo: 98 },
  { name: "RnW", hi: 99, lo: 99 },
  { name: "S2", hi: 103, lo: 103 },
  { name: "CLASS", hi: 105, lo: 104, values: { 0: "CD", 1: "TTD", 2: "IN" } },
  { name: "TT_READ", hi: 108, lo: 108 },
  { name: "InputAddr", hi: 191, lo: 128 },
  { name: "IPA", hi: 243, lo: 204 },
]);

function evt(name: string, extra: FieldTable["fields"]): FieldTable {
  return new FieldTable(name, 32, [...EVT_COMMON, ...extra]);
}

const FAULT_FIELDS = EVENT.fields.slice(4);

/** Each event record layout by name. */
export const EVENTS: Record<string, FieldTable> = {
  C_BAD_STREAMID: evt("C_BAD_STREAMID", []),
  F_STE_FETCH: evt("F_STE_FETCH", [{ name: "FetchAddr", hi: 243, lo: 195 }]),
  C_BAD_STE: evt("C_BAD_STE", []),
  F_STREAM_DISABLED: evt("F_STREAM_DISABLED", []),
  C_BAD_SUBSTREAMID: evt("C_BAD_SUBSTREAMID", []),
  F_CD_FETCH: evt("F_CD_FETCH", [{ name: "FetchAddr", hi: 243, lo: 195 }]),
  C_BAD_CD: evt("C_BAD_CD", []),
  F_TRANSLATION: evt("F_TRANSLATION", FAULT_FIELDS),
  F_ADDR_SIZE: evt("F_ADDR_SIZE", FAULT_FIELDS),
  F_ACCESS: evt("F_ACCESS", FAULT_FIELDS),
  F_PERMISSION: evt("F_PERMISSION", FAULT_FIELDS),
  F_BAD_ATS_TREQ: evt("F_BAD_ATS_TREQ", [
    { name: "RnW", hi: 99, lo: 99 },
    { name: "InputAddr", hi: 191, lo: 128 },
  ]),
  F_TRANSL_FORBIDDEN: evt("F_TRANSL_FORBIDDEN", [
    { name: "RnW", hi: 99, lo: 99 },
    { name: "InputAddr", hi: 191, lo: 128 },
  ]),
};

/** PRI queue record (16 bytes). */
export const PRI_RECORD: FieldTable = new FieldTable("PRI_RECORD", 16, [
  { name: "StreamID", hi: 31, lo: 0 },
  { name: "SubstreamID", hi: 51, lo: 32 },
  { name: "Priv", hi: 58, lo: 58 },
  { name: "Exec", hi: 59, lo: 59 },
  { name: "Read", hi: 60, lo: 60 },
  { name: "Write", hi: 61, lo: 61 },
  { name: "Last", hi: 62, lo: 62 },
  { name: "SSV", hi: 63, lo: 63 },
  { name: "PRGIndex", hi: 72, lo: 64 },
  { name: "PageAddr", hi: 127, lo: 76 },
]);

/** PRI_RESP response codes. */
export const PRI_RESP = { DENY: 0, FAIL: 1, SUCC: 2 } as const;
/** RESUME actions. */
export const RESUME_ACTION = { TERM: 0, RETRY: 1, ABORT: 2 } as const;
/** CMD_SYNC completion signals. */
export const SYNC_CS = { NONE: 0, IRQ: 1, SEV: 2 } as const;
/** CMDQ_CONS.ERR values. */
export const CERROR = { NONE: 0, ILL: 1, ABT: 2, ATC_INV_SYNC: 3 } as const;
