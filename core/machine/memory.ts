/**
 * @module
 * Sparse, page-granular physical memory. A 52-bit address space costs only
 * the 4 KiB pages that were written; reading an untouched page gives zeros
 * and allocates nothing. All accesses are little-endian. 64-bit values are
 * read and written as two 32-bit halves on hot paths (`read32(a)`,
 * `read32(a + 4)`); bigint helpers exist for the API edge.
 */

import { IommuError } from "../errors.ts";
import { TWO32 } from "../bits.ts";

/** Page size of the physical memory model. */
export const PAGE_SIZE = 4096;
/** log2 of {@link PAGE_SIZE}. */
export const PAGE_SHIFT = 12;
/** Largest physical address width the model accepts. */
export const MAX_PA_BITS = 52;

/** One zero page, copied to zero a page quickly (never written). */
const ZERO_WORDS = new Uint32Array(PAGE_SIZE >>> 2);

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
  throw new Error("iommu-lab needs a little-endian host");
}

/** The sparse image format of `PhysMem.saveSparse` / `loadSparse`. */
export interface SparseImage {
  /** Always `"iommu-lab-sparse-v1"`. */
  format: "iommu-lab-sparse-v1";
  /** Always 4096. */
  page_size: number;
  /** Page address (`"0x…"`) to base64 of exactly one page. */
  pages: Record<string, string>;
}

/** Memory access counters (for walk-cost accounting). */
export interface MemStats {
  /** 32-bit-or-smaller read accesses (a 64-bit read counts as two). */
  reads: number;
  /** Write accesses. */
  writes: number;
  /** Pages backed so far. */
  pagesBacked: number;
}

/**
 * Sparse physical memory. `sizeBits` bounds the address space (default 52):
 * an access at or beyond `2^sizeBits` throws an `EFAULT` {@link IommuError}.
 */
export class PhysMem {
  /** Address width in bits. */
  readonly sizeBits: number;
  /** One past the highest valid address. */
  readonly limit: number;
  readonly #pages = new Map<number, Uint32Array>();
  /** Direct-mapped cache of 8 recently used pages by pfn & 7 (a 4-level walk touches 4 pages). */
  readonly #cachePfn = new Float64Array(8).fill(-1);
  readonly #cachePage: (Uint32Array | null)[] = [null, null, null, null, null, null, null, null];
  /** Access counters; reset freely. */
  readonly stats: MemStats = { reads: 0, writes: 0, pagesBacked: 0 };

  /** Create an empty memory of `2^sizeBits` bytes. */
  constructor(sizeBits = MAX_PA_BITS) {
    if (!Number.isInteger(sizeBits) || sizeBits < 12 || sizeBits > MAX_PA_BITS) {
      throw new IommuError(
        "EINVAL",
        "PhysMem",
        `address width ${sizeBits} is outside 12..${MAX_PA_BITS}`,
      );
    }
    this.sizeBits = sizeBits;
    this.limit = 2 ** sizeBits;
  }

