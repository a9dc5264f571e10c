import assert from "node:assert/strict";
import {
  DomainType,
  IOMMU_CACHE,
  IOMMU_MMIO,
  IOMMU_READ,
  IOMMU_WRITE,
  IommuError,
} from "@iommu-lab/core";
import { dmaDevice } from "../../dma-api/dma.ts";
import { DmaDirection } from "../../dma-api/prot.ts";
import { FakeCore } from "./fake_core.ts";

const BIDIR = DmaDirection.BIDIRECTIONAL;

function setup(type: number = DomainType.DMA, devCfg = {}) {
  const core = new FakeCore(type);
  const dev = core.machine.pci.add({ name: "nic0", bus: 1, device: 0, fn: 0, ...devCfg });
  return { core, dev, dma: dmaDevice(core, dev) };
}

Deno.test("map_single returns the top 32-bit IOVA with the buffer's offset, mapped R/W+CACHE", () => {
  const { core, dma } = setup();
  const dma1 = dma.dmaMapSingle(0x12345678, 0x100, BIDIR);
  assert.equal(dma1, 0xfffff000 + 0x678);
  assert.deepEqual(core.table.get(0xfffff000), {
    pa: 0x12345000,
    prot: IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE,
  });
  assert.equal(core.iovaToPhys(core.domain, dma1), 0x12345678);
});

Deno.test("a buffer crossing a page boundary maps two pages (size-aligned IOVA)", () => {
  const { core, dma } = setup();
  const a = dma.dmaMapSingle(0x10000ff0, 0x20, DmaDirection.TO_DEVICE);
  assert.equal(a, 0xffffeff0);
  assert.equal(core.table.size, 2);
  assert.equal(core.table.get(0xffffe000)!.prot, IOMMU_READ | IOMMU_CACHE);
});

Deno.test("strict unmap syncs once per call and the IOVA is reused at once (rcache LIFO)", () => {
  const { core, dma } = setup();
  const a = dma.dmaMapSingle(0x10000000, 4096, BIDIR);
  const b = dma.dmaMapSingle(0x10001000, 4096, BIDIR);
  dma.dmaUnmapSingle(a, 4096, BIDIR);
  dma.dmaUnmapSingle(b, 4096, BIDIR);
  assert.equal(core.syncs, 2);
  assert.equal(core.flushAlls, 0);
  assert.equal(core.table.size, 0);
  assert.equal(dma.dmaMapSingle(0x20000000, 4096, BIDIR), b, "last freed comes back first");
  assert.equal(dma.dmaMapSingle(0x20001000, 4096, BIDIR), a);
});

Deno.test("lazy unmap queues: no sync, one flush-all after 10 ms, IOVA reused only after it", () => {
  const { core, dma } = setup(DomainType.DMA_FQ);
  assert.equal(dma.mode, "iommu-lazy");
  const addrs: number[] = [];
  for (let i = 0; i < 10; i++) addrs.push(dma.dmaMapSingle(0x10000000 + i * 4096, 4096, BIDIR));
  for (const a of addrs) dma.dmaUnmapSingle(a, 4096, BIDIR);
  assert.equal(core.syncs, 0);
  assert.equal(core.flushAlls, 0);
  // not reusable yet: the next map gets a fresh IOVA below
  const fresh = dma.dmaMapSingle(0x30000000, 4096, BIDIR);
  assert.ok(!addrs.includes(fresh));
  core.machine.clock.advance(10_000_000);
  assert.equal(core.flushAlls, 1);
  assert.equal(dma.layer.counters.fqFlushes, 1);
  assert.equal(dma.dmaMapSingle(0x30001000, 4096, BIDIR), addrs[9]);
});

Deno.test("DMA_FQ without DEFERRED_FLUSH capability falls back to strict", () => {
  const core = new FakeCore(DomainType.DMA_FQ);
  core.deferredFlush = false;
  const dev = core.machine.pci.add({ name: "d", bus: 1, device: 0, fn: 0 });
  const dma = dmaDevice(core, dev);
  assert.equal(dma.mode, "iommu");
  const a = dma.dmaMapSingle(0x10000000, 4096, BIDIR);
  dma.dmaUnmapSingle(a, 4096, BIDIR);
  assert.equal(core.syncs, 1);
});

