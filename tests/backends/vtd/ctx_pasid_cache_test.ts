/**
 * Bounded, set-associative context and PASID caches: LRU eviction within a
 * set, evicted entries fetched again from memory, and every invalidation
 * granularity removing exactly its scope.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { IOMMU_READ, IommuError, type PciDevice } from "@iommu-lab/core";
import { QI_CC_DESC, QI_PC_DESC, resolveVtdOptions } from "../../../backends/vtd/mod.ts";
import { VtdCaches } from "../../../backends/vtd/hw/caches.ts";
import { setup, xlate } from "./helpers.ts";

function send(
  drv: { submitRaw(a: number, b: number, c: number, d: number): void },
  w: Uint32Array,
) {
  drv.submitRaw(w[0], w[1], w[2], w[3]);
}

/** `n` plain functions 0:5.0 .. 0:5.(n-1) attached to one paging domain with page 0 mapped. */
function devices(opts: Record<string, boolean | number | string>, n: number) {
  const env = setup(opts);
  const devs: PciDevice[] = [];
  for (let f = 0; f < n; f++) {
    const dev = env.m.pci.add({ name: `f${f}`, bus: 0, device: 5, fn: f });
    env.drv.probeDevice(dev);
    devs.push(dev);
  }
  const d = env.drv.domainAllocPaging(devs[0], 0);
  for (const dev of devs) d.attachDev(dev, null);
  d.mapPages(0, 0x8000_0000, 4096, 1, IOMMU_READ);
  return { ...env, devs, d };
}

Deno.test("context cache: a full set evicts its least recently used RID", () => {
  const { hw, devs } = devices({ ctx_entries: 2, ctx_ways: 2 }, 3);
  const [a, b, c] = devs;
  for (const dev of [a, b, a]) assert.equal(xlate(hw, dev, 0).pa, 0x8000_0000);
  const misses = hw.counters.ctxMisses;
  assert.equal(xlate(hw, c, 0).pa, 0x8000_0000);
  assert.deepEqual([a, b, c].map((d) => hw.contextCached(d.rid)), [true, false, true]);
  assert.equal(hw.counters.ctxEvictions, 1);
  assert.equal(hw.cacheSizes().context, 2);
  // The evicted RID is fetched from memory again (a miss), evicting a (LRU now).
  assert.equal(xlate(hw, b, 0).pa, 0x8000_0000);
  assert.equal(hw.counters.ctxMisses, misses + 2);
  assert.deepEqual([a, b, c].map((d) => hw.contextCached(d.rid)), [false, true, true]);
});

Deno.test("PASID cache: a full set evicts its least recently used (RID, PASID)", () => {
  const { hw, drv, m } = setup({ pasid_cache_entries: 2, pasid_cache_ways: 2 });
  // A PASID device without ATS: no device TLB answers before the caches.
  const dev = m.pci.add({ name: "pd", bus: 4, device: 0, fn: 0, pasidBits: 8 });
  drv.probeDevice(dev);
  const d = drv.domainAllocPaging(dev, 0);
  d.attachDev(dev, null);
  d.setDevPasid(dev, 9, null);
  d.setDevPasid(dev, 10, null);
  d.mapPages(0, 0x8000_0000, 4096, 1, IOMMU_READ);
  // Requests without PASID use RID_PASID 0.
  for (const p of [-1, 9, -1, 10]) assert.equal(xlate(hw, dev, 0, false, p).ok, true);
  assert.deepEqual([0, 9, 10].map((p) => hw.pasidCached(dev.rid, p)), [true, false, true]);
  assert.equal(hw.counters.pasidEvictions, 1);
  assert.equal(hw.cacheSizes().pasid, 2);
  // PASID 9 is fetched again, evicting PASID 0 (least recently used now).
  const misses = hw.counters.pasidMisses;
  assert.equal(xlate(hw, dev, 0, false, 9).pa, 0x8000_0000);
  assert.equal(hw.counters.pasidMisses, misses + 1);
  assert.deepEqual([0, 9, 10].map((p) => hw.pasidCached(dev.rid, p)), [false, true, true]);
});

