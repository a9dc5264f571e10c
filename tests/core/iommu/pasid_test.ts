import assert from "node:assert/strict";
import { IOMMU_PASID_INVALID, IommuCore, isIommuError } from "../../../core/mod.ts";
import { dev, FakeDomain, FakeDriver, logOf, machineWith } from "./fake-driver.ts";

function setup(groupAll = false, opts = {}) {
  const m = machineWith([dev("a", 1, { pasidBits: 4 }), dev("b", 2, { pasidBits: 3 })]);
  const drv = new FakeDriver({ deviceGroup: groupAll ? () => "g" : undefined, ...opts });
  const core = new IommuCore(m);
  core.registerDriver(drv);
  const [a, b] = [m.pci.byName("a")!, m.pci.byName("b")!];
  return { m, drv, core, a, b };
}

Deno.test("PASID attach routes the PASID of every group device and detach sets the blocked domain", () => {
  const { drv, core, a } = setup(true);
  const d = core.domainAllocPaging(a) as FakeDomain;
  drv.log.length = 0;
  core.attachDevicePasid(d, a, 5);
  assert.equal(core.getDomainForDevPasid(a, 5), d);
  assert.equal(core.groupOf(a).pasidArray.get(5), d);
  assert.deepEqual(drv.log, [`pasid ${d.label} a 5 old=none`, `pasid ${d.label} b 5 old=none`]);
  drv.log.length = 0;
  core.detachDevicePasid(d, a, 5);
  assert.deepEqual(drv.log, [
    `pasid blocked a 5 old=${d.label}`,
    `pasid blocked b 5 old=${d.label}`,
  ]);
  assert.equal(core.getDomainForDevPasid(a, 5), null);
  assert.equal(core.groupOf(a).pasidArray.size, 0);
});

Deno.test("PASID attach errnos: EOPNOTSUPP, ENODEV, EINVAL, EBUSY", () => {
  const { core, a, m } = setup();
  const d = core.domainAllocPaging(a);
  const noPasid = new FakeDomain(core.opsOf(a) as FakeDriver, 1, "nopasid", false);
  assert.throws(() => core.attachDevicePasid(noPasid, a, 1), (e) => isIommuError(e, "EOPNOTSUPP"));
  const stray = m.pci.add(dev("x", 9, { pasidBits: 4 }));
  assert.throws(() => core.attachDevicePasid(d, stray, 1), (e) => isIommuError(e, "ENODEV"));
  assert.throws(() => core.attachDevicePasid(d, a, 0), (e) => isIommuError(e, "EINVAL"));
  assert.throws(() => core.attachDevicePasid(d, a, 16), (e) => isIommuError(e, "EINVAL"));
  const other = new FakeDriver({ name: "other" });
  const foreign = other.domainAllocPaging(null, 0);
  assert.throws(() => core.attachDevicePasid(foreign, a, 1), (e) => isIommuError(e, "EINVAL"));
  core.attachDevicePasid(d, a, 15);
  const d2 = core.domainAllocPaging(a);
  assert.throws(() => core.attachDevicePasid(d2, a, 15), (e) => isIommuError(e, "EBUSY"));
  assert.equal(core.getDomainForDevPasid(a, 15), d);
});

Deno.test("PASID must be below max_pasids of every device in the group", () => {
  const { core, a } = setup(true);
  const d = core.domainAllocPaging(a);
  // a has 16 PASIDs, b only 8
  assert.throws(() => core.attachDevicePasid(d, a, 8), (e) => isIommuError(e, "EINVAL"));
  core.attachDevicePasid(d, a, 7);
  assert.equal(core.getDomainForDevPasid(a, 7), d);
});

Deno.test("PASID attach needs a blocked domain that can take PASIDs (EOPNOTSUPP)", () => {
  const { core, a } = setup(false, { blocked: false });
  const d = core.domainAllocPaging(a);
  assert.throws(() => core.attachDevicePasid(d, a, 1), (e) => isIommuError(e, "EOPNOTSUPP"));
});

