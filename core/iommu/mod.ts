/**
 * @module
 * The kernel iommu core: device probe, groups, default domains, attach and
 * replace, PASID attach, the global PASID allocator, reserved regions,
 * iommu_map/unmap, DMA ownership and I/O page-fault delivery.
 */
export * from "./core.ts";
export * from "./group.ts";
export * from "./counters.ts";
export * from "./ida.ts";
export * from "./resv.ts";
export * from "./iopf.ts";
export * from "./map.ts";
// What the iommu core's API refers to, so the "/iommu" entry documents on its own.
export * from "../types.ts";
export * from "../gather.ts";
export * from "../trace.ts";
export * from "../errors.ts";
export * from "../machine/mod.ts";
