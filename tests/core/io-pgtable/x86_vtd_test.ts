/**
 * x86-64 (VT-d first stage / CPU tables) and VT-d second-stage encodings,
 * levels, canonical addresses and A/D harvesting.
 */
import assert from "node:assert/strict";
import {
  IOMMU_CACHE,
  IOMMU_DIRTY_NO_CLEAR,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
  IommuError,
} from "@iommu-lab/core";
import { VTD_SS_PTE, X86_PTE } from "@iommu-lab/core/io-pgtable";
import type { RadixPgtable } from "@iommu-lab/core/io-pgtable";
import { entryAt, makeEnv, makeTable, snapshot, SZ_1G, SZ_2M, SZ_4K } from "./helpers.ts";

const RW = IOMMU_READ | IOMMU_WRITE;

function leaf(t: RadixPgtable, iova: number): bigint {
  const s = t.leafSlot(iova);
  assert.ok(s, `0x${iova.toString(16)} should be mapped`);
  return entryAt(t["mem"], s.slot);
}

Deno.test("X86_64 first-stage DMA leaves are P|US|A, plus RW|D when writable (kernel __domain_mapping)", () => {
  const { t } = makeTable("X86_64");
  t.mapPages(0x1000, 0x12345000, SZ_4K, 1, RW);
  t.mapPages(0x2000, 0x23456000, SZ_4K, 1, IOMMU_READ | IOMMU_NOEXEC | IOMMU_PRIV);
  t.mapPages(0x3000, 0xfee00000, SZ_4K, 1, IOMMU_WRITE | IOMMU_MMIO);
  assert.equal(leaf(t, 0x1000), 0x12345067n);
  assert.equal(leaf(t, 0x2000), 0x23456025n);
  assert.equal(leaf(t, 0x3000), 0xfee00067n);
  const d = X86_PTE.decode([0x12345067, 0]);
  assert.deepEqual([d.P, d.RW, d.US, d.A, d.D, d.ADDR], [1n, 1n, 1n, 1n, 1n, 0x12345000n]);
});

Deno.test("X86_64 2M and 1G pages set PS; table entries are P|RW|US|A", () => {
  const { t, mem } = makeTable("X86_64");
  t.mapPages(SZ_2M, 0x4060_0000, SZ_2M, 1, IOMMU_READ);
  t.mapPages(SZ_1G, 0x8000_0000, SZ_1G, 1, RW);
  assert.equal(leaf(t, SZ_2M), 0x406000a5n);
  assert.equal(leaf(t, SZ_1G), 0x800000e7n);
  assert.equal(t.leafSlot(SZ_1G)!.level, 1);
  assert.equal(entryAt(mem, t.root) & 0xfffn, 0x27n);
  assert.equal(t.iovaToPhys(SZ_1G + 0x12345), 0x8001_2345);
});

Deno.test("X86_64 userMode leaves: US unless PRIV, XD from NOEXEC, PCD|PWT for MMIO, A/D clear", () => {
  const { t } = makeTable("X86_64", { userMode: true });
  t.mapPages(0x40_0000, 0x1000, SZ_4K, 1, RW);
  t.mapPages(0x40_1000, 0x2000, SZ_4K, 1, RW | IOMMU_PRIV);
  t.mapPages(0x40_2000, 0x23456000, SZ_4K, 1, IOMMU_READ | IOMMU_NOEXEC);
  t.mapPages(0x40_3000, 0xfee00000, SZ_4K, 1, RW | IOMMU_MMIO);
  t.mapPages(0x60_0000, 0x4060_0000, SZ_2M, 1, IOMMU_READ);
  assert.equal(leaf(t, 0x40_0000), 0x1007n);
  assert.equal(leaf(t, 0x40_1000), 0x2003n);
  assert.equal(leaf(t, 0x40_2000), 0x8000000023456005n);
  assert.equal(leaf(t, 0x40_3000), 0xfee0001fn);
  assert.equal(leaf(t, 0x60_0000), 0x40600085n);
  assert.deepEqual([...X86_PTE.encode({ P: 1, US: 1, XD: 1, ADDR: 0x23456000 })], [
    0x23456005,
    0x80000000,
  ]);
});

