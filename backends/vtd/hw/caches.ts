/**
 * @module
 * The VT-d hardware caches the driver must keep coherent: context cache,
 * PASID cache, IOTLB, first- and second-stage paging-structure caches and
 * the device TLBs, with the scope of every invalidation the specification
 * defines. Every cache is set-associative on typed arrays (`assoc.ts`: LRU
 * within a set, sizes and associativity from the options). The context
 * cache is keyed by RID and tagged by the legacy entry's DID; the PASID
 * cache is keyed by RID and PASID and tagged by (DID, PASID); their decoded
 * entries live in one object per slot, reused when the slot is refilled.
 * Lookups and fills are done by the model's translation path; this module
 * owns what each invalidation removes.
 */

import type { VtdOptions } from "./options.ts";
import { AssocCache, cacheTag, DID_SPAN, geometry, NO_PASID_KEY, setOf } from "./assoc.ts";
import {
  alignDown,
  INFO_CLS_SHIFT,
  INFO_FAULT_SHIFT,
  INFO_KIND_SHIFT,
  KIND_FS,
  KIND_NESTED,
  KIND_SS,
  pageLo,
  POW2,
  SIZES,
} from "./tlb.ts";

const TWO32 = 4294967296;

/** A decoded context entry held in the context cache. */
export interface CtxEntry {
  rid: number;
  sm: boolean;
  fpd: boolean;
  // legacy
  tt: number;
  slptr: number;
  aw: number;
  did: number;
  // scalable
  dte: boolean;
  paside: boolean;
  pre: boolean;
  pdts: number;
  pasidDir: number;
  ridPasid: number;
  /** Words as fetched (for checking mode): the first `rawLen` of 8. */
  raw: number[];
  /** Words of `raw` in use (8 scalable, 4 legacy; 0 for a fresh walk's entry). */
  rawLen: number;
  /** Address the entry was fetched from. */
  addr: number;
}

/** A blank context-cache entry (one per cache slot, refilled whenever the slot is). */
export function newCtxEntry(): CtxEntry {
  return {
    rid: 0,
    sm: false,
    fpd: false,
    tt: 0,
    slptr: 0,
    aw: 0,
    did: 0,
    dte: false,
    paside: false,
    pre: false,
    pdts: 0,
    pasidDir: 0,
    ridPasid: 0,
    raw: [0, 0, 0, 0, 0, 0, 0, 0],
    rawLen: 0,
    addr: 0,
  };
}

/** A decoded PASID entry held in the PASID cache. */
export interface PasidCacheEntry {
  rid: number;
  pasid: number;
  fpd: boolean;
  pgtt: number;
  aw: number;
  ssade: boolean;
  slptr: number;
  did: number;
  sre: boolean;
  ere: boolean;
  flpm: number;
  wpe: boolean;
  flptr: number;
  /** The 16 words as fetched (for checking mode). */
  raw: number[];
  addr: number;
}

/** A blank PASID-cache entry (one per cache slot, refilled whenever the slot is). */
export function newPasidEntry(): PasidCacheEntry {
  return {
    rid: 0,
    pasid: 0,
    fpd: false,
    pgtt: 0,
    aw: 0,
    ssade: false,
    slptr: 0,
    did: 0,
    sre: false,
    ere: false,
    flpm: 0,
    wpe: false,
    flptr: 0,
    raw: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    addr: 0,
  };
}

/** Entry counts of every cache. */
export interface CacheSizes {
  /** Context-cache entries. */
  context: number;
  /** PASID-cache entries. */
  pasid: number;
  /** IOTLB entries. */
  iotlb: number;
  /** Device-TLB entries (all devices). */
  devtlb: number;
  /** First-stage paging-structure-cache entries. */
  pscFs: number;
  /** Second-stage paging-structure-cache entries. */
  pscSs: number;
}

/** 2^20: the PASID-cache key is `RID · 2^20 + PASID`. */
const TWO20 = 1048576;

