import assert from "node:assert/strict";
import {
  IOMMU_READ,
  IOMMU_WRITE,
  IommuCore,
  IommuPageResponseCode,
  Machine,
} from "@iommu-lab/core";
import plugin, { type SmmuV3, type SmmuV3Driver } from "../../../backends/smmuv3/mod.ts";

function world() {
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
  const acc = m.pci.add({ name: "acc", bus: 0, device: 3, fn: 0, canStall: true });
  const { hw, driver } = plugin.create(m, {});
  const core = new IommuCore(m);
  core.registerDriver(driver);
  return { m, core, nic, gpu, acc, hw: hw as SmmuV3, driver: driver as SmmuV3Driver };
}

Deno.test("through the iommu core: default DMA domain, iommu_map, device DMA lands in the mapped page", () => {
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
  // The event queue record reached the core's fault path.
  assert.equal(core.faultLog.length, 1);
  assert.equal(core.faultLog[0].reason, "F_TRANSLATION");
  assert.equal(core.faultLog[0].iova, 0x10_0010);
});

Deno.test("a stalled DMA is reported as a page request, the handler maps the page, RESUME retries it", () => {
  const { m, core, acc, hw } = world();
  const dom = core.domainOf(acc)!;
  const pa = m.pages.allocPage();
  m.mem.write32(pa + 8, 0xcafe_f00d);
  let calls = 0;
  dom.iopfHandler = (f) => {
    calls++;
    core.map(dom, f.prm.addr, pa, 4096, IOMMU_READ);
    return IommuPageResponseCode.SUCCESS;
  };
  const r = m.master(acc).read(0x5000_0008, 4);
  assert.equal(r.ok, false);
  assert.equal(r.pending, true);
  assert.equal(calls, 1);
  assert.equal(hw.counters.cmd_RESUME, 1);
  const r2 = m.master(acc).read(0x5000_0008, 4);
  assert.equal(r2.ok, true);
  assert.deepEqual([...r2.data!], [0x0d, 0xf0, 0xfe, 0xca]);
});

Deno.test("a stalled DMA the handler refuses is aborted by RESUME ABORT", () => {
  const { m, core, acc } = world();
  const dom = core.domainOf(acc)!;
  dom.iopfHandler = () => IommuPageResponseCode.INVALID;
  assert.equal(m.master(acc).read(0x6000_0000, 4).pending, true);
  const r = m.master(acc).read(0x6000_0000, 4);
  assert.equal(r.ok, false);
  assert.equal(r.pending, false);
  assert.equal(r.fault, "STALL_TERMINATED");
});

Deno.test("an ATS/PRI device's page request is answered with PRI_RESP and the retry succeeds", () => {
  const { m, core, gpu, hw, driver } = world();
  const dom = core.domainOf(gpu)!;
  const pa = m.pages.allocPage();
  dom.iopfHandler = (f) => {
    core.map(dom, f.prm.addr, pa, 4096, IOMMU_READ | IOMMU_WRITE);
    return IommuPageResponseCode.SUCCESS;
  };
  const r = m.master(gpu).write(0x7000_0000, new Uint8Array([9]));
  assert.equal(r.pending, true);
  assert.equal(driver.stats.pageRequests, 1);
  assert.equal(hw.counters.cmd_PRI_RESP, 1);
  const r2 = m.master(gpu).write(0x7000_0000, new Uint8Array([9]));
  assert.equal(r2.ok, true);
  assert.equal(m.mem.read8(pa), 9);
  // unmap through the core: the driver sends ATC_INV so the device's ATC forgets it
  core.unmap(dom, 0x7000_0000, 4096);
  assert.ok(hw.counters.cmd_ATC_INV >= 1);
  dom.iopfHandler = () => IommuPageResponseCode.INVALID;
  assert.equal(m.master(gpu).read(0x7000_0000, 1).pending, true);
  const r3 = m.master(gpu).read(0x7000_0000, 1);
  assert.equal(r3.ok, false);
  assert.equal(r3.fault, "PRI_RESP_DENY");
});

Deno.test("PASID attach through the core routes DMA with a PASID to its own domain", () => {
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
  assert.equal(m.master(gpu).read(0x1000, 1, { pasid }).ok, false);
});
