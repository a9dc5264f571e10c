/**
 * @module
 * A set-associative cache on typed arrays, the storage of the VT-d IOTLB
 * and paging-structure caches: `sets × ways` slots, each holding a tag key,
 * an address key, a value, an info word and an LRU stamp. Nothing is
 * allocated after construction.
 *
 * - Tag key: `epochBase + (DID · 2^21 + PASID key) · 4 + class` (the PASID
 *   key is the PASID, or 2^20 for a request without PASID; a device TLB,
 *   one cache per device, uses DID 0; class: the page-size class of
 *   a translation, 0 for a paging-structure entry). A
 *   global invalidation starts a new epoch in O(1): every slot tagged under
 *   an older epoch has a smaller key, so it never matches and counts as free.
 *   Entries of one DID (or one DID and PASID) of the current epoch have
 *   consecutive keys, so a scan tests one range.
 * - The set of an entry depends on its address key, DID and class only (not
 *   the PASID), so an invalidation of a DID's pages in every PASID probes
 *   the same sets a lookup does.
 * - Replacement: a free way first, else the least recently used way of the
 *   set (a hit refreshes it). The VT-d specification leaves the policy to
 *   the implementation; LRU is what this model chose.
 */

import { IommuError } from "@iommu-lab/core";

/** 2^21: the PASID-key part of a tag (PASIDs, and 2^20 for none). */
const TWO21 = 2097152;
/** 2^23: one DID's span of tag keys (2^21 PASID keys × 4 classes). */
export const DID_SPAN = 8388608;
/** 2^39: one epoch's span of tag keys (2^16 DIDs × 2^23). */
const EPOCH_SPAN = 549755813888;
/** Epochs before the keys would leave the exact range of a double (2^53 / 2^39). */
const EPOCHS = 16384;
/** The PASID key of a request without PASID. */
export const NO_PASID_KEY = 1048576;

/** The tag of a (DID, PASID key) pair: `DID · 2^21 + PASID key`. */
export function cacheTag(did: number, pasid: number): number {
  return did * TWO21 + pasid;
}

/** The PASID key of a tag. */
export function tagPasid(tag: number): number {
  return tag % TWO21;
}

/**
 * Set index of an entry whose address key has low 32 bits `keyLo`, of
 * `did` and size class `cls`, in a cache of `mask + 1` sets (a power of
 * two). The key is folded (bits 9 and 18 up XORed in) so that keys 512 or
 * 2^18 apart (one page per 2 MiB or per 1 GiB) spread over the sets instead
 * of sharing one; within an aligned run of 512 keys consecutive keys still
 * take distinct sets. The DID and class offset the index.
 */
export function setOf(keyLo: number, did: number, cls: number, mask: number): number {
  return ((keyLo ^ (keyLo >>> 9) ^ (keyLo >>> 18)) +
    (Math.imul(did * 4 + cls + 1, 0x9e3779b1) >>> 12)) &
    mask;
}

/** Resolve an `entries` / `ways` option pair: ways clamped to entries, sets a power of two. */
export function geometry(name: string, entries: number, ways: number): [number, number] {
  const w = Math.min(ways, entries);
  const sets = entries / w;
  if (!Number.isInteger(sets) || (sets & (sets - 1)) !== 0) {
    throw new IommuError(
      "EINVAL",
      "vtd_options",
      `${name}_entries=${entries} is not ${name}_ways=${ways} times a power of two ` +
        `(e.g. ${w * 2 ** Math.max(0, Math.round(Math.log2(entries / w)))})`,
    );
  }
  return [sets, w];
}

/** A set-associative cache of `sets × ways` slots (see the module documentation). */
export class AssocCache {
  /** Ways per set. */
  readonly ways: number;
  /** Number of sets (a power of two). */
  readonly sets: number;
  /** `sets - 1`. */
  readonly mask: number;
  /** Tag key per slot; -1 when never used (see the module documentation). */
  readonly tkey: Float64Array;
  /** Address key per slot (IOTLB: the entry's aligned input address; PSC: its 2 MiB region number). */
  readonly key: Float64Array;
  /** Value per slot (IOTLB: output address; PSC: level-1 table address). */
  readonly val: Float64Array;
  /** Info word per slot (the owner's bit fields). */
  readonly info: Int32Array;
  /** Last use per slot (LRU). */
  readonly stamp: Float64Array;
  /** Tag-key base of the current epoch: a slot is live when its tag key is at least this. */
  epochBase = 0;
  /** Live entries. */
  live = 0;
  /** Live entries evicted to make room, ever. */
  evictions = 0;
  #epoch = 0;
  #clock = 0;
  /** Live entries per DID, valid when `#didEpoch[did]` is the current epoch. */
  readonly #didLive: Int32Array;
  readonly #didEpoch: Int32Array;