/** The caches of one VT-d unit. */
export class VtdCaches {
  /**
   * Context cache: address key = RID, tag = (DID of a legacy entry, else 0;
   * PASID key 0), so a legacy domain-selective invalidation scans one tag
   * range. The decoded entry is `ctxEntries[slot]`.
   */
  readonly ctx: AssocCache;
  /** Decoded context entry per context-cache slot (made on the slot's first fill). */
  readonly ctxEntries: (CtxEntry | undefined)[];
  /**
   * PASID cache: address key = RID · 2^20 + PASID, tag = (DID, PASID), set
   * from the PASID offset by the RID. The decoded entry is `pasidEntries[slot]`.
   */
  readonly pasid: AssocCache;
  /** Decoded PASID entry per PASID-cache slot (made on the slot's first fill). */
  readonly pasidEntries: (PasidCacheEntry | undefined)[];
  /**
   * PASID-cache slots chained by tag (DID, PASID), so a PASID-selective
   * invalidation visits only that tag's entries: tag -> first slot, and
   * per slot the next and previous slot of its chain (-1 ends) and its tag.
   */
  readonly #pHead: Map<number, number> = new Map();
  /**
   * Per RID, the slot its last context-cache (`#ctxHint`) and PASID-cache
   * (`#pasidHint`) lookup or fill used: tried before the set is searched
   * (a hint is only trusted when that slot still holds the key, live).
   */
  readonly #ctxHint: Int32Array = new Int32Array(65536);
  readonly #pasidHint: Int32Array = new Int32Array(65536);
  readonly #pNext: Int32Array;
  readonly #pPrev: Int32Array;
  readonly #pTag: Float64Array;
  /**
   * IOTLB, tagged by (DID, PASID) and size class; address key = the entry's
   * aligned input address, value = its output address, info = perm, kind,
   * class and cached fault (INFO_* in tlb.ts).
   */
  readonly iotlb: AssocCache;
  /**
   * Device TLBs (the ATCs of ATS devices): each device its own cache of
   * `devtlb_entries` × `devtlb_ways`, made at its first fill, tagged by PASID
   * key under DID 0; otherwise as the IOTLB. Indexed by SID.
   */
  readonly devtlbs: (AssocCache | undefined)[] = new Array(65536).fill(undefined);
  /** The device TLBs made so far. */
  readonly #devtlbList: AssocCache[] = [];
  readonly #devSets: number;
  readonly #devWays: number;
  /** Second-stage paging-structure cache: (DID, PASID) and 2 MiB region -> leaf table, perm. */
  readonly pscSs: AssocCache;
  /** First-stage paging-structure cache: (DID, PASID) and 2 MiB region -> leaf table, perm. */
  readonly pscFs: AssocCache;
  /** Some nested translation may be in the IOTLB (cleared by a global invalidation). */
  maybeNested = false;
  /** Options (capacities). */
  readonly opts: VtdOptions;
  /**
   * Generation of the context and PASID caches: bumped whenever an entry
   * of either is added or removed, so a memo of the last lookup stays exact.
   */
  gen = 0;
  /** Bit s set once a TLB entry of size class s (SIZES) has been cached: probes skip the others. */
  sizesSeen = 0;
  /** Generation of the IOTLB and device TLBs: bumped by every fill and every invalidation. */
  tlbGen = 0;

