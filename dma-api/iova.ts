/**
 * @module
 * The kernel's IOVA allocator (drivers/iommu/iova.c, about v6.9): ranges of
 * page frame numbers kept in order with an anchor at the top, top-down
 * allocation from a limit, the `cached_node` / `cached32_node` starting
 * points and the `max32_alloc_size` fast failure, size-aligned requests, and
 * the range caches (per-CPU magazines of 127 PFNs for orders 0..5 and a
 * depot of full magazines) with flush-and-retry.
 *
 * The kernel's rbtree is an ordered set walked with rb_prev/rb_next; here
 * the same ordered set is two sorted Float64Arrays (pfn_lo, pfn_hi) searched
 * by binary search, and a "node" is its pfn_lo. Every decision (start node,
 * walk, retry, cached-node updates) is the kernel's, so allocations come out
 * at the same PFNs in the same order.
 */

import { IommuError } from "@iommu-lab/core";

/** `IOVA_ANCHOR`: the anchor node's PFN (the kernel's ~0UL, here 2^53 - 1). */
export const IOVA_ANCHOR: number = Number.MAX_SAFE_INTEGER;
/** `IOVA_RANGE_CACHE_MAX_SIZE`: orders 0..5 are cached. */
export const IOVA_RANGE_CACHE_MAX_SIZE = 6;
/** `IOVA_MAG_SIZE`: PFNs per magazine (a 1024-byte magazine). */
export const IOVA_MAG_SIZE = 127;
/** `IOVA_DEPOT_DELAY`: the depot trim work runs every 100 ms (in ns). */
export const IOVA_DEPOT_DELAY_NS = 100_000_000;

/** `order_base_2(n)`: ceil(log2(n)), 0 for 1. */
export function orderBase2(n: number): number {
  if (n <= 1) return 0;
  if (n <= 0x80000000) return 32 - Math.clz32(n - 1);
  let o = 31;
  while (2 ** o < n) o++;
  return o;
}

/** `roundup_pow_of_two(n)`. */
export function roundupPowOfTwo(n: number): number {
  return 2 ** orderBase2(n);
}

/** `fls_long(x)`: 1-based index of the highest set bit, 0 for 0. */
function flsLong(x: number): number {
  return x <= 0 ? 0 : Math.floor(Math.log2(x)) + 1;
}

/** Counters of one IOVA domain. */
export interface IovaCounters {
  /** Allocations served by the tree walk. */
  treeAllocs: number;
  /** Allocations served from a range cache. */
  rcacheHits: number;
  /** alloc_iova_fast calls that missed the range cache. */
  rcacheMisses: number;
  /** Frees kept in a range cache. */
  rcacheInserts: number;
  /** Frees returned to the tree. */
  treeFrees: number;
  /** Failed tree walks (ENOMEM from __alloc_and_insert_iova_range). */
  allocFailures: number;
  /** Flushes of every CPU cache and the depot before a retry. */
  rcacheFlushes: number;
  /** Allocations failed by the max32_alloc_size fast path. */
  max32FastFails: number;
}

/** A magazine: up to 127 PFNs. */
class Magazine {
  size = 0;
  readonly pfns = new Float64Array(IOVA_MAG_SIZE);
  /** Depot link. */
  next: Magazine | null = null;
  get full(): boolean {
    return this.size === IOVA_MAG_SIZE;
  }
  get empty(): boolean {
    return this.size === 0;
  }
  /** `iova_magazine_pop`: the topmost PFN not above `limit`, or 0. */
  pop(limit: number): number {
    let i = this.size - 1;
    while (this.pfns[i] > limit) {
      if (i === 0) return 0;
      i--;
    }
    const pfn = this.pfns[i];
    this.pfns[i] = this.pfns[--this.size];
    return pfn;
  }
  push(pfn: number): void {
    this.pfns[this.size++] = pfn;
  }
}

