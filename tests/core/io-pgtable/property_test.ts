/**
 * Property tests on every format: random map/unmap sequences with mixed page
 * sizes, with allocation failures injected into some maps, compared with a
 * plain reference model of the mappings; iovaToPhys agrees after every step
 * and every table page comes back at the end.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { IOMMU_READ, IOMMU_WRITE, IommuError, IotlbGather, pgsizesOf } from "@iommu-lab/core";
import { CONFIGS, levelOf, makeTable, releaseGather } from "./helpers.ts";

interface Mapping {
  iova: number;
  size: number;
  paddr: number;
}

/** The reference: mappings by iova, with the kernel's rules written plainly. */
class Reference {
  readonly maps = new Map<number, Mapping>();

  overlapping(a: number, len: number): Mapping[] {
    const out: Mapping[] = [];
    for (const m of this.maps.values()) if (m.iova < a + len && a < m.iova + m.size) out.push(m);
    return out;
  }

  lookup(iova: number): number {
    const [m] = this.overlapping(iova, 1);
    return m ? m.paddr + (iova - m.iova) : 0;
  }

  /** Pages go in per last-level table; a table with any overlap fails whole. */
  map(iova: number, paddr: number, size: number, count: number, chunkSpan: number) {
    let done = 0;
    while (done < count) {
      const at = iova + done * size;
      const n = Math.min(count - done, (chunkSpan - (at % chunkSpan)) / size);
      if (this.overlapping(at, n * size).length > 0) return { ok: false, mapped: done * size };
      for (let k = 0; k < n; k++) {
        const m = { iova: at + k * size, size, paddr: paddr + (done + k) * size };
        this.maps.set(m.iova, m);
      }
      done += n;
    }
    return { ok: true, mapped: done * size };
  }

  /** Stops at a hole or a larger mapping; an entry of `size` takes everything inside it. */
  unmap(iova: number, size: number, count: number): number {
    let done = 0;
    for (; done < count; done++) {
      const a = iova + done * size;
      const hit = this.overlapping(a, size);
      if (hit.length === 0 || hit.some((m) => m.size > size)) break;
      for (const m of hit) this.maps.delete(m.iova);
    }
    return done * size;
  }
}

const RW = IOMMU_READ | IOMMU_WRITE;

const opArb = fc.record({
  unmap: fc.boolean(),
  anchor: fc.nat(5),
  sizeIdx: fc.nat(3),
  j: fc.nat(4),
  count: fc.integer({ min: 1, max: 6 }),
  pseed: fc.nat(400),
  failAt: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 1, max: 3 })),
});

for (const [name, fmt, over] of CONFIGS) {
  Deno.test(`${name}: random map/unmap sequences (with injected ENOMEM) agree with a reference model`, () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 24 }), (ops) => {
        const { t, pages } = makeTable(fmt, over);
        const ref = new Reference();
        const sizes = pgsizesOf(t.cfg.pgsizeBitmap).filter((s) => s <= 2 ** 30);
        const g = t.granule;
        const span = t.blockSize(t.levels - 2);
        const big = sizes[sizes.length - 1];
        const anchors = [0, span, 3 * span, big, 2 * big + span, 4 * big];
        const probes = new Set<number>();
        for (const a of anchors) {
          for (const d of [-g, 0, g, span - g]) if (a + d >= 0) probes.add(a + d);
        }
        for (const op of ops) {
          const s = sizes[op.sizeIdx % sizes.length];
          const base = anchors[op.anchor] - (anchors[op.anchor] % s);
          const iova = Math.max(0, base + (op.j - 2) * s);
          if (op.unmap) {
            const gather = new IotlbGather();
            const got = t.unmapPages(iova, s, op.count, gather);
            releaseGather(pages, gather);
            assert.equal(
              got,
              ref.unmap(iova, s, op.count),
              `unmap 0x${iova.toString(16)} x${op.count}`,
            );
          } else {
            const paddr = op.pseed * s;
            const l = levelOf(t, s);
            const chunk = l > 0 ? t.blockSize(l - 1) : Infinity;
            const before = new Map(ref.maps);
            const want = ref.map(iova, paddr, s, op.count, chunk);
            pages.failAt(op.failAt);
            try {
              assert.equal(t.mapPages(iova, paddr, s, op.count, RW), op.count * s);
              assert.ok(want.ok, "the model mapped where the reference refuses");
            } catch (e) {
              if (!(e instanceof IommuError)) throw e;
              const got = e.detail.mapped ?? -1;
              if (e.errno === "ENOMEM") {
                // Injected failure: what was mapped is a prefix of what the
                // reference would map; the rest is untouched.
                assert.ok(op.failAt > 0, e.message);
                assert.ok(got <= want.mapped && got % s === 0, e.message);
                ref.maps.clear();
                for (const [k, v] of before) ref.maps.set(k, v);
                assert.ok(ref.map(iova, paddr, s, got / s, chunk).ok);
              } else {
                assert.equal(e.errno, "EEXIST", e.message);
                assert.ok(!want.ok, e.message);
                assert.equal(got, want.mapped);
              }
            }
            pages.failAt(0);
          }
          for (const m of ref.maps.values()) {
            assert.equal(t.iovaToPhys(m.iova), m.paddr);
            assert.equal(t.iovaToPhys(m.iova + m.size - 8), m.paddr + m.size - 8);
          }
          for (const p of probes) assert.equal(t.iovaToPhys(p + 16), ref.lookup(p + 16));
        }
        for (const m of [...ref.maps.values()]) {
          const gather = new IotlbGather();
          assert.equal(t.unmapPages(m.iova, m.size, 1, gather), m.size);
          releaseGather(pages, gather);
        }
        assert.equal(t.tablePages, 1, "only the root is left");
        t.free();
        assert.equal(pages.stats.pagesInUse, 0);
      }),
      { numRuns: 40, seed: 0x10ba },
    );
  });
}
