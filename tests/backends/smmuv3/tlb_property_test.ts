import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ALL_ASIDS,
  ALL_ASIDS_AND_S2,
  S2_ONLY_ASID,
  type TlbEntry,
  tlbTag,
  TranslationCache,
} from "../../../backends/smmuv3/hw/tlb.ts";

/**
 * A plain reference TLB: tags in creation order, entries in insertion order, no memo, no
 * recycling. A tag emptied by a range invalidation keeps its place until an eviction meets it.
 */
class RefTlb {
  tags = new Map<number, Map<string, TlbEntry>>();
  constructor(readonly capacity: number) {}
  get size() {
    let n = 0;
    for (const m of this.tags.values()) n += m.size;
    return n;
  }
  insert(tag: number, e: TlbEntry) {
    let m = this.tags.get(tag);
    if (!m) this.tags.set(tag, m = new Map());
    m.set(`${e.va}/${e.sizeShift}`, { ...e });
    if (this.size > this.capacity) {
      // The oldest entry of the oldest tag holding one; emptied tags on the way go.
      for (const [t, mm] of this.tags) {
        const first = mm.keys().next();
        if (!first.done) mm.delete(first.value);
        if (mm.size === 0) this.tags.delete(t);
        if (!first.done) break;
      }
    }
  }
  holders(tag: number, addr: number): TlbEntry[] {
    return [...(this.tags.get(tag)?.values() ?? [])].filter((e) =>
      addr >= e.va && addr < e.va + 2 ** e.sizeShift
    );
  }
  dropRange(vmid: number, asid: number, addr: number, size: number) {
    for (const [tag, m] of this.tags) {
      const tVmid = Math.floor(tag / 131072);
      const tAsid = tag % 131072;
      if (tVmid !== vmid) continue;
      if (asid >= 0 && tAsid !== asid) continue;
      if (asid === ALL_ASIDS_AND_S2 && tAsid === S2_ONLY_ASID) continue;
      for (const [k, e] of m) if (e.va < addr + size && e.va + 2 ** e.sizeShift > addr) m.delete(k);
    }
  }
  dropContexts(vmid: number, asid: number) {
    for (const [tag, m] of this.tags) {
      const tVmid = Math.floor(tag / 131072);
      const tAsid = tag % 131072;
      if (tVmid !== vmid) continue;
      if (asid >= 0 && tAsid !== asid) continue;
      if (asid === ALL_ASIDS && tAsid === S2_ONLY_ASID) continue;
      m.clear();
    }
  }
}

const SIZES = [12, 14, 16, 21, 25, 29, 30];
const op = fc.oneof(
  fc.record({
    k: fc.constant("insert" as const),
    vmid: fc.integer({ min: 0, max: 1 }),
    asid: fc.integer({ min: 0, max: 2 }),
    page: fc.integer({ min: 0, max: 4095 }),
    size: fc.constantFrom(...SIZES),
    pa: fc.integer({ min: 0, max: 0xffff }),
  }),
  fc.record({
    k: fc.constant("lookup" as const),
    vmid: fc.integer({ min: 0, max: 1 }),
    asid: fc.integer({ min: 0, max: 2 }),
    addr: fc.integer({ min: 0, max: 4096 * 4096 - 1 }),
  }),
  fc.record({
    k: fc.constant("range" as const),
    vmid: fc.integer({ min: 0, max: 1 }),
    asid: fc.constantFrom(0, 1, 2, ALL_ASIDS_AND_S2),
    page: fc.integer({ min: 0, max: 4095 }),
    pages: fc.integer({ min: 1, max: 600 }),
  }),
  fc.record({
    k: fc.constant("context" as const),
    vmid: fc.integer({ min: 0, max: 1 }),
    asid: fc.constantFrom(0, 1, 2, ALL_ASIDS),
  }),
);

Deno.test("the TLB agrees with a plain reference model under random inserts, lookups and invalidations", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 24 }), fc.array(op, { maxLength: 120 }), (cap, ops) => {
      const t = new TranslationCache(cap);
      const ref = new RefTlb(cap);
      for (const o of ops) {
        const asidTag = (a: number) => (a === 2 ? S2_ONLY_ASID : a);
        if (o.k === "insert") {
          const bytes = 2 ** o.size;
          const va = Math.floor((o.page * 4096) / bytes) * bytes;
          const e = t.recycled();
          e.va = va;
          e.pa = o.pa * 4096;
          e.ipa = va;
          e.sizeShift = o.size;
          e.permP = 3;
          e.permU = 1;
          e.nested = false;
          t.insert(tlbTag(0, o.vmid, asidTag(o.asid)), e);
          ref.insert(tlbTag(0, o.vmid, asidTag(o.asid)), e);
        } else if (o.k === "lookup") {
          const tag = tlbTag(0, o.vmid, asidTag(o.asid));
          const got = t.lookup(tag, o.addr);
          const holders = ref.holders(tag, o.addr);
          if (got === undefined) assert.equal(holders.length, 0, "a cached translation was missed");
          else {
            const match = holders.find((h) =>
              h.va === got.va && h.sizeShift === got.sizeShift && h.pa === got.pa
            );
            assert.ok(match, `lookup returned an entry the reference does not hold`);
          }
        } else if (o.k === "range") {
          const asid = o.asid >= 0 ? asidTag(o.asid) : o.asid;
          t.dropRange(0, o.vmid, asid, o.page * 4096, o.pages * 4096);
          ref.dropRange(o.vmid, asid, o.page * 4096, o.pages * 4096);
        } else {
          const asid = o.asid >= 0 ? asidTag(o.asid) : o.asid;
          t.dropContexts(0, o.vmid, asid);
          ref.dropContexts(o.vmid, asid);
        }
        assert.equal(t.size, ref.size);
      }
    }),
    { numRuns: 300 },
  );
});

