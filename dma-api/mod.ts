/**
 * @module
 * The kernel DMA API over an IOMMU domain — not built yet: this package exports nothing so far.
 */
export {};
