/**
 * @module
 * Page-size bitmaps (the kernel's `pgsize_bitmap`, an unsigned long) held in
 * `number`s. Bits above 31 exist (a 64 KiB granule's 4 TiB block is bit
 * 42), so these helpers use arithmetic, never 32-bit bitwise operators.
 */

import { ffs, fls } from "./bits.ts";

/** `2^i` for i in 0..63 (a table lookup is cheaper than `2 ** i` on hot paths). */
const POW2: Float64Array = (() => {
  const t = new Float64Array(64);
  for (let i = 0; i < 64; i++) t[i] = 2 ** i;
  return t;
})();

/**
 * `x` modulo the power of two `pgsize` for `x >= 0` (the offset of `x`
 * inside its page): exact, and without the floating-point remainder `%`
 * costs on numbers above 2^31 (the hot paths' alignment checks).
 */
export function pgsizeOffset(x: number, pgsize: number): number {
  return x - Math.floor(x / pgsize) * pgsize;
}

/** Bitmap from a list of page sizes (each a power of two). */
export function pgsizeBitmapOf(sizes: readonly number[]): number {
  let m = 0;
  for (const s of sizes) if (!pgsizeIn(m, s)) m += s;
  return m;
}

/** True if the power of two `size` is in `bitmap`. */
export function pgsizeIn(bitmap: number, size: number): boolean {
  return size > 0 && (Math.floor(bitmap / size) & 1) === 1;
}

/** The sizes in a bitmap, smallest first. */
export function pgsizesOf(bitmap: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < 53; b++) if (Math.floor(bitmap / 2 ** b) % 2 === 1) out.push(2 ** b);
  return out;
}

/** Smallest page size in the bitmap (the granule, `1 << __ffs(bitmap)`); 0 for an empty bitmap. */
export function pgsizeMin(bitmap: number): number {
  if (bitmap === minOfBitmap) return minOfResult;
  const i = ffs(bitmap);
  const min = i < 0 ? 0 : POW2[i];
  minOfBitmap = bitmap;
  minOfResult = min;
  return min;
}
// pgsizeMin's last answer: map and unmap ask it several times per call for one bitmap.
let minOfBitmap = -1;
let minOfResult = 0;

/** Largest page size in the bitmap. */
export function pgsizeMax(bitmap: number): number {
  return 2 ** fls(bitmap);
}

/**
 * The page size `iommu_pgsize` (drivers/iommu/iommu.c, v6.8) picks: the
 * largest size in `bitmap` that is no larger than `2^fls(size)` and no larger
 * than the alignment of `iova | paddr`; 0 when none fits (the kernel BUGs;
 * callers refuse with EINVAL first). Allocation-free, for the map/unmap loops.
 */
export function iommuPgsizeOnly(bitmap: number, iova: number, paddr: number, size: number): number {
  if (size <= 0 || bitmap <= 0) return 0;
  // Sizes small enough for `size`: GENMASK(__fls(size), 0).
  let limit = POW2[fls(size)];
  // Constrain by the alignment of iova | paddr (the lowest set bit of either).
  if (iova !== 0 || paddr !== 0) {
    const a = iova === 0 ? ffs(paddr) : paddr === 0 ? ffs(iova) : Math.min(ffs(iova), ffs(paddr));
    const align = POW2[a];
    if (align < limit) limit = align;
  }
  const allowed = pgsizeOffset(bitmap, limit * 2);
  return allowed === 0 ? 0 : POW2[fls(allowed)];
}

/**
 * How many pages of `pgsize` `iommu_pgsize` maps at once: all of `size`,
 * unless the next larger supported page size could take over at its next
 * boundary (when `iova` and `paddr` share their offset within it and `size`
 * reaches one full larger page past that boundary); then only up to the
 * boundary. Allocation-free.
 */
export function iommuPgcount(
  bitmap: number,
  iova: number,
  paddr: number,
  size: number,
  pgsize: number,
): number {
  if (pgsize <= 0) return 0;
  const above = bitmap - pgsizeOffset(bitmap, pgsize * 2); // bitmap & ~GENMASK(pgsize_idx, 0)
  if (above > 0) {
    const next = POW2[ffs(above)];
    const off = pgsizeOffset(iova, next);
    if (off === pgsizeOffset(paddr, next)) {
      const offset = next - off;
      if (offset + next <= size) size = offset;
    }
  }
  return Math.floor(size / pgsize);
}

/**
 * `iommu_pgsize` (drivers/iommu/iommu.c, v6.8): the largest page size allowed
 * by `size` and by the alignment of `iova | paddr`, and how many of them to
 * map before the next larger supported size could take over (when `iova` and
 * `paddr` share their offset within that larger size). `pgsize` 0 means no
 * size fits (the kernel BUGs; callers refuse with EINVAL first). Hot loops use
 * {@link iommuPgsizeOnly} and {@link iommuPgcount}, which allocate nothing.
 */
export function iommuPgsize(
  bitmap: number,
  iova: number,
  paddr: number,
  size: number,
): { pgsize: number; count: number } {
  const pgsize = iommuPgsizeOnly(bitmap, iova, paddr, size);
  if (pgsize === 0) return { pgsize: 0, count: 0 };
  return { pgsize, count: iommuPgcount(bitmap, iova, paddr, size, pgsize) };
}
