/** Accessed/dirty updates of a walk: a PTE is written only when a bit changes. */
import assert from "node:assert/strict";
import { IOMMU_READ, IOMMU_WRITE } from "@iommu-lab/core";
import { QI_EIOTLB_DESC } from "../../../backends/vtd/mod.ts";
import { setup, xlate } from "./helpers.ts";

Deno.test("a first-stage walk sets A, then D on a write, each once: walks that change no bit write no memory (output address above 2 GiB)", () => {
  const { hw, nic, drv, m } = setup();
  const d = drv.domainAllocPaging(nic, 0);
  d.attachDev(nic, null);
  // Output address with bit 31 set: the PTE's low word does not fit an int32.
  d.mapPages(0x1000, 0x8000_0000, 4096, 1, IOMMU_READ | IOMMU_WRITE);
  const next = (e: number) => m.mem.read64(e) - (m.mem.read64(e) % 4096);
  const leaf = next(next(next(d.pgtable!.root))) + 1 * 8;
  m.mem.write32(leaf, (m.mem.read32(leaf) & ~0x60) >>> 0); // clear A (bit 5) and D (bit 6)
  const flush = () => {
    const w = QI_EIOTLB_DESC.encode({ TYPE: 6, GRAN: 2, DID: d.did, PASID: 0 });
    drv.submitRaw(w[0], w[1], w[2], w[3]);
  };
  const writesOf = (write: boolean) => {
    flush();
    const w0 = m.mem.stats.writes;
    assert.equal(xlate(hw, nic, 0x1000, write).pa, 0x8000_0000);
    return m.mem.stats.writes - w0;
  };
  assert.equal(writesOf(false), 1, "A set");
  assert.equal(m.mem.read32(leaf) & 0x60, 0x20);
  assert.equal(writesOf(false), 0, "A already set");
  assert.equal(writesOf(true), 1, "D set");
  assert.equal(m.mem.read32(leaf) & 0x60, 0x60);
  assert.equal(writesOf(true), 0, "A and D already set");
  assert.equal(writesOf(false), 0);
});
