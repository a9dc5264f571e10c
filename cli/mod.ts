/**
 * @module
 * The iommu-lab command line — not built yet: this package exports nothing so far.
 */
export {};
