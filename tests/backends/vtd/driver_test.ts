import assert from "node:assert/strict";
import { IOMMU_READ, IOMMU_WRITE, IotlbGather } from "@iommu-lab/core";
import { QI_DIOTLB_DESC } from "../../../backends/vtd/mod.ts";
import { setup, unmapSync, xlate } from "./helpers.ts";

Deno.test("driver probe enables scalable-mode translation: unattached device faults with PASID directory entry not present", () => {
  const { hw, nic } = setup();
  const r = xlate(hw, nic, 0x1000);
  assert.equal(r.ok, false);
  assert.equal(r.faultCode, 0x51);
  assert.equal(r.fault, "SM_PASID_DIR_NOT_PRESENT");
});

Deno.test("first-stage paging domain: map, DMA translates, unmap invalidates the IOTLB", () => {
  const { hw, nic, drv } = setup();
  const d = drv.domainAllocPaging(nic, 0);
  assert.equal(d.firstStage, true);
  assert.equal(d.did, 2);
  d.attachDev(nic, null);
  assert.equal(d.mapPages(0x40000, 0x8000_0000, 4096, 2, IOMMU_READ | IOMMU_WRITE), 8192);
  const r = xlate(hw, nic, 0x41234, true);
  assert.equal(r.ok, true);
  assert.equal(r.pa, 0x8000_1234);
  assert.equal(xlate(hw, nic, 0x41234).pa, 0x8000_1234);
  assert.equal(hw.counters.iotlbHits, 1);
  assert.equal(unmapSync(d, 0x41000, 4096), 4096);
  const r2 = xlate(hw, nic, 0x41234);
  assert.equal(r2.ok, false);
  assert.equal(r2.faultCode, 0x61);
  assert.equal(xlate(hw, nic, 0x40000).pa, 0x8000_0000);
});

Deno.test("second-stage domain (FLTS off): 2 MiB superpage translates and read-only write faults", () => {
  const { hw, nic, drv } = setup({ flts: false });
  const d = drv.domainAllocPaging(nic, 0);
  assert.equal(d.firstStage, false);
  d.attachDev(nic, null);
  d.mapPages(0x200000, 0x4000_0000, 0x200000, 1, IOMMU_READ);
  const r = xlate(hw, nic, 0x212345);
  assert.equal(r.ok, true);
  assert.equal(r.pa, 0x4001_2345);
  assert.equal(r.span, 0x200000);
  const w = xlate(hw, nic, 0x212345, true);
  assert.equal(w.ok, false);
  assert.equal(w.faultCode, 0x69);
});

Deno.test("identity domain uses pass-through with DID 1", () => {
  const { hw, nic, drv, m } = setup();
  drv.identityDomain.attachDev(nic, null);
  const r = xlate(hw, nic, 0x1234_5000, true);
  assert.equal(r.ok, true);
  assert.equal(r.pa, 0x1234_5000);
  // PASID entry DID field is FLPT_DEFAULT_DID.
  void m;
});

Deno.test("replacing the domain tears the old entry down: PASID cache, IOTLB and device TLB flushed", () => {
  const { hw, acc, drv } = setup();
  const a = drv.domainAllocPaging(acc, 0);
  const b = drv.domainAllocPaging(acc, 0);
  a.attachDev(acc, null);
  a.mapPages(0x1000, 0x9000_0000, 4096, 1, IOMMU_READ);
  b.mapPages(0x1000, 0xa000_0000, 4096, 1, IOMMU_READ);
  assert.equal(xlate(hw, acc, 0x1000).pa, 0x9000_0000);
  assert.equal(hw.devtlbHas(acc.rid, -1, 0x1000), true);
  const before = { ...hw.counters };
  b.attachDev(acc, a);
  assert.equal(hw.counters.qiPc - before.qiPc, 1);
  assert.equal(hw.counters.qiPiotlb - before.qiPiotlb, 1);
  assert.equal(hw.counters.qiDevIotlb - before.qiDevIotlb, 1);
  assert.equal(hw.devtlbHas(acc.rid, -1, 0x1000), false);
  assert.equal(xlate(hw, acc, 0x1000).pa, 0xa000_0000);
});

