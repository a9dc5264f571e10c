/**
 * @module
 * Reserved-region lists as `iommu_insert_resv_region` (drivers/iommu/iommu.c,
 * v6.8) builds them: sorted by start address (then by type, in the order of
 * `enum iommu_resv_type`), with overlapping or adjacent regions of the same
 * type merged into one.
 */

import type { ResvRegion, ResvType } from "../types.ts";

/** `enum iommu_resv_type` order, used to sort regions that start at the same address. */
export const RESV_TYPE_ORDER: Readonly<Record<ResvType, number>> = {
  DIRECT: 0,
  DIRECT_RELAXABLE: 1,
  RESERVED: 2,
  MSI: 3,
  SW_MSI: 4,
};

/**
 * `iommu_insert_resv_region`: insert a copy of `region` into the sorted list
 * `regions` (in place) and merge regions of the same type that overlap or
 * touch. A merged region keeps the protection of the lower one.
 */
export function insertResvRegion(regions: ResvRegion[], region: ResvRegion): void {
  const nr: ResvRegion = { ...region };
  const order = RESV_TYPE_ORDER[nr.type];
  let at = 0;
  while (
    at < regions.length &&
    !(nr.start < regions[at].start ||
      (nr.start === regions[at].start && order <= RESV_TYPE_ORDER[regions[at].type]))
  ) at++;
  regions.splice(at, 0, nr);

  // Merge the regions of nr's type; others keep their place.
  const out: ResvRegion[] = [];
  for (const it of regions) {
    if (it.type !== nr.type) {
      out.push(it);
      continue;
    }
    let top: ResvRegion | undefined;
    for (let i = out.length - 1; i >= 0; i--) {
      if (out[i].type === it.type) {
        top = out[i];
        break;
      }
    }
    if (!top) {
      out.push(it);
      continue;
    }
    const topEnd = top.start + top.length - 1;
    const itEnd = it.start + it.length - 1;
    if (it.start > topEnd + 1) out.push(it);
    else top.length = Math.max(topEnd, itEnd) - top.start + 1;
  }
  regions.length = 0;
  for (const r of out) regions.push(r);
}

/** Merge any number of region lists into one sorted, merged list (copies; inputs untouched). */
export function mergeResvRegions(...lists: readonly (readonly ResvRegion[])[]): ResvRegion[] {
  const out: ResvRegion[] = [];
  for (const l of lists) for (const r of l) insertResvRegion(out, r);
  return out;
}
