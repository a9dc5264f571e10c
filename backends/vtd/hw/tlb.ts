/**
 * @module
 * Translation-cache entry kinds and page sizes shared by the IOTLB and the
 * device TLBs (set-associative caches, `assoc.ts` and `caches.ts`), and the
 * layout of their slots' info word.
 */

/** Second stage only, legacy, pass-through: removed by IOTLB (0x2) invalidation. */
export const KIND_SS = 0;
/** First stage: removed by PASID-based IOTLB (0x6) invalidation. */
export const KIND_FS = 1;
/** Nested: removed by both. */
export const KIND_NESTED = 2;

/** 2^i for i in 0..63 (a table lookup instead of Math.pow on invalidation and fetch paths). */
export const POW2: Float64Array = Float64Array.from({ length: 64 }, (_, i) => 2 ** i);

/** Page sizes a TLB entry can have, smallest (most common) first; the index is part of the key. */
export const SIZES: readonly number[] = [4096, 2097152, 1073741824];

/** `addr` rounded down to a multiple of the power of two `size` (a mask up to 1 GiB, no floating modulo). */
export function alignDown(addr: number, size: number): number {
  return size <= 1073741824 ? addr - ((addr >>> 0) & (size - 1)) : addr - (addr % size);
}

/** IOTLB / device-TLB info word: ACCESS_* permissions in bits 3:0. */
export const INFO_PERM_MASK = 0xf;
/** IOTLB / device-TLB info word: the entry kind (KIND_*) at bit 4 (2 bits). */
export const INFO_KIND_SHIFT = 4;
/** IOTLB / device-TLB info word: the size class (index into SIZES) at bit 6 (2 bits). */
export const INFO_CLS_SHIFT = 6;
/** IOTLB / device-TLB info word: caching mode's cached fault reason at bit 8 (8 bits; 0 for a translation). */
export const INFO_FAULT_SHIFT = 8;

/**
 * Low 32 bits of the page number of size class `cls` (SIZES) of the address
 * whose 32-bit halves are `lo` and `hi`.
 */
export function pageLo(lo: number, hi: number, cls: number): number {
  return cls === 0
    ? (lo >>> 12) | (hi << 20)
    : cls === 1
    ? (lo >>> 21) | (hi << 11)
    : (lo >>> 30) | (hi << 2);
}
