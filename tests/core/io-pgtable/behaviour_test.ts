/**
 * Kernel io-pgtable behaviour, checked on every format: EEXIST with
 * detail.mapped, pgcount across tables, partial-block and empty unmaps,
 * the kernel's table lifetime (a table is freed only when an unmap covers
 * its span: a table entry at the unmap size everywhere, a covered lower
 * table on the Intel formats; empty tables otherwise stay), flush callbacks,
 * allocation-failure rollback, refusals that change nothing, and the
 * `freeEmptyTables` model experiment.
 */
import assert from "node:assert/strict";
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE, IommuError, IotlbGather } from "@iommu-lab/core";
import type { IoPgtableCfg, IoPgtableFormat } from "@iommu-lab/core/io-pgtable";
import { CONFIGS, makeTable, releaseGather, snapshot, SZ_1G, SZ_2M, SZ_4K } from "./helpers.ts";

const RW = IOMMU_READ | IOMMU_WRITE;

function setup(fmt: IoPgtableFormat, over: Partial<IoPgtableCfg>) {
  const r = makeTable(fmt, over);
  const g = r.t.granule;
  const span = r.t.blockSize(r.t.levels - 2); // what one last-level table covers
  return { ...r, g, span };
}

/** The Intel formats free a lower table whose whole range an unmap covers (dma_pte_clear_level). */
function freesCovered(fmt: IoPgtableFormat): boolean {
  return fmt === "X86_64" || fmt === "VTD_SS";
}

function isErr(errno: string, re?: RegExp) {
  return (e: unknown) =>
    e instanceof IommuError && e.errno === errno && (!re || re.test(e.message));
}

