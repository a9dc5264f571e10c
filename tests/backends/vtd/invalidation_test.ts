/** Each invalidation descriptor clears exactly what it should and no more. */
import assert from "node:assert/strict";
import { IOMMU_READ, IommuError } from "@iommu-lab/core";
import {
  QI_CC_DESC,
  QI_DEIOTLB_DESC,
  QI_DIOTLB_DESC,
  QI_EIOTLB_DESC,
  QI_IOTLB_DESC,
  QI_PC_DESC,
} from "../../../backends/vtd/mod.ts";
import { setup, xlate } from "./helpers.ts";

function send(
  drv: { submitRaw(a: number, b: number, c: number, d: number): void },
  w: Uint32Array,
) {
  drv.submitRaw(w[0], w[1], w[2], w[3]);
}

/** Two SS domains (DIDs 2, 3); nic on DID 2, acc on DID 3; pages 0x1000 and 0x2000 cached in both. */
function ssFixture() {
  const env = setup({ flts: false });
  const { drv, nic, acc, hw } = env;
  const a = drv.domainAllocPaging(nic, 0);
  const b = drv.domainAllocPaging(acc, 0);
  a.attachDev(nic, null);
  b.attachDev(acc, null);
  for (const d of [a, b]) d.mapPages(0x1000, 0x8000_0000, 4096, 2, IOMMU_READ);
  for (const dev of [nic, acc]) {
    for (const va of [0x1000, 0x2000]) assert.equal(xlate(hw, dev, va).ok, true);
  }
  return { ...env, a, b };
}

Deno.test("IOTLB page-selective invalidation removes one page of one DID only", () => {
  const { drv, hw } = ssFixture();
  send(drv, QI_IOTLB_DESC.encode({ TYPE: 2, GRAN: 3, DID: 2, ADDR: 0x1000, AM: 0 }));
  assert.equal(hw.iotlbHas(2, 0, 0x1000), false);
  assert.equal(hw.iotlbHas(2, 0, 0x2000), true);
  assert.equal(hw.iotlbHas(3, 0, 0x1000), true);
});

Deno.test("IOTLB page-selective invalidation with AM 1 covers the aligned 8 KiB", () => {
  const { drv, hw } = ssFixture();
  send(drv, QI_IOTLB_DESC.encode({ TYPE: 2, GRAN: 3, DID: 2, ADDR: 0x0, AM: 1 }));
  assert.equal(hw.iotlbHas(2, 0, 0x1000), false);
  assert.equal(hw.iotlbHas(2, 0, 0x2000), true, "0x2000 is outside [0, 0x2000)");
});

Deno.test("IOTLB domain-selective invalidation clears one DID; global clears all", () => {
  const { drv, hw } = ssFixture();
  send(drv, QI_IOTLB_DESC.encode({ TYPE: 2, GRAN: 2, DID: 3 }));
  assert.equal(hw.iotlbHas(3, 0, 0x1000), false);
  assert.equal(hw.iotlbHas(3, 0, 0x2000), false);
  assert.equal(hw.iotlbHas(2, 0, 0x1000), true);
  send(drv, QI_IOTLB_DESC.encode({ TYPE: 2, GRAN: 1 }));
  assert.equal(hw.cacheSizes().iotlb, 0);
});

Deno.test("PASID-based IOTLB invalidation leaves second-stage entries alone", () => {
  const { drv, hw } = ssFixture();
  send(drv, QI_EIOTLB_DESC.encode({ TYPE: 6, GRAN: 2, DID: 2, PASID: 0 }));
  assert.equal(hw.iotlbHas(2, 0, 0x1000), true);
});

Deno.test("PASID-based IOTLB page invalidation removes one first-stage page of one PASID", () => {
  const { drv, hw, acc } = setup();
  const d = drv.domainAllocPaging(acc, 0);
  d.attachDev(acc, null);
  d.setDevPasid(acc, 4, null);
  d.mapPages(0x1000, 0x8000_0000, 4096, 2, IOMMU_READ);
  for (const p of [-1, 4]) {
    for (const va of [0x1000, 0x2000]) assert.equal(xlate(hw, acc, va, false, p).ok, true);
  }
  send(drv, QI_EIOTLB_DESC.encode({ TYPE: 6, GRAN: 3, DID: 2, PASID: 4, ADDR: 0x2000, AM: 0 }));
  assert.equal(hw.iotlbHas(2, 4, 0x2000), false);
  assert.equal(hw.iotlbHas(2, 4, 0x1000), true);
  assert.equal(hw.iotlbHas(2, 0, 0x2000), true);
  // The IOTLB (non-PASID) descriptor does not touch first-stage entries in scalable mode.
  send(drv, QI_IOTLB_DESC.encode({ TYPE: 2, GRAN: 2, DID: 2 }));
  assert.equal(hw.iotlbHas(2, 4, 0x1000), true);
});

