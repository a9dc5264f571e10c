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

/** Map key of an entry at `va` (aligned to its size, at least 128 bytes) of size 2^sizeShift. */
function entryKey(va: number, sizeShift: number): number {
  return va * 0.03125 + sizeShift;
}

/** A tagged translation cache with a capacity (oldest entries evicted first). */
export class TranslationCache {
  /** Most entries kept. */
  readonly capacity: number;
  readonly #tags = new Map<number, Map<number, TlbEntry>>();
  #count = 0;
  readonly #sizes: number[] = [];
  readonly #bytes: number[] = [];
  /** 2^-size of each size in use (floor(addr * inv) is addr >> size, exactly). */
  readonly #inv: number[] = [];
  /** 2^(size-5) of each size in use: (addr >> size) * keyMul is the key's base part. */
  readonly #keyMul: number[] = [];
  /** The tag looked up last and its map (NaN: none); reset whenever a tag's map is removed. */
  #lastTag = NaN;
  #lastMap: Map<number, TlbEntry> | undefined = undefined;
  /** Evicted entries, handed out again by {@link recycled} (no allocation per insert). */
  readonly #free: TlbEntry[] = [];
  /**
   * The last entry lookup found at the first size probed, with its tag and
   * range: any address in that range probes the same key first, so it finds
   * the same entry until the cache changes (every change forgets it).
   */
  #hitTag = NaN;
  #hitLo = 0;
  #hitHi = 0;
  #hitEntry: TlbEntry | undefined = undefined;

  /** An empty cache of `capacity` entries. */
  constructor(capacity: number) {
    this.capacity = capacity;
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

  /** Insert `e` under `tag` (replacing an entry of the same base and size). */
  insert(tag: number, e: TlbEntry): void {
    this.#forgetHit();
    let m = this.#tags.get(tag);
    if (!m) {
      m = new Map();
      this.#tags.set(tag, m);
    }
    const key = entryKey(e.va, e.sizeShift);
    if (!m.has(key)) this.#count++;
    m.set(key, e);
    if (!this.#sizes.includes(e.sizeShift)) {
      this.#sizes.push(e.sizeShift);
      this.#bytes.push(2 ** e.sizeShift);
      this.#inv.push(2 ** -e.sizeShift);
      this.#keyMul.push(2 ** (e.sizeShift - 5));
    }
    if (this.#count > this.capacity) {
      // Evict the oldest entry of the oldest tag.
      for (const [t, mm] of this.#tags) {
        const first = mm.entries().next();
        if (!first.done) {
          mm.delete(first.value[0]);
          this.#count--;
          if (first.value[1] !== e) this.#free.push(first.value[1]);
        }
        if (mm.size === 0) this.#removeTag(t);
        break;
      }
    }
  }

  /** Forget the last hit (on every change to the cache). */
  #forgetHit(): void {
    this.#hitTag = NaN;
    this.#hitEntry = undefined;
  }

