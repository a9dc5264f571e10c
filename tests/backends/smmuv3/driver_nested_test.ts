import assert from "node:assert/strict";
import {
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IotlbGather,
  Machine,
  newDmaRequest,
  newTranslateResult,
} from "@iommu-lab/core";
import plugin, { type SmmuV3Driver, STE } from "../../../backends/smmuv3/mod.ts";
import { IPA_OFF, nestedGuest } from "./nested_guest.ts";

Deno.test("nested domain: a guest's vSTE, CD and stage-1 tables in IPA space over a NEST_PARENT stage 2", () => {
  const va = 0x55_0000_3000;
  const { m, dev, d, smmu, parent, data: [data], attach } = nestedGuest(va, 1);
  assert.equal(parent.stage, "S2");
  const dataIpa = data + IPA_OFF;
  attach();
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
