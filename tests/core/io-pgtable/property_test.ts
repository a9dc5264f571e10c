/**
 * Property tests on every format: random map/unmap sequences with mixed page
 * sizes, with allocation failures injected into some maps, compared with a
 * plain reference model of the mappings; iovaToPhys agrees after every step
 * and every table page comes back at `free()` (with `freeEmptyTables`, the
 * model experiment, already when the last mapping goes). A second property
 * checks table-page accounting against the kernel's rule: a table is freed
 * only when an unmap covers its span (a table entry at the unmap size; on
 * the Intel formats any covered lower table), never because it became empty.
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

/** Table pages under the kernel's rule, keyed `level:base` (the root is not listed). */
class TableReference {
  readonly tables = new Set<string>();
  constructor(readonly spans: number[], readonly freesCovered: boolean) {}

  key(l: number, iova: number): string {
    return `${l}:${Math.floor(iova / this.spans[l]) * this.spans[l]}`;
  }

  /** A page of `size` mapped at `iova` by a leaf at `level`: its path tables exist. */
  mapPage(iova: number, size: number, level: number): void {
    // A block over a table that maps nothing replaces the table's subtree.
    if (this.tables.has(this.key(level + 1, iova))) this.drop(iova, iova + size, level + 1);
    for (let l = 1; l <= level; l++) this.tables.add(this.key(l, iova));
  }

  /** Unmap of [start, end) at a leaf level: tables whose span it covers go, under the format's rule. */
  unmap(start: number, end: number, level: number): void {
    this.drop(start, end, this.freesCovered ? 1 : level + 1);
  }

  /** Forget every table at `minLevel` or deeper whose span lies inside [start, end). */
  drop(start: number, end: number, minLevel: number): void {
    for (const k of [...this.tables]) {
      const [l, base] = k.split(":").map(Number);
      if (l >= minLevel && base >= start && base + this.spans[l] <= end) this.tables.delete(k);
    }
  }
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

  /**
   * Stops at a hole or a larger mapping; an entry of `size` (at `level`)
   * takes everything inside it. With `tables`, an entry that holds a table
   * (even one that maps nothing) is not a hole: the table goes with it.
   */
  unmap(
    iova: number,
    size: number,
    count: number,
    level: number,
    tables: TableReference | null,
  ): number {
    let done = 0;
    for (; done < count; done++) {
      const a = iova + done * size;
      const hit = this.overlapping(a, size);
      const table = tables !== null && level + 1 < tables.spans.length &&
        tables.tables.has(tables.key(level + 1, a));
      if ((hit.length === 0 && !table) || hit.some((m) => m.size > size)) break;
      for (const m of hit) this.maps.delete(m.iova);
      if (tables !== null) tables.drop(a, a + size, level + 1);
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

for (const [cname, fmt, cover] of CONFIGS) {
  for (const freeEmptyTables of [false, true]) {
    const name = freeEmptyTables ? `${cname} freeEmptyTables` : cname;
    const over = freeEmptyTables ? { ...cover, freeEmptyTables } : cover;
    Deno.test(`${name}: random map/unmap sequences (with injected ENOMEM) agree with a reference model`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { maxLength: 24 }), (ops) => {
          const { t, pages } = makeTable(fmt, over);
          const ref = new Reference();
          const spans = [0];
          for (let l = 1; l < t.levels; l++) spans.push(t.blockSize(l - 1));
          // Table pages under the kernel rule (the experiment frees empty ones instead).
          const tables = freeEmptyTables
            ? null
            : new TableReference(spans, fmt === "X86_64" || fmt === "VTD_SS");
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
                ref.unmap(iova, s, op.count, levelOf(t, s), tables),
                `unmap 0x${iova.toString(16)} x${op.count}`,
              );
            } else {
              const paddr = op.pseed * s;
              const l = levelOf(t, s);
              const chunk = l > 0 ? t.blockSize(l - 1) : Infinity;
              const before = new Map(ref.maps);
              const want = ref.map(iova, paddr, s, op.count, chunk);
              pages.failAt(op.failAt);
              let mapped = 0;
              try {
                assert.equal(t.mapPages(iova, paddr, s, op.count, RW), op.count * s);
                assert.ok(want.ok, "the model mapped where the reference refuses");
                mapped = op.count * s;
              } catch (e) {
                if (!(e instanceof IommuError)) throw e;
                const got = e.detail.mapped ?? -1;
                if (e.errno === "ENOMEM") {
                  // Injected failure: what was mapped is a prefix of what the
                  // reference would map; the rest is untouched.
                  assert.ok(op.failAt > 0, e.message);
                  assert.ok(got <= want.mapped && got % s === 0, e.message);
                  mapped = got;
                  ref.maps.clear();
                  for (const [k, v] of before) ref.maps.set(k, v);
                  assert.ok(ref.map(iova, paddr, s, got / s, chunk).ok);
                } else {
                  assert.equal(e.errno, "EEXIST", e.message);
                  assert.ok(!want.ok, e.message);
                  assert.equal(got, want.mapped);
                  mapped = got;
                }
              }
              for (let k = 0; tables !== null && k < mapped / s; k++) {
                tables.mapPage(iova + k * s, s, l);
              }
              pages.failAt(0);
            }
            for (const m of ref.maps.values()) {
              assert.equal(t.iovaToPhys(m.iova), m.paddr);
              assert.equal(t.iovaToPhys(m.iova + m.size - 8), m.paddr + m.size - 8);
            }
            for (const p of probes) {
              assert.equal(t.iovaToPhys(p + 16), ref.lookup(p + 16));
            }
            if (tables !== null) assert.equal(t.tablePages, 1 + tables.tables.size);
          }
          for (const m of [...ref.maps.values()]) {
            const gather = new IotlbGather();
            assert.equal(t.unmapPages(m.iova, m.size, 1, gather), m.size);
            releaseGather(pages, gather);
            tables?.unmap(m.iova, m.iova + m.size, levelOf(t, m.size));
          }
          if (tables !== null) assert.equal(t.tablePages, 1 + tables.tables.size);
          if (freeEmptyTables) assert.equal(t.tablePages, 1, "only the root is left");
          t.free();
          assert.equal(pages.stats.pagesInUse, 0);
        }),
        { numRuns: 40, seed: 0x10ba },
      );
    });
  }
}

