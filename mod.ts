/**
 * @module
 * iommu-lab: IOMMU hardware and the Linux IOMMU stack, modelled bit-exactly.
 * The one-stop entry: the core's exports at the top level, and each other
 * package under its own namespace (`vtd`, `smmuv3`, `dmaApi`, `cli`,
 * `examples`...), so that no two packages' names collide.
 */

export * from "@iommu-lab/core";
export * as vtd from "@iommu-lab/vtd";
export * as smmuv3 from "@iommu-lab/smmuv3";
export * as pkvmPv from "@iommu-lab/pkvm-pv";
export * as dmaApi from "@iommu-lab/dma-api";
export * as sva from "@iommu-lab/sva";
export * as iommufd from "@iommu-lab/iommufd";
export * as cli from "@iommu-lab/cli";
export * as examples from "@iommu-lab/examples";
