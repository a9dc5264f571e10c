/**
 * Bad input to the DMA API: EINVAL before anything is allocated (no IOVA,
 * no bounce slot, no mapping), with a message that says what is allowed;
 * a scatterlist mapped segment by segment is unmapped again when a later
 * segment fails.
 */
import assert from "node:assert/strict";
import { DomainType, IommuError } from "@iommu-lab/core";
import { dmaDevice } from "../../dma-api/dma.ts";
import { DmaDirection } from "../../dma-api/prot.ts";
import { FakeCore } from "./fake_core.ts";

const BIDIR = DmaDirection.BIDIRECTIONAL;

function setup(type: number = DomainType.DMA, devCfg = {}) {
  const core = new FakeCore(type);
  const dev = core.machine.pci.add({ name: "nic0", bus: 1, device: 0, fn: 0, ...devCfg });
  return { core, dev, dma: dmaDevice(core, dev) };
}

function refused(re: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof IommuError, String(e));
    assert.equal(e.errno, "EINVAL");
    assert.match(e.message, re);
    return true;
  };
}

for (const untrusted of [false, true]) {
  Deno.test(`bad buffers and directions are EINVAL and allocate nothing (${untrusted ? "untrusted" : "trusted"} device)`, () => {
    const { core, dma } = setup(DomainType.DMA, { untrusted });
    const cases: [() => unknown, RegExp][] = [
      [() => dma.dmaMapSingle(0x1000, 0, BIDIR), /size an integer > 0/],
      [() => dma.dmaMapSingle(0x1000, -16, BIDIR), /size an integer > 0/],
      [() => dma.dmaMapSingle(-4096, 16, BIDIR), /address must be an integer >= 0/],
      [() => dma.dmaMapSingle(4096.5, 16, BIDIR), /address must be an integer >= 0/],
      [() => dma.dmaMapSingle(2 ** 53 - 8, 16, BIDIR), /end at or below 2\^53/],
      [
        () => dma.dmaMapSingle(0x1000, 16, DmaDirection.NONE),
        /direction 3 is not valid: use BIDIRECTIONAL \(0\), TO_DEVICE \(1\) or FROM_DEVICE \(2\)/,
      ],
      [() => dma.dmaMapSingle(0x1000, 16, 7 as DmaDirection), /direction 7 is not valid/],
      [() => dma.dmaMapResource(0xfe00_0000, 0, BIDIR), /size an integer > 0/],
      [() => dma.dmaMapSg([], BIDIR), /empty scatterlist: give at least one segment/],
      [
        () => dma.dmaMapSg([{ paddr: 0x1000, length: 4096 }, { paddr: 0x3000, length: 0 }], BIDIR),
        /dma_map_sg segment 1: .*size an integer > 0/,
      ],
    ];
    for (const [f, re] of cases) assert.throws(f, refused(re), re.source);
    assert.equal(core.table.size, 0, "nothing mapped");
    assert.equal(dma.layer.swiotlb.usedSlots, 0, "no bounce slot taken");
    assert.equal(dma.layer.counters.maps, 0);
    // No IOVA was consumed: the first real map still gets the top of the 32-bit space.
    assert.equal(dma.dmaMapSingle(0x1000, 4096, BIDIR), 0xfffff000);
  });
}

Deno.test("an untrusted device's scatterlist is unmapped again when a later segment fails", () => {
  const { core, dma } = setup(DomainType.DMA, { untrusted: true });
  // Segment 0 takes the top IOVA page; the next page down is already taken.
  core.table.set(0xffffe000, { pa: 0, prot: 0 });
  const sg = [{ paddr: 0x10_0000, length: 4096 }, { paddr: 0x20_0000, length: 4096 }];
  assert.throws(() => dma.dmaMapSg(sg, BIDIR), (e) => e instanceof IommuError);
  assert.deepEqual([...core.table.keys()], [0xffffe000], "segment 0 was unmapped");
  assert.equal(dma.layer.counters.unmaps, 1);
});

Deno.test("a dma-direct scatterlist with a segment beyond the DMA mask maps nothing", () => {
  const { dma } = setup(DomainType.IDENTITY, { dmaBits: 32 });
  assert.equal(dma.mode, "direct");
  const sg = [{ paddr: 0x1000, length: 16 }, { paddr: 2 ** 32, length: 16 }];
  assert.throws(() => dma.dmaMapSg(sg, BIDIR), /beyond the 32-bit DMA mask/);
  assert.equal(dma.layer.counters.maps - dma.layer.counters.unmaps, 0);
});
