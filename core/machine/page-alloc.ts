/**
 * @module
 * The kernel's page allocator for IOMMU table pages and other kernel memory:
 * zeroed 4 KiB-aligned blocks (order 0..10) from a physical range, with
 * accounting and failure injection at the Nth allocation (to prove that a
 * failed call leaves no partial state). Freed blocks are reused, and a
 * larger free block is split for a smaller request; freed buddies are not
 * merged back (the pool is meant to be large against what a scenario uses).
 */

import { IommuError } from "../errors.ts";
import { PAGE_SIZE, type PhysMem } from "./memory.ts";

/** Allocator statistics. */
export interface AllocStats {
  /** Successful allocations so far. */
  allocations: number;
  /** Frees so far. */
  frees: number;
  /** Pages currently allocated. */
  pagesInUse: number;
  /** Highest pagesInUse seen. */
  peakPages: number;
  /** Allocations refused (injected or out of memory). */
  failures: number;
}

/** Allocates zeroed, naturally aligned page blocks from `[base, limit)`. */
export class PageAllocator {
  readonly #mem: PhysMem;
  /** First address managed. */
  readonly base: number;
  /** One past the last address managed. */
  readonly limit: number;
  #next: number;
  readonly #free = new Map<number, number[]>(); // order -> free block addresses
  readonly #live = new Map<number, number>(); // address -> order
  #failAt = 0;
  #failEvery = false;
  /** Counters. */
  readonly stats: AllocStats = {
    allocations: 0,
    frees: 0,
    pagesInUse: 0,
    peakPages: 0,
    failures: 0,
  };

  /** Manage `[base, limit)` of `mem` (both page-aligned). */
  constructor(mem: PhysMem, base: number, limit: number) {
    if (base % PAGE_SIZE !== 0 || limit % PAGE_SIZE !== 0 || limit <= base || limit > mem.limit) {
      throw new IommuError(
        "EINVAL",
        "page_allocator",
        `range [0x${base.toString(16)}, 0x${
          limit.toString(16)
        }) must be page-aligned, non-empty and inside memory`,
      );
    }
    this.#mem = mem;
    this.base = base;
    this.limit = limit;
    this.#next = base;
  }

  /**
   * Make the `n`th allocation from now fail with ENOMEM (1 = the next one).
   * With `sticky`, every allocation from the nth on fails. 0 disables.
   */
  failAt(n: number, sticky = false): void {
    if (!Number.isInteger(n) || n < 0) {
      throw new IommuError(
        "EINVAL",
        "fail_at",
        `${n} is not a count (0 disables, 1 = the next allocation)`,
      );
    }
    this.#failAt = n;
    this.#failEvery = sticky;
  }

  /** Allocate one zeroed page; returns its physical address. */
  allocPage(): number {
    return this.allocPages(0);
  }

  /** Allocate `2^order` zeroed contiguous pages, aligned to their size. */
  allocPages(order: number): number {
    if (!Number.isInteger(order) || order < 0 || order > 10) {
      throw new IommuError("EINVAL", "alloc_pages", `order ${order} is outside 0..10`);
    }
    if (this.#failAt > 0) {
      if (this.#failAt === 1) {
        if (!this.#failEvery) this.#failAt = 0;
        this.stats.failures++;
        throw new IommuError("ENOMEM", "alloc_pages", `injected allocation failure`);
      }
      this.#failAt--;
    }
    const bytes = PAGE_SIZE * 2 ** order;
    let addr = this.#free.get(order)?.pop();
    if (addr === undefined) addr = this.#split(order);
    if (addr === undefined) {
      const aligned = Math.ceil(this.#next / bytes) * bytes;
      if (aligned + bytes > this.limit) {
        this.stats.failures++;
        throw new IommuError(
          "ENOMEM",
          "alloc_pages",
          `out of memory: ${2 ** order} page(s) requested, allocator range ends at 0x${
            this.limit.toString(16)
          }`,
        );
      }
      // Keep the skipped alignment gap usable for order-0 requests.
      for (let a = this.#next; a < aligned; a += PAGE_SIZE) this.#pushFree(0, a);
      this.#next = aligned + bytes;
      addr = aligned;
    }
    this.#mem.fill(addr, bytes, 0);
    this.#live.set(addr, order);
    this.stats.allocations++;
    this.stats.pagesInUse += 2 ** order;
    if (this.stats.pagesInUse > this.stats.peakPages) this.stats.peakPages = this.stats.pagesInUse;
    return addr;
  }

  /** Take a free block of a higher order and split it down to `order`; undefined if none. */
  #split(order: number): number | undefined {
    for (let j = order + 1; j <= 10; j++) {
      const big = this.#free.get(j)?.pop();
      if (big === undefined) continue;
      // Keep the low part, return the upper halves to the lower orders.
      for (let k = j - 1; k >= order; k--) this.#pushFree(k, big + PAGE_SIZE * 2 ** k);
      return big;
    }
    return undefined;
  }

  /** Order of the live block at `addr`, or -1. */
  orderOf(addr: number): number {
    return this.#live.get(addr) ?? -1;
  }

  /** Addresses of the live blocks, ascending (for leak reports). */
  liveBlocks(): number[] {
    return [...this.#live.keys()].sort((a, b) => a - b);
  }

  #pushFree(order: number, addr: number): void {
    let l = this.#free.get(order);
    if (!l) this.#free.set(order, l = []);
    l.push(addr);
  }

  /** Free a block returned by allocPage(s); freeing anything else throws EINVAL. */
  free(addr: number): void {
    const order = this.#live.get(addr);
    if (order === undefined) {
      throw new IommuError(
        "EINVAL",
        "free_pages",
        `0x${addr.toString(16)} is not an allocated block`,
      );
    }
    this.#live.delete(addr);
    this.#pushFree(order, addr);
    this.stats.frees++;
    this.stats.pagesInUse -= 2 ** order;
  }

  /** True if `addr` is the start of a live block. */
  isAllocated(addr: number): boolean {
    return this.#live.has(addr);
  }
}