  /** Empty caches of the sizes the options give. */
  constructor(opts: VtdOptions) {
    this.opts = opts;
    const [ts, tw] = geometry("tlb", opts.tlb_entries, opts.tlb_ways);
    const [ps, pw] = geometry("psc", opts.psc_entries, opts.psc_ways);
    this.iotlb = new AssocCache(ts, tw);
    [this.#devSets, this.#devWays] = geometry("devtlb", opts.devtlb_entries, opts.devtlb_ways);
    this.pscSs = new AssocCache(ps, pw);
    this.pscFs = new AssocCache(ps, pw);
    const [cs, cw] = geometry("ctx", opts.ctx_entries, opts.ctx_ways);
    this.ctx = new AssocCache(cs, cw);
    this.ctxEntries = new Array(cs * cw).fill(undefined);
    const [qs, qw] = geometry("pasid_cache", opts.pasid_cache_entries, opts.pasid_cache_ways);
    this.pasid = new AssocCache(qs, qw);
    this.pasidEntries = new Array(qs * qw).fill(undefined);
    this.#pNext = new Int32Array(qs * qw);
    this.#pPrev = new Int32Array(qs * qw);
    this.#pTag = new Float64Array(qs * qw);
  }

  /** The cached context entry of `rid` (marked used), or null. */
  ctxLookup(rid: number): CtxEntry | null {
    const t = this.ctx;
    if (t.live === 0) return null;
    let slot = this.#ctxHint[rid];
    if (t.key[slot] !== rid || t.tkey[slot] < t.epochBase) {
      slot = t.findKey(setOf(rid, 0, 0, t.mask), rid);
      if (slot < 0) return null;
      this.#ctxHint[rid] = slot;
    }
    t.touch(slot);
    return this.ctxEntries[slot]!;
  }

  /**
   * The entry object to fill for `rid` (legacy DID `did`, else 0): over the
   * cached entry of `rid` if any, else in a free way or over the least
   * recently used way of its set. Bumps the generation.
   */
  ctxInsert(rid: number, did: number): CtxEntry {
    this.gen++;
    const t = this.ctx, set = setOf(rid, 0, 0, t.mask);
    const old = t.findKey(set, rid);
    if (old >= 0) t.remove(old);
    const slot = t.insertNew(set, t.keyOf(cacheTag(did, 0), 0), rid, 0, 0, did);
    this.#ctxHint[rid] = slot;
    return this.ctxEntries[slot] ??= newCtxEntry();
  }

  /** True when the context cache holds `rid` (its LRU order untouched). */
  ctxHas(rid: number): boolean {
    const t = this.ctx;
    return t.findKey(setOf(rid, 0, 0, t.mask), rid) >= 0;
  }

  /** True when the PASID cache holds (`rid`, `pasid`) (its LRU order untouched). */
  pasidHas(rid: number, pasid: number): boolean {
    const t = this.pasid;
    return t.findKey(setOf(pasid, rid, 0, t.mask), rid * TWO20 + pasid) >= 0;
  }

  /** The cached PASID entry of (`rid`, `pasid`) (marked used), or null. */
  pasidLookup(rid: number, pasid: number): PasidCacheEntry | null {
    const t = this.pasid;
    if (t.live === 0) return null;
    const key = rid * TWO20 + pasid;
    let slot = this.#pasidHint[rid];
    if (t.key[slot] !== key || t.tkey[slot] < t.epochBase) {
      slot = t.findKey(setOf(pasid, rid, 0, t.mask), key);
      if (slot < 0) return null;
      this.#pasidHint[rid] = slot;
    }
    t.touch(slot);
    return this.pasidEntries[slot]!;
  }

  /** The entry object to fill for (`rid`, `pasid`) of DID `did` (as {@link ctxInsert}). */
  pasidInsert(rid: number, pasid: number, did: number): PasidCacheEntry {
    this.gen++;
    const t = this.pasid, set = setOf(pasid, rid, 0, t.mask), key = rid * TWO20 + pasid;
    const old = t.findKey(set, key);
    if (old >= 0) this.#pasidRemove(old);
    const tag = cacheTag(did, pasid), ev = t.evictions;
    const slot = t.insertNew(set, t.keyOf(tag, 0), key, 0, 0, did);
    if (t.evictions !== ev) this.#pUnlink(slot); // the victim left its chain
    // Link the slot at the head of its tag's chain.
    const head = this.#pHead.get(tag) ?? -1;
    this.#pNext[slot] = head;
    this.#pPrev[slot] = -1;
    if (head >= 0) this.#pPrev[head] = slot;
    this.#pHead.set(tag, slot);
    this.#pTag[slot] = tag;
    this.#pasidHint[rid] = slot;
    return this.pasidEntries[slot] ??= newPasidEntry();
  }

  /** Take PASID-cache `slot` out of its tag's chain. */
  #pUnlink(slot: number): void {
    const p = this.#pPrev[slot], n = this.#pNext[slot];
    if (p >= 0) this.#pNext[p] = n;
    else if (n >= 0) this.#pHead.set(this.#pTag[slot], n);
    else this.#pHead.delete(this.#pTag[slot]);
    if (n >= 0) this.#pPrev[n] = p;
  }

