/**
 * @module
 * `__iommu_map` and `__iommu_unmap` (drivers/iommu/iommu.c, v6.8): split a
 * range into the largest page sizes the domain supports (`iommu_pgsize`),
 * call the driver's `map_pages`/`unmap_pages`, unmap what was mapped when a
 * map fails, and stop an unmap at the first hole. Allocation-free on the
 * success path.
 */

import { IommuError, isIommuError } from "../errors.ts";
import type { IotlbGather } from "../gather.ts";
import { iommuPgcount, iommuPgsizeOnly, pgsizeMin, pgsizeOffset } from "../pgsize.ts";
import type { Trace } from "../trace.ts";
import { __IOMMU_DOMAIN_PAGING, IOMMU_PROT_MASK, type IommuDomain } from "../types.ts";
import type { IommuCounters } from "./counters.ts";

const MAX_ADDR = Number.MAX_SAFE_INTEGER + 1; // 2^53

function hx(n: number): string {
  return "0x" + n.toString(16);
}

function checkWhole(op: string, what: string, v: number): void {
  if (!(v >= 0 && v <= Number.MAX_SAFE_INTEGER && Math.floor(v) === v)) {
    throw new IommuError("EINVAL", op, `${what} ${v} is not an integer in 0..2^53-1`);
  }
}

/**
 * True when one of `a`, `b`, `c` (integers in 0..2^53-1) is not a multiple
 * of the power of two `min`: their low words decide it up to 2^31.
 */
function unaligned(a: number, b: number, c: number, min: number): boolean {
  if (min <= 0x8000_0000) return (((a >>> 0) | (b >>> 0) | (c >>> 0)) & (min - 1)) !== 0;
  return pgsizeOffset(a, min) !== 0 || pgsizeOffset(b, min) !== 0 || pgsizeOffset(c, min) !== 0;
}

/**
 * Validate an `iommu_map` request without changing anything: ENODEV when the
 * domain cannot map (no map_pages or an empty page-size bitmap), EINVAL for a
 * non-paging domain, unknown prot bits, a range past 2^53, or an iova, paddr
 * or size not aligned to the smallest page size.
 */
export function checkMapArgs(
  domain: IommuDomain,
  iova: number,
  paddr: number,
  size: number,
  prot: number,
): void {
  // Fast accept (the common case): a paging domain that maps, whole numbers
  // that end below 2^53, known prot bits, everything aligned to the granule.
  const bitmap = domain.pgsizeBitmap;
  if (
    bitmap > 0 && typeof domain.mapPages === "function" &&
    (domain.type & __IOMMU_DOMAIN_PAGING) !== 0 &&
    iova >= 0 && paddr >= 0 && size >= 0 && iova <= Number.MAX_SAFE_INTEGER &&
    paddr <= Number.MAX_SAFE_INTEGER && size <= Number.MAX_SAFE_INTEGER &&
    iova + size <= MAX_ADDR && paddr + size <= MAX_ADDR &&
    Math.floor(iova) === iova && Math.floor(paddr) === paddr && Math.floor(size) === size &&
    Number.isInteger(prot) && prot >= 0 && (prot & ~IOMMU_PROT_MASK) === 0 &&
    !unaligned(iova, paddr, size, pgsizeMin(bitmap))
  ) {
    return;
  }
  const op = "iommu_map";
  if (!domain.mapPages || !(domain.pgsizeBitmap > 0)) {
    throw new IommuError(
      "ENODEV",
      op,
      `domain ${domain.label ?? ""} cannot map: no map_pages or empty pgsize_bitmap`,
    );
  }
  if ((domain.type & __IOMMU_DOMAIN_PAGING) === 0) {
    throw new IommuError(
      "EINVAL",
      op,
      `domain type ${domain.type} is not a paging domain; only paging domains take mappings`,
    );
  }
  checkWhole(op, "iova", iova);
  checkWhole(op, "paddr", paddr);
  checkWhole(op, "size", size);
  if (!Number.isInteger(prot) || (prot & ~IOMMU_PROT_MASK) !== 0 || prot < 0) {
    throw new IommuError(
      "EINVAL",
      op,
      `prot ${hx(prot)} has bits outside READ|WRITE|CACHE|NOEXEC|MMIO|PRIV (${
        hx(IOMMU_PROT_MASK)
      })`,
    );
  }
  if (iova + size > MAX_ADDR || paddr + size > MAX_ADDR) {
    throw new IommuError(
      "EINVAL",
      op,
      `range iova ${hx(iova)} paddr ${hx(paddr)} size ${hx(size)} ends beyond 2^53`,
    );
  }
  const min = pgsizeMin(domain.pgsizeBitmap);
  if (unaligned(iova, paddr, size, min)) {
    throw new IommuError(
      "EINVAL",
      op,
      `unaligned: iova ${hx(iova)} paddr ${hx(paddr)} size ${
        hx(size)
      } must all be multiples of the minimum page size ${hx(min)}`,
    );
  }
}

