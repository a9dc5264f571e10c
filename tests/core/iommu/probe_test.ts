import assert from "node:assert/strict";
import { DomainType, IommuCore, IommuError, isIommuError } from "../../../core/mod.ts";
import { dev, FakeDriver, logOf, machineWith } from "./fake-driver.ts";

Deno.test("registerDriver probes the devices it accepts and skips the ENODEV ones", () => {
  const m = machineWith([dev("a", 1), dev("b", 2), dev("c", 3)]);
  const drv = new FakeDriver({ accept: (d) => d.name !== "b" });
  const core = new IommuCore(m);
  core.registerDriver(drv);
  const [a, b, c] = ["a", "b", "c"].map((n) => m.pci.byName(n)!);
  assert.equal(drv.hooks, core, "setKernelHooks receives the core");
  assert.deepEqual(logOf(drv, "probe"), ["probe a", "probe c"]);
  assert.equal(b.iommu, null);
  assert.ok(a.iommu && c.iommu);
  assert.deepEqual(a.iommu.priv, { fake: true });
  assert.throws(() => core.groupOf(b), (e) => isIommuError(e, "ENODEV"));
  assert.equal(core.opsOf(a), drv);
  assert.equal(core.domainOf(b), null);
  assert.equal(core.counters.probes, 2);
});

Deno.test("without a driver group key every requester ID is its own group", () => {
  const m = machineWith([dev("a", 1), dev("b", 2)]);
  const core = new IommuCore(m);
  core.registerDriver(new FakeDriver());
  const ga = core.groupOf(m.pci.byName("a")!);
  const gb = core.groupOf(m.pci.byName("b")!);
  assert.notEqual(ga, gb);
  assert.deepEqual([ga.id, gb.id], [0, 1]);
  assert.equal(m.pci.byName("a")!.iommu!.groupId, 0);
  assert.equal(core.groups().length, 2);
});

Deno.test("devices with the same driver group key share one group and one default domain", () => {
  const m = machineWith([dev("a", 1), dev("b", 2), dev("c", 3)]);
  const drv = new FakeDriver({ deviceGroup: (d) => (d.name === "c" ? undefined : "ab") });
  const core = new IommuCore(m);
  core.registerDriver(drv);
  const [a, b, c] = ["a", "b", "c"].map((n) => m.pci.byName(n)!);
  const g = core.groupOf(a);
  assert.equal(core.groupOf(b), g);
  assert.notEqual(core.groupOf(c), g);
  assert.deepEqual(g.devices, [a, b]);
  assert.equal(core.domainOf(a), core.domainOf(b));
  // one paging domain for the group of two, one for c
  assert.deepEqual(logOf(drv, "alloc"), ["alloc d1", "alloc d2"]);
  assert.deepEqual(logOf(drv, "attach d1"), ["attach d1 a old=none", "attach d1 b old=none"]);
});

Deno.test("default domain is DMA under the strict policy", () => {
  const m = machineWith([dev("a", 1)]);
  const core = new IommuCore(m);
  core.registerDriver(new FakeDriver());
  const d = core.defaultDomainOf(m.pci.byName("a")!)!;
  assert.equal(d.type, DomainType.DMA);
  assert.equal(core.domainOf(m.pci.byName("a")!), d);
  assert.deepEqual(core.policy, { passthrough: false, strict: true });
});

Deno.test("lazy policy gives DMA_FQ only with DEFERRED_FLUSH, else DMA", () => {
  const m1 = machineWith([dev("a", 1)]);
  const c1 = new IommuCore(m1, { strict: false });
  c1.registerDriver(new FakeDriver({ caps: ["DEFERRED_FLUSH"] }));
  assert.equal(c1.defaultDomainOf(m1.pci.byName("a")!)!.type, DomainType.DMA_FQ);

  const m2 = machineWith([dev("a", 1)]);
  const c2 = new IommuCore(m2, { strict: false });
  c2.registerDriver(new FakeDriver());
  assert.equal(c2.defaultDomainOf(m2.pci.byName("a")!)!.type, DomainType.DMA);
});

Deno.test("passthrough policy uses the driver's static identity domain", () => {
  const m = machineWith([dev("a", 1)]);
  const drv = new FakeDriver();
  const core = new IommuCore(m, { passthrough: true });
  core.registerDriver(drv);
  assert.equal(core.defaultDomainOf(m.pci.byName("a")!), drv.identityDomain);
  assert.deepEqual(logOf(drv, "alloc"), []);
});

