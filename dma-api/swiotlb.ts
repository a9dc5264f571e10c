/**
 * @module
 * swiotlb (kernel/dma/swiotlb.c, reduced to one area): a bounce pool in the
 * machine's memory cut into 2 KiB slots (`IO_TLB_SHIFT` = 11) in segments
 * of 128 slots (`IO_TLB_SEGSIZE`). A mapping takes contiguous free slots
 * aligned as asked (the IOMMU granule for dma-iommu) inside one segment,
 * first fit from a rotating index; the original buffer is copied in at map
 * time whatever the direction (so a device never sees stale pool data), and
 * copied back on unmap / sync-for-cpu for FROM_DEVICE and BIDIRECTIONAL.
 */

import { IommuError, type PhysMem } from "@iommu-lab/core";
import { DmaDirection } from "./prot.ts";

/** `IO_TLB_SHIFT`. */
export const IO_TLB_SHIFT = 11;
/** `IO_TLB_SIZE`: bytes per slot. */
export const IO_TLB_SIZE = 1 << IO_TLB_SHIFT;
/** `IO_TLB_SEGSIZE`: slots per segment (a mapping never crosses one). */
export const IO_TLB_SEGSIZE = 128;

/** Counters of a bounce pool. */
export interface SwiotlbCounters {
  /** Successful bounce mappings. */
  maps: number;
  /** Unmaps. */
  unmaps: number;
  /** Bytes copied into the pool (to the device side). */
  bytesToPool: number;
  /** Bytes copied back from the pool. */
  bytesFromPool: number;
  /** Mappings refused (pool full). */
  failures: number;
}

/** A bounce pool `[base, base + slots * 2 KiB)` in physical memory. */
export class Swiotlb {
  /** Pool start (physical, granule-aligned). */
  readonly base: number;
  /** Number of slots. */
  readonly nslabs: number;
  /** Counters. */
  readonly counters: SwiotlbCounters = {
    maps: 0,
    unmaps: 0,
    bytesToPool: 0,
    bytesFromPool: 0,
    failures: 0,
  };
  readonly #mem: PhysMem;
  readonly #used: Uint8Array;
  // Per slot of a mapping's first slot: original address, mapping size, slots.
  readonly #orig: Float64Array;
  readonly #size: Float64Array;
  readonly #nslots: Uint32Array;
  #index = 0;

  /** A pool of `bytes` (a multiple of 2 KiB) at `base`. */
  constructor(mem: PhysMem, base: number, bytes: number) {
    if (bytes <= 0 || bytes % IO_TLB_SIZE !== 0 || base % 4096 !== 0) {
      throw new IommuError(
        "EINVAL",
        "swiotlb_init",
        `pool at 0x${
          base.toString(16)
        } of ${bytes} bytes must be page-aligned and a multiple of 2 KiB`,
      );
    }
    this.#mem = mem;
    this.base = base;
    this.nslabs = bytes / IO_TLB_SIZE;
    this.#used = new Uint8Array(this.nslabs);
    this.#orig = new Float64Array(this.nslabs);
    this.#size = new Float64Array(this.nslabs);
    this.#nslots = new Uint32Array(this.nslabs);
  }

  /** `is_swiotlb_buffer`: is `pa` inside the pool? */
  contains(pa: number): boolean {
    return pa >= this.base && pa < this.base + this.nslabs * IO_TLB_SIZE;
  }

  /** Slots currently in use. */
  get usedSlots(): number {
    let n = 0;
    for (let i = 0; i < this.nslabs; i++) n += this.#used[i];
    return n;
  }