  /** Remove the live PASID-cache entry in `slot`. */
  #pasidRemove(slot: number): void {
    this.#pUnlink(slot);
    this.pasid.remove(slot);
  }

  /** Remove every PASID-cache entry of `tag` (a chain walk). */
  #pasidDropTag(tag: number): void {
    let slot = this.#pHead.get(tag) ?? -1;
    if (slot < 0) return;
    this.#pHead.delete(tag);
    const next = this.#pNext, t = this.pasid;
    while (slot >= 0) {
      const n = next[slot];
      t.remove(slot);
      slot = n;
    }
  }

  /**
   * The IOTLB slot translating `addr` for `tag` (DID `did`), or -1: one
   * probe per page size ever cached, smallest first. A hit is not marked
   * used (the caller does, see {@link AssocCache.touch}).
   */
  lookup(tag: number, did: number, addr: number): number {
    return probe(this.iotlb, this.sizesSeen, tag, did, addr);
  }

  /** The slot of `sid`'s device TLB translating `addr` for PASID key `pk`, or -1. */
  lookupDev(sid: number, pk: number, addr: number): number {
    const t = this.devtlbs[sid];
    return t === undefined ? -1 : probe(t, this.sizesSeen, pk, 0, addr);
  }

  /**
   * Cache a translation in the device TLB of `sid` for PASID key `pk`
   * (over an entry with the same keys). Returns true when an entry of the
   * device was evicted to make room.
   */
  insertDev(
    sid: number,
    pk: number,
    iova: number,
    pa: number,
    size: number,
    perm: number,
    kind: number,
  ): boolean {
    this.tlbGen++;
    const cls = size === 4096 ? 0 : size === 2097152 ? 1 : 2;
    this.sizesSeen |= 1 << cls;
    let t = this.devtlbs[sid];
    if (t === undefined) {
      t = this.devtlbs[sid] = new AssocCache(this.#devSets, this.#devWays, 1);
      this.#devtlbList.push(t);
    }
    const lo = iova >>> 0, hi = (iova - lo) / TWO32;
    const info = perm | (kind << INFO_KIND_SHIFT) | (cls << INFO_CLS_SHIFT);
    const set = setOf(pageLo(lo, hi, cls), 0, cls, t.mask), ev = t.evictions;
    t.insert(set, t.keyOf(pk, cls), iova, pa, info, 0);
    return t.evictions !== ev;
  }

  /**
   * Cache a translation (or, with `fault` set, caching mode's not-present
   * result) of the `size`-aligned `iova` for `tag` (DID `did`); `absent`
   * when a lookup of it just found nothing. Returns the slot.
   */
  insert(
    tag: number,
    did: number,
    iova: number,
    pa: number,
    size: number,
    perm: number,
    kind: number,
    fault: number,
    absent: boolean,
  ): number {
    this.tlbGen++;
    const cls = size === 4096 ? 0 : size === 2097152 ? 1 : 2;
    this.sizesSeen |= 1 << cls;
    if (kind === KIND_NESTED) this.maybeNested = true;
    const t = this.iotlb;
    const lo = iova >>> 0, hi = (iova - lo) / TWO32;
    const info = perm | (kind << INFO_KIND_SHIFT) | (cls << INFO_CLS_SHIFT) |
      (fault << INFO_FAULT_SHIFT);
    const set = setOf(pageLo(lo, hi, cls), did, cls, t.mask), tk = t.keyOf(tag, cls);
    return absent
      ? t.insertNew(set, tk, iova, pa, info, did)
      : t.insert(set, tk, iova, pa, info, did);
  }

  /** Context-cache invalidation: 1 global, 2 domain (global in scalable mode), 3 device with function mask. */
  invContext(sm: boolean, gran: number, did: number, sid: number, fm: number): void {
    this.gen++;
    const t = this.ctx;
    if (t.live === 0) return;
    if (gran === 1 || (gran === 2 && sm)) {
      t.clear();
      return;
    }
    if (gran === 2) {
      dropTagRange(t, t.didKeyBase(did), DID_SPAN, t.liveOf(did));
      return;
    }
    if (gran === 3) {
      // The function mask ignores the low 0..3 bits of the SID: up to 8 RIDs.
      const n = fm === 0 ? 1 : fm === 1 ? 2 : fm === 2 ? 4 : 8;
      const first = sid & 0xffff & ~(n - 1);
      for (let rid = first; rid < first + n; rid++) {
        const slot = t.findKey(setOf(rid, 0, 0, t.mask), rid);
        if (slot >= 0) t.remove(slot);
      }
    }
  }

  /**
   * IOTLB invalidation (0x2): 1 global (everything), 2 domain, 3 page range
   * (AM, IH) — in scalable mode of second-stage and nested entries only —
   * with the paging-structure caches it implies.
   */
  invIotlb(sm: boolean, gran: number, did: number, addr: number, am: number, ih = 0): void {
    this.tlbGen++;
    if (gran === 1) {
      // Global: every entry, first-stage ones included, and every
      // paging-structure cache entry.
      this.iotlb.clear();
      this.pscSs.clear();
      this.pscFs.clear();
      this.maybeNested = false;
      return;
    }
    this.invPsc(true, did, -1, gran === 3, addr, am, ih);
    if (!sm || gran !== 3 || ih === 0) {
      // Nested entries are cached first-stage structures over this second stage.
      this.invPsc(false, did, -1, false, 0, 0, 0);
    }
    if (this.iotlb.liveOf(did) === 0) return;
    const skip = sm ? KIND_FS : -1;
    if (gran === 3) {
      const size = 4096 * POW2[am];
      this.#drop(this.iotlb, did, -1, alignDown(addr, size), size, skip, -1);
      // Nested entries are tagged by first-stage input address: a change
      // to the second stage may affect any of them, so drop them all.
      if (this.maybeNested) this.#drop(this.iotlb, did, -1, 0, 0, -1, KIND_NESTED);
    } else this.#drop(this.iotlb, did, -1, 0, 0, skip, -1);
  }

  /** PASID-based IOTLB invalidation (0x6): 2 all in PASID, 3 page range; first-stage and nested entries. */
  invPiotlb(gran: number, did: number, pasid: number, addr: number, am: number, ih = 0): void {
    this.tlbGen++;
    this.invPsc(false, did, pasid, gran === 3, addr, am, ih);
    if (this.iotlb.liveOf(did) === 0) return;
    if (gran === 3) {
      const size = 4096 * POW2[am];
      this.#drop(this.iotlb, did, pasid, alignDown(addr, size), size, KIND_SS, -1);
    } else this.#drop(this.iotlb, did, pasid, 0, 0, KIND_SS, -1);
  }

  /**
   * Remove the IOTLB entries of `did` (and of `pasid` unless -1) that
   * overlap [start, start + size) (size 0: all), except kind `skip`, and
   * only of kind `only` unless -1: key probes for up to 64 pages (only of
   * the size classes ever cached), a scan of the DID's keys otherwise.
   */
  #drop(
    t: AssocCache,
    did: number,
    pasid: number,
    start: number,
    size: number,
    skip: number,
    only: number,
  ): void {
    const tkeys = t.tkey, keys = t.key, info = t.info;
    const lo = pasid < 0 ? t.didKeyBase(did) : t.keyOf(cacheTag(did, pasid), 0);
    const hi = lo + (pasid < 0 ? DID_SPAN : 4);
    if (size !== 0 && size <= 262144) {
      const seen = this.sizesSeen, ways = t.ways, end = start + size;
      for (let cls = 0; cls < 3; cls++) {
        if (!((seen >>> cls) & 1)) continue;
        const sz = SIZES[cls];
        for (let base = alignDown(start, sz); base < end; base += sz) {
          const bLo = base >>> 0;
          const set = setOf(pageLo(bLo, (base - bLo) / TWO32, cls), did, cls, t.mask);
          for (let i = set * ways, e = i + ways; i < e; i++) {
            if (keys[i] !== base) continue;
            const tk = tkeys[i];
            if (tk < lo || tk >= hi) continue;
            const inf = info[i];
            const kind = (inf >>> INFO_KIND_SHIFT) & 3;
            if (((inf >>> INFO_CLS_SHIFT) & 3) !== cls || kind === skip) continue;
            if (only >= 0 && kind !== only) continue;
            t.remove(i);
          }
        }
      }
      return;
    }
    const n = tkeys.length, end = start + size;
    for (let i = 0; i < n; i++) {
      const tk = tkeys[i];
      if (tk < lo || tk >= hi) continue;
      const inf = info[i];
      const kind = (inf >>> INFO_KIND_SHIFT) & 3;
      if (kind === skip || (only >= 0 && kind !== only)) continue;
      if (size !== 0) {
        const k = keys[i];
        if (!(k < end && start < k + SIZES[(inf >>> INFO_CLS_SHIFT) & 3])) continue;
      }
      t.remove(i);
    }
  }

  /**
   * Drop paging-structure entries (second stage when `ss`) of `did` / `pasid`
   * (-1 all) whose 2 MiB region overlaps the range when `page` (else all of
   * them); a page-selective invalidation with IH=1 keeps them.
   */
  invPsc(
    ss: boolean,
    did: number,
    pasid: number,
    page: boolean,
    addr: number,
    am: number,
    ih: number,
  ): void {
    if (page && ih) return;
    const t = ss ? this.pscSs : this.pscFs;
    if (t.liveOf(did) === 0) return;
    const tkeys = t.tkey, keys = t.key;
    const lo = pasid < 0 ? t.didKeyBase(did) : t.keyOf(cacheTag(did, pasid), 0);
    const hi = lo + (pasid < 0 ? DID_SPAN : 4);
    let r0 = 0, r1 = -1;
    if (page) {
      const size = 4096 * POW2[am];
      const start = alignDown(addr, size);
      r0 = Math.floor(start / 2097152);
      r1 = Math.floor((start + size - 1) / 2097152);
      if (r1 - r0 < 16) {
        const ways = t.ways;
        for (let r = r0; r <= r1; r++) {
          const rLo = r >>> 0;
          const set = setOf(rLo, did, 0, t.mask);
          for (let i = set * ways; i < (set + 1) * ways; i++) {
            const tk = tkeys[i];
            if (tk >= lo && tk < hi && keys[i] === r) t.remove(i);
          }
        }
        return;
      }
    }
    const n = tkeys.length;
    for (let i = 0; i < n; i++) {
      const tk = tkeys[i];
      if (tk < lo || tk >= hi) continue;
      if (page && (keys[i] < r0 || keys[i] > r1)) continue;
      t.remove(i);
    }
  }

  /** PASID-cache invalidation: 0 domain, 1 PASID within domain, 3 global. */
  invPasidCache(gran: number, did: number, pasid: number): void {
    this.gen++;
    const t = this.pasid;
    if (t.live === 0) return;
    if (gran === 3) {
      t.clear();
      this.#pHead.clear();
      return;
    }
    if (t.liveOf(did) === 0) return;
    if (gran === 1) this.#pasidDropTag(cacheTag(did, pasid));
    else if (gran === 0) {
      // Every chain of the DID (tags did · 2^21 + PASID).
      for (const tag of this.#pHead.keys()) {
        if (Math.floor(tag / 2097152) === did) this.#pasidDropTag(tag);
      }
    }
  }

  /** Device-TLB invalidation; pasid -1 = without PASID, -2 = all PASIDs. */
  invDevtlb(sid: number, pasid: number, w2: number, w3: number): void {
    this.tlbGen++;
    const t = this.devtlbs[sid];
    if (t === undefined || t.live === 0) return;
    const s = w2 & 1;
    const addr = (w3 & 0xfffff) * TWO32 + ((w2 & 0xfffff000) >>> 0);
    let size = 4096;
    if (s) {
      // The lowest clear bit at or above bit 12 gives the size: 2^(k+1) bytes.
      let k = 12;
      while (k < 63 && Math.floor(addr / POW2[k]) % 2 === 1) k++;
      size = POW2[k + 1];
    }
    const start = alignDown(addr, size);
    this.#drop(
      t,
      0,
      pasid === -2 ? -1 : pasid === -1 ? NO_PASID_KEY : pasid,
      start,
      size,
      -1,
      -1,
    );
  }

  /** Entry counts. */
  sizes(): CacheSizes {
    const pscFs = this.pscFs.live, pscSs = this.pscSs.live, iotlb = this.iotlb.live;
    let devtlb = 0;
    for (const t of this.#devtlbList) devtlb += t.live;
    return { context: this.ctx.live, pasid: this.pasid.live, iotlb, devtlb, pscFs, pscSs };
  }
}

