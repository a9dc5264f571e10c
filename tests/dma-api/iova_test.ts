import assert from "node:assert/strict";
import fc from "fast-check";
import {
  IOVA_DEPOT_DELAY_NS,
  IOVA_MAG_SIZE,
  IovaDomain,
  orderBase2,
  roundupPowOfTwo,
} from "../../dma-api/iova.ts";
import { VirtualClock } from "@iommu-lab/core";

const LIMIT32 = 0xfffff; // DMA_BIT_MASK(32) >> 12

Deno.test("allocations come top-down from the limit", () => {
  const d = new IovaDomain(4096, 1);
  assert.equal(d.allocIova(1, LIMIT32, true), 0xfffff);
  assert.equal(d.allocIova(1, LIMIT32, true), 0xffffe);
  assert.equal(d.allocIova(2, LIMIT32, true), 0xffffc);
  assert.deepEqual(d.ranges(), [[0xffffc, 0xffffd], [0xffffe, 0xffffe], [0xfffff, 0xfffff]]);
});

Deno.test("size-aligned requests align to the power of two above the size", () => {
  const d = new IovaDomain(4096, 1);
  assert.equal(d.allocIova(1, LIMIT32, true), 0xfffff);
  // 3 pages align to 4: (0xfffff - 3) & ~3 = 0xffffc
  assert.equal(d.allocIova(3, LIMIT32, true), 0xffffc);
  // unaligned request packs right below
  assert.equal(d.allocIova(3, LIMIT32, false), 0xffff9);
  assert.equal(d.allocIova(8, LIMIT32, true), 0xffff0);
});

Deno.test("freeing the top range lets the next allocation reuse it (cached node moves up)", () => {
  const d = new IovaDomain(4096, 1);
  const a = d.allocIova(1, LIMIT32, true);
  const b = d.allocIova(1, LIMIT32, true);
  assert.equal(d.freeIova(a), true);
  assert.equal(d.allocIova(1, LIMIT32, true), a);
  // freeing a lower range does not move the cached node above it
  assert.equal(d.freeIova(b), true);
  assert.equal(d.allocIova(1, LIMIT32, true), b);
});

Deno.test("a freed hole below the cached node is found by the retry from the limit", () => {
  const d = new IovaDomain(4096, 1);
  const a = d.allocIova(1, LIMIT32, true); // fffff
  d.allocIova(1, LIMIT32, true); // ffffe
  d.freeIova(a);
  // cached32 moved to the anchor, so a is reused first
  assert.equal(d.allocIova(1, LIMIT32, true), a);
});

Deno.test("a full 32-bit space fails and max32_alloc_size fails the same size fast", () => {
  const d = new IovaDomain(4096, 1);
  // small space: limit 15 pages above start 1
  for (let i = 15; i >= 1; i--) assert.equal(d.allocIova(1, 15, true), i);
  assert.equal(d.allocIova(1, 15, true), 0);
  assert.equal(d.max32AllocSize, 1);
  const fails = d.counters.allocFailures;
  assert.equal(d.allocIova(1, 15, true), 0);
  assert.equal(d.counters.allocFailures, fails, "second failure came from the fast path");
  assert.equal(d.counters.max32FastFails, 1);
  // a free below 4 GiB resets max32_alloc_size
  d.freeIova(7);
  assert.equal(d.max32AllocSize, d.dma32bitPfn);
  assert.equal(d.allocIova(1, 15, true), 7);
});

Deno.test("allocations above 4 GiB start from the 64-bit cached node", () => {
  const d = new IovaDomain(4096, 1);
  const lim64 = 2 ** 36 - 1;
  assert.equal(d.allocIova(1, lim64, true), lim64);
  assert.equal(d.allocIova(1, LIMIT32, true), LIMIT32);
  assert.equal(d.allocIova(1, lim64, true), lim64 - 1);
});

Deno.test("reserve_iova keeps a range out of allocation", () => {
  const d = new IovaDomain(4096, 1);
  d.reserveIova(0xfee00, 0xfefff); // MSI window
  d.reserveIova(0xff000, 0xfffff);
  assert.equal(d.allocIova(1, LIMIT32, true), 0xfedff);
  assert.deepEqual(d.findIova(0xfef00), [0xfee00, 0xfefff]);
  assert.equal(d.findIova(0x100), null);
});

