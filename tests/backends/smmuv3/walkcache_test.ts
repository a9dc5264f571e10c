import assert from "node:assert/strict";
import { Rig } from "./helpers.ts";
import { OP } from "../../../backends/smmuv3/hw/structs.ts";
import { tlbiCtx, tlbiVa } from "../../../backends/smmuv3/driver/cmds.ts";
import { levelOf, levelShift, WalkCache } from "../../../backends/smmuv3/hw/walkcache.ts";
import { S2_ONLY_ASID, tlbTag } from "../../../backends/smmuv3/hw/tlb.ts";

const SID = 0x10;
const LOG = 4;
const ASID = 7;

/** An S1 rig: linear stream table, queues on, STE `sid` -> CD (ASID `asid`) over a 4K, 4-level table. */
function s1Rig(opts: Record<string, boolean | number | string> = {}) {
  const r = new Rig(opts);
  const st = r.linearStrtab(8);
  const q = r.enable(LOG);
  const root = r.newTable();
  const addCd = (sid: number, asid: number) => {
    const cd = r.alloc(64, 64);
    r.writeCd(cd, { T0SZ: 16, TG0: 0, IPS: 5, ASID: asid, TTB0: root / 16, EPD1: 1 });
    r.writeSte(st + sid * 64, { CONFIG: 5, S1ContextPtr: cd, S1CDMax: 0 });
  };
  addCd(SID, ASID);
  const cmd = (c: Uint32Array) => r.cmd(q.cmdq, LOG, c);
  return { r, st, q, root, addCd, cmd };
}

/** TLBI_NH_VA (vmid 0, asid): `leaf`, range fields as given. */
function nhVa(
  addr: number,
  leaf: boolean,
  { asid = ASID, ttl = 0, tg = 0, num = 0, scale = 0, op = OP.TLBI_NH_VA as number } = {},
) {
  return tlbiVa(new Uint32Array(4), op, 0, asid, addr, leaf, num, scale, ttl, tg);
}

function levels(r: Rig): number[] {
  return r.hw.walkCacheEntries.map((e) => e.level).sort();
}

Deno.test("level shifts of the three granules are distinct for table levels, and levelOf inverts them", () => {
  const shifts = [];
  for (const g of [12, 14, 16]) {
    for (let l = g === 12 ? 0 : 1; l <= 2; l++) {
      shifts.push(levelShift(l, g));
      assert.equal(levelOf(levelShift(l, g), g), l);
    }
  }
  assert.deepEqual(shifts, [39, 30, 21, 36, 25, 42, 29]);
  assert.equal(new Set(shifts).size, shifts.length);
});

Deno.test("a walk fills one entry per table level; the next walk in the same table starts at level 3", () => {
  const { r, root } = s1Rig();
  r.mapPage(root, 0x4000_1000, 0x8000_1000);
  r.mapPage(root, 0x4000_2000, 0x8000_2000);
  assert.equal(r.tr(SID, 0x4000_1000).pa, 0x8000_1000);
  assert.equal(r.hw.counters.walkCacheS1Misses, 1);
  assert.equal(r.hw.counters.walkCacheS1Hits, 0);
  assert.equal(r.hw.counters.walkReads, 4);
  const es = r.hw.walkCacheEntries.sort((a, b) => a.level - b.level);
  assert.deepEqual(
    es.map((e) => [e.tag, e.level, e.base, e.shift]),
    [
      [tlbTag(0, 0, ASID), 0, 0, 39],
      [tlbTag(0, 0, ASID), 1, 0x4000_0000, 30],
      [tlbTag(0, 0, ASID), 2, 0x4000_0000, 21],
    ],
  );
  // The level-2 entry gives the level-3 table the level-2 descriptor points at.
  const l1 = es[0].table, l2 = es[1].table, l3 = es[2].table;
  assert.equal(r.m.mem.read32(root) & ~0xfff, l1);
  assert.equal(r.m.mem.read32(l1 + 8) & ~0xfff, l2);
  assert.equal(r.m.mem.read32(l2) & ~0xfff, l3);
  // A different page of the same level-3 table: TLB miss, walk-cache hit, one descriptor read.
  assert.equal(r.tr(SID, 0x4000_2abc).pa, 0x8000_2abc);
  assert.equal(r.hw.counters.walkCacheS1Hits, 1);
  assert.equal(r.hw.counters.walkReads, 5);
  assert.equal(r.hw.walkCacheEntries.length, 3);
  // An unmapped page of the same table: a hit, then a translation fault at level 3.
  assert.equal(r.tr(SID, 0x4000_3000).ok, false);
  assert.equal(r.hw.counters.walkCacheS1Hits, 2);
  assert.equal(r.hw.counters.walkReads, 6);
});

