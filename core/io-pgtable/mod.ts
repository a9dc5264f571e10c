/**
 * @module
 * Page-table formats written into physical memory: Arm LPAE stage 1/2
 * (4K/16K/64K granules), x86-64 4/5-level (VT-d first stage and CPU process
 * tables) and VT-d second stage. Build one with {@link allocIoPgtable}.
 */
export * from "./api.ts";
export * from "./alloc.ts";
export * from "./engine.ts";
export * from "./arm-lpae.ts";
export * from "./x86.ts";
export * from "./vtd-ss.ts";
// Types the page-table API refers to (also exported by the core's main entry).
export type { DirtyBitmap, FlushOps, IoPgtableOps } from "../types.ts";
export { IotlbGather } from "../gather.ts";
export type { GatherSyncTarget } from "../gather.ts";
export { FieldTable } from "../fields.ts";
export type { Decoded, FieldSpec } from "../fields.ts";
export { PhysMem } from "../machine/memory.ts";
export type { MemStats, SparseImage } from "../machine/memory.ts";
export { PageAllocator } from "../machine/page-alloc.ts";
export type { AllocStats } from "../machine/page-alloc.ts";
