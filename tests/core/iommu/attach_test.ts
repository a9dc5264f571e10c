import assert from "node:assert/strict";
import { DomainType, IommuCore, isIommuError } from "../../../core/mod.ts";
import { dev, type FakeDomain, FakeDriver, logOf, machineWith } from "./fake-driver.ts";

function setup(groupAll = false, opts = {}) {
  const m = machineWith([dev("a", 1), dev("b", 2), dev("c", 3)]);
  const drv = new FakeDriver({ deviceGroup: groupAll ? () => "g" : undefined, ...opts });
  const core = new IommuCore(m);
  core.registerDriver(drv);
  const [a, b, c] = ["a", "b", "c"].map((n) => m.pci.byName(n)!);
  return { m, drv, core, a, b, c };
}

Deno.test("attachDevice attaches a single-device group and detach returns to the default domain", () => {
  const { drv, core, a } = setup();
  const def = core.defaultDomainOf(a)!;
  const d = core.domainAllocPaging(a);
  assert.equal(d.type, DomainType.UNMANAGED);
  core.attachDevice(d, a);
  assert.equal(core.domainOf(a), d);
  assert.equal(
    drv.log.at(-1),
    `attach ${(d as { label: string }).label} a old=${(def as { label: string }).label}`,
  );
  core.detachDevice(d, a);
  assert.equal(core.domainOf(a), def);
  assert.equal(core.deviceDomainOf(a), def);
});

Deno.test("attachDevice refuses a multi-device group with EINVAL and changes nothing", () => {
  const { drv, core, a } = setup(true);
  const d = core.domainAllocPaging(a);
  const before = drv.log.length;
  assert.throws(() => core.attachDevice(d, a), (e) => isIommuError(e, "EINVAL"));
  assert.equal(drv.log.length, before);
  assert.equal(core.domainOf(a), core.defaultDomainOf(a));
});

Deno.test("attaching a second non-default domain is EBUSY", () => {
  const { core, a } = setup();
  const d1 = core.domainAllocPaging(a);
  const d2 = core.domainAllocPaging(a);
  core.attachDevice(d1, a);
  assert.throws(() => core.attachDevice(d2, a), (e) => isIommuError(e, "EBUSY"));
  assert.equal(core.domainOf(a), d1);
});

Deno.test("a domain of another driver is EINVAL", () => {
  const m = machineWith([dev("a", 1), dev("b", 2)]);
  const d1 = new FakeDriver({ name: "one", accept: (d) => d.name === "a" });
  const d2 = new FakeDriver({ name: "two", accept: (d) => d.name === "b" });
  const core = new IommuCore(m);
  core.registerDriver(d1);
  core.registerDriver(d2);
  const [a, b] = [m.pci.byName("a")!, m.pci.byName("b")!];
  assert.equal(core.opsOf(b), d2);
  const foreign = core.domainAllocPaging(b);
  assert.throws(() => core.attachDevice(foreign, a), (e) => isIommuError(e, "EINVAL"));
  assert.throws(
    () => core.replaceGroupDomain(core.groupOf(a), foreign),
    (e) => isIommuError(e, "EINVAL"),
  );
});

Deno.test("group attach rolls the already attached devices back when a later device fails", () => {
  const { drv, core, a, b, c } = setup(true);
  const g = core.groupOf(a);
  const def = g.defaultDomain!;
  const d = core.domainAllocPaging(a);
  drv.failAttachAt = drv.attachCalls + 3; // a ok, b ok, c fails
  drv.failAttachErrno = "ENOSPC";
  drv.log.length = 0;
  assert.throws(() => core.attachGroup(d, g), (e) => isIommuError(e, "ENOSPC"));
  assert.equal(g.domain, def);
  for (const x of [a, b, c]) assert.equal(core.deviceDomainOf(x), def);
  const dl = (d as { label: string }).label;
  const defl = (def as { label: string }).label;
  assert.deepEqual(drv.log, [
    `attach ${dl} a old=${defl}`,
    `attach ${dl} b old=${defl}`,
    `attach-fail ${dl} c`,
    `attach ${defl} a old=${dl}`,
    `attach ${defl} b old=${dl}`,
  ]);
});

Deno.test("the driver's EINVAL (incompatible) surfaces from attach and leaves the old domain", () => {
  const { drv, core, a } = setup();
  const d = core.domainAllocPaging(a);
  drv.failAttachAt = drv.attachCalls + 1;
  assert.throws(() => core.attachDevice(d, a), (e) => isIommuError(e, "EINVAL"));
  assert.equal(core.domainOf(a), core.defaultDomainOf(a));
  assert.equal(core.counters.attachFailures, 1);
});

Deno.test("group attach then detach goes back to the default domain for every device", () => {
  const { core, a, b, c } = setup(true);
  const g = core.groupOf(a);
  const d = core.domainAllocPaging(a);
  core.attachGroup(d, g);
  for (const x of [a, b, c]) assert.equal(core.deviceDomainOf(x), d);
  assert.throws(
    () => core.detachGroup(core.domainAllocPaging(a), g),
    (e) => isIommuError(e, "EINVAL"),
  );
  core.detachGroup(d, g);
  for (const x of [a, b, c]) assert.equal(core.deviceDomainOf(x), g.defaultDomain);
});

