import assert from "node:assert/strict";
import fc from "fast-check";
import { iommuPgcount, iommuPgsize, iommuPgsizeOnly, pgsizeMin } from "../../../core/mod.ts";

// The kernel's iommu_pgsize (drivers/iommu/iommu.c, v6.8) on 64-bit integers, as a reference.
function kernelPgsize(bitmap: bigint, iova: bigint, paddr: bigint, size: bigint) {
  const genmask = (h: bigint) => (1n << (h + 1n)) - 1n;
  const fls = (x: bigint) => BigInt(x.toString(2).length - 1);
  const ffs = (x: bigint) => {
    let i = 0n;
    while (((x >> i) & 1n) === 0n) i++;
    return i;
  };
  const addrMerge = paddr | iova;
  let pgsizes = bitmap & genmask(fls(size));
  if (addrMerge) pgsizes &= genmask(ffs(addrMerge));
  if (!pgsizes) return { pgsize: 0, count: 0 };
  const idx = fls(pgsizes);
  const pgsize = 1n << idx;
  const above = bitmap & ~genmask(idx);
  if (above) {
    const next = 1n << ffs(above);
    if (((iova ^ paddr) & (next - 1n)) === 0n) {
      const offset = next - (addrMerge & (next - 1n));
      if (offset + next <= size) size = offset;
    }
  }
  return { pgsize: Number(pgsize), count: Number(size >> idx) };
}

const K4 = 0x1000, M2 = 0x200000, G1 = 0x40000000;
const X86 = K4 + M2 + G1;

Deno.test("iommu_pgsize: 4K up to the next 2M boundary when iova and paddr share the offset", () => {
  assert.deepEqual(iommuPgsize(X86, 0x1ff000, 0x401ff000, 0x401000), { pgsize: K4, count: 1 });
  assert.deepEqual(iommuPgsize(X86, 0x200000, 0x40200000, 0x400000), { pgsize: M2, count: 2 });
});

Deno.test("iommu_pgsize: all 4K when the offsets in 2M differ", () => {
  assert.deepEqual(iommuPgsize(X86, 0x1ff000, 0x1000, 0x401000), { pgsize: K4, count: 0x401 });
});

Deno.test("iommu_pgsize: sizes above bit 31 (64K granule, 4T block at bit 42)", () => {
  const bm = 2 ** 16 + 2 ** 29 + 2 ** 42;
  assert.deepEqual(iommuPgsize(bm, 0, 0, 2 ** 43), { pgsize: 2 ** 42, count: 2 });
  assert.deepEqual(iommuPgsize(bm, 2 ** 42 - 2 ** 29, 2 ** 42 - 2 ** 29, 2 ** 43), {
    pgsize: 2 ** 29,
    count: 1,
  });
});

Deno.test("iommu_pgsize: no fitting size gives pgsize 0", () => {
  assert.deepEqual(iommuPgsize(X86, 0x800, 0, K4), { pgsize: 0, count: 0 });
  assert.equal(iommuPgsizeOnly(X86, 0, 0, 0x800), 0);
  assert.equal(iommuPgcount(X86, 0, 0, K4, 0), 0);
});

Deno.test("iommu_pgsize matches the kernel algorithm on random aligned inputs", () => {
  const bitmaps = [
    X86,
    K4 + M2,
    2 ** 16 + 2 ** 29 + 2 ** 42,
    2 ** 14 + 2 ** 25,
    K4 + 2 ** 16 + M2 + 2 ** 25 + G1,
  ];
  fc.assert(
    fc.property(
      fc.constantFrom(...bitmaps),
      fc.integer({ min: 0, max: 2 ** 36 }),
      fc.integer({ min: 0, max: 2 ** 36 }),
      fc.integer({ min: 1, max: 2 ** 24 }),
      fc.integer({ min: 0, max: 12 }),
      (bm, i, p, s, shift) => {
        const min = pgsizeMin(bm);
        const gran = min * 2 ** (shift % 4);
        const iova = Math.floor(i / gran) * gran;
        const paddr = Math.floor(p / gran) * gran;
        const size = s * min * 2 ** shift;
        const ref = kernelPgsize(BigInt(bm), BigInt(iova), BigInt(paddr), BigInt(size));
        assert.deepEqual(iommuPgsize(bm, iova, paddr, size), ref);
      },
    ),
    { numRuns: 500 },
  );
});
