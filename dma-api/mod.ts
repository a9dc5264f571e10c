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
export type {
  IommuDomain,
  IommuOps,
  IotlbGather,
  Machine,
  PciDevice,
  PhysMem,
  ResvRegion,
} from "@iommu-lab/core";
