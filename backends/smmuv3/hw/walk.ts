/**
 * @module
 * VMSAv8-64 (LPAE) translation-table walks as the SMMU performs them, from
 * the architecture: stage 1 (TTB0/T0SZ/TG0/IPS) and stage 2 (S2TTB/VTCR with
 * concatenated start tables), 4K/16K/64K granules, access/dirty updates with
 * HTTU. A nested stage-1 walk reads its tables through stage 2. Works on
 * 32-bit halves; allocates nothing per walk.
 */

import type { PhysMem } from "@iommu-lab/core";
import type { WalkCache } from "./walkcache.ts";

/** Walk outcome codes. */
export const WALK_OK = 0;
/** Translation fault (invalid or reserved descriptor, input out of range). */
export const WALK_F_TRANSLATION = 0x10;
/** Address size fault (output beyond the configured PA size). */
export const WALK_F_ADDR_SIZE = 0x11;
/** Access flag fault. */
export const WALK_F_ACCESS = 0x12;
/** Permission fault. */
export const WALK_F_PERMISSION = 0x13;
/** External abort on a table walk (the descriptor address is not backed by memory): F_WALK_EABT. */
export const WALK_F_WALK_EABT = 0x0b;

/** Stage-1/stage-2 context for one walk (filled from a CD or an STE, reused). */
export interface WalkCfg {
  /** 1 or 2. */
  stage: number;
  /** Table base address. */
  ttb: number;
  /** Input size in bits (64 - T0SZ). */
  inBits: number;
  /** Granule shift: 12, 14 or 16. */
  granShift: number;
  /** Output size in bits (from IPS/PS). */
  outBits: number;
  /** Start level (0..3); stage 1 derives it from inBits, stage 2 from SL0. */
  startLevel: number;
  /** Hardware access-flag update. */
  ha: boolean;
  /** Hardware dirty update (DBM). */
  hd: boolean;
}

/** Result of a walk; reused. */
export interface WalkOut {
  /** WALK_OK or a fault code. */
  fault: number;
  /** Output address. */
  oa: number;
  /** Log2 of the mapping size. */
  sizeShift: number;
  /** Readable / writable / executable (stage 1: by privileged; unprivileged tracked separately). */
  r: boolean;
  /** Writable (after dirty update when applicable). */
  w: boolean;
  /** Executable by the requester's privilege. */
  x: boolean;
  /** Stage 1: AP[1] (unprivileged access allowed). */
  user: boolean;
  /** Level at which the walk ended. */
  level: number;
  /** Faulting stage of a nested walk (1 or 2), or the stage of a table fetch via stage 2. */
  faultStage: number;
  /** True when the fault happened translating a stage-1 table address through stage 2. */
  faultOnTableFetch: boolean;
  /** Intermediate address of a stage-2 fault. */
  ipa: number;
  /** Descriptor memory reads of this walk. */
  reads: number;
  /** Level of the walk-cache entry the walk started from, or -1 (no walk cache, or a miss). */
  wcLevel: number;
  /** Next-level table address that walk-cache entry gave. */
  wcTable: number;
}

/** A fresh walk config. */
export function newWalkCfg(): WalkCfg {
  return {
    stage: 1,
    ttb: 0,
    inBits: 48,
    granShift: 12,
    outBits: 48,
    startLevel: 0,
    ha: false,
    hd: false,
  };
}

/** A fresh walk result. */
export function newWalkOut(): WalkOut {
  return {
    fault: 0,
    oa: 0,
    sizeShift: 12,
    r: false,
    w: false,
    x: false,
    user: false,
    level: 0,
    faultStage: 0,
    faultOnTableFetch: false,
    ipa: 0,
    reads: 0,
    wcLevel: -1,
    wcTable: 0,
  };
}

const TWO32 = 4294967296;
const INV_TWO32 = 2.3283064365386963e-10; // 2^-32
/** 2^n - 1 for n in 0..31, as unsigned masks. */
const IDX_MASK: Uint32Array = Uint32Array.from({ length: 32 }, (_, i) => 2 ** i - 1);
/** 2^n for n in 0..64 (no Math.pow on the walk). */
const POW2: Float64Array = Float64Array.from({ length: 65 }, (_, i) => 2 ** i);
/** 2^-n for n in 0..64: `Math.floor(a * INV_POW2[n])` is `a >> n` on a double, exactly. */
const INV_POW2: Float64Array = Float64Array.from({ length: 65 }, (_, i) => 2 ** -i);

/**
 * The table page each level read last (pfn and live words) and the memory
 * they belong to: consecutive walks mostly read the same table pages. A
 * backed page's words array is its storage for the memory's lifetime
 * (PhysMem.pageWords), so a remembered array is never stale; pages never
 * written (null) are not remembered.
 */
const memoPfn: Float64Array = new Float64Array(4).fill(-1);
const memoWords: (Uint32Array | null)[] = [null, null, null, null];
let memoMem: PhysMem | null = null;

/** Output address bits [47:granShift] of a descriptor given as halves (48-bit OA; granShift < 32). */
function descAddr(lo: number, hi: number, granShift: number): number {
  const hiPart = hi & 0xffff; // bits 47:32
  return hiPart * TWO32 + (((lo >>> granShift) << granShift) >>> 0);
}