/** One order's range cache: per-CPU loaded/prev magazines and the depot. */
class RangeCache {
  depot: Magazine | null = null;
  depotSize = 0;
  readonly loaded: Magazine[] = [];
  readonly prev: Magazine[] = [];
  workArmed = false;
  constructor(cpus: number) {
    for (let c = 0; c < cpus; c++) {
      this.loaded.push(new Magazine());
      this.prev.push(new Magazine());
    }
  }
  depotPush(mag: Magazine): void {
    mag.next = this.depot;
    this.depot = mag;
    this.depotSize++;
  }
  /** An empty magazine: a recycled one if any (the kernel allocates one; the model reuses). */
  spare(): Magazine {
    const m = this.#spares.pop();
    return m === undefined ? new Magazine() : m;
  }
  /** Keep an emptied magazine for {@link RangeCache.spare}. */
  recycle(mag: Magazine): void {
    mag.size = 0;
    mag.next = null;
    if (this.#spares.length < 4) this.#spares.push(mag);
  }
  readonly #spares: Magazine[] = [];
  depotPop(): Magazine {
    const mag = this.depot!;
    this.depot = mag.next;
    mag.next = null;
    mag.size = IOVA_MAG_SIZE;
    this.depotSize--;
    return mag;
  }
}

/** Options of an {@link IovaDomain}. */
export interface IovaDomainOptions {
  /** Number of model "CPUs" with their own magazines (default 1). */
  cpus?: number;
  /** Where the depot trim work is scheduled (every 100 ms); none when omitted. */
  timer?: { setTimer(delayNs: number, fn: () => void): number };
  /** Use the range caches (`iova_domain_init_rcaches`, default true). */
  rcaches?: boolean;
}

/** `struct iova_domain`: an ordered set of allocated PFN ranges plus range caches. */
export class IovaDomain {
  /** Allocation unit in bytes (`granule`, a power of two). */
  readonly granule: number;
  /** `iova_shift`: log2(granule). */
  readonly shift: number;
  /** Lowest PFN handed out (`start_pfn`). */
  readonly startPfn: number;
  /** `dma_32bit_pfn`: first PFN at or above 4 GiB. */
  readonly dma32bitPfn: number;
  /** `max32_alloc_size`: 32-bit requests at least this big fail fast. */
  max32AllocSize: number;
  /** Number of model CPUs. */
  readonly cpus: number;
  /** Counters. */
  readonly counters: IovaCounters = {
    treeAllocs: 0,
    rcacheHits: 0,
    rcacheMisses: 0,
    rcacheInserts: 0,
    treeFrees: 0,
    allocFailures: 0,
    rcacheFlushes: 0,
    max32FastFails: 0,
  };
  // Ranges in descending order of pfn_lo (the anchor first), so that the
  // top-down allocator's new lowest ranges are appended, not inserted at the
  // front. Logical index i (ascending, as the kernel's in-order walk) is
  // physical index n - 1 - i.
  #L = new Float64Array(64);
  #H = new Float64Array(64);
  #n = 0;
  #cached = IOVA_ANCHOR; // pfn_lo of cached_node
  #cached32 = IOVA_ANCHOR; // pfn_lo of cached32_node
  readonly #rcaches: RangeCache[] = [];
  readonly #timer: IovaDomainOptions["timer"];

  /** `init_iova_domain(iovad, granule, start_pfn)` (+ `iova_domain_init_rcaches`). */
  constructor(granule: number, startPfn: number, opts: IovaDomainOptions = {}) {
    if (!(granule >= 512 && Number.isInteger(Math.log2(granule)))) {
      throw new IommuError(
        "EINVAL",
        "init_iova_domain",
        `granule ${granule} must be a power of two of at least 512`,
      );
    }
    if (!Number.isInteger(startPfn) || startPfn < 1) {
      throw new IommuError("EINVAL", "init_iova_domain", `start_pfn ${startPfn} must be >= 1`);
    }
    this.granule = granule;
    this.shift = Math.log2(granule);
    this.startPfn = startPfn;
    this.dma32bitPfn = 2 ** (32 - this.shift);
    this.max32AllocSize = this.dma32bitPfn;
    this.cpus = opts.cpus ?? 1;
    this.#timer = opts.timer;
    this.#n = 1;
    this.#L[0] = IOVA_ANCHOR;
    this.#H[0] = IOVA_ANCHOR;
    if (opts.rcaches ?? true) {
      for (let i = 0; i < IOVA_RANGE_CACHE_MAX_SIZE; i++) {
        this.#rcaches.push(new RangeCache(this.cpus));
      }
    }
  }

  // ---- ordered-set primitives ---------------------------------------------

