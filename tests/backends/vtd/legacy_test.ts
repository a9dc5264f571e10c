/** The driver in legacy mode (ECAP.SMTS clear): context entries carry the second-stage table. */
import assert from "node:assert/strict";
import { IOMMU_READ, IOMMU_WRITE, IommuError } from "@iommu-lab/core";
import { LEGACY_CONTEXT_ENTRY } from "../../../backends/vtd/mod.ts";
import { setup, unmapSync, xlate } from "./helpers.ts";

Deno.test("legacy mode: a paging domain is second stage, DMA translates, unmap invalidates", () => {
  const { hw, nic, drv } = setup({ smts: false });
  assert.equal(drv.sm, false);
  assert.equal(drv.maxPasids(nic), 0);
  const d = drv.domainAllocPaging(nic, 0);
  assert.equal(d.firstStage, false);
  d.attachDev(nic, null);
  d.mapPages(0x3000, 0x8000_0000, 4096, 1, IOMMU_READ | IOMMU_WRITE);
  assert.equal(xlate(hw, nic, 0x3004, true).pa, 0x8000_0004);
  assert.equal(unmapSync(d, 0x3000, 4096), 4096);
  assert.equal(xlate(hw, nic, 0x3004).faultCode, 0x6);
  assert.throws(
    () => d.setDevPasid(nic, 3, null),
    (e: unknown) => e instanceof IommuError && e.errno === "EOPNOTSUPP",
  );
});

Deno.test("legacy mode: the context entry holds TT, AW and DID as the kernel writes them", () => {
  const { m, acc, drv } = setup({ smts: false });
  const d = drv.domainAllocPaging(acc, 0);
  d.attachDev(acc, null);
  // Find the context entry through the root table the driver programmed.
  const rta = Number(m.bus.read64(0xfed90000 + 0x20)) & ~0xfff;
  const ctp = m.mem.read64(rta + acc.bus * 16) - 1;
  const w = new Uint32Array(4);
  m.mem.readWords(ctp + acc.devfn * 16, w);
  const e = LEGACY_CONTEXT_ENTRY.decode(w);
  assert.equal(e.P, 1n);
  assert.equal(e.TT, 1n, "DEV_IOTLB for an ATS device");
  assert.equal(e.AW, 3n, "5-level table with the default 57-bit SAGAW");
  assert.equal(e.DID, 2n);
  assert.equal(e.SLPTPTR, BigInt(d.pgtable!.root));
});

Deno.test("legacy mode: identity is pass-through; switching back flushes context cache, IOTLB and device TLB", () => {
  const { hw, acc, drv } = setup({ smts: false });
  const d = drv.domainAllocPaging(acc, 0);
  d.attachDev(acc, null);
  d.mapPages(0x1000, 0x8000_0000, 4096, 1, IOMMU_READ);
  assert.equal(xlate(hw, acc, 0x1000).pa, 0x8000_0000);
  assert.equal(hw.devtlbHas(acc.rid, -1, 0x1000), true);
  const c = { ...hw.counters };
  drv.identityDomain.attachDev(acc, d);
  assert.equal(hw.counters.qiCc - c.qiCc, 1);
  assert.equal(hw.counters.qiIotlb - c.qiIotlb, 1);
  assert.equal(hw.counters.qiDevIotlb - c.qiDevIotlb, 1);
  assert.equal(hw.devtlbHas(acc.rid, -1, 0x1000), false);
  assert.equal(xlate(hw, acc, 0x1000).pa, 0x1000);
  drv.blockedDomain.attachDev(acc, drv.identityDomain);
  assert.equal(xlate(hw, acc, 0x1000).faultCode, 0x2);
});
