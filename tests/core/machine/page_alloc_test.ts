import assert from "node:assert/strict";
import fc from "fast-check";
import { IommuError, PageAllocator, PhysMem } from "@iommu-lab/core";

const isErr = (errno: string, re?: RegExp) => (e: unknown) =>
  e instanceof IommuError && e.errno === errno && (!re || re.test(e.message));

function pool(pages = 4096) {
  const mem = new PhysMem(40);
  return { mem, pa: new PageAllocator(mem, 0x100_0000, 0x100_0000 + pages * 4096) };
}

Deno.test("blocks are aligned to their size and zeroed", () => {
  const { mem, pa } = pool();
  const a = pa.allocPage();
  mem.write32(a, 0xffffffff);
  for (let order = 0; order <= 10; order++) {
    const b = pa.allocPages(order);
    assert.equal(b % (4096 * 2 ** order), 0, `order ${order} at 0x${b.toString(16)}`);
  }
  pa.free(a);
  const again = pa.allocPage();
  assert.equal(again, a, "a freed page is reused");
  assert.equal(mem.read32(again), 0, "and handed out zeroed");
});

Deno.test("accounting tracks pages in use, the peak and frees", () => {
  const { pa } = pool();
  const a = pa.allocPages(2);
  const b = pa.allocPage();
  assert.deepEqual(pa.stats, {
    allocations: 2,
    frees: 0,
    pagesInUse: 5,
    peakPages: 5,
    failures: 0,
  });
  pa.free(a);
  assert.equal(pa.stats.pagesInUse, 1);
  assert.equal(pa.stats.peakPages, 5);
  assert.deepEqual(pa.liveBlocks(), [b]);
  assert.equal(pa.orderOf(b), 0);
  assert.equal(pa.orderOf(a), -1);
  assert.equal(pa.isAllocated(b), true);
});

Deno.test("a larger free block is split for smaller requests", () => {
  const { pa } = pool(8);
  const big = pa.allocPages(3); // the whole pool
  assert.throws(() => pa.allocPage(), isErr("ENOMEM", /out of memory/));
  pa.free(big);
  const got = Array.from({ length: 8 }, () => pa.allocPage()).sort((x, y) => x - y);
  assert.deepEqual(got, Array.from({ length: 8 }, (_, i) => big + i * 4096));
});

Deno.test("failAt(n) fails exactly the nth allocation, once or from then on", () => {
  const { pa } = pool();
  pa.failAt(3);
  pa.allocPage();
  pa.allocPage();
  assert.throws(() => pa.allocPage(), isErr("ENOMEM", /injected/));
  pa.allocPage();
  assert.equal(pa.stats.failures, 1);
  pa.failAt(2, true);
  pa.allocPage();
  assert.throws(() => pa.allocPage(), isErr("ENOMEM"));
  assert.throws(() => pa.allocPages(4), isErr("ENOMEM"));
  pa.failAt(0);
  pa.allocPage();
  assert.equal(pa.stats.failures, 3);
  assert.throws(() => pa.failAt(-1), isErr("EINVAL"));
});

Deno.test("bad orders, double frees and frees of unknown blocks are refused", () => {
  const { mem, pa } = pool();
  assert.throws(() => pa.allocPages(11), isErr("EINVAL", /0..10/));
  assert.throws(() => pa.allocPages(-1), isErr("EINVAL"));
  const a = pa.allocPages(1);
  assert.throws(() => pa.free(a + 4096), isErr("EINVAL", /not an allocated block/));
  pa.free(a);
  assert.throws(() => pa.free(a), isErr("EINVAL"));
  assert.throws(() => new PageAllocator(mem, 0x1001, 0x2000), isErr("EINVAL"));
  assert.throws(() => new PageAllocator(mem, 0x2000, 0x2000), isErr("EINVAL"));
  assert.throws(() => new PageAllocator(mem, 0, 2 ** 41), isErr("EINVAL"));
});

Deno.test("random alloc/free sequences never hand out overlapping blocks", () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.integer({ min: 0, max: 4 }), fc.constant(-1)), { maxLength: 80 }),
      fc.integer({ min: 0, max: 1000 }),
      (ops, pick) => {
        const { pa } = pool(256);
        const live: [number, number][] = [];
        for (const op of ops) {
          if (op >= 0) {
            try {
              live.push([pa.allocPages(op), 4096 * 2 ** op]);
            } catch (e) {
              if (!(e instanceof IommuError && e.errno === "ENOMEM")) throw e;
            }
          } else if (live.length) {
            const [a] = live.splice((pick + live.length) % live.length, 1)[0];
            pa.free(a);
          }
        }
        const sorted = [...live].sort((x, y) => x[0] - y[0]);
        for (let i = 1; i < sorted.length; i++) {
          if (sorted[i - 1][0] + sorted[i - 1][1] > sorted[i][0]) return false;
        }
        return pa.stats.pagesInUse === live.reduce((s, [, n]) => s + n / 4096, 0) &&
          sorted.every(([a, n]) => a % n === 0 && a >= pa.base && a + n <= pa.limit);
      },
    ),
    { numRuns: 80, seed: 7 },
  );
});