Deno.test("PASID-cache invalidation: PASID-selective, domain-selective, global", () => {
  const { drv, hw, acc, nic } = setup();
  const a = drv.domainAllocPaging(acc, 0);
  const b = drv.domainAllocPaging(nic, 0);
  a.attachDev(acc, null);
  a.setDevPasid(acc, 4, null);
  b.attachDev(nic, null);
  xlate(hw, acc, 0x1000);
  xlate(hw, acc, 0x1000, false, 4);
  xlate(hw, nic, 0x1000);
  assert.equal(hw.cacheSizes().pasid, 3);
  send(drv, QI_PC_DESC.encode({ TYPE: 7, GRAN: 1, DID: 2, PASID: 4 }));
  assert.equal(hw.pasidCached(acc.rid, 4), false);
  assert.equal(hw.pasidCached(acc.rid, 0), true);
  send(drv, QI_PC_DESC.encode({ TYPE: 7, GRAN: 0, DID: 2 }));
  assert.equal(hw.pasidCached(acc.rid, 0), false);
  assert.equal(hw.pasidCached(nic.rid, 0), true);
  send(drv, QI_PC_DESC.encode({ TYPE: 7, GRAN: 3 }));
  assert.equal(hw.cacheSizes().pasid, 0);
});

Deno.test("context-cache device-selective invalidation honours the function mask", () => {
  const { drv, hw, m } = setup();
  const fns = [0, 1, 2, 3].map((f) => m.pci.add({ name: `f${f}`, bus: 5, device: 1, fn: f }));
  for (const f of fns) {
    drv.probeDevice(f);
    drv.identityDomain.attachDev(f, null);
    xlate(hw, f, 0x1000);
  }
  send(drv, QI_CC_DESC.encode({ TYPE: 1, GRAN: 3, SID: fns[0].rid, FM: 1 })); // ignore bit 0
  assert.deepEqual(fns.map((f) => hw.contextCached(f.rid)), [false, false, true, true]);
  send(drv, QI_CC_DESC.encode({ TYPE: 1, GRAN: 1 }));
  assert.equal(hw.cacheSizes().context, 0);
});

Deno.test("device-TLB invalidation: size-encoded range of one SID, and PASID-based form", () => {
  const { drv, hw, acc } = setup();
  const d = drv.domainAllocPaging(acc, 0);
  d.attachDev(acc, null);
  d.setDevPasid(acc, 9, null);
  d.mapPages(0x0, 0x8000_0000, 4096, 4, IOMMU_READ);
  for (const va of [0x0, 0x1000, 0x2000, 0x3000]) {
    xlate(hw, acc, va);
    xlate(hw, acc, va, false, 9);
  }
  // S=1, address 0x0000 with bit 12 clear => 8 KiB at 0.
  send(drv, QI_DIOTLB_DESC.encode({ TYPE: 3, SID: acc.rid, S: 1, ADDR: 0x0 }));
  assert.deepEqual([0x0, 0x1000, 0x2000].map((a) => hw.devtlbHas(acc.rid, -1, a)), [
    false,
    false,
    true,
  ]);
  assert.equal(hw.devtlbHas(acc.rid, 9, 0x0), true, "PASID 9 entries untouched");
  send(drv, QI_DEIOTLB_DESC.encode({ TYPE: 8, SID: acc.rid, PASID: 9, ADDR: 0x3000 }));
  assert.equal(hw.devtlbHas(acc.rid, 9, 0x3000), false);
  assert.equal(hw.devtlbHas(acc.rid, 9, 0x2000), true);
});

Deno.test("a descriptor with reserved bits set stops the queue with IQE; the driver sees EINVAL", () => {
  const { drv, hw } = ssFixture();
  const w = QI_IOTLB_DESC.encode({ TYPE: 2, GRAN: 2, DID: 2 });
  w[0] |= 1 << 8; // reserved bit 8
  assert.throws(
    () => send(drv, w),
    (e: unknown) => e instanceof IommuError && e.errno === "EINVAL",
  );
  assert.equal(hw.counters.qiErrors, 1);
  assert.equal(hw.iotlbHas(2, 0, 0x1000), true, "the bad descriptor did nothing");
  // The queue runs again afterwards.
  send(drv, QI_IOTLB_DESC.encode({ TYPE: 2, GRAN: 2, DID: 2 }));
  assert.equal(hw.iotlbHas(2, 0, 0x1000), false);
});

Deno.test("an ATS timeout raises ITE and the driver sees ETIMEDOUT", () => {
  const { drv, hw, acc } = setup();
  hw.injectAtsTimeout(acc.rid);
  assert.throws(
    () => send(drv, QI_DIOTLB_DESC.encode({ TYPE: 3, SID: acc.rid })),
    (e: unknown) => e instanceof IommuError && e.errno === "ETIMEDOUT",
  );
  // Later submissions complete normally.
  send(drv, QI_DIOTLB_DESC.encode({ TYPE: 3, SID: acc.rid }));
  assert.equal(hw.counters.qiErrors, 1);
});