Deno.test("passthrough without an identity domain falls back to DMA", () => {
  const m = machineWith([dev("a", 1)]);
  const core = new IommuCore(m, { passthrough: true });
  core.registerDriver(new FakeDriver({ identity: false }));
  assert.equal(core.defaultDomainOf(m.pci.byName("a")!)!.type, DomainType.DMA);
});

Deno.test("the driver's def_domain_type wins over the policy", () => {
  const m = machineWith([dev("a", 1), dev("b", 2)]);
  const drv = new FakeDriver({ defDomainType: (d) => (d.name === "a" ? DomainType.IDENTITY : 0) });
  const core = new IommuCore(m);
  core.registerDriver(drv);
  assert.equal(core.defaultDomainOf(m.pci.byName("a")!), drv.identityDomain);
  assert.equal(core.defaultDomainOf(m.pci.byName("b")!)!.type, DomainType.DMA);

  const m2 = machineWith([dev("a", 1)]);
  const c2 = new IommuCore(m2, { passthrough: true });
  c2.registerDriver(new FakeDriver({ defDomainType: () => DomainType.DMA }));
  assert.equal(c2.defaultDomainOf(m2.pci.byName("a")!)!.type, DomainType.DMA);
});

Deno.test("untrusted devices never get IDENTITY and are forced strict", () => {
  const m = machineWith([dev("t", 1, { untrusted: true })]);
  const core = new IommuCore(m, { passthrough: true });
  core.registerDriver(new FakeDriver({ caps: ["DEFERRED_FLUSH"] }));
  assert.equal(core.defaultDomainOf(m.pci.byName("t")!)!.type, DomainType.DMA);

  const m2 = machineWith([dev("t", 1, { untrusted: true })]);
  const c2 = new IommuCore(m2, { strict: false });
  c2.registerDriver(new FakeDriver({ caps: ["DEFERRED_FLUSH"] }));
  assert.equal(c2.defaultDomainOf(m2.pci.byName("t")!)!.type, DomainType.DMA);
});

Deno.test("an untrusted device whose driver demands IDENTITY fails registration with EINVAL and leaves nothing probed", () => {
  const m = machineWith([dev("a", 1), dev("t", 2, { untrusted: true })]);
  const drv = new FakeDriver({ defDomainType: () => DomainType.IDENTITY });
  const core = new IommuCore(m);
  assert.throws(() => core.registerDriver(drv), (e) => isIommuError(e, "EINVAL"));
  assert.equal(core.groups().length, 0);
  assert.equal(m.pci.byName("a")!.iommu, null);
  assert.equal(m.pci.byName("t")!.iommu, null);
  assert.deepEqual(logOf(drv, "release"), ["release t", "release a"]);
  assert.equal(core.drivers().length, 0);
});

Deno.test("registering the same driver twice is EEXIST", () => {
  const m = machineWith([dev("a", 1)]);
  const drv = new FakeDriver();
  const core = new IommuCore(m);
  core.registerDriver(drv);
  assert.throws(() => core.registerDriver(drv), (e) => isIommuError(e, "EEXIST"));
});

Deno.test("max_pasids comes from the driver at probe", () => {
  const m = machineWith([dev("p", 1, { pasidBits: 5 }), dev("n", 2)]);
  const core = new IommuCore(m);
  core.registerDriver(new FakeDriver());
  assert.equal(m.pci.byName("p")!.iommu!.maxPasids, 32);
  assert.equal(m.pci.byName("n")!.iommu!.maxPasids, 0);
});

Deno.test("a hot-plugged device joins its existing group on the group's current domain", () => {
  const m = machineWith([dev("a", 1)]);
  const drv = new FakeDriver({ deviceGroup: () => "all" });
  const core = new IommuCore(m);
  core.registerDriver(drv);
  const a = m.pci.byName("a")!;
  const user = core.domainAllocPaging(a);
  core.attachDevice(user, a);
  const b = m.pci.add(dev("b", 2));
  core.probeDevice(b);
  assert.equal(core.groupOf(b), core.groupOf(a));
  assert.equal(core.deviceDomainOf(b), user);
  assert.throws(() => core.probeDevice(b), (e) => isIommuError(e, "EEXIST"));
});

