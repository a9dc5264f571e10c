import assert from "node:assert/strict";
import { IommuCore, Machine, resolveOptions } from "@iommu-lab/core";
import { dmaDevice, DmaDirection, type DmaIommuCore } from "@iommu-lab/dma-api";
import { availableBackends } from "../../cli/backends.ts";

const BIDIR = DmaDirection.BIDIRECTIONAL;
const plugins = await availableBackends();

function setup(name: string, strict: boolean, devCfg = {}) {
  const plugin = plugins.find((p) => p.name === name)!;
  const m = new Machine();
  const dev = m.pci.add({ name: "nic0", bus: 0, device: 3, fn: 0, ...devCfg });
  const { driver } = plugin.create(m, resolveOptions(plugin, {}));
  const core = new IommuCore(m, { strict });
  core.registerDriver(driver);
  const typed: DmaIommuCore = core; // IommuCore satisfies the DMA layer's contract
  return { m, dev, core, dma: dmaDevice(typed, dev) };
}

for (const p of plugins) {
  Deno.test(`${p.name}: a device reads what the CPU put in a mapped buffer, and faults after a strict unmap`, () => {
    const { m, dev, dma } = setup(p.name, true);
    const buf = m.pages.allocPage();
    m.mem.fill(buf, 4096, 0x3c);
    const d = dma.dmaMapSingle(buf + 0x100, 64, BIDIR);
    assert.equal(d % 4096, 0x100);
    const r = m.master(dev).read(d, 8);
    assert.equal(r.ok, true);
    assert.deepEqual([...r.data!], Array(8).fill(0x3c));
    dma.dmaUnmapSingle(d, 64, BIDIR);
    assert.equal(m.master(dev).read(d, 8).ok, false);
  });
}

for (const name of ["vtd", "smmuv3"]) {
  if (!plugins.some((p) => p.name === name)) continue;
  Deno.test(`${name}: 1000 strict unmaps sync 1000 times; 1000 lazy unmaps cost 3 flush-alls (255 per ring) and no sync`, () => {
    const run = (strict: boolean) => {
      const { m, dma, core } = setup(name, strict);
      const buf = m.pages.allocPage();
      for (let i = 0; i < 1000; i++) {
        dma.dmaUnmapSingle(dma.dmaMapSingle(buf, 4096, BIDIR), 4096, BIDIR);
      }
      const fq = dma.layer.cookieOf(core.defaultDomainOf(dma.dev)!, dma.dev).fq;
      return {
        ...core.counters,
        ...dma.layer.counters,
        full: fq?.counters.fullFlushes ?? 0,
        timer: fq?.counters.timerFlushes ?? 0,
      };
    };
    const s = run(true);
    assert.equal(s.strictSyncs, 1000);
    assert.equal(s.iotlbSyncs, 1000);
    assert.equal(s.fqFlushes, 0);
    const l = run(false);
    assert.equal(l.strictSyncs, 0);
    assert.equal(l.iotlbSyncs, 0);
    assert.equal(l.fqQueued, 1000);
    assert.equal(l.full, 3, "ring full at the 256th, 511th and 766th unmap");
    // The modeled command latencies advance virtual time: the 10 ms timer may flush too.
    assert.equal(l.fqFlushes, 3 + l.timer);
    assert.ok(l.flushIotlbAll >= l.fqFlushes, "every queue flush is a flush_iotlb_all");
  });

  Deno.test(`${name}: an untrusted device's unaligned buffer is bounced; it sees zeroed padding, not neighbours`, () => {
    const { m, dev, dma } = setup(name, true, { untrusted: true });
    const page = m.pages.allocPage();
    m.mem.fill(page, 4096, 0xee); // secrets around the buffer
    m.mem.writeBytes(page + 0x200, new Uint8Array([1, 2, 3, 4]));
    const d = dma.dmaMapSingle(page + 0x200, 4, BIDIR);
    assert.equal(dma.layer.counters.bounces, 1);
    const whole = m.master(dev).read(d - (d % 4096), 4096);
    assert.equal(whole.ok, true);
    const data = whole.data!;
    assert.deepEqual([...data.slice(d % 4096, (d % 4096) + 4)], [1, 2, 3, 4]);
    assert.equal(
      data.filter((b) => b === 0xee).length,
      0,
      "no byte of the neighbourhood is visible",
    );
    dma.dmaUnmapSingle(d, 4, BIDIR);
  });
}

if (plugins.some((p) => p.name === "vtd")) {
  Deno.test("vtd: DMA with PASID reaches the same mapping with and without PASID", () => {
    const { m, dev, dma, core } = setup("vtd", true, { pasidBits: 8 });
    const pasid = dma.enablePasid();
    assert.ok(pasid >= 1);
    assert.equal(core.getDomainForDevPasid(dev, pasid), core.defaultDomainOf(dev));
    const buf = m.pages.allocPage();
    m.mem.fill(buf, 16, 0x42);
    const d = dma.dmaMapSingle(buf, 4096, BIDIR);
    assert.deepEqual([...m.master(dev).read(d, 2, { pasid }).data!], [0x42, 0x42]);
    assert.deepEqual([...m.master(dev).read(d, 2).data!], [0x42, 0x42]);
    dma.dmaUnmapSingle(d, 4096, BIDIR);
    assert.equal(m.master(dev).read(d, 2, { pasid }).ok, false);
    assert.equal(m.master(dev).read(d, 2).ok, false);
  });
}