  #check(addr: number, len: number): void {
    if (!(Number.isInteger(len) && len >= 0)) {
      throw new IommuError(
        "EINVAL",
        "phys_mem",
        `access length ${len} is not a non-negative integer`,
      );
    }
    if (!(addr >= 0 && addr + len <= this.limit && Number.isInteger(addr))) {
      throw new IommuError(
        "EFAULT",
        "phys_mem",
        `access of ${len} bytes at 0x${
          addr.toString(16)
        } is outside the ${this.sizeBits}-bit physical address space`,
      );
    }
  }

  /** The page's words, or null if never written (no allocation). */
  #peek(pfn: number): Uint32Array | null {
    const k = pfn & 7;
    if (pfn === this.#cachePfn[k]) return this.#cachePage[k];
    const p = this.#pages.get(pfn) ?? null;
    if (p) {
      this.#cachePfn[k] = pfn;
      this.#cachePage[k] = p;
    }
    return p;
  }

  #back(pfn: number): Uint32Array {
    let p = this.#peek(pfn);
    if (!p) {
      p = new Uint32Array(PAGE_SIZE >>> 2);
      this.#pages.set(pfn, p);
      this.stats.pagesBacked++;
      this.#cachePfn[pfn & 7] = pfn;
      this.#cachePage[pfn & 7] = p;
    }
    return p;
  }

  /**
   * The live 32-bit words of page `pfn` (address / 4096), or null if the
   * page was never written (nothing is allocated). Once a page is backed its
   * array is its storage for the memory's lifetime, so a hot path (a table
   * walk) may keep it. Accesses through it are not counted in `stats`.
   */
  pageWords(pfn: number): Uint32Array | null {
    return this.#peek(pfn);
  }

  /** As {@link pageWords}, backing the page (zeroed) first when it was never written. */
  backPageWords(pfn: number): Uint32Array {
    return this.#back(pfn);
  }

  /** Read an aligned or unaligned 32-bit little-endian value. */
  read32(addr: number): number {
    this.stats.reads++;
    if (addr >= 0 && addr + 4 <= this.limit && (addr & 3) === 0 && Math.floor(addr) === addr) {
      const p = this.#peek(Math.floor(addr / PAGE_SIZE));
      return p === null ? 0 : p[(addr & (PAGE_SIZE - 1)) >>> 2];
    }
    this.#check(addr, 4);
    return (this.#u8(addr) | (this.#u8(addr + 1) << 8) | (this.#u8(addr + 2) << 16) |
      (this.#u8(addr + 3) << 24)) >>> 0;
  }

  /** Write a 32-bit little-endian value. */
  write32(addr: number, value: number): void {
    this.stats.writes++;
    if (addr >= 0 && addr + 4 <= this.limit && (addr & 3) === 0 && Math.floor(addr) === addr) {
      this.#back(Math.floor(addr / PAGE_SIZE))[(addr & (PAGE_SIZE - 1)) >>> 2] = value >>> 0;
      return;
    }
    this.#check(addr, 4);
    for (let i = 0; i < 4; i++) this.#setU8(addr + i, (value >>> (8 * i)) & 0xff);
  }

  #u8(addr: number): number {
    const p = this.#peek(Math.floor(addr / PAGE_SIZE));
    if (p === null) return 0;
    const off = addr & (PAGE_SIZE - 1);
    return (p[off >>> 2] >>> ((off & 3) * 8)) & 0xff;
  }

  #setU8(addr: number, v: number): void {
    const p = this.#back(Math.floor(addr / PAGE_SIZE));
    const off = addr & (PAGE_SIZE - 1);
    const sh = (off & 3) * 8;
    p[off >>> 2] = ((p[off >>> 2] & ~(0xff << sh)) | ((v & 0xff) << sh)) >>> 0;
  }

  /** Read one byte. */
  read8(addr: number): number {
    this.#check(addr, 1);
    this.stats.reads++;
    return this.#u8(addr);
  }

  /** Write one byte. */
  write8(addr: number, value: number): void {
    this.#check(addr, 1);
    this.stats.writes++;
    this.#setU8(addr, value);
  }

  /** Read a 16-bit little-endian value. */
  read16(addr: number): number {
    this.#check(addr, 2);
    this.stats.reads++;
    return this.#u8(addr) | (this.#u8(addr + 1) << 8);
  }

  /** Write a 16-bit little-endian value. */
  write16(addr: number, value: number): void {
    this.#check(addr, 2);
    this.stats.writes++;
    this.#setU8(addr, value & 0xff);
    this.#setU8(addr + 1, (value >>> 8) & 0xff);
  }

  /** Read a 64-bit value as a number; exact only while it is below 2^53 (use for addresses). */
  read64(addr: number): number {
    return this.read32(addr + 4) * TWO32 + this.read32(addr);
  }

  /** Write a 64-bit value given as two 32-bit halves (low word first in memory). */
  write64(addr: number, lo: number, hi: number): void {
    this.write32(addr, lo);
    this.write32(addr + 4, hi);
  }

  /** Read a 64-bit value as a bigint (API edge). */
  read64n(addr: number): bigint {
    return (BigInt(this.read32(addr + 4)) << 32n) | BigInt(this.read32(addr));
  }

  /** Write a 64-bit bigint (taken modulo 2^64). */
  write64n(addr: number, value: bigint): void {
    const u = BigInt.asUintN(64, value);
    this.write64(addr, Number(u & 0xffffffffn), Number(u >> 32n));
  }

  /** Copy `len` bytes at `addr` into `out` (or a new array). */
  readBytes(addr: number, len: number, out?: Uint8Array): Uint8Array {
    this.#check(addr, len);
    if (out === undefined) out = new Uint8Array(len);
    else if (out.length < len) {
      throw new IommuError(
        "EINVAL",
        "phys_mem",
        `output buffer of ${out.length} bytes is shorter than the ${len} bytes to read`,
      );
    }
    this.stats.reads++;
    for (let i = 0; i < len;) {
      const a = addr + i;
      const p = this.#peek(Math.floor(a / PAGE_SIZE));
      const off = a & (PAGE_SIZE - 1);
      const n = Math.min(len - i, PAGE_SIZE - off);
      if (p === null) out.fill(0, i, i + n);
      else out.set(new Uint8Array(p.buffer, off, n), i);
      i += n;
    }
    return out;
  }

  /** Write `data` at `addr`. */
  writeBytes(addr: number, data: Uint8Array): void {
    this.#check(addr, data.length);
    this.stats.writes++;
    for (let i = 0; i < data.length;) {
      const a = addr + i;
      const off = a & (PAGE_SIZE - 1);
      const n = Math.min(data.length - i, PAGE_SIZE - off);
      new Uint8Array(this.#back(Math.floor(a / PAGE_SIZE)).buffer, off, n).set(
        data.subarray(i, i + n),
      );
      i += n;
    }
  }

  /** Fill `len` bytes at `addr` with `byte` (zeroing untouched pages costs nothing). */
  fill(addr: number, len: number, byte = 0): void {
    this.#check(addr, len);
    this.stats.writes++;
    for (let i = 0; i < len;) {
      const a = addr + i;
      const off = a & (PAGE_SIZE - 1);
      const n = Math.min(len - i, PAGE_SIZE - off);
      const pfn = Math.floor(a / PAGE_SIZE);
      if (byte !== 0 || this.#peek(pfn) !== null) {
        const p = this.#back(pfn);
        // A whole page: write its words in place (no view allocated); zeroing
        // copies a zero page (memcpy), the fastest way on V8.
        if (n === PAGE_SIZE) {
          if (byte === 0) p.set(ZERO_WORDS);
          else p.fill((byte & 0xff) * 0x01010101);
        } else new Uint8Array(p.buffer, off, n).fill(byte);
      }
      i += n;
    }
  }

  /** Read `count` 32-bit words at `addr` into `out` (a structure fetch). */
  readWords(addr: number, out: Uint32Array, count = out.length): Uint32Array {
    if (this.#inOnePage(addr, count)) {
      // Fast path: aligned words inside one page, the page looked up once.
      this.stats.reads += count;
      const p = this.#peek(Math.floor(addr / PAGE_SIZE));
      const w = (addr & (PAGE_SIZE - 1)) >>> 2;
      if (p === null) { for (let i = 0; i < count; i++) out[i] = 0; }
      else for (let i = 0; i < count; i++) out[i] = p[w + i];
      return out;
    }
    for (let i = 0; i < count; i++) out[i] = this.read32(addr + 4 * i);
    return out;
  }

  /** True when `count` (> 0, integer) aligned words at the integer `addr` lie inside one page of memory. */
  #inOnePage(addr: number, count: number): boolean {
    return count > 0 && (count | 0) === count && addr >= 0 && (addr & 3) === 0 &&
      Math.floor(addr) === addr && (addr & (PAGE_SIZE - 1)) + 4 * count <= PAGE_SIZE &&
      addr + 4 * count <= this.limit;
  }

  /** Write 32-bit words at `addr` in order, lowest address first. */
  writeWords(addr: number, words: ArrayLike<number>): void {
    const n = words.length;
    if (this.#inOnePage(addr, n)) {
      this.stats.writes += n;
      const p = this.#back(Math.floor(addr / PAGE_SIZE));
      const w = (addr & (PAGE_SIZE - 1)) >>> 2;
      for (let i = 0; i < n; i++) p[w + i] = words[i] >>> 0;
      return;
    }
    for (let i = 0; i < words.length; i++) this.write32(addr + 4 * i, words[i]);
  }

  /** Addresses of the backed pages, sorted. */
  backedPages(): number[] {
    return [...this.#pages.keys()].sort((a, b) => a - b).map((pfn) => pfn * PAGE_SIZE);
  }

  /** Save the touched pages (all-zero pages are left out) as a sparse image. */
  saveSparse(): SparseImage {
    const pages: Record<string, string> = {};
    for (const pfn of [...this.#pages.keys()].sort((a, b) => a - b)) {
      const p = this.#pages.get(pfn)!;
      if (p.every((w) => w === 0)) continue;
      pages["0x" + (pfn * PAGE_SIZE).toString(16)] = toBase64(new Uint8Array(p.buffer));
    }
    return { format: "iommu-lab-sparse-v1", page_size: PAGE_SIZE, pages };
  }

  /** Load a sparse image (validated first: nothing is written if any page is bad). */
  loadSparse(image: unknown): void {
    const op = "load_sparse_image";
    const img = image as Partial<SparseImage> | null;
    if (img === null || typeof img !== "object" || img.format !== "iommu-lab-sparse-v1") {
      throw new IommuError(
        "EINVAL",
        op,
        `not an iommu-lab sparse image: "format" must be "iommu-lab-sparse-v1"`,
      );
    }
    if (img.page_size !== PAGE_SIZE) {
      throw new IommuError(
        "EINVAL",
        op,
        `page_size ${img.page_size} is not supported; only ${PAGE_SIZE} is`,
      );
    }
    if (img.pages === null || typeof img.pages !== "object" || Array.isArray(img.pages)) {
      throw new IommuError(
        "EINVAL",
        op,
        `"pages" must be an object of "0x<page address>": "<base64>"`,
      );
    }
    const decoded: [number, Uint8Array][] = [];
    const seen = new Map<number, string>();
    for (const [key, b64] of Object.entries(img.pages)) {
      if (!/^0x[0-9a-fA-F]+$/.test(key)) {
        throw new IommuError("EINVAL", op, `page key "${key}" is not a hexadecimal address`);
      }
      const addr = Number(BigInt(key));
      if (addr % PAGE_SIZE !== 0 || addr + PAGE_SIZE > this.limit) {
        throw new IommuError(
          "EINVAL",
          op,
          `page ${key} is not page-aligned or lies outside the ${this.sizeBits}-bit address space`,
        );
      }
      const dup = seen.get(addr);
      if (dup !== undefined) {
        throw new IommuError("EINVAL", op, `pages ${dup} and ${key} name the same page`);
      }
      seen.set(addr, key);
      if (typeof b64 !== "string") {
        throw new IommuError("EINVAL", op, `page ${key}: contents must be a base64 string`);
      }
      let bytes: Uint8Array;
      try {
        bytes = fromBase64(b64);
      } catch {
        throw new IommuError("EINVAL", op, `page ${key}: contents are not valid base64`);
      }
      if (bytes.length !== PAGE_SIZE) {
        throw new IommuError(
          "EINVAL",
          op,
          `page ${key}: ${bytes.length} bytes decoded; a page is ${PAGE_SIZE}`,
        );
      }
      decoded.push([addr, bytes]);
    }
    for (const [addr, bytes] of decoded) this.writeBytes(addr, bytes);
  }

  /** Load a raw image (a flat byte array) at physical address `base`. */
  loadRaw(data: Uint8Array, base = 0): void {
    this.#check(base, data.length);
    this.writeBytes(base, data);
  }

  /** Save `len` bytes at `base` as a raw image. */
  saveRaw(base: number, len: number): Uint8Array {
    return this.readBytes(base, len);
  }
}

/** Base64-encode bytes. */
export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** Decode base64 into bytes (throws on malformed input). */
export function fromBase64(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
