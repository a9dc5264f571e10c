/**
 * @module
 * The flat IOMMU's programming model: register offsets, register layouts and
 * the two in-memory structures (device table entry and flat page-table
 * entry), each a {@link FieldTable}.
 *
 * Memory structures, little-endian, 8 bytes each:
 * - Device table: 2^LOG2SIZE entries indexed by requester ID, at DT_BASE.
 *   DTE = V[0] | MODE[2:1] (0 blocked, 1 identity, 2 translate) | TABLE[51:12].
 * - Flat page table: one PTE per 4 KiB page of the aperture
 *   [APERTURE_START, 2^APERTURE_BITS), index (iova - APERTURE_START) >> 12.
 *   PTE = V[0] | R[1] | W[2] | ADDR[51:12].
 */

import { FieldTable } from "@iommu-lab/core";

/** FLAT_ID (RO, 32 bits): version, aperture width and IOTLB size. */
export const REG_ID = 0x00;
/** FLAT_CTRL (RW, 32 bits): EN. */
export const REG_CTRL = 0x04;
/** FLAT_STATUS (RO, 32 bits): ENS follows EN once the device table is latched. */
export const REG_STATUS = 0x08;
/** FLAT_INV (WO, 32 bits): write ALL to invalidate the whole IOTLB (reads back 0 when done). */
export const REG_INV = 0x0c;
/** FLAT_DT_BASE (RW, 64 bits): device table address and size. */
export const REG_DT_BASE = 0x10;
/** FLAT_FAULT_STATUS (RW1C, 32 bits): first fault recorded and overflow. */
export const REG_FAULT_STATUS = 0x18;
/** FLAT_FAULT_ADDR (RO, 64 bits): the input address of the recorded fault. */
export const REG_FAULT_ADDR = 0x20;
/** Size of the register window. */
export const MMIO_SIZE = 0x1000;

/** The version this model implements (FLAT_ID.VERSION). */
export const FLAT_VERSION = 1;
/** First IOVA of the aperture (16 MiB). */
export const APERTURE_START = 1 << 24;
/** Page size (the only one). */
export const FLAT_PAGE = 4096;

/** DTE.MODE: all DMA blocked. */
export const MODE_BLOCKED = 0;
/** DTE.MODE: identity (IOVA = PA). */
export const MODE_IDENTITY = 1;
/** DTE.MODE: translate through the flat table. */
export const MODE_TRANSLATE = 2;

/** PTE/DTE valid bit. */
export const PTE_V = 1;
/** PTE read permission. */
export const PTE_R = 2;
/** PTE write permission. */
export const PTE_W = 4;

/** Fault reasons (FLAT_FAULT_STATUS.REASON) and their names. */
export const FaultReason = {
  /** The device table entry is not valid. */
  DTE_INVALID: 1,
  /** The device is attached to the blocked mode. */
  BLOCKED: 2,
  /** The IOVA is outside the aperture. */
  OUT_OF_APERTURE: 3,
  /** A PASID-tagged request (the flat IOMMU has no PASID support). */
  PASID_UNSUPPORTED: 4,
  /** The PTE is not valid. */
  PTE_NOT_PRESENT: 5,
  /** The PTE lacks the permission the access needs. */
  PERMISSION: 6,
  /** The device table entry lies beyond the programmed table size. */
  DT_OVERFLOW: 7,
} as const;

/** FLAT_ID register layout. */
export const FLAT_ID: FieldTable = new FieldTable("FLAT_ID", 4, [
  { name: "VERSION", hi: 7, lo: 0 },
  { name: "APERTURE_BITS", hi: 15, lo: 8 },
  { name: "IOTLB_LOG2", hi: 23, lo: 16 },
]);

/** FLAT_CTRL / FLAT_STATUS layout. */
export const FLAT_CTRL: FieldTable = new FieldTable("FLAT_CTRL", 4, [
  { name: "EN", hi: 0, lo: 0 },
]);

/** FLAT_INV layout. */
export const FLAT_INV: FieldTable = new FieldTable("FLAT_INV", 4, [
  { name: "ALL", hi: 0, lo: 0 },
]);

/** FLAT_DT_BASE layout. */
export const FLAT_DT_BASE: FieldTable = new FieldTable("FLAT_DT_BASE", 8, [
  { name: "LOG2SIZE", hi: 4, lo: 0 },
  { name: "ADDR", hi: 51, lo: 12, address: true },
]);

/** FLAT_FAULT_STATUS layout. */
export const FLAT_FAULT_STATUS: FieldTable = new FieldTable("FLAT_FAULT_STATUS", 4, [
  { name: "FAULT", hi: 0, lo: 0 },
  { name: "OVERFLOW", hi: 1, lo: 1 },
  {
    name: "REASON",
    hi: 7,
    lo: 4,
    values: Object.fromEntries(Object.entries(FaultReason).map(([k, v]) => [v, k])),
  },
  { name: "WRITE", hi: 8, lo: 8 },
  { name: "RID", hi: 31, lo: 16 },
]);

/** Device table entry layout. */
export const FLAT_DTE: FieldTable = new FieldTable("FLAT_DTE", 8, [
  { name: "V", hi: 0, lo: 0 },
  { name: "MODE", hi: 2, lo: 1, values: { 0: "BLOCKED", 1: "IDENTITY", 2: "TRANSLATE" } },
  { name: "TABLE", hi: 51, lo: 12, address: true },
]);

/** Flat page-table entry layout. */
export const FLAT_PTE: FieldTable = new FieldTable("FLAT_PTE", 8, [
  { name: "V", hi: 0, lo: 0 },
  { name: "R", hi: 1, lo: 1 },
  { name: "W", hi: 2, lo: 2 },
  { name: "ADDR", hi: 51, lo: 12, address: true },
]);

/** Bytes of flat table for an aperture ending at 2^apertureBits. */
export function flatTableBytes(apertureBits: number): number {
  return ((2 ** apertureBits - APERTURE_START) / FLAT_PAGE) * 8;
}
