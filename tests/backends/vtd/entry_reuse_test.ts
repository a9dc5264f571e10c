/**
 * Context and PASID-cache entries are recycled after an invalidation: a
 * recycled entry holds the new structure's values, and checking mode
 * compares it with memory as it was fetched.
 */
import assert from "node:assert/strict";
import { IOMMU_READ, type Machine, type PciDevice } from "@iommu-lab/core";
import { QI_PC_DESC, REG, type VtdHardware } from "../../../backends/vtd/mod.ts";
import { setup, xlate } from "./helpers.ts";

/** Address of `dev`'s scalable-mode PASID entry for `pasid`, found from RTADDR as the hardware does. */
function pasidEntryAddr(m: Machine, hw: VtdHardware, dev: PciDevice, pasid: number): number {
  const page = (lo: number, hi: number) => (hi & 0xfffff) * 2 ** 32 + ((lo & 0xfffff000) >>> 0);
  const rta = page(hw.read32(REG.RTADDR), hw.read32(REG.RTADDR + 4));
  const re = rta + dev.bus * 16 + (dev.devfn >= 128 ? 8 : 0);
  const ce = page(m.mem.read32(re), m.mem.read32(re + 4)) + (dev.devfn & 0x7f) * 32;
  const dir = page(m.mem.read32(ce), m.mem.read32(ce + 4));
  const de = dir + Math.floor(pasid / 64) * 8;
  return page(m.mem.read32(de), m.mem.read32(de + 4)) + (pasid % 64) * 64;
}

Deno.test("a PASID-cache entry recycled after a global invalidation decodes the new PASID's entry and is checked against it", () => {
  const { hw, drv, m } = setup({ checking: true });
  // A PASID device without ATS: no device TLB answers before the caches.
  const acc = m.pci.add({ name: "pd", bus: 4, device: 0, fn: 0, pasidBits: 8 });
  drv.probeDevice(acc);
  const a = drv.domainAllocPaging(acc, 0);
  const b = drv.domainAllocPaging(acc, 0);
  a.setDevPasid(acc, 1, null);
  b.setDevPasid(acc, 2, null);
  a.mapPages(0x1000, 0x8000_0000, 4096, 1, IOMMU_READ);
  b.mapPages(0x1000, 0x9000_0000, 4096, 1, IOMMU_READ);
  assert.equal(xlate(hw, acc, 0x1000, false, 1).pa, 0x8000_0000);
  const w = QI_PC_DESC.encode({ TYPE: 7, GRAN: 3 });
  drv.submitRaw(w[0], w[1], w[2], w[3]); // every PASID-cache entry goes (to be reused)
  assert.equal(hw.pasidCached(acc.rid, 1), false);
  assert.equal(xlate(hw, acc, 0x1000, false, 2).pa, 0x9000_0000, "PASID 2's own table");
  assert.equal(xlate(hw, acc, 0x1000, false, 2).pa, 0x9000_0000, "from the PASID cache");
  assert.equal(hw.staleReports.length, 0);
  // Change PASID 2's entry in memory without invalidating: checking mode names it.
  const pe = pasidEntryAddr(m, hw, acc, 2);
  m.mem.write32(pe + 8, (m.mem.read32(pe + 8) ^ 0x7) >>> 0); // another DID
  assert.equal(xlate(hw, acc, 0x1000, false, 2).pa, 0x9000_0000, "still the cached entry");
  assert.equal(hw.staleReports.length, 1);
  assert.equal(hw.staleReports[0].cache, "pasid-cache");
  assert.match(hw.staleReports[0].entry, /pasid 2/);
});

Deno.test("a context-cache entry recycled after a global invalidation decodes the other device's entry", () => {
  const { hw, nic, acc, drv } = setup({ checking: true });
  const a = drv.domainAllocPaging(nic, 0);
  const b = drv.domainAllocPaging(acc, 0);
  a.attachDev(nic, null);
  b.attachDev(acc, null);
  a.mapPages(0x1000, 0x8000_0000, 4096, 1, IOMMU_READ);
  b.mapPages(0x1000, 0x9000_0000, 4096, 1, IOMMU_READ);
  assert.equal(xlate(hw, nic, 0x1000).pa, 0x8000_0000);
  drv.submitRaw(0x11, 0, 0, 0); // context cache, global
  assert.equal(hw.contextCached(nic.rid), false);
  assert.equal(xlate(hw, acc, 0x1000).pa, 0x9000_0000);
  assert.equal(hw.contextCached(acc.rid), true);
  assert.equal(xlate(hw, nic, 0x1000).pa, 0x8000_0000);
  assert.deepEqual(hw.staleReports, []);
});
