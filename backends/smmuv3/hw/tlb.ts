/**
 * @module
 * The SMMU's translation caches: the TLB (tagged by translation regime, VMID
 * and ASID, or as a stage-2-only entry) and the per-device ATC of ATS
 * masters (tagged by StreamID and SubstreamID). Entries are keyed by their
 * naturally aligned base address / 32 plus the log2 of their size (a small
 * integer key for addresses below 64 GiB), so a lookup probes each size in
 * use without allocating.
 */

/** One cached translation. */
export interface TlbEntry {
  /** Input address of the entry's first byte (aligned to its size). */
  va: number;
  /** Output address of the first byte. */
  pa: number;
  /** Intermediate address of the first byte (nested and stage-2 entries). */
  ipa: number;
  /** Log2 of the entry's size. */
  sizeShift: number;
  /** ACCESS_* bits for privileged requests. */
  permP: number;
  /** ACCESS_* bits for unprivileged requests. */
  permU: number;
  /** A combined stage-1 + stage-2 entry. */
  nested: boolean;
}

const EL2_UNIT = 17179869184; // 2^34
const VMID_UNIT = 131072; // 2^17
/** The ASID tag of stage-2-only entries. */
export const S2_ONLY_ASID = 0x10000;
/** ASID selector: every ASID of the VMID and its stage-2-only entries. */
export const ALL_ASIDS_AND_S2: number = -1;
/** ASID selector: stage-2 (IPA) invalidation. */
export const BY_IPA: number = -2;
/** ASID selector: every ASID of the VMID, not its stage-2-only entries. */
export const ALL_ASIDS: number = -3;

/** TLB tag of a translation regime (EL2 = 1), VMID and ASID (or {@link S2_ONLY_ASID}). */
export function tlbTag(el2: number, vmid: number, asid: number): number {
  return el2 * EL2_UNIT + vmid * VMID_UNIT + asid;
}

/** ATC tag of a StreamID and SubstreamID (-1 for none). */
export function atcTag(sid: number, ssid: number): number {
  return sid * 2097152 + (ssid + 1);
}

/** Entry key of an entry at `va` (aligned to its size, at least 128 bytes) of size 2^sizeShift. */
function entryKey(va: number, sizeShift: number): number {
  return va * 0.03125 + sizeShift;
}

const INV_TWO32 = 2.3283064365386963e-10; // 2^-32
/** Hash of (tag, key): both integers (doubles beyond 2^32 too), folded to 32 bits, multiplicative. */
function hashOf(tag: number, key: number): number {
  const k = (key >>> 0) ^ Math.imul((key * INV_TWO32) >>> 0, 0x85ebca6b);
  const t = Math.imul((tag >>> 0) ^ ((tag * INV_TWO32) >>> 0), 0xc2b2ae35);
  return Math.imul(k ^ t, 0x9e3779b1);
}

const NONE = -1;

/** A copy of `a` in a new array of `n` elements (the rest zero). */
function grownF64(a: Float64Array, n: number): Float64Array<ArrayBuffer> {
  const b = new Float64Array(n);
  b.set(a);
  return b;
}

/** A copy of `a` in a new array of `n` elements (the rest zero). */
function grownI32(a: Int32Array, n: number): Int32Array<ArrayBuffer> {
  const b = new Int32Array(n);
  b.set(a);
  return b;
}
/** 2^n and 2^-n for n in 0..64. */
const POW2: Float64Array = Float64Array.from({ length: 65 }, (_, i) => 2 ** i);
const INV_POW2: Float64Array = Float64Array.from({ length: 65 }, (_, i) => 2 ** -i);
/** Remembered-hit slots (a power of two). */
const HIT_SLOTS = 64;
const INV_4K = 1 / 4096;

/**
 * A tagged translation cache with a capacity: when an insert exceeds it, the
 * oldest entry (by first insertion of its base and size) of the oldest tag
 * (by creation) is evicted. Storage is typed arrays: entry slots (tag, key,
 * links) and an open-addressing index on (tag, key) with linear probing and
 * backward-shift deletion, both grown by doubling; tags are records in
 * creation order, each with its entries in insertion order. Lookups and
 * inserts allocate nothing once the arrays have grown.
 */