Deno.test("32-bit first: IOVAs stay below 4 GiB until that space is full, then DAC", () => {
  const { core, dma } = setup();
  core.resv = [{ start: 0x1000, length: 0xffffe000 - 0x1000, prot: 0, type: "RESERVED" }];
  // two pages left below 4 GiB: 0xffffe000 and 0xfffff000
  const a = dma.dmaMapSingle(0x10000000, 4096, BIDIR);
  const b = dma.dmaMapSingle(0x10001000, 4096, BIDIR);
  assert.ok(a < 2 ** 32 && b < 2 ** 32);
  const c = dma.dmaMapSingle(0x10002000, 4096, BIDIR);
  assert.ok(c > 2 ** 32, `0x${c.toString(16)} should be above 4 GiB`);
  assert.equal(dma.pci32bitWorkaround, false);
  assert.equal(dma.layer.counters.dac, 1);
});

Deno.test("a 32-bit DMA mask never gets an IOVA above 4 GiB and fails with ENOMEM when full", () => {
  const { core, dma } = setup(DomainType.DMA, { dmaBits: 32 });
  core.resv = [{ start: 0, length: 0xfffff000, prot: 0, type: "RESERVED" }];
  const a = dma.dmaMapSingle(0x10000000, 4096, BIDIR);
  assert.equal(a, 0xfffff000);
  assert.throws(() => dma.dmaMapSingle(0x10001000, 4096, BIDIR), { errno: "ENOMEM" });
  assert.equal(dma.layer.counters.mapErrors, 1);
});

Deno.test("SW_MSI regions are not reserved; other resv regions are", () => {
  const { core, dma } = setup();
  core.resv = [
    { start: 0xfffff000, length: 0x1000, prot: 0, type: "SW_MSI" },
    { start: 0xffffe000, length: 0x1000, prot: 0, type: "MSI" },
  ];
  assert.equal(dma.dmaMapSingle(0x10000000, 4096, BIDIR), 0xfffff000);
  assert.equal(dma.dmaMapSingle(0x10001000, 4096, BIDIR), 0xffffd000);
});

Deno.test("untrusted device: an unaligned buffer is bounced and the padding is zeroed", () => {
  const { core, dma } = setup(DomainType.DMA, { untrusted: true });
  const mem = core.machine.mem;
  mem.writeBytes(0x5000100, new Uint8Array([1, 2, 3, 4]));
  // dirty the pool first so zeroing is visible
  const pool = dma.layer.swiotlb;
  mem.fill(pool.base, 8192, 0xaa);
  const d = dma.dmaMapSingle(0x5000100, 4, DmaDirection.FROM_DEVICE);
  const pa = core.iovaToPhys(core.domain, d);
  assert.ok(pool.contains(pa));
  assert.equal(pa % 4096, 0);
  assert.deepEqual([...mem.readBytes(pa, 4)], [1, 2, 3, 4], "original copied in");
  assert.ok(mem.readBytes(pa + 4, 4092).every((b) => b === 0), "post-padding zeroed");
  mem.writeBytes(pa, new Uint8Array([9, 8]));
  dma.dmaUnmapSingle(d, 4, DmaDirection.FROM_DEVICE);
  assert.deepEqual([...mem.readBytes(0x5000100, 4)], [9, 8, 3, 4]);
  assert.equal(pool.usedSlots, 0);
  assert.equal(dma.layer.counters.bounces, 1);
});

Deno.test("untrusted device: a granule-aligned buffer is not bounced", () => {
  const { core, dma } = setup(DomainType.DMA, { untrusted: true });
  const d = dma.dmaMapSingle(0x5000000, 8192, BIDIR);
  assert.equal(core.iovaToPhys(core.domain, d), 0x5000000);
  assert.equal(dma.layer.counters.bounces, 0);
});