  /** Remove the map of `tag` (and forget it as the last looked-up tag). */
  #removeTag(tag: number): void {
    this.#tags.delete(tag);
    this.#lastTag = NaN;
    this.#lastMap = undefined;
  }

  /** The entry of `tag` holding `addr`, if any (no allocation). */
  lookup(tag: number, addr: number): TlbEntry | undefined {
    if (tag === this.#hitTag && addr >= this.#hitLo && addr < this.#hitHi) return this.#hitEntry;
    let m: Map<number, TlbEntry> | undefined;
    if (tag === this.#lastTag) m = this.#lastMap;
    else {
      m = this.#tags.get(tag);
      if (!m) return undefined;
      this.#lastTag = tag;
      this.#lastMap = m;
    }
    const sizes = this.#sizes;
    const inv = this.#inv;
    const keyMul = this.#keyMul;
    for (let i = 0; i < sizes.length; i++) {
      const e = m!.get(Math.floor(addr * inv[i]) * keyMul[i] + sizes[i]);
      if (e !== undefined) {
        if (i === 0) {
          this.#hitTag = tag;
          this.#hitLo = e.va;
          this.#hitHi = e.va + this.#bytes[0];
          this.#hitEntry = e;
        }
        return e;
      }
    }
    return undefined;
  }

  /** Drop every entry of `tag`. */
  dropTag(tag: number): void {
    this.#forgetHit();
    const m = this.#tags.get(tag);
    if (m) {
      this.#count -= m.size;
      this.#removeTag(tag);
    }
  }

  /** Drop everything. */
  clear(): void {
    this.#forgetHit();
    this.#tags.clear();
    this.#count = 0;
    this.#lastTag = NaN;
    this.#lastMap = undefined;
  }

  /** TLB: drop every non-EL2 entry (TLBI_NSNH_ALL). */
  dropAllEl1(): void {
    this.#forgetHit();
    for (const tag of [...this.#tags.keys()]) if (tag < EL2_UNIT) this.dropTag(tag);
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
    for (const tag of [...this.#tags.keys()]) {
      const tEl2 = Math.floor(tag / EL2_UNIT);
      const tVmid = Math.floor((tag % EL2_UNIT) / VMID_UNIT);
      if (asid === ALL_ASIDS && tag % VMID_UNIT === S2_ONLY_ASID) continue;
      if (tEl2 === el2 && (el2 === 1 || tVmid === vmid)) this.dropTag(tag);
    }
  }

  /**
   * TLB: drop entries overlapping `[addr, addr+size)` (size 1: the entries
   * holding `addr`). `asid`: an ASID, {@link ALL_ASIDS_AND_S2} for every ASID
   * of the VMID (by VA), or {@link BY_IPA} for stage-2 and nested entries by IPA.
   */
  dropRange(el2: number, vmid: number, asid: number, addr: number, size: number): void {
    this.#forgetHit();
    const end = addr + size;
    if (asid >= 0 && this.#dropProbe(tlbTag(el2, vmid, asid), addr, end)) return;
    for (const [tag, m] of this.#tags) {
      const tEl2 = Math.floor(tag / EL2_UNIT);
      const tVmid = Math.floor((tag % EL2_UNIT) / VMID_UNIT);
      const tAsid = tag % VMID_UNIT;
      if (tEl2 !== el2 || tVmid !== vmid) continue;
      if (asid >= 0 && tAsid !== asid) continue;
      if (asid === ALL_ASIDS_AND_S2 && tAsid === S2_ONLY_ASID) continue;
      for (const [k, e] of m) {
        let lo = e.va;
        if (asid === BY_IPA) {
          if (tAsid !== S2_ONLY_ASID && !e.nested) continue;
          lo = e.ipa;
        }
        if (lo < end && lo + 2 ** e.sizeShift > addr) {
          m.delete(k);
          this.#count--;
        }
      }
    }
  }

  /**
   * Drop the entries of one tag overlapping `[addr, end)` by probing each
   * size in use at each aligned address (no iteration over the tag); false
   * when the range is too large for probing.
   */
  #dropProbe(tag: number, addr: number, end: number): boolean {
    const m = this.#tags.get(tag);
    if (m === undefined) return true;
    const sizes = this.#sizes;
    const bytes = this.#bytes;
    const inv = this.#inv;
    let probes = 0;
    for (let i = 0; i < sizes.length; i++) probes += Math.ceil((end - addr) * inv[i]) + 1;
    if (probes > 256) return false;
    for (let i = 0; i < sizes.length; i++) {
      const b = bytes[i];
      // Keys of the aligned bases from addr's down to end, without fmod.
      const step = this.#keyMul[i];
      let key = Math.floor(addr * inv[i]) * step + sizes[i];
      for (let a = Math.floor(addr * inv[i]) * b; a < end; a += b, key += step) {
        if (m.delete(key)) this.#count--;
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
    for (const [tag, m] of this.#tags) {
      if (Math.floor(tag / 2097152) !== sid) continue;
      if (!global && (tag % 2097152) - 1 !== ssid) continue;
      for (const [k, e] of m) {
        if (all || (e.va < start + span && e.va + 2 ** e.sizeShift > start)) {
          m.delete(k);
          this.#count--;
        }
      }
    }
  }
}