Deno.test("IOVA 0 is never handed out (start_pfn 1)", () => {
  const d = new IovaDomain(4096, 1);
  for (let i = 0; i < 8; i++) d.allocIova(1, 7, false);
  assert.ok(d.ranges().every(([lo]) => lo >= 1));
  assert.equal(d.rangeCount, 7);
});

Deno.test("order_base_2 and roundup_pow_of_two", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 32, 33].map(orderBase2), [0, 1, 2, 2, 3, 5, 6]);
  assert.deepEqual([1, 3, 5, 31].map(roundupPowOfTwo), [1, 4, 8, 32]);
});

Deno.test("alloc_iova_fast rounds small sizes up and reuses freed PFNs from the rcache", () => {
  const d = new IovaDomain(4096, 1);
  const a = d.allocIovaFast(3, LIMIT32, true);
  assert.equal(a, 0xffffc); // rounded to 4, aligned
  d.freeIovaFast(a, 3); // order_base_2(3) = 2: the 4-page cache
  assert.equal(d.cachedCount(2), 1);
  assert.equal(d.rangeCount, 1, "the range stays allocated in the tree while cached");
  const b = d.allocIovaFast(4, LIMIT32, true);
  assert.equal(b, a);
  assert.equal(d.counters.rcacheHits, 1);
});

Deno.test("the rcache pops LIFO and skips PFNs above the limit", () => {
  const d = new IovaDomain(4096, 1);
  const hi = d.allocIovaFast(1, 2 ** 36 - 1, true);
  const lo = d.allocIovaFast(1, LIMIT32, true);
  d.freeIovaFast(lo, 1);
  d.freeIovaFast(hi, 1);
  // 32-bit limit: the top (hi) is above it, so lo comes out
  assert.equal(d.allocIovaFast(1, LIMIT32, true), lo);
  assert.equal(d.allocIovaFast(1, 2 ** 36 - 1, true), hi);
});

Deno.test("sizes of 64 pages and more bypass the range caches", () => {
  const d = new IovaDomain(4096, 1);
  const a = d.allocIovaFast(64, LIMIT32, true);
  d.freeIovaFast(a, 64);
  assert.equal(d.rangeCount, 0);
  assert.equal(d.counters.treeFrees, 1);
});

Deno.test("magazines of 127 overflow into the depot; the depot work trims to the CPU count", () => {
  const clock = new VirtualClock();
  const d = new IovaDomain(4096, 1, { cpus: 1, timer: clock });
  const pfns: number[] = [];
  for (let i = 0; i < 3 * IOVA_MAG_SIZE + 1; i++) pfns.push(d.allocIovaFast(1, LIMIT32, true));
  for (const p of pfns) d.freeIovaFast(p, 1);
  // loaded full (127) -> swap with prev -> prev full too -> push loaded to depot
  assert.equal(d.depotSize(0), 2);
  assert.equal(d.cachedCount(0), 3 * IOVA_MAG_SIZE + 1);
  clock.advance(IOVA_DEPOT_DELAY_NS);
  assert.equal(d.depotSize(0), 1, "one magazine freed per run while depot > cpus");
  clock.advance(IOVA_DEPOT_DELAY_NS);
  assert.equal(d.depotSize(0), 1);
  assert.equal(d.cachedCount(0), 2 * IOVA_MAG_SIZE + 1);
});

Deno.test("alloc_iova_fast flushes every CPU cache and the depot, then retries once", () => {
  const d = new IovaDomain(4096, 1, { cpus: 2 });
  const a = d.allocIovaFast(1, 3, true, 0);
  const b = d.allocIovaFast(1, 3, true, 0);
  const c = d.allocIovaFast(1, 3, true, 0);
  assert.deepEqual([a, b, c], [3, 2, 1]);
  d.freeIovaFast(a, 1, 1); // cached on CPU 1
  d.freeIovaFast(b, 1, 1);
  // CPU 0 has nothing cached and the tree is full: a 2-page request must flush
  assert.equal(d.allocIovaFast(2, 3, false, 0), 0, "no flush without flush_rcache");
  assert.equal(d.allocIovaFast(2, 3, true, 0), 2);
  assert.equal(d.counters.rcacheFlushes, 1);
  assert.equal(d.cachedCount(0), 0);
});