Deno.test("sync for cpu copies bounced data back without unmapping", () => {
  const { core, dma } = setup(DomainType.DMA, { untrusted: true });
  const d = dma.dmaMapSingle(0x5000010, 16, BIDIR);
  const pa = core.iovaToPhys(core.domain, d);
  core.machine.mem.write8(pa, 0x77);
  dma.dmaSyncSingleForCpu(d, 16, BIDIR);
  assert.equal(core.machine.mem.read8(0x5000010), 0x77);
  core.machine.mem.write8(0x5000011, 0x66);
  dma.dmaSyncSingleForDevice(d, 16, BIDIR);
  assert.equal(core.machine.mem.read8(pa + 1), 0x66);
});

Deno.test("identity default domain uses dma-direct: DMA address = physical, mask checked", () => {
  const { core, dma } = setup(DomainType.IDENTITY, { dmaBits: 32 });
  assert.equal(dma.mode, "direct");
  assert.equal(dma.dmaMapSingle(0x12345678, 16, BIDIR), 0x12345678);
  assert.equal(core.table.size, 0);
  assert.throws(() => dma.dmaMapSingle(0x1_0000_0000, 16, BIDIR), { errno: "ENOMEM" });
});

Deno.test("map_sg uses one IOVA range and merges contiguous segments", () => {
  const { core, dma } = setup();
  const sg = [
    { paddr: 0x10000000, length: 4096 },
    { paddr: 0x20000000, length: 4096 },
    { paddr: 0x30000800, length: 0x100 },
  ];
  const m = dma.dmaMapSg(sg, BIDIR);
  assert.equal(m.iovaLen, 3 * 4096);
  assert.equal(m.iova % (4 * 4096), 0, "3 pages round up to an aligned 4-page IOVA");
  assert.equal(m.nents, 2);
  assert.deepEqual(m.segments[0], { dmaAddress: m.iova, length: 8192 });
  assert.equal(m.segments[1].dmaAddress, m.iova + 8192 + 0x800);
  assert.equal(core.iovaToPhys(core.domain, m.iova + 4096), 0x20000000);
  dma.dmaUnmapSg(m, BIDIR);
  assert.equal(core.table.size, 0);
  assert.equal(core.syncs, 1);
});

Deno.test("map_resource maps MMIO with IOMMU_MMIO and no CACHE", () => {
  const { core, dma } = setup();
  const d = dma.dmaMapResource(0xfe000000, 4096, DmaDirection.FROM_DEVICE);
  assert.equal(core.table.get(d)!.prot, IOMMU_WRITE | IOMMU_MMIO);
  dma.dmaUnmapResource(d, 4096);
  assert.equal(core.table.size, 0);
});

Deno.test("alloc_coherent returns zeroed pages mapped R/W; free unmaps and releases them", () => {
  const { core, dma } = setup();
  const c = dma.dmaAllocCoherent(3 * 4096);
  assert.equal(core.machine.pages.isAllocated(c.cpuAddr), true);
  assert.equal(core.iovaToPhys(core.domain, c.dmaAddr + 8192), c.cpuAddr + 8192);
  dma.dmaFreeCoherent(c);
  assert.equal(core.machine.pages.isAllocated(c.cpuAddr), false);
  assert.equal(core.table.size, 0);
});

Deno.test("a failing iommu_map frees the IOVA (no partial state)", () => {
  const { core, dma } = setup();
  core.table.set(0xfffff000, { pa: 0, prot: 0 }); // something already there
  assert.throws(() => dma.dmaMapSingle(0x10000000, 4096, BIDIR), { errno: "EEXIST" });
  assert.equal(core.table.size, 1);
  // the freed IOVA went to the rcache and comes back
  core.table.clear();
  assert.equal(dma.dmaMapSingle(0x10000000, 4096, BIDIR), 0xfffff000);
});

Deno.test("unmap of an address that is not mapped fails with EINVAL", () => {
  const { dma } = setup();
  assert.throws(() => dma.dmaUnmapSingle(0xfffff000, 4096, BIDIR), { errno: "EINVAL" });
});

