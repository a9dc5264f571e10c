/** Paging-structure caches: hits skip upper levels; IH=1 keeps them; IH=0 and DSI drop them. */
import assert from "node:assert/strict";
import { IOMMU_READ } from "@iommu-lab/core";
import { QI_EIOTLB_DESC, QI_IOTLB_DESC } from "../../../backends/vtd/mod.ts";
import { setup, xlate } from "./helpers.ts";

function fsFixture(checking = false) {
  const env = setup({ checking });
  const d = env.drv.domainAllocPaging(env.nic, 0);
  d.attachDev(env.nic, null);
  d.mapPages(0x200000, 0x8000_0000, 4096, 4, IOMMU_READ);
  return { ...env, d };
}

Deno.test("a second page in the same 2 MiB region walks one level only (first-stage PSC hit)", () => {
  const { hw, nic } = fsFixture();
  xlate(hw, nic, 0x200000);
  const reads = hw.counters.walkReads;
  assert.equal(xlate(hw, nic, 0x201000).pa, 0x8000_1000);
  assert.equal(hw.counters.pscHits, 1);
  assert.equal(hw.counters.walkReads - reads, 1);
});

Deno.test("PASID-IOTLB page invalidation with IH=1 keeps the PSC entry; IH=0 drops it", () => {
  const { hw, nic, drv } = fsFixture();
  xlate(hw, nic, 0x200000);
  const w = QI_EIOTLB_DESC.encode({
    TYPE: 6,
    GRAN: 3,
    DID: 2,
    PASID: 0,
    ADDR: 0x200000,
    AM: 0,
    IH: 1,
  });
  drv.submitRaw(w[0], w[1], w[2], w[3]);
  assert.equal(hw.cacheSizes().pscFs, 1);
  w[2] &= ~0x40;
  drv.submitRaw(w[0], w[1], w[2], w[3]);
  assert.equal(hw.cacheSizes().pscFs, 0);
});

Deno.test("IOTLB domain-selective invalidation drops the second-stage PSC of that DID only", () => {
  const env = setup({ flts: false });
  const a = env.drv.domainAllocPaging(env.nic, 0);
  const b = env.drv.domainAllocPaging(env.acc, 0);
  a.attachDev(env.nic, null);
  b.attachDev(env.acc, null);
  a.mapPages(0x1000, 0x8000_0000, 4096, 1, IOMMU_READ);
  b.mapPages(0x1000, 0x8000_0000, 4096, 1, IOMMU_READ);
  xlate(env.hw, env.nic, 0x1000);
  xlate(env.hw, env.acc, 0x1000);
  assert.equal(env.hw.cacheSizes().pscSs, 2);
  const w = QI_IOTLB_DESC.encode({ TYPE: 2, GRAN: 2, DID: 2 });
  env.drv.submitRaw(w[0], w[1], w[2], w[3]);
  assert.equal(env.hw.cacheSizes().pscSs, 1);
});

Deno.test("checking mode names a stale paging-structure entry when a table is replaced with IH=1 only", () => {
  const { hw, nic, drv, m, d } = fsFixture(true);
  assert.equal(xlate(hw, nic, 0x200000).pa, 0x8000_0000);
  // Swap the level-1 table under the level-2 entry for a copy mapping elsewhere.
  const root = d.pgtable!.root;
  const l3 = m.mem.read64(root) - (m.mem.read64(root) % 4096);
  const l2 = m.mem.read64(l3) - (m.mem.read64(l3) % 4096);
  const l2e = l2 + 1 * 8;
  const newL1 = m.pages.allocPage();
  m.mem.write64(newL1 + 1 * 8, (0x9000_1000 | 0x27) >>> 0, 0);
  const old = m.mem.read32(l2e);
  m.mem.write32(l2e, ((newL1 % 2 ** 32) | (old & 0xfff)) >>> 0);
  const w = QI_EIOTLB_DESC.encode({
    TYPE: 6,
    GRAN: 3,
    DID: 2,
    PASID: 0,
    ADDR: 0x200000,
    AM: 9,
    IH: 1,
  });
  drv.submitRaw(w[0], w[1], w[2], w[3]);
  assert.equal(xlate(hw, nic, 0x201000).pa, 0x8000_1000, "the stale table is still walked");
  assert.equal(hw.staleReports.length, 1);
  assert.equal(hw.staleReports[0].cache, "first-stage paging-structure cache");
  assert.match(hw.staleReports[0].missing, /IH=0/);
});

Deno.test("the IOTLB is bounded: past tlb_entries the least recently used entry is evicted", () => {
  const env = setup({ tlb_entries: 2 });
  const d = env.drv.domainAllocPaging(env.nic, 0);
  d.attachDev(env.nic, null);
  d.mapPages(0, 0x8000_0000, 4096, 3, IOMMU_READ);
  for (const va of [0x0, 0x1000, 0x2000]) xlate(env.hw, env.nic, va);
  assert.equal(env.hw.iotlbHas(2, 0, 0x0), false);
  assert.equal(env.hw.iotlbHas(2, 0, 0x1000), true);
  assert.equal(env.hw.iotlbHas(2, 0, 0x2000), true);
  assert.equal(env.hw.counters.evictions, 1);
});
