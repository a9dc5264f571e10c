import assert from "node:assert/strict";
import { categorize, costModel, modeledNs } from "../../cli/cost.ts";

Deno.test("cost model: each counter falls in one category; breakdowns are not counted twice", () => {
  const m = costModel();
  const smmu = {
    translations: 5,
    steHits: 4,
    tlbMisses: 3,
    walkReads: 6,
    faults: 2,
    events: 2,
    commands: 8,
    syncs: 4,
    cmd_CMD_SYNC: 4,
    cmd_TLBI_NH_VA: 3,
    cmd_CFGI_CD: 1,
  };
  const c = categorize(m, smmu);
  assert.equal(c.translations, 5);
  assert.equal(c.cacheHits, 4);
  assert.equal(c.cacheMisses, 3);
  assert.equal(c.walkReads, 6);
  assert.equal(c.faults, 2);
  assert.equal(c.commands, 8);
  assert.equal(c.syncs, 4);
  assert.equal(c.invalidations, 4);
  const vtd = {
    qiDescriptors: 3,
    qiWait: 1,
    qiPiotlb: 2,
    faultsRecorded: 1,
    faults: 1,
    pasidHits: 2,
  };
  const v = categorize(m, vtd);
  assert.deepEqual([v.commands, v.syncs, v.invalidations, v.faults, v.cacheHits], [3, 1, 2, 1, 2]);
});

Deno.test("modeled time is the sum of count × latency plus DMA bytes", () => {
  const m = costModel();
  // 2 translations × 2 + 1 sync × 500 + 3 commands × 20 + 1000 bytes × 0.05
  assert.equal(modeledNs(m, { translations: 2, syncs: 1, commands: 3 }, 1000), 4 + 500 + 60 + 50);
  const o = costModel({ syncs: 1000 });
  assert.equal(modeledNs(o, { syncs: 2 }, 0), 2000);
  assert.equal(modeledNs(m, { syncs: 0 }, 100, { dmaBytes: 1 }), 100);
});

Deno.test("an unknown cost category is refused, naming the categories", () => {
  assert.throws(
    () => costModel({ bogus: 1 }),
    /unknown cost category "bogus"; categories: staleHits/,
  );
});
