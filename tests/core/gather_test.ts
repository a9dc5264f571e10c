import assert from "node:assert/strict";
import { IotlbGather } from "@iommu-lab/core";

function recorder() {
  const syncs: [number, number, number][] = [];
  return {
    syncs,
    iotlbSync(g: IotlbGather) {
      syncs.push([g.start, g.end, g.pgsize]);
    },
  };
}

Deno.test("a new gather is empty with start at the maximum and end 0", () => {
  const g = new IotlbGather();
  assert.equal(g.empty, true);
  assert.equal(g.end, 0);
  assert.equal(g.size, 0);
});

Deno.test("adjacent pages of one size are merged without a sync", () => {
  const d = recorder();
  const g = new IotlbGather();
  g.addPage(d, 0x2000, 0x1000);
  g.addPage(d, 0x3000, 0x1000);
  g.addPage(d, 0x1000, 0x1000);
  assert.deepEqual(d.syncs, []);
  assert.equal(g.start, 0x1000);
  assert.equal(g.end, 0x3fff);
  assert.equal(g.pgsize, 0x1000);
});

Deno.test("a disjoint page syncs the gathered range first, keeping queued", () => {
  const d = recorder();
  const g = new IotlbGather();
  g.queued = true;
  g.addPage(d, 0x1000, 0x1000);
  g.addPage(d, 0x5000, 0x1000);
  assert.deepEqual(d.syncs, [[0x1000, 0x1fff, 0x1000]]);
  assert.equal(g.start, 0x5000);
  assert.equal(g.queued, true);
});

Deno.test("a page of another size syncs first", () => {
  const d = recorder();
  const g = new IotlbGather();
  g.addPage(d, 0x20_0000, 0x1000);
  g.addPage(d, 0x20_1000, 0x20_0000);
  assert.deepEqual(d.syncs, [[0x20_0000, 0x20_0fff, 0x1000]]);
  assert.equal(g.pgsize, 0x20_0000);
});

Deno.test("init empties the freelist and keeps the same array", () => {
  const g = new IotlbGather();
  const list = g.freelist;
  list.push(0x1000, 0x2000);
  g.init();
  assert.equal(g.freelist, list);
  assert.equal(list.length, 0);
});
