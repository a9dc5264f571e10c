/** The set-associative cache behind the IOTLB and paging-structure caches, and its options. */
import assert from "node:assert/strict";
import fc from "fast-check";
import { IOMMU_READ } from "@iommu-lab/core";
import { QI_DIOTLB_DESC, QI_IOTLB_DESC, resolveVtdOptions } from "../../../backends/vtd/mod.ts";
import { AssocCache, cacheTag, geometry, setOf } from "../../../backends/vtd/hw/assoc.ts";
import { setup, xlate } from "./helpers.ts";

type Op =
  | { t: "insert"; did: number; pasid: number; key: number; val: number }
  | { t: "find"; did: number; pasid: number; key: number }
  | { t: "remove"; did: number; pasid: number; key: number }
  | { t: "clear" };

const did = fc.constantFrom(0, 1, 7, 65535);
const pasid = fc.constantFrom(0, 3, 1048575);
const key = fc.integer({ min: 0, max: 40 }).map((k) => k * 4096);
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant("insert" as const),
      did,
      pasid,
      key,
      val: fc.integer({ min: 0, max: 2 ** 40 }),
    }),
  },
  { weight: 4, arbitrary: fc.record({ t: fc.constant("find" as const), did, pasid, key }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("remove" as const), did, pasid, key }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("clear" as const) }) },
);

/** Reference: per set, a plain list of entries with a use counter; LRU victim when full. */
class RefCache {
  readonly sets: { tag: number; key: number; val: number; used: number }[][];
  clock = 0;
  evictions = 0;
  constructor(readonly nsets: number, readonly ways: number) {
    this.sets = Array.from({ length: nsets }, () => []);
  }
  set(d: number, key: number): number {
    return setOf(key / 4096 >>> 0, d, 0, this.nsets - 1);
  }
  insert(d: number, tag: number, key: number, val: number): void {
    const s = this.sets[this.set(d, key)];
    const e = s.find((x) => x.tag === tag && x.key === key);
    if (e) {
      e.val = val;
      e.used = ++this.clock;
      return;
    }
    if (s.length === this.ways) {
      let v = 0;
      for (let i = 1; i < s.length; i++) if (s[i].used < s[v].used) v = i;
      s.splice(v, 1);
      this.evictions++;
    }
    s.push({ tag, key, val, used: ++this.clock });
  }
  find(d: number, tag: number, key: number): number | undefined {
    const e = this.sets[this.set(d, key)].find((x) => x.tag === tag && x.key === key);
    if (e) e.used = ++this.clock;
    return e?.val;
  }
  remove(d: number, tag: number, key: number): void {
    const s = this.sets[this.set(d, key)];
    const i = s.findIndex((x) => x.tag === tag && x.key === key);
    if (i >= 0) s.splice(i, 1);
  }
  live(): number {
    return this.sets.reduce((n, s) => n + s.length, 0);
  }
}

Deno.test("the set-associative cache matches a plain LRU reference under random inserts, lookups, removals and clears", () => {
  fc.assert(
    fc.property(
      fc.constantFrom([1, 4], [4, 2], [8, 1], [2, 8]),
      fc.array(op, { maxLength: 120 }),
      ([sets, ways], ops) => {
        const c = new AssocCache(sets, ways);
        const ref = new RefCache(sets, ways);
        for (const o of ops) {
          if (o.t === "clear") {
            c.clear();
            ref.sets.forEach((s) => s.length = 0);
            continue;
          }
          const tag = cacheTag(o.did, o.pasid);
          const set = setOf(o.key / 4096 >>> 0, o.did, 0, c.mask);
          const slot = c.find(set, c.keyOf(tag, 0), o.key);
          if (o.t === "insert") {
            c.insert(set, c.keyOf(tag, 0), o.key, o.val, 0, o.did);
            ref.insert(o.did, tag, o.key, o.val);
          } else if (o.t === "find") {
            if (slot >= 0) c.touch(slot);
            assert.equal(slot >= 0 ? c.val[slot] : undefined, ref.find(o.did, tag, o.key));
          } else {
            if (slot >= 0) c.remove(slot);
            ref.remove(o.did, tag, o.key);
          }
          assert.equal(c.live, ref.live());
          assert.equal(c.evictions, ref.evictions);
        }
        for (const d of [0, 1, 7, 65535]) {
          let n = 0;
          for (const s of ref.sets) for (const e of s) if (Math.floor(e.tag / 2 ** 21) === d) n++;
          assert.equal(c.liveOf(d), n, `live entries of DID ${d}`);
        }
      },
    ),
    { numRuns: 150, seed: 11 },
  );
});