/**
 * `__iommu_map` after {@link checkMapArgs}: map `[iova, iova+size)` page size
 * by page size. On a driver failure, unmaps what was mapped (through `undo`,
 * which is `iommu_unmap`) and rethrows the driver's error.
 */
export function mapRange(
  domain: IommuDomain,
  iova: number,
  paddr: number,
  size: number,
  prot: number,
  c: IommuCounters,
  undo: (domain: IommuDomain, iova: number, size: number) => number,
): void {
  const bitmap = domain.pgsizeBitmap;
  const min = pgsizeMin(bitmap);
  const origIova = iova;
  const origSize = size;
  let err: unknown = null;
  while (size > 0) {
    // One smallest page (the common DMA case) is what iommu_pgsize picks then.
    const pgsize = size === min ? min : iommuPgsizeOnly(bitmap, iova, paddr, size);
    const count = size === min ? 1 : iommuPgcount(bitmap, iova, paddr, size, pgsize);
    let mapped = 0;
    c.mapPagesCalls++;
    try {
      mapped = domain.mapPages!(iova, paddr, pgsize, count, prot);
    } catch (e) {
      const m = isIommuError(e) ? e.detail.mapped : undefined;
      size -= typeof m === "number" && m > 0 ? m : 0;
      err = e;
      break;
    }
    if (!(mapped > 0)) {
      err = new IommuError(
        "EINVAL",
        "iommu_map",
        `driver map_pages mapped ${mapped} bytes of ${hx(pgsize)} x ${count} at iova ${hx(iova)}`,
      );
      break;
    }
    size -= mapped;
    iova += mapped;
    paddr += mapped;
  }
  if (err !== null) {
    c.mapFailures++;
    if (origSize - size > 0) undo(domain, origIova, origSize - size);
    throw err;
  }
}

/**
 * `__iommu_unmap`: unmap `[iova, iova+size)` into `gather`, page size by page
 * size, stopping at the first part the driver reports as not mapped (0
 * bytes). Returns bytes unmapped; 0 for a domain that cannot unmap, a
 * non-paging domain or an unaligned request, as the kernel does.
 */
export function unmapRange(
  domain: IommuDomain,
  iova: number,
  size: number,
  gather: IotlbGather,
  c: IommuCounters,
  trace: Trace | null,
): number {
  if (
    !(iova >= 0 && size >= 0 && iova <= Number.MAX_SAFE_INTEGER &&
      size <= Number.MAX_SAFE_INTEGER && Math.floor(iova) === iova && Math.floor(size) === size)
  ) {
    checkWhole("iommu_unmap", "iova", iova);
    checkWhole("iommu_unmap", "size", size);
  }
  c.unmaps++;
  const bitmap = domain.pgsizeBitmap;
  if (!domain.unmapPages || !(bitmap > 0)) return 0;
  if ((domain.type & __IOMMU_DOMAIN_PAGING) === 0) return 0;
  const min = pgsizeMin(bitmap);
  if (unaligned(iova, size, 0, min)) return 0;
  const origIova = iova;
  let unmapped = 0;
  while (unmapped < size) {
    const left = size - unmapped;
    const pgsize = left === min ? min : iommuPgsizeOnly(bitmap, iova, iova, left);
    const count = left === min ? 1 : iommuPgcount(bitmap, iova, iova, left, pgsize);
    c.unmapPagesCalls++;
    const page = domain.unmapPages(iova, pgsize, count, gather);
    if (!(page > 0)) break;
    iova += page;
    unmapped += page;
  }
  c.unmapBytes += unmapped;
  if (trace !== null && trace.observed) {
    trace.emit("iommu", "iommu:unmap", { iova: origIova, size, unmapped_size: unmapped });
  }
  return unmapped;
}
