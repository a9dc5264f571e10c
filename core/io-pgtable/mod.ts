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
