/**
 * @module
 * The radix-table engine shared by every format: map/unmap/iova_to_phys,
 * dirty harvesting and teardown over tables of 64-bit entries written into
 * {@link PhysMem} as two 32-bit halves. A format subclass says how entries
 * are encoded (present, leaf, table pointer, leaf attributes, dirty state);
 * the engine owns the walk, validation, rollback and flush callbacks.
 *
 * Rules (kernel io-pgtable semantics, see each method):
 * - validate, then mutate; a failed map leaves what it did not map exactly as
 *   before (tables it allocated are released again);
 * - table lifetime as the kernel has it (about v6.12): a table page is never
 *   freed because an unmap left it empty. It is freed only when an unmap
 *   covers its whole span: every format frees the subtree of a table entry
 *   met at the unmap size (`__arm_lpae_unmap`), and the Intel formats
 *   (X86_64, VTD_SS: `dma_pte_clear_level` in intel/iommu.c before
 *   generic_pt) also free a lower table whose whole range lies inside the
 *   unmapped range, whatever page size the range was split into (4K x 512
 *   aligned frees the last-level table). A freed subtree's walk is flushed
 *   (`tlbFlushWalk`) and its pages go to the gather's freelist (or straight
 *   back to the allocator when no gather is given), released by the driver
 *   after the invalidation. Otherwise tables live until `free()`;
 * - `cfg.freeEmptyTables: true` is a model experiment, not the kernel: every
 *   table an unmap leaves empty is unlinked, flushed and freed at once
 *   (deepest first, after the leaf invalidations were queued);
 * - the hot paths (map, unmap, iovaToPhys) allocate no objects: all walk
 *   state lives in preallocated typed arrays, in one small monomorphic
 *   object per table (V8 reaches the table objects themselves through
 *   several hidden classes once a process has used several formats). They
 *   read and write entries through the live word arrays of the table pages
 *   (`PhysMem.pageWords`), one cached page per level, and take each level's
 *   index from the 32-bit halves of the iova; `mem.stats` still counts two
 *   reads or writes per 64-bit entry access. A run of pages is encoded once
 *   and advanced by the page size where the format keeps the address in
 *   place (`RadixGeometry.leafLinearBelow`), and presence is a mask test
 *   (`presentLoMask`). A one-entry software walk cache lets a call in the
 *   same last-level table as the previous one start there (the engine alone
 *   links and unlinks tables, and drops the cache whenever it unlinks one).
 *
 * Where this knowingly differs from the kernel: a block mapped over a table
 * entry replaces the table (flushing its walk and freeing the subtree) only
 * when the subtree maps nothing; over a subtree that still maps something it
 * fails with EEXIST, where io-pgtable-arm (`arm_lpae_init_pte`) and the
 * Intel driver (`switch_to_super_page`) silently unmap it. Within one map
 * call the pages of each last-level table are checked before any is written
 * (the kernel's `arm_lpae_init_pte`), so EEXIST/ENOMEM leave that table's
 * pages untouched and `detail.mapped` counts the earlier tables' pages.
 */

import { IommuError } from "../errors.ts";
import type { IotlbGather } from "../gather.ts";
import { PAGE_SIZE } from "../machine/memory.ts";
import type { PhysMem } from "../machine/memory.ts";
import type { PageAllocator } from "../machine/page-alloc.ts";
import { pgsizeIn, pgsizeOffset, pgsizesOf } from "../pgsize.ts";
import {
  type DirtyBitmap,
  type FlushOps,
  IOMMU_DIRTY_NO_CLEAR,
  IOMMU_PROT_MASK,
  IOMMU_READ,
  IOMMU_WRITE,
} from "../types.ts";
import type { IoPgtable, IoPgtableCfg, IoPgtableEnv, IoPgtableFormat } from "./api.ts";

/** Shape of a radix table: levels are numbered from the root (0) down to the last level. */
export interface RadixGeometry {
  /** Number of levels walked from the root. */
  levels: number;
  /** Per level: bit position of the lowest index bit (log2 of the size one entry maps). */
  shifts: readonly number[];
  /** Per level: number of index bits (the root may differ: concatenated or short tables). */
  idxBits: readonly number[];
  /** Size in bytes of a non-root table page (the translation granule). */
  tableBytes: number;
  /**
   * Free a lower table whose whole range an unmap covers, whatever page size
   * the unmap uses (the Intel driver's `dma_pte_clear_level`). Without it
   * only a table entry met at the unmap size is freed (io-pgtable-arm).
   */
  freesCoveredTables?: boolean;
  /**
   * An entry is present exactly when `(lo & presentLoMask) !== 0` (the
   * engine's hot loops then skip the `isPresent` call); 0 or omitted: ask
   * `isPresent`.
   */
  presentLoMask?: number;
  /**
   * Below this output address a leaf holds its address in place, so the
   * entries of consecutive pages differ by exactly the page size (the engine
   * encodes the first leaf of a run and adds); omitted: encode every leaf.
   */
  leafLinearBelow?: number;
}

/** One leaf of a table, as {@link RadixPgtable.leaves} reports it. */
export interface LeafInfo {
  /** First iova the leaf maps. */
  iova: number;
  /** Bytes it maps. */
  size: number;
  /** Output address of its first byte. */
  paddr: number;
  /** The raw 64-bit entry. */
  entry: bigint;
}

