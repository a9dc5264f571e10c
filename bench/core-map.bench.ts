/**
 * iommu core benchmarks: `IommuCore.map` + `IommuCore.unmap` (strict: the
 * unmap syncs its gather) of one 4 KiB page, on a no-op domain (the core's
 * own cost: argument checks, page-size split, counters, gather) and on a
 * domain backed by an ARM_64_LPAE_S1 io-pgtable (core + page table; the
 * table's flush callbacks queue pages into the gather as a driver's do).
 * The IOVA rotates over 4096 pages. The page table keeps the kernel's
 * table lifetime (tables stay when an unmap empties them); a third figure
 * uses the `freeEmptyTables` model experiment, where each lone page's map
 * allocates the table pages and its unmap releases them again.
 */

import { bench, group } from "mitata";
import {
  DomainType,
  type FlushOps,
  IOMMU_READ,
  IOMMU_WRITE,
  IommuCore,
  type IommuDomain,
  type IommuOps,
  type IotlbGather,
  Machine,
} from "@iommu-lab/core";
import { allocIoPgtable } from "@iommu-lab/core/io-pgtable";

const SZ_4K = 0x1000;
const SZ_2M = 0x20_0000;
const SZ_1G = 0x4000_0000;
const BITMAP = SZ_4K + SZ_2M + SZ_1G;
const RW = IOMMU_READ | IOMMU_WRITE;
const WINDOW = 4096;
const BASE = 0x80_0000_0000;

const owner = { name: "bench", pgsizeBitmap: BITMAP } as unknown as IommuOps;
const geometry = { apertureStart: 0, apertureEnd: 2 ** 48 - 1, forceAperture: true };

/** A paging domain whose map/unmap succeed without doing anything. */
function noopDomain(): IommuDomain {
  return {
    type: DomainType.UNMANAGED,
    owner,
    pgsizeBitmap: BITMAP,
    geometry,
    attachDev() {},
    free() {},
    mapPages: (_iova, _paddr, pgsize, pgcount) => pgsize * pgcount,
    unmapPages: (_iova, pgsize, pgcount) => pgsize * pgcount,
    iotlbSync() {},
  } as IommuDomain;
}

/** A paging domain backed by an ARM_64_LPAE_S1 table. */
function pgtableDomain(m: Machine, freeEmptyTables = false): IommuDomain {
  let dom: IommuDomain | null = null;
  const tlb: FlushOps = {
    tlbFlushAll() {},
    tlbFlushWalk() {},
    tlbAddPage(gather: IotlbGather, iova: number, granule: number) {
      gather.addPage(dom!, iova, granule);
    },
  };
  const pages = m.pages;
  const t = allocIoPgtable("ARM_64_LPAE_S1", {
    quirks: 0,
    pgsizeBitmap: BITMAP,
    ias: 48,
    oas: 48,
    coherentWalk: true,
    tlb,
    freeEmptyTables,
  }, { mem: m.mem, pages });
  dom = {
    type: DomainType.UNMANAGED,
    owner,
    pgsizeBitmap: t.cfg.pgsizeBitmap,
    geometry,
    attachDev() {},
    free() {},
    mapPages: (iova, paddr, pgsize, pgcount, prot) =>
      t.mapPages(iova, paddr, pgsize, pgcount, prot),
    unmapPages: (iova, pgsize, pgcount, gather) => {
      const n = t.unmapPages(iova, pgsize, pgcount, gather);
      for (let k = 0; k < gather.freelist.length; k++) pages.free(gather.freelist[k]);
      return n;
    },
    iotlbSync() {},
    iovaToPhys: (iova) => t.iovaToPhys(iova),
  } as IommuDomain;
  return dom;
}

group("iommu core", () => {
  for (
    const [label, make] of [["no-op domain", null], ["ARM_64_LPAE_S1", pgtableDomain]] as const
  ) {
    const m = new Machine();
    const core = new IommuCore(m);
    const d = make ? make(m) : noopDomain();
    let i = 0;
    bench(`core.map+unmap 4K ${label}`, () => {
      const iova = BASE + i * SZ_4K;
      core.map(d, iova, 0x4000_0000 + i * SZ_4K, SZ_4K, RW);
      core.unmap(d, iova, SZ_4K);
      i = (i + 1) % WINDOW;
    });
  }
  // The model experiment: with nothing else mapped, every unmap empties and
  // frees the tables and the next map allocates them again.
  const m = new Machine();
  const core = new IommuCore(m);
  const d = pgtableDomain(m, true);
  let i = 0;
  bench("core.map+unmap 4K ARM_64_LPAE_S1, freeEmptyTables", () => {
    const iova = BASE + i * SZ_4K;
    core.map(d, iova, 0x4000_0000 + i * SZ_4K, SZ_4K, RW);
    core.unmap(d, iova, SZ_4K);
    i = (i + 1) % WINDOW;
  });
});
