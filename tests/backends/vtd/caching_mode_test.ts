/** Caching mode (CAP.CM): not-present results are cached, so a map needs iotlb_sync_map. */
import assert from "node:assert/strict";
import { IOMMU_READ } from "@iommu-lab/core";
import { setup, xlate } from "./helpers.ts";

Deno.test("caching mode: a not-present result stays cached until iotlb_sync_map invalidates it", () => {
  const { hw, nic, drv } = setup({ cm: true, checking: true });
  assert.equal(drv.cachingMode, true);
  const d = drv.domainAllocPaging(nic, 0);
  d.attachDev(nic, null);
  assert.equal(xlate(hw, nic, 0x5000).faultCode, 0x61);
  d.mapPages(0x5000, 0x8000_0000, 4096, 1, IOMMU_READ);
  const stale = xlate(hw, nic, 0x5000);
  assert.equal(stale.ok, false, "the cached not-present entry is still used");
  assert.equal(hw.staleReports.length, 1);
  assert.match(hw.staleReports[0].missing, /caching mode/);
  d.iotlbSyncMap(0x5000, 4096);
  assert.equal(xlate(hw, nic, 0x5000).pa, 0x8000_0000);
});

Deno.test("without caching mode a new mapping is visible at once and iotlb_sync_map sends nothing", () => {
  const { hw, nic, drv } = setup({ checking: true });
  const d = drv.domainAllocPaging(nic, 0);
  d.attachDev(nic, null);
  assert.equal(xlate(hw, nic, 0x5000).faultCode, 0x61);
  d.mapPages(0x5000, 0x8000_0000, 4096, 1, IOMMU_READ);
  const before = hw.counters.qiDescriptors;
  d.iotlbSyncMap(0x5000, 4096);
  assert.equal(hw.counters.qiDescriptors, before);
  assert.equal(xlate(hw, nic, 0x5000).pa, 0x8000_0000);
  assert.equal(hw.staleReports.length, 0);
});
