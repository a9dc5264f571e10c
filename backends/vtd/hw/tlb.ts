/**
 * @module
 * IOTLB / device-TLB entries and their keys: one Map per (DID, PASID) tag,
 * keyed by `floor(iova / size) * 4 + sizeIndex`, plus the range drop used by
 * page-selective invalidations. Paging-structure cache entries.
 */

/** Second stage only, legacy, pass-through: removed by IOTLB (0x2) invalidation. */
export const KIND_SS = 0;
/** First stage: removed by PASID-based IOTLB (0x6) invalidation. */
export const KIND_FS = 1;
/** Nested: removed by both. */
export const KIND_NESTED = 2;

/** One cached translation (IOTLB or device TLB). */
export interface TlbEntry {
  /** Domain ID tag. */
  did: number;
  /** PASID tag. */
  pasid: number;
  /** Page-aligned input address. */
  iova: number;
  /** Output address of the page. */
  pa: number;
  /** Page size. */
  size: number;
  /** ACCESS_* permissions. */
  perm: number;
  /** KIND_SS, KIND_FS or KIND_NESTED. */
  kind: number;
  /** Caching mode only: a cached not-present result (its fault reason), else 0. */
  fault: number;
}

/** Page sizes a TLB entry can have, smallest (most common) first; the index is part of the key. */
export const SIZES: readonly number[] = [4096, 2097152, 1073741824];

/** A paging-structure cache entry: the leaf (level-1) table of a 2 MiB region, with the permissions gathered above it. */
export interface PscEntry {
  /** Level-1 table address. */
  table: number;
  /** Second stage: ACCESS_* bits; first stage: bit0 R/W, bit1 U/S, bit2 XD. */
  perm: number;
}

/** `addr` rounded down to a multiple of the power of two `size` (a mask up to 1 GiB, no floating modulo). */
export function alignDown(addr: number, size: number): number {
  return size <= 1073741824 ? addr - ((addr >>> 0) & (size - 1)) : addr - (addr % size);
}

/**
 * Delete the entries of `m` (except kind `skip`) that overlap the 2^am pages
 * at `addr`: direct key probes for small ranges (only of the size classes
 * set in `sizes`, bit s for SIZES[s]), a scan for large ones.
 */
export function dropRange(
  m: Map<number, TlbEntry>,
  addr: number,
  am: number,
  skip: number,
  sizes = 7,
): void {
  if (m.size === 0) return;
  const size = 4096 * 2 ** am;
  const start = alignDown(addr, size);
  if (am <= 6) {
    for (let s = 0; s < 3; s++) {
      if (!((sizes >>> s) & 1)) continue;
      const sz = SIZES[s];
      const last = Math.floor((start + size - 1) / sz);
      for (let p = Math.floor(start / sz); p <= last; p++) {
        const k = p * 4 + s;
        const e = m.get(k);
        if (e !== undefined && e.kind !== skip) m.delete(k);
      }
    }
    return;
  }
  for (const [k, e] of m) {
    if (e.kind !== skip && e.iova < start + size && start < e.iova + e.size) m.delete(k);
  }
}
