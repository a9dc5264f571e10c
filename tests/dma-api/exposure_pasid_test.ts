/**
 * On every built-in backend: the strict/lazy exposure window as the trace
 * shows it, and DMA with PASID sharing the RID2PASID page table, with every
 * invalidation (strict sync and lazy flush-all) covering both request kinds.
 */
import assert from "node:assert/strict";
import { IommuCore, Machine, resolveOptions, type TraceEvent } from "@iommu-lab/core";
import { dmaDevice, DmaDirection } from "@iommu-lab/dma-api";
import { availableBackends } from "../../cli/backends.ts";

const BIDIR = DmaDirection.BIDIRECTIONAL;
const plugins = (await availableBackends()).filter((p) => p.name === "vtd" || p.name === "smmuv3");

function setup(name: string, strict: boolean) {
  const plugin = plugins.find((p) => p.name === name)!;
  const m = new Machine();
  const dev = m.pci.add({ name: "nic0", bus: 0, device: 3, fn: 0, pasidBits: 8 });
  const { driver } = plugin.create(m, resolveOptions(plugin, {}));
  const core = new IommuCore(m, { strict });
  core.registerDriver(driver);
  const dma = dmaDevice(core, dev);
  const buf = m.pages.allocPage();
  m.mem.fill(buf, 4096, 0x5a);
  const events: TraceEvent[] = [];
  m.trace.listen((e) => events.push(e));
  return { m, dev, core, dma, buf, events };
}

for (const p of plugins) {
  Deno.test(`${p.name}: strict unmap closes the window at once; the read after it faults`, () => {
    const { m, dev, core, dma, buf, events } = setup(p.name, true);
    const d = dma.dmaMapSingle(buf, 4096, BIDIR);
    assert.equal(m.master(dev).read(d, 1).ok, true); // the IOTLB now holds the page
    events.length = 0;
    const syncs = core.counters.iotlbSyncs;
    dma.dmaUnmapSingle(d, 4096, BIDIR);
    assert.equal(core.counters.iotlbSyncs, syncs + 1, "one sync inside the unmap call");
    const names = events.map((e) => e.name);
    assert.equal(names.includes("dma:fq_queue"), false);
    assert.ok(names.includes("dma:dma_unmap_page"), names.join(","));
    assert.equal(m.master(dev).read(d, 1).ok, false, "no window in strict mode");
  });

  Deno.test(`${p.name}: lazy unmap leaves a window until the 10 ms flush-all, and the trace shows it`, () => {
    const { m, dev, dma, buf, events } = setup(p.name, false);
    assert.equal(dma.mode, "iommu-lazy");
    const d = dma.dmaMapSingle(buf, 4096, BIDIR);
    assert.equal(m.master(dev).read(d, 1).ok, true);
    events.length = 0;
    const t0 = m.clock.now();
    dma.dmaUnmapSingle(d, 4096, BIDIR);
    const q = events.find((e) => e.name === "dma:fq_queue")!;
    assert.equal(q.fields.iova, d);
    assert.equal(q.fields.size, 4096);
    // Inside the window the device still reaches the unmapped page (stale IOTLB).
    const r = m.master(dev).read(d, 1);
    assert.equal(r.ok, true, "the unmapped page is still reachable before the flush");
    assert.deepEqual([...r.data!], [0x5a]);
    assert.equal(events.some((e) => e.name === "dma:fq_flush"), false);
    m.clock.advance(10_000_000 - (m.clock.now() - t0));
    const f = events.find((e) => e.name === "dma:fq_flush")!;
    assert.ok(f, "the timer flushed");
    assert.equal(f.t - q.t <= 10_000_000, true);
    const rel = events.find((e) => e.name === "dma:fq_release")!;
    assert.equal(rel.fields.iova, d, "the IOVA is released only after the flush");
    assert.ok(events.indexOf(rel) > events.indexOf(f));
    assert.equal(m.master(dev).read(d, 1).ok, false, "the window is closed");
  });

  for (const strict of [true, false]) {
    Deno.test(`${p.name}: DMA with PASID shares the RID2PASID table; ${strict ? "strict sync" : "lazy flush-all"} invalidates both`, () => {
      const { m, dev, core, dma, buf } = setup(p.name, strict);
      const pasid = dma.enablePasid();
      assert.equal(pasid, 1, "the lowest global PASID");
      assert.equal(core.getDomainForDevPasid(dev, pasid), core.defaultDomainOf(dev));
      const d = dma.dmaMapSingle(buf, 4096, BIDIR);
      // A mapping made after enabling is seen by both request kinds at once.
      assert.deepEqual([...m.master(dev).read(d, 2, { pasid }).data!], [0x5a, 0x5a]);
      assert.deepEqual([...m.master(dev).read(d, 2).data!], [0x5a, 0x5a]);
      assert.equal(m.master(dev).write(d, new Uint8Array([7]), { pasid }).ok, true);
      assert.equal(m.mem.read8(buf), 7, "a PASID write lands in the same buffer");
      dma.dmaUnmapSingle(d, 4096, BIDIR);
      if (!strict) m.clock.advance(10_000_000);
      assert.equal(m.master(dev).read(d, 2, { pasid }).ok, false, "PASID entry invalidated");
      assert.equal(m.master(dev).read(d, 2).ok, false, "RID entry invalidated");
      dma.disablePasid();
      assert.equal(core.getDomainForDevPasid(dev, pasid), null);
    });
  }
}