Deno.test("replaceGroupDomain switches between two user domains without EBUSY", () => {
  const { core, a } = setup();
  const g = core.groupOf(a);
  const d1 = core.domainAllocPaging(a);
  const d2 = core.domainAllocPaging(a);
  core.attachGroup(d1, g);
  core.replaceGroupDomain(g, d2);
  assert.equal(g.domain, d2);
  assert.equal(core.deviceDomainOf(a), d2);
});

Deno.test("domainFree refuses a domain still attached (EBUSY) and frees it after detach", () => {
  const { drv, core, a } = setup();
  const d = core.domainAllocPaging(a);
  core.attachDevice(d, a);
  assert.throws(() => core.domainFree(d), (e) => isIommuError(e, "EBUSY"));
  core.detachDevice(d, a);
  core.domainFree(d);
  assert.equal(logOf(drv, "free").length, 1);
  core.domainFree(drv.identityDomain!); // static: never freed
  assert.equal(drv.identityDomain!.freed, false);
});

Deno.test("sysfs type: DMA -> DMA-FQ is allowed live with DEFERRED_FLUSH", () => {
  const { core, a } = setup(false, { caps: ["DEFERRED_FLUSH"] });
  const g = core.groupOf(a);
  const def = g.defaultDomain!;
  core.deviceUseDefaultDomain(a); // a driver is bound
  core.setGroupDefaultDomainType(g, "DMA-FQ");
  assert.equal(g.defaultDomain, def);
  assert.equal(def.type, DomainType.DMA_FQ);
});

Deno.test("sysfs type: DMA -> DMA-FQ without DEFERRED_FLUSH is EINVAL", () => {
  const { core, a } = setup();
  const g = core.groupOf(a);
  assert.throws(
    () => core.setGroupDefaultDomainType(g, "DMA-FQ"),
    (e) => isIommuError(e, "EINVAL"),
  );
  assert.equal(g.defaultDomain!.type, DomainType.DMA);
});

Deno.test("sysfs type: other changes need no driver bound (EPERM) and replace the default domain", () => {
  const { drv, core, a } = setup();
  const g = core.groupOf(a);
  const old = g.defaultDomain!;
  core.deviceUseDefaultDomain(a);
  assert.throws(
    () => core.setGroupDefaultDomainType(g, "identity"),
    (e) => isIommuError(e, "EPERM"),
  );
  assert.equal(g.defaultDomain, old);
  core.deviceUnuseDefaultDomain(a);
  core.setGroupDefaultDomainType(g, "identity");
  assert.equal(g.defaultDomain, drv.identityDomain);
  assert.equal(g.domain, drv.identityDomain);
  assert.equal((old as FakeDomain).freed, true);
  core.setGroupDefaultDomainType(g, "auto");
  assert.equal(g.defaultDomain!.type, DomainType.DMA);
  assert.throws(
    () => core.setGroupDefaultDomainType(g, "bogus" as "auto"),
    (e) => isIommuError(e, "EINVAL"),
  );
});

Deno.test("sysfs type: identity for an untrusted device is EINVAL and keeps the old domain", () => {
  const m = machineWith([dev("t", 1, { untrusted: true })]);
  const core = new IommuCore(m);
  core.registerDriver(new FakeDriver());
  const g = core.groupOf(m.pci.byName("t")!);
  const old = g.defaultDomain;
  assert.throws(
    () => core.setGroupDefaultDomainType(g, "identity"),
    (e) => isIommuError(e, "EINVAL"),
  );
  assert.equal(g.defaultDomain, old);
  assert.equal(g.domain, old);
});

Deno.test("sysfs type: a failing attach of the new default domain restores the old one", () => {
  const { drv, core, a } = setup();
  const g = core.groupOf(a);
  const old = g.defaultDomain!;
  drv.failAttachAt = drv.attachCalls + 1;
  assert.throws(() => core.setGroupDefaultDomainType(g, "DMA"), (e) => isIommuError(e, "EINVAL"));
  assert.equal(g.defaultDomain, old);
  assert.equal(g.domain, old);
  assert.equal((old as FakeDomain).freed, false);
  assert.equal(logOf(drv, "free").length, 1, "the new domain was freed");
});

Deno.test("sysfs type reads back as iommu_group_show_type prints it", () => {
  const { core, a } = setup(false, { caps: ["DEFERRED_FLUSH"] });
  const g = core.groupOf(a);
  assert.equal(core.groupDefaultDomainTypeName(g), "DMA");
  core.setGroupDefaultDomainType(g, "DMA-FQ");
  assert.equal(core.groupDefaultDomainTypeName(g), "DMA-FQ");
  core.setGroupDefaultDomainType(g, DomainType.IDENTITY);
  assert.equal(core.groupDefaultDomainTypeName(g), "identity");
});