Deno.test("context-cache device-selective invalidation honours the function mask", () => {
  const { hw, drv, devs } = devices({}, 8);
  const cached = () => devs.map((d) => hw.contextCached(d.rid) ? 1 : 0).join("");
  const warm = () => devs.forEach((d) => xlate(hw, d, 0));
  warm();
  assert.equal(cached(), "11111111");
  const sid = devs[5].rid; // 0:5.5
  send(drv, QI_CC_DESC.encode({ TYPE: 1, GRAN: 3, SID: sid, FM: 0 }));
  assert.equal(cached(), "11111011");
  warm();
  send(drv, QI_CC_DESC.encode({ TYPE: 1, GRAN: 3, SID: sid, FM: 1 })); // ignore bit 0
  assert.equal(cached(), "11110011");
  warm();
  send(drv, QI_CC_DESC.encode({ TYPE: 1, GRAN: 3, SID: sid, FM: 2 })); // ignore bits 1:0
  assert.equal(cached(), "11110000");
  warm();
  send(drv, QI_CC_DESC.encode({ TYPE: 1, GRAN: 3, SID: sid, FM: 3 })); // ignore bits 2:0
  assert.equal(cached(), "00000000");
  warm();
  // Scalable mode: domain-selective is global.
  send(drv, QI_CC_DESC.encode({ TYPE: 1, GRAN: 2, DID: 999 }));
  assert.equal(cached(), "00000000");
});

Deno.test("legacy context cache: domain-selective removes one DID's RIDs, global all", () => {
  const { hw, drv, m } = setup({ smts: false });
  const devs = [0, 1, 2].map((f) => {
    const dev = m.pci.add({ name: `l${f}`, bus: 0, device: 6, fn: f });
    drv.probeDevice(dev);
    return dev;
  });
  const a = drv.domainAllocPaging(devs[0], 0);
  const b = drv.domainAllocPaging(devs[2], 0);
  a.attachDev(devs[0], null);
  a.attachDev(devs[1], null);
  b.attachDev(devs[2], null);
  for (const d of [a, b]) d.mapPages(0, 0x8000_0000, 4096, 1, IOMMU_READ);
  const cached = () => devs.map((d) => hw.contextCached(d.rid) ? 1 : 0).join("");
  devs.forEach((d) => assert.equal(xlate(hw, d, 0).ok, true));
  assert.equal(cached(), "111");
  send(drv, QI_CC_DESC.encode({ TYPE: 1, GRAN: 2, DID: a.did }));
  assert.equal(cached(), "001");
  devs.forEach((d) => xlate(hw, d, 0));
  send(drv, QI_CC_DESC.encode({ TYPE: 1, GRAN: 2, DID: b.did }));
  assert.equal(cached(), "110");
  send(drv, QI_CC_DESC.encode({ TYPE: 1, GRAN: 1 }));
  assert.equal(cached(), "000");
});

Deno.test("PASID-cache invalidation: PASID-selective, domain-selective and global scopes", () => {
  const { hw, drv, m } = setup();
  const dev = m.pci.add({ name: "pd", bus: 4, device: 0, fn: 0, pasidBits: 8 });
  drv.probeDevice(dev);
  const a = drv.domainAllocPaging(dev, 0);
  const b = drv.domainAllocPaging(dev, 0);
  a.setDevPasid(dev, 1, null);
  a.setDevPasid(dev, 2, null);
  b.setDevPasid(dev, 3, null);
  for (const d of [a, b]) d.mapPages(0, 0x8000_0000, 4096, 1, IOMMU_READ);
  const pasids = [1, 2, 3];
  const cached = () => pasids.map((p) => hw.pasidCached(dev.rid, p) ? 1 : 0).join("");
  const warm = () => pasids.forEach((p) => assert.equal(xlate(hw, dev, 0, false, p).ok, true));
  warm();
  assert.equal(cached(), "111");
  send(drv, QI_PC_DESC.encode({ TYPE: 7, GRAN: 1, DID: a.did, PASID: 2 }));
  assert.equal(cached(), "101");
  send(drv, QI_PC_DESC.encode({ TYPE: 7, GRAN: 1, DID: b.did, PASID: 1 }));
  assert.equal(cached(), "101", "PASID 1 is not cached under DID b");
  warm();
  send(drv, QI_PC_DESC.encode({ TYPE: 7, GRAN: 0, DID: a.did }));
  assert.equal(cached(), "001");
  warm();
  send(drv, QI_PC_DESC.encode({ TYPE: 7, GRAN: 3 }));
  assert.equal(cached(), "000");
});

Deno.test("context and PASID cache sizes must be ways times a power of two", () => {
  const bad: Record<string, number>[] = [{ ctx_entries: 24, ctx_ways: 8 }, {
    pasid_cache_entries: 12,
  }];
  for (const o of bad) {
    assert.throws(
      () => resolveVtdOptions(o),
      (e: unknown) => e instanceof IommuError && e.errno === "EINVAL",
    );
  }
  assert.equal(resolveVtdOptions({ ctx_entries: 4, ctx_ways: 8 }).ctx_entries, 4);
});

/** One operation on the caches of the property test. */
type Op =
  | { k: "ctx"; rid: number; did: number }
  | { k: "pasid"; rid: number; pasid: number; did: number }
  | { k: "hitCtx"; rid: number }
  | { k: "hitPasid"; rid: number; pasid: number }
  | { k: "invCtx"; gran: number; did: number; sid: number; fm: number }
  | { k: "invPasid"; gran: number; did: number; pasid: number };

