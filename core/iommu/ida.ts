/**
 * @module
 * An ID allocator with the kernel's `ida_alloc_range` semantics: the lowest
 * free id in an inclusive range, ids up to 2^31 - 1, backed by a bitmap of
 * 32-bit words that grows as ids are used.
 */

import { IommuError } from "../errors.ts";

/** Largest id an IDA hands out (`INT_MAX`). */
export const IDA_MAX = 0x7fffffff;

/** `struct ida`: allocate the lowest free id in a range; free it again. */
export class Ida {
  #words: Uint32Array = new Uint32Array(4);
  #count = 0;

  /** Number of ids allocated now. */
  get size(): number {
    return this.#count;
  }

  /** True if `id` is allocated. */
  has(id: number): boolean {
    const w = id >>> 5;
    return Number.isInteger(id) && id >= 0 && w < this.#words.length &&
      (this.#words[w] & (1 << (id & 31))) !== 0;
  }

  /**
   * `ida_alloc_range(min, max)`: the lowest free id in `[min, max]`, or -1
   * when the range is empty or full (the kernel's -ENOSPC; callers map it).
   */
  allocRange(min: number, max: number): number {
    if (max > IDA_MAX) max = IDA_MAX;
    if (min < 0) min = 0;
    if (min > max) return -1;
    let id = min;
    const words = this.#words;
    while (id <= max) {
      const w = id >>> 5;
      if (w >= words.length) break; // everything from here is free
      const free = ~words[w] & (0xffffffff << (id & 31));
      if (free !== 0) {
        const bit = 31 - Math.clz32(free & -free);
        const found = w * 32 + bit;
        if (found > max) return -1;
        this.#set(found);
        return found;
      }
      id = (w + 1) * 32;
    }
    if (id > max) return -1;
    this.#set(id);
    return id;
  }

  /** `ida_free`: release `id`; EINVAL when it is not allocated (the kernel WARNs). */
  free(id: number): void {
    if (!this.has(id)) {
      throw new IommuError("EINVAL", "ida_free", `id ${id} is not allocated`);
    }
    this.#words[id >>> 5] &= ~(1 << (id & 31));
    this.#count--;
  }

  #set(id: number): void {
    const w = id >>> 5;
    if (w >= this.#words.length) {
      let n = this.#words.length;
      while (n <= w) n *= 2;
      const grown = new Uint32Array(n);
      grown.set(this.#words);
      this.#words = grown;
    }
    this.#words[w] |= 1 << (id & 31);
    this.#count++;
  }
}
