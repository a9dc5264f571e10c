/**
 * @module
 * The VT-d hardware caches the driver must keep coherent: context cache,
 * PASID cache, IOTLB (per DID/PASID tag), first- and second-stage
 * paging-structure caches and the device TLBs, with the scope of every
 * invalidation the specification defines. Lookups and fills are done by
 * the model's translation path; this module owns what each invalidation
 * removes.
 */

import type { VtdOptions } from "./options.ts";
import {
  alignDown,
  dropRange,
  KIND_FS,
  KIND_NESTED,
  KIND_SS,
  type PscEntry,
  type TlbEntry,
} from "./tlb.ts";

const TWO32 = 4294967296;
const TWO20 = 1048576;

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
  /** Raw words as fetched (for checking mode). */
  raw: readonly number[];
  /** Address the entry was fetched from. */
  addr: number;
  /** Legacy mode: the IOTLB map of this entry's DID tag, once resolved (maps are never removed). */
  tlb: Map<number, TlbEntry> | null;
  /** Legacy mode: the second-stage paging-structure cache map of that tag, once resolved. */
  psc: Map<number, PscEntry> | null;
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
  raw: readonly number[];
  addr: number;
  /** The IOTLB map of this entry's (DID, PASID) tag, once resolved (maps are never removed). */
  tlb: Map<number, TlbEntry> | null;
  /** The paging-structure cache map (of the stage PGTT walks) of that tag, once resolved. */
  psc: Map<number, PscEntry> | null;
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

/** The caches of one VT-d unit. */
export class VtdCaches {
  /** Context cache: RID -> decoded entry. */
  readonly ctx: Map<number, CtxEntry> = new Map();
  /** PASID cache: RID * 2^20 + PASID -> decoded entry. */
  readonly pasid: Map<number, PasidCacheEntry> = new Map();
  /** IOTLB: DID * 2^20 + PASID -> (page key -> entry). */
  readonly iotlb: Map<number, Map<number, TlbEntry>> = new Map();
  /** Device TLBs: RID -> (PASID, or 2^20 for none) -> (page key -> entry). */
  readonly devtlb: Map<number, Map<number, Map<number, TlbEntry>>> = new Map();
  /** Second-stage paging-structure cache, per (DID, PASID) tag: 2 MiB region -> leaf table. */
  readonly pscSs: Map<number, Map<number, PscEntry>> = new Map();
  /** First-stage paging-structure cache, per (DID, PASID) tag. */
  readonly pscFs: Map<number, Map<number, PscEntry>> = new Map();
  /** Tags of the IOTLB maps, in creation order (parallel to `iotlbMaps`; maps are never removed). */
  readonly iotlbTags: number[] = [];
  /** The IOTLB maps, in creation order. */
  readonly iotlbMaps: Map<number, TlbEntry>[] = [];
  /** Tags of the second-stage paging-structure cache maps (parallel to `pscSsMaps`). */
  readonly pscSsTags: number[] = [];
  /** The second-stage paging-structure cache maps, in creation order. */
  readonly pscSsMaps: Map<number, PscEntry>[] = [];
  /** Tags of the first-stage paging-structure cache maps (parallel to `pscFsMaps`). */
  readonly pscFsTags: number[] = [];
  /** The first-stage paging-structure cache maps, in creation order. */
  readonly pscFsMaps: Map<number, PscEntry>[] = [];
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

  /** Empty caches. */
  constructor(opts: VtdOptions) {
    this.opts = opts;
  }

  /** The IOTLB map of a (DID, PASID) tag, created empty when new. */
  iotlbFor(tag: number): Map<number, TlbEntry> {
    let m = this.iotlb.get(tag);
    if (m === undefined) {
      this.iotlb.set(tag, m = new Map());
      this.iotlbTags.push(tag);
      this.iotlbMaps.push(m);
    }
    return m;
  }

  /** The paging-structure cache map of a tag (second stage when `ss`), created empty when new. */
  pscFor(ss: boolean, tag: number): Map<number, PscEntry> {
    const byTag = ss ? this.pscSs : this.pscFs;
    let m = byTag.get(tag);
    if (m === undefined) {
      byTag.set(tag, m = new Map());
      (ss ? this.pscSsTags : this.pscFsTags).push(tag);
      (ss ? this.pscSsMaps : this.pscFsMaps).push(m);
    }
    return m;
  }

