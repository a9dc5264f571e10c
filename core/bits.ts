/**
 * @module
 * Bit helpers for values wider than 32 bits held in `number`s (exact up to
 * 2^53) and for 64-bit words kept as two unsigned 32-bit halves. JavaScript's
 * bitwise operators work on 32 bits only, so wide values go through these.
 */

/** 2^32. */
export const TWO32 = 4294967296;

/** Low 32 bits of a non-negative integer `x` < 2^53, as an unsigned number. */
export function lo32(x: number): number {
  return x >>> 0;
}

/** Bits 63:32 of a non-negative integer `x` < 2^53, as an unsigned number. */
export function hi32(x: number): number {
  return Math.floor(x / TWO32) >>> 0;
}

/** Join two 32-bit halves into one number; exact while `hi` < 2^21. */
export function join64(lo: number, hi: number): number {
  return (hi >>> 0) * TWO32 + (lo >>> 0);
}

/** Join two 32-bit halves into a bigint (any `hi`). */
export function join64n(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** Split a 64-bit bigint (taken modulo 2^64) into `[lo, hi]`. */
export function split64n(v: bigint): [number, number] {
  const u = BigInt.asUintN(64, v);
  return [Number(u & 0xffffffffn), Number(u >> 32n)];
}

/** `2^n` as a number (n < 1024). */
export function pow2(n: number): number {
  return 2 ** n;
}

/** True if `x` is a multiple of the power of two `align`. */
export function isAligned(x: number, align: number): boolean {
  return x % align === 0;
}

/** Round `x` down to a multiple of `align` (any positive integer). */
export function alignDown(x: number, align: number): number {
  return x - (x % align);
}

/** Round `x` up to a multiple of `align` (any positive integer). */
export function alignUp(x: number, align: number): number {
  const r = x % align;
  return r === 0 ? x : x + (align - r);
}

/** Index of the lowest set bit of a positive integer < 2^53 (the kernel's `__ffs`). */
export function ffs(x: number): number {
  if (x <= 0) return -1;
  const lo = x >>> 0;
  if (lo !== 0) return 31 - Math.clz32(lo & -lo);
  return 32 + 31 - Math.clz32(hi32(x) & -hi32(x));
}

/** Index of the highest set bit of a positive integer < 2^53 (the kernel's `__fls`). */
export function fls(x: number): number {
  if (x <= 0) return -1;
  const hi = hi32(x);
  if (hi !== 0) return 32 + 31 - Math.clz32(hi);
  return 31 - Math.clz32(x >>> 0);
}

/** True if `x` is a power of two. */
export function isPow2(x: number): boolean {
  return x > 0 && Number.isInteger(x) && ffs(x) === fls(x);
}

/** Smallest power of two >= x (x >= 1). */
export function roundupPow2(x: number): number {
  return x <= 1 ? 1 : 2 ** (fls(x - 1) + 1);
}

/** Log2 of a power of two. */
export function ilog2(x: number): number {
  return fls(x);
}

/** Extract bits `[hi:lo]` (inclusive, hi - lo < 32) of a 32-bit word. */
export function bits32(word: number, hi: number, lo: number): number {
  const width = hi - lo + 1;
  return width === 32 ? word >>> 0 : (word >>> lo) & ((1 << width) - 1) >>> 0;
}

/** Bits `[hi:lo]` of a non-negative integer < 2^53 (hi < 53), as a number. */
export function bitsOf(x: number, hi: number, lo: number): number {
  return Math.floor(x / 2 ** lo) % 2 ** (hi - lo + 1);
}

/** Bit `n` of a non-negative integer < 2^53. */
export function bitOf(x: number, n: number): number {
  return Math.floor(x / 2 ** n) % 2;
}

/** Format a number (or bigint) as `0x…` hexadecimal. */
export function hex(x: number | bigint, pad = 0): string {
  return "0x" + x.toString(16).padStart(pad, "0");
}

/** Parse a hexadecimal (`0x…`) or decimal string into a bigint; throws a `SyntaxError` when malformed. */
export function parseU64(s: string): bigint {
  const t = s.trim().replaceAll("_", "");
  if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(t)) throw new SyntaxError(`not a number: "${s}"`);
  return BigInt(t);
}