for (const p of plugins) {
  Deno.test(`${p.name}: iommu.passthrough gives dma-direct: DMA address = physical, the device reaches it, no IOVA`, () => {
    const m = new Machine();
    const dev = m.pci.add({ name: "nic0", bus: 0, device: 3, fn: 0, dmaBits: 40 });
    const { driver } = p.create(m, resolveOptions(p, {}));
    const core = new IommuCore(m, { passthrough: true });
    core.registerDriver(driver);
    const dma = dmaDevice(core, dev);
    assert.equal(dma.mode, "direct");
    const buf = m.pages.allocPage();
    m.mem.fill(buf, 4096, 0x33);
    const d = dma.dmaMapSingle(buf + 0x10, 16, BIDIR);
    assert.equal(d, buf + 0x10);
    assert.deepEqual([...m.master(dev).read(d, 2).data!], [0x33, 0x33]);
    assert.equal(dma.layer.counters.directMaps, 1);
    assert.throws(
      () => dma.dmaMapSingle(2 ** 40, 16, BIDIR),
      (e) => e instanceof Error && /beyond the 40-bit DMA mask \(dma-direct\)/.test(e.message),
    );
    assert.equal(dma.layer.counters.directMaps, 1, "a refused map counts nothing");
  });
}

Deno.test("a device without an IOMMU uses dma-direct and reaches memory directly", () => {
  const m = new Machine();
  const dev = m.pci.add({ name: "nic0", bus: 0, device: 3, fn: 0 });
  const core = new IommuCore(m);
  const dma = dmaDevice(core, dev);
  assert.equal(dma.mode, "direct");
  const buf = m.pages.allocPage();
  m.mem.fill(buf, 8, 0x44);
  const d = dma.dmaMapSingle(buf, 8, BIDIR);
  assert.equal(d, buf);
  assert.deepEqual([...m.master(dev).read(d, 2).data!], [0x44, 0x44]);
  const sg = dma.dmaMapSg([{ paddr: buf, length: 8 }, { paddr: buf + 0x2000, length: 8 }], BIDIR);
  assert.deepEqual(sg.segments.map((s) => s.dmaAddress), [buf, buf + 0x2000]);
});

if (plugins.some((p) => p.name === "vtd")) {
  Deno.test("vtd: the PASID's addressing follows platform policy: identity under passthrough, DMA for an untrusted device", () => {
    const p = plugins.find((x) => x.name === "vtd")!;
    const m = new Machine();
    const trusted = m.pci.add({ name: "nic0", bus: 0, device: 3, fn: 0, pasidBits: 8 });
    const untrusted = m.pci.add({
      name: "ext0",
      bus: 0,
      device: 4,
      fn: 0,
      pasidBits: 8,
      untrusted: true,
    });
    const { driver } = p.create(m, resolveOptions(p, {}));
    const core = new IommuCore(m, { passthrough: true });
    core.registerDriver(driver);
    const buf = m.pages.allocPage();
    m.mem.fill(buf, 16, 0x77);
    // Trusted under iommu.passthrough: the PASID gets the identity domain; DMA addresses are physical.
    const a = dmaDevice(core, trusted);
    const pa = a.enablePasid();
    assert.equal(core.getDomainForDevPasid(trusted, pa), core.defaultDomainOf(trusted));
    assert.equal(a.mode, "direct");
    const d = a.dmaMapSingle(buf, 16, BIDIR);
    assert.equal(d, buf);
    assert.deepEqual([...m.master(trusted).read(d, 2, { pasid: pa }).data!], [0x77, 0x77]);
    // Untrusted on the same platform: a DMA domain, and its PASID shares it.
    const b = dmaDevice(core, untrusted);
    const pb = b.enablePasid();
    assert.notEqual(pb, pa, "global PASIDs are unique");
    assert.equal(b.mode, "iommu");
    assert.equal(core.getDomainForDevPasid(untrusted, pb), core.defaultDomainOf(untrusted));
    const e = b.dmaMapSingle(buf, 4096, BIDIR);
    assert.notEqual(e, buf, "translated");
    assert.deepEqual([...m.master(untrusted).read(e, 2, { pasid: pb }).data!], [0x77, 0x77]);
    assert.equal(m.master(untrusted).read(buf, 2, { pasid: pb }).ok, false, "no physical access");
  });
}