Deno.test("setDevPasid routes a PASID to its own domain while RID2PASID keeps another", () => {
  const { hw, acc, drv } = setup();
  const a = drv.domainAllocPaging(acc, 0);
  const b = drv.domainAllocPaging(acc, 0);
  a.attachDev(acc, null);
  b.setDevPasid(acc, 5, null);
  a.mapPages(0x1000, 0x9000_0000, 4096, 1, IOMMU_READ);
  b.mapPages(0x1000, 0xa000_0000, 4096, 1, IOMMU_READ);
  assert.equal(xlate(hw, acc, 0x1000).pa, 0x9000_0000);
  assert.equal(xlate(hw, acc, 0x1000, false, 5).pa, 0xa000_0000);
  assert.equal(xlate(hw, acc, 0x1000, false, 6).faultCode, 0x59);
});

Deno.test("unmap of a 16-page range sends one page-selective PASID-IOTLB invalidation with AM 4", () => {
  const { nic, drv, m } = setup();
  const d = drv.domainAllocPaging(nic, 0);
  d.attachDev(nic, null);
  d.mapPages(0x100000, 0x8000_0000, 4096, 16, IOMMU_READ);
  const events: Record<string, unknown>[] = [];
  m.trace.listen((e) => {
    if (e.name === "vtd_inv_desc" && ((e.fields.lo as number) & 0xf) === 6) events.push(e.fields);
  });
  const g = new IotlbGather();
  assert.equal(d.unmapPages(0x100000, 4096, 16, g), 65536);
  d.iotlbSync(g);
  assert.equal(events.length, 1);
  assert.equal((events[0].lo as number) >>> 4 & 3, 3);
  assert.equal((events[0].w2 as number) & 0x3f, 4);
  assert.equal((events[0].w2 as number) & 0xfffff000, 0x100000);
});

Deno.test("a skipped invalidation is caught in checking mode", () => {
  const { hw, nic, drv } = setup({ checking: true });
  const d = drv.domainAllocPaging(nic, 0);
  d.attachDev(nic, null);
  d.mapPages(0x1000, 0x9000_0000, 4096, 1, IOMMU_READ);
  assert.equal(xlate(hw, nic, 0x1000).pa, 0x9000_0000);
  // Unmap without iotlbSync: the IOTLB keeps the stale entry.
  d.unmapPages(0x1000, 4096, 1, new IotlbGather());
  const r = xlate(hw, nic, 0x1000);
  assert.equal(r.ok, true, "the stale entry is still used, as on silicon");
  assert.equal(hw.staleReports.length, 1);
  assert.equal(hw.staleReports[0].cache, "iotlb");
  assert.match(
    hw.staleReports[0].missing,
    /PASID-based IOTLB invalidation \(DID 2 PASID 0 addr 0x1000\)/,
  );
});

Deno.test("page request from a PRI device is reported to the kernel hook and answered by a page group response", () => {
  const { hw, acc, drv, m } = setup();
  const d = drv.domainAllocPaging(acc, 0);
  d.setDevPasid(acc, 7, null);
  const seen: number[] = [];
  drv.setKernelHooks({
    reportDeviceFault(dev, evt) {
      seen.push(evt.prm.addr, evt.prm.pasid, evt.prm.grpid);
      d.mapPages(evt.prm.addr, 0x7000_0000, 4096, 1, IOMMU_READ | IOMMU_WRITE);
      drv.pageResponse(dev, evt, { pasid: evt.prm.pasid, grpid: evt.prm.grpid, code: 0 });
    },
    reportIommuFault() {},
  });
  const r = xlate(hw, acc, 0x5000, true, 7);
  assert.equal(r.ok, false);
  assert.equal(r.pending, true);
  assert.equal(hw.outstandingPageRequests.size, 1);
  m.irq.deliver();
  assert.deepEqual(seen, [0x5000, 7, 0]);
  assert.equal(hw.outstandingPageRequests.size, 0);
  assert.equal(hw.pageResponses.get(`${acc.rid}:0`), 0);
  assert.equal(xlate(hw, acc, 0x5000, true, 7).pa, 0x7000_0000);
});

Deno.test("an unrecoverable fault is recorded and reported through the fault interrupt", () => {
  const { hw, nic, drv, m } = setup();
  const d = drv.domainAllocPaging(nic, 0);
  d.attachDev(nic, null);
  const faults: string[] = [];
  drv.setKernelHooks({
    reportDeviceFault() {},
    reportIommuFault(dev, iova, write, reason) {
      faults.push(`${dev?.name} 0x${iova.toString(16)} ${write} ${reason}`);
    },
  });
  assert.equal(xlate(hw, nic, 0x3000, true).faultCode, 0x61);
  m.irq.deliver();
  assert.deepEqual(faults, ["nic 0x3000 true SM_FL_NOT_PRESENT"]);
});