for (const [name, fmt, over] of CONFIGS) {
  Deno.test(`${name}: map over a live page fails with EEXIST after mapping the earlier tables' pages`, () => {
    const { t, g, span } = setup(fmt, over);
    const base = 4 * span;
    t.mapPages(base + 2 * g, 0x7700_0000, g, 1, RW);
    let err: unknown;
    try {
      t.mapPages(base - 3 * g, 0x100_0000, g, 10, RW | IOMMU_CACHE);
    } catch (e) {
      err = e;
    }
    assert.ok(isErr("EEXIST", /already mapped/)(err), String(err));
    assert.equal((err as IommuError).detail.mapped, 3 * g);
    assert.equal(t.iovaToPhys(base - 3 * g), 0x100_0000);
    assert.equal(t.iovaToPhys(base - g + 1), 0x100_0000 + 2 * g + 1);
    assert.equal(t.iovaToPhys(base), 0, "the failing table's pages stay unmapped");
    assert.equal(t.iovaToPhys(base + g), 0);
    assert.equal(t.iovaToPhys(base + 2 * g), 0x7700_0000, "the live page is untouched");
  });

  Deno.test(`${name}: mapping inside a live block fails with EEXIST and maps nothing`, () => {
    const { t, g, span, mem } = setup(fmt, over);
    t.mapPages(span, span, span, 1, RW);
    const before = snapshot(mem);
    assert.throws(() => t.mapPages(span + g, 0, g, 1, RW), isErr("EEXIST", /inside a live/));
    assert.throws(() => t.mapPages(span, 0, span, 1, RW), isErr("EEXIST"));
    assert.equal(snapshot(mem), before);
  });

  Deno.test(`${name}: pgcount runs across table boundaries`, () => {
    const { t, g, span, pages } = setup(fmt, over);
    const n = 2 * (span / g) + 3;
    const iova = span - g;
    assert.equal(t.mapPages(iova, 0x4000_0000, g, n, RW), n * g);
    for (const k of [0, 1, span / g, n - 1]) {
      assert.equal(t.iovaToPhys(iova + k * g + 8), 0x4000_0000 + k * g + 8, `page ${k}`);
    }
    assert.equal(t.iovaToPhys(iova + n * g), 0);
    const tables = t.tablePages;
    const g2 = new IotlbGather();
    assert.equal(t.unmapPages(iova, g, n, g2), n * g);
    for (const k of [0, 1, span / g, n - 1]) assert.equal(t.iovaToPhys(iova + k * g), 0);
    // The range covers the two middle last-level tables whole: the Intel
    // formats free them; io-pgtable-arm frees nothing on a page-size unmap.
    const freed = freesCovered(fmt) ? 2 : 0;
    assert.equal(g2.freelist.length, freed);
    assert.equal(releaseGather(pages, g2), freed);
    assert.equal(t.tablePages, tables - freed);
  });

  Deno.test(`${name}: unmap of part of a block returns 0 and changes nothing`, () => {
    const { t, g, span, mem, tlb } = setup(fmt, over);
    t.mapPages(2 * span, 0x8000_0000, span, 1, RW);
    const before = snapshot(mem);
    tlb.events.length = 0;
    assert.equal(t.unmapPages(2 * span + g, g, 1, new IotlbGather()), 0);
    assert.equal(t.unmapPages(2 * span, g, 1, new IotlbGather()), 0);
    assert.equal(snapshot(mem), before);
    assert.deepEqual(tlb.events, []);
    assert.equal(t.iovaToPhys(2 * span + g + 1), 0x8000_0000 + g + 1);
  });

  Deno.test(`${name}: unmap of an empty slot returns 0 and stops at the first hole`, () => {
    const { t, g, pages } = setup(fmt, over);
    assert.equal(t.unmapPages(0, g, 1, new IotlbGather()), 0);
    t.mapPages(0, 0x10_0000, g, 2, RW);
    const tables = t.tablePages;
    const gather = new IotlbGather();
    assert.equal(t.unmapPages(0, g, 5, gather), 2 * g);
    assert.equal(releaseGather(pages, gather), 0, "no table is covered: none is freed");
    assert.equal(t.tablePages, tables);
  });

  Deno.test(`${name}: an unmap that empties tables invalidates the leaves and keeps the tables`, () => {
    const { t, g, pages, tlb } = setup(fmt, over);
    t.mapPages(g, 0x20_0000, g, 3, RW);
    const inUse = pages.stats.pagesInUse;
    const tables = t.tablePages;
    assert.equal(tables, t.levels, "root plus one table per lower level");
    tlb.events.length = 0;
    const gather = new IotlbGather();
    assert.equal(t.unmapPages(g, g, 3, gather), 3 * g);
    assert.deepEqual(tlb.events, [
      { kind: "page", iova: g, granule: g },
      { kind: "page", iova: 2 * g, granule: g },
      { kind: "page", iova: 3 * g, granule: g },
    ]);
    assert.equal(gather.start, g);
    assert.equal(gather.end, 4 * g - 1);
    assert.equal(gather.freelist.length, 0);
    assert.equal(t.tablePages, tables);
    assert.equal(pages.stats.pagesInUse, inUse);
    // The empty tables are reused: mapping there again allocates nothing.
    t.mapPages(5 * g, 0x30_0000, g, 1, RW);
    assert.equal(pages.stats.pagesInUse, inUse);
    assert.equal(t.iovaToPhys(5 * g + 1), 0x30_0001);
  });

  Deno.test(`${name}: freeEmptyTables (model experiment): leaf invalidations first, then empty tables are flushed and gathered`, () => {
    const { t, g, span, pages, tlb } = setup(fmt, { ...over, freeEmptyTables: true });
    t.mapPages(g, 0x20_0000, g, 3, RW);
    const inUse = pages.stats.pagesInUse;
    tlb.events.length = 0;
    const gather = new IotlbGather();
    assert.equal(t.unmapPages(g, g, 3, gather), 3 * g);
    const kinds = tlb.events.map((e) => e.kind);
    const tables = t.levels - 1;
    assert.deepEqual(kinds, ["page", "page", "page", ...Array(tables).fill("walk")]);
    assert.deepEqual(tlb.events[0], { kind: "page", iova: g, granule: g });
    assert.deepEqual(tlb.events[3], { kind: "walk", iova: 0, size: span, granule: g });
    assert.equal(gather.start, g);
    assert.equal(gather.end, 4 * g - 1);
    assert.equal(gather.freelist.length, tables);
    assert.equal(
      pages.stats.pagesInUse,
      inUse,
      "gathered pages are freed by the caller after sync",
    );
    releaseGather(pages, gather);
    assert.equal(pages.stats.pagesInUse, inUse - tables * (g / SZ_4K));
    assert.equal(t.tablePages, 1);
  });

  Deno.test(`${name}: a queued gather gets no tlbAddPage; a freed table with no gather goes back at once`, () => {
    const { t, g, span, pages, tlb } = setup(fmt, over);
    t.mapPages(0, 0, g, 1, RW);
    tlb.events.length = 0;
    const gather = new IotlbGather();
    gather.queued = true;
    assert.equal(t.unmapPages(0, g, 1, gather), g);
    assert.deepEqual(tlb.events, []);
    assert.equal(gather.freelist.length, 0);
    t.mapPages(0, 0, g, 1, RW);
    const inUse = pages.stats.pagesInUse;
    // A table entry at the unmap size: the last-level table is freed, no gather to wait for.
    assert.equal(t.unmapPages(0, span, 1, null), span);
    assert.deepEqual(tlb.events, [{ kind: "walk", iova: 0, size: span, granule: g }]);
    assert.equal(pages.stats.pagesInUse, inUse - g / SZ_4K);
  });

  Deno.test(`${name}: freeEmptyTables (model experiment): with no gather an emptied table is freed at once`, () => {
    const { t, g, pages } = setup(fmt, { ...over, freeEmptyTables: true });
    t.mapPages(0, 0, g, 1, RW);
    assert.equal(t.unmapPages(0, g, 1, null), g);
    assert.equal(pages.stats.pagesInUse * SZ_4K, t.rootBytes < SZ_4K ? SZ_4K : t.rootBytes);
  });

  Deno.test(`${name}: a block over a table that maps nothing replaces it (walk flushed, table freed)`, () => {
    const { t, g, span, pages, tlb } = setup(fmt, over);
    t.mapPages(5 * span + 2 * g, 0x7000_0000, g, 2, RW);
    assert.equal(t.unmapPages(5 * span + 2 * g, g, 2, null), 2 * g);
    const tables = t.tablePages;
    const inUse = pages.stats.pagesInUse;
    tlb.events.length = 0;
    assert.equal(t.mapPages(5 * span, 0x8000_0000, span, 1, RW), span);
    assert.deepEqual(tlb.events, [{ kind: "walk", iova: 5 * span, size: span, granule: g }]);
    assert.equal(t.tablePages, tables - 1);
    assert.equal(pages.stats.pagesInUse, inUse - g / SZ_4K);
    assert.equal(t.iovaToPhys(5 * span + 3 * g + 4), 0x8000_0000 + 3 * g + 4);
  });

  Deno.test(`${name}: a block over a table that still maps a page fails with EEXIST and changes nothing`, () => {
    const { t, g, span, mem } = setup(fmt, over);
    t.mapPages(5 * span + 2 * g, 0x7000_0000, g, 2, RW);
    t.unmapPages(5 * span + 2 * g, g, 1, null);
    const before = snapshot(mem);
    assert.throws(() => t.mapPages(5 * span, 0x8000_0000, span, 1, RW), isErr("EEXIST"));
    assert.equal(snapshot(mem), before);
    assert.equal(t.iovaToPhys(5 * span + 3 * g), 0x7000_0000 + g);
  });

  Deno.test(`${name}: unmap at block size over a table of pages drops the whole table`, () => {
    const { t, g, span, pages, tlb } = setup(fmt, over);
    t.mapPages(3 * span + g, 0x1_0000, g, 2, RW);
    tlb.events.length = 0;
    const gather = new IotlbGather();
    assert.equal(t.unmapPages(3 * span, span, 1, gather), span);
    assert.deepEqual(tlb.events[0], { kind: "walk", iova: 3 * span, size: span, granule: g });
    assert.equal(t.iovaToPhys(3 * span + g), 0);
    assert.equal(gather.freelist.length, 1);
    const tables = t.tablePages;
    releaseGather(pages, gather);
    assert.equal(t.tablePages, tables, "the table left the bookkeeping at unmap");
    assert.equal(tables, t.levels - 1, "the upper tables stay");
  });

  Deno.test(`${name}: allocation failure leaves the table exactly as before`, () => {
    const { t, g, span, pages, mem } = setup(fmt, over);
    const before = snapshot(mem);
    const start = pages.stats.pagesInUse;
    pages.failAt(t.levels - 1);
    assert.throws(() => t.mapPages(5 * span, 0, g, 1, RW), (e) => {
      return isErr("ENOMEM")(e) && (e as IommuError).detail.mapped === 0;
    });
    assert.equal(snapshot(mem), before);
    assert.equal(pages.stats.pagesInUse, start);
    // Second table of a multi-table map fails: the first table's pages stay mapped.
    pages.failAt(t.levels);
    let err: unknown;
    try {
      t.mapPages(6 * span - g, 0x3000_0000, g, 3, RW);
    } catch (e) {
      err = e;
    }
    assert.ok(isErr("ENOMEM")(err), String(err));
    assert.equal((err as IommuError).detail.mapped, g);
    assert.equal(t.iovaToPhys(6 * span - g), 0x3000_0000);
    assert.equal(t.iovaToPhys(6 * span), 0);
    assert.equal(t.unmapPages(6 * span - g, g, 1, null), g);
    assert.equal(t.iovaToPhys(6 * span - g), 0);
    t.free();
    assert.equal(pages.stats.pagesInUse, 0);
  });

  Deno.test(`${name}: bad arguments are refused with EINVAL and change nothing`, () => {
    const { t, g, mem, pages } = setup(fmt, over);
    t.mapPages(0, 0, g, 1, RW);
    const before = snapshot(mem);
    const inUse = pages.stats.pagesInUse;
    const bad: [() => unknown, RegExp][] = [
      [() => t.mapPages(g / 2, 0, g, 1, RW), /iova .* not aligned/],
      [() => t.mapPages(g, g / 2, g, 1, RW), /paddr .* not aligned/],
      [() => t.mapPages(g, 0, g * 2, 1, RW), /not supported .* allowed/],
      [() => t.mapPages(g, 0, SZ_1G * 4, 1, RW), /allowed/],
      [() => t.mapPages(g, 0, g, 1, 0), /IOMMU_READ or IOMMU_WRITE/],
      [() => t.mapPages(g, 0, g, 1, IOMMU_CACHE), /IOMMU_READ or IOMMU_WRITE/],
      [() => t.mapPages(g, 0, g, 1, RW | 0x40), /only IOMMU_\* bits/],
      [() => t.mapPages(g, 0, g, -1, RW), /pgcount/],
    ];
    for (const [f, re] of bad) assert.throws(f, isErr("EINVAL", re), re.source);
    assert.equal(t.mapPages(g, 0, g, 0, RW), 0);
    // Unmap with bad arguments returns 0, as the kernel's WARN_ON paths do.
    assert.equal(t.unmapPages(g / 2, g, 1, null), 0);
    assert.equal(t.unmapPages(0, g * 2, 1, null), 0);
    assert.equal(t.unmapPages(0, g, 0, null), 0);
    assert.equal(t.iovaToPhys(-1), 0);
    assert.equal(snapshot(mem), before);
    assert.equal(pages.stats.pagesInUse, inUse);
  });

  Deno.test(`${name}: free returns every table page and later calls fail with EINVAL`, () => {
    const { t, g, span, pages } = setup(fmt, over);
    t.mapPages(0, 0, g, 4, RW);
    t.mapPages(7 * span, 0, span, 2, RW);
    t.mapPages(SZ_2M * 1024 * 8, 0, g, 1, RW);
    t.free();
    assert.equal(pages.stats.pagesInUse, 0);
    assert.throws(() => t.mapPages(0, 0, g, 1, RW), isErr("EINVAL", /freed/));
    assert.equal(t.iovaToPhys(0), 0);
  });
}

