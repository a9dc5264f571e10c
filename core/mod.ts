/**
 * @module
 * The iommu-lab core: kernel-shaped interfaces, errors, the machine model,
 * the iommu core, io-pgtable formats, traces and the plugin contract.
 */

export * from "./errors.ts";
export * from "./bits.ts";
export * from "./fields.ts";
export * from "./types.ts";
export * from "./gather.ts";
export * from "./pgsize.ts";
export * from "./trace.ts";
export * from "./plugin-api.ts";
export * from "./plugin.ts";
export * from "./machine/mod.ts";
export * from "./iommu/mod.ts";
export * from "./io-pgtable/mod.ts";
