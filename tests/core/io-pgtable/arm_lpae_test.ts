/**
 * Arm LPAE (io-pgtable-arm.c, about v6.12): descriptor encodings checked
 * against hand-computed values, the allocator's TCR/VTCR/MAIR and stage-2
 * concatenation, the kernel selftest sequence, hardware dirty (ARM_HD).
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
  IoPgtableQuirk,
} from "@iommu-lab/core";
import {
  ARM_LPAE_MAIR,
  ARM_LPAE_S1_LEAF,
  ARM_LPAE_S2_LEAF,
  ARM_LPAE_TABLE,
  ArmLpaePgtable,
  encodeArmTcr,
  encodeArmVtcr,
} from "@iommu-lab/core/io-pgtable";
import {
  entryAt,
  makeEnv,
  makeTable,
  SZ_16K,
  SZ_1G,
  SZ_2G,
  SZ_2M,
  SZ_32M,
  SZ_4K,
  SZ_512M,
  SZ_64K,
} from "./helpers.ts";

const RW = IOMMU_READ | IOMMU_WRITE;

function arm(
  fmt: "ARM_64_LPAE_S1" | "ARM_64_LPAE_S2",
  over: Parameters<typeof makeTable>[1] = {},
) {
  const r = makeTable(fmt, over);
  return { ...r, a: r.t as ArmLpaePgtable };
}

function leafOf(a: ArmLpaePgtable, iova: number): bigint {
  const s = a.leafSlot(iova);
  assert.ok(s, `iova 0x${iova.toString(16)} should be mapped`);
  return entryAt(a["mem"], s.slot);
}

Deno.test("S1 4K page R|W|NOEXEC|CACHE encodes as 0x0060000012345f47", () => {
  const { a } = arm("ARM_64_LPAE_S1");
  a.mapPages(0x1000_0000_0000, 0x12345000, SZ_4K, 1, RW | IOMMU_NOEXEC | IOMMU_CACHE);
  assert.equal(leafOf(a, 0x1000_0000_0000), 0x0060000012345f47n);
  const w = ARM_LPAE_S1_LEAF.encode({
    VALID: 1,
    TYPE: 1,
    ATTRINDX: 1,
    AP: 1,
    SH: 3,
    AF: 1,
    nG: 1,
    OA: 0x12345000,
    PXN: 1,
    UXN: 1,
  });
  assert.deepEqual([...w], [0x12345f47, 0x00600000]);
});

Deno.test("S1 2M block read-only, privileged, MMIO: AP=RO_EL1, ATTRINDX=DEV, SH=OS", () => {
  const { a } = arm("ARM_64_LPAE_S1");
  a.mapPages(0x4020_0000, 0x4020_0000, SZ_2M, 1, IOMMU_READ | IOMMU_PRIV | IOMMU_MMIO);
  assert.equal(leafOf(a, 0x4020_0000), 0x40200e89n);
  const d = ARM_LPAE_S1_LEAF.decode([0x40200e89, 0]);
  assert.equal(d.TYPE, 0n);
  assert.equal(d.AP, 2n);
  assert.equal(d.ATTRINDX, 2n);
  assert.equal(d.SH, 2n);
});

Deno.test("S1 with ARM_HD sets DBM on writable leaves only", () => {
  const { a } = arm("ARM_64_LPAE_S1", { quirks: IoPgtableQuirk.ARM_HD });
  a.mapPages(0x10_0000, 0x10_0000, SZ_4K, 1, RW);
  a.mapPages(0x20_0000, 0x20_0000, SZ_4K, 1, IOMMU_READ);
  assert.equal(leafOf(a, 0x10_0000), 0x0008000000100e43n);
  assert.equal(leafOf(a, 0x20_0000), 0x0000000000200ec3n);
});

Deno.test("S1 with ARM_NS sets NS in leaves and NSTABLE in table entries", () => {
  const { a, mem } = arm("ARM_64_LPAE_S1", { quirks: IoPgtableQuirk.ARM_NS });
  a.mapPages(0, 0x5000, SZ_4K, 1, RW);
  assert.equal(leafOf(a, 0) & 0xfffn, 0xe63n);
  const top = entryAt(mem, a.root);
  assert.equal(top >> 63n, 1n);
  assert.equal(top & 3n, 3n);
  assert.equal(ARM_LPAE_TABLE.decode([Number(top & 0xffffffffn), Number(top >> 32n)]).NSTABLE, 1n);
});

Deno.test("S2 leaves: S2AP from READ/WRITE, MemAttr OIWB/NC/DEV/FWB, XN", () => {
  const { a } = arm("ARM_64_LPAE_S2");
  a.mapPages(0x1000, 0x7000, SZ_4K, 1, RW | IOMMU_CACHE);
  a.mapPages(0x2000, 0x8000, SZ_4K, 1, IOMMU_READ | IOMMU_MMIO);
  a.mapPages(0x3000, 0x9000, SZ_4K, 1, RW | IOMMU_NOEXEC);
  assert.equal(leafOf(a, 0x1000), 0x77ffn);
  assert.equal(leafOf(a, 0x2000), 0x8647n);
  assert.equal(leafOf(a, 0x3000), 0x00600000000096d7n);
  const d = ARM_LPAE_S2_LEAF.decode([0x77ff, 0]);
  assert.equal(d.S2AP, 3n);
  assert.equal(d.MEMATTR, 15n);
  const { a: f } = arm("ARM_64_LPAE_S2", { quirks: IoPgtableQuirk.ARM_S2FWB });
  f.mapPages(0x1000, 0x7000, SZ_4K, 1, IOMMU_WRITE | IOMMU_CACHE);
  assert.equal(leafOf(f, 0x1000), 0x779bn);
});

Deno.test("table descriptors hold the next table's address with type 3", () => {
  const { a, mem } = arm("ARM_64_LPAE_S1");
  a.mapPages(0, 0, SZ_4K, 1, RW);
  const e = entryAt(mem, a.root);
  assert.equal(e & 3n, 3n);
  const next = Number(e & 0xfffffffff000n);
  assert.ok(a["pages"].isAllocated(next));
});

Deno.test("64K granule with a 52-bit output packs PA[51:48] into bits 15:12", () => {
  const { a } = arm("ARM_64_LPAE_S1", {
    pgsizeBitmap: SZ_64K + SZ_512M + 2 ** 42,
    ias: 48,
    oas: 52,
  });
  const pa = 0xa * 2 ** 48 + 0x1234_0000;
  a.mapPages(0x1_0000, pa, SZ_64K, 1, RW | IOMMU_CACHE);
  assert.equal(leafOf(a, 0x1_0000), 0x1234af47n);
  assert.equal(a.iovaToPhys(0x1_0042), pa + 0x42);
  assert.ok(a.cfg.pgsizeBitmap > 2 ** 42, "4T blocks are allowed when oas > 48");
  assert.equal(a.s1!.tcr.ips, 6);
});

Deno.test("MAIR is 0xf404ff44 (NC, WBRWA, DEVICE, INC_OWBRWA at indices 0-3)", () => {
  const { a } = arm("ARM_64_LPAE_S1");
  assert.equal(a.s1!.mair, ARM_LPAE_MAIR);
  assert.equal(ARM_LPAE_MAIR, 0xf404ff44n);
});

Deno.test("S1 TCR: coherent walk is IS/WBWA; non-coherent with OUTER_WBWA is OS, IRGN NC, ORGN WBWA", () => {
  const { a } = arm("ARM_64_LPAE_S1");
  assert.deepEqual(a.s1!.tcr, { ips: 5, tg: 0, sh: 3, orgn: 1, irgn: 1, tsz: 16 });
  assert.equal(a.s1!.ttbr, a.root);
  const { a: b } = arm("ARM_64_LPAE_S1", {
    coherentWalk: false,
    quirks: IoPgtableQuirk.ARM_OUTER_WBWA,
  });
  assert.deepEqual(b.s1!.tcr, { ips: 5, tg: 0, sh: 2, orgn: 1, irgn: 0, tsz: 16 });
  assert.equal(encodeArmTcr(b.s1!.tcr), 0x5_0000_2410n);
  const { a: c } = arm("ARM_64_LPAE_S1", { coherentWalk: false });
  assert.equal(c.s1!.tcr.orgn, 0);
  const { a: d } = arm("ARM_64_LPAE_S1", { pgsizeBitmap: SZ_16K + SZ_32M, ias: 40, oas: 44 });
  assert.deepEqual(d.s1!.tcr, { ips: 4, tg: 2, sh: 3, orgn: 1, irgn: 1, tsz: 24 });
});

Deno.test("S2 VTCR SL0/T0SZ/TG/PS and start-table concatenation follow the kernel", () => {
  // [granule bitmap, ias, oas] -> [levels, concatenated tables, sl, tg, ps, vtcr]
  const cases: [number, number, number, number, number, number, number, number, number][] = [
    [SZ_4K + SZ_2M + SZ_1G, 48, 48, 4, 1, 2, 0, 5, 0x53590],
    [SZ_4K + SZ_2M + SZ_1G, 40, 40, 3, 2, 1, 0, 2, 0x23558],
    [SZ_4K + SZ_2M + SZ_1G, 42, 42, 3, 8, 1, 0, 3, 0x33556],
    [SZ_4K + SZ_2M + SZ_1G, 43, 44, 3, 16, 1, 0, 4, 0x43555],
    [SZ_4K + SZ_2M + SZ_1G, 44, 44, 4, 1, 2, 0, 4, 0x43594],
    [SZ_16K + SZ_32M, 48, 48, 3, 2, 2, 2, 5, 0x5b590],
    [SZ_16K + SZ_32M, 36, 36, 2, 1, 1, 2, 1, 0x1b55c],
    [SZ_64K + SZ_512M, 48, 48, 3, 1, 2, 1, 5, 0x57590],
    [SZ_64K + SZ_512M, 42, 42, 2, 1, 1, 1, 3, 0x37556],
    [SZ_64K + SZ_512M, 52, 52, 3, 1, 2, 1, 6, 0x6758c],
  ];
  for (const [bm, ias, oas, levels, concat, sl, tg, ps, vtcr] of cases) {
    const { a, pages } = arm("ARM_64_LPAE_S2", { pgsizeBitmap: bm, ias, oas });
    const tag = `bitmap 0x${bm.toString(16)} ias ${ias}`;
    assert.equal(a.levels, levels, tag);
    assert.equal(a.concatenatedTables, concat, tag);
    assert.equal(a.s2!.vtcr.sl, sl, tag);
    assert.equal(a.s2!.vtcr.tg, tg, tag);
    assert.equal(a.s2!.vtcr.ps, ps, tag);
    assert.equal(a.s2!.vtcr.tsz, 64 - ias, tag);
    assert.equal(encodeArmVtcr(a.s2!.vtcr), vtcr, tag);
    assert.equal(a.s2!.vttbr, a.root);
    assert.equal(pages.stats.pagesInUse * SZ_4K >= a.rootBytes, true);
    a.free();
    assert.equal(pages.stats.pagesInUse, 0, tag);
  }
});

Deno.test("concatenated stage-2 start tables take 1G blocks at their first level", () => {
  const { a } = arm("ARM_64_LPAE_S2", { ias: 40, oas: 40 });
  a.mapPages(0xff_c000_0000, 0x4000_0000, SZ_1G, 1, RW);
  assert.equal(a.leafSlot(0xff_c000_1234)!.level, 0);
  assert.equal(a.leafSlot(0xff_c000_1234)!.slot, a.root + 8 * 1023);
  assert.equal(a.iovaToPhys(0xff_c000_1234), 0x4000_1234);
});

Deno.test("the page-size bitmap is narrowed to the granule's sizes and ias/oas clamp to 48", () => {
  const { a } = arm("ARM_64_LPAE_S1", {
    pgsizeBitmap: SZ_4K + SZ_16K + SZ_2M + SZ_1G + SZ_512M,
    ias: 52,
    oas: 52,
  });
  assert.equal(a.cfg.pgsizeBitmap, SZ_4K + SZ_2M + SZ_1G);
  assert.equal(a.cfg.ias, 48);
  assert.equal(a.cfg.oas, 48);
  const { a: b } = arm("ARM_64_LPAE_S1", { pgsizeBitmap: SZ_16K + SZ_64K + SZ_32M });
  assert.equal(b.granule, SZ_16K);
  assert.equal(b.cfg.pgsizeBitmap, SZ_16K + SZ_32M);
});

Deno.test("bad configurations are refused with EINVAL naming what is allowed, allocating nothing", () => {
  const env = makeEnv();
  const base = { quirks: 0, pgsizeBitmap: SZ_4K, ias: 48, oas: 48, coherentWalk: true, tlb: null };
  const bad: [Partial<typeof base>, RegExp, string][] = [
    [{ pgsizeBitmap: 0x800 }, /allowed: 4K/, "EINVAL"],
    [{ pgsizeBitmap: 0 }, /allowed: 4K/, "EINVAL"],
    [{ oas: 38 }, /32, 36, 40, 42, 44, 48, 52/, "EINVAL"],
    [{ ias: 53 }, /1\.\.52/, "EINVAL"],
    [{ quirks: IoPgtableQuirk.ARM_S2FWB }, /allowed: ARM_NS/, "EINVAL"],
    [{ quirks: IoPgtableQuirk.ARM_OUTER_WBWA }, /non-coherent/, "EINVAL"],
    [{ quirks: IoPgtableQuirk.ARM_TTBR1 }, /TTBR1/, "EOPNOTSUPP"],
  ];
  for (const [over, msg, errno] of bad) {
    assert.throws(
      () => new ArmLpaePgtable("ARM_64_LPAE_S1", { ...base, ...over }, env),
      (e) => e instanceof IommuError && e.errno === errno && msg.test(e.message),
      JSON.stringify(over),
    );
  }
  assert.throws(
    () => new ArmLpaePgtable("ARM_64_LPAE_S2", { ...base, quirks: IoPgtableQuirk.ARM_HD }, env),
    (e) => e instanceof IommuError && e.errno === "EINVAL" && /ARM_S2FWB/.test(e.message),
  );
  assert.equal(env.pages.stats.pagesInUse, 0);
});

// ---------------------------------------------------------------------------
// The kernel's io-pgtable-arm selftest sequence (arm_lpae_run_tests, as in
// io-pgtable-arm-selftests.c of v6.17): every granule set, every IAS <= OAS
// pair of the address-size list, both stages. The dummy flush ops WARN when a
// flushed size is not in the bitmap; the recording flush checks the same.

const GRANULE_SETS = [SZ_4K + SZ_2M + SZ_1G, SZ_16K + SZ_32M, SZ_64K + SZ_512M];
const ADDRESS_SIZES = [32, 36, 40, 42, 44, 48];

function inBitmap(bitmap: number, size: number): boolean {
  return Number.isInteger(Math.log2(size)) && Math.floor(bitmap / size) % 2 === 1;
}

for (const fmt of ["ARM_64_LPAE_S1", "ARM_64_LPAE_S2"] as const) {
  Deno.test(`${fmt}: the io-pgtable-arm selftest passes for every granule and IAS <= OAS pair`, () => {
    const prot = IOMMU_READ | IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_CACHE;
    let runs = 0;
    for (const bm of GRANULE_SETS) {
      for (let j = 0; j < ADDRESS_SIZES.length; j++) {
        for (let k = 0; k <= j; k++) {
          const ias = ADDRESS_SIZES[k], oas = ADDRESS_SIZES[j];
          const tag = `${fmt} bitmap 0x${bm.toString(16)} ias ${ias} oas ${oas}`;
          const { a, pages, tlb } = arm(fmt, { pgsizeBitmap: bm, ias, oas });
          // for_each_set_bit over the configured (possibly narrowed) bitmap.
          const sizes: number[] = [];
          for (const s of [SZ_4K, SZ_16K, SZ_64K, SZ_2M, SZ_32M, SZ_512M, SZ_1G]) {
            if (Math.floor(a.cfg.pgsizeBitmap / s) % 2) sizes.push(s);
          }
          assert.deepEqual(sizes, sizesOf(bm), tag);
          // Empty tables translate nothing.
          assert.equal(a.iovaToPhys(42), 0, tag);
          assert.equal(a.iovaToPhys(SZ_1G + 42), 0, tag);
          assert.equal(a.iovaToPhys(SZ_2G + 42), 0, tag);
          // Distinct mappings of each page size, one per GiB; overlaps refused.
          let iova = 0;
          for (const size of sizes) {
            assert.equal(a.mapPages(iova, iova, size, 1, prot), size, tag);
            assert.throws(
              () => a.mapPages(iova, iova + size, size, 1, IOMMU_READ | IOMMU_NOEXEC),
              (e) => e instanceof IommuError && e.errno === "EEXIST",
              tag,
            );
            assert.equal(a.iovaToPhys(iova + 42), iova + 42, tag);
            iova += SZ_1G;
          }
          // The older selftest's partial unmap: since the split was removed
          // (v6.12), unmapping part of a block returns 0 and leaves it mapped.
          const small = sizes[0];
          if (sizes.length > 1) {
            assert.equal(a.unmapPages(SZ_1G + small, small, 1, null), 0, tag);
            assert.equal(a.iovaToPhys(SZ_1G + small + 42), SZ_1G + small + 42, tag);
          }
          // Full unmap of each size, translation gone, block remapped.
          iova = 0;
          for (const size of sizes) {
            assert.equal(a.unmapPages(iova, size, 1, null), size, tag);
            assert.equal(a.iovaToPhys(iova + 42), 0, tag);
            assert.equal(a.mapPages(iova, iova, size, 1, IOMMU_WRITE), size, tag);
            assert.equal(a.iovaToPhys(iova + 42), iova + 42, tag);
            iova += SZ_1G;
          }
          // The last largest page of the IAS (concatenated start-table corner).
          const largest = sizes[sizes.length - 1];
          iova = 2 ** a.cfg.ias - largest;
          assert.equal(a.mapPages(iova, iova, largest, 1, prot), largest, tag);
          assert.equal(a.iovaToPhys(iova + 42), iova + 42, tag);
          assert.equal(a.unmapPages(iova, largest, 1, null), largest, tag);
          assert.equal(a.iovaToPhys(iova + 42), 0, tag);
          // dummy_tlb_flush: every flushed size is a page size of the bitmap.
          for (const ev of tlb.events) {
            if (ev.kind === "walk") assert.ok(inBitmap(a.cfg.pgsizeBitmap, ev.granule), tag);
            if (ev.kind === "page") assert.ok(inBitmap(a.cfg.pgsizeBitmap, ev.granule), tag);
          }
          a.free();
          assert.equal(pages.stats.pagesInUse, 0, tag);
          runs++;
        }
      }
    }
    // 3 granule sets x 21 (IAS, OAS) pairs, as arm_lpae_do_selftests counts them.
    assert.equal(runs, 63);
  });
}

function sizesOf(bm: number): number[] {
  return [SZ_4K, SZ_16K, SZ_64K, SZ_2M, SZ_32M, SZ_512M, SZ_1G].filter((s) =>
    Math.floor(bm / s) % 2 === 1
  );
}

// ---------------------------------------------------------------------------
// Hardware dirty state.

Deno.test("ARM_HD: readAndClearDirty reports writeable-dirty leaves and marks them clean (AP[2])", () => {
  const { a, mem } = arm("ARM_64_LPAE_S1", { quirks: IoPgtableQuirk.ARM_HD });
  a.mapPages(0x10_0000, 0x50_0000, SZ_4K, 2, RW);
  a.mapPages(0x40_0000, 0x60_0000, SZ_2M, 1, RW);
  a.mapPages(0x80_0000, 0x90_0000, SZ_4K, 1, IOMMU_READ);
  const seen: [number, number][] = [];
  const bitmap = { iova: 0, pgsize: SZ_4K, setDirty: (i: number, l: number) => seen.push([i, l]) };
  a.readAndClearDirty(0, 0x100_0000, IOMMU_DIRTY_NO_CLEAR, bitmap);
  assert.deepEqual(seen, [[0x10_0000, SZ_4K], [0x10_1000, SZ_4K], [0x40_0000, SZ_2M]]);
  seen.length = 0;
  a.readAndClearDirty(0, 0x100_0000, 0, bitmap);
  assert.equal(seen.length, 3);
  assert.equal(leafOf(a, 0x10_0000) & 0xc0n, 0xc0n, "AP[2] set: clean");
  seen.length = 0;
  a.readAndClearDirty(0, 0x100_0000, 0, bitmap);
  assert.deepEqual(seen, []);
  // The SMMU's hardware update on a write: clear AP[2].
  const slot = a.leafSlot(0x10_1000)!.slot;
  mem.write32(slot, mem.read32(slot) & ~0x80);
  a.readAndClearDirty(0x10_1000, SZ_4K, 0, bitmap);
  assert.deepEqual(seen, [[0x10_1000, SZ_4K]]);
  assert.equal(a.iovaToPhys(0x10_1008), 0x50_1008, "translation unchanged");
});

Deno.test("readAndClearDirty on a stage-2 table fails with EINVAL", () => {
  const { a } = arm("ARM_64_LPAE_S2");
  assert.throws(
    () => a.readAndClearDirty(0, SZ_4K, 0, { iova: 0, pgsize: SZ_4K, setDirty() {} }),
    (e) => e instanceof IommuError && e.errno === "EINVAL" && /ARM_64_LPAE_S1/.test(e.message),
  );
});

Deno.test("map beyond ias or oas fails with ERANGE and changes nothing", () => {
  const { a } = arm("ARM_64_LPAE_S1", { ias: 40, oas: 40 });
  assert.throws(
    () => a.mapPages(2 ** 40, 0, SZ_4K, 1, RW),
    (e) => e instanceof IommuError && e.errno === "ERANGE" && /40-bit input/.test(e.message),
  );
  assert.throws(
    () => a.mapPages(0, 2 ** 40, SZ_4K, 1, RW),
    (e) => e instanceof IommuError && e.errno === "ERANGE" && /40-bit output/.test(e.message),
  );
  assert.equal(a.tablePages, 1);
});