Deno.test("property: fully associative context and PASID caches match an LRU reference model", () => {
  const CAP = 4;
  const rid = fc.integer({ min: 0, max: 7 });
  const did = fc.integer({ min: 1, max: 3 });
  const pasid = fc.integer({ min: 0, max: 2 });
  // Fills and lookups dominate, so sets fill up and LRU order matters.
  const op: fc.Arbitrary<Op> = fc.oneof(
    { arbitrary: fc.record({ k: fc.constant("ctx" as const), rid, did }), weight: 4 },
    { arbitrary: fc.record({ k: fc.constant("pasid" as const), rid, pasid, did }), weight: 4 },
    { arbitrary: fc.record({ k: fc.constant("hitCtx" as const), rid }), weight: 4 },
    { arbitrary: fc.record({ k: fc.constant("hitPasid" as const), rid, pasid }), weight: 4 },
    {
      arbitrary: fc.record({
        k: fc.constant("invCtx" as const),
        gran: fc.integer({ min: 1, max: 3 }),
        did,
        sid: rid,
        fm: fc.integer({ min: 0, max: 3 }),
      }),
      weight: 1,
    },
    {
      arbitrary: fc.record({
        k: fc.constant("invPasid" as const),
        gran: fc.constantFrom(0, 1, 3),
        did,
        pasid,
      }),
      weight: 1,
    },
  );
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.array(op, { minLength: 10, maxLength: 60, size: "max" }),
      (sm, ops) => {
        const c = new VtdCaches(resolveVtdOptions({
          ctx_entries: CAP,
          ctx_ways: CAP,
          pasid_cache_entries: CAP,
          pasid_cache_ways: CAP,
        }));
        // Reference: insertion-ordered Maps, most recently used last.
        const ctx = new Map<number, number>(); // rid -> did
        const pc = new Map<string, { did: number; pasid: number }>(); // "rid:pasid"
        const use = <V>(m: Map<string | number, V>, k: string | number, v: V) => {
          m.delete(k);
          if (m.size === CAP) m.delete(m.keys().next().value!);
          m.set(k, v);
        };
        for (const o of ops) {
          switch (o.k) {
            case "ctx":
              c.ctxInsert(o.rid, o.did).did = o.did;
              use(ctx as Map<string | number, number>, o.rid, o.did);
              break;
            case "pasid":
              c.pasidInsert(o.rid, o.pasid, o.did);
              use(
                pc as Map<string | number, { did: number; pasid: number }>,
                `${o.rid}:${o.pasid}`,
                {
                  did: o.did,
                  pasid: o.pasid,
                },
              );
              break;
            case "hitCtx": {
              const hit = c.ctxLookup(o.rid) !== null;
              assert.equal(hit, ctx.has(o.rid));
              if (hit) use(ctx as Map<string | number, number>, o.rid, ctx.get(o.rid)!);
              break;
            }
            case "hitPasid": {
              const k = `${o.rid}:${o.pasid}`;
              const hit = c.pasidLookup(o.rid, o.pasid) !== null;
              assert.equal(hit, pc.has(k));
              if (hit) {
                use(
                  pc as Map<string | number, { did: number; pasid: number }>,
                  k,
                  pc.get(k)!,
                );
              }
              break;
            }
            case "invCtx": {
              c.invContext(sm, o.gran, o.did, o.sid, o.fm);
              const mask = [0xffff, 0xfffe, 0xfffc, 0xfff8][o.fm];
              for (const [r, d] of [...ctx]) {
                const gone = o.gran === 1 || (o.gran === 2 && (sm || d === o.did)) ||
                  (o.gran === 3 && (r & mask) === (o.sid & mask));
                if (gone) ctx.delete(r);
              }
              break;
            }
            case "invPasid":
              c.invPasidCache(o.gran, o.did, o.pasid);
              for (const [k, v] of [...pc]) {
                const gone = o.gran === 3 ||
                  (v.did === o.did && (o.gran === 0 || v.pasid === o.pasid));
                if (gone) pc.delete(k);
              }
              break;
          }
          for (let r = 0; r < 12; r++) {
            assert.equal(c.ctxHas(r), ctx.has(r), `ctx rid ${r}`);
            for (let p = 0; p < 4; p++) assert.equal(c.pasidHas(r, p), pc.has(`${r}:${p}`));
          }
          assert.equal(c.sizes().context, ctx.size);
          assert.equal(c.sizes().pasid, pc.size);
        }
      },
    ),
    { numRuns: 150 },
  );
});
