/**
 * @module
 * Driver-side VT-d page tables: the x86 first-stage format (4/5 levels) and
 * the VT-d second-stage format (3/4/5 levels), 4 KiB / 2 MiB / 1 GiB pages,
 * written into physical memory as the kernel's intel driver writes them.
 * Used until (or unless) the core's `allocIoPgtable("X86_64" | "VTD_SS")` is
 * supplied through {@link PgtableFactory}.
 */

import {
  allocIoPgtable,
  type FlushOps,
  IOMMU_NOEXEC,
  IOMMU_WRITE,
  IommuError,
  type IoPgtableOps,
  type IotlbGather,
  type PageAllocator,
  type PhysMem,
} from "@iommu-lab/core";

const TWO32 = 4294967296;

/** What the driver needs from a page table. */
export interface VtdPgtable extends IoPgtableOps {
  /** Root table physical address. */
  readonly root: number;
  /** Levels. */
  readonly levels: number;
  /** Page sizes it maps. */
  readonly pgsizeBitmap: number;
}

/** Builds a page table: "FS" (x86 first stage) or "SS" (VT-d second stage). */
export type PgtableFactory = (
  fmt: "FS" | "SS",
  levels: number,
  pgsizeBitmap: number,
  env: { mem: PhysMem; pages: PageAllocator },
  tlb: FlushOps | null,
) => VtdPgtable;

/** The built-in factory. */
export const defaultPgtableFactory: PgtableFactory = (
  fmt: "FS" | "SS",
  levels: number,
  pgsizeBitmap: number,
  env: { mem: PhysMem; pages: PageAllocator },
  tlb: FlushOps | null,
): VtdPgtable => new VtdPageTable(fmt, levels, pgsizeBitmap, env.mem, env.pages, tlb);

/**
 * The core's io-pgtable formats: `allocIoPgtable("X86_64")` for the first
 * stage (ias 48 or 57) and `allocIoPgtable("VTD_SS")` for the second stage
 * (ias 39/48/57), with the driver's flush callbacks.
 */
export const coreIoPgtableFactory: PgtableFactory = (
  fmt: "FS" | "SS",
  levels: number,
  pgsizeBitmap: number,
  env: { mem: PhysMem; pages: PageAllocator },
  tlb: FlushOps | null,
): VtdPgtable => {
  const ias = 12 + 9 * levels;
  const pt = allocIoPgtable(fmt === "FS" ? "X86_64" : "VTD_SS", {
    quirks: 0,
    pgsizeBitmap,
    ias,
    oas: Math.min(52, env.mem.sizeBits),
    coherentWalk: true,
    tlb,
  }, env);
  return {
    root: pt.root,
    levels: pt.levels,
    pgsizeBitmap: pt.cfg.pgsizeBitmap,
    mapPages: (iova, paddr, pgsize, pgcount, prot) =>
      pt.mapPages(iova, paddr, pgsize, pgcount, prot),
    unmapPages: (iova, pgsize, pgcount, gather) => pt.unmapPages(iova, pgsize, pgcount, gather),
    iovaToPhys: (iova) => pt.iovaToPhys(iova),
    free: () => pt.free(),
  };
};

/** A VT-d first- or second-stage table in physical memory. */
export class VtdPageTable implements VtdPgtable {
  /** Root table. */
  readonly root: number;
  /** Levels. */
  readonly levels: number;
  /** Page sizes. */
  readonly pgsizeBitmap: number;
  readonly #fs: boolean;
  readonly #mem: PhysMem;
  readonly #pages: PageAllocator;
  readonly #tlb: FlushOps | null;

  /** Allocate the root table. */
  constructor(
    fmt: "FS" | "SS",
    levels: number,
    pgsizeBitmap: number,
    mem: PhysMem,
    pages: PageAllocator,
    tlb: FlushOps | null = null,
  ) {
    this.#tlb = tlb;
    this.#fs = fmt === "FS";
    this.levels = levels;
    this.pgsizeBitmap = pgsizeBitmap;
    this.#mem = mem;
    this.#pages = pages;
    this.root = pages.allocPage();
  }