/** Human-readable size: 4K, 2M, 1G, 4T. */
export function sizeName(bytes: number): string {
  const units = ["", "K", "M", "G", "T", "P"];
  let u = 0;
  let v = bytes;
  while (v >= 1024 && v % 1024 === 0 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v}${units[u]}`;
}

const TWO32 = 4294967296;
/** 64-bit entries per 4 KiB memory page. */
const ENTRIES_PER_PAGE_SHIFT = 9;
const ENTRIES_PER_PAGE_MASK = 511;
/** 32-bit words per 4 KiB memory page. */
const PAGE_WORDS = 1024;
/** Stands in for a never-written (all-zero) page on reads; never written. */
const ZERO_PAGE = new Uint32Array(PAGE_SIZE >>> 2);

/** Live-entry count of one table page (a box, so a cached reference stays current). */
class LiveCount {
  n = 0;
}

/**
 * The engine's hot state: the per-level cache of table pages (pfn and live
 * words), the word offset of the entry last located, and the format's
 * entry facts. One small class for every format: its accesses stay
 * monomorphic however many table classes and instances a process has
 * (fields and methods of the table objects themselves are reached through
 * several hidden classes, which makes V8's accesses to them megamorphic:
 * per entry, that cost several times the rest of the loop).
 */
class PageCache {
  /** `RadixGeometry.presentLoMask` (0: ask `isPresent`). */
  presentMask = 0;
  /** `RadixGeometry.leafLinearBelow` (0: encode every leaf). */
  linearBelow = 0;
  /** Word offset of the entry the last {@link wordsAt}/{@link wordsAtW} call located. */
  off = 0;
  /** Per level: the memory page (pfn) last accessed there. */
  readonly pfn: Float64Array;
  /** Per level: its live words. */
  readonly words: Uint32Array[];
  /**
   * Software walk cache: the last walk reached level `wcLevel` through table
   * entries, for the iova block `wcKey` (iova / size of a level `wcLevel - 1`
   * entry); its tables are in `path`. Only the engine links and unlinks
   * tables, and every unlink or release clears it.
   */
  wcLevel = -1;
  /** See {@link PageCache.wcLevel}. */
  wcKey = -1;
  /** Per level: the table the last walk passed through. */
  readonly path: Float64Array;
  /** Per level: the table whose live count was last looked up there (saves Map lookups). */
  readonly cntTable: Float64Array;
  /** Per level: that table's live count. */
  readonly cntBox: LiveCount[];
  constructor(levels: number) {
    this.pfn = new Float64Array(levels).fill(-1);
    this.words = [];
    for (let l = 0; l < levels; l++) this.words.push(ZERO_PAGE);
    this.path = new Float64Array(levels);
    this.cntTable = new Float64Array(levels).fill(-1);
    this.cntBox = [];
    for (let l = 0; l < levels; l++) this.cntBox.push(new LiveCount());
  }
}

/**
 * Live words of the memory page holding entry `idx` of `table` (a table
 * may span pages), cached per `level`; sets `pc.off` to the entry's low
 * word. A never-written page reads as {@link ZERO_PAGE} (not cached, not backed).
 */
function wordsAt(
  pc: PageCache,
  mem: PhysMem,
  table: number,
  idx: number,
  level: number,
): Uint32Array {
  const pfn = table / PAGE_SIZE + (idx >>> ENTRIES_PER_PAGE_SHIFT);
  pc.off = (idx & ENTRIES_PER_PAGE_MASK) << 1;
  if (pfn === pc.pfn[level]) return pc.words[level];
  const w = mem.pageWords(pfn);
  if (w === null) return ZERO_PAGE;
  pc.pfn[level] = pfn;
  pc.words[level] = w;
  return w;
}

/** As {@link wordsAt}, for writing: backs the page when it was never written. */
function wordsAtW(
  pc: PageCache,
  mem: PhysMem,
  table: number,
  idx: number,
  level: number,
): Uint32Array {
  const pfn = table / PAGE_SIZE + (idx >>> ENTRIES_PER_PAGE_SHIFT);
  pc.off = (idx & ENTRIES_PER_PAGE_MASK) << 1;
  if (pfn === pc.pfn[level]) return pc.words[level];
  const w = mem.backPageWords(pfn);
  pc.pfn[level] = pfn;
  pc.words[level] = w;
  return w;
}

/** Offset of the integer `x >= 0` in its page of `pgsize` (a power of two): the low word decides up to 2^31. */
function offsetIn(x: number, pgsize: number): number {
  return pgsize <= 0x8000_0000 ? (x >>> 0) & (pgsize - 1) : pgsizeOffset(x, pgsize);
}

/** `0x…` for error messages. */
function hx(x: number): string {
  return "0x" + x.toString(16);
}

/** Allocation order (log2 of 4 KiB pages) of a table of `bytes`. */
function orderOf(bytes: number): number {
  let o = 0;
  while (PAGE_SIZE * 2 ** o < bytes) o++;
  return o;
}

/**
 * A page table in physical memory. Subclasses implement the entry encoding;
 * entries are passed around as `(lo, hi)` 32-bit halves and the encoders
 * write their result to `outLo`/`outHi` (no allocation).
 */
export abstract class RadixPgtable implements IoPgtable {
  /** Format name. */
  readonly fmt: IoPgtableFormat;
  /** Configuration with the page sizes, ias and oas narrowed to what the format supports. */
  readonly cfg: Readonly<IoPgtableCfg>;
  /** Physical address of the root table. */
  readonly root: number;
  /** Levels walked from the root. */
  readonly levels: number;
  /** Size in bytes of the root table (may be less or more than a page). */
  readonly rootBytes: number;
  /** Translation granule: smallest page and the size of non-root tables. */
  readonly granule: number;

  /** Memory the tables live in. */
  protected readonly mem: PhysMem;
  /** Allocator the table pages come from. */
  protected readonly pages: PageAllocator;
  /** Flush callbacks (or null). */
  protected readonly tlb: FlushOps | null;
  /**
   * Errno for an address outside ias/oas: Arm ERANGE (arm_lpae_map_pages);
   * Intel formats EFAULT, as intel_iommu_map refuses a range beyond the
   * domain's address width.
   */
  protected rangeErrno: "ERANGE" | "EINVAL" | "EFAULT" = "EFAULT";

  /** Leaf attribute halves computed by {@link protToPte} for the current map call. */
  protected protLo = 0;
  /** High half of the leaf attributes. */
  protected protHi = 0;
  /** Encoder output, low half. */
  protected outLo = 0;
  /** Encoder output, high half. */
  protected outHi = 0;

  readonly #shift: Int32Array;
  readonly #mask: Int32Array;
  /** Per level: the memory page last accessed there and its live words; the last entry's offset. */
  readonly #pc: PageCache;
  readonly #blockSize: Float64Array;
  readonly #entries: Float64Array;
  readonly #leafOk: Uint8Array;
  readonly #tableOrder: number;
  /** Intel rule: an unmap covering a lower table's whole range frees it. */
  readonly #freeCovered: boolean;
  /** Model experiment (`cfg.freeEmptyTables`): free tables as soon as an unmap empties them. */
  readonly #freeEmpty: boolean;
  readonly #iasLimit: number;
  readonly #oasLimit: number;
  /** Live-entry count per table page (software bookkeeping, as a driver keeps). */
  readonly #count = new Map<number, LiveCount>();
  // Walk scratch (no per-call allocation).
  readonly #newTable: Float64Array;
  readonly #newSlot: Float64Array;
  readonly #newParent: Float64Array;
  #nNew = 0;
  #freed = false;
  /** The page size #level last resolved, and its level. */
  #lastPgsize = -1;
  #lastLevel = -1;
  /** The prot protLo/protHi were last computed for. */
  #protFor = -1;

  /** Build the engine and allocate the (zeroed) root table. */
  protected constructor(
    fmt: IoPgtableFormat,
    cfg: IoPgtableCfg,
    env: IoPgtableEnv,
    geo: RadixGeometry,
  ) {
    this.fmt = fmt;
    this.cfg = Object.freeze({ ...cfg });
    this.mem = env.mem;
    this.pages = env.pages;
    this.tlb = cfg.tlb;
    this.levels = geo.levels;
    this.granule = geo.tableBytes;
    const n = geo.levels;
    this.#shift = Int32Array.from(geo.shifts);
    this.#blockSize = Float64Array.from(geo.shifts, (s) => 2 ** s);
    this.#entries = Float64Array.from(geo.idxBits, (b) => 2 ** b);
    this.#mask = Int32Array.from(geo.idxBits, (b) => 2 ** b - 1);
    this.#pc = new PageCache(n);
    this.#pc.presentMask = geo.presentLoMask ?? 0;
    this.#pc.linearBelow = geo.leafLinearBelow ?? 0;
    this.#leafOk = Uint8Array.from(geo.shifts, (s) => pgsizeIn(cfg.pgsizeBitmap, 2 ** s) ? 1 : 0);
    this.#tableOrder = orderOf(geo.tableBytes);
    this.#freeEmpty = cfg.freeEmptyTables === true;
    this.#freeCovered = !this.#freeEmpty && geo.freesCoveredTables === true;
    this.#iasLimit = 2 ** cfg.ias;
    this.#oasLimit = 2 ** cfg.oas;
    this.#newTable = new Float64Array(n);
    this.#newSlot = new Float64Array(n);
    this.#newParent = new Float64Array(n);
    this.rootBytes = 8 * 2 ** geo.idxBits[0];
    this.root = env.pages.allocPages(orderOf(this.rootBytes));
    this.#count.set(this.root, new LiveCount());
  }

  // -------------------------------------------------------------------------
  // What a format defines.

  /** True if the entry is valid (maps something or points to a table). */
  protected abstract isPresent(lo: number, hi: number): boolean;
  /** True if a present entry at `level` is a leaf (page or block). */
  protected abstract isLeaf(lo: number, hi: number, level: number): boolean;
  /** Address an entry holds: the next table, or the output address of a leaf. */
  protected abstract addrOf(lo: number, hi: number, level: number): number;
  /** Encode a table entry pointing at `table` into outLo/outHi. */
  protected abstract encodeTable(table: number, level: number): void;
  /** Encode a leaf for `paddr` at `level` with protLo/protHi into outLo/outHi. */
  protected abstract encodeLeaf(paddr: number, level: number): void;
  /**
   * Compute protLo/protHi from IOMMU_* prot bits (already validated). Must
   * depend only on `prot` and the configuration: the engine reuses the
   * result while the prot stays the same.
   */
  protected abstract protToPte(prot: number): void;
  /** True if a leaf's dirty state is set. */
  protected abstract isDirty(lo: number, hi: number): boolean;
  /** Encode the leaf with its dirty state cleared into outLo/outHi. */
  protected abstract cleanDirty(lo: number, hi: number): void;
  /** Extra input-address check (x86 canonical form); throw to refuse. */
  protected checkIova(_op: string, _iova: number, _size: number): void {}
  /** Throw when the format cannot report dirty state (default: it can). */
  protected checkDirtySupport(): void {}

  // -------------------------------------------------------------------------
  // Helpers.

  #level(pgsize: number): number {
    if (pgsize === this.#lastPgsize) return this.#lastLevel;
    for (let l = this.levels - 1; l >= 0; l--) {
      if (this.#blockSize[l] === pgsize) {
        if (this.#leafOk[l] !== 1) return -1;
        this.#lastPgsize = pgsize;
        this.#lastLevel = l;
        return l;
      }
    }
    return -1;
  }

  #index(iova: number, level: number): number {
    return Math.floor(iova / this.#blockSize[level]) % this.#entries[level];
  }

  /** Index of the entry for the iova with halves (`ilo`, `ihi`) at `level`. */
  #idx(ilo: number, ihi: number, level: number): number {
    const s = this.#shift[level];
    return (s >= 32 ? ihi >>> (s - 32) : (ilo >>> s) | (ihi << (32 - s))) & this.#mask[level];
  }

  /** Add `delta` to the live count of `table` (a table walked at `level`); returns the new count. */
  #countAdd(table: number, delta: number, level: number): number {
    const pc = this.#pc;
    let b: LiveCount | undefined;
    if (pc.cntTable[level] === table) b = pc.cntBox[level];
    else {
      b = this.#count.get(table);
      if (b === undefined) {
        b = new LiveCount();
        this.#count.set(table, b);
      }
      pc.cntTable[level] = table;
      pc.cntBox[level] = b;
    }
    return b.n += delta;
  }

  /** Drop the bookkeeping of a released table (and any cached reference to it). */
  #forget(table: number): void {
    const pc = this.#pc;
    pc.wcLevel = -1;
    this.#count.delete(table);
    for (let l = 0; l < this.levels; l++) if (pc.cntTable[l] === table) pc.cntTable[l] = -1;
  }

  #alive(op: string): void {
    if (this.#freed) throw new IommuError("EINVAL", op, `the ${this.fmt} page table was freed`);
  }

  #sizesText(): string {
    return pgsizesOf(this.cfg.pgsizeBitmap).map(sizeName).join(", ");
  }

  #release(table: number, gather: IotlbGather | null): void {
    this.#forget(table);
    if (gather) gather.freelist.push(table);
    else this.pages.free(table);
  }

  /** Release `table` (at `level`) and every table below it. */
  #releaseTree(table: number, level: number, gather: IotlbGather | null): void {
    if (level < this.levels - 1) {
      const n = this.#entries[level];
      for (let i = 0; i < n; i++) {
        const lo = this.mem.read32(table + 8 * i);
        const hi = this.mem.read32(table + 8 * i + 4);
        if (this.isPresent(lo, hi) && !this.isLeaf(lo, hi, level)) {
          this.#releaseTree(this.addrOf(lo, hi, level), level + 1, gather);
        }
      }
    }
    this.#release(table, gather);
  }

  /** True when no leaf lies under `table` (a table at `level`): it may hold empty tables. */
  #subtreeEmpty(table: number, level: number): boolean {
    const c = this.#count.get(table);
    if (c === undefined || c.n === 0) return true;
    if (level >= this.levels - 1) return false;
    const n = this.#entries[level];
    for (let i = 0; i < n; i++) {
      const lo = this.mem.read32(table + 8 * i);
      const hi = this.mem.read32(table + 8 * i + 4);
      if (!this.isPresent(lo, hi)) continue;
      if (this.isLeaf(lo, hi, level)) return false;
      if (!this.#subtreeEmpty(this.addrOf(lo, hi, level), level + 1)) return false;
    }
    return true;
  }

  /** Undo the tables the current map chunk allocated (they hold nothing). */
  #rollback(): void {
    for (let j = this.#nNew - 1; j >= 0; j--) {
      this.mem.write64(this.#newSlot[j], 0, 0);
      const parent = this.#count.get(this.#newParent[j]);
      if (parent !== undefined) parent.n--;
      this.#forget(this.#newTable[j]);
      this.pages.free(this.#newTable[j]);
    }
    this.#nNew = 0;
  }

  // -------------------------------------------------------------------------
  // io_pgtable_ops.

  /**
   * `map_pages`: map `pgcount` pages of `pgsize` from `iova` to `paddr`,
   * across table boundaries. Refuses (nothing changed) with EINVAL a page
   * size outside the bitmap, a misaligned iova/paddr, prot bits outside
   * IOMMU_* or without READ|WRITE; with ERANGE (Arm) / EFAULT (Intel) an
   * address beyond ias/oas. Mapping over a live entry throws EEXIST and
   * allocation failure ENOMEM, each with `detail.mapped` = bytes mapped
   * before it; the pages not mapped stay exactly as they were.
   */
  mapPages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): number {
    const op = "map_pages";
    this.#alive(op);
    const level = this.#level(pgsize);
    if (level < 0) {
      throw new IommuError(
        "EINVAL",
        op,
        `page size ${
          hx(pgsize)
        } is not supported by this ${this.fmt} table; allowed: ${this.#sizesText()}`,
      );
    }
    if (!Number.isInteger(pgcount) || pgcount < 0) {
      throw new IommuError("EINVAL", op, `pgcount ${pgcount} must be a non-negative integer`);
    }
    if (!Number.isInteger(iova) || iova < 0 || offsetIn(iova, pgsize) !== 0) {
      throw new IommuError("EINVAL", op, `iova ${hx(iova)} is not aligned to ${sizeName(pgsize)}`);
    }
    if (!Number.isInteger(paddr) || paddr < 0 || offsetIn(paddr, pgsize) !== 0) {
      throw new IommuError(
        "EINVAL",
        op,
        `paddr ${hx(paddr)} is not aligned to ${sizeName(pgsize)}`,
      );
    }
    const size = pgsize * pgcount;
    this.checkIova(op, iova, size);
    if (iova + size > this.#iasLimit) {
      throw new IommuError(
        this.rangeErrno,
        op,
        `iova range [${hx(iova)}, ${hx(iova + size)}) exceeds the ${this.cfg.ias}-bit input space`,
      );
    }
    if (paddr + size > this.#oasLimit) {
      throw new IommuError(
        this.rangeErrno,
        op,
        `paddr range [${hx(paddr)}, ${
          hx(paddr + size)
        }) exceeds the ${this.cfg.oas}-bit output space`,
      );
    }
    if ((prot & ~IOMMU_PROT_MASK) !== 0 || (prot & (IOMMU_READ | IOMMU_WRITE)) === 0) {
      throw new IommuError(
        "EINVAL",
        op,
        `prot ${hx(prot)} must include IOMMU_READ or IOMMU_WRITE and only IOMMU_* bits (mask 0x3f)`,
      );
    }
    if (pgcount === 0) return 0;
    if (prot !== this.#protFor) {
      this.protToPte(prot);
      this.#protFor = prot;
    }
    let done = 0;
    while (done < pgcount) {
      done += this.#mapChunk(
        iova + done * pgsize,
        paddr + done * pgsize,
        pgsize,
        level,
        pgcount - done,
        done * pgsize,
      );
    }
    return size;
  }

  /** Map as many pages as fit in one last-level table; returns the count. */
  #mapChunk(
    iova: number,
    paddr: number,
    pgsize: number,
    target: number,
    remaining: number,
    mappedBefore: number,
  ): number {
    const mem = this.mem;
    const pc = this.#pc;
    const stats = mem.stats;
    const path = pc.path;
    const ilo = iova >>> 0;
    const ihi = (iova - ilo) / TWO32;
    let table = this.root;
    let from = 0;
    const key = target > 0 ? Math.floor(iova / this.#blockSize[target - 1]) : -1;
    if (key >= 0 && pc.wcLevel === target && pc.wcKey === key) {
      table = path[target];
      from = target;
    } else pc.wcLevel = -1;
    this.#nNew = 0;
    for (let l = from; l < target; l++) {
      path[l] = table;
      const idx = this.#idx(ilo, ihi, l);
      const w = wordsAt(pc, mem, table, idx, l);
      const o = pc.off;
      const lo = w[o];
      const hi = w[o + 1];
      stats.reads += 2;
      if (!this.isPresent(lo, hi)) {
        let child: number;
        try {
          child = this.pages.allocPages(this.#tableOrder);
        } catch (e) {
          this.#rollback();
          const msg = e instanceof IommuError ? e.message : String(e);
          throw new IommuError(
            "ENOMEM",
            "map_pages",
            `no page for a level-${l + 1} table at iova ${
              hx(iova)
            } (${msg}); ${mappedBefore} bytes were mapped before it`,
            { mapped: mappedBefore },
          );
        }
        this.encodeTable(child, l);
        const ww = wordsAtW(pc, mem, table, idx, l);
        const wo = pc.off;
        ww[wo + 1] = this.outHi;
        ww[wo] = this.outLo;
        stats.writes += 2;
        this.#countAdd(table, 1, l);
        this.#count.set(child, new LiveCount());
        const j = this.#nNew++;
        this.#newTable[j] = child;
        this.#newSlot[j] = table + 8 * idx;
        this.#newParent[j] = table;
        table = child;
      } else if (this.isLeaf(lo, hi, l)) {
        this.#rollback();
        throw new IommuError(
          "EEXIST",
          "map_pages",
          `iova ${hx(iova)} lies inside a live ${
            sizeName(this.#blockSize[l])
          } mapping; unmap it first`,
          { mapped: mappedBefore },
        );
      } else {
        table = this.addrOf(lo, hi, l);
      }
    }
    path[target] = table;
    if (key >= 0) {
      pc.wcLevel = target;
      pc.wcKey = key;
    }
    const first = this.#idx(ilo, ihi, target);
    const n = Math.min(remaining, this.#entries[target] - first);
    if (n === 1) {
      // One page (the common DMA case): an empty slot takes the leaf at once.
      const w = wordsAtW(pc, mem, table, first, target);
      const o = pc.off;
      if ((w[o] | w[o + 1]) === 0) {
        stats.reads += 2;
        this.encodeLeaf(paddr, target);
        w[o + 1] = this.outHi;
        w[o] = this.outLo;
        stats.writes += 2;
        this.#countAdd(table, 1, target);
        this.#nNew = 0;
        return 1;
      }
    }
    // Check every slot before writing any (an all-zero entry is never present).
    let present = false;
    let w = wordsAt(pc, mem, table, first, target);
    let o = pc.off;
    for (let i = 0; i < n; i++, o += 2) {
      if (o === PAGE_WORDS) {
        // The table continues on its next memory page (16K/64K granules, concatenated roots).
        w = wordsAt(pc, mem, table, first + i, target);
        o = pc.off;
      }
      const lo = w[o];
      const hi = w[o + 1];
      if ((lo | hi) === 0 || !this.isPresent(lo, hi)) continue;
      present = true;
      if (
        this.isLeaf(lo, hi, target) ||
        !this.#subtreeEmpty(this.addrOf(lo, hi, target), target + 1)
      ) {
        stats.reads += 2 * (i + 1);
        this.#rollback();
        throw new IommuError(
          "EEXIST",
          "map_pages",
          `iova ${hx(iova + i * pgsize)} is already mapped (entry ${hx(hi)}_${
            (lo >>> 0).toString(16).padStart(8, "0")
          }); unmap it first`,
          { mapped: mappedBefore },
        );
      }
    }
    stats.reads += 2 * n;
    let added = 0;
    // Consecutive leaves differ by the page size where the format keeps the
    // address in place: encode the first, then add (no call per entry).
    const linear = paddr + n * pgsize <= pc.linearBelow;
    this.encodeLeaf(paddr, target);
    let eLo = this.outLo;
    let eHi = this.outHi;
    const stepLo = pgsize >>> 0;
    const stepHi = (pgsize - stepLo) / TWO32;
    w = wordsAtW(pc, mem, table, first, target);
    o = pc.off;
    for (let i = 0; i < n; i++, o += 2) {
      if (o === PAGE_WORDS) {
        w = wordsAtW(pc, mem, table, first + i, target);
        o = pc.off;
      }
      if (present) {
        const lo = w[o];
        const hi = w[o + 1];
        stats.reads += 2;
        if (this.isPresent(lo, hi)) {
          // A table that maps nothing is replaced by the leaf: drop it and its walk
          // (arm_lpae_init_pte unmaps it with no gather: freed at once).
          pc.wcLevel = -1;
          w[o] = 0;
          w[o + 1] = 0;
          stats.writes += 2;
          this.tlb?.tlbFlushWalk(iova + i * pgsize, pgsize, this.granule);
          this.#releaseTree(this.addrOf(lo, hi, target), target + 1, null);
        } else added++;
      } else added++;
      if (i !== 0) {
        if (linear) {
          const t = eLo + stepLo;
          if (t >= TWO32) {
            eLo = t - TWO32;
            eHi = eHi + stepHi + 1;
          } else {
            eLo = t;
            eHi = eHi + stepHi;
          }
        } else {
          this.encodeLeaf(paddr + i * pgsize, target);
          eLo = this.outLo;
          eHi = this.outHi;
        }
      }
      w[o + 1] = eHi;
      w[o] = eLo;
      stats.writes += 2;
    }
    if (added !== 0) this.#countAdd(table, added, target);
    this.#nNew = 0;
    return n;
  }

  /**
   * `unmap_pages`: unmap `pgcount` pages of `pgsize` from `iova`; returns
   * the bytes unmapped. Stops (returning what it did so far) at an empty
   * slot or at a larger leaf covering the range ("Unmap of a partial large
   * IOPTE is not allowed": 0, nothing changed). Bad arguments return 0, as
   * the kernel's WARN_ON paths do. Each leaf is queued with `tlbAddPage`
   * unless the gather is `queued`. A table entry at the unmap size is
   * cleared with its whole subtree (`tlbFlushWalk`, pages to
   * `gather.freelist`); with the Intel formats so is any lower table (or
   * superpage) whose whole range the unmap covers. Tables the unmap merely
   * empties stay linked (see the module doc; `cfg.freeEmptyTables` frees
   * them as an experiment).
   */
  unmapPages(iova: number, pgsize: number, pgcount: number, gather: IotlbGather | null): number {
    this.#alive("unmap_pages");
    const level = this.#level(pgsize);
    if (
      level < 0 || !Number.isInteger(pgcount) || pgcount <= 0 || !Number.isInteger(iova) ||
      iova < 0 || offsetIn(iova, pgsize) !== 0 || iova + pgsize * pgcount > this.#iasLimit
    ) {
      return 0;
    }
    let done = 0;
    while (done < pgcount) {
      const n = this.#unmapChunk(iova + done * pgsize, pgsize, level, pgcount - done, gather);
      if (n === 0) break;
      done += n;
    }
    return done * pgsize;
  }

  /**
   * Unmap from `iova` up to the end of its last-level table (or, with the
   * Intel rule, a whole covered entry above it); returns the pages done.
   */
  #unmapChunk(
    iova: number,
    pgsize: number,
    target: number,
    remaining: number,
    gather: IotlbGather | null,
  ): number {
    const mem = this.mem;
    const pc = this.#pc;
    const stats = mem.stats;
    const path = pc.path;
    const ilo = iova >>> 0;
    const ihi = (iova - ilo) / TWO32;
    const bytes = remaining * pgsize;
    // Intel rule: can this chunk cover an entry above the target level?
    const cover = this.#freeCovered && target > 0 && bytes >= this.#blockSize[target - 1];
    let table = this.root;
    let from = 0;
    const key = target > 0 ? Math.floor(iova / this.#blockSize[target - 1]) : -1;
    if (!cover && key >= 0 && pc.wcLevel === target && pc.wcKey === key) {
      table = path[target];
      from = target;
    } else pc.wcLevel = -1;
    for (let l = from; l < target; l++) {
      path[l] = table;
      const w = wordsAt(pc, mem, table, this.#idx(ilo, ihi, l), l);
      const o = pc.off;
      const lo = w[o];
      const hi = w[o + 1];
      stats.reads += 2;
      if (!this.isPresent(lo, hi)) return 0;
      if (cover) {
        const span = this.#blockSize[l];
        if (bytes >= span && offsetIn(iova, span) === 0) {
          // dma_pte_clear_level: the range covers this entry's whole range.
          pc.wcLevel = -1;
          w[o] = 0;
          w[o + 1] = 0;
          stats.writes += 2;
          this.#countAdd(table, -1, l);
          const tlb = this.tlb;
          if (this.isLeaf(lo, hi, l)) {
            if (gather !== null && !gather.queued && tlb !== null && tlb.tlbAddPage !== undefined) {
              tlb.tlbAddPage(gather, iova, span);
            }
          } else {
            tlb?.tlbFlushWalk(iova, span, this.granule);
            this.#releaseTree(this.addrOf(lo, hi, l), l + 1, gather);
          }
          return span / pgsize;
        }
      }
      if (this.isLeaf(lo, hi, l)) return 0;
      table = this.addrOf(lo, hi, l);
    }
    path[target] = table;
    if (key >= 0) {
      pc.wcLevel = target;
      pc.wcKey = key;
    }
    const first = this.#idx(ilo, ihi, target);
    const n = Math.min(remaining, this.#entries[target] - first);
    const tlb = this.tlb;
    const addPage = gather !== null && !gather.queued && tlb !== null &&
      tlb.tlbAddPage !== undefined;
    const pm = pc.presentMask;
    // Every format's last level holds pages only.
    const lastLevel = target === this.levels - 1;
    let i = 0;
    let w = wordsAt(pc, mem, table, first, target);
    let o = pc.off;
    for (; i < n; i++, o += 2) {
      if (o === PAGE_WORDS) {
        w = wordsAt(pc, mem, table, first + i, target);
        o = pc.off;
      }
      const lo = w[o];
      const hi = w[o + 1];
      stats.reads += 2;
      if (pm !== 0 ? (lo & pm) === 0 : !this.isPresent(lo, hi)) break;
      // Present, so the page is backed: w is its live storage.
      w[o] = 0;
      w[o + 1] = 0;
      stats.writes += 2;
      const at = iova + i * pgsize;
      if (lastLevel || this.isLeaf(lo, hi, target)) {
        if (addPage) tlb!.tlbAddPage!(gather!, at, pgsize);
      } else {
        // __arm_lpae_unmap: a table entry at the unmap size goes with its subtree.
        pc.wcLevel = -1;
        tlb?.tlbFlushWalk(at, pgsize, this.granule);
        this.#releaseTree(this.addrOf(lo, hi, target), target + 1, gather);
      }
    }
    if (i === 0) return 0;
    let left = this.#countAdd(table, -i, target);
    if (!this.#freeEmpty) return i;
    // Model experiment: unlink tables that became empty, deepest first, after the leaf work.
    let l = target;
    while (l > 0 && left === 0) {
      pc.wcLevel = -1; // before any unlink, in case a flush callback throws
      const t = path[l];
      const parent = path[l - 1];
      const w = wordsAt(pc, mem, parent, this.#idx(ilo, ihi, l - 1), l - 1);
      const o = pc.off;
      w[o] = 0;
      w[o + 1] = 0;
      stats.writes += 2;
      left = this.#countAdd(parent, -1, l - 1);
      const span = this.#blockSize[l - 1];
      tlb?.tlbFlushWalk(iova - pgsizeOffset(iova, span), span, this.granule);
      this.#release(t, gather);
      l--;
    }
    return i;
  }

  /** `iova_to_phys`: the physical address `iova` translates to, or 0 when not mapped. */
  iovaToPhys(iova: number): number {
    if (!(iova >= 0 && iova < this.#iasLimit) || this.#freed) return 0;
    const mem = this.mem;
    const pc = this.#pc;
    const stats = mem.stats;
    const path = pc.path;
    const ilo = iova >>> 0;
    const ihi = (iova - ilo) / TWO32;
    let table = this.root;
    let l = 0;
    let cached = pc.wcLevel;
    if (cached > 0 && pc.wcKey === Math.floor(iova / this.#blockSize[cached - 1])) {
      table = path[cached];
      l = cached;
    } else {
      pc.wcLevel = -1;
      cached = -1;
    }
    for (; l < this.levels; l++) {
      path[l] = table;
      const w = wordsAt(pc, mem, table, this.#idx(ilo, ihi, l), l);
      const o = pc.off;
      const lo = w[o];
      const hi = w[o + 1];
      stats.reads += 2;
      const present = this.isPresent(lo, hi);
      if (!present || this.isLeaf(lo, hi, l)) {
        if (l > 0 && l !== cached) {
          pc.wcLevel = l;
          pc.wcKey = Math.floor(iova / this.#blockSize[l - 1]);
        }
        return present ? this.addrOf(lo, hi, l) + pgsizeOffset(iova, this.#blockSize[l]) : 0;
      }
      table = this.addrOf(lo, hi, l);
    }
    return 0;
  }

  /**
   * `read_and_clear_dirty`: report every dirty leaf overlapping
   * `[iova, iova+size)` to `dirty` (leaf base and leaf size) and, unless
   * `flags` has IOMMU_DIRTY_NO_CLEAR, clear its dirty state. The caller
   * invalidates the IOTLB afterwards. EINVAL for a range beyond ias.
   */
  readAndClearDirty(iova: number, size: number, flags: number, dirty: DirtyBitmap): void {
    const op = "read_and_clear_dirty";
    this.#alive(op);
    this.checkDirtySupport();
    if (!Number.isInteger(iova) || iova < 0 || size <= 0 || iova + size > this.#iasLimit) {
      throw new IommuError(
        "EINVAL",
        op,
        `range [${hx(iova)}, +${
          hx(size)
        }) must be non-empty and inside the ${this.cfg.ias}-bit input space`,
      );
    }
    this.#dirtyWalk(
      this.root,
      0,
      0,
      iova,
      iova + size,
      (flags & IOMMU_DIRTY_NO_CLEAR) === 0,
      dirty,
    );
  }

  #dirtyWalk(
    table: number,
    level: number,
    base: number,
    start: number,
    end: number,
    clear: boolean,
    dirty: DirtyBitmap,
  ): void {
    const bs = this.#blockSize[level];
    const from = Math.max(0, Math.floor((start - base) / bs));
    const to = Math.min(this.#entries[level], Math.ceil((end - base) / bs));
    for (let i = from; i < to; i++) {
      const slot = table + 8 * i;
      const lo = this.mem.read32(slot);
      const hi = this.mem.read32(slot + 4);
      if (!this.isPresent(lo, hi)) continue;
      const at = base + i * bs;
      if (this.isLeaf(lo, hi, level)) {
        if (this.isDirty(lo, hi)) {
          dirty.setDirty(at, bs);
          if (clear) {
            this.cleanDirty(lo, hi);
            this.mem.write32(slot, this.outLo);
            this.mem.write32(slot + 4, this.outHi);
          }
        }
      } else {
        this.#dirtyWalk(this.addrOf(lo, hi, level), level + 1, at, start, end, clear, dirty);
      }
    }
  }

  /** `free_io_pgtable_ops`: return every table page (root included) to the allocator. */
  free(): void {
    this.#alive("free_io_pgtable_ops");
    this.#releaseTree(this.root, 0, null);
    this.#count.clear();
    this.#pc.cntTable.fill(-1);
    this.#pc.wcLevel = -1;
    this.#freed = true;
  }

  /** Number of table pages (blocks) currently owned by this table, root included. */
  get tablePages(): number {
    return this.#count.size;
  }

  /** Size in bytes one entry at `level` maps (level 0 = root). */
  blockSize(level: number): number {
    return this.#blockSize[level];
  }

  /** Read the raw entry `index` of the table at `table` as `[lo, hi]` (tests, inspection). */
  readEntry(table: number, index: number): [number, number] {
    return [this.mem.read32(table + 8 * index), this.mem.read32(table + 8 * index + 4)];
  }

  /**
   * Walk `iova` and return the physical address of the entry that maps it
   * (leaf) and its level, or null when not mapped (tests, inspection).
   */
  leafSlot(iova: number): { slot: number; level: number } | null {
    if (!(iova >= 0 && iova < this.#iasLimit)) return null;
    let table = this.root;
    for (let l = 0; l < this.levels; l++) {
      const slot = table + 8 * this.#index(iova, l);
      const lo = this.mem.read32(slot);
      const hi = this.mem.read32(slot + 4);
      if (!this.isPresent(lo, hi)) return null;
      if (this.isLeaf(lo, hi, l)) return { slot, level: l };
      table = this.addrOf(lo, hi, l);
    }
    return null;
  }

  /**
   * Every leaf in iova order: `{ iova, size, paddr, entry }` with the raw
   * 64-bit entry (inspection and reports; walks the whole table).
   */
  leaves(): LeafInfo[] {
    const out: LeafInfo[] = [];
    if (!this.#freed) this.#collect(this.root, 0, 0, out);
    return out;
  }

  #collect(table: number, level: number, base: number, out: LeafInfo[]): void {
    const bs = this.#blockSize[level];
    for (let i = 0; i < this.#entries[level]; i++) {
      const lo = this.mem.read32(table + 8 * i);
      const hi = this.mem.read32(table + 8 * i + 4);
      if (!this.isPresent(lo, hi)) continue;
      const iova = base + i * bs;
      if (this.isLeaf(lo, hi, level)) {
        out.push({
          iova,
          size: bs,
          paddr: this.addrOf(lo, hi, level),
          entry: (BigInt(hi) << 32n) | BigInt(lo),
        });
      } else this.#collect(this.addrOf(lo, hi, level), level + 1, iova, out);
    }
  }

  /** Index bits used at `level` (tests, inspection). */
  indexShift(level: number): number {
    return this.#shift[level];
  }
}
