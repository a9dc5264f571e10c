import assert from "node:assert/strict";
import { IOMMU_READ, IOMMU_WRITE, IommuCore, Machine } from "@iommu-lab/core";
import flatIommu from "../mod.ts";

Deno.test("the iommu core drives the flat IOMMU: groups by topology, default domains, map and DMA", () => {
  const m = new Machine();
  m.pci.add({ name: "rp", bus: 0, device: 1, fn: 0, kind: "root-port", secondaryBus: 1 });
  m.pci.add({ name: "br", bus: 1, device: 0, fn: 0, kind: "pcie-pci-bridge", secondaryBus: 2 });
  const a = m.pci.add({ name: "a", bus: 2, device: 1, fn: 0 });
  const b = m.pci.add({ name: "b", bus: 2, device: 2, fn: 0 });
  const nvme = m.pci.add({ name: "nvme", bus: 0, device: 2, fn: 0 });
  const { driver } = flatIommu.create(m, {});
  const core = new IommuCore(m);
  core.registerDriver(driver);
  assert.equal(core.groupOf(a), core.groupOf(b));
  assert.notEqual(core.groupOf(a), core.groupOf(nvme));
  assert.deepEqual(core.groupOf(a).devices.map((d) => d.name).sort(), ["a", "b", "br"]);

  const dom = core.domainAllocPaging(nvme);
  core.attachDevice(dom, nvme);
  const buf = m.pages.allocPages(1);
  core.map(dom, 0x200_0000, buf, 8192, IOMMU_READ | IOMMU_WRITE);
  const data = new Uint8Array(5000).fill(0x42);
  assert.equal(m.master(nvme).write(0x200_0000 + 100, data).ok, true);
  assert.equal(m.mem.read8(buf + 100 + 4999), 0x42);
  assert.equal(core.unmap(dom, 0x200_0000, 8192), 8192);
  const r = m.master(nvme).write(0x200_0000, data);
  assert.equal(r.ok, false, "core.unmap synced the IOTLB");
  assert.equal(r.fault, "PTE_NOT_PRESENT");
  assert.ok(core.faultLog.length >= 1, "the driver reported the fault to the core");

  // The shared group: DMA from a device behind the bridge uses the bridge alias.
  const gdom = core.domainAllocPaging(a);
  core.attachGroup(gdom, core.groupOf(a));
  core.map(gdom, 0x300_0000, buf, 4096, IOMMU_READ);
  assert.equal(m.master(b).read(0x300_0000 + 100, 1).data![0], 0x42);
});
