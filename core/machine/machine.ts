/**
 * @module
 * A machine: physical memory, the MMIO bus, PCI topology, the kernel's page
 * allocator, a virtual clock, a seeded PRNG and the trace. Everything a
 * hardware model, a driver and a device share.
 */

import { IommuError } from "../errors.ts";
import { Trace } from "../trace.ts";
import { MmioBus } from "./bus.ts";
import { VirtualClock } from "./clock.ts";
import { PhysMem } from "./memory.ts";
import { InterruptController } from "./irq.ts";
import { PageAllocator } from "./page-alloc.ts";
import { Prng } from "./prng.ts";
import { PciTopology } from "./topology.ts";
import { DmaMaster } from "./dma-master.ts";
import type { PciDevice } from "./pci.ts";

/** Machine construction options. */
export interface MachineConfig {
  /** Physical address width (default 48). */
  paBits?: number;
  /** PRNG seed (default 1). */
  seed?: number;
  /** Kernel page pool start (default 0x1000_0000). */
  poolBase?: number;
  /** Kernel page pool size in bytes (default 1 GiB). */
  poolSize?: number;
}

/** Default base of the kernel page pool. */
export const DEFAULT_POOL_BASE = 0x1000_0000;
/** Default size of the kernel page pool. */
export const DEFAULT_POOL_SIZE = 0x4000_0000;

/** The simulated machine. */
export class Machine {
  /** Physical memory. */
  readonly mem: PhysMem;
  /** MMIO bus. */
  readonly bus: MmioBus;
  /** PCI topology. */
  readonly pci: PciTopology;
  /** Kernel page allocator (table pages, DMA buffers). */
  readonly pages: PageAllocator;
  /** Virtual clock. */
  readonly clock: VirtualClock;
  /** Seeded PRNG. */
  readonly rng: Prng;
  /** Trace and counters. */
  readonly trace: Trace;
  /** Interrupt lines (deferred delivery). */
  readonly irq: InterruptController;
  readonly #masters = new Map<PciDevice, DmaMaster>();

  /** Build a machine. */
  constructor(cfg: MachineConfig = {}) {
    const paBits = cfg.paBits ?? 48;
    const poolBase = cfg.poolBase ?? DEFAULT_POOL_BASE;
    const poolSize = cfg.poolSize ?? DEFAULT_POOL_SIZE;
    if (poolBase + poolSize > 2 ** paBits) {
      throw new IommuError(
        "EINVAL",
        "machine",
        `page pool ends at 0x${
          (poolBase + poolSize).toString(16)
        }, beyond the ${paBits}-bit address space`,
      );
    }
    this.trace = new Trace();
    this.mem = new PhysMem(paBits);
    this.bus = new MmioBus(this.trace);
    this.pci = new PciTopology();
    this.pages = new PageAllocator(this.mem, poolBase, poolBase + poolSize);
    this.clock = new VirtualClock();
    this.rng = new Prng(cfg.seed ?? 1);
    this.irq = new InterruptController();
    this.trace.setTimeSource(this.clock);
  }

  /** The DMA master of `dev` (one per device, created on first use). */
  master(dev: PciDevice): DmaMaster {
    let m = this.#masters.get(dev);
    if (!m) {
      if (this.pci.byRid(dev.rid, dev.segment) !== dev) {
        throw new IommuError(
          "ENODEV",
          "dma_master",
          `${dev.bdf} (${dev.name}) is not on this machine`,
        );
      }
      m = new DmaMaster(this, dev);
      this.#masters.set(dev, m);
    }
    return m;
  }
}