Deno.test("a remembered 4 KiB hit is not returned for an address outside that page", () => {
  const t = new TranslationCache(16);
  const tag = tlbTag(0, 0, 1);
  const small = t.recycled();
  Object.assign(small, { va: 0x20_1000, pa: 0x9000, ipa: 0, sizeShift: 12, permP: 3, permU: 3 });
  t.insert(tag, small);
  const block = t.recycled();
  Object.assign(block, {
    va: 0x20_0000,
    pa: 0x4000_0000,
    ipa: 0,
    sizeShift: 21,
    permP: 3,
    permU: 3,
  });
  t.insert(tag, block);
  assert.equal(t.lookup(tag, 0x20_1008)?.sizeShift, 12);
  assert.equal(t.lookup(tag, 0x20_2008)?.sizeShift, 21);
  assert.equal(t.lookup(tag, 0x20_1010)?.pa, 0x9000);
});

Deno.test("the TLB index grows and shrinks exactly: 3000 entries over 4 tags, invalidated in ranges", () => {
  const t = new TranslationCache(1 << 20);
  const ref = new RefTlb(1 << 20);
  const tags = [tlbTag(0, 1, 1), tlbTag(0, 1, 2), tlbTag(0, 2, S2_ONLY_ASID), tlbTag(1, 0, 7)];
  for (let i = 0; i < 3000; i++) {
    const tag = tags[i % 4];
    const size = i % 7 === 0 ? 21 : 12;
    const va = size === 21 ? (i >> 3) * 2 ** 21 + 2 ** 40 : i * 4096;
    const e = t.recycled();
    Object.assign(e, { va, pa: i * 4096, ipa: va, sizeShift: size, permP: 3, permU: 1 });
    e.nested = false;
    t.insert(tag, e);
    ref.insert(tag, e);
  }
  assert.equal(t.size, ref.size);
  const check = () => {
    for (const tag of tags) {
      for (let p = 0; p < 3100; p += 7) {
        for (const addr of [p * 4096, (p >> 3) * 2 ** 21 + 2 ** 40 + 5]) {
          const got = t.lookup(tag, addr);
          const holders = ref.holders(tag, addr);
          if (got === undefined) assert.equal(holders.length, 0, `missed ${tag}/${addr}`);
          else assert.ok(holders.some((h) => h.va === got.va && h.pa === got.pa));
        }
      }
    }
    assert.equal(t.size, ref.size);
  };
  check();
  for (let p = 0; p < 3000; p += 97) {
    t.dropRange(0, 1, 1, p * 4096, 40 * 4096);
    ref.dropRange(1, 1, p * 4096, 40 * 4096);
    t.dropRange(0, 1, ALL_ASIDS_AND_S2, p * 4096 + 2 ** 40, 3 * 2 ** 21);
    ref.dropRange(1, ALL_ASIDS_AND_S2, p * 4096 + 2 ** 40, 3 * 2 ** 21);
  }
  check();
  t.dropContexts(0, 2, ALL_ASIDS_AND_S2);
  ref.dropContexts(2, ALL_ASIDS_AND_S2);
  check();
});

Deno.test("remembered hits on many pages are forgotten by any change: a range invalidation, an insert", () => {
  const t = new TranslationCache(1024);
  const tag = tlbTag(0, 0, 4);
  for (let p = 0; p < 200; p++) {
    const e = t.recycled();
    Object.assign(e, { va: p * 4096, pa: 0x100_0000 + p * 4096, ipa: 0, sizeShift: 12 });
    Object.assign(e, { permP: 3, permU: 3, nested: false });
    t.insert(tag, e);
  }
  for (let round = 0; round < 2; round++) {
    for (let p = 0; p < 200; p++) {
      assert.equal(t.lookup(tag, p * 4096 + 8)?.pa, 0x100_0000 + p * 4096);
    }
  }
  t.dropRange(0, 0, 4, 70 * 4096, 4096);
  assert.equal(t.lookup(tag, 70 * 4096), undefined);
  assert.equal(t.lookup(tag, 70 * 4096 + 64 * 4096)?.va, 134 * 4096);
  // Another context with a 2 MiB block over the same addresses: tags keep them apart.
  const big = t.recycled();
  Object.assign(big, { va: 0, pa: 0x900_0000, ipa: 0, sizeShift: 21, permP: 3, permU: 3 });
  big.nested = false;
  t.insert(tlbTag(0, 0, 5), big);
  assert.equal(t.lookup(tag, 5 * 4096)?.pa, 0x100_0000 + 5 * 4096);
  assert.equal(t.lookup(tlbTag(0, 0, 5), 5 * 4096)?.pa, 0x900_0000);
  assert.equal(t.lookup(tag, 5 * 4096)?.pa, 0x100_0000 + 5 * 4096);
});
