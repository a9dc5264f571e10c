/**
 * @module
 * The kernel's IOMMU interfaces in TypeScript (include/linux/iommu.h and
 * io-pgtable.h, about v6.15), camelCased. Each member documents the
 * kernel's semantics. Errors are thrown as {@link IommuError} with the
 * kernel's errno; "returns 0" cases of the kernel stay return values.
 *
 * Addresses are `number`s (exact below 2^53). Page-size bitmaps are numbers
 * too and must be handled with arithmetic, not 32-bit bitwise operators (a
 * 64 KiB granule's 4 TiB block is bit 42); see `pgsize.ts`.
 */

import type { IotlbGather } from "./gather.ts";
import type { PciDevice } from "./machine/pci.ts";

// ---------------------------------------------------------------------------
// Domain types: the kernel's bit compositions.

/** `__IOMMU_DOMAIN_PAGING`: the domain has a page table (map/unmap). */
export const __IOMMU_DOMAIN_PAGING = 1 << 0;
/** `__IOMMU_DOMAIN_DMA_API`: the domain is for the DMA API. */
export const __IOMMU_DOMAIN_DMA_API = 1 << 1;
/** `__IOMMU_DOMAIN_PT`: identity (pass-through). */
export const __IOMMU_DOMAIN_PT = 1 << 2;
/** `__IOMMU_DOMAIN_DMA_FQ`: DMA-API domain with a flush queue (lazy). */
export const __IOMMU_DOMAIN_DMA_FQ = 1 << 3;
/** `__IOMMU_DOMAIN_SVA`: shares a CPU mm. */
export const __IOMMU_DOMAIN_SVA = 1 << 4;
/** `__IOMMU_DOMAIN_PLATFORM`: legacy platform domain. */
export const __IOMMU_DOMAIN_PLATFORM = 1 << 5;
/** `__IOMMU_DOMAIN_NESTED`: user-managed stage 1 on a parent. */
export const __IOMMU_DOMAIN_NESTED = 1 << 6;

/** Domain types exactly as the kernel composes them. */
export const DomainType = {
  /** All DMA is blocked. */
  BLOCKED: 0,
  /** DMA addresses are physical addresses. */
  IDENTITY: __IOMMU_DOMAIN_PT,
  /** A paging domain owned by a user (VFIO, iommufd, a driver). */
  UNMANAGED: __IOMMU_DOMAIN_PAGING,
  /** The DMA API's paging domain, strict invalidation. */
  DMA: __IOMMU_DOMAIN_PAGING | __IOMMU_DOMAIN_DMA_API,
  /** The DMA API's paging domain with a flush queue (lazy invalidation). */
  DMA_FQ: __IOMMU_DOMAIN_PAGING | __IOMMU_DOMAIN_DMA_API | __IOMMU_DOMAIN_DMA_FQ,
  /** Shared virtual addressing: translates through a CPU mm. */
  SVA: __IOMMU_DOMAIN_SVA,
  /** Legacy platform domain. */
  PLATFORM: __IOMMU_DOMAIN_PLATFORM,
  /** Nested: a user stage 1 over a parent paging domain. */
  NESTED: __IOMMU_DOMAIN_NESTED,
} as const;

/** A domain type value (one of {@link DomainType}). */
export type DomainType = (typeof DomainType)[keyof typeof DomainType];

/** Name of a domain type value, as sysfs and traces print it. */
export function domainTypeName(t: number): string {
  for (const [k, v] of Object.entries(DomainType)) if (v === t) return k;
  return `0x${t.toString(16)}`;
}

// ---------------------------------------------------------------------------
// Protection flags and PASID constants.

/** `IOMMU_READ`. */
export const IOMMU_READ = 1 << 0;
/** `IOMMU_WRITE`. */
export const IOMMU_WRITE = 1 << 1;
/** `IOMMU_CACHE`: DMA is cache coherent. */
export const IOMMU_CACHE = 1 << 2;
/** `IOMMU_NOEXEC`: no instruction fetch. */
export const IOMMU_NOEXEC = 1 << 3;
/** `IOMMU_MMIO`: the target is device memory. */
export const IOMMU_MMIO = 1 << 4;
/** `IOMMU_PRIV`: privileged (supervisor) access only. */
export const IOMMU_PRIV = 1 << 5;
/** Every valid protection bit. */
export const IOMMU_PROT_MASK = 0x3f;

/** `IOMMU_NO_PASID`: requests without PASID use PASID 0 internally. */
export const IOMMU_NO_PASID = 0;
/** `IOMMU_FIRST_GLOBAL_PASID`. */
export const IOMMU_FIRST_GLOBAL_PASID = 1;
/** `IOMMU_PASID_INVALID` (-1U). */
export const IOMMU_PASID_INVALID = 0xffffffff;