/** Stage-1 start level for `inBits` and granule (VMSAv8-64). */
export function s1StartLevel(inBits: number, granShift: number): number {
  const stride = granShift - 3;
  const levels = Math.ceil((inBits - granShift) / stride);
  return 4 - levels;
}

/** Stage-2 start level from SL0 for the granule (4K: 0->2, 1->1, 2->0; 16K/64K: 0->3, 1->2, 2->1). */
export function s2StartLevel(sl0: number, granShift: number): number {
  if (granShift === 12) return 2 - sl0;
  return 3 - sl0;
}

/** Translates a stage-1 table address through stage 2 (nested walks); returns -1 on a fault. */
export interface TableFetchTranslator {
  /** IPA to PA for a table read, or -1 with `out` describing the stage-2 fault. */
  tableAddr(ipa: number, out: WalkOut): number;
}

/**
 * Walk `addr` through `cfg`. `write`, `exec`, `priv` describe the access for
 * permission checks and HTTU updates. `s2` translates table addresses of a
 * nested stage-1 walk (null for a plain walk). Writes the result into `out`.
 * When `update` is false, no access/dirty update is written (checking mode).
 * With a walk cache `wc`, the walk starts below the deepest table descriptor
 * cached under `wcTag` for `addr` (noted in `out.wcLevel`/`out.wcTable`),
 * and fills an entry for every table descriptor it reads.
 */
export function walk(
  mem: PhysMem,
  cfg: WalkCfg,
  addr: number,
  write: boolean,
  exec: boolean,
  priv: boolean,
  s2: TableFetchTranslator | null,
  update: boolean,
  out: WalkOut,
  wc: WalkCache | null = null,
  wcTag = 0,
): void {
  out.fault = WALK_OK;
  out.wcLevel = -1;
  out.faultOnTableFetch = false;
  out.faultStage = cfg.stage;
  out.reads = 0;
  out.ipa = addr;
  const g = cfg.granShift;
  const stride = g - 3;
  if (addr >= POW2[cfg.inBits]) {
    out.fault = WALK_F_TRANSLATION;
    out.level = cfg.startLevel;
    return;
  }
  if (mem !== memoMem) {
    memoMem = mem;
    memoPfn.fill(-1);
  }
  let level = cfg.startLevel;
  let table = cfg.ttb;
  const outLimit = POW2[cfg.outBits];
  if (table >= outLimit) {
    // The table base is beyond the configured output size.
    out.fault = WALK_F_ADDR_SIZE;
    out.level = level;
    return;
  }
  // Index bits at the start level: everything from inBits down to the level's shift (stage 2 may concatenate).
  let shift = g + stride * (3 - level);
  let idxBits = cfg.inBits - shift;
  if (wc !== null) {
    // Deepest cached table descriptor first (level 2 points at the last-level table).
    for (let l = 2, sh = g + stride; l >= level; l--, sh += stride) {
      const t = wc.find(wcTag, addr, sh);
      if (t >= 0) {
        out.wcLevel = l;
        out.wcTable = t;
        level = l + 1;
        table = t;
        shift = sh - stride;
        idxBits = stride;
        break;
      }
    }
  }
  // The input address as 32-bit halves (addr < 2^inBits <= 2^52): indexes by shifts and masks.
  const aLo = addr >>> 0;
  const aHi = Math.floor(addr * INV_TWO32);
  // Hierarchical permissions are not modelled (APTable/XNTable); see README of the backend.
  for (;;) {
    // idx = (addr >> shift) mod 2^idxBits: from the halves when idxBits < 32 (always, but for a
    // start table misconfigured wider than 31 bits, done on doubles).
    let idx: number;
    if (idxBits < 32) {
      const sh = shift >= 32 ? aHi >>> (shift - 32) : (aLo >>> shift) | (aHi << (32 - shift));
      idx = sh & IDX_MASK[idxBits];
    } else {
      const q = Math.floor(addr * INV_POW2[shift]);
      idx = q - Math.floor(q * INV_POW2[idxBits]) * POW2[idxBits];
    }
    let tablePa = table;
    if (s2 !== null) {
      tablePa = s2.tableAddr(table, out);
      if (tablePa < 0) {
        out.faultOnTableFetch = true;
        out.faultStage = 2;
        return;
      }
    }
    const da = tablePa + idx * 8;
    if (da + 8 > mem.limit) {
      out.fault = WALK_F_WALK_EABT;
      out.level = level;
      return;
    }
    // An 8-byte aligned descriptor lies in one page: read both halves in place
    // (counted as two reads in mem.stats, as read32 would).
    const pfn = Math.floor(da * INV_POW2[12]);
    let words: Uint32Array | null;
    if (memoPfn[level] === pfn) words = memoWords[level];
    else {
      words = mem.pageWords(pfn);
      if (words !== null) {
        memoPfn[level] = pfn;
        memoWords[level] = words;
      }
    }
    mem.stats.reads += 2;
    let lo = 0;
    let hi = 0;
    if ((da & 7) !== 0) {
      // Not reachable from table addresses (all 16-byte aligned); kept exact anyway.
      mem.stats.reads -= 2;
      lo = mem.read32(da);
      hi = mem.read32(da + 4);
    } else if (words !== null) {
      const wi = (da - pfn * 4096) >>> 2;
      lo = words[wi];
      hi = words[wi + 1];
    }
    out.reads++;
    out.level = level;
    if ((lo & 1) === 0) {
      out.fault = WALK_F_TRANSLATION;
      return;
    }
    const isTable = (lo & 2) !== 0 && level < 3;
    if (isTable) {
      const next = descAddr(lo, hi, g);
      if (next >= outLimit) {
        out.fault = WALK_F_ADDR_SIZE;
        return;
      }
      if (wc !== null) wc.fill(wcTag, addr, level, shift, next);
      table = next;
      level++;
      shift -= stride;
      idxBits = stride;
      continue;
    }
    // Leaf: a page at level 3 needs bits 1:0 == 3; a block (bits 1:0 == 1) only where blocks exist.
    if (level === 3 && (lo & 2) === 0) {
      out.fault = WALK_F_TRANSLATION;
      return;
    }
    if (level < 3 && (level === 0 || (g === 12 && level < 1) || (g !== 12 && level < 2))) {
      out.fault = WALK_F_TRANSLATION;
      return;
    }
    const base = descAddr(lo, hi, shift);
    if (base >= outLimit) {
      out.fault = WALK_F_ADDR_SIZE;
      return;
    }
    let newLo = lo;
    let newHi = hi;
    const af = (lo & 0x400) !== 0;
    const dbm = (hi & (1 << 19)) !== 0; // bit 51
    let r: boolean, w: boolean, x: boolean, user: boolean;
    if (cfg.stage === 1) {
      const ap = (lo >>> 6) & 3;
      user = (ap & 1) !== 0;
      r = true;
      w = (ap & 2) === 0;
      const uxn = (hi & (1 << 22)) !== 0; // bit 54
      const pxn = (hi & (1 << 21)) !== 0; // bit 53
      x = priv ? !pxn : !uxn;
      if (!priv && !user) r = w = x = false;
      if (write && !w && cfg.hd && dbm) {
        w = true;
        newLo = newLo & ~0x80; // clear AP[2]: writable-dirty
      }
    } else {
      const s2ap = (lo >>> 6) & 3;
      r = (s2ap & 1) !== 0;
      w = (s2ap & 2) !== 0;
      x = (hi & (1 << 22)) === 0;
      user = true;
      if (write && !w && cfg.hd && dbm) {
        w = true;
        newLo = newLo | 0x80; // set S2AP[1]: dirty
      }
    }
    if (!af) {
      if (!cfg.ha) {
        out.fault = WALK_F_ACCESS;
        return;
      }
      newLo |= 0x400;
    }
    if ((write && !w) || (!write && !exec && !r) || (exec && !x)) {
      out.fault = WALK_F_PERMISSION;
      return;
    }
    if (update && (newLo !== lo || newHi !== hi)) {
      mem.write32(da, newLo >>> 0);
      newHi = hi;
    }
    out.oa = base + (addr - Math.floor(addr * INV_POW2[shift]) * POW2[shift]);
    out.sizeShift = shift;
    out.r = r;
    out.w = w;
    out.x = x;
    out.user = user;
    return;
  }
}

