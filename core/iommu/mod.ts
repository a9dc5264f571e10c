/**
 * @module
 * The kernel iommu core (probe, groups, default domains, attach, PASID,
 * reserved regions, DMA ownership). Not built yet: exports nothing so far.
 */
export {};
