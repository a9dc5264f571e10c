import assert from "node:assert/strict";
import fc from "fast-check";
import {
  IOMMU_READ,
  IOMMU_WRITE,
  IotlbGather,
  Machine,
  newDmaRequest,
  newTranslateResult,
  type TraceValue,
} from "@iommu-lab/core";
import plugin, {
  S2_ONLY_ASID,
  type SmmuDomain,
  type SmmuV3,
  type SmmuV3Driver,
} from "../../../backends/smmuv3/mod.ts";
import { nestedGuest } from "./nested_guest.ts";

const RW = IOMMU_READ | IOMMU_WRITE;

function setup(opts: Record<string, boolean | number | string> = {}) {
  const m = new Machine();
  const dev = m.pci.add({ name: "dev0", bus: 1, device: 0, fn: 0 });
  const { hw, driver } = plugin.create(m, opts);
  const d = driver as SmmuV3Driver;
  d.probeDevice(dev);
  const dom = d.domainAllocPaging(dev, 0) as SmmuDomain;
  dom.attachDev(dev, null);
  const tlbis: Record<string, TraceValue>[] = [];
  m.trace.listen((e) => {
    if (e.name === "smmuv3_cmdq_tlbi") tlbis.push(e.fields);
  });
  return { m, dev, hw: hw as SmmuV3, d, dom, tlbis, g: new IotlbGather() };
}

/** The leaf/TTL/TG/range of each TLBI by address. */
function summary(tlbis: Record<string, TraceValue>[]) {
  return tlbis.map((t) => [t.op, t.leaf, t.ttl, t.tg, t.addr, t.size]);
}

Deno.test("driver: tlb_add_page pages are invalidated with Leaf=1 and the kernel's TTL/TG; tlb_flush_walk with Leaf=0, TTL=0", () => {
  const { dom, tlbis, g } = setup();
  dom.mapPages(0x20_0000, 0x8000_0000, 4096, 2, RW);
  g.init();
  dom.unmapPages(0x20_0000, 4096, 1, g); // the leaf table stays (one page still mapped)
  dom.iotlbSync(g);
  // 4K granule: TG=1; a level-3 leaf: TTL = 4 - ((12 - 3) / (12 - 3)) = 3.
  assert.deepEqual(summary(tlbis), [["TLBI_NH_VA", true, 3, 1, 0x20_0000, 4096]]);
  tlbis.length = 0;
  g.init();
  dom.unmapPages(0x20_0000, 0x20_0000, 1, g); // covers the table's span: the table is freed
  dom.iotlbSync(g);
  // arm_smmu_tlb_inv_walk: leaf=false, TTL 0, 512 pages as NUM=0 SCALE=9 (2 MiB).
  assert.deepEqual(summary(tlbis), [["TLBI_NH_VA", false, 0, 1, 0x20_0000, 0x20_0000]]);
  tlbis.length = 0;
  dom.mapPages(0x4000_0000, 0x8000_0000, 0x20_0000, 1, RW);
  g.init();
  dom.unmapPages(0x4000_0000, 0x20_0000, 1, g);
  dom.iotlbSync(g);
  // A 2 MiB block is a level-2 leaf: TTL = 4 - ((21 - 3) / 9) = 2.
  assert.deepEqual(summary(tlbis), [["TLBI_NH_VA", true, 2, 1, 0x4000_0000, 0x20_0000]]);
});

Deno.test("driver: without range invalidation, Leaf is still 1 for pages and 0 for walks (TG/TTL 0)", () => {
  const { dom, tlbis, g } = setup({ range_inv: false });
  dom.mapPages(0x20_0000, 0x8000_0000, 4096, 2, RW);
  g.init();
  dom.unmapPages(0x20_0000, 4096, 1, g);
  dom.iotlbSync(g);
  assert.deepEqual(summary(tlbis), [["TLBI_NH_VA", true, 0, 0, 0x20_0000, 1]]);
  tlbis.length = 0;
  g.init();
  dom.unmapPages(0x20_0000, 0x20_0000, 1, g);
  dom.iotlbSync(g);
  // CMDQ_MAX_TLBI_OPS: 512 pages is past the limit, so the whole ASID goes (TLBI_NH_ASID).
  assert.deepEqual(summary(tlbis), []);
});

Deno.test("driver: a stage-2 domain's walk flush is TLBI_S2_IPA with Leaf=0", () => {
  const { dom, tlbis, g } = setup({ stages: "s2" });
  dom.mapPages(0x20_0000, 0x8000_0000, 4096, 1, RW);
  g.init();
  dom.unmapPages(0x20_0000, 0x20_0000, 1, g);
  dom.iotlbSync(g);
  assert.deepEqual(summary(tlbis), [["TLBI_S2_IPA", false, 0, 1, 0x20_0000, 0x20_0000]]);
});

