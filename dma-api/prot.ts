/**
 * @module
 * DMA directions, attributes and `dma_info_to_prot` (dma-iommu.c).
 */

import { IOMMU_CACHE, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE } from "@iommu-lab/core";

/** `enum dma_data_direction`. */
export const DmaDirection = {
  /** DMA_BIDIRECTIONAL. */
  BIDIRECTIONAL: 0,
  /** DMA_TO_DEVICE: the device reads. */
  TO_DEVICE: 1,
  /** DMA_FROM_DEVICE: the device writes. */
  FROM_DEVICE: 2,
  /** DMA_NONE. */
  NONE: 3,
} as const;

/** A DMA direction value. */
export type DmaDirection = (typeof DmaDirection)[keyof typeof DmaDirection];

/** `DMA_ATTR_SKIP_CPU_SYNC`. */
export const DMA_ATTR_SKIP_CPU_SYNC: number = 1 << 5;
/** `DMA_ATTR_PRIVILEGED`. */
export const DMA_ATTR_PRIVILEGED: number = 1 << 9;

/** Parse a direction name (`"bidirectional"`, `"to_device"`, `"from_device"`, any case). */
export function parseDirection(s: string): DmaDirection {
  const k = s.toUpperCase().replace(/^DMA_/, "").replace(/-/g, "_");
  if (k === "BIDIRECTIONAL" || k === "BIDIR") return DmaDirection.BIDIRECTIONAL;
  if (k === "TO_DEVICE") return DmaDirection.TO_DEVICE;
  if (k === "FROM_DEVICE") return DmaDirection.FROM_DEVICE;
  throw new RangeError(`unknown DMA direction "${s}": use bidirectional, to_device or from_device`);
}

/**
 * `dma_info_to_prot(dir, coherent, attrs)`: coherent adds IOMMU_CACHE,
 * DMA_ATTR_PRIVILEGED adds IOMMU_PRIV; BIDIRECTIONAL is read+write,
 * TO_DEVICE read, FROM_DEVICE write, anything else 0.
 */
export function dmaInfoToProt(dir: number, coherent: boolean, attrs: number): number {
  let prot = coherent ? IOMMU_CACHE : 0;
  if (attrs & DMA_ATTR_PRIVILEGED) prot |= IOMMU_PRIV;
  switch (dir) {
    case DmaDirection.BIDIRECTIONAL:
      return prot | IOMMU_READ | IOMMU_WRITE;
    case DmaDirection.TO_DEVICE:
      return prot | IOMMU_READ;
    case DmaDirection.FROM_DEVICE:
      return prot | IOMMU_WRITE;
    default:
      return 0;
  }
}
