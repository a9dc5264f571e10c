/**
 * @module
 * The kernel DMA API over an IOMMU domain (kernel/dma, drivers/iommu/dma-iommu.c):
 * the IOVA allocator with range caches, the flush queue for lazy unmap,
 * swiotlb bouncing, direction-to-protection mapping, and the `DmaApi` entry
 * point (`dmaDevice(core, dev)`).
 */

export * from "./iova.ts";
export * from "./flush-queue.ts";
export * from "./swiotlb.ts";
export * from "./prot.ts";
export * from "./dma.ts";
/** The core's types this package's API refers to. */
export type * from "@iommu-lab/core";