  /** Index of the range whose pfn_lo is `lo` (must exist). */
  #indexOfLo(lo: number): number {
    let a = 0, b = this.#n - 1;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (this.#L[this.#n - 1 - m] < lo) a = m + 1;
      else b = m;
    }
    return a;
  }

  /** Index of the range containing `pfn`, or -1 (`private_find_iova`). */
  #find(pfn: number): number {
    let a = 0, b = this.#n - 1;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (this.#H[this.#n - 1 - m] < pfn) a = m + 1;
      else b = m;
    }
    return this.#L[this.#n - 1 - a] <= pfn && pfn <= this.#H[this.#n - 1 - a] ? a : -1;
  }

  /** Insert at logical index `i` (cost: the `i` ranges below it move). */
  #insertAt(i: number, lo: number, hi: number): void {
    const n = this.#n;
    if (n === this.#L.length) {
      const nl = new Float64Array(n * 2);
      const nh = new Float64Array(n * 2);
      nl.set(this.#L);
      nh.set(this.#H);
      this.#L = nl;
      this.#H = nh;
    }
    const q = n - i; // physical index of the new range
    this.#L.copyWithin(q + 1, q, n);
    this.#H.copyWithin(q + 1, q, n);
    this.#L[q] = lo;
    this.#H[q] = hi;
    this.#n = n + 1;
  }

  /** Remove logical index `i`. */
  #removeAt(i: number): void {
    const n = this.#n;
    const q = n - 1 - i;
    this.#L.copyWithin(q, q + 1, n);
    this.#H.copyWithin(q, q + 1, n);
    this.#n = n - 1;
  }

  /** Number of ranges in the tree (the anchor excluded). */
  get rangeCount(): number {
    return this.#n - 1;
  }

  /** Every range in the tree as [pfn_lo, pfn_hi], ascending (anchor excluded). */
  ranges(): [number, number][] {
    const out: [number, number][] = [];
    for (let i = 0; i < this.#n - 1; i++) {
      out.push([this.#L[this.#n - 1 - i], this.#H[this.#n - 1 - i]]);
    }
    return out;
  }

  /** `find_iova`: the [pfn_lo, pfn_hi] range containing `pfn`, or null. */
  findIova(pfn: number): [number, number] | null {
    const i = this.#find(pfn);
    return i < 0 || this.#L[this.#n - 1 - i] === IOVA_ANCHOR
      ? null
      : [this.#L[this.#n - 1 - i], this.#H[this.#n - 1 - i]];
  }

  // ---- tree allocation ------------------------------------------------------

  /** `iova_find_limit`: the node to restart a walk below `limitPfn` from. */
  #findLimit(limitPfn: number): number {
    if (limitPfn > this.dma32bitPfn) return this.#n - 1; // the anchor
    let a = 0, b = this.#n - 1;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (this.#H[this.#n - 1 - m] < limitPfn) a = m + 1;
      else b = m;
    }
    return a;
  }

  /**
   * `__alloc_and_insert_iova_range`: walk down from the cached node for a
   * gap of `size` PFNs ending at or below `limitPfn` (exclusive). Returns
   * pfn_lo, or -1 for ENOMEM.
   */
  #allocRange(size: number, limitPfn: number, sizeAligned: boolean): number {
    let lowPfn = this.startPfn;
    let highPfn = limitPfn;
    const alignBits = sizeAligned ? flsLong(size - 1) : 0;
    const align = 2 ** alignBits;
    if (limitPfn <= this.dma32bitPfn && size >= this.max32AllocSize) {
      this.counters.max32FastFails++;
      return -1;
    }
    let curr = this.#indexOfLo(limitPfn <= this.dma32bitPfn ? this.#cached32 : this.#cached);
    const retryPfn = this.#H[this.#n - 1 - curr];
    let newPfn = 0;
    let prev = curr;
    for (;;) {
      do {
        highPfn = Math.min(highPfn, this.#L[this.#n - 1 - curr]);
        newPfn = Math.floor((highPfn - size) / align) * align;
        prev = curr;
        curr--;
      } while (curr >= 0 && newPfn <= this.#H[this.#n - 1 - curr] && newPfn >= lowPfn);
      if (highPfn < size || newPfn < lowPfn) {
        if (lowPfn === this.startPfn && retryPfn < limitPfn) {
          highPfn = limitPfn;
          lowPfn = retryPfn + 1;
          curr = this.#findLimit(limitPfn);
          continue;
        }
        this.max32AllocSize = size;
        this.counters.allocFailures++;
        return -1;
      }
      break;
    }
    // The new node goes just below `prev` in order.
    this.#insertAt(prev, newPfn, newPfn + size - 1);
    if (newPfn + size - 1 < this.dma32bitPfn) this.#cached32 = newPfn;
    else this.#cached = newPfn;
    this.counters.treeAllocs++;
    return newPfn;
  }

  /**
   * `alloc_iova(iovad, size, limit_pfn, size_aligned)`: allocate `size` PFNs
   * at or below `limitPfn` (inclusive). Returns pfn_lo, or 0 when no space.
   */
  allocIova(size: number, limitPfn: number, sizeAligned: boolean): number {
    if (!Number.isInteger(size) || size < 1) {
      throw new IommuError("EINVAL", "alloc_iova", `size ${size} must be a positive page count`);
    }
    const pfn = this.#allocRange(size, limitPfn + 1, sizeAligned);
    return pfn < 0 ? 0 : pfn;
  }

  /** `__cached_rbnode_delete_update` for the range at index `i`. */
  #deleteUpdate(i: number): void {
    const lo = this.#L[this.#n - 1 - i], hi = this.#H[this.#n - 1 - i];
    const next = this.#L[this.#n - 1 - (i + 1)]; // rb_next: the anchor is always after
    if (lo === this.#cached32 || (hi < this.dma32bitPfn && lo >= this.#cached32)) {
      this.#cached32 = next;
    }
    if (lo < this.dma32bitPfn) this.max32AllocSize = this.dma32bitPfn;
    if (lo >= this.#cached) this.#cached = next;
  }

  /** `free_iova(iovad, pfn)`: return the range containing `pfn` to the tree; false if none. */
  freeIova(pfn: number): boolean {
    const i = this.#find(pfn);
    if (i < 0 || this.#L[this.#n - 1 - i] === IOVA_ANCHOR) return false;
    this.#deleteUpdate(i);
    this.#removeAt(i);
    this.counters.treeFrees++;
    return true;
  }

  /**
   * `reserve_iova(iovad, pfn_lo, pfn_hi)`: keep `[pfnLo, pfnHi]` out of
   * allocation; overlapping ranges are merged into one reserved range.
   */
  reserveIova(pfnLo: number, pfnHi: number): void {
    if (pfnLo > pfnHi) {
      throw new IommuError(
        "EINVAL",
        "reserve_iova",
        `range [0x${pfnLo.toString(16)}, 0x${pfnHi.toString(16)}] is empty`,
      );
    }
    let lo = pfnLo, hi = Math.min(pfnHi, IOVA_ANCHOR - 1);
    // Remove and absorb every range overlapping [lo, hi] (__adjust_overlap_range).
    for (let i = 0; i < this.#n - 1;) {
      if (this.#H[this.#n - 1 - i] >= lo && this.#L[this.#n - 1 - i] <= hi) {
        lo = Math.min(lo, this.#L[this.#n - 1 - i]);
        hi = Math.max(hi, this.#H[this.#n - 1 - i]);
        this.#removeAt(i);
      } else i++;
    }
    let i = 0;
    while (this.#L[this.#n - 1 - i] < lo) i++;
    this.#insertAt(i, lo, hi);
  }

  // ---- range caches -----------------------------------------------------------

  /** `iova_rcache_insert` on `cpu`: true if the PFN was cached. */
  #rcacheInsert(pfn: number, size: number, cpu: number): boolean {
    const log = size === 1 ? 0 : orderBase2(size);
    if (log >= this.#rcaches.length) return false;
    const rc = this.#rcaches[log];
    let mag = rc.loaded[cpu];
    if (mag.size === IOVA_MAG_SIZE) {
      const prev = rc.prev[cpu];
      if (prev.size !== IOVA_MAG_SIZE) {
        rc.prev[cpu] = mag;
        rc.loaded[cpu] = prev;
        mag = prev;
      } else {
        rc.depotPush(mag);
        mag = rc.spare();
        rc.loaded[cpu] = mag;
        this.#armDepotWork(rc);
      }
    }
    mag.pfns[mag.size++] = pfn;
    this.counters.rcacheInserts++;
    return true;
  }

  /** `iova_rcache_get` on `cpu` for order `log`: a cached PFN ending at or below `limitPfn` (exclusive), or 0. */
  #rcacheGet(log: number, size: number, limitPfn: number, cpu: number): number {
    if (log >= this.#rcaches.length) return 0;
    const rc = this.#rcaches[log];
    let mag = rc.loaded[cpu];
    if (mag.size === 0) {
      const prev = rc.prev[cpu];
      if (prev.size !== 0) {
        rc.prev[cpu] = mag;
        rc.loaded[cpu] = prev;
        mag = prev;
      } else if (rc.depot) {
        rc.recycle(mag);
        mag = rc.depotPop();
        rc.loaded[cpu] = mag;
      } else return 0;
    }
    // iova_magazine_pop: the topmost PFN fits (the common case), else search down.
    const top = mag.size - 1;
    const pfn = mag.pfns[top];
    if (pfn <= limitPfn - size) {
      mag.size = top;
      return pfn;
    }
    return mag.pop(limitPfn - size);
  }

  #armDepotWork(rc: RangeCache): void {
    if (!this.#timer || rc.workArmed) return;
    rc.workArmed = true;
    this.#timer.setTimer(IOVA_DEPOT_DELAY_NS, () => {
      rc.workArmed = false;
      if (rc.depotSize > this.cpus) {
        this.#freeMagazine(rc.depotPop());
        this.#armDepotWork(rc);
      }
    });
  }

  #freeMagazine(mag: Magazine): void {
    for (let i = 0; i < mag.size; i++) this.freeIova(mag.pfns[i]);
    mag.size = 0;
  }

  /** `free_cpu_cached_iovas(cpu)`: return `cpu`'s magazines' PFNs to the tree. */
  freeCpuCachedIovas(cpu: number): void {
    for (const rc of this.#rcaches) {
      this.#freeMagazine(rc.loaded[cpu]);
      this.#freeMagazine(rc.prev[cpu]);
    }
  }

  /** `free_global_cached_iovas`: empty every depot into the tree. */
  freeGlobalCachedIovas(): void {
    for (const rc of this.#rcaches) while (rc.depot) this.#freeMagazine(rc.depotPop());
  }

  /** PFNs held by the range cache of `order` (all CPUs and the depot). */
  cachedCount(order: number): number {
    const rc = this.#rcaches[order];
    if (!rc) return 0;
    let n = 0;
    for (let c = 0; c < this.cpus; c++) n += rc.loaded[c].size + rc.prev[c].size;
    for (let m = rc.depot; m; m = m.next) n += m.size;
    return n;
  }

  /** Full magazines in the depot of `order`. */
  depotSize(order: number): number {
    return this.#rcaches[order]?.depotSize ?? 0;
  }

  /**
   * `alloc_iova_fast(iovad, size, limit_pfn, flush_rcache)` on `cpu`: sizes
   * under 32 pages round up to a power of two; try the range cache, then the
   * tree (size-aligned), and on failure with `flushRcache` empty every cache
   * and retry once. Returns pfn_lo, or 0.
   */
  allocIovaFast(size: number, limitPfn: number, flushRcache: boolean, cpu = 0): number {
    const log = size === 1 ? 0 : orderBase2(size);
    if (size < 32) size = 1 << log; // below 2^(IOVA_RANGE_CACHE_MAX_SIZE - 1): a power of two
    const cached = this.#rcacheGet(log, size, limitPfn + 1, cpu);
    if (cached) {
      this.counters.rcacheHits++;
      return cached;
    }
    this.counters.rcacheMisses++;
    for (;;) {
      const pfn = this.allocIova(size, limitPfn, true);
      if (pfn) return pfn;
      if (!flushRcache) return 0;
      flushRcache = false;
      this.counters.rcacheFlushes++;
      for (let c = 0; c < this.cpus; c++) this.freeCpuCachedIovas(c);
      this.freeGlobalCachedIovas();
    }
  }

  /** `free_iova_fast(iovad, pfn, size)` on `cpu`: into the range cache, else the tree. */
  freeIovaFast(pfn: number, size: number, cpu = 0): void {
    if (this.#rcacheInsert(pfn, size, cpu)) return;
    this.freeIova(pfn);
  }

  /** `put_iova_domain`: free every magazine and range. */
  destroy(): void {
    for (let c = 0; c < this.cpus; c++) this.freeCpuCachedIovas(c);
    this.freeGlobalCachedIovas();
    this.#n = 1;
    this.#L[0] = IOVA_ANCHOR;
    this.#H[0] = IOVA_ANCHOR;
    this.#cached = this.#cached32 = IOVA_ANCHOR;
    this.max32AllocSize = this.dma32bitPfn;
  }
}
