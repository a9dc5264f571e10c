/** The VT-d backend under the iommu core, with devices doing DMA through DmaMaster. */
import assert from "node:assert/strict";
import {
  IOMMU_READ,
  IOMMU_WRITE,
  IommuCore,
  IommuPageResponseCode,
  Machine,
} from "@iommu-lab/core";
import plugin, { type VtdDriver, type VtdHardware } from "../../../backends/vtd/mod.ts";

function world(policy = {}) {
  const m = new Machine();
  const nic = m.pci.add({ name: "nic", bus: 0, device: 1, fn: 0 });
  const gpu = m.pci.add({
    name: "gpu",
    bus: 0,
    device: 2,
    fn: 0,
    ats: true,
    pri: true,
    pasidBits: 10,
  });
  const { hw, driver } = plugin.create(m, {});
  const core = new IommuCore(m, policy);
  core.registerDriver(driver);
  return { m, core, nic, gpu, hw: hw as VtdHardware, driver: driver as VtdDriver };
}

Deno.test("through the iommu core: default DMA domain, iommu_map, DMA lands in the mapped page, unmap faults", () => {
  const { m, core, nic } = world();
  const dom = core.domainOf(nic)!;
  assert.ok(dom);
  const pa = m.pages.allocPage();
  core.map(dom, 0x10_0000, pa, 4096, IOMMU_READ | IOMMU_WRITE);
  const r = m.master(nic).write(0x10_0010, new Uint8Array([1, 2, 3, 4]));
  assert.equal(r.ok, true);
  assert.deepEqual([...m.mem.readBytes(pa + 0x10, 4)], [1, 2, 3, 4]);
  assert.equal(core.unmap(dom, 0x10_0000, 4096), 4096);
  const r2 = m.master(nic).read(0x10_0010, 4);
  assert.equal(r2.ok, false);
  assert.equal(r2.faultCode, 0x61);
  assert.equal(core.faultLog.length, 1);
  assert.equal(core.faultLog[0].reason, "SM_FL_NOT_PRESENT");
  assert.equal(core.faultLog[0].iova, 0x10_0000);
});

Deno.test("iommu.passthrough=1 gives identity domains: DMA reaches physical addresses", () => {
  const { m, core, nic } = world({ passthrough: true });
  const pa = m.pages.allocPage();
  const r = m.master(nic).write(pa + 4, new Uint8Array([5]));
  assert.equal(r.ok, true);
  assert.equal(m.mem.read8(pa + 4), 5);
  void core;
});

Deno.test("a PRI page request goes to the core's IOPF path; SUCCESS lets the retry through, INVALID fails it", () => {
  const { m, core, gpu, hw, driver } = world();
  const dom = core.domainOf(gpu)!;
  const pa = m.pages.allocPage();
  dom.iopfHandler = (f) => {
    core.map(dom, f.prm.addr, pa, 4096, IOMMU_READ | IOMMU_WRITE);
    return IommuPageResponseCode.SUCCESS;
  };
  const r = m.master(gpu).write(0x7000_0000, new Uint8Array([9]));
  assert.equal(r.pending, true);
  assert.equal(driver.pageRequestsSeen, 1);
  assert.equal(hw.counters.qiPgrpResp, 1);
  const r2 = m.master(gpu).write(0x7000_0000, new Uint8Array([9]));
  assert.equal(r2.ok, true);
  assert.equal(m.mem.read8(pa), 9);
  // Unmap through the core: the device TLB is invalidated too.
  const devtlbInv = hw.counters.qiDevIotlb;
  core.unmap(dom, 0x7000_0000, 4096);
  assert.equal(hw.counters.qiDevIotlb - devtlbInv, 1);
  assert.equal(hw.devtlbHas(gpu.rid, -1, 0x7000_0000), false);
  dom.iopfHandler = () => IommuPageResponseCode.INVALID;
  assert.equal(m.master(gpu).read(0x7000_0000, 1).pending, true);
  const r3 = m.master(gpu).read(0x7000_0000, 1);
  assert.equal(r3.ok, false);
  assert.equal(r3.pending, false);
  assert.equal(r3.fault, "PAGE_RESPONSE_INVALID");
});

Deno.test("PASID attach through the core routes DMA with a PASID to its own domain; detach blocks it", () => {
  const { m, core, gpu } = world();
  const d2 = core.domainAllocPaging(gpu);
  const pasid = core.allocGlobalPasid(gpu);
  core.attachDevicePasid(d2, gpu, pasid);
  const pa = m.pages.allocPage();
  core.map(d2, 0x1000, pa, 4096, IOMMU_READ | IOMMU_WRITE);
  const r = m.master(gpu).write(0x1000, new Uint8Array([7]), { pasid });
  assert.equal(r.ok, true);
  assert.equal(m.mem.read8(pa), 7);
  core.detachDevicePasid(d2, gpu, pasid);
  const r2 = m.master(gpu).read(0x1000, 1, { pasid });
  assert.equal(r2.ok, false);
  assert.equal(r2.faultCode, 0x59);
});