export class TranslationCache {
  /** Most entries kept. */
  readonly capacity: number;
  #count = 0;
  // --- entry slots
  #slotCap = 0;
  #ent: (TlbEntry | undefined)[] = [];
  #slotTag = new Float64Array(0);
  #slotKey = new Float64Array(0);
  /** Home bucket of the slot's (tag, key) in the index. */
  #slotHome = new Int32Array(0);
  /** Bucket the slot sits in now (kept through backward shifts). */
  #slotBucket = new Int32Array(0);
  /** Tag record of the slot. */
  #slotRec = new Int32Array(0);
  #slotNext = new Int32Array(0);
  #slotPrev = new Int32Array(0);
  /** Free slots (a stack). */
  #freeSlots = new Int32Array(0);
  #nFreeSlots = 0;
  // --- index: bucket -> slot (NONE when empty)
  #index = new Int32Array(0);
  #mask = 0;
  #shift = 32;
  // --- tag records, in creation order (a doubly linked list)
  readonly #recOf = new Map<number, number>();
  #recTag = new Float64Array(0);
  #recHead = new Int32Array(0);
  #recTail = new Int32Array(0);
  #recCount = new Int32Array(0);
  #recNext = new Int32Array(0);
  #recPrev = new Int32Array(0);
  #recFirst = NONE;
  #recLast = NONE;
  readonly #freeRecs: number[] = [];
  /**
   * The tag looked up last and its record (NONE: known absent; NaN tag: none);
   * reset when a record is removed.
   */
  #lastTag = NaN;
  #lastRec = NONE;
  // --- sizes in use
  readonly #sizes: number[] = [];
  readonly #bytes: number[] = [];
  /** 2^-size of each size in use (floor(addr * inv) is addr >> size, exactly). */
  readonly #inv: number[] = [];
  /** 2^(size-5) of each size in use: (addr >> size) * keyMul is the key's base part. */
  readonly #keyMul: number[] = [];
  /** Evicted entries, handed out again by {@link recycled} (no allocation per insert). */
  readonly #free: TlbEntry[] = [];
  /**
   * Remembered hits, direct-mapped by 4 KiB page (64 slots): an entry lookup
   * found at the first size probed, with its tag and range. Any address in
   * that range probes the same key first, so it finds the same entry until
   * the cache changes; every change bumps the generation, which forgets
   * them all at once.
   */
  #gen = 0;
  readonly #hitGen: Float64Array = new Float64Array(HIT_SLOTS).fill(-1);
  readonly #hitTag: Float64Array = new Float64Array(HIT_SLOTS);
  readonly #hitLo: Float64Array = new Float64Array(HIT_SLOTS);
  readonly #hitHi: Float64Array = new Float64Array(HIT_SLOTS);
  readonly #hitEntry: (TlbEntry | undefined)[] = new Array(HIT_SLOTS).fill(undefined);

  /** An empty cache of `capacity` entries. */
  constructor(capacity: number) {
    this.capacity = capacity;
    this.#growSlots(Math.min(64, Math.max(1, capacity)));
    this.#growIndex(128);
    this.#growRecs(8);
  }

  /** Number of entries. */
  get size(): number {
    return this.#count;
  }

  /**
   * An entry object to fill and {@link insert}: a previously evicted one when
   * there is one (its fields are stale), else a new one.
   */
  recycled(): TlbEntry {
    const e = this.#free.pop();
    if (e !== undefined) return e;
    return { va: 0, pa: 0, ipa: 0, sizeShift: 12, permP: 0, permU: 0, nested: false };
  }

  // -------------------------------------------------------------------------
  // Storage

  #growSlots(n: number): void {
    const old = this.#slotCap;
    this.#slotTag = grownF64(this.#slotTag, n);
    this.#slotKey = grownF64(this.#slotKey, n);
    this.#slotHome = grownI32(this.#slotHome, n);
    this.#slotBucket = grownI32(this.#slotBucket, n);
    this.#slotRec = grownI32(this.#slotRec, n);
    this.#slotNext = grownI32(this.#slotNext, n);
    this.#slotPrev = grownI32(this.#slotPrev, n);
    const free = new Int32Array(n);
    free.set(this.#freeSlots.subarray(0, this.#nFreeSlots));
    // New slots are handed out lowest first.
    let nf = this.#nFreeSlots;
    for (let s = n - 1; s >= old; s--) free[nf++] = s;
    this.#freeSlots = free;
    this.#nFreeSlots = nf;
    for (let s = old; s < n; s++) this.#ent.push(undefined);
    this.#slotCap = n;
  }

