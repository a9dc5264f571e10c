import assert from "node:assert/strict";
import { IommuCore, isIommuError } from "../../../core/mod.ts";
import { dev, FakeDriver, machineWith } from "./fake-driver.ts";

function setup(groupAll = false, opts = {}) {
  const m = machineWith([dev("a", 1, { pasidBits: 4 }), dev("b", 2, { pasidBits: 4 })]);
  const drv = new FakeDriver({ deviceGroup: groupAll ? () => "g" : undefined, ...opts });
  const core = new IommuCore(m);
  core.registerDriver(drv);
  const [a, b] = [m.pci.byName("a")!, m.pci.byName("b")!];
  return { m, drv, core, a, b, g: core.groupOf(a) };
}

Deno.test("a kernel driver binding counts up with no owner; unbinding counts down", () => {
  const { core, a, b, g } = setup(true);
  core.deviceUseDefaultDomain(a);
  core.deviceUseDefaultDomain(b);
  assert.equal(g.ownerCount, 2);
  assert.equal(g.owner, null);
  core.deviceUnuseDefaultDomain(b);
  core.deviceUnuseDefaultDomain(a);
  assert.equal(g.ownerCount, 0);
  assert.throws(() => core.deviceUnuseDefaultDomain(a), (e) => isIommuError(e, "EINVAL"));
});

Deno.test("claiming attaches the driver's blocked domain; releasing restores the default", () => {
  const { drv, core, a, b, g } = setup(true);
  const owner = {};
  const def = g.defaultDomain;
  core.deviceClaimDmaOwner(a, owner);
  assert.equal(g.owner, owner);
  assert.equal(g.ownerCount, 1);
  assert.equal(g.domain, drv.blockedDomain);
  assert.equal(core.deviceDomainOf(b), drv.blockedDomain);
  assert.equal(core.groupDmaOwnerClaimed(g), true);
  core.deviceClaimDmaOwner(b, owner); // same owner counts up
  assert.equal(g.ownerCount, 2);
  core.deviceReleaseDmaOwner(b);
  assert.equal(g.ownerCount, 1);
  assert.equal(g.domain, drv.blockedDomain);
  core.deviceReleaseDmaOwner(a);
  assert.equal(g.ownerCount, 0);
  assert.equal(g.owner, null);
  assert.equal(g.domain, def);
  assert.throws(() => core.deviceReleaseDmaOwner(a), (e) => isIommuError(e, "EINVAL"));
});

Deno.test("claim errnos follow the kernel: EINVAL null owner, EPERM kernel user or other owner", () => {
  const { core, a, b, g } = setup(true);
  assert.throws(
    () => core.deviceClaimDmaOwner(a, null as unknown as object),
    (e) => isIommuError(e, "EINVAL"),
  );
  core.deviceUseDefaultDomain(b);
  assert.throws(() => core.deviceClaimDmaOwner(a, {}), (e) => isIommuError(e, "EPERM"));
  assert.throws(() => core.groupClaimDmaOwner(g, {}), (e) => isIommuError(e, "EPERM"));
  core.deviceUnuseDefaultDomain(b);
  const o1 = {};
  core.groupClaimDmaOwner(g, o1);
  assert.throws(() => core.deviceClaimDmaOwner(a, {}), (e) => isIommuError(e, "EPERM"));
  assert.throws(() => core.groupClaimDmaOwner(g, o1), (e) => isIommuError(e, "EPERM"));
  assert.equal(g.ownerCount, 1);
  core.groupReleaseDmaOwner(g);
  assert.equal(g.domain, g.defaultDomain);
});

Deno.test("binding a kernel driver while a user owns the group is EBUSY", () => {
  const { core, a, g } = setup();
  core.deviceClaimDmaOwner(a, {});
  assert.throws(() => core.deviceUseDefaultDomain(a), (e) => isIommuError(e, "EBUSY"));
  assert.equal(g.ownerCount, 1);
});

Deno.test("claiming needs the default domain attached and no PASID (EBUSY)", () => {
  const { core, a, g } = setup();
  const d = core.domainAllocPaging(a);
  core.attachDevice(d, a);
  assert.throws(() => core.deviceClaimDmaOwner(a, {}), (e) => isIommuError(e, "EBUSY"));
  core.detachDevice(d, a);
  core.attachDevicePasid(d, a, 3);
  assert.throws(() => core.groupClaimDmaOwner(g, {}), (e) => isIommuError(e, "EBUSY"));
  assert.equal(g.ownerCount, 0);
  assert.equal(g.owner, null);
  assert.equal(g.domain, g.defaultDomain);
});

Deno.test("an owned group attaches a user domain and detach returns to the blocking domain", () => {
  const { drv, core, a, g } = setup();
  core.deviceClaimDmaOwner(a, {});
  const d = core.domainAllocPaging(a);
  core.attachDevice(d, a);
  assert.equal(g.domain, d);
  core.detachDevice(d, a);
  assert.equal(g.domain, drv.blockedDomain);
});

Deno.test("without a driver blocked domain the core blocks with an empty paging domain", () => {
  const { drv, core, a, g } = setup(false, { blocked: false });
  core.deviceClaimDmaOwner(a, {});
  const blk = g.domain!;
  assert.notEqual(blk, g.defaultDomain);
  assert.equal(core.iovaToPhys(blk, 0x1000), 0);
  core.deviceReleaseDmaOwner(a);
  assert.equal(g.domain, g.defaultDomain);
  // the empty blocking domain lives with the group and is freed with it
  core.releaseDevice(a);
  assert.equal(drv.log.filter((l) => l.startsWith("free")).length, 2);
});

Deno.test("releasing a device of a user-owned group is EBUSY", () => {
  const { core, a } = setup();
  core.deviceClaimDmaOwner(a, {});
  assert.throws(() => core.releaseDevice(a), (e) => isIommuError(e, "EBUSY"));
});

Deno.test("releasing the last device of a group a kernel driver still uses is EBUSY", () => {
  const { core, a, drv } = setup();
  core.deviceUseDefaultDomain(a);
  assert.throws(() => core.releaseDevice(a), (e) => isIommuError(e, "EBUSY"));
  core.deviceUnuseDefaultDomain(a);
  core.releaseDevice(a);
  assert.deepEqual(drv.log.filter((l) => l.startsWith("release")), ["release a"]);
});
