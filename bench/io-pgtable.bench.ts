/**
 * io-pgtable benchmarks: map, unmap and iovaToPhys of one 4K page and one 2M
 * block on each format. map and unmap run over a rotating window of pages;
 * when the window is full (map) or empty (unmap) it is reset with one
 * multi-page call, so each figure includes that reset amortised over the
 * window (1/4096 for 4K, 1/512 for 2M). Tables follow the kernel's
 * lifetime: the 4K reset unmap (4K x 4096) frees the eight covered
 * last-level tables on the Intel formats and none on Arm; table pages freed
 * go through a reused gather and back to the allocator. The "table
 * lifetime" group maps and unmaps one page alone in its tables: with the
 * kernel's lifetime the tables stay, with `freeEmptyTables` (the model
 * experiment) every pair allocates and frees them.
 */

import { bench, do_not_optimize, group } from "mitata";
import {
  type FlushOps,
  IOMMU_READ,
  IOMMU_WRITE,
  IotlbGather,
  PageAllocator,
  PhysMem,
} from "@iommu-lab/core";
import { allocIoPgtable, type IoPgtableFormat } from "@iommu-lab/core/io-pgtable";

const SZ_4K = 0x1000;
const SZ_2M = 0x20_0000;
const SZ_1G = 0x4000_0000;
const RW = IOMMU_READ | IOMMU_WRITE;

const noFlush: FlushOps = {
  tlbFlushAll() {},
  tlbFlushWalk() {},
  tlbAddPage() {},
};

function table(fmt: IoPgtableFormat, freeEmptyTables = false) {
  const mem = new PhysMem(48);
  const pages = new PageAllocator(mem, 0x1000_0000, 0x8000_0000);
  const t = allocIoPgtable(fmt, {
    quirks: 0,
    pgsizeBitmap: SZ_4K + SZ_2M + SZ_1G,
    ias: 48,
    oas: 48,
    coherentWalk: true,
    tlb: noFlush,
    freeEmptyTables,
  }, { mem, pages });
  return { t, pages };
}

for (const fmt of ["ARM_64_LPAE_S1", "ARM_64_LPAE_S2", "X86_64", "VTD_SS"] as const) {
  group(`io-pgtable ${fmt}`, () => {
    for (const [label, size, window] of [["4K", SZ_4K, 4096], ["2M", SZ_2M, 512]] as const) {
      const base = 0x80_0000_0000; // 512 GiB: away from zero, inside every ias
      const gather = new IotlbGather();
      const release = (pages: PageAllocator) => {
        for (let k = 0; k < gather.freelist.length; k++) pages.free(gather.freelist[k]);
        gather.init();
      };

      const m = table(fmt);
      let mi = 0;
      bench(`io-pgtable ${fmt} map ${label}`, () => {
        if (mi === window) {
          m.t.unmapPages(base, size, window, gather);
          release(m.pages);
          mi = 0;
        }
        m.t.mapPages(base + mi * size, 0x4000_0000 + mi * size, size, 1, RW);
        mi++;
      });

      const u = table(fmt);
      u.t.mapPages(base, 0x4000_0000, size, window, RW);
      let ui = 0;
      bench(`io-pgtable ${fmt} unmap ${label}`, () => {
        if (ui === window) {
          u.t.mapPages(base, 0x4000_0000, size, window, RW);
          ui = 0;
        }
        u.t.unmapPages(base + ui * size, size, 1, gather);
        if (gather.freelist.length !== 0) release(u.pages);
        gather.init();
        ui++;
      });

      const x = table(fmt);
      x.t.mapPages(base, 0x4000_0000, size, window, RW);
      let xi = 0;
      bench(`io-pgtable ${fmt} iovaToPhys ${label}`, () => {
        xi = (xi + 1) % window;
        do_not_optimize(x.t.iovaToPhys(base + xi * size + 0x123));
      });
    }
  });
}

group("io-pgtable table lifetime: map+unmap one page alone in its tables", () => {
  for (const fmt of ["ARM_64_LPAE_S1", "VTD_SS"] as const) {
    for (const freeEmpty of [false, true]) {
      const { t, pages } = table(fmt, freeEmpty);
      const gather = new IotlbGather();
      const iova = 0x80_0000_0000;
      bench(
        `io-pgtable ${fmt} map+unmap 4K ${freeEmpty ? "freeEmptyTables" : "kernel lifetime"}`,
        () => {
          t.mapPages(iova, 0x4000_0000, SZ_4K, 1, RW);
          t.unmapPages(iova, SZ_4K, 1, gather);
          for (let k = 0; k < gather.freelist.length; k++) pages.free(gather.freelist[k]);
          gather.init();
        },
      );
    }
  }
});