  /**
   * `swiotlb_tbl_map_single(dev, orig, size, alloc_align_mask, dir)`: take
   * slots for `size` bytes starting at an address aligned to
   * `allocAlignMask + 1` (at least a slot), copy the original in, and return
   * the bounce address. Throws ENOMEM when no run of slots is free.
   */
  mapSingle(orig: number, size: number, allocAlignMask: number): number {
    const nslots = Math.ceil(size / IO_TLB_SIZE);
    const stride = Math.max(1, Math.ceil((allocAlignMask + 1) / IO_TLB_SIZE));
    if (nslots > IO_TLB_SEGSIZE) {
      this.counters.failures++;
      throw new IommuError(
        "ENOMEM",
        "swiotlb_tbl_map_single",
        `${size} bytes need ${nslots} slots; one mapping is at most ${IO_TLB_SEGSIZE} slots (${
          IO_TLB_SEGSIZE * IO_TLB_SIZE
        } bytes)`,
      );
    }
    const start0 = Math.ceil(this.#index / stride) * stride;
    for (let tried = 0; tried < this.nslabs; tried += stride) {
      let i = (start0 + tried) % this.nslabs;
      i -= i % stride;
      if (i + nslots > this.nslabs) continue;
      if (Math.floor(i / IO_TLB_SEGSIZE) !== Math.floor((i + nslots - 1) / IO_TLB_SEGSIZE)) {
        continue;
      }
      let free = true;
      for (let j = 0; j < nslots; j++) {
        if (this.#used[i + j]) {
          free = false;
          break;
        }
      }
      if (!free) continue;
      for (let j = 0; j < nslots; j++) this.#used[i + j] = 1;
      this.#orig[i] = orig;
      this.#size[i] = size;
      this.#nslots[i] = nslots;
      this.#index = (i + nslots) % this.nslabs;
      const tlb = this.base + i * IO_TLB_SIZE;
      this.#copy(orig, tlb, size);
      this.counters.bytesToPool += size;
      this.counters.maps++;
      return tlb;
    }
    this.counters.failures++;
    throw new IommuError(
      "ENOMEM",
      "swiotlb_tbl_map_single",
      `no ${nslots} free contiguous slot(s) in the ${this.nslabs}-slot bounce pool`,
    );
  }

  #slotOf(tlb: number, op: string): number {
    const i = Math.floor((tlb - this.base) / IO_TLB_SIZE);
    if (!this.contains(tlb) || !this.#used[i] || this.#nslots[i] === 0) {
      throw new IommuError(
        "EINVAL",
        op,
        `0x${tlb.toString(16)} is not the start of a live bounce mapping`,
      );
    }
    return i;
  }

  #copy(from: number, to: number, len: number): void {
    if (len > 0) this.#mem.writeBytes(to, this.#mem.readBytes(from, len));
  }

  /** Original buffer of the mapping at `tlb`. */
  origOf(tlb: number): number {
    return this.#orig[this.#slotOf(tlb, "swiotlb_orig")];
  }

  /** `swiotlb_sync_single_for_cpu`: copy back for FROM_DEVICE / BIDIRECTIONAL. */
  syncForCpu(tlb: number, size: number, dir: number): void {
    const i = this.#slotOf(tlb, "swiotlb_sync_single_for_cpu");
    if (dir === DmaDirection.FROM_DEVICE || dir === DmaDirection.BIDIRECTIONAL) {
      this.#copy(tlb, this.#orig[i], Math.min(size, this.#size[i]));
      this.counters.bytesFromPool += Math.min(size, this.#size[i]);
    }
  }

  /** `swiotlb_sync_single_for_device`: copy in for TO_DEVICE / BIDIRECTIONAL. */
  syncForDevice(tlb: number, size: number, dir: number): void {
    const i = this.#slotOf(tlb, "swiotlb_sync_single_for_device");
    if (dir === DmaDirection.TO_DEVICE || dir === DmaDirection.BIDIRECTIONAL) {
      this.#copy(this.#orig[i], tlb, Math.min(size, this.#size[i]));
      this.counters.bytesToPool += Math.min(size, this.#size[i]);
    }
  }

  /** `swiotlb_tbl_unmap_single`: copy back (FROM_DEVICE / BIDIRECTIONAL) and free the slots. */
  unmapSingle(tlb: number, size: number, dir: number): void {
    const i = this.#slotOf(tlb, "swiotlb_tbl_unmap_single");
    this.syncForCpu(tlb, size, dir);
    const n = this.#nslots[i];
    for (let j = 0; j < n; j++) this.#used[i + j] = 0;
    this.#nslots[i] = 0;
    this.counters.unmaps++;
  }
}