const accOpArb = fc.record({
  kind: fc.constantFrom("map", "map", "unmap", "region"),
  at: fc.nat(7),
  shape: fc.nat(7),
  pick: fc.nat(50),
});

for (const [name, fmt, over] of CONFIGS) {
  const covered = fmt === "X86_64" || fmt === "VTD_SS";
  Deno.test(
    `${name}: table pages follow the kernel's rule (${
      covered ? "covered tables are freed" : "only table entries at the unmap size are freed"
    })`,
    () => {
      fc.assert(
        fc.property(fc.array(accOpArb, { maxLength: 20 }), (ops) => {
          const { t, pages } = makeTable(fmt, over);
          const g = t.granule;
          const L = t.levels - 1; // leaf level of a page
          const span = t.blockSize(L - 1);
          const per = span / g;
          const spans = [0];
          for (let l = 1; l < t.levels; l++) spans.push(t.blockSize(l - 1));
          const ref = new TableReference(spans, covered);
          const page0 = pages.stats.pagesInUse;
          const perTable = g / 0x1000;
          const allocs: { iova: number; size: number; count: number }[] = [];
          const overlaps = (a: number, b: number) =>
            allocs.some((m) => m.iova < b && a < m.iova + m.size * m.count);
          const starts = [
            0,
            span - 3 * g,
            span,
            3 * span + 5 * g,
            8 * span,
            9 * span - g,
            12 * span,
            16 * span,
          ];
          const shapes: [number, number][] = [
            [g, 1],
            [g, 3],
            [g, per - 2],
            [g, per],
            [g, per + 7],
            [g, 2 * per],
            [span, 1],
            [span, 2],
          ];
          for (const op of ops) {
            if (op.kind === "map") {
              const [size, count] = shapes[op.shape];
              const iova = starts[op.at] - (starts[op.at] % size);
              if (overlaps(iova, iova + size * count)) continue;
              assert.equal(t.mapPages(iova, 0, size, count, RW), size * count);
              allocs.push({ iova, size, count });
              const level = levelOf(t, size);
              for (let k = 0; k < count; k++) ref.mapPage(iova + k * size, size, level);
            } else if (op.kind === "unmap") {
              if (allocs.length === 0) continue;
              const [m] = allocs.splice(op.pick % allocs.length, 1);
              const gather = new IotlbGather();
              assert.equal(t.unmapPages(m.iova, m.size, m.count, gather), m.size * m.count);
              releaseGather(pages, gather);
              ref.unmap(m.iova, m.iova + m.size * m.count, levelOf(t, m.size));
            } else {
              // An unmap at the last-level table's span over a region.
              const b = starts[op.at] - (starts[op.at] % span);
              const inside = allocs.filter((m) =>
                m.iova < b + span && b < m.iova + m.size * m.count
              );
              if (inside.some((m) => m.iova < b || m.iova + m.size * m.count > b + span)) continue;
              const present = inside.length > 0 || ref.tables.has(ref.key(L, b));
              const gather = new IotlbGather();
              assert.equal(t.unmapPages(b, span, 1, gather), present ? span : 0);
              releaseGather(pages, gather);
              for (const m of inside) allocs.splice(allocs.indexOf(m), 1);
              if (present) ref.unmap(b, b + span, L - 1);
            }
            assert.equal(t.tablePages, 1 + ref.tables.size, [...ref.tables].join(" "));
            assert.equal(pages.stats.pagesInUse, page0 + ref.tables.size * perTable);
            for (const m of allocs) {
              assert.equal(t.iovaToPhys(m.iova + m.size * m.count - 8) > 0, true);
            }
          }
          t.free();
          assert.equal(pages.stats.pagesInUse, 0);
        }),
        { numRuns: 30, seed: 0x7ab1e },
      );
    },
  );
}
