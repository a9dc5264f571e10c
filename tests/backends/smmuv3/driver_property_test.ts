import assert from "node:assert/strict";
import fc from "fast-check";
import {
  IOMMU_READ,
  IOMMU_WRITE,
  IotlbGather,
  Machine,
  newDmaRequest,
  newTranslateResult,
} from "@iommu-lab/core";
import plugin, {
  type SmmuDomain,
  type SmmuV3,
  type SmmuV3Driver,
} from "../../../backends/smmuv3/mod.ts";

type Op =
  | { kind: "map"; slot: number; big: boolean }
  | { kind: "unmap"; pick: number }
  | { kind: "dma"; slot: number; off: number; write: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant("map" as const),
    slot: fc.integer({ min: 0, max: 31 }),
    big: fc.boolean(),
  }),
  fc.record({ kind: fc.constant("unmap" as const), pick: fc.nat() }),
  fc.record({
    kind: fc.constant("dma" as const),
    slot: fc.integer({ min: 0, max: 31 }),
    off: fc.integer({ min: 0, max: 511 }),
    write: fc.boolean(),
  }),
);

const BASE = 0x4000_0000;

const CONFIGS: { opts: Record<string, string | boolean>; page: number; block: number }[] = [
  { opts: { stages: "both", range_inv: true }, page: 4096, block: 0x20_0000 },
  { opts: { stages: "both", range_inv: false }, page: 4096, block: 0x20_0000 },
  { opts: { stages: "s2", range_inv: true }, page: 4096, block: 0x20_0000 },
  { opts: { stages: "both", gran4k: false, gran64k: false }, page: 16384, block: 0x200_0000 },
  { opts: { stages: "s2", gran4k: false, gran16k: false }, page: 65536, block: 0x2000_0000 },
  { opts: { stages: "both", gran4k: false, gran16k: false }, page: 65536, block: 0x2000_0000 },
  {
    opts: { stages: "s2", gran4k: false, gran64k: false, range_inv: false },
    page: 16384,
    block: 0x200_0000,
  },
];

for (const { opts, page, block } of CONFIGS) {
  // Each slot is one block of IOVA: a block mapping, or one page at its start.
  const SLOT = block;
  Deno.test(`random map/unmap/DMA sequences match a reference with no missed invalidation (${JSON.stringify(opts)})`, () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
        const m = new Machine();
        const dev = m.pci.add({ name: "d", bus: 0, device: 1, fn: 0 });
        const { hw, driver } = plugin.create(m, opts);
        const d = driver as SmmuV3Driver;
        const smmu = hw as SmmuV3;
        smmu.checking = true;
        d.probeDevice(dev);
        const dom = d.domainAllocPaging(dev, 0) as SmmuDomain;
        dom.attachDev(dev, null);
        const ref = new Map<number, { pa: number; size: number }>(); // slot -> mapping
        const req = newDmaRequest();
        const out = newTranslateResult();
        req.rid = dev.rid;
        const g = new IotlbGather();
        for (const op of ops) {
          if (op.kind === "map") {
            if (ref.has(op.slot)) continue;
            const size = op.big ? SLOT : page;
            const pa = BASE + op.slot * SLOT;
            assert.equal(dom.mapPages(op.slot * SLOT, pa, size, 1, IOMMU_READ | IOMMU_WRITE), size);
            ref.set(op.slot, { pa, size });
          } else if (op.kind === "unmap") {
            const slots = [...ref.keys()];
            if (slots.length === 0) continue;
            const slot = slots[op.pick % slots.length];
            const { size } = ref.get(slot)!;
            // Warm the TLB on the area first, so a missing invalidation would show.
            req.addr = slot * SLOT;
            req.access = 1;
            smmu.translate(req, out);
            assert.equal(out.ok, true);
            g.init();
            assert.equal(dom.unmapPages(slot * SLOT, size, 1, g), size);
            dom.iotlbSync(g);
            ref.delete(slot);
            smmu.translate(req, out);
            assert.equal(out.ok, false, `slot ${slot} still translates after unmap + sync`);
          } else {
            // Half the DMAs go to a mapped slot.
            const slots = [...ref.keys()];
            const slot = slots.length > 0 && op.off % 2 === 0
              ? slots[op.slot % slots.length]
              : op.slot;
            const e = ref.get(slot);
            req.addr = slot * SLOT + op.off * page;
            req.access = op.write ? 3 : 1;
            smmu.translate(req, out);
            const mapped = e !== undefined && op.off * page < e.size;
            assert.equal(out.ok, mapped);
            if (mapped) assert.equal(out.pa, e!.pa + op.off * page);
          }
        }
        assert.deepEqual(smmu.missed, []);
      }),
      { numRuns: 40 },
    );
  });
}