Deno.test("a failing set_dev_pasid reverts the devices already set and frees the slot", () => {
  const { drv, core, a } = setup(true);
  const d = core.domainAllocPaging(a) as FakeDomain;
  drv.failPasidAt = drv.pasidCalls + 2;
  drv.log.length = 0;
  assert.throws(() => core.attachDevicePasid(d, a, 3), (e) => isIommuError(e, "ENOSPC"));
  assert.deepEqual(drv.log, [
    `pasid ${d.label} a 3 old=none`,
    `pasid-fail ${d.label} b 3`,
    `pasid blocked a 3 old=${d.label}`,
  ]);
  assert.equal(core.getDomainForDevPasid(a, 3), null);
  core.attachDevicePasid(d, a, 3); // the slot is free again
  assert.equal(core.getDomainForDevPasid(a, 3), d);
});

Deno.test("replace switches an attached PASID; a failure puts the done devices back on the old domain", () => {
  const { drv, core, a } = setup(true);
  const d1 = core.domainAllocPaging(a) as FakeDomain;
  const d2 = core.domainAllocPaging(a) as FakeDomain;
  assert.throws(() => core.replaceDevicePasid(d2, a, 2), (e) => isIommuError(e, "EINVAL"));
  core.attachDevicePasid(d1, a, 2);
  drv.failPasidAt = drv.pasidCalls + 2;
  drv.log.length = 0;
  assert.throws(() => core.replaceDevicePasid(d2, a, 2), (e) => isIommuError(e, "ENOSPC"));
  assert.deepEqual(drv.log, [
    `pasid ${d2.label} a 2 old=${d1.label}`,
    `pasid-fail ${d2.label} b 2`,
    `pasid ${d1.label} a 2 old=${d2.label}`,
  ]);
  assert.equal(core.getDomainForDevPasid(a, 2), d1);
  core.replaceDevicePasid(d2, a, 2);
  assert.equal(core.getDomainForDevPasid(a, 2), d2);
  drv.log.length = 0;
  core.replaceDevicePasid(d2, a, 2);
  assert.deepEqual(drv.log, [], "replacing with the same domain does nothing");
});

Deno.test("detaching a PASID with the wrong domain is EINVAL", () => {
  const { core, a } = setup();
  const d1 = core.domainAllocPaging(a);
  const d2 = core.domainAllocPaging(a);
  core.attachDevicePasid(d1, a, 4);
  assert.throws(() => core.detachDevicePasid(d2, a, 4), (e) => isIommuError(e, "EINVAL"));
  assert.equal(core.getDomainForDevPasid(a, 4), d1);
});

Deno.test("global PASID allocator hands out the lowest free id in [1, max_pasids-1]", () => {
  const { core, a, b, m } = setup();
  assert.equal(core.allocGlobalPasid(b), 1);
  assert.equal(core.allocGlobalPasid(b), 2);
  assert.equal(core.allocGlobalPasid(a), 3);
  core.freeGlobalPasid(2);
  assert.equal(core.allocGlobalPasid(a), 2, "the lowest freed id is reused");
  // b has max_pasids 8: ids 1..7; 1,2,3 taken
  assert.deepEqual([4, 5, 6, 7].map(() => core.allocGlobalPasid(b)), [4, 5, 6, 7]);
  assert.equal(core.allocGlobalPasid(b), IOMMU_PASID_INVALID, "exhausted for b");
  assert.equal(core.allocGlobalPasid(a), 8, "a (16 PASIDs) still has ids");
  const nop = m.pci.add(dev("n", 7));
  core.probeDevice(nop);
  assert.equal(core.allocGlobalPasid(nop), IOMMU_PASID_INVALID, "max_pasids 0");
  assert.throws(() => core.freeGlobalPasid(12), (e) => isIommuError(e, "EINVAL"));
  assert.throws(() => core.freeGlobalPasid(IOMMU_PASID_INVALID), (e) => isIommuError(e, "EINVAL"));
  assert.equal(core.isGlobalPasidAllocated(8), true);
});

Deno.test("releasing a device whose group has PASIDs attached is EBUSY", () => {
  const { core, a, drv } = setup();
  const d = core.domainAllocPaging(a);
  core.attachDevicePasid(d, a, 1);
  assert.throws(() => core.releaseDevice(a), (e) => isIommuError(e, "EBUSY"));
  assert.equal(logOf(drv, "release").length, 0);
});