Deno.test("walk_cache=false: every miss walks from the base, no entries, no walk-cache counts", () => {
  const { r, root } = s1Rig({ walk_cache: false });
  r.mapPage(root, 0x4000_1000, 0x8000_1000);
  r.mapPage(root, 0x4000_2000, 0x8000_2000);
  r.tr(SID, 0x4000_1000);
  r.tr(SID, 0x4000_2000);
  assert.equal(r.hw.counters.walkReads, 8);
  assert.deepEqual(r.hw.walkCacheEntries, []);
  assert.equal(r.hw.counters.walkCacheS1Hits + r.hw.counters.walkCacheS1Misses, 0);
});

Deno.test("walk_cache_size bounds the cache: the oldest entry goes first", () => {
  const { r, root } = s1Rig({ walk_cache_size: 2 });
  r.mapPage(root, 0x4000_1000, 0x8000_1000);
  r.mapPage(root, 0x4000_2000, 0x8000_2000);
  r.tr(SID, 0x4000_1000);
  assert.deepEqual(levels(r), [1, 2]); // level 0 was filled first and evicted
  assert.equal(r.tr(SID, 0x4000_2000).pa, 0x8000_2000);
  assert.equal(r.hw.counters.walkCacheS1Hits, 1);
  const wc = new WalkCache(3);
  for (let i = 0; i < 5; i++) wc.fill(1, i * 2 ** 21, 2, 21, 0x1000 * i);
  assert.equal(wc.size, 3);
  assert.equal(wc.find(1, 0, 21), -1);
  assert.equal(wc.find(1, 4 * 2 ** 21 + 5, 21), 0x4000);
  assert.equal(wc.find(2, 4 * 2 ** 21, 21), -1);
});

Deno.test("TLBI_NH_VA with Leaf=1 keeps the walk entries; Leaf=0 drops those covering the address", () => {
  const { r, root, cmd } = s1Rig();
  r.mapPage(root, 0x4000_1000, 0x8000_1000);
  r.mapPage(root, 0x4020_1000, 0x8000_2000); // another level-3 table
  r.tr(SID, 0x4000_1000);
  r.tr(SID, 0x4020_1000);
  assert.deepEqual(levels(r), [0, 1, 2, 2]);
  cmd(nhVa(0x4000_1000, true));
  assert.deepEqual(levels(r), [0, 1, 2, 2]);
  assert.equal(r.tr(SID, 0x4000_1000).pa, 0x8000_1000); // TLB miss, walk-cache hit
  assert.equal(r.hw.counters.walkCacheS1Hits, 2);
  cmd(nhVa(0x4000_1000, false));
  // Levels 0, 1 and the level-2 entry of 0x4000_0000 cover the address; 0x4020_0000's stays.
  assert.deepEqual(r.hw.walkCacheEntries.map((e) => [e.level, e.base]), [[2, 0x4020_0000]]);
  const reads = r.hw.counters.walkReads;
  r.tr(SID, 0x4000_1000);
  assert.equal(r.hw.counters.walkReads - reads, 4);
});

Deno.test("TTL with TG: Leaf=0 drops only the walk entries read at level TTL (none for 3); without TG the hint is ignored", () => {
  const { r, root, cmd } = s1Rig();
  r.mapPage(root, 0x4000_1000, 0x8000_1000);
  r.tr(SID, 0x4000_1000);
  cmd(nhVa(0x4000_1000, false, { ttl: 3, tg: 1 })); // level-3 descriptors are never tables
  assert.deepEqual(levels(r), [0, 1, 2]);
  cmd(nhVa(0x4000_1000, false, { ttl: 2, tg: 1 }));
  assert.deepEqual(levels(r), [0, 1]);
  cmd(nhVa(0x4000_1000, false, { ttl: 1, tg: 1 }));
  assert.deepEqual(levels(r), [0]);
  r.tr(SID, 0x4000_1000 + 0x1000); // unmapped, refills levels 1 and 2 below the cached level 0
  assert.deepEqual(levels(r), [0, 1, 2]);
  cmd(nhVa(0x4000_1000, false, { ttl: 2, tg: 0 }));
  assert.deepEqual(levels(r), []);
});