Deno.test("property: tree allocations never overlap, stay in range and are size-aligned", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.record({ op: fc.constant("alloc" as const), size: fc.integer({ min: 1, max: 40 }) }),
          fc.record({ op: fc.constant("free" as const), k: fc.nat() }),
        ),
        { maxLength: 80 },
      ),
      (ops) => {
        const limit = 511;
        const d = new IovaDomain(4096, 1);
        const live: [number, number][] = [];
        const used = new Uint8Array(limit + 1);
        for (const o of ops) {
          if (o.op === "alloc") {
            const pfn = d.allocIova(o.size, limit, true);
            if (pfn === 0) continue;
            assert.ok(pfn >= 1 && pfn + o.size - 1 <= limit);
            assert.equal(pfn % roundupPowOfTwo(o.size), 0);
            for (let i = pfn; i < pfn + o.size; i++) {
              assert.equal(used[i], 0);
              used[i] = 1;
            }
            live.push([pfn, o.size]);
          } else if (live.length) {
            const [pfn, size] = live.splice(o.k % live.length, 1)[0];
            assert.equal(d.freeIova(pfn), true);
            for (let i = pfn; i < pfn + size; i++) used[i] = 0;
          }
        }
        assert.equal(d.rangeCount, live.length);
      },
    ),
    { numRuns: 150 },
  );
});

Deno.test("property: without frees the allocator is a top-down highest fit", () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 16 }), { maxLength: 40 }), (sizes) => {
      const d = new IovaDomain(4096, 1);
      let top = 1024; // exclusive
      for (const s of sizes) {
        const align = roundupPowOfTwo(s);
        const expect = Math.floor((top - s) / align) * align;
        const got = d.allocIova(s, 1023, true);
        if (expect < 1) {
          assert.equal(got, 0);
          break;
        }
        assert.equal(got, expect);
        top = expect;
      }
    }),
    { numRuns: 100 },
  );
});

Deno.test("the 32-bit cached node is shared across limits: a higher limit is served below it, then by the retry from the limit (iova.c)", () => {
  const d = new IovaDomain(4096, 1);
  assert.equal(d.allocIova(1, 3, true), 3); // cached32 -> 3
  assert.equal(d.allocIova(1, 15, true), 2, "walks down from the cached node, not from 15");
  assert.equal(d.allocIova(1, 15, true), 1);
  assert.equal(
    d.allocIova(1, 15, true),
    15,
    "nothing below: retry between the cached node and the limit",
  );
  assert.equal(d.allocIova(1, 15, true), 14);
});

Deno.test("many outstanding ranges: 5000 allocations and frees in any order keep the set exact", () => {
  const d = new IovaDomain(4096, 1);
  const pfns: number[] = [];
  for (let i = 0; i < 5000; i++) pfns.push(d.allocIova(1, LIMIT32, true));
  assert.equal(pfns[4999], LIMIT32 - 4999);
  for (let i = 0; i < 5000; i += 2) assert.equal(d.freeIova(pfns[i]), true);
  assert.equal(d.rangeCount, 2500);
  assert.deepEqual(d.findIova(pfns[1]), [pfns[1], pfns[1]]);
  assert.equal(d.findIova(pfns[0]), null);
});

