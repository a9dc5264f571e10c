import assert from "node:assert/strict";
import fc from "fast-check";
import { Ida, isIommuError } from "../../../core/mod.ts";

Deno.test("ida hands out the lowest free id in the range and -1 when full", () => {
  const ida = new Ida();
  assert.equal(ida.allocRange(1, 3), 1);
  assert.equal(ida.allocRange(1, 3), 2);
  assert.equal(ida.allocRange(1, 3), 3);
  assert.equal(ida.allocRange(1, 3), -1);
  ida.free(2);
  assert.equal(ida.allocRange(1, 3), 2);
  assert.equal(ida.allocRange(5, 4), -1);
  assert.equal(ida.size, 3);
});

Deno.test("ida works across word boundaries and large ids", () => {
  const ida = new Ida();
  for (let i = 0; i < 100; i++) assert.equal(ida.allocRange(0, 1000), i);
  assert.equal(ida.allocRange(1 << 19, (1 << 20) - 1), 1 << 19);
  assert.equal(ida.has(1 << 19), true);
  assert.equal(ida.allocRange(31, 33), -1, "0..99 are taken");
});

Deno.test("freeing an id that is not allocated is EINVAL", () => {
  const ida = new Ida();
  assert.throws(() => ida.free(3), (e) => isIommuError(e, "EINVAL"));
});

Deno.test("ida agrees with a set-based reference on random alloc/free sequences", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 90 }), fc.integer({ min: 0, max: 90 })),
        {
          maxLength: 120,
        },
      ),
      (ops) => {
        const ida = new Ida();
        const ref = new Set<number>();
        for (const [alloc, x, y] of ops) {
          if (alloc) {
            const [lo, hi] = [Math.min(x, y), Math.max(x, y)];
            let want = -1;
            for (let i = lo; i <= hi; i++) {
              if (!ref.has(i)) {
                want = i;
                break;
              }
            }
            assert.equal(ida.allocRange(lo, hi), want);
            if (want >= 0) ref.add(want);
          } else if (ref.has(x)) {
            ida.free(x);
            ref.delete(x);
          }
          assert.equal(ida.size, ref.size);
        }
      },
    ),
    { numRuns: 200 },
  );
});
