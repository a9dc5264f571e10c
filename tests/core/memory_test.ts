import assert from "node:assert/strict";
import { IommuError, PhysMem } from "@iommu-lab/core";

Deno.test("untouched memory reads as zero and backs no page", () => {
  const m = new PhysMem(48);
  assert.equal(m.read32(0x1234_5000), 0);
  assert.equal(m.stats.pagesBacked, 0);
});

Deno.test("64-bit values are stored little-endian as two halves", () => {
  const m = new PhysMem(48);
  m.write64(0x1000, 0x89abcdef, 0x01234567);
  assert.equal(m.read8(0x1000), 0xef);
  assert.equal(m.read8(0x1007), 0x01);
  assert.equal(m.read64n(0x1000), 0x0123456789abcdefn);
  assert.equal(m.read16(0x1002), 0x89ab);
});

Deno.test("an access beyond the physical address width fails with EFAULT", () => {
  const m = new PhysMem(40);
  assert.throws(() => m.read32(2 ** 40), (e) => e instanceof IommuError && e.errno === "EFAULT");
});

Deno.test("a sparse image round-trips and a malformed one changes nothing", () => {
  const m = new PhysMem(48);
  m.write32(0x2000, 0xdeadbeef);
  m.write32(0x7fff_f000, 1);
  const img = m.saveSparse();
  assert.deepEqual(Object.keys(img.pages), ["0x2000", "0x7ffff000"]);
  const n = new PhysMem(48);
  n.loadSparse(img);
  assert.equal(n.read32(0x2000), 0xdeadbeef);
  const bad = { ...img, pages: { ...img.pages, "0x3000": "AAAA" } };
  const o = new PhysMem(48);
  assert.throws(() => o.loadSparse(bad), (e) => e instanceof IommuError && e.errno === "EINVAL");
  assert.equal(o.stats.pagesBacked, 0);
});
