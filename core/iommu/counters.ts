/**
 * @module
 * The counter set of the iommu core (`machine.trace.counters("iommu", ...)`).
 */

/** What the iommu core counts. */
export type IommuCounters = {
  /** Devices probed by a driver. */
  probes: number;
  /** Devices released. */
  releases: number;
  /** Groups created. */
  groupsCreated: number;
  /** Groups freed (last device left). */
  groupsFreed: number;
  /** Domains allocated through the core (default and paging domains). */
  domainAllocs: number;
  /** Domains freed through the core. */
  domainFrees: number;
  /** Successful `attach_dev` calls. */
  attaches: number;
  /** Failed `attach_dev` calls. */
  attachFailures: number;
  /** Successful `set_dev_pasid` calls to a non-blocked domain. */
  pasidAttaches: number;
  /** PASID removals (set to the blocked domain). */
  pasidDetaches: number;
  /** Failed `set_dev_pasid` calls. */
  pasidAttachFailures: number;
  /** `iommu_map` calls that succeeded. */
  maps: number;
  /** Bytes mapped by successful `iommu_map` calls. */
  mapBytes: number;
  /** `map_pages` calls made to drivers. */
  mapPagesCalls: number;
  /** `iommu_map` calls that failed (after validation) and were rolled back. */
  mapFailures: number;
  /** `iommu_unmap` / `iommu_unmap_fast` calls. */
  unmaps: number;
  /** Bytes unmapped. */
  unmapBytes: number;
  /** `unmap_pages` calls made to drivers. */
  unmapPagesCalls: number;
  /** `iotlb_sync_map` calls. */
  iotlbSyncMaps: number;
  /** `iotlb_sync` calls. */
  iotlbSyncs: number;
  /** `flush_iotlb_all` calls. */
  flushIotlbAll: number;
  /** Global PASIDs allocated. */
  pasidAllocs: number;
  /** Global PASIDs freed. */
  pasidFrees: number;
  /** Page requests reported by drivers. */
  pageRequests: number;
  /** Page request groups completed (LAST seen). */
  pageRequestGroups: number;
  /** Page responses sent to drivers. */
  pageResponses: number;
  /** Page responses with a code other than SUCCESS. */
  pageResponsesFailed: number;
  /** Unrecoverable DMA faults reported (`report_iommu_fault`). */
  dmaFaults: number;
};

/** A fresh, zeroed counter set. */
export function newIommuCounters(): IommuCounters {
  return {
    probes: 0,
    releases: 0,
    groupsCreated: 0,
    groupsFreed: 0,
    domainAllocs: 0,
    domainFrees: 0,
    attaches: 0,
    attachFailures: 0,
    pasidAttaches: 0,
    pasidDetaches: 0,
    pasidAttachFailures: 0,
    maps: 0,
    mapBytes: 0,
    mapPagesCalls: 0,
    mapFailures: 0,
    unmaps: 0,
    unmapBytes: 0,
    unmapPagesCalls: 0,
    iotlbSyncMaps: 0,
    iotlbSyncs: 0,
    flushIotlbAll: 0,
    pasidAllocs: 0,
    pasidFrees: 0,
    pageRequests: 0,
    pageRequestGroups: 0,
    pageResponses: 0,
    pageResponsesFailed: 0,
    dmaFaults: 0,
  };
}
