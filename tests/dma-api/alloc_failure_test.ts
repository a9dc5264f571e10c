/**
 * Page-allocator failure injection through the whole stack: the Nth table
 * page allocation fails inside iommu_map on a real backend, the DMA map
 * fails with ENOMEM, and nothing is left behind (memory, pages, IOVA).
 */
import assert from "node:assert/strict";
import { IommuCore, IommuError, Machine, resolveOptions } from "@iommu-lab/core";
import { dmaDevice, DmaDirection } from "@iommu-lab/dma-api";
import { availableBackends } from "../../cli/backends.ts";

const BIDIR = DmaDirection.BIDIRECTIONAL;
const plugins = (await availableBackends()).filter((p) => p.name === "vtd" || p.name === "smmuv3");

for (const p of plugins) {
  Deno.test(`${p.name}: a table-page allocation failure inside a 4 MiB map leaves no mapping, no table page and no IOVA behind`, () => {
    const m = new Machine();
    const dev = m.pci.add({ name: "nic0", bus: 0, device: 3, fn: 0 });
    const { driver } = p.create(m, resolveOptions(p, {}));
    const core = new IommuCore(m, { strict: true });
    core.registerDriver(driver);
    const dma = dmaDevice(core, dev);
    const buf = m.pages.allocPages(10); // 4 MiB, 4 MiB aligned (only mapped, never reached)
    // Warm up: the IOVA allocator and the top-level tables exist.
    const first = dma.dmaMapSingle(buf, 4096, BIDIR);
    const domain = core.defaultDomainOf(dev)!;
    const before = m.mem.saveSparse().pages;
    const inUse = m.pages.stats.pagesInUse;
    // 4 MiB + 4 KiB of 4 KiB pages at a fresh IOVA needs new leaf tables:
    // failing the 1st allocation maps nothing; failing the 2nd fails after
    // 512 pages were mapped, which iommu_map must unmap again.
    for (const nth of [1, 2]) {
      const allocs = m.pages.stats.allocations;
      m.pages.failAt(nth);
      assert.throws(
        () => dma.dmaMapSingle(buf + 0x1000, 0x40_0000, BIDIR),
        (e) => e instanceof IommuError && e.errno === "ENOMEM",
      );
      m.pages.failAt(0);
      assert.equal(m.pages.stats.allocations - allocs, nth - 1, "allocations before the failure");
      assert.equal(m.pages.stats.pagesInUse, inUse, `failAt(${nth}): no table page kept`);
      // No translation is left anywhere in the top 16 MiB below 4 GiB but the first page.
      for (let iova = 0xff00_0000; iova < 0x1_0000_0000; iova += 0x1000) {
        if (iova !== first) assert.equal(core.iovaToPhys(domain, iova), 0, iova.toString(16));
      }
      assert.equal(core.iovaToPhys(domain, first), buf, "the earlier mapping survives");
      // Pages whose bytes changed are free again (the table page that was
      // rolled back) or the driver's command/invalidation queue.
      const after = m.mem.saveSparse().pages;
      for (const k of Object.keys(before)) assert.ok(k in after);
      const changed = Object.keys(after).filter((k) => after[k] !== before[k]);
      assert.ok(changed.length <= 3, `changed pages: ${changed.join(", ")}`);
    }
    // The IOVA range was given back: the same request now succeeds.
    const d = dma.dmaMapSingle(buf + 0x1000, 0x40_0000, BIDIR);
    assert.equal(d, 0xff80_0000, "the highest size-aligned IOVA: the failed attempts freed theirs");
    assert.equal(core.iovaToPhys(domain, d), buf + 0x1000);
    assert.equal(core.iovaToPhys(domain, d + 0x3f_f000), buf + 0x40_0000);
  });
}