/**
 * Map a page, DMA, unmap its whole 2 MiB span (the leaf table is freed),
 * hand the freed table page to "something else" that writes a word there
 * looking like a page descriptor to `secret`, map the IOVA again to `buf2`
 * and DMA. `leafOnly`: a driver variant that sends Leaf=1 for the walk.
 */
function reuseScenario(leafOnly: boolean, checking: boolean) {
  const { m, dev, hw, d, dom, g } = setup();
  hw.checking = checking;
  if (leafOnly) {
    const inv = d.invRange.bind(d);
    d.invRange = (dm, iova, size, granule, _leaf) => inv(dm, iova, size, granule, true);
  }
  const buf = m.pages.allocPage(), buf2 = m.pages.allocPage(), secret = m.pages.allocPage();
  m.mem.writeBytes(buf, new Uint8Array([1, 2, 3, 4]));
  m.mem.writeBytes(buf2, new Uint8Array([5, 6, 7, 8]));
  m.mem.writeBytes(secret, new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
  dom.mapPages(0x20_0000, buf, 4096, 1, RW);
  assert.deepEqual([...m.master(dev).read(0x20_0000, 4).data!], [1, 2, 3, 4]);
  const table = hw.walkCacheEntries.find((e) => e.level === 2)!.table;
  g.init();
  dom.unmapPages(0x20_0000, 0x20_0000, 1, g);
  dom.iotlbSync(g); // frees the table page
  const reused = m.pages.allocPage();
  assert.equal(reused, table, "the freed table page is the next page allocated");
  // Its new owner's data happens to look like a valid stage-1 page descriptor (AF, AP[1]).
  m.mem.write64(reused, (secret | 0x400 | 0x40 | 3) >>> 0, 0);
  dom.mapPages(0x20_0000, buf2, 4096, 1, RW);
  return { hw, r: m.master(dev).read(0x20_0000, 4) };
}

Deno.test("a correct driver (Leaf=0 walk TLBI): after the table page is reused, DMA reads the new buffer", () => {
  const { hw, r } = reuseScenario(false, true);
  assert.deepEqual([...r.data!], [5, 6, 7, 8]);
  assert.deepEqual(hw.missed, []);
});

Deno.test("a driver that frees a table with a leaf-only TLBI is caught in checking mode (walk cache)", () => {
  const { hw } = reuseScenario(true, true);
  assert.equal(hw.missed.length >= 1, true);
  const m = hw.missed[0];
  assert.equal(m.cache, "WALK");
  assert.equal(m.addr, 0x20_0000);
  assert.match(
    m.detail,
    /walk cache \(stage 1, VMID 0 ASID \d+\) level 2 entry \[0x200000, 0x400000\)/,
  );
  assert.match(m.detail, /missing invalidation: TLBI_NH_VA with Leaf=0/);
});

Deno.test("without checking mode, the leaf-only driver's DMA reads through the stale walk entry into someone else's page", () => {
  const { hw, r } = reuseScenario(true, false);
  assert.equal(r.ok, true);
  assert.deepEqual([...r.data!], [0xde, 0xad, 0xbe, 0xef]); // not [5, 6, 7, 8]
  assert.deepEqual(hw.missed, []);
  assert.equal(hw.counters.walkCacheS1Hits >= 1, true);
});

Deno.test("with walk_cache=false the same leaf-only driver bug is invisible (nothing caches the table)", () => {
  const { m, dev, hw, d, dom, g } = setup({ walk_cache: false });
  hw.checking = true;
  const inv = d.invRange.bind(d);
  d.invRange = (dm, iova, size, granule, _leaf) => inv(dm, iova, size, granule, true);
  dom.mapPages(0x20_0000, 0x8000_0000, 4096, 1, RW);
  m.master(dev).read(0x20_0000, 4);
  g.init();
  dom.unmapPages(0x20_0000, 0x20_0000, 1, g);
  dom.iotlbSync(g);
  dom.mapPages(0x20_0000, 0x8000_1000, 4096, 1, RW);
  m.master(dev).read(0x20_0000, 4);
  assert.deepEqual(hw.missed, []);
});

type Op =
  | { k: "mapPage"; slot: number; n: number }
  | { k: "mapBlock"; slot: number }
  | { k: "unmapSpan"; slot: number }
  | { k: "reuse" }
  | { k: "dma"; slot: number; page: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    k: fc.constant("mapPage" as const),
    slot: fc.integer({ min: 0, max: 3 }),
    n: fc.integer({ min: 0, max: 1 }),
  }),
  fc.record({ k: fc.constant("mapBlock" as const), slot: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ k: fc.constant("unmapSpan" as const), slot: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ k: fc.constant("reuse" as const) }),
  fc.record({
    k: fc.constant("dma" as const),
    slot: fc.integer({ min: 0, max: 3 }),
    page: fc.integer({ min: 0, max: 1 }),
  }),
);