Deno.test("with tracing on, the driver emits qi_submit for every descriptor, ending with the wait", () => {
  const { nic, drv, m } = setup();
  const d = drv.domainAllocPaging(nic, 0);
  d.attachDev(nic, null);
  d.mapPages(0x1000, 0x8000_0000, 4096, 1, IOMMU_READ);
  m.trace.enabled = true;
  unmapSync(d, 0x1000, 4096);
  const qws = m.trace.events.filter((e) => e.name === "qi_submit").map((e) =>
    Number((e.fields.qw0 as bigint) & 0xfn)
  );
  assert.deepEqual(qws, [6, 5], "PASID-based IOTLB, then the wait descriptor");
});

Deno.test("a one-page unmap leaves the emptied table linked: map/unmap cycles in one region allocate nothing more", () => {
  const { nic, drv, m } = setup();
  const d = drv.domainAllocPaging(nic, 0);
  d.attachDev(nic, null);
  d.mapPages(0x4000_0000, 0x8000_0000, 4096, 8, IOMMU_READ);
  assert.equal(unmapSync(d, 0x4000_0000, 4096, 8), 8 * 4096);
  const after1 = m.pages.stats.pagesInUse;
  for (let i = 0; i < 50; i++) {
    d.mapPages(0x4000_0000, 0x8000_0000, 4096, 8, IOMMU_READ);
    assert.equal(unmapSync(d, 0x4000_0000, 4096, 8), 8 * 4096);
  }
  assert.equal(m.pages.stats.pagesInUse, after1);
});

Deno.test("an unmap covering a leaf table's whole 2 MiB span frees that table after the sync (as dma_pte_clear_level)", () => {
  const { nic, drv, m } = setup();
  const d = drv.domainAllocPaging(nic, 0);
  d.attachDev(nic, null);
  d.mapPages(0x4000_0000, 0x8000_0000, 4096, 1, IOMMU_READ);
  const before = m.pages.stats.pagesInUse;
  d.mapPages(0x4020_0000, 0x8000_0000, 4096, 512, IOMMU_READ);
  assert.equal(m.pages.stats.pagesInUse, before + 1, "one leaf table for the second region");
  const g = new IotlbGather();
  assert.equal(d.unmapPages(0x4020_0000, 4096, 512, g), 0x20_0000);
  assert.equal(m.pages.stats.pagesInUse, before + 1, "freed only after the invalidation");
  d.iotlbSync(g);
  assert.equal(m.pages.stats.pagesInUse, before);
});

Deno.test("supervisor requests need SRE in the PASID entry; requests without PASID are user requests", () => {
  const { hw, acc, drv } = setup();
  const d = drv.domainAllocPaging(acc, 0);
  d.attachDev(acc, null);
  d.setDevPasid(acc, 3, null);
  d.mapPages(0x1000, 0x8000_0000, 4096, 1, IOMMU_READ);
  assert.equal(xlate(hw, acc, 0x1000, false, 3, true).faultCode, 0x5d);
  assert.equal(xlate(hw, acc, 0x1000, false, 3, false).pa, 0x8000_0000);
  assert.equal(
    xlate(hw, acc, 0x1000, false, -1, true).pa,
    0x8000_0000,
    "no PASID: privilege ignored",
  );
});

Deno.test("device-TLB invalidation descriptors carry SID and PFSID as the kernel's QI_DEV_IOTLB_* macros", () => {
  const { acc, drv, m } = setup();
  const d = drv.domainAllocPaging(acc, 0);
  d.attachDev(acc, null);
  d.mapPages(0x6000, 0x8000_0000, 4096, 1, IOMMU_READ);
  m.trace.enabled = true;
  unmapSync(d, 0x6000, 4096);
  const ev = m.trace.events.find((e) =>
    e.name === "qi_submit" && ((e.fields.qw0 as bigint) & 0xfn) === 3n
  )!;
  const qw0 = ev.fields.qw0 as bigint, qw1 = ev.fields.qw1 as bigint;
  const words = Uint32Array.from([
    Number(qw0 & 0xffffffffn),
    Number(qw0 >> 32n),
    Number(qw1 & 0xffffffffn),
    Number(qw1 >> 32n),
  ]);
  const f = QI_DIOTLB_DESC.decode(words);
  assert.equal(f.SID, BigInt(acc.rid));
  assert.equal(f.PFSID_LO, BigInt(acc.rid & 0xf));
  assert.equal(f.PFSID_HI, BigInt(acc.rid >> 4));
  assert.equal(f.S, 0n);
  assert.equal(f.ADDR, 0x6000n);
});