/** `IOMMU_DIRTY_NO_CLEAR` for readAndClearDirty. */
export const IOMMU_DIRTY_NO_CLEAR = 1;

/** `enum iommu_cap`. */
export type IommuCap =
  | "CACHE_COHERENCY"
  | "NOEXEC"
  | "PRE_BOOT_PROTECTION"
  | "ENFORCE_CACHE_COHERENCY"
  | "DEFERRED_FLUSH"
  | "DIRTY_TRACKING";

/** Flags of `domain_alloc_paging_flags` (uapi `IOMMU_HWPT_ALLOC_*`). */
export const IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0;
/** Dirty tracking must be supported by the domain. */
export const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
/** The domain will serve I/O page faults. */
export const IOMMU_HWPT_FAULT_ID_VALID = 1 << 2;
/** The domain is for PASID attach. */
export const IOMMU_HWPT_ALLOC_PASID = 1 << 3;

// ---------------------------------------------------------------------------
// Reserved regions.

/** `enum iommu_resv_type`. */
export type ResvType = "DIRECT" | "DIRECT_RELAXABLE" | "RESERVED" | "MSI" | "SW_MSI";

/** `struct iommu_resv_region`: `[start, start + length)`. */
export interface ResvRegion {
  /** First address. */
  start: number;
  /** Length in bytes. */
  length: number;
  /** Protection for DIRECT regions. */
  prot: number;
  /** Region type. */
  type: ResvType;
}

// ---------------------------------------------------------------------------
// I/O page faults.

/** `IOMMU_FAULT_PAGE_REQUEST_PASID_VALID`. */
export const IOMMU_FAULT_PAGE_REQUEST_PASID_VALID = 1 << 0;
/** `IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE`. */
export const IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE = 1 << 1;
/** `IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID`. */
export const IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID = 1 << 2;
/** Page request permission: read. */
export const IOMMU_FAULT_PERM_READ = 1 << 0;
/** Page request permission: write. */
export const IOMMU_FAULT_PERM_WRITE = 1 << 1;
/** Page request permission: execute. */
export const IOMMU_FAULT_PERM_EXEC = 1 << 2;
/** Page request permission: privileged. */
export const IOMMU_FAULT_PERM_PRIV = 1 << 3;

/** `struct iommu_fault_page_request`. */
export interface IommuFaultPageRequest {
  /** PASID_VALID, LAST_PAGE, RESPONSE_NEEDS_PASID. */
  flags: number;
  /** Process address space ID (valid when PASID_VALID). */
  pasid: number;
  /** Page request group index. */
  grpid: number;
  /** READ, WRITE, EXEC, PRIV. */
  perm: number;
  /** Page-aligned faulting address. */
  addr: number;
  /** Driver-private data (e.g. the VT-d private data or SMMU stall tag). */
  privateData: [number, number];
}

/** `struct iopf_fault`: a page request as reported by a driver. */
export interface IopfFault {
  /** Always `"PAGE_REQ"` (the only fault type the kernel reports here now). */
  type: "PAGE_REQ";
  /** The request. */
  prm: IommuFaultPageRequest;
}

/** `enum iommu_page_response_code`. */
export const IommuPageResponseCode = {
  /** Fault resolved: retry the access. */
  SUCCESS: 0,
  /** Could not resolve: do not retry this request (PCI "Invalid Request"). */
  INVALID: 1,
  /** Generic failure; PCI "Response Failure" disables PRI on the function. */
  FAILURE: 2,
} as const;

/** A page response code value. */
export type IommuPageResponseCode =
  (typeof IommuPageResponseCode)[keyof typeof IommuPageResponseCode];

/** `struct iommu_page_response`. */
export interface IommuPageResponse {
  /** PASID of the request. */
  pasid: number;
  /** Group index of the request. */
  grpid: number;
  /** Response code. */
  code: IommuPageResponseCode;
}

// ---------------------------------------------------------------------------
// Domains.

/** `struct iommu_domain_geometry`. */
export interface DomainGeometry {
  /** First mappable IOVA. */
  apertureStart: number;
  /** Last mappable IOVA (inclusive). */
  apertureEnd: number;
  /** DMA only inside the aperture. */
  forceAperture: boolean;
}

/** Dirty bitmap filled by readAndClearDirty: one bit per `pgsize` from `iova`. */
export interface DirtyBitmap {
  /** First IOVA the bitmap covers. */
  iova: number;
  /** Bytes per bit. */
  pgsize: number;
  /** Record `[iova, iova + length)` as dirty. */
  setDirty(iova: number, length: number): void;
}