/** The range caches written plainly: per order, per CPU a loaded and a previous magazine, and a depot. */
class RcacheReference {
  readonly loaded: number[][][] = [];
  readonly prev: number[][][] = [];
  readonly depot: number[][][] = [];
  constructor(cpus: number) {
    for (let o = 0; o < 6; o++) {
      this.loaded.push(Array.from({ length: cpus }, () => []));
      this.prev.push(Array.from({ length: cpus }, () => []));
      this.depot.push([]);
    }
  }
  insert(pfn: number, size: number, cpu: number): boolean {
    const o = orderBase2(size);
    if (o >= 6) return false;
    if (this.loaded[o][cpu].length === IOVA_MAG_SIZE) {
      if (this.prev[o][cpu].length < IOVA_MAG_SIZE) {
        [this.loaded[o][cpu], this.prev[o][cpu]] = [this.prev[o][cpu], this.loaded[o][cpu]];
      } else {
        this.depot[o].push(this.loaded[o][cpu]);
        this.loaded[o][cpu] = [];
      }
    }
    this.loaded[o][cpu].push(pfn);
    return true;
  }
  /** A cached PFN for `size` pages ending at or below `limit` (inclusive), or 0. */
  get(size: number, limit: number, cpu: number): number {
    const o = orderBase2(size);
    if (o >= 6) return 0;
    if (this.loaded[o][cpu].length === 0) {
      if (this.prev[o][cpu].length > 0) {
        [this.loaded[o][cpu], this.prev[o][cpu]] = [this.prev[o][cpu], this.loaded[o][cpu]];
      } else if (this.depot[o].length > 0) this.loaded[o][cpu] = this.depot[o].pop()!;
      else return 0;
    }
    const mag = this.loaded[o][cpu];
    for (let i = mag.length - 1; i >= 0; i--) {
      if (mag[i] <= limit + 1 - size) {
        const pfn = mag[i];
        mag[i] = mag[mag.length - 1];
        mag.pop();
        return pfn;
      }
    }
    return 0;
  }
}

Deno.test("property: the range caches hand out exactly what a plain magazine/depot model predicts", () => {
  const op = fc.record({
    free: fc.boolean(),
    size: fc.constantFrom(1, 1, 1, 2, 3, 5, 8, 17, 40),
    limit: fc.constantFrom(LIMIT32, LIMIT32, LIMIT32 - 1, LIMIT32 - 3, 2 ** 36 - 1, 0x7ffff),
    cpu: fc.nat(1),
    pick: fc.nat(1000),
    burst: fc.constantFrom(1, 1, 130, 300),
  });
  fc.assert(
    fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
      const d = new IovaDomain(4096, 1, { cpus: 2 });
      const ref = new RcacheReference(2);
      const live: [number, number][] = [];
      for (const o of ops) {
        for (let k = 0; k < o.burst; k++) {
          if (o.free) {
            if (live.length === 0) break;
            const [pfn, size] = live.splice(o.pick % live.length, 1)[0];
            const before = d.counters.treeFrees;
            d.freeIovaFast(pfn, size, o.cpu);
            const cached = ref.insert(pfn, size, o.cpu);
            assert.equal(d.counters.treeFrees - before, cached ? 0 : 1);
          } else {
            const want = ref.get(o.size < 32 ? roundupPowOfTwo(o.size) : o.size, o.limit, o.cpu);
            const hits = d.counters.rcacheHits;
            const pfn = d.allocIovaFast(o.size, o.limit, true, o.cpu);
            assert.ok(pfn > 0);
            if (want !== 0) assert.equal(pfn, want, "a range-cache hit");
            else assert.equal(d.counters.rcacheHits, hits, "a miss goes to the tree");
            live.push([pfn, o.size]);
          }
        }
      }
      for (let o = 0; o < 6; o++) {
        let n = 0;
        for (let c = 0; c < 2; c++) n += ref.loaded[o][c].length + ref.prev[o][c].length;
        for (const m of ref.depot[o]) n += m.length;
        assert.equal(d.cachedCount(o), n, `order ${o}`);
      }
    }),
    { numRuns: 60, seed: 0x1ca },
  );
});

Deno.test("the rcache never hands out a range ending one PFN above the limit", () => {
  const d = new IovaDomain(4096, 1);
  const top = d.allocIovaFast(1, LIMIT32, true);
  const two = d.allocIovaFast(2, LIMIT32, true);
  d.freeIovaFast(top, 1);
  d.freeIovaFast(two, 2);
  // top is 0xfffff: above a 0xffffe limit; the 2-page range ends at two + 1.
  const a = d.allocIovaFast(1, LIMIT32 - 1, true);
  assert.notEqual(a, top);
  assert.ok(a <= LIMIT32 - 1);
  const b = d.allocIovaFast(2, two, true);
  assert.notEqual(b, two, "two + 1 is above the limit");
  assert.ok(b + 1 <= two);
  assert.equal(d.allocIovaFast(2, two + 1, true), two);
});
