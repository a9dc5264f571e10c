import assert from "node:assert/strict";
import {
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_READ,
  IOMMU_WRITE,
  IotlbGather,
  Machine,
  newDmaRequest,
  newTranslateResult,
} from "@iommu-lab/core";
import plugin, {
  CD,
  type SmmuDomain,
  type SmmuV3,
  type SmmuV3Driver,
  STE,
} from "../../../backends/smmuv3/mod.ts";

const RW = IOMMU_READ | IOMMU_WRITE;
const IPA_OFF = 0x10_0000_0000; // guest-physical = host-physical + IPA_OFF

Deno.test("nested domain: a guest's vSTE, CD and stage-1 tables in IPA space over a NEST_PARENT stage 2", () => {
  const m = new Machine();
  const dev = m.pci.add({ name: "vf", bus: 3, device: 0, fn: 0 });
  const { hw, driver } = plugin.create(m, {});
  const d = driver as SmmuV3Driver;
  const smmu = hw as SmmuV3;
  smmu.checking = true;
  d.probeDevice(dev);
  const parent = d.domainAllocPaging(dev, IOMMU_HWPT_ALLOC_NEST_PARENT) as SmmuDomain;
  assert.equal(parent.stage, "S2");
  // Guest RAM: pages the host gives the guest, mapped IPA -> PA in the parent.
  const guestPage = () => {
    const pa = m.pages.allocPage();
    parent.mapPages!(pa + IPA_OFF, pa, 4096, 1, RW);
    return pa;
  };
  const cd = guestPage();
  const pgd = guestPage();
  const data = guestPage();
  m.mem.writeWords(
    cd,
    CD.encode({
      V: 1,
      AA64: 1,
      R: 1,
      A: 1,
      T0SZ: 16,
      IPS: 5,
      ASID: 42,
      TTB0: (pgd + IPA_OFF) / 16,
    }),
  );
  const va = 0x55_0000_3000;
  let table = pgd;
  for (let level = 0; level < 3; level++) {
    const idx = Math.floor(va / 2 ** (12 + 9 * (3 - level))) % 512;
    const next = guestPage();
    m.mem.write64(
      table + idx * 8,
      ((next + IPA_OFF) % 2 ** 32 | 3) >>> 0,
      Math.floor((next + IPA_OFF) / 2 ** 32),
    );
    table = next;
  }
  const dataIpa = data + IPA_OFF;
  m.mem.write64(
    table + (Math.floor(va / 4096) % 512) * 8,
    (dataIpa % 2 ** 32 | 3 | 0x440) >>> 0,
    Math.floor(dataIpa / 2 ** 32),
  );
  const vste = STE.encode({ V: 1, CONFIG: 5, S1ContextPtr: cd + IPA_OFF });
  const nested = d.domainAllocNested(dev, parent, 0, { ste: vste.subarray(0, 4) });
  nested.attachDev(dev, null);
  const req = newDmaRequest();
  const out = newTranslateResult();
  req.rid = dev.rid;
  req.addr = va + 0x10;
  req.access = 3;
  smmu.translate(req, out);
  assert.equal(out.ok, true, out.fault);
  assert.equal(out.pa, data + 0x10);
  // The host takes the data page away from the guest: stage-2 unmap + sync.
  const g = new IotlbGather();
  assert.equal(parent.unmapPages!(dataIpa, 4096, 1, g), 4096);
  parent.iotlbSync!(g);
  smmu.translate(req, out);
  assert.equal(out.ok, false);
  assert.equal(out.fault, "F_TRANSLATION");
  assert.deepEqual(smmu.missed, []);
  assert.equal(d.hwInfo(dev).type, "ARM_SMMUV3");
  assert.equal(d.hwInfo(dev).data[2], m.bus.read32(smmu.mmioBase));
});

Deno.test("nested domain allocation refuses a vSTE with host-only fields (EIO) and a non-parent (EINVAL)", () => {
  const m = new Machine();
  const dev = m.pci.add({ name: "vf", bus: 3, device: 0, fn: 0 });
  const { driver } = plugin.create(m, {});
  const d = driver as SmmuV3Driver;
  d.probeDevice(dev);
  const parent = d.domainAllocPaging(dev, IOMMU_HWPT_ALLOC_NEST_PARENT);
  const s2cfg = STE.encode({ V: 1, CONFIG: 6 }).subarray(0, 4);
  assert.throws(
    () => d.domainAllocNested(dev, parent, 0, { ste: s2cfg }),
    (e: Error & { errno?: string }) => e.errno === "EIO",
  );
  const strw = STE.encode({ V: 1, CONFIG: 5, STRW: 2 }).subarray(0, 4);
  assert.throws(
    () => d.domainAllocNested(dev, parent, 0, { ste: strw }),
    (e: Error & { errno?: string }) => e.errno === "EIO",
  );
  const plain = d.domainAllocPaging(dev, 0);
  assert.throws(
    () =>
      d.domainAllocNested(dev, plain, 0, { ste: STE.encode({ V: 1, CONFIG: 5 }).subarray(0, 4) }),
    (e: Error & { errno?: string }) => e.errno === "EINVAL",
  );
});