  /**
   * An empty cache of `sets` (a power of two) × `ways` slots, for tags of
   * DIDs below `dids` (a cache of one device's entries uses DID 0 only).
   */
  constructor(sets: number, ways: number, dids = 65536) {
    this.#didLive = new Int32Array(dids);
    this.#didEpoch = new Int32Array(dids);
    this.sets = sets;
    this.ways = ways;
    this.mask = sets - 1;
    const n = sets * ways;
    this.tkey = new Float64Array(n).fill(-1);
    this.key = new Float64Array(n);
    this.val = new Float64Array(n);
    this.info = new Int32Array(n);
    this.stamp = new Float64Array(n);
  }

  /** The slot of set `set` holding tag key `tk` (from {@link keyOf}) and address key `key`, or -1. */
  find(set: number, tk: number, key: number): number {
    const keys = this.key, tkeys = this.tkey;
    const end = (set + 1) * this.ways;
    for (let i = set * this.ways; i < end; i++) {
      if (keys[i] === key && tkeys[i] === tk) return i;
    }
    return -1;
  }

  /**
   * The live slot of set `set` holding address key `key` under any tag, or
   * -1 (for caches whose key alone names an entry: the context cache by
   * RID, the PASID cache by RID and PASID; the tag then only scopes
   * invalidations).
   */
  findKey(set: number, key: number): number {
    const keys = this.key, tkeys = this.tkey, base = this.epochBase;
    const end = (set + 1) * this.ways;
    for (let i = set * this.ways; i < end; i++) {
      if (keys[i] === key && tkeys[i] >= base) return i;
    }
    return -1;
  }

  /** The tag key of `tag` (from {@link cacheTag}) and class `cls` in the current epoch. */
  keyOf(tag: number, cls: number): number {
    return this.epochBase + tag * 4 + cls;
  }

  /** Mark `slot` as just used. */
  touch(slot: number): void {
    this.stamp[slot] = ++this.#clock;
  }

  /** Live entries of `did`. */
  liveOf(did: number): number {
    return this.#didEpoch[did] === this.#epoch ? this.#didLive[did] : 0;
  }

  /**
   * Store an entry in set `set`: over the entry with the same keys, else in
   * a free way, else over the least recently used way (counted in
   * `evictions`). Returns the slot.
   */
  insert(set: number, tk: number, key: number, val: number, info: number, did: number): number {
    return this.#store(this.find(set, tk, key), set, tk, key, val, info, did);
  }

  /**
   * As {@link insert} for an entry known to be absent (the caller's lookup
   * of the same keys missed and nothing was stored since).
   */
  insertNew(set: number, tk: number, key: number, val: number, info: number, did: number): number {
    return this.#store(-1, set, tk, key, val, info, did);
  }

  #store(
    slot: number,
    set: number,
    tk: number,
    key: number,
    val: number,
    info: number,
    did: number,
  ): number {
    const tkeys = this.tkey, stamps = this.stamp;
    if (slot < 0) {
      const base = this.epochBase;
      const start = set * this.ways, end = start + this.ways;
      let lru = start;
      for (let i = start; i < end; i++) {
        if (tkeys[i] < base) {
          slot = i;
          break;
        }
        if (stamps[i] < stamps[lru]) lru = i;
      }
      if (slot < 0) {
        slot = lru;
        this.evictions++;
        this.#dropCount(slot);
      }
      this.live++;
      const de = this.#didEpoch, dl = this.#didLive;
      if (de[did] !== this.#epoch) {
        de[did] = this.#epoch;
        dl[did] = 0;
      }
      dl[did]++;
    }
    tkeys[slot] = tk;
    this.key[slot] = key;
    this.val[slot] = val;
    this.info[slot] = info;
    stamps[slot] = ++this.#clock;
    return slot;
  }

  /** Remove the live entry in `slot`. */
  remove(slot: number): void {
    this.#dropCount(slot);
    this.tkey[slot] = -1;
  }

  /** Uncount the live entry in `slot` (its DID from its tag key). */
  #dropCount(slot: number): void {
    this.live--;
    this.#didLive[Math.floor((this.tkey[slot] - this.epochBase) / DID_SPAN)]--;
  }

  /** Remove every entry: a new epoch (a full reset when the epochs run out). */
  clear(): void {
    if (this.live === 0 && this.#epoch !== 0) return;
    this.live = 0;
    if (++this.#epoch === EPOCHS) {
      this.#epoch = 0;
      this.tkey.fill(-1);
      this.#didEpoch.fill(0);
      this.#didLive.fill(0);
    }
    this.epochBase = this.#epoch * EPOCH_SPAN;
  }

  /** Lowest tag key of `did` in the current epoch (its keys are below this plus DID_SPAN). */
  didKeyBase(did: number): number {
    return this.epochBase + did * DID_SPAN;
  }
}
