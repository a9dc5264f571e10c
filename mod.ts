/**
 * @module
 * iommu-lab: IOMMU hardware and the Linux IOMMU stack, modelled bit-exactly.
 * This entry re-exports the core; backends and layers are imported from
 * their own packages (`@iommu-lab/vtd`, `@iommu-lab/smmuv3`, ...).
 */

export * from "@iommu-lab/core";