Deno.test("DMA with PASID attaches a global PASID to the default (RID2PASID) domain", () => {
  const { core, dma } = setup(DomainType.DMA, { pasidBits: 8 });
  const pasid = dma.enablePasid();
  assert.equal(pasid, 1);
  assert.equal(core.pasids.get(pasid), core.domain);
  assert.equal(dma.enablePasid(), 1, "idempotent");
  dma.disablePasid();
  assert.equal(core.pasids.size, 0);
});

Deno.test("DMA with PASID on a device without the capability fails with EOPNOTSUPP", () => {
  const { dma } = setup();
  assert.throws(() => dma.enablePasid(), { errno: "EOPNOTSUPP" });
});

Deno.test("iommu.forcedac skips the 32-bit-first attempt", () => {
  const core = new FakeCore(DomainType.DMA);
  const dev = core.machine.pci.add({ name: "d", bus: 1, device: 0, fn: 0, dmaBits: 40 });
  const dma = dmaDevice(core, dev, { forceDac: true });
  assert.equal(dma.dmaMapSingle(0x10000000, 4096, BIDIR), 2 ** 40 - 4096);
});

Deno.test("offsets and spans come from the granule: a buffer crossing a page boundary maps two pages", () => {
  const { core, dma } = setup();
  const phys = 2 ** 40 + 0x1ff0; // above 2^32: the offset comes from the low word
  const a = dma.dmaMapSingle(phys, 0x20, BIDIR);
  assert.equal(a % 4096, 0xff0);
  assert.equal(core.table.get(a - 0xff0)?.pa, 2 ** 40 + 0x1000);
  assert.equal(core.table.get(a - 0xff0 + 4096)?.pa, 2 ** 40 + 0x2000);
  dma.dmaUnmapSingle(a, 0x20, BIDIR);
  assert.equal(core.table.size, 0);
});

Deno.test("a domain whose smallest page is above 2 GiB is refused with EINVAL", () => {
  const { core, dma } = setup();
  core.domain.pgsizeBitmap = 2 ** 32;
  assert.throws(
    () => dma.dmaMapSingle(0x1000_0000, 4096, BIDIR),
    (e: unknown) =>
      e instanceof IommuError && e.errno === "EINVAL" && /above 2 GiB/.test(e.message),
  );
});

Deno.test("dma_map_page maps page + offset like map_single, and dma_unmap_page releases it", () => {
  const { core, dma } = setup();
  const d = dma.dmaMapPage(0x2000_0000, 0x234, 0x100, DmaDirection.TO_DEVICE);
  assert.equal(d, 0xfffff234, "top IOVA page with the buffer's offset");
  assert.equal(core.iovaToPhys(core.domain, d), 0x2000_0234);
  assert.equal(
    core.table.get(0xfffff000)!.prot,
    IOMMU_READ | IOMMU_CACHE,
    "TO_DEVICE is read-only",
  );
  dma.dmaUnmapPage(d, 0x100, DmaDirection.TO_DEVICE);
  assert.equal(core.table.size, 0);
  assert.equal(dma.dmaMapPage(0x3000_0000, 0, 4096, BIDIR), 0xfffff000, "the IOVA is reused");
});

Deno.test("dma_set_mask: a 32-bit mask keeps IOVAs below 4 GiB; a width outside 12..64 is EIO and keeps the mask", () => {
  const { dma, dev } = setup(DomainType.DMA, { dmaBits: 64 });
  dma.dmaSetMask(32);
  assert.equal(dma.dmaMask, 0xffff_ffff);
  assert.ok(dma.dmaMapSingle(0x1000_0000, 4096, BIDIR) < 2 ** 32);
  for (const bits of [8, 65, 40.5]) {
    assert.throws(
      () => dma.dmaSetMask(bits),
      (e) =>
        e instanceof IommuError && e.errno === "EIO" &&
        new RegExp(`width ${bits} is outside 12\\.\\.64`).test(e.message),
    );
  }
  assert.equal(dev.dmaBits, 32, "a refused mask changes nothing");
});
