import assert from "node:assert/strict";
import { IOMMU_READ, IOMMU_WRITE, IotlbGather, Machine } from "@iommu-lab/core";
import plugin, {
  type SmmuDomain,
  type SmmuV3,
  type SmmuV3Driver,
} from "../../../backends/smmuv3/mod.ts";

/** Map, unmap and sync one page of `d`; the hardware's ATC_INV and TLBI counts after it. */
function unmapOne(d: SmmuDomain, hw: SmmuV3): { atc: number; tlbi: number } {
  d.mapPages(0x10_0000, 0x8000_0000, 4096, 1, IOMMU_READ | IOMMU_WRITE);
  const g = new IotlbGather();
  assert.equal(d.unmapPages(0x10_0000, 4096, 1, g), 4096);
  d.iotlbSync(g);
  return { atc: hw.counters.cmd_ATC_INV, tlbi: hw.counters.cmd_TLBI_NH_VA };
}

Deno.test("a strict unmap sends ATC_INV while an ATS master is probed, and none before or after it", () => {
  const m = new Machine({ paBits: 48 });
  const nic = m.pci.add({ name: "nic", bus: 0, device: 2, fn: 0 });
  const gpu = m.pci.add({ name: "gpu", bus: 0, device: 3, fn: 0, ats: true });
  const inst = plugin.create(m, {});
  const hw = inst.hw as SmmuV3;
  const drv = inst.driver as SmmuV3Driver;
  drv.probeDevice(nic);
  const d = drv.domainAllocPaging(nic, 0) as SmmuDomain;
  d.attachDev(nic, null);
  // No ATS master: the TLBI only.
  assert.deepEqual(unmapOne(d, hw), { atc: 0, tlbi: 1 });
  // An ATS master attached to the same domain: its ATC is invalidated too.
  drv.probeDevice(gpu);
  d.attachDev(gpu, null);
  const atcBefore = hw.counters.cmd_ATC_INV;
  const after = unmapOne(d, hw);
  assert.equal(after.tlbi, 2);
  assert.equal(after.atc, atcBefore + 1);
  // Released: no ATC to invalidate any more.
  drv.releaseDevice(gpu);
  const atcReleased = hw.counters.cmd_ATC_INV;
  assert.deepEqual(unmapOne(d, hw), { atc: atcReleased, tlbi: 3 });
});