Deno.test("a cleared cache stays exact across the epoch wrap (40000 global invalidations)", () => {
  const c = new AssocCache(2, 2);
  const tag = cacheTag(5, 9);
  for (let i = 0; i < 40000; i++) {
    const set = setOf(i & 7, 5, 0, c.mask);
    c.insert(set, c.keyOf(tag, 0), i & 7, i, 0, 5);
    assert.equal(c.val[c.find(set, c.keyOf(tag, 0), i & 7)], i);
    c.clear();
    assert.equal(c.find(set, c.keyOf(tag, 0), i & 7), -1);
    assert.equal(c.live, 0);
    assert.equal(c.liveOf(5), 0);
  }
});

Deno.test("cache geometry: ways clamp to the entries; entries must be ways times a power of two", () => {
  assert.deepEqual(geometry("tlb", 4096, 8), [512, 8]);
  assert.deepEqual(geometry("tlb", 3, 8), [1, 3]);
  assert.deepEqual(geometry("psc", 256, 4), [64, 4]);
  assert.throws(
    () => resolveVtdOptions({ tlb_entries: 24 }),
    (e: Error & { errno?: string }) =>
      e.errno === "EINVAL" &&
      /tlb_entries=24 is not tlb_ways=8 times a power of two/.test(e.message),
  );
  assert.throws(
    () => resolveVtdOptions({ psc_entries: 256, psc_ways: 3 }),
    (e: Error & { errno?: string }) => e.errno === "EINVAL" && /psc_entries=256/.test(e.message),
  );
  assert.throws(
    () => resolveVtdOptions({ devtlb_entries: 12 }),
    (e: Error & { errno?: string }) => e.errno === "EINVAL" && /devtlb_entries=12/.test(e.message),
  );
  const o = resolveVtdOptions({});
  assert.deepEqual(
    [o.tlb_entries, o.tlb_ways, o.devtlb_entries, o.devtlb_ways, o.psc_entries, o.psc_ways],
    [4096, 8, 4096, 8, 256, 4],
  );
});

Deno.test("IOTLB replacement is LRU within a set: a hit keeps an entry, the least recently used goes", () => {
  const env = setup({ tlb_entries: 2, tlb_ways: 2 });
  const d = env.drv.domainAllocPaging(env.nic, 0);
  d.attachDev(env.nic, null);
  d.mapPages(0, 0x8000_0000, 4096, 3, IOMMU_READ);
  for (const va of [0x0, 0x1000, 0x0, 0x2000]) xlate(env.hw, env.nic, va);
  assert.equal(env.hw.iotlbHas(2, 0, 0x0), true, "used again before the fill: kept");
  assert.equal(env.hw.iotlbHas(2, 0, 0x1000), false, "least recently used: evicted");
  assert.equal(env.hw.iotlbHas(2, 0, 0x2000), true);
  assert.equal(env.hw.counters.evictions, 1);
});

Deno.test("the IOTLB is shared by every DID: two domains compete for tlb_entries", () => {
  const env = setup({ tlb_entries: 1 });
  const a = env.drv.domainAllocPaging(env.nic, 0);
  const b = env.drv.domainAllocPaging(env.acc, 0);
  a.attachDev(env.nic, null);
  b.attachDev(env.acc, null);
  a.mapPages(0x1000, 0x8000_0000, 4096, 1, IOMMU_READ);
  b.mapPages(0x1000, 0x9000_0000, 4096, 1, IOMMU_READ);
  assert.equal(xlate(env.hw, env.nic, 0x1000).pa, 0x8000_0000);
  assert.equal(xlate(env.hw, env.acc, 0x1000).pa, 0x9000_0000);
  assert.equal(env.hw.iotlbHas(a.did, 0, 0x1000), false);
  assert.equal(env.hw.iotlbHas(b.did, 0, 0x1000), true);
  assert.equal(env.hw.cacheSizes().iotlb, 1);
});

Deno.test("pages 2 MiB apart spread over the IOTLB sets: 512 of them all stay cached (no set conflict)", () => {
  const env = setup({ flts: false });
  const d = env.drv.domainAllocPaging(env.nic, 0);
  d.attachDev(env.nic, null);
  for (let r = 0; r < 512; r++) d.mapPages(r * 0x200000, 0x8000_0000, 4096, 1, IOMMU_READ);
  for (let r = 0; r < 512; r++) assert.equal(xlate(env.hw, env.nic, r * 0x200000).ok, true);
  assert.equal(env.hw.counters.evictions, 0);
  assert.equal(env.hw.cacheSizes().iotlb, 512);
  assert.equal(env.hw.cacheSizes().pscSs, 256, "the paging-structure cache is full (256 entries)");
});

Deno.test("set index: consecutive keys in an aligned run of 512 take distinct sets", () => {
  for (const base of [0, 512 * 7, 2 ** 31]) {
    const sets = new Set<number>();
    for (let k = 0; k < 512; k++) sets.add(setOf((base + k) >>> 0, 3, 0, 511));
    assert.equal(sets.size, 512);
  }
});