/** The view of a CPU address space an SVA domain needs (`struct mm_struct`). */
export interface MmHandle {
  /** Identifier for traces. */
  readonly id: number;
  /** Physical address of the CPU page-table root (x86 CR3 / Arm TTBR0). */
  readonly pgdPhys: number;
  /** Paging levels of the CPU table (4 or 5 on x86, 4 for Arm 48-bit). */
  readonly levels: number;
  /** The mm's global PASID, or IOMMU_PASID_INVALID. */
  pasid: number;
}

/**
 * `struct iommu_domain_ops`. In iommu-lab a domain object carries its ops as
 * methods (`domain.mapPages(...)`), which is the kernel's `domain->ops->...`.
 */
export interface DomainOps {
  /**
   * `attach_dev`: make `dev`'s requests without PASID translate through this
   * domain. Errno contract: EINVAL = incompatible (not logged), ENOMEM,
   * ENOSPC, EBUSY, ENODEV; others are treated as ENODEV by the core.
   * `old` is the domain being replaced (or null).
   */
  attachDev(dev: PciDevice, old: IommuDomain | null): void;
  /**
   * `set_dev_pasid(domain, dev, pasid, old)`: route `pasid` of `dev` to this
   * domain, replacing `old`; on error the PASID stays in the old config.
   */
  setDevPasid?(dev: PciDevice, pasid: number, old: IommuDomain | null): void;
  /**
   * `map_pages`: map `pgcount` pages of `pgsize` at `iova` to `paddr`.
   * Returns bytes mapped. On failure throws an IommuError whose
   * `detail.mapped` holds the bytes mapped before it (the caller unmaps them).
   */
  mapPages?(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): number;
  /** `unmap_pages`: returns bytes unmapped (0 when nothing, or part of a larger entry). */
  unmapPages?(iova: number, pgsize: number, pgcount: number, gather: IotlbGather): number;
  /** `iotlb_sync_map`: after map (caching-mode / non-coherent walkers). */
  iotlbSyncMap?(iova: number, size: number): void;
  /** `iotlb_sync`: invalidate what `gather` collected and wait for it. */
  iotlbSync?(gather: IotlbGather): void;
  /** `flush_iotlb_all`: invalidate everything cached for this domain. */
  flushIotlbAll?(): void;
  /** `iova_to_phys`: 0 when not mapped. */
  iovaToPhys?(iova: number): number;
  /** `set_dirty_tracking`. */
  setDirtyTracking?(enable: boolean): void;
  /** `read_and_clear_dirty(iova, size, flags, dirty)`; flags may hold IOMMU_DIRTY_NO_CLEAR. */
  readAndClearDirty?(iova: number, size: number, flags: number, dirty: DirtyBitmap): void;
  /** `free`: release the domain (its tables return to the allocator). */
  free(): void;
}

/** `struct iommu_domain`: data plus the ops (as methods). */
export interface IommuDomain extends DomainOps {
  /** Domain type. */
  readonly type: DomainType;
  /** The driver that created it (the core checks `ops` match on attach). */
  readonly owner: IommuOps;
  /** Page sizes this domain can map (number; bit n set = 2^n bytes). */
  pgsizeBitmap: number;
  /** IOVA aperture. */
  geometry: DomainGeometry;
  /** SVA domains: the mm they share. */
  mm?: MmHandle;
  /** Nested domains: the parent paging domain. */
  parent?: IommuDomain;
  /** Set by the core/SVA layer: where page requests for this domain go. */
  iopfHandler?: (fault: IopfFault, dev: PciDevice) => IommuPageResponseCode;
  /** Free-form name for traces. */
  readonly label?: string;
}

/** What `hw_info` returns (`IOMMU_HW_INFO` ioctl blob). */
export interface HwInfo {
  /** `enum iommu_hw_info_type` name, e.g. `"INTEL_VTD"` or `"ARM_SMMUV3"`. */
  type: string;
  /** Raw info words, as the uapi struct lays them out. */
  data: Uint32Array;
}

/**
 * `struct iommu_ops`: a driver. Methods throw IommuError where the kernel
 * returns ERR_PTR/-errno.
 */
