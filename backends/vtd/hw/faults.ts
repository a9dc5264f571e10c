/**
 * @module
 * VT-d DMA-remapping fault reason codes (legacy 0x1–0xD, scalable mode
 * 0x30–0x76), named as in the specification's fault-reason table and in the
 * strings Linux prints (drivers/iommu/dmar.c).
 */

/** Fault reason code to short name. */
export const VTD_FAULT_REASONS: Readonly<Record<number, string>> = {
  0x1: "ROOT_NOT_PRESENT",
  0x2: "CONTEXT_NOT_PRESENT",
  0x3: "CONTEXT_INVALID",
  0x4: "ADDR_BEYOND_MGAW",
  0x5: "PTE_WRITE_NOT_SET",
  0x6: "PTE_READ_NOT_SET",
  0x7: "NEXT_PT_INVALID",
  0x8: "ROOT_TABLE_ADDR_INVALID",
  0x9: "CONTEXT_TABLE_PTR_INVALID",
  0xa: "ROOT_RESERVED",
  0xb: "CONTEXT_RESERVED",
  0xc: "PTE_RESERVED",
  0xd: "CONTEXT_TT_BLOCKED",
  0x30: "SM_INVALID_RTADDR",
  0x31: "SM_TTM0_REQ_WITH_PASID",
  0x32: "SM_TTM0_PAGE_REQ",
  0x38: "SM_ROOT_ACCESS",
  0x39: "SM_ROOT_NOT_PRESENT",
  0x3a: "SM_ROOT_RESERVED",
  0x40: "SM_CONTEXT_ACCESS",
  0x41: "SM_CONTEXT_NOT_PRESENT",
  0x42: "SM_CONTEXT_RESERVED",
  0x43: "SM_CONTEXT_INVALID",
  0x44: "SM_CONTEXT_DTE_CLEAR",
  0x45: "SM_CONTEXT_PASIDE_CLEAR",
  0x46: "SM_PASID_TOO_LARGE",
  0x47: "SM_CONTEXT_PRE_CLEAR",
  0x48: "SM_RID_PASID_ERROR",
  0x50: "SM_PASID_DIR_ACCESS",
  0x51: "SM_PASID_DIR_NOT_PRESENT",
  0x52: "SM_PASID_DIR_RESERVED",
  0x58: "SM_PASID_ENTRY_ACCESS",
  0x59: "SM_PASID_ENTRY_NOT_PRESENT",
  0x5a: "SM_PASID_ENTRY_RESERVED",
  0x5b: "SM_PASID_ENTRY_INVALID",
  0x5c: "SM_PASID_ERE_CLEAR",
  0x5d: "SM_PASID_SRE_CLEAR",
  0x60: "SM_FL_ACCESS",
  0x61: "SM_FL_NOT_PRESENT",
  0x62: "SM_FL_RESERVED",
  0x68: "SM_SL_ACCESS",
  0x69: "SM_SL_PERMISSION",
  0x6a: "SM_SL_RESERVED",
  0x6b: "SM_SL_PTR_INVALID",
  0x70: "SM_FL_NON_CANONICAL",
  0x71: "SM_FL_US_CLEAR",
  0x72: "SM_NO_EXECUTE",
  0x73: "SM_ADDR_BEYOND_MAX",
  0x74: "SM_SL_ADDR_BEYOND_MAX",
  0x75: "SM_NO_WRITE",
  0x76: "SM_NO_READ",
};

/** Name of fault reason `code` (`"UNKNOWN_0x.."` when not in the table). */
export function faultName(code: number): string {
  return VTD_FAULT_REASONS[code] ?? `UNKNOWN_0x${code.toString(16)}`;
}
