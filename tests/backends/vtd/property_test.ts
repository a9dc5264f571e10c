/**
 * Random map/unmap sequences through the driver, with checking mode on,
 * compared against a plain reference map: device DMA always sees exactly the
 * reference's translation, and checking mode never reports a stale entry.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { IOMMU_READ, IOMMU_WRITE, IotlbGather } from "@iommu-lab/core";
import { setup, xlate } from "./helpers.ts";

type Op = { kind: "map" | "unmap" | "dma"; page: number; big: boolean };

const op: fc.Arbitrary<Op> = fc.record({
  kind: fc.constantFrom<"map" | "unmap" | "dma">("map", "unmap", "dma", "dma"),
  page: fc.integer({ min: 0, max: 1023 }),
  big: fc.boolean(),
});

for (const flts of [true, false]) {
  Deno.test(`random map/unmap/DMA sequences match a reference model (${flts ? "first" : "second"} stage, ATS device)`, () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const { hw, drv, acc } = setup({ checking: true, flts });
        const d = drv.domainAllocPaging(acc, 0);
        d.attachDev(acc, null);
        const ref = new Map<number, number>(); // 4K page index -> pa page
        const big = new Set<number>(); // 2M block indexes mapped as one page
        for (const o of ops) {
          const blk = Math.floor(o.page / 512);
          if (o.kind === "map") {
            if (o.big) {
              let free = !big.has(blk);
              for (let i = 0; i < 512 && free; i++) if (ref.has(blk * 512 + i)) free = false;
              if (!free) continue;
              d.mapPages(
                blk * 0x200000,
                0x4000_0000 + blk * 0x200000,
                0x200000,
                1,
                IOMMU_READ | IOMMU_WRITE,
              );
              d.iotlbSyncMap(blk * 0x200000, 0x200000);
              big.add(blk);
              for (let i = 0; i < 512; i++) {
                ref.set(blk * 512 + i, 0x4000_0000 + (blk * 512 + i) * 4096);
              }
            } else {
              if (ref.has(o.page)) continue;
              d.mapPages(
                o.page * 4096,
                0x1_0000_0000 + o.page * 4096,
                4096,
                1,
                IOMMU_READ | IOMMU_WRITE,
              );
              d.iotlbSyncMap(o.page * 4096, 4096);
              ref.set(o.page, 0x1_0000_0000 + o.page * 4096);
            }
          } else if (o.kind === "unmap") {
            const g = new IotlbGather();
            if (big.has(blk)) {
              assert.equal(d.unmapPages(blk * 0x200000, 0x200000, 1, g), 0x200000);
              big.delete(blk);
              for (let i = 0; i < 512; i++) ref.delete(blk * 512 + i);
            } else {
              const n = d.unmapPages(o.page * 4096, 4096, 1, g);
              assert.equal(n, ref.has(o.page) ? 4096 : 0);
              ref.delete(o.page);
            }
            d.iotlbSync(g);
          } else {
            const r = xlate(hw, acc, o.page * 4096 + 0x10);
            const want = ref.get(o.page);
            if (want === undefined) assert.equal(r.ok, false);
            else {
              assert.equal(r.ok, true);
              assert.equal(r.pa, want + 0x10);
            }
          }
        }
        assert.deepEqual(hw.staleReports, []);
      }),
      { numRuns: 40, seed: 7 },
    );
  });
}