Deno.test("probeDevice with no willing driver is ENODEV and leaves dev.iommu null", () => {
  const m = machineWith([]);
  const core = new IommuCore(m);
  core.registerDriver(new FakeDriver({ accept: () => false }));
  const x = m.pci.add(dev("x", 4));
  assert.throws(() => core.probeDevice(x), (e) => isIommuError(e, "ENODEV"));
  assert.equal(x.iommu, null);
});

Deno.test("releasing the last device of a group frees the group and its default domain", () => {
  const m = machineWith([dev("a", 1), dev("b", 2)]);
  const drv = new FakeDriver({ deviceGroup: () => "g" });
  const core = new IommuCore(m);
  core.registerDriver(drv);
  const [a, b] = [m.pci.byName("a")!, m.pci.byName("b")!];
  const g = core.groupOf(a);
  const def = g.defaultDomain!;
  core.releaseDevice(a);
  assert.deepEqual(g.devices, [b]);
  assert.equal(a.iommu, null);
  assert.equal(logOf(drv, "free").length, 0);
  core.releaseDevice(b);
  assert.deepEqual(logOf(drv, "free"), [`free ${(def as { label: string }).label}`]);
  assert.equal(core.groups().length, 0);
  assert.throws(() => core.releaseDevice(b), (e) => isIommuError(e, "ENODEV"));
  // the group id is reused
  core.probeDevice(a);
  assert.equal(core.groupOf(a).id, 0);
});

Deno.test("probe and attach are traced with the kernel's tracepoint names", () => {
  const m = machineWith([dev("a", 1)]);
  m.trace.enabled = true;
  const core = new IommuCore(m);
  core.registerDriver(new FakeDriver());
  const names = m.trace.events.map((e) => e.name);
  assert.deepEqual(names, ["iommu:add_device_to_group", "iommu:attach_device_to_domain"]);
  assert.deepEqual(m.trace.events[0].fields, { groupID: 0, device: "a" });
  assert.equal(m.trace.snapshot()["iommu"].attaches, 1);
});

Deno.test("a probe error other than ENODEV aborts registration and releases what was probed", () => {
  const m = machineWith([dev("a", 1), dev("b", 2)]);
  const drv = new FakeDriver();
  drv.probeDevice = (d) => {
    if (d.name === "b") throw new IommuError("ENOMEM", "fake_probe", "out of memory");
    drv.log.push(`probe ${d.name}`);
  };
  const core = new IommuCore(m);
  assert.throws(() => core.registerDriver(drv), (e) => isIommuError(e, "ENOMEM"));
  assert.deepEqual(logOf(drv, "release"), ["release a"]);
  assert.equal(m.pci.byName("a")!.iommu, null);
  assert.equal(m.pci.byName("b")!.iommu, null);
  assert.equal(core.groups().length, 0);
});

Deno.test("a hot-plugged device whose attach fails is released again and the error surfaces", () => {
  const m = machineWith([dev("a", 1)]);
  const drv = new FakeDriver({ deviceGroup: () => "g" });
  const core = new IommuCore(m);
  core.registerDriver(drv);
  const b = m.pci.add(dev("b", 2));
  drv.failAttachDev = b;
  drv.failAttachErrno = "ENOSPC";
  assert.throws(() => core.probeDevice(b), (e) => isIommuError(e, "ENOSPC"));
  assert.equal(b.iommu, null);
  assert.deepEqual(core.groupOf(m.pci.byName("a")!).devices.map((d) => d.name), ["a"]);
  assert.deepEqual(logOf(drv, "release"), ["release b"]);
});

Deno.test("defaultDomainOf follows device release and a default-domain change of the last device asked", () => {
  const m = machineWith([dev("a", 1), dev("b", 2)]);
  const core = new IommuCore(m, { strict: false });
  core.registerDriver(new FakeDriver({ caps: ["DEFERRED_FLUSH"] }));
  const [a, b] = ["a", "b"].map((n) => m.pci.byName(n)!);
  const da = core.defaultDomainOf(a)!;
  const db = core.defaultDomainOf(b)!;
  assert.notEqual(da, db);
  assert.equal(core.defaultDomainOf(a), da);
  assert.equal(core.defaultDomainOf(a), da, "asked twice in a row: same answer");
  core.setGroupDefaultDomainType(core.groupOf(a), "DMA");
  const da2 = core.defaultDomainOf(a)!;
  assert.notEqual(da2, da);
  assert.equal(da2.type, DomainType.DMA);
  core.releaseDevice(a);
  assert.equal(core.defaultDomainOf(a), null, "a released device has no default domain");
  assert.equal(core.defaultDomainOf(b), db);
});