Deno.test("X86_64 5-level tables walk 5 levels and map at 57-bit addresses", () => {
  const { t, pages } = makeTable("X86_64", { ias: 57 });
  assert.equal(t.levels, 5);
  const iova = 2 ** 52 + SZ_4K * 3; // level-5 index 1 (addresses stay below 2^53)
  t.mapPages(iova, 0x7000, SZ_4K, 1, RW);
  assert.equal(t.iovaToPhys(iova + 5), 0x7005);
  assert.equal(pages.stats.pagesInUse, 5);
});

Deno.test("X86_64 refuses a non-canonical iova with EINVAL and changes nothing", () => {
  const { t, pages } = makeTable("X86_64");
  for (const iova of [2 ** 48, 2 ** 50]) {
    assert.throws(
      () => t.mapPages(iova, 0, SZ_4K, 1, RW),
      (e) => e instanceof IommuError && e.errno === "EINVAL" && /not canonical/.test(e.message),
    );
  }
  assert.throws(
    () => t.mapPages(2 ** 48 - SZ_4K, 0, SZ_4K, 2, RW),
    (e) => e instanceof IommuError && e.errno === "EINVAL" && /canonical/.test(e.message),
  );
  assert.equal(pages.stats.pagesInUse, 1);
});

Deno.test("X86_64 and VTD_SS refuse unsupported address widths and bitmaps without 4K", () => {
  const env = makeEnv();
  const cases: [Parameters<typeof makeTable>[0], Parameters<typeof makeTable>[1], RegExp][] = [
    ["X86_64", { ias: 39 }, /48 \(4-level\) or 57/],
    ["X86_64", { pgsizeBitmap: SZ_2M }, /must include 4K/],
    ["X86_64", { oas: 53 }, /32\.\.52/],
    ["VTD_SS", { ias: 40 }, /39 \(3-level\), 48 \(4-level\), 57/],
    ["VTD_SS", { quirks: 1 }, /allowed: none/],
  ];
  for (const [fmt, over, re] of cases) {
    assert.throws(
      () => makeTable(fmt, over, env),
      (e) => e instanceof IommuError && e.errno === "EINVAL" && re.test(e.message),
      `${fmt} ${JSON.stringify(over)}`,
    );
  }
  assert.equal(env.pages.stats.pagesInUse, 0);
});

Deno.test("X86_64 A/D: readAndClearDirty reports leaves the walker marked dirty and clears D", () => {
  const { t, mem } = makeTable("X86_64", { userMode: true });
  t.mapPages(0x1000, 0x5000, SZ_4K, 3, RW);
  t.mapPages(SZ_2M, SZ_2M, SZ_2M, 1, RW);
  const seen: [number, number][] = [];
  const bm = { iova: 0, pgsize: SZ_4K, setDirty: (i: number, l: number) => seen.push([i, l]) };
  t.readAndClearDirty(0, 2 * SZ_2M, 0, bm);
  assert.deepEqual(seen, [], "D is clear after map");
  for (const iova of [0x2000, SZ_2M]) {
    const s = t.leafSlot(iova)!.slot;
    mem.write32(s, mem.read32(s) | 0x40); // the walker's dirty update
  }
  t.readAndClearDirty(0, 2 * SZ_2M, IOMMU_DIRTY_NO_CLEAR, bm);
  assert.deepEqual(seen, [[0x2000, SZ_4K], [SZ_2M, SZ_2M]]);
  seen.length = 0;
  t.readAndClearDirty(0x2000, SZ_4K, 0, bm);
  assert.deepEqual(seen, [[0x2000, SZ_4K]]);
  assert.equal(leaf(t, 0x2000) & 0x40n, 0n);
  seen.length = 0;
  t.readAndClearDirty(0, 2 * SZ_2M, 0, bm);
  assert.deepEqual(seen, [[SZ_2M, SZ_2M]]);
});