export interface IommuOps {
  /** Driver name, e.g. `"intel-iommu"`. */
  readonly name: string;
  /** `pgsize_bitmap`: page sizes the hardware can map. */
  readonly pgsizeBitmap: number;
  /** `capable(dev, cap)`. */
  capable(dev: PciDevice, cap: IommuCap): boolean;
  /** `hw_info`. */
  hwInfo?(dev: PciDevice): HwInfo;
  /** `domain_alloc_paging_flags(dev, flags, user_data)`: a new UNMANAGED paging domain. */
  domainAllocPaging(dev: PciDevice | null, flags: number, userData?: unknown): IommuDomain;
  /** `domain_alloc_sva(dev, mm)`. */
  domainAllocSva?(dev: PciDevice, mm: MmHandle): IommuDomain;
  /** `domain_alloc_nested(dev, parent, flags, user_data)`. */
  domainAllocNested?(
    dev: PciDevice,
    parent: IommuDomain,
    flags: number,
    userData: unknown,
  ): IommuDomain;
  /** The driver's static identity domain, if it has one. */
  readonly identityDomain?: IommuDomain;
  /** The driver's static blocked domain, if it has one. */
  readonly blockedDomain?: IommuDomain;
  /** `probe_device`: claim `dev`; throws ENODEV when this IOMMU does not translate it. */
  probeDevice(dev: PciDevice): void;
  /** `release_device`. */
  releaseDevice(dev: PciDevice): void;
  /** `device_group`: a key naming the group, or undefined for the core's PCI grouping. */
  deviceGroup?(dev: PciDevice): string | undefined;
  /** `get_resv_regions`. */
  getResvRegions(dev: PciDevice): ResvRegion[];
  /** `def_domain_type`: IDENTITY, DMA, or 0 for no preference. */
  defDomainType?(dev: PciDevice): number;
  /** `page_response(dev, evt, msg)`. */
  pageResponse?(dev: PciDevice, evt: IopfFault, msg: IommuPageResponse): void;
  /** `dev->iommu->max_pasids` as set at probe (0 = no PASID). */
  maxPasids(dev: PciDevice): number;
}

// ---------------------------------------------------------------------------
// io-pgtable.

/** `struct iommu_flush_ops`: callbacks an io-pgtable makes into its driver. */
export interface FlushOps {
  /** `tlb_flush_all`: invalidate the whole context. */
  tlbFlushAll(): void;
  /** `tlb_flush_walk`: invalidate walk caches (and leaves) of `[iova, iova+size)` at `granule`, after table entries changed. */
  tlbFlushWalk(iova: number, size: number, granule: number): void;
  /** `tlb_add_page` (optional): queue one leaf for invalidation in the gather. */
  tlbAddPage?(gather: IotlbGather, iova: number, granule: number): void;
}

/** `struct io_pgtable_ops`. */
export interface IoPgtableOps {
  /** Map; returns bytes mapped; on failure throws with `detail.mapped`. EEXIST over a live entry. */
  mapPages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): number;
  /** Unmap; returns bytes unmapped; 0 for an empty slot or part of a larger entry. */
  unmapPages(iova: number, pgsize: number, pgcount: number, gather: IotlbGather | null): number;
  /** Translate; 0 when not mapped. */
  iovaToPhys(iova: number): number;
  /** Read (and unless NO_CLEAR, clear) dirty bits of `[iova, iova+size)`. */
  readAndClearDirty?(iova: number, size: number, flags: number, dirty: DirtyBitmap): void;
  /** Free every table page. */
  free(): void;
}

/** io-pgtable quirk bits (`IO_PGTABLE_QUIRK_*`). */
export const IoPgtableQuirk = {
  /** ARM_NS. */
  ARM_NS: 1 << 0,
  /** NO_PERMS. */
  NO_PERMS: 1 << 1,
  /** ARM_MTK_EXT. */
  ARM_MTK_EXT: 1 << 3,
  /** ARM_MTK_TTBR_EXT. */
  ARM_MTK_TTBR_EXT: 1 << 4,
  /** ARM_TTBR1. */
  ARM_TTBR1: 1 << 5,
  /** ARM_OUTER_WBWA. */
  ARM_OUTER_WBWA: 1 << 6,
  /** ARM_HD: hardware dirty management. */
  ARM_HD: 1 << 7,
  /** ARM_S2FWB. */
  ARM_S2FWB: 1 << 8,
  /** NO_WARN_ON. */
  NO_WARN_ON: 1 << 9,
} as const;

// ---------------------------------------------------------------------------
// What a driver calls back into the kernel.

/**
 * The kernel entry points a driver calls: `iommu_report_device_fault` for
 * page requests (PRI/stall) and `report_iommu_fault` for unrecoverable DMA
 * faults. The iommu core implements it and hands it to each driver.
 */
export interface IommuKernelHooks {
  /** `iommu_report_device_fault(dev, evt)`: a recoverable page request. */
  reportDeviceFault(dev: PciDevice, evt: IopfFault): void;
  /** `report_iommu_fault`: an unrecoverable fault seen by the driver (event record, fault register). */
  reportIommuFault(dev: PciDevice | null, iova: number, write: boolean, reason: string): void;
}

/** A driver that wants the kernel hooks (the core calls this when it registers the driver). */
export interface IommuOpsWithHooks extends IommuOps {
  /** Receive the kernel hooks. */
  setKernelHooks(hooks: IommuKernelHooks): void;
}
