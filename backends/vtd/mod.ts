/**
 * @module
 * Intel VT-d backend: a scalable-mode hardware model (`hw/`) and the
 * intel-iommu driver model (`driver/`), meeting only at MMIO registers and
 * structures in physical memory. The default export is the `"vtd"`
 * {@link BackendPlugin}. `createHardware` puts the model in front of every
 * PCI function of segment 0 (as a DRHD with INCLUDE_PCI_ALL), including
 * functions added later; `create` also sets it per device at probe.
 *
 * Hardware model: register file (VER/CAP/ECAP from the options, GCMD/GSTS,
 * RTADDR latched by SRTP, CCMD and IOTLB registers, IQA/IQH/IQT/ICS/IQERCD,
 * FSTS/FECTL and NFR fault recording registers, PQH/PQT/PQA/PRS/PECTL);
 * legacy and scalable-mode translation (first stage 4/5-level with canonical
 * check, A/D, U/S, SRE, WPE, ERE/XD; second stage 3/4/5-level with
 * superpages and SSADE; nested; pass-through; RID_PASID); context, PASID,
 * IOTLB, first/second-stage paging-structure and device-TLB caches; queued
 * invalidation of every descriptor type with IQE/ITE; primary fault logging
 * with FPD and overflow; the page request queue and page group responses;
 * caching mode (not-present results cached); checking mode.
 *
 * Caches: the IOTLB, the device TLBs and the first- and second-stage
 * paging-structure caches are set-associative caches on typed arrays, each
 * shared by every DID (device TLBs: SID) and PASID (options
 * `tlb_entries`/`tlb_ways` and `devtlb_entries`/`devtlb_ways`, default 4096
 * entries × 8 ways; `psc_entries`/`psc_ways`, default 256 × 4 per stage);
 * within a set a free way is filled first, else the least recently used
 * entry is replaced (the specification leaves the policy to the
 * implementation). A global invalidation empties a cache in O(1).
 *
 * Knowing simplifications: the device TLBs of all ATS devices share one
 * capacity; context and PASID caches are unbounded; the
 * paging-structure caches hold only the level-1 table of each 2 MiB region
 * (not nested walks); IOTLB DR/DW drain hints, fence and page-drain are
 * accepted and complete at once (the model is synchronous); ICE is never
 * raised; interrupt remapping (IEC) is counted only; fault events are named
 * interrupt lines rather than MSI writes of FEDATA/FEADDR.
 */

import {
  type BackendInstance,
  type BackendOptions,
  type BackendPlugin,
  CORE_API_VERSION,
  type Machine,
} from "@iommu-lab/core";
import { VtdHardware } from "./hw/model.ts";
import { resolveVtdOptions, VTD_OPTION_SPECS } from "./hw/options.ts";
import { VtdDriver } from "./driver/driver.ts";

export type * from "@iommu-lab/core";
export * from "./hw/structures.ts";
export * from "./hw/registers.ts";
export * from "./hw/faults.ts";
export * from "./hw/options.ts";
export { type VtdFault, VtdHardware, type VtdStaleReport } from "./hw/model.ts";
export type { CacheSizes } from "./hw/caches.ts";
export {
  type Attachment,
  FLPT_DEFAULT_DID,
  IDA_START_DID,
  VtdDomain,
  VtdDriver,
  type VtdDriverOptions,
  type VtdS1Data,
} from "./driver/driver.ts";
export {
  defaultPgtableFactory,
  type PgtableFactory,
  VtdPageTable,
  type VtdPgtable,
} from "./driver/pgtable.ts";

/** Build the hardware model alone and put it in front of every PCI function of segment 0. */
export function createVtdHardware(machine: Machine, options: BackendOptions = {}): VtdHardware {
  const hw = new VtdHardware(machine, resolveVtdOptions(options));
  // A DRHD with INCLUDE_PCI_ALL: every function of segment 0, also those added later.
  machine.pci.setSegmentTranslator(0, hw);
  return hw;
}

/** The `"vtd"` backend plugin. */
const plugin: BackendPlugin = {
  name: "vtd",
  description: "Intel VT-d (scalable mode: first/second stage, nesting, PASID, PRS, QI)",
  apiVersion: CORE_API_VERSION,
  options: VTD_OPTION_SPECS,
  createHardware: createVtdHardware,
  create(machine: Machine, options: BackendOptions): BackendInstance {
    const hw = createVtdHardware(machine, options);
    const driver = new VtdDriver(machine, {
      mmioBase: hw.mmioBase,
      hwName: hw.name,
      onProbe: (dev) => machine.pci.setTranslator(dev, hw),
    });
    return { hw, driver };
  },
};

export default plugin;