  /** Index of `n` buckets (the same array cleared when `n` is its size), every live slot re-homed. */
  #growIndex(n: number): void {
    if (n === this.#index.length) this.#index.fill(NONE);
    else this.#index = new Int32Array(n).fill(NONE);
    this.#mask = n - 1;
    this.#shift = 32 - Math.log2(n);
    // Re-home every live slot.
    const idx = this.#index;
    const mask = this.#mask;
    for (let r = this.#recFirst; r !== NONE; r = this.#recNext[r]) {
      for (let s = this.#recHead[r]; s !== NONE; s = this.#slotNext[s]) {
        let b = hashOf(this.#slotTag[s], this.#slotKey[s]) >>> this.#shift;
        this.#slotHome[s] = b;
        while (idx[b] !== NONE) b = (b + 1) & mask;
        idx[b] = s;
        this.#slotBucket[s] = b;
      }
    }
  }

  #growRecs(n: number): void {
    const old = this.#recTag.length;
    this.#recTag = grownF64(this.#recTag, n);
    this.#recHead = grownI32(this.#recHead, n);
    this.#recTail = grownI32(this.#recTail, n);
    this.#recCount = grownI32(this.#recCount, n);
    this.#recNext = grownI32(this.#recNext, n);
    this.#recPrev = grownI32(this.#recPrev, n);
    for (let r = n - 1; r >= old; r--) this.#freeRecs.push(r);
  }