Deno.test("range TLBI (TG/NUM/SCALE) with Leaf=0 drops the walk entries overlapping the range only", () => {
  const { r, root, cmd } = s1Rig();
  r.mapPage(root, 0x4000_1000, 0x8000_1000);
  r.mapPage(root, 0x4020_1000, 0x8000_2000);
  r.mapPage(root, 0x4040_1000, 0x8000_3000);
  for (const a of [0x4000_1000, 0x4020_1000, 0x4040_1000]) r.tr(SID, a);
  assert.deepEqual(levels(r), [0, 1, 2, 2, 2]);
  // 2 x 2 MiB from 0x4020_0000: (NUM+1) << (SCALE + 12) = 2 << 21.
  cmd(nhVa(0x4020_0000, false, { tg: 1, num: 1, scale: 9 }));
  assert.deepEqual(r.hw.walkCacheEntries.map((e) => [e.level, e.base]), [[2, 0x4000_0000]]);
  // With Leaf=1 the same range keeps it.
  cmd(nhVa(0x4000_0000, true, { tg: 1, num: 1, scale: 9 }));
  assert.equal(r.hw.walkCacheEntries.length, 1);
});

Deno.test("ASID selection: NH_VA drops one ASID's entries, NH_VAA and NH_ASID/NH_ALL as the TLB", () => {
  const { r, root, addCd, cmd } = s1Rig();
  addCd(SID + 1, 8);
  r.mapPage(root, 0x4000_1000, 0x8000_1000);
  r.tr(SID, 0x4000_1000);
  r.tr(SID + 1, 0x4000_1000);
  const tags = () => [...new Set(r.hw.walkCacheEntries.map((e) => e.tag % 131072))].sort();
  assert.deepEqual(tags(), [7, 8]);
  cmd(nhVa(0x4000_1000, false, { asid: 8 }));
  assert.deepEqual(tags(), [7]);
  r.tr(SID + 1, 0x4000_2000);
  cmd(nhVa(0x4000_1000, false, { op: OP.TLBI_NH_VAA }));
  assert.deepEqual(tags(), []);
  r.tr(SID, 0x4000_2000);
  r.tr(SID + 1, 0x4000_2000);
  cmd(tlbiCtx(new Uint32Array(4), OP.TLBI_NH_ASID, 0, 7));
  assert.deepEqual(tags(), [8]);
  cmd(tlbiCtx(new Uint32Array(4), OP.TLBI_NH_ALL, 0, 0));
  assert.deepEqual(tags(), []);
});

/** A stage-2 rig (VMID 3, 40-bit IPA, start level 1, 4K). */
function s2Rig() {
  const r = new Rig();
  const st = r.linearStrtab(4);
  const q = r.enable(LOG);
  const root = r.alloc(8192, 8192);
  r.writeSte(st + 64, {
    CONFIG: 6,
    S2VMID: 3,
    S2T0SZ: 24,
    S2SL0: 1,
    S2TG: 0,
    S2PS: 2,
    S2AA64: 1,
    S2TTB: root / 16,
    S2R: 1,
  });
  // Two concatenated level-1 tables: the level-1 index is IPA >> 30 (10 bits).
  const va = 0x80_4020_3000;
  const l2 = r.alloc(4096), l3 = r.alloc(4096);
  r.m.mem.write64(root + Math.floor(va / 2 ** 30) * 8, l2 | 3, 0);
  r.m.mem.write64(l2 + (Math.floor(va / 2 ** 21) % 512) * 8, l3 | 3, 0);
  // Stage-2 leaf attributes: AF, S2AP read+write.
  r.m.mem.write64(l3 + (Math.floor(va / 4096) % 512) * 8, 0x7000_0000 | 3 | 0x400 | 0xc0, 0);
  return { r, root, cmd: (c: Uint32Array) => r.cmd(q.cmdq, LOG, c) };
}