/**
 * The next-level table address held by the table descriptor at `level` on
 * the walk of `addr`, read fresh from memory (no walk cache, no updates), or
 * -1 when the walk does not reach a table descriptor at that level (an
 * invalid, block or out-of-range descriptor on the way, or a stage-2 fault
 * on a nested table fetch). Checking mode compares walk-cache entries with it.
 */
export function tableAt(
  mem: PhysMem,
  cfg: WalkCfg,
  addr: number,
  level: number,
  s2: TableFetchTranslator | null,
  scratch: WalkOut,
): number {
  const g = cfg.granShift;
  const stride = g - 3;
  if (addr >= POW2[cfg.inBits] || level < cfg.startLevel || level > 2) return -1;
  let table = cfg.ttb;
  let shift = g + stride * (3 - cfg.startLevel);
  let idxBits = cfg.inBits - shift;
  for (let l = cfg.startLevel; l <= level; l++) {
    const q = Math.floor(addr * INV_POW2[shift]);
    const idx = q - Math.floor(q * INV_POW2[idxBits]) * POW2[idxBits];
    let tablePa = table;
    if (s2 !== null) {
      tablePa = s2.tableAddr(table, scratch);
      if (tablePa < 0) return -1;
    }
    const da = tablePa + idx * 8;
    if (da + 8 > mem.limit) return -1;
    const lo = mem.read32(da);
    const hi = mem.read32(da + 4);
    if ((lo & 3) !== 3) return -1;
    const next = descAddr(lo, hi, g);
    if (next >= POW2[cfg.outBits]) return -1;
    if (l === level) return next;
    table = next;
    shift -= stride;
    idxBits = stride;
  }
  return -1;
}
