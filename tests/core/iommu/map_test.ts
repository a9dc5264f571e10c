import assert from "node:assert/strict";
import {
  IOMMU_READ,
  IOMMU_WRITE,
  IommuCore,
  IotlbGather,
  isIommuError,
} from "../../../core/mod.ts";
import { dev, type FakeDomain, FakeDriver, logOf, machineWith } from "./fake-driver.ts";

const K4 = 0x1000;
const M2 = 0x200000;
const G1 = 0x40000000;
const RW = IOMMU_READ | IOMMU_WRITE;

function setup(opts = {}) {
  const m = machineWith([dev("a", 1)]);
  const drv = new FakeDriver(opts);
  const core = new IommuCore(m);
  core.registerDriver(drv);
  const a = m.pci.byName("a")!;
  const d = core.domainAllocPaging(a) as FakeDomain;
  drv.log.length = 0;
  return { m, drv, core, a, d };
}

Deno.test("map splits a range into the largest page sizes iova and paddr allow", () => {
  const { drv, core, d } = setup();
  // 4K up to the 2M boundary, then 2M blocks, then 4K tail
  core.map(d, M2 - 2 * K4, 0x4000_0000 + M2 - 2 * K4, 2 * K4 + 2 * M2 + K4, RW);
  assert.deepEqual(logOf(drv, "map"), [
    `map ${d.label} 0x1fe000 0x401fe000 0x1000x2`,
    `map ${d.label} 0x200000 0x40200000 0x200000x2`,
    `map ${d.label} 0x600000 0x40600000 0x1000x1`,
  ]);
  assert.deepEqual(logOf(drv, "syncmap"), [`syncmap ${d.label} 0x1fe000 0x403000`]);
  assert.equal(core.iovaToPhys(d, M2 + 0x1234), 0x4020_1234);
  assert.equal(core.counters.mapBytes, 0x403000);
});

Deno.test("map uses 4K pages when iova and paddr have different offsets in 2M", () => {
  const { drv, core, d } = setup();
  core.map(d, 0, K4, M2, RW);
  assert.deepEqual(logOf(drv, "map"), [`map ${d.label} 0x0 0x1000 0x1000x512`]);
});

Deno.test("map uses a 1G block when everything is 1G aligned", () => {
  const { drv, core, d } = setup();
  core.map(d, G1, 2 * G1, G1, RW);
  assert.deepEqual(logOf(drv, "map"), [`map ${d.label} 0x40000000 0x80000000 0x40000000x1`]);
});

Deno.test("map of an unaligned iova, paddr or size is EINVAL naming the minimum page size", () => {
  const { drv, core, d } = setup();
  for (const [iova, pa, size] of [[0x800, 0, K4], [0, 0x800, K4], [0, 0, 0x1800]]) {
    assert.throws(
      () => core.map(d, iova, pa, size, RW),
      (e) => isIommuError(e, "EINVAL") && /minimum page size 0x1000/.test(e.message),
    );
  }
  assert.deepEqual(logOf(drv, "map"), []);
});

Deno.test("map with unknown prot bits is EINVAL", () => {
  const { core, d } = setup();
  assert.throws(() => core.map(d, 0, 0, K4, 0x40), (e) => isIommuError(e, "EINVAL"));
  assert.throws(() => core.map(d, -K4, 0, K4, RW), (e) => isIommuError(e, "EINVAL"));
});

Deno.test("map on the identity domain is EINVAL (not a paging domain)", () => {
  const { drv, core } = setup();
  assert.throws(
    () => core.map(drv.identityDomain!, 0, 0, K4, RW),
    (e) => isIommuError(e, "EINVAL"),
  );
});

Deno.test("a failing map unmaps what this call mapped and rethrows", () => {
  const { drv, core, d } = setup();
  core.map(d, 0x10_0000_0000, 0x1000_0000, K4, RW); // an unrelated mapping survives
  drv.failMapAtLeaf = drv.mapCalls + 4; // 2 x 4K ok, first 2M ok, second 2M fails
  drv.log.length = 0;
  assert.throws(
    () => core.map(d, M2 - 2 * K4, 0x4000_0000 + M2 - 2 * K4, 2 * K4 + 2 * M2, RW),
    (e) => isIommuError(e, "ENOMEM"),
  );
  assert.deepEqual(logOf(drv, "unmap"), [
    `unmap ${d.label} 0x1fe000 0x1000x2`,
    `unmap ${d.label} 0x200000 0x200000x1`,
  ]);
  assert.equal(d.leaves.size, 1);
  assert.equal(core.iovaToPhys(d, 0x10_0000_0000), 0x1000_0000);
  assert.equal(core.counters.mapFailures, 1);
  assert.equal(logOf(drv, "syncmap").length, 0, "no sync_map after a failed map");
});

Deno.test("map over a live mapping fails with the driver's EEXIST and leaves the old mapping", () => {
  const { core, d } = setup();
  core.map(d, 2 * K4, 0x9000, K4, RW);
  assert.throws(() => core.map(d, 0, 0x5000, 4 * K4, RW), (e) => isIommuError(e, "EEXIST"));
  assert.equal(d.leaves.size, 1);
  assert.equal(core.iovaToPhys(d, 2 * K4), 0x9000);
});