/**
 * Remove the live entries of `t` whose tag key is in [lo, lo + span), at
 * most `max` of them (the scan stops there).
 */
function dropTagRange(t: AssocCache, lo: number, span: number, max: number): void {
  const tkeys = t.tkey, n = tkeys.length, hi = lo + span;
  for (let i = 0; i < n && max > 0; i++) {
    const tk = tkeys[i];
    if (tk >= lo && tk < hi) {
      t.remove(i);
      max--;
    }
  }
}

/**
 * The slot of `t` translating `addr` for `tag` (DID or SID `did`), or -1:
 * one probe per page size in `seen` (bit s for SIZES[s]), smallest first.
 */
function probe(t: AssocCache, seen: number, tag: number, did: number, addr: number): number {
  if (t.live === 0) return -1;
  const lo = addr >>> 0, hi = (addr - lo) / TWO32;
  const tk = t.epochBase + tag * 4;
  if (seen & 1) {
    const slot = t.find(setOf(pageLo(lo, hi, 0), did, 0, t.mask), tk, addr - (lo & 0xfff));
    if (slot >= 0) return slot;
  }
  if (seen & 2) {
    const s = t.find(setOf(pageLo(lo, hi, 1), did, 1, t.mask), tk + 1, addr - (lo & 0x1fffff));
    if (s >= 0) return s;
  }
  if (seen & 4) {
    return t.find(setOf(pageLo(lo, hi, 2), did, 2, t.mask), tk + 2, addr - (lo & 0x3fffffff));
  }
  return -1;
}
