import assert from "node:assert/strict";
import fc from "fast-check";
import { IOMMU_READ, IOMMU_WRITE, IommuError, IotlbGather, Machine } from "@iommu-lab/core";
import flatIommu, { type FlatIommuHw } from "../mod.ts";

const IOVA = 0x100_0000;
const PAGES = 16;

type Op =
  | { k: "map"; page: number; count: number; frame: number; ro: boolean }
  | { k: "unmap"; page: number; count: number; sync: boolean }
  | { k: "dma"; page: number; write: boolean };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    k: fc.constant("map" as const),
    page: fc.integer({ min: 0, max: PAGES - 1 }),
    count: fc.integer({ min: 1, max: 4 }),
    frame: fc.integer({ min: 0, max: 31 }),
    ro: fc.boolean(),
  }),
  fc.record({
    k: fc.constant("unmap" as const),
    page: fc.integer({ min: 0, max: PAGES - 1 }),
    count: fc.integer({ min: 1, max: 4 }),
    sync: fc.boolean(),
  }),
  fc.record({
    k: fc.constant("dma" as const),
    page: fc.integer({ min: 0, max: PAGES - 1 }),
    write: fc.boolean(),
  }),
);

Deno.test("random map/unmap/DMA sequences match a reference with an explicit stale-IOTLB set", () => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
      const m = new Machine();
      const dev = m.pci.add({ name: "d", bus: 1, device: 0, fn: 0 });
      const { hw, driver } = flatIommu.create(m, { iotlb_entries: 256 });
      driver.probeDevice(dev);
      const dom = driver.domainAllocPaging(dev, 0);
      dom.attachDev(dev, null);
      const frames = m.pages.allocPages(5);
      // Reference: live mappings, and what the device may still use from its IOTLB.
      const live = new Map<number, { pa: number; ro: boolean }>();
      const cached = new Map<number, { pa: number; ro: boolean }>();
      for (const o of ops) {
        if (o.k === "map") {
          const overlap = [...Array(o.count).keys()].some((i) => live.has(o.page + i));
          const prot = o.ro ? IOMMU_READ : IOMMU_READ | IOMMU_WRITE;
          try {
            const n = dom.mapPages!(
              IOVA + o.page * 4096,
              frames + o.frame * 4096,
              4096,
              o.count,
              prot,
            );
            if (overlap) return false;
            assert.equal(n, o.count * 4096);
            for (let i = 0; i < o.count; i++) {
              live.set(o.page + i, { pa: frames + (o.frame + i) * 4096, ro: o.ro });
            }
          } catch (e) {
            if (!(e instanceof IommuError && e.errno === "EEXIST" && overlap)) throw e;
          }
        } else if (o.k === "unmap") {
          const g = new IotlbGather();
          const n = dom.unmapPages!(IOVA + o.page * 4096, 4096, o.count, g);
          let expect = 0;
          while (expect < o.count && live.has(o.page + expect)) expect++;
          if (n !== expect * 4096) return false;
          for (let i = 0; i < expect; i++) live.delete(o.page + i);
          if (o.sync) {
            dom.iotlbSync!(g);
            if (!g.empty) cached.clear();
          }
        } else {
          const a = IOVA + o.page * 4096 + 8;
          const r = o.write
            ? m.master(dev).write(a, new Uint8Array([o.page]))
            : m.master(dev).read(a, 1);
          const tr = cached.get(o.page) ?? live.get(o.page);
          const allowed = tr !== undefined && !(o.write && tr.ro);
          if (r.ok !== allowed) return false;
          if (tr) cached.set(o.page, tr);
          if (dom.iovaToPhys!(a) !== (live.get(o.page)?.pa ?? -8) + 8) return false;
        }
      }
      const c = (hw as FlatIommuHw).counters;
      return c.iotlb_hits + c.iotlb_misses === c.translations; // every translation is one or the other
    }),
    { numRuns: 60, seed: 3 },
  );
});
