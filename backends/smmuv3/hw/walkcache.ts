/**
 * @module
 * The SMMU's walk cache: table descriptors (not leaves) of stage-1 and
 * stage-2 walks, so a walk that misses the TLB starts at the deepest cached
 * level instead of the table base. An entry is tagged like the TLB (regime,
 * VMID, ASID, or the stage-2-only tag for stage-2 tables) and keyed by the
 * level's input range: the base of the 2^shift bytes one descriptor at that
 * level translates, with `shift` = granule + stride × (3 - level). For the
 * table levels (0..2) of the 4K, 16K and 64K granules these shifts are all
 * different (21/30/39, 25/36/47, 29/42), so the size identifies granule and
 * level. The value is the next-level table's address as the walk read it
 * (an IPA for the stage-1 tables of a nested walk, translated through
 * stage 2 on every use).
 *
 * Storage and replacement are the TLB's {@link TranslationCache}: typed
 * arrays, and on overflow the oldest entry (by first fill) of the oldest tag
 * (by creation) goes.
 *
 * Invalidation (what the model does, see `SmmuV3` command handling):
 * TLBI by address with Leaf=1 keeps walk entries; Leaf=0 drops the entries
 * whose range overlaps the invalidated range. A non-zero TTL hint (with
 * TG != 0) restricts that to the entries read at level TTL, as an
 * implementation may: TTL=3 drops no walk entry at all (level-3
 * descriptors are never tables), which is why the kernel leaves TTL=0 on
 * non-leaf invalidations (`__arm_smmu_tlb_inv_range` sets TTL only when
 * leaf). By-context and ALL invalidations drop them as the TLB's.
 */

import { type TlbEntry, TranslationCache } from "./tlb.ts";

/** Default number of walk-cache entries (option `walk_cache_size`). */
export const WALK_CACHE_DEFAULT_SIZE = 512;

/** Log2 of the input range a descriptor at `level` translates, for granule shift `g`. */
export function levelShift(level: number, g: number): number {
  return g + (g - 3) * (3 - level);
}

/** The level of a table entry of range 2^`shift` for granule shift `g`. */
export function levelOf(shift: number, g: number): number {
  return 3 - (shift - g) / (g - 3);
}

/** One walk-cache entry as reported for introspection. */
export interface WalkCacheEntry {
  /** Cache tag (as `tlbTag`). */
  tag: number;
  /** Base of the input range. */
  base: number;
  /** Log2 of the input range. */
  shift: number;
  /** Level of the table descriptor. */
  level: number;
  /** Next-level table address. */
  table: number;
}

/**
 * The walk cache: a bounded cache of table descriptors. Lookups remember
 * their last hit per range size (a memo, not a cache of its own: every fill
 * or invalidation forgets it).
 */
export class WalkCache {
  readonly #c: TranslationCache;
  /** Memo by range shift (0..63): the hit's tag, range and table, valid when its generation is current. */
  readonly #mGen = new Float64Array(64).fill(-1);
  readonly #mTag = new Float64Array(64);
  readonly #mLo = new Float64Array(64);
  readonly #mHi = new Float64Array(64);
  readonly #mTable = new Float64Array(64);
  #gen = 0;

  /** A walk cache of at most `capacity` entries. */
  constructor(capacity: number) {
    this.#c = new TranslationCache(capacity);
  }

  /** Most entries kept. */
  get capacity(): number {
    return this.#c.capacity;
  }

  /** Number of entries. */
  get size(): number {
    return this.#c.size;
  }

  /** Next-level table address cached for the level of range 2^`shift` holding `addr`, or -1. */
  find(tag: number, addr: number, shift: number): number {
    if (
      this.#mGen[shift] === this.#gen && this.#mTag[shift] === tag && addr >= this.#mLo[shift] &&
      addr < this.#mHi[shift]
    ) return this.#mTable[shift];
    const e = this.#c.lookupSize(tag, addr, shift);
    if (e === undefined) return -1;
    this.#mGen[shift] = this.#gen;
    this.#mTag[shift] = tag;
    this.#mLo[shift] = e.va;
    this.#mHi[shift] = e.va + 2 ** shift;
    this.#mTable[shift] = e.pa;
    return e.pa;
  }

  /** Cache the table descriptor at `level` (range 2^`shift`) for `addr`: next table `table`. */
  fill(tag: number, addr: number, level: number, shift: number, table: number): void {
    this.#gen++;
    const e: TlbEntry = this.#c.recycled();
    const span = 2 ** shift;
    e.va = Math.floor(addr / span) * span;
    e.ipa = e.va;
    e.pa = table;
    e.sizeShift = shift;
    e.permP = level;
    e.permU = 0;
    e.nested = false;
    this.#c.insert(tag, e);
  }

  /**
   * Drop entries overlapping `[addr, addr+size)` of the selected contexts
   * (as `TranslationCache.dropRange`: an ASID, `ALL_ASIDS_AND_S2` or
   * `BY_IPA` for stage-2 tables); with `onlyShift` >= 0 only the entries of
   * range 2^`onlyShift` (one level: the TTL filter).
   */
  dropRange(
    el2: number,
    vmid: number,
    asid: number,
    addr: number,
    size: number,
    onlyShift: number,
  ): void {
    this.#gen++;
    this.#c.dropRange(el2, vmid, asid, addr, size, onlyShift);
  }

  /** Drop whole contexts (as `TranslationCache.dropContexts`). */
  dropContexts(el2: number, vmid: number, asid: number): void {
    this.#gen++;
    this.#c.dropContexts(el2, vmid, asid);
  }

  /** Drop every non-EL2 entry. */
  dropAllEl1(): void {
    this.#gen++;
    this.#c.dropAllEl1();
  }

  /** Drop everything. */
  clear(): void {
    this.#gen++;
    this.#c.clear();
  }

  /** The entries (introspection for tests and reports; allocates). */
  entries(): WalkCacheEntry[] {
    return this.#c.entries().map(({ tag, entry }) => ({
      tag,
      base: entry.va,
      shift: entry.sizeShift,
      level: entry.permP,
      table: entry.pa,
    }));
  }
}