  /** Bucket holding (tag, key), or NONE. */
  #find(tag: number, key: number): number {
    const idx = this.#index;
    const mask = this.#mask;
    const st = this.#slotTag;
    const sk = this.#slotKey;
    let b = hashOf(tag, key) >>> this.#shift;
    for (;;) {
      const s = idx[b];
      if (s === NONE) return NONE;
      if (sk[s] === key && st[s] === tag) return b;
      b = (b + 1) & mask;
    }
  }

  /** Remove bucket `b` from the index (backward-shift deletion). */
  #unindex(b: number): void {
    const idx = this.#index;
    const mask = this.#mask;
    const home = this.#slotHome;
    let i = b;
    let j = b;
    idx[i] = NONE;
    for (;;) {
      j = (j + 1) & mask;
      const s = idx[j];
      if (s === NONE) return;
      const k = home[s];
      // Move s back to the hole when its home is not cyclically in (i, j].
      if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
        idx[i] = s;
        this.#slotBucket[s] = i;
        idx[j] = NONE;
        i = j;
      }
    }
  }

  /** Record of `tag`, created (last in creation order) when `create` and absent. */
  #rec(tag: number, create: boolean): number {
    // The memo also remembers an absent tag (NONE) until that tag is created.
    if (tag === this.#lastTag && (create === false || this.#lastRec !== NONE)) {
      return this.#lastRec;
    }
    let r = this.#recOf.get(tag);
    if (r === undefined) {
      if (!create) {
        this.#lastTag = tag;
        this.#lastRec = NONE;
        return NONE;
      }
      if (this.#freeRecs.length === 0) this.#growRecs(this.#recTag.length * 2);
      r = this.#freeRecs.pop()!;
      this.#recOf.set(tag, r);
      this.#recTag[r] = tag;
      this.#recHead[r] = NONE;
      this.#recTail[r] = NONE;
      this.#recCount[r] = 0;
      this.#recNext[r] = NONE;
      this.#recPrev[r] = this.#recLast;
      if (this.#recLast === NONE) this.#recFirst = r;
      else this.#recNext[this.#recLast] = r;
      this.#recLast = r;
    }
    this.#lastTag = tag;
    this.#lastRec = r;
    return r;
  }

  /** Remove tag record `r` (its entries are gone). */
  #removeRec(r: number): void {
    const p = this.#recPrev[r];
    const n = this.#recNext[r];
    if (p === NONE) this.#recFirst = n;
    else this.#recNext[p] = n;
    if (n === NONE) this.#recLast = p;
    else this.#recPrev[n] = p;
    this.#recOf.delete(this.#recTag[r]);
    this.#freeRecs.push(r);
    this.#lastTag = NaN;
    this.#lastRec = NONE;
  }

  /** Remove slot `s` (at bucket `b`) from the index, its tag's list and the count. */
  #removeSlot(s: number, b: number): TlbEntry {
    this.#unindex(b);
    const r = this.#slotRec[s];
    const p = this.#slotPrev[s];
    const n = this.#slotNext[s];
    if (p === NONE) this.#recHead[r] = n;
    else this.#slotNext[p] = n;
    if (n === NONE) this.#recTail[r] = p;
    else this.#slotPrev[n] = p;
    this.#recCount[r]--;
    this.#count--;
    const e = this.#ent[s]!;
    this.#ent[s] = undefined;
    this.#freeSlots[this.#nFreeSlots++] = s;
    return e;
  }

  /** Remove slot `s`. */
  #dropSlot(s: number): TlbEntry {
    return this.#removeSlot(s, this.#slotBucket[s]);
  }

  // -------------------------------------------------------------------------
  // Operations

  /** Insert `e` under `tag` (replacing an entry of the same base and size, in its place). */
  insert(tag: number, e: TlbEntry): void {
    this.#forgetHit();
    const key = entryKey(e.va, e.sizeShift);
    if ((this.#count + 1) * 2 > this.#index.length) this.#growIndex(this.#index.length * 2);
    // One probe sequence: the entry's bucket, or the first empty one (where it goes).
    const idx = this.#index;
    const mask = this.#mask;
    const st = this.#slotTag;
    const sk = this.#slotKey;
    const home = hashOf(tag, key) >>> this.#shift;
    let b = home;
    for (;;) {
      const o = idx[b];
      if (o === NONE) break;
      if (sk[o] === key && st[o] === tag) {
        this.#ent[o] = e;
        this.#noteSize(e.sizeShift);
        return;
      }
      b = (b + 1) & mask;
    }
    const r = this.#rec(tag, true);
    if (this.#nFreeSlots === 0) this.#growSlots(this.#slotCap * 2);
    const s = this.#freeSlots[--this.#nFreeSlots];
    this.#ent[s] = e;
    this.#slotTag[s] = tag;
    this.#slotKey[s] = key;
    this.#slotRec[s] = r;
    this.#slotNext[s] = NONE;
    const tail = this.#recTail[r];
    this.#slotPrev[s] = tail;
    if (tail === NONE) this.#recHead[r] = s;
    else this.#slotNext[tail] = s;
    this.#recTail[r] = s;
    this.#recCount[r]++;
    this.#count++;
    this.#index[b] = s;
    this.#slotHome[s] = home;
    this.#slotBucket[s] = b;
    this.#noteSize(e.sizeShift);
    if (this.#count > this.capacity) this.#evict(e);
  }

  #noteSize(sizeShift: number): void {
    const sizes = this.#sizes;
    for (let i = 0; i < sizes.length; i++) if (sizes[i] === sizeShift) return;
    sizes.push(sizeShift);
    this.#bytes.push(2 ** sizeShift);
    this.#inv.push(2 ** -sizeShift);
    this.#keyMul.push(2 ** (sizeShift - 5));
  }

  /** Evict the oldest entry of the oldest tag holding one (empty tags on the way go). */
  #evict(inserted: TlbEntry): void {
    let r = this.#recFirst;
    while (r !== NONE && this.#recCount[r] === 0) {
      const n = this.#recNext[r];
      this.#removeRec(r);
      r = n;
    }
    if (r === NONE) return;
    const old = this.#dropSlot(this.#recHead[r]);
    if (old !== inserted) this.#free.push(old);
    if (this.#recCount[r] === 0) this.#removeRec(r);
  }

  /** Forget the last hit (on every change to the cache). */
  #forgetHit(): void {
    this.#gen++;
  }

  /** The entry of `tag` holding `addr`, if any (no allocation). */
  lookup(tag: number, addr: number): TlbEntry | undefined {
    const h = Math.floor(addr * INV_4K) & (HIT_SLOTS - 1);
    if (
      this.#hitGen[h] === this.#gen && this.#hitTag[h] === tag && addr >= this.#hitLo[h] &&
      addr < this.#hitHi[h]
    ) return this.#hitEntry[h];
    const sizes = this.#sizes;
    const inv = this.#inv;
    const keyMul = this.#keyMul;
    const idx = this.#index;
    const mask = this.#mask;
    const shift = this.#shift;
    const st = this.#slotTag;
    const sk = this.#slotKey;
    for (let i = 0; i < sizes.length; i++) {
      const key = Math.floor(addr * inv[i]) * keyMul[i] + sizes[i];
      let b = hashOf(tag, key) >>> shift;
      for (;;) {
        const s = idx[b];
        if (s === NONE) break;
        if (sk[s] === key && st[s] === tag) {
          const e = this.#ent[s]!;
          if (i === 0) {
            this.#hitGen[h] = this.#gen;
            this.#hitTag[h] = tag;
            this.#hitLo[h] = e.va;
            this.#hitHi[h] = e.va + this.#bytes[0];
            this.#hitEntry[h] = e;
          }
          return e;
        }
        b = (b + 1) & mask;
      }
    }
    return undefined;
  }

  /**
   * The entry of `tag` of size exactly 2^`sizeShift` holding `addr`, if any
   * (one probe, no memo: the walk cache asks for one level at a time).
   */
  lookupSize(tag: number, addr: number, sizeShift: number): TlbEntry | undefined {
    if (this.#count === 0) return undefined;
    const key = Math.floor(addr * INV_POW2[sizeShift]) * POW2[sizeShift] * 0.03125 + sizeShift;
    const b = this.#find(tag, key);
    return b === NONE ? undefined : this.#ent[this.#index[b]];
  }

  /** Every entry with its tag, tags in creation order (introspection; allocates). */
  entries(): { tag: number; entry: TlbEntry }[] {
    const all: { tag: number; entry: TlbEntry }[] = [];
    for (let r = this.#recFirst; r !== NONE; r = this.#recNext[r]) {
      for (let s = this.#recHead[r]; s !== NONE; s = this.#slotNext[s]) {
        all.push({ tag: this.#recTag[r], entry: this.#ent[s]! });
      }
    }
    return all;
  }

  /** Drop every entry of record `r` and the record. */
  #dropRec(r: number): void {
    if (this.#recCount[r] * 2 < this.#count) {
      for (let s = this.#recHead[r]; s !== NONE;) {
        const n = this.#slotNext[s];
        this.#dropSlot(s);
        s = n;
      }
    } else {
      // Most of the cache: free the slots and rebuild the index from the rest
      // (cheaper than a backward-shift deletion per entry).
      for (let s = this.#recHead[r]; s !== NONE; s = this.#slotNext[s]) {
        this.#ent[s] = undefined;
        this.#freeSlots[this.#nFreeSlots++] = s;
      }
      this.#count -= this.#recCount[r];
      this.#recCount[r] = 0;
      this.#recHead[r] = this.#recTail[r] = NONE;
      this.#removeRec(r);
      this.#growIndex(this.#index.length);
      return;
    }
    this.#removeRec(r);
  }

  /** Drop every entry of `tag`. */
  dropTag(tag: number): void {
    this.#forgetHit();
    const r = this.#recOf.get(tag);
    if (r !== undefined) this.#dropRec(r);
  }

  /** Drop everything. */
  clear(): void {
    this.#forgetHit();
    this.#index.fill(NONE);
    for (let r = this.#recFirst; r !== NONE; r = this.#recNext[r]) {
      for (let s = this.#recHead[r]; s !== NONE; s = this.#slotNext[s]) {
        this.#ent[s] = undefined;
        this.#freeSlots[this.#nFreeSlots++] = s;
      }
      this.#freeRecs.push(r);
    }
    this.#recOf.clear();
    this.#recFirst = this.#recLast = NONE;
    this.#lastTag = NaN;
    this.#lastRec = NONE;
    this.#count = 0;
  }

  /** TLB: drop every non-EL2 entry (TLBI_NSNH_ALL). */
  dropAllEl1(): void {
    this.#forgetHit();
    for (let r = this.#recFirst; r !== NONE;) {
      const n = this.#recNext[r];
      if (this.#recTag[r] < EL2_UNIT) this.#dropRec(r);
      r = n;
    }
  }

  /**
   * TLB: drop whole contexts. `asid` is an ASID, {@link ALL_ASIDS_AND_S2}
   * or {@link ALL_ASIDS}; `vmid` is ignored in the EL2 regime.
   */
  dropContexts(el2: number, vmid: number, asid: number): void {
    this.#forgetHit();
    if (asid >= 0) {
      this.dropTag(tlbTag(el2, vmid, asid));
      return;
    }
    for (let r = this.#recFirst; r !== NONE;) {
      const n = this.#recNext[r];
      const tag = this.#recTag[r];
      const tEl2 = Math.floor(tag / EL2_UNIT);
      const tVmid = Math.floor((tag % EL2_UNIT) / VMID_UNIT);
      if (
        !(asid === ALL_ASIDS && tag % VMID_UNIT === S2_ONLY_ASID) &&
        tEl2 === el2 && (el2 === 1 || tVmid === vmid)
      ) this.#dropRec(r);
      r = n;
    }
  }

  /**
   * TLB: drop entries overlapping `[addr, addr+size)` (size 1: the entries
   * holding `addr`). `asid`: an ASID, {@link ALL_ASIDS_AND_S2} for every ASID
   * of the VMID (by VA), or {@link BY_IPA} for stage-2 and nested entries by IPA.
   * With `onlyShift` >= 0 only entries of size 2^`onlyShift` go (the walk
   * cache's TTL filter).
   */
  dropRange(
    el2: number,
    vmid: number,
    asid: number,
    addr: number,
    size: number,
    onlyShift = -1,
  ): void {
    this.#forgetHit();
    const end = addr + size;
    if (asid >= 0 && this.#dropProbe(tlbTag(el2, vmid, asid), addr, end, onlyShift)) return;
    for (let r = this.#recFirst; r !== NONE; r = this.#recNext[r]) {
      const tag = this.#recTag[r];
      const tEl2 = Math.floor(tag / EL2_UNIT);
      const tVmid = Math.floor((tag % EL2_UNIT) / VMID_UNIT);
      const tAsid = tag % VMID_UNIT;
      if (tEl2 !== el2 || tVmid !== vmid) continue;
      if (asid >= 0 && tAsid !== asid) continue;
      if (asid === ALL_ASIDS_AND_S2 && tAsid === S2_ONLY_ASID) continue;
      for (let s = this.#recHead[r]; s !== NONE;) {
        const n = this.#slotNext[s];
        const e = this.#ent[s]!;
        let lo = e.va;
        if (asid === BY_IPA) {
          if (tAsid !== S2_ONLY_ASID && !e.nested) {
            s = n;
            continue;
          }
          lo = e.ipa;
        }
        if (
          lo < end && lo + 2 ** e.sizeShift > addr && (onlyShift < 0 || e.sizeShift === onlyShift)
        ) {
          this.#dropSlot(s);
        }
        s = n;
      }
    }
  }

  /**
   * Drop the entries of one tag overlapping `[addr, end)` by probing each
   * size in use at each aligned address (no iteration over the tag); false
   * when the range is too large for probing.
   */
  #dropProbe(tag: number, addr: number, end: number, onlyShift: number): boolean {
    if (this.#rec(tag, false) === NONE) return true;
    const sizes = this.#sizes;
    const bytes = this.#bytes;
    const inv = this.#inv;
    let probes = 0;
    for (let i = 0; i < sizes.length; i++) {
      if (onlyShift < 0 || sizes[i] === onlyShift) probes += Math.ceil((end - addr) * inv[i]) + 1;
    }
    if (probes > 256) return false;
    for (let i = 0; i < sizes.length; i++) {
      if (onlyShift >= 0 && sizes[i] !== onlyShift) continue;
      const b = bytes[i];
      // Keys of the aligned bases from addr's down to end, without fmod.
      const step = this.#keyMul[i];
      let key = Math.floor(addr * inv[i]) * step + sizes[i];
      for (let a = Math.floor(addr * inv[i]) * b; a < end; a += b, key += step) {
        const bucket = this.#find(tag, key);
        if (bucket !== NONE) this.#removeSlot(this.#index[bucket], bucket);
      }
    }
    return true;
  }

  /**
   * ATC: drop entries of StreamID `sid` overlapping `[start, start+span)`
   * (everything when `all`), for SubstreamID `ssid` (-1: none) or every
   * SubstreamID when `global`.
   */
  dropAtc(
    sid: number,
    ssid: number,
    global: boolean,
    start: number,
    span: number,
    all: boolean,
  ): void {
    this.#forgetHit();
    for (let r = this.#recFirst; r !== NONE; r = this.#recNext[r]) {
      const tag = this.#recTag[r];
      if (Math.floor(tag / 2097152) !== sid) continue;
      if (!global && (tag % 2097152) - 1 !== ssid) continue;
      for (let s = this.#recHead[r]; s !== NONE;) {
        const n = this.#slotNext[s];
        const e = this.#ent[s]!;
        if (all || (e.va < start + span && e.va + 2 ** e.sizeShift > start)) this.#dropSlot(s);
        s = n;
      }
    }
  }
}
