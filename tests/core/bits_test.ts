import assert from "node:assert/strict";
import {
  alignUp,
  bitsOf,
  ffs,
  fls,
  hi32,
  IommuError,
  join64,
  lo32,
  pgsizeBitmapOf,
  pgsizeIn,
  pgsizesOf,
  roundupPow2,
} from "@iommu-lab/core";

Deno.test("wide numbers split into 32-bit halves and join back", () => {
  const x = 0x000f_1234_5678_9abc;
  assert.equal(lo32(x), 0x5678_9abc);
  assert.equal(hi32(x), 0x000f_1234);
  assert.equal(join64(lo32(x), hi32(x)), x);
});

Deno.test("ffs and fls find bits above 32", () => {
  assert.equal(ffs(2 ** 42), 42);
  assert.equal(fls(2 ** 42 + 1), 42);
  assert.equal(ffs(0x1000), 12);
  assert.equal(bitsOf(0xabc_0000_0000, 43, 36), 0xab);
  assert.equal(roundupPow2(33), 64);
  assert.equal(alignUp(0x1001, 0x1000), 0x2000);
});

Deno.test("a 64K-granule page-size bitmap keeps its 4 TiB bit", () => {
  const m = pgsizeBitmapOf([0x1_0000, 0x2000_0000, 2 ** 42]);
  assert.equal(pgsizeIn(m, 2 ** 42), true);
  assert.deepEqual(pgsizesOf(m), [0x1_0000, 0x2000_0000, 2 ** 42]);
});

Deno.test("IommuError carries the negative errno", () => {
  const e = new IommuError("EBUSY", "op", "busy");
  assert.equal(e.code, -16);
  assert.match(e.message, /^op: EBUSY: busy$/);
});