  /** Context-cache invalidation: 1 global, 2 domain (global in scalable mode), 3 device with function mask. */
  invContext(sm: boolean, gran: number, did: number, sid: number, fm: number): void {
    this.gen++;
    if (gran === 1 || (gran === 2 && sm)) {
      if (this.ctx.size !== 0) this.ctx.clear();
      return;
    }
    if (gran === 2) {
      for (const [k, e] of this.ctx) if (e.did === did) this.ctx.delete(k);
      return;
    }
    if (gran === 3) {
      const mask = fm === 0 ? 0xffff : fm === 1 ? 0xfffe : fm === 2 ? 0xfffc : 0xfff8;
      for (const k of [...this.ctx.keys()]) {
        if ((k & mask) === (sid & mask)) this.ctx.delete(k);
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
      // paging-structure cache entry. (The maps stay: holders keep them.)
      clearAll(this.iotlbMaps);
      clearAll(this.pscSsMaps);
      clearAll(this.pscFsMaps);
      this.maybeNested = false;
      return;
    }
    this.invPsc(true, did, -1, gran === 3, addr, am, ih);
    if (!sm || gran !== 3 || ih === 0) {
      // Nested entries are cached first-stage structures over this second stage.
      this.invPsc(false, did, -1, false, 0, 0, 0);
    }
    const tags = this.iotlbTags, maps = this.iotlbMaps;
    for (let i = 0; i < maps.length; i++) {
      const m = maps[i];
      if (m.size === 0 || Math.floor(tags[i] / TWO20) !== did) continue;
      const skip = sm ? KIND_FS : -1;
      if (gran === 3) {
        dropRange(m, addr, am, skip, this.sizesSeen);
        // Nested entries are tagged by first-stage input address: a change
        // to the second stage may affect any of them, so drop them all.
        if (this.maybeNested) { for (const [k, e] of m) if (e.kind === KIND_NESTED) m.delete(k); }
      } else for (const [k, e] of m) if (e.kind !== skip) m.delete(k);
    }
  }

  /** PASID-based IOTLB invalidation (0x6): 2 all in PASID, 3 page range; first-stage and nested entries. */
  invPiotlb(gran: number, did: number, pasid: number, addr: number, am: number, ih = 0): void {
    this.tlbGen++;
    this.invPsc(false, did, pasid, gran === 3, addr, am, ih);
    const m = this.iotlb.get(did * TWO20 + pasid);
    if (m === undefined) return;
    if (gran === 3) dropRange(m, addr, am, KIND_SS, this.sizesSeen);
    else for (const [k, e] of m) if (e.kind !== KIND_SS) m.delete(k);
  }

  /**
   * Drop paging-structure entries (second stage when `ss`) of `did` (-1 all)
   * / `pasid` (-1 all) that cover the range (IH=1 keeps them).
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
    const size = 4096 * 2 ** am;
    const start = alignDown(addr, size);
    const tags = ss ? this.pscSsTags : this.pscFsTags;
    const maps = ss ? this.pscSsMaps : this.pscFsMaps;
    for (let i = 0; i < maps.length; i++) {
      const m = maps[i], tag = tags[i];
      if (m.size === 0) continue;
      if (did >= 0 && Math.floor(tag / TWO20) !== did) continue;
      if (pasid >= 0 && tag % TWO20 !== pasid) continue;
      if (!page) {
        m.clear();
        continue;
      }
      for (const k of m.keys()) {
        const rs = k * 2097152;
        if (rs < start + size && start < rs + 2097152) m.delete(k);
      }
    }
  }

  /** PASID-cache invalidation: 0 domain, 1 PASID within domain, 3 global. */
  invPasidCache(gran: number, did: number, pasid: number): void {
    this.gen++;
    if (gran === 3) {
      if (this.pasid.size !== 0) this.pasid.clear();
      return;
    }
    for (const [k, e] of this.pasid) {
      if (
        gran === 3 || (gran === 0 && e.did === did) ||
        (gran === 1 && e.did === did && e.pasid === pasid)
      ) {
        this.pasid.delete(k);
      }
    }
  }

  /** Device-TLB invalidation; pasid -1 = without PASID, -2 = all PASIDs. */
  invDevtlb(sid: number, pasid: number, w2: number, w3: number): void {
    this.tlbGen++;
    const d = this.devtlb.get(sid);
    if (d === undefined) return;
    const s = w2 & 1;
    const addr = (w3 & 0xfffff) * TWO32 + ((w2 & 0xfffff000) >>> 0);
    let size = 4096;
    if (s) {
      // The lowest clear bit at or above bit 12 gives the size: 2^(k+1) bytes.
      let k = 12;
      while (k < 63 && Math.floor(addr / 2 ** k) % 2 === 1) k++;
      size = 2 ** (k + 1);
    }
    const start = alignDown(addr, size);
    for (const [pk, m] of d) {
      if (pasid === -1 && pk !== TWO20) continue;
      if (pasid >= 0 && pk !== pasid) continue;
      for (const [k, e] of m) {
        if (e.iova < start + size && start < e.iova + e.size) m.delete(k);
      }
    }
  }

  /** Entry counts. */
  sizes(): CacheSizes {
    let pscFs = 0, pscSs = 0, iotlb = 0, devtlb = 0;
    for (const m of this.pscFs.values()) pscFs += m.size;
    for (const m of this.pscSs.values()) pscSs += m.size;
    for (const m of this.iotlb.values()) iotlb += m.size;
    for (const d of this.devtlb.values()) for (const m of d.values()) devtlb += m.size;
    return { context: this.ctx.size, pasid: this.pasid.size, iotlb, devtlb, pscFs, pscSs };
  }
}

/** Empty every map of `maps` (an empty one is left alone: clearing reallocates its table). */
function clearAll(maps: readonly Map<number, unknown>[]): void {
  for (let i = 0; i < maps.length; i++) if (maps[i].size !== 0) maps[i].clear();
}