Deno.test("VTD_SS leaves: R/W from prot, SNP from IOMMU_CACHE, PS on superpages; tables are R|W", () => {
  const { t, mem } = makeTable("VTD_SS");
  t.mapPages(0x1000, 0x12345000, SZ_4K, 1, RW | IOMMU_CACHE);
  t.mapPages(0x2000, 0x23456000, SZ_4K, 1, IOMMU_WRITE);
  t.mapPages(SZ_2M, 0x4060_0000, SZ_2M, 1, IOMMU_READ);
  t.mapPages(SZ_1G, 0x1_0000_0000, SZ_1G, 1, RW);
  assert.equal(leaf(t, 0x1000), 0x12345803n);
  assert.equal(leaf(t, 0x2000), 0x23456002n);
  assert.equal(leaf(t, SZ_2M), 0x40600081n);
  assert.equal(leaf(t, SZ_1G), 0x1_0000_0083n);
  assert.equal(entryAt(mem, t.root) & 0xfffn, 0x3n);
  const d = VTD_SS_PTE.decode([0x12345803, 0]);
  assert.deepEqual([d.R, d.W, d.SNP, d.PS, d.ADDR], [1n, 1n, 1n, 0n, 0x12345000n]);
  assert.deepEqual([...VTD_SS_PTE.encode({ R: 1, PS: 1, ADDR: 0x40600000 })], [0x40600081, 0]);
});

Deno.test("VTD_SS uses 3/4/5 levels for 39/48/57-bit widths and drops superpages not in the bitmap", () => {
  for (const [ias, levels] of [[39, 3], [48, 4], [57, 5]]) {
    const { t, pages, mem } = makeTable("VTD_SS", { ias, pgsizeBitmap: SZ_4K + SZ_2M });
    assert.equal(t.levels, levels);
    assert.equal(t.cfg.pgsizeBitmap, SZ_4K + SZ_2M);
    const top = 2 ** ias - SZ_4K;
    t.mapPages(top, 0x9000, SZ_4K, 1, IOMMU_READ);
    assert.equal(t.iovaToPhys(top + 0x10), 0x9010); // exact even above 2^53 (multiple of 16)
    assert.equal(pages.stats.pagesInUse, levels);
    assert.throws(
      () => t.mapPages(0, 0, SZ_1G, 1, IOMMU_READ),
      (e) => e instanceof IommuError && e.errno === "EINVAL" && /allowed: 4K, 2M/.test(e.message),
    );
    // intel_iommu_map: a range beyond the domain's width is EFAULT.
    const before = snapshot(mem);
    assert.throws(
      () => t.mapPages(2 ** ias, 0, SZ_4K, 1, IOMMU_READ),
      (e) =>
        e instanceof IommuError && e.errno === "EFAULT" &&
        new RegExp(`exceeds the ${ias}-bit input space`).test(e.message),
    );
    assert.throws(
      () => t.mapPages(top, 0, SZ_4K, 2, IOMMU_READ),
      (e) => e instanceof IommuError && e.errno === "EFAULT",
      "a run whose last page crosses the width",
    );
    assert.throws(
      () => t.mapPages(0, 2 ** t.cfg.oas, SZ_4K, 1, IOMMU_READ),
      (e) =>
        e instanceof IommuError && e.errno === "EFAULT" &&
        new RegExp(`exceeds the ${t.cfg.oas}-bit output space`).test(e.message),
    );
    assert.equal(snapshot(mem), before, "nothing written");
    assert.equal(pages.stats.pagesInUse, levels, "no table allocated");
    assert.equal(t.iovaToPhys(top), 0x9000, "the live page is untouched");
  }
});

Deno.test("VTD_SS A/D (SSADE): D at bit 9 is reported and cleared", () => {
  const { t, mem } = makeTable("VTD_SS");
  t.mapPages(0x1000, 0x5000, SZ_4K, 2, RW);
  const s = t.leafSlot(0x2000)!.slot;
  mem.write32(s, mem.read32(s) | 0x300); // A and D set by the hardware
  const seen: number[] = [];
  t.readAndClearDirty(0, SZ_2M, 0, { iova: 0, pgsize: SZ_4K, setDirty: (i) => seen.push(i) });
  assert.deepEqual(seen, [0x2000]);
  assert.equal(leaf(t, 0x2000) & 0x300n, 0x100n, "A kept, D cleared");
});

Deno.test("Intel formats refuse prot without READ|WRITE with EINVAL", () => {
  for (const fmt of ["X86_64", "VTD_SS"] as const) {
    const { t } = makeTable(fmt);
    assert.throws(
      () => t.mapPages(0, 0, SZ_4K, 1, IOMMU_CACHE),
      (e) =>
        e instanceof IommuError && e.errno === "EINVAL" &&
        /IOMMU_READ or IOMMU_WRITE/.test(e.message),
    );
    assert.equal(t.tablePages, 1);
  }
});
