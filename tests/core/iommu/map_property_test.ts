import assert from "node:assert/strict";
import fc from "fast-check";
import { IOMMU_READ, IommuCore, IommuError } from "../../../core/mod.ts";
import { dev, type FakeDomain, FakeDriver, machineWith } from "./fake-driver.ts";

// Random map/unmap sequences (with injected map failures) against a plain
// model: a map of 4 KiB pages to physical addresses.

const K4 = 0x1000;
const PAGES = 2048; // an 8 MiB window: room for 2 MiB blocks

type Op =
  | { k: "map"; page: number; ppage: number; n: number; fail: number }
  | { k: "unmap"; page: number; n: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    k: fc.constant("map" as const),
    page: fc.oneof(fc.nat(PAGES - 1), fc.constantFrom(0, 512, 1024, 511, 1023)),
    ppage: fc.oneof(fc.nat(4095), fc.constantFrom(0, 512, 1024, 1535)),
    n: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.constantFrom(512, 513, 1024, 600)),
    fail: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 6 })),
  }),
  fc.record({
    k: fc.constant("unmap" as const),
    page: fc.oneof(fc.nat(PAGES - 1), fc.constantFrom(0, 512, 1024)),
    n: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.constantFrom(512, 1024)),
  }),
);

Deno.test("random map/unmap sequences with injected failures match a page-level model", () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 25 }), (ops) => {
      const m = machineWith([dev("a", 1)]);
      const drv = new FakeDriver();
      const core = new IommuCore(m);
      core.registerDriver(drv);
      const d = core.domainAllocPaging(m.pci.byName("a")!) as FakeDomain;
      const model = new Map<number, number>(); // page -> physical page
      for (const op of ops) {
        if (op.k === "map") {
          const n = Math.min(op.n, PAGES - op.page);
          let busy = false;
          for (let i = 0; i < n; i++) if (model.has(op.page + i)) busy = true;
          if (op.fail) drv.failMapAtLeaf = drv.mapCalls + op.fail;
          let err: unknown = null;
          try {
            core.map(d, op.page * K4, op.ppage * K4, n * K4, IOMMU_READ);
          } catch (e) {
            err = e;
          }
          drv.failMapAtLeaf = 0;
          if (err === null) {
            assert.equal(busy, false, "map over a live page must fail");
            for (let i = 0; i < n; i++) model.set(op.page + i, op.ppage + i);
          } else {
            assert.ok(err instanceof IommuError);
            assert.ok(busy || err.errno === "ENOMEM", `unexpected ${err.message}`);
          }
        } else {
          const n = Math.min(op.n, PAGES - op.page);
          const got = core.unmap(d, op.page * K4, n * K4);
          // whole leaves (or whole tables) go: drop the reported range
          assert.equal(got % K4, 0);
          if (got > 0) assert.ok(model.has(op.page) || got >= 0x200000);
          for (let i = 0; i < got / K4; i++) model.delete(op.page + i);
        }
        // every page agrees with the model
        const leaves = [...d.leaves.entries()];
        let pages = 0;
        for (const [iova, l] of leaves) {
          pages += l.size / K4;
          assert.equal(model.get(iova / K4), l.paddr / K4);
          assert.equal(model.get(iova / K4 + l.size / K4 - 1), l.paddr / K4 + l.size / K4 - 1);
        }
        assert.equal(pages, model.size);
      }
    }),
    { numRuns: 150 },
  );
});

Deno.test("every leaf the core maps is the largest the alignment allows", () => {
  fc.assert(
    fc.property(
      fc.nat(PAGES - 1),
      fc.nat(4095),
      fc.integer({ min: 1, max: 1100 }),
      (page, ppage, n) => {
        const m = machineWith([dev("a", 1)]);
        const core = new IommuCore(m);
        core.registerDriver(new FakeDriver());
        const d = core.domainAllocPaging(m.pci.byName("a")!) as FakeDomain;
        core.map(d, page * K4, ppage * K4, n * K4, IOMMU_READ);
        for (const [iova, l] of d.leaves) {
          if (l.size === K4) {
            // a 4K leaf never sits where a whole 2M block (same offsets) would fit
            const base = Math.floor(iova / 0x200000) * 0x200000;
            const fits = (iova - l.paddr) % 0x200000 === 0 && base >= page * K4 &&
              base + 0x200000 <= (page + n) * K4;
            assert.equal(fits, false);
          }
        }
      },
    ),
    { numRuns: 150 },
  );
});