const PROP_CONFIGS: Record<string, string | number | boolean>[] = [
  {},
  { walk_cache_size: 3 },
  { stages: "s2" },
  { range_inv: false },
];
for (const opts of PROP_CONFIGS) {
  Deno.test(
    `random map/unmap-span/reuse/DMA sequences with the walk cache: reference results, no missed invalidation (${
      JSON.stringify(opts)
    })`,
    () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 20, maxLength: 40 }), (ops) => {
          const { m, dev, hw, dom, g } = setup(opts);
          hw.checking = true;
          const req = newDmaRequest();
          const out = newTranslateResult();
          req.rid = dev.rid;
          req.access = 1;
          // A page gets a new owner that fills it with words looking like valid descriptors (to 12 GiB).
          const reuse = () => {
            const p = m.pages.allocPage();
            for (let i = 0; i < 4096; i += 8) m.mem.write64(p + i, 0x443 | 0xc0, 3);
          };
          const SLOT = 0x20_0000;
          const ref = new Map<number, number>(); // page iova -> pa
          const blocks = new Set<number>();
          for (const op of ops) {
            if (op.k === "mapPage") {
              const iova = op.slot * SLOT + op.n * 4096;
              if (blocks.has(op.slot) || ref.has(iova)) continue;
              const pa = 0x1_0000_0000 + iova;
              assert.equal(dom.mapPages(iova, pa, 4096, 1, RW), 4096);
              ref.set(iova, pa);
            } else if (op.k === "mapBlock") {
              const base = op.slot * SLOT;
              if (
                blocks.has(op.slot) || [...ref.keys()].some((a) => a >= base && a < base + SLOT)
              ) {
                continue;
              }
              assert.equal(dom.mapPages(base, 0x2_0000_0000 + base, SLOT, 1, RW), SLOT);
              blocks.add(op.slot);
            } else if (op.k === "unmapSpan") {
              const base = op.slot * SLOT;
              const had = blocks.has(op.slot) ||
                [...ref.keys()].some((a) => a >= base && a < base + SLOT);
              g.init();
              assert.equal(dom.unmapPages(base, SLOT, 1, g), had ? SLOT : 0);
              dom.iotlbSync(g);
              reuse(); // memory pressure: the page freed last gets a new owner at once
              blocks.delete(op.slot);
              for (const a of [...ref.keys()]) if (a >= base && a < base + SLOT) ref.delete(a);
            } else if (op.k === "reuse") {
              reuse();
            } else {
              const iova = op.slot * SLOT + op.page * 4096;
              req.addr = iova;
              hw.translate(req, out);
              const want = blocks.has(op.slot) ? 0x2_0000_0000 + iova : ref.get(iova);
              assert.equal(out.ok, want !== undefined, `DMA at 0x${iova.toString(16)}`);
              if (want !== undefined) assert.equal(out.pa, want);
            }
          }
          assert.deepEqual(hw.missed, []);
        }),
        { numRuns: 30 },
      );
    },
  );
}

Deno.test("nested: stage-1 walk entries hold table IPAs, read through stage-2 walk entries; both hit on the next page", () => {
  const va = 0x55_0000_3000;
  const { dev, smmu, tableIpas: tables, data, attach } = nestedGuest(va, 2);
  attach();
  const req = newDmaRequest();
  const out = newTranslateResult();
  req.rid = dev.rid;
  req.access = 1;
  req.addr = va;
  smmu.translate(req, out);
  assert.equal(out.pa, data[0]);
  const s1 = smmu.walkCacheEntries.filter((e) => e.tag % 131072 === 42);
  assert.deepEqual(s1.map((e) => e.table).sort(), [...tables].sort()); // IPAs, not PAs
  assert.equal(smmu.walkCacheEntries.some((e) => e.tag % 131072 === S2_ONLY_ASID), true);
  const s1Hits = smmu.counters.walkCacheS1Hits, s2Hits = smmu.counters.walkCacheS2Hits;
  req.addr = va + 0x1000;
  smmu.translate(req, out);
  assert.equal(out.pa, data[1]);
  assert.equal(smmu.counters.walkCacheS1Hits - s1Hits, 1);
  assert.equal(smmu.counters.walkCacheS2Hits - s2Hits >= 1, true);
  assert.deepEqual(smmu.missed, []);
});