Deno.test("stage 2: entries under the VMID's stage-2 tag; S2_IPA Leaf=1 keeps them, Leaf=0 drops them; S12_VMALL drops, NH_ALL keeps", () => {
  const { r, cmd } = s2Rig();
  assert.equal(r.tr(1, 0x80_4020_3010).pa, 0x7000_0010);
  assert.deepEqual(
    r.hw.walkCacheEntries.map((e) => [e.tag, e.level]).sort(),
    [[tlbTag(0, 3, S2_ONLY_ASID), 1], [tlbTag(0, 3, S2_ONLY_ASID), 2]],
  );
  assert.equal(r.hw.counters.walkCacheS2Misses, 1);
  const ipa = (leaf: boolean) =>
    tlbiVa(new Uint32Array(4), OP.TLBI_S2_IPA, 3, 0, 0x80_4020_3000, leaf, 0, 0, 0, 0);
  cmd(ipa(true));
  assert.equal(r.hw.walkCacheEntries.length, 2);
  assert.equal(r.tr(1, 0x80_4020_3000).ok, true);
  assert.equal(r.hw.counters.walkCacheS2Hits, 1);
  cmd(ipa(false));
  assert.equal(r.hw.walkCacheEntries.length, 0);
  r.tr(1, 0x80_4020_3000);
  cmd(tlbiCtx(new Uint32Array(4), OP.TLBI_NH_ALL, 3, 0));
  assert.equal(r.hw.walkCacheEntries.length, 2);
  cmd(tlbiCtx(new Uint32Array(4), OP.TLBI_S12_VMALL, 3, 0));
  assert.equal(r.hw.walkCacheEntries.length, 0);
  r.tr(1, 0x80_4020_3000);
  cmd(tlbiCtx(new Uint32Array(4), OP.TLBI_NSNH_ALL, 0, 0));
  assert.equal(r.hw.walkCacheEntries.length, 0);
});

Deno.test("checking mode: a stale walk entry left by a Leaf=1 TLBI is reported as a missed walk-cache invalidation", () => {
  for (const leaf of [true, false]) {
    const { r, root, cmd } = s1Rig();
    r.hw.checking = true;
    r.mapPage(root, 0x4000_1000, 0x8000_1000);
    r.tr(SID, 0x4000_1000);
    // Replace the level-3 table: the level-2 descriptor now points at a new table mapping elsewhere.
    const l2 = r.hw.walkCacheEntries.find((e) => e.level === 1)!.table;
    const fresh = r.alloc(4096);
    r.m.mem.write64(fresh + 8, 0x9000_0000 | 3 | 0x400 | 0x40, 0);
    r.m.mem.write64(l2, fresh | 3, 0);
    cmd(nhVa(0x4000_1000, leaf));
    const o = r.tr(SID, 0x4000_1000);
    if (!leaf) {
      assert.equal(o.pa, 0x9000_0000);
      assert.deepEqual(r.hw.missed, []);
      continue;
    }
    assert.equal(o.pa, 0x8000_1000); // through the stale entry, as silicon would
    assert.equal(r.hw.missed.length, 1);
    const m = r.hw.missed[0];
    assert.equal(m.cache, "WALK");
    assert.equal(m.sid, SID);
    assert.equal(m.addr, 0x4000_1000);
    assert.match(m.detail, /level 2 entry \[0x40000000, 0x40200000\)/);
    assert.match(m.detail, new RegExp(`memory has table 0x${fresh.toString(16)}`));
    assert.match(m.detail, /missing invalidation: TLBI_NH_VA with Leaf=0/);
    assert.equal(r.hw.counters.missedInvalidations, 1);
  }
});

Deno.test("checking mode: a walk TLBI with the nominal leaf TTL=3 (as kernels before TTL was limited to leaf invalidations) is reported", () => {
  for (const ttl of [3, 0]) {
    const { r, root, cmd } = s1Rig();
    r.hw.checking = true;
    r.mapPage(root, 0x4000_1000, 0x8000_1000);
    r.tr(SID, 0x4000_1000);
    const l2 = r.hw.walkCacheEntries.find((e) => e.level === 1)!.table;
    r.m.mem.write64(l2, 0, 0); // the level-3 table is freed
    // 512 pages from 0x4000_0000: NUM=0, SCALE=9, TG=4K; Leaf=0.
    cmd(nhVa(0x4000_0000, false, { ttl, tg: 1, scale: 9 }));
    const o = r.tr(SID, 0x4000_1000);
    if (ttl === 0) {
      assert.equal(o.ok, false);
      assert.deepEqual(r.hw.missed, []);
      continue;
    }
    assert.equal(o.ok, true); // the stale entry still walks the freed table
    assert.equal(r.hw.missed.length, 1);
    assert.match(r.hw.missed[0].detail, /level 2 entry .* memory has no table descriptor there/);
    assert.match(r.hw.missed[0].detail, /TLBI_NH_VA with Leaf=0 \(and TTL 0 or 2\)/);
  }
});