  #levelOf(pgsize: number): number {
    return pgsize === 4096 ? 1 : pgsize === 2097152 ? 2 : pgsize === 1073741824 ? 3 : 0;
  }

  /** Map `pgcount` pages; throws with `detail.mapped` on failure. */
  mapPages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): number {
    const lvl = this.#levelOf(pgsize);
    if (lvl === 0 || (pgsize !== 4096 && Math.floor(this.pgsizeBitmap / pgsize) % 2 !== 1)) {
      throw new IommuError("EINVAL", "map_pages", `page size ${pgsize} is not supported`);
    }
    if (iova % pgsize || paddr % pgsize) {
      throw new IommuError("EINVAL", "map_pages", `iova/paddr not aligned to ${pgsize}`);
    }
    if (iova + pgsize * pgcount > 2 ** (12 + 9 * this.levels)) {
      throw new IommuError(
        "EINVAL",
        "map_pages",
        `iova beyond the ${12 + 9 * this.levels}-bit table`,
      );
    }
    let mapped = 0;
    for (let i = 0; i < pgcount; i++) {
      try {
        this.#mapOne(iova + i * pgsize, paddr + i * pgsize, lvl, prot);
      } catch (e) {
        if (e instanceof IommuError) {
          throw new IommuError(e.errno, "map_pages", e.message, { mapped });
        }
        throw e;
      }
      mapped += pgsize;
    }
    return mapped;
  }

  #mapOne(iova: number, pa: number, lvl: number, prot: number): void {
    const mem = this.#mem;
    let table = this.root;
    for (let l = this.levels; l > lvl; l--) {
      const ea = table + (Math.floor(iova / 2 ** (12 + 9 * (l - 1))) % 512) * 8;
      const lo = mem.read32(ea);
      const hi = mem.read32(ea + 4);
      if ((lo & 3) === 0) {
        const t = this.#pages.allocPage();
        // Non-leaf: R|W (+ US|A for the first stage), as the kernel writes them.
        const flags = this.#fs ? 0x1 | 0x2 | 0x4 | 0x20 : 0x1 | 0x2;
        mem.write64(ea, ((t % TWO32) | flags) >>> 0, Math.floor(t / TWO32));
        table = t;
        continue;
      }
      if (lo & 0x80) {
        throw new IommuError(
          "EEXIST",
          "map_pages",
          `a larger page is mapped at 0x${iova.toString(16)}`,
        );
      }
      table = (hi & 0xfffff) * TWO32 + ((lo & 0xfffff000) >>> 0);
    }
    const ea = table + (Math.floor(iova / 2 ** (12 + 9 * (lvl - 1))) % 512) * 8;
    const cur = mem.read32(ea);
    if (cur & 3) {
      const sub = (mem.read32(ea + 4) & 0xfffff) * TWO32 + ((cur & 0xfffff000) >>> 0);
      if (lvl === 1 || (cur & 0x80) || !this.#emptyTree(sub, lvl - 1)) {
        throw new IommuError("EEXIST", "map_pages", `0x${iova.toString(16)} is already mapped`);
      }
      // Old small-page tables make room for the superpage (as __domain_mapping
      // does); the walk caches may still hold them, so flush the walk.
      mem.write64(ea, 0, 0);
      this.#freeTree(sub, lvl - 1);
      this.#tlb?.tlbFlushWalk(iova, 2 ** (12 + 9 * (lvl - 1)), 4096);
    }
    let lo: number;
    let hi = Math.floor(pa / TWO32);
    if (this.#fs) {
      // P | US | A, RW and D for writable, PS for large, XD for NOEXEC.
      lo = 0x1 | 0x4 | 0x20 | ((prot & IOMMU_WRITE) ? 0x2 | 0x40 : 0);
      if (prot & IOMMU_NOEXEC) hi |= 0x80000000;
    } else {
      lo = 0x1 | ((prot & IOMMU_WRITE) ? 0x2 : 0);
    }
    if (lvl > 1) lo |= 0x80;
    mem.write64(ea, ((pa % TWO32) | lo) >>> 0, hi >>> 0);
  }

  /** Unmap; 0 for an empty slot or part of a larger page. */
  unmapPages(iova: number, pgsize: number, pgcount: number, _gather: IotlbGather | null): number {
    const lvl = this.#levelOf(pgsize);
    let done = 0;
    for (let i = 0; i < pgcount; i++) {
      const ea = this.#leafSlot(iova + i * pgsize, lvl);
      if (ea < 0) break;
      this.#mem.write64(ea, 0, 0);
      done += pgsize;
    }
    return done;
  }

  #leafSlot(iova: number, lvl: number): number {
    const mem = this.#mem;
    let table = this.root;
    for (let l = this.levels; l >= lvl; l--) {
      const ea = table + (Math.floor(iova / 2 ** (12 + 9 * (l - 1))) % 512) * 8;
      const lo = mem.read32(ea);
      if ((lo & 3) === 0) return -1;
      const leaf = l === 1 || (lo & 0x80) !== 0;
      if (l === lvl) return leaf ? ea : -1;
      if (leaf) return -1;
      table = (mem.read32(ea + 4) & 0xfffff) * TWO32 + ((lo & 0xfffff000) >>> 0);
    }
    return -1;
  }

  /** Translate; 0 when not mapped. */
  iovaToPhys(iova: number): number {
    const mem = this.#mem;
    let table = this.root;
    for (let l = this.levels; l >= 1; l--) {
      const size = 2 ** (12 + 9 * (l - 1));
      const ea = table + (Math.floor(iova / size) % 512) * 8;
      const lo = mem.read32(ea);
      if ((lo & 3) === 0) return 0;
      const next = (mem.read32(ea + 4) & 0xfffff) * TWO32 + ((lo & 0xfffff000) >>> 0);
      if (l === 1 || (lo & 0x80)) return next + (iova % size);
      table = next;
    }
    return 0;
  }

  /** True when the table at `t` (level `l`) and everything below map nothing. */
  #emptyTree(t: number, l: number): boolean {
    for (let i = 0; i < 512; i++) {
      const lo = this.#mem.read32(t + i * 8);
      if (!(lo & 3)) continue;
      if (l === 1 || (lo & 0x80)) return false;
      const sub = (this.#mem.read32(t + i * 8 + 4) & 0xfffff) * TWO32 + ((lo & 0xfffff000) >>> 0);
      if (!this.#emptyTree(sub, l - 1)) return false;
    }
    return true;
  }

  #freeTree(t: number, l: number): void {
    if (l > 1) {
      for (let i = 0; i < 512; i++) {
        const lo = this.#mem.read32(t + i * 8);
        if ((lo & 3) && !(lo & 0x80)) {
          this.#freeTree(
            (this.#mem.read32(t + i * 8 + 4) & 0xfffff) * TWO32 + ((lo & 0xfffff000) >>> 0),
            l - 1,
          );
        }
      }
    }
    this.#mem.fill(t, 4096, 0);
    this.#pages.free(t);
  }

  /** Free the tables. */
  free(): void {
    this.#freeTree(this.root, this.levels);
  }
}