Deno.test("leaves() lists every mapping in iova order with its raw entry", () => {
  const { t } = makeTable("VTD_SS");
  t.mapPages(SZ_2M, 0x4000_0000, SZ_2M, 1, IOMMU_READ);
  t.mapPages(0x3000, 0x9000, SZ_4K, 2, RW);
  assert.deepEqual(t.leaves(), [
    { iova: 0x3000, size: SZ_4K, paddr: 0x9000, entry: 0x9003n },
    { iova: 0x4000, size: SZ_4K, paddr: 0xa000, entry: 0xa003n },
    { iova: SZ_2M, size: SZ_2M, paddr: 0x4000_0000, entry: 0x4000_0081n },
  ]);
});

for (const fmt of ["ARM_64_LPAE_S1", "X86_64", "VTD_SS"] as const) {
  Deno.test(
    `${fmt}: a 4K x 262144 unmap covering a whole 1G region ${
      freesCovered(fmt) ? "frees its directory and tables (dma_pte_clear_level)" : "frees no table"
    }`,
    () => {
      const { t, pages, tlb } = makeTable(fmt);
      const n = SZ_1G / SZ_4K;
      t.mapPages(SZ_1G, 0x4000_0000, SZ_4K, n, RW);
      const tables = t.tablePages; // root, level 1, one directory, 512 last-level tables
      assert.equal(tables, t.levels - 2 + 1 + 512);
      tlb.events.length = 0;
      const gather = new IotlbGather();
      assert.equal(t.unmapPages(SZ_1G, SZ_4K, n, gather), SZ_1G);
      assert.equal(t.iovaToPhys(SZ_1G + 0x1234_5000), 0);
      if (freesCovered(fmt)) {
        assert.deepEqual(tlb.events, [{ kind: "walk", iova: SZ_1G, size: SZ_1G, granule: SZ_4K }]);
        assert.equal(releaseGather(pages, gather), 513);
        assert.equal(t.tablePages, tables - 513);
      } else {
        assert.equal(tlb.events.length, n);
        assert.ok(tlb.events.every((e) => e.kind === "page"));
        assert.equal(releaseGather(pages, gather), 0);
        assert.equal(t.tablePages, tables);
      }
    },
  );

  Deno.test(`${fmt}: a 1G block over a subtree of empty tables replaces it whole`, () => {
    const { t, pages } = makeTable(fmt);
    t.mapPages(SZ_1G + SZ_2M * 3, 0x10_0000, SZ_4K, 1, RW);
    t.mapPages(SZ_1G + SZ_2M * 7, 0x10_0000, SZ_4K, 1, RW);
    t.unmapPages(SZ_1G + SZ_2M * 3, SZ_4K, 1, null);
    t.unmapPages(SZ_1G + SZ_2M * 7, SZ_4K, 1, null);
    const tables = t.tablePages;
    const inUse = pages.stats.pagesInUse;
    assert.equal(t.mapPages(SZ_1G, 0x4000_0000, SZ_1G, 1, RW), SZ_1G);
    assert.equal(t.tablePages, tables - 3, "the directory and its two tables");
    assert.equal(pages.stats.pagesInUse, inUse - 3);
    assert.equal(t.iovaToPhys(SZ_1G + SZ_2M * 3 + 8), 0x4000_0000 + SZ_2M * 3 + 8);
  });
}