Deno.test("unmap returns the bytes unmapped, syncs once, and stops at the first hole", () => {
  const { drv, core, d } = setup();
  core.map(d, 0, 0, 2 * K4, RW);
  core.map(d, 3 * K4, 3 * K4, K4, RW);
  drv.log.length = 0;
  assert.equal(core.unmap(d, 0, 4 * K4), 2 * K4);
  assert.deepEqual(logOf(drv, "sync"), [`sync ${d.label} 0x0-0x1fff`]);
  assert.equal(core.iovaToPhys(d, 3 * K4), 3 * K4, "past the hole stays mapped");
});

Deno.test("unmap of part of a block returns 0", () => {
  const { core, d } = setup();
  core.map(d, M2, M2, M2, RW);
  assert.equal(core.unmap(d, M2, K4), 0);
  assert.equal(core.iovaToPhys(d, M2 + K4), M2 + K4);
  assert.equal(core.unmap(d, M2, M2), M2);
});

Deno.test("unaligned unmap returns 0 as the kernel does", () => {
  const { core, d } = setup();
  core.map(d, 0, 0x7000, K4, RW);
  assert.equal(core.unmap(d, 0x800, K4), 0);
  assert.equal(core.unmap(d, 0, 0x800), 0);
  assert.equal(core.iovaToPhys(d, 0), 0x7000);
});

Deno.test("unmapFast gathers without syncing; iotlbSync syncs and re-inits the gather", () => {
  const { drv, core, d } = setup();
  core.map(d, 0, 0, 2 * K4, RW);
  drv.log.length = 0;
  const g = new IotlbGather();
  assert.equal(core.unmapFast(d, 0, 2 * K4, g), 2 * K4);
  assert.deepEqual(logOf(drv, "sync"), []);
  assert.deepEqual([g.start, g.end, g.pgsize], [0, 2 * K4 - 1, K4]);
  core.iotlbSync(d, g);
  assert.deepEqual(logOf(drv, "sync"), [`sync ${d.label} 0x0-0x1fff`]);
  assert.equal(g.empty, true);
});

Deno.test("mapSg merges physically contiguous segments and returns the bytes mapped", () => {
  const { drv, core, d } = setup();
  const n = core.mapSg!(d, 0x10_0000, [
    { paddr: 0x5000, length: K4 },
    { paddr: 0x6000, length: K4 },
    { paddr: 0x9000, length: 2 * K4 },
  ], RW);
  assert.equal(n, 4 * K4);
  assert.deepEqual(logOf(drv, "map "), [
    `map ${d.label} 0x100000 0x5000 0x1000x2`,
    `map ${d.label} 0x102000 0x9000 0x1000x2`,
  ]);
  assert.deepEqual(logOf(drv, "syncmap"), [`syncmap ${d.label} 0x100000 0x4000`]);
  assert.equal(core.iovaToPhys(d, 0x103000), 0xa000);
});

Deno.test("mapSg unmaps everything on a failure", () => {
  const { drv, core, d } = setup();
  drv.failMapAtLeaf = drv.mapCalls + 3;
  assert.throws(
    () =>
      core.mapSg!(d, 0, [{ paddr: 0x5000, length: 2 * K4 }, { paddr: 0x9000, length: 2 * K4 }], RW),
    (e) => isIommuError(e, "ENOMEM"),
  );
  assert.equal(d.leaves.size, 0);
});

Deno.test("iovaToPhys: identity returns the iova, blocked returns 0", () => {
  const { drv, core } = setup();
  assert.equal(core.iovaToPhys(drv.identityDomain!, 0x1234_5000), 0x1234_5000);
  assert.equal(core.iovaToPhys(drv.blockedDomain!, 0x1234_5000), 0);
});

Deno.test("map and unmap emit iommu:map and iommu:unmap", () => {
  const { m, core, d } = setup();
  m.trace.enabled = true;
  core.map(d, 0, 0x8000, K4, RW);
  core.unmap(d, 0, 2 * K4);
  assert.deepEqual(m.trace.events.map((e) => [e.name, e.fields]), [
    ["iommu:map", { iova: 0, paddr: 0x8000, size: K4 }],
    ["iommu:unmap", { iova: 0, size: 2 * K4, unmapped_size: K4 }],
  ]);
});

Deno.test("RESV_DIRECT regions are mapped 1:1 into a DMA default domain and block the blocking domain", () => {
  const m = machineWith([dev("a", 1)]);
  const drv = new FakeDriver({
    resv: () => [{ start: 0xe000_0800, length: 0x2000, prot: RW, type: "DIRECT" }],
  });
  const core = new IommuCore(m);
  core.registerDriver(drv);
  const a = m.pci.byName("a")!;
  const def = core.defaultDomainOf(a)!;
  // start rounded up to the page, end rounded up: [0xe0001000, 0xe0003000)
  assert.equal(core.iovaToPhys(def, 0xe000_1000), 0xe000_1000);
  assert.equal(core.iovaToPhys(def, 0xe000_2000), 0xe000_2000);
  assert.equal(core.iovaToPhys(def, 0xe000_0000), 0);
  assert.ok(logOf(drv, "flushall").length >= 1);
  assert.throws(() => core.deviceClaimDmaOwner(a, {}), (e) => isIommuError(e, "EINVAL"));
  assert.equal(core.domainOf(a), def);
});

Deno.test("mapSg with a misaligned segment is EINVAL and leaves nothing mapped", () => {
  const { core, d } = setup();
  assert.throws(
    () => core.mapSg!(d, 0, [{ paddr: 0x5000, length: K4 }, { paddr: 0x9800, length: K4 }], RW),
    (e) => isIommuError(e, "EINVAL"),
  );
  assert.equal(d.leaves.size, 0);
});
