import assert from "node:assert/strict";
import { FieldTable, getBits, IommuError, parseWords, setBits } from "@iommu-lab/core";

const T = new FieldTable("T", 16, [
  { name: "V", hi: 0, lo: 0 },
  { name: "CFG", hi: 3, lo: 1, values: { 4: "BYPASS" } },
  { name: "PTR", hi: 51, lo: 6, address: true },
  { name: "TOP", hi: 127, lo: 96 },
]);

Deno.test("a field spanning two 32-bit words encodes and decodes exactly", () => {
  const w = T.encode({ V: 1, CFG: 4, PTR: 0x1234_5678_9ac0n, TOP: 0xffffffff });
  assert.equal(w[0], (0x1234_5678_9ac0 % 2 ** 32 | 0x9) >>> 0);
  assert.equal(w[1], Math.floor(0x1234_5678_9ac0 / 2 ** 32));
  const d = T.decode(w);
  assert.equal(d.PTR, 0x1234_5678_9ac0n);
  assert.equal(d.CFG, 4n);
  assert.equal(d.TOP, 0xffffffffn);
  assert.equal(T.get(w, "CFG"), 4);
});

Deno.test("a value wider than its field is refused with ERANGE", () => {
  assert.throws(() => T.encode({ CFG: 8 }), (e) => e instanceof IommuError && e.errno === "ERANGE");
});

Deno.test("an unaligned address field is refused with EINVAL", () => {
  assert.throws(
    () => T.encode({ PTR: 0x41 }),
    (e) => e instanceof IommuError && e.errno === "EINVAL",
  );
});

Deno.test("reserved bits are the bits no field covers", () => {
  const r = T.reservedMask();
  assert.equal(r[0], 0x30);
  assert.equal(r[1], 0xfff00000);
  assert.equal(r[3], 0);
});

Deno.test("format names the legend of known values", () => {
  const lines = T.format(T.encode({ CFG: 4 }));
  assert.equal(lines.length, 1);
  assert.match(lines[0], /CFG .*= 0x4 \(BYPASS\)/);
});

Deno.test("getBits and setBits agree on every bit range of a 128-bit value", () => {
  const w = new Uint32Array(4);
  for (let lo = 0; lo < 128; lo += 7) {
    for (let hi = lo; hi < Math.min(128, lo + 60); hi += 11) {
      w.fill(0xa5a5a5a5);
      const v = (1n << BigInt(hi - lo + 1)) - 3n & ((1n << BigInt(hi - lo + 1)) - 1n);
      setBits(w, 0, hi, lo, v);
      assert.equal(getBits(w, 0, hi, lo), v);
    }
  }
});

Deno.test("64-bit hex words split into low and high 32-bit words", () => {
  assert.deepEqual([...parseWords(["0x0000000200000001", "3"])], [1, 2, 3, 0]);
  assert.throws(() => parseWords(["zz"]), (e) => e instanceof IommuError && e.errno === "EINVAL");
});
