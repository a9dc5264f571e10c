/**
 * @module
 * Page-size bitmaps (the kernel's `pgsize_bitmap`, an unsigned long) held in
 * `number`s. Bits above 31 exist (a 64 KiB granule's 4 TiB block is bit
 * 42), so these helpers use arithmetic, never 32-bit bitwise operators.
 */

import { ffs, fls } from "./bits.ts";

/** Bitmap from a list of page sizes (each a power of two). */
export function pgsizeBitmapOf(sizes: readonly number[]): number {
  let m = 0;
  for (const s of sizes) if (!pgsizeIn(m, s)) m += s;
  return m;
}

/** True if the power of two `size` is in `bitmap`. */
export function pgsizeIn(bitmap: number, size: number): boolean {
  return size > 0 && Math.floor(bitmap / size) % 2 === 1;
}

/** The sizes in a bitmap, smallest first. */
export function pgsizesOf(bitmap: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < 53; b++) if (Math.floor(bitmap / 2 ** b) % 2 === 1) out.push(2 ** b);
  return out;
}

/** Smallest page size in the bitmap (the granule, `1 << __ffs(bitmap)`). */
export function pgsizeMin(bitmap: number): number {
  return 2 ** ffs(bitmap);
}

/** Largest page size in the bitmap. */
export function pgsizeMax(bitmap: number): number {
  return 2 ** fls(bitmap);
}

/**
 * `iommu_pgsize` (drivers/iommu/iommu.c): the largest page size allowed by
 * `size` and by the alignment of `iova | paddr`, and how many of them to map
 * before the next larger supported size could take over (when `iova` and
 * `paddr` share their offset within that larger size). `pgsize` 0 means no
 * size fits (the kernel BUGs; callers refuse with EINVAL first).
 */
export function iommuPgsize(
  bitmap: number,
  iova: number,
  paddr: number,
  size: number,
): { pgsize: number; count: number } {
  const addrMerge = iova + paddr;
  const maxByAlign = addrMerge > 0
    ? 2 ** Math.min(iova === 0 ? 53 : ffs(iova), paddr === 0 ? 53 : ffs(paddr))
    : Infinity;
  let pgsize = 0;
  let next = 0;
  for (const s of pgsizesOf(bitmap)) {
    if (s <= size && s <= maxByAlign) pgsize = s;
  }
  if (pgsize === 0) return { pgsize: 0, count: 0 };
  for (const s of pgsizesOf(bitmap)) {
    if (s > pgsize) {
      next = s;
      break;
    }
  }
  let span = size;
  if (next !== 0 && iova % next === paddr % next) {
    const offset = next - (Math.max(iova % next, paddr % next));
    if (offset + next <= size) span = offset;
  }
  return { pgsize, count: Math.floor(span / pgsize) };
}
