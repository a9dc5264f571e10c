import assert from "node:assert/strict";
import {
  allocIoPgtable,
  IOMMU_READ,
  IOMMU_WRITE,
  IotlbGather,
  Machine,
  newDmaRequest,
  newTranslateResult,
} from "@iommu-lab/core";
import plugin, {
  type SmmuV3,
  type SmmuV3Driver,
  type SvaDomain,
} from "../../../backends/smmuv3/mod.ts";

Deno.test("SVA: a PASID shares a CPU mm's AArch64 table; the mm notifier's invalidation reaches the TLB", () => {
  const m = new Machine();
  const dev = m.pci.add({ name: "acc", bus: 0, device: 4, fn: 0, pasidBits: 8 });
  const { hw, driver } = plugin.create(m, {});
  const d = driver as SmmuV3Driver;
  const smmu = hw as SmmuV3;
  smmu.checking = true;
  d.probeDevice(dev);
  // The "CPU" page table of a process: an AArch64 stage-1 table written by other code.
  const cpu = allocIoPgtable("ARM_64_LPAE_S1", {
    quirks: 0,
    pgsizeBitmap: 0x1000 | 0x20_0000 | 0x4000_0000,
    ias: 48,
    oas: 48,
    coherentWalk: true,
    tlb: null,
  }, { mem: m.mem, pages: m.pages });
  const page = m.pages.allocPage();
  cpu.mapPages(0x7fff_0000_0000, page, 4096, 1, IOMMU_READ | IOMMU_WRITE);
  const mm = { id: 1, pgdPhys: cpu.root, levels: 4, pasid: 5 };
  const sva = d.domainAllocSva(dev, mm) as SvaDomain;
  assert.throws(() => sva.attachDev(dev, null), /EINVAL/);
  d.identityDomain.attachDev(dev, null);
  sva.setDevPasid!(dev, 5, null);
  const req = newDmaRequest();
  const out = newTranslateResult();
  req.rid = dev.rid;
  req.pasid = 5;
  req.addr = 0x7fff_0000_0123;
  req.access = 3;
  smmu.translate(req, out);
  assert.equal(out.ok, true, out.fault);
  assert.equal(out.pa, page + 0x123);
  // Without a PASID the RID stays in bypass (S1DSS=BYPASS).
  req.pasid = -1;
  req.addr = 0x4000;
  smmu.translate(req, out);
  assert.equal(out.pa, 0x4000);
  // The process unmaps; the mm notifier invalidates the range.
  cpu.unmapPages(0x7fff_0000_0000, 4096, 1, new IotlbGather());
  sva.invalidateSecondaryTlbs(0x7fff_0000_0000, 0x7fff_0000_1000);
  req.pasid = 5;
  req.addr = 0x7fff_0000_0123;
  smmu.translate(req, out);
  assert.equal(out.ok, false);
  assert.deepEqual(smmu.missed, []);
  d.blockedDomain.setDevPasid!(dev, 5, sva);
  sva.free();
});
