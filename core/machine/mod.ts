/**
 * @module
 * The machine model: sparse physical memory, MMIO bus, PCI topology, DMA
 * translation contract, page allocator, virtual clock and seeded PRNG.
 */

export * from "./memory.ts";
export * from "./mmio.ts";
export * from "./bus.ts";
export * from "./pci.ts";
export * from "./topology.ts";
export * from "./translate.ts";
export * from "./page-alloc.ts";
export * from "./clock.ts";
export * from "./prng.ts";
export * from "./machine.ts";
export * from "./irq.ts";
export * from "./dma-master.ts";