Deno.test("VTD_SS: a 4K x 512 unmap covering a superpage clears it as dma_pte_clear_level does", () => {
  const { t, tlb } = makeTable("VTD_SS");
  t.mapPages(4 * SZ_2M, 0x4000_0000, SZ_2M, 1, RW);
  tlb.events.length = 0;
  const gather = new IotlbGather();
  assert.equal(t.unmapPages(4 * SZ_2M, SZ_4K, 512, gather), SZ_2M);
  assert.deepEqual(tlb.events, [{ kind: "page", iova: 4 * SZ_2M, granule: SZ_2M }]);
  assert.equal(t.iovaToPhys(4 * SZ_2M), 0);
  // A page-size unmap inside the superpage that does not cover it still changes nothing.
  t.mapPages(4 * SZ_2M, 0x4000_0000, SZ_2M, 1, RW);
  assert.equal(t.unmapPages(4 * SZ_2M, SZ_4K, 511, new IotlbGather()), 0);
  assert.equal(t.iovaToPhys(4 * SZ_2M + 8), 0x4000_0008);
});

for (
  const [name, fmt, over] of [
    ...CONFIGS,
    ["ARM_64_LPAE_S1 64K 52-bit", "ARM_64_LPAE_S1", { pgsizeBitmap: 0x10000, ias: 48, oas: 52 }],
  ] as [string, IoPgtableFormat, Partial<IoPgtableCfg>][]
) {
  Deno.test(`${name}: a multi-page map writes the same entries as one map per page (across 2^32 and 2^48)`, () => {
    const one = makeTable(fmt, over).t;
    const many = makeTable(fmt, over).t;
    const g = one.granule;
    const oas = one.cfg.oas;
    for (const [k, base] of [[0, 2 ** 32], [1, 2 ** 48], [2, 2 ** 40]] as const) {
      if (base + 8 * g > 2 ** oas) continue;
      const paddr = base - 3 * g;
      const iova = (k + 1) * one.blockSize(one.levels - 2);
      many.mapPages(iova, paddr, g, 7, RW | IOMMU_CACHE);
      for (let i = 0; i < 7; i++) one.mapPages(iova + i * g, paddr + i * g, g, 1, RW | IOMMU_CACHE);
    }
    assert.deepEqual(many.leaves(), one.leaves());
    assert.ok(many.leaves().length >= 7);
  });
}