Deno.test("IOTLB entries above 4 GiB: hits, and a page-selective invalidation drops exactly its page", () => {
  const env = setup({ flts: false });
  const d = env.drv.domainAllocPaging(env.nic, 0);
  d.attachDev(env.nic, null);
  const vas = [0x10_0000_0000, 0x10_0000_1000, 0x7f_ffff_f000, 0x1_0000_0000 + 0x1000];
  vas.forEach((va, i) => d.mapPages(va, 0x8000_0000 + i * 0x1000, 4096, 1, IOMMU_READ));
  for (const va of vas) xlate(env.hw, env.nic, va);
  const hits = env.hw.counters.iotlbHits;
  vas.forEach((va, i) =>
    assert.equal(xlate(env.hw, env.nic, va + 8).pa, 0x8000_0000 + i * 0x1000 + 8)
  );
  assert.equal(env.hw.counters.iotlbHits - hits, vas.length);
  const w = QI_IOTLB_DESC.encode({ TYPE: 2, GRAN: 3, DID: d.did, ADDR: 0x10_0000_1000, AM: 0 });
  env.drv.submitRaw(w[0], w[1], w[2], w[3]);
  assert.deepEqual(vas.map((va) => env.hw.iotlbHas(d.did, 0, va)), [true, false, true, true]);
});

Deno.test("device TLB: tagged by PASID; bounded by devtlb_entries with LRU", () => {
  const env = setup({ devtlb_entries: 2, devtlb_ways: 2 });
  const d = env.drv.domainAllocPaging(env.acc, 0);
  d.attachDev(env.acc, null);
  d.setDevPasid(env.acc, 9, null);
  d.mapPages(0, 0x8000_0000, 4096, 3, IOMMU_READ);
  xlate(env.hw, env.acc, 0x0);
  xlate(env.hw, env.acc, 0x0, false, 9);
  assert.equal(env.hw.devtlbHas(env.acc.rid, -1, 0x0), true);
  assert.equal(env.hw.devtlbHas(env.acc.rid, 9, 0x0), true, "a separate entry per PASID");
  assert.equal(env.hw.devtlbHas(env.acc.rid, 9, 0x1000), false);
  const hits = env.hw.counters.devtlbHits;
  assert.equal(xlate(env.hw, env.acc, 0x0).pa, 0x8000_0000);
  assert.equal(env.hw.counters.devtlbHits - hits, 1, "answered by the device TLB");
  xlate(env.hw, env.acc, 0x1000); // third entry: the least recently used (PASID 9's) goes
  assert.equal(env.hw.devtlbHas(env.acc.rid, 9, 0x0), false);
  assert.equal(env.hw.devtlbHas(env.acc.rid, -1, 0x0), true);
  assert.equal(env.hw.devtlbHas(env.acc.rid, -1, 0x1000), true);
  assert.equal(env.hw.cacheSizes().devtlb, 2);
});

Deno.test("each ATS device has its own device TLB of devtlb_entries: one device's fills never evict another's", () => {
  const env = setup({ devtlb_entries: 2, devtlb_ways: 2 });
  const acc2 = env.m.pci.add({ name: "acc2", bus: 3, device: 1, fn: 0, ats: true });
  env.drv.probeDevice(acc2);
  // One domain each: every first translation is a walk, which fills the device TLB.
  for (const dev of [env.acc, acc2]) {
    const d = env.drv.domainAllocPaging(dev, 0);
    d.attachDev(dev, null);
    d.mapPages(0, 0x8000_0000, 4096, 3, IOMMU_READ);
  }
  for (const dev of [env.acc, acc2]) for (const va of [0x0, 0x1000]) xlate(env.hw, dev, va);
  const has = (rid: number) => [0x0, 0x1000, 0x2000].map((va) => env.hw.devtlbHas(rid, -1, va));
  assert.deepEqual(has(env.acc.rid), [true, true, false]);
  assert.deepEqual(has(acc2.rid), [true, true, false]);
  assert.equal(env.hw.cacheSizes().devtlb, 4, "2 entries in each device");
  assert.equal(env.hw.counters.evictions, 0);
  // A third page on acc2 evicts acc2's least recently used entry only.
  xlate(env.hw, acc2, 0x2000);
  assert.deepEqual(has(acc2.rid), [false, true, true]);
  assert.deepEqual(has(env.acc.rid), [true, true, false]);
  // A device-TLB invalidation of acc2 leaves acc's entries.
  const w = QI_DIOTLB_DESC.encode({ TYPE: 3, SID: acc2.rid, S: 1, ADDR: 0x7ffff000 });
  env.drv.submitRaw(w[0], w[1], w[2], w[3]);
  assert.deepEqual(has(acc2.rid), [false, false, false]);
  assert.deepEqual(has(env.acc.rid), [true, true, false]);
});
