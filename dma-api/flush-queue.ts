/**
 * @module
 * The DMA layer's flush queue (drivers/iommu/dma-iommu.c, about v6.9): lazy
 * unmap. Unmapped IOVAs wait in per-CPU rings of 256 entries (or one ring of
 * 32768 entries when the IOMMU shadows its tables on flush) until one
 * `flush_iotlb_all` has covered them; a timer (10 ms, or 1 s for the single
 * queue) on the machine's virtual clock does that flush. Until then a device
 * can still reach the unmapped pages through a stale IOTLB entry: that is the
 * exposure window the trace shows.
 */

import { IommuError } from "@iommu-lab/core";

/** `IOVA_DEFAULT_FQ_SIZE`. */
export const IOVA_DEFAULT_FQ_SIZE = 256;
/** `IOVA_DEFAULT_FQ_TIMEOUT` in ns (10 ms). */
export const IOVA_DEFAULT_FQ_TIMEOUT_NS = 10_000_000;
/** `IOVA_SINGLE_FQ_SIZE`. */
export const IOVA_SINGLE_FQ_SIZE = 32768;
/** `IOVA_SINGLE_FQ_TIMEOUT` in ns (1000 ms). */
export const IOVA_SINGLE_FQ_TIMEOUT_NS = 1_000_000_000;

/** What the flush queue needs from its surroundings. */
export interface FlushQueueEnv {
  /** Timers on virtual time (the machine's clock). */
  clock: { setTimer(delayNs: number, fn: () => void): number };
  /** `domain->ops->flush_iotlb_all`. */
  flushAll(): void;
  /** Release an entry after a flush covered it: `free_iova_fast` plus the page-table freelist. */
  release(pfn: number, pages: number, freelist: readonly number[], cpu: number): void;
}

/** Flush queue options (`struct iommu_dma_options`). */
export interface FlushQueueOptions {
  /** One global 32768-entry, 1 s queue (`IOMMU_DMA_OPTS_SINGLE_QUEUE`). */
  single?: boolean;
  /** Model CPUs with their own ring (per-CPU mode; default 1). */
  cpus?: number;
  /** Override the ring size (power of two). */
  size?: number;
  /** Override the timeout (ns). */
  timeoutNs?: number;
}

/** Counters of a flush queue. */
export interface FlushQueueCounters {
  /** Entries queued. */
  queued: number;
  /** Entries released after a flush. */
  released: number;
  /** flush_iotlb_all calls (all causes). */
  flushes: number;
  /** Flushes because a ring was full. */
  fullFlushes: number;
  /** Flushes by the timer. */
  timerFlushes: number;
}

class Ring {
  head = 0;
  tail = 0;
  readonly pfn: Float64Array;
  readonly pages: Float64Array;
  readonly counter: Float64Array;
  readonly freelist: number[][];
  constructor(readonly size: number) {
    this.pfn = new Float64Array(size);
    this.pages = new Float64Array(size);
    this.counter = new Float64Array(size);
    this.freelist = [];
    for (let i = 0; i < size; i++) this.freelist.push([]);
  }
  get mask(): number {
    return this.size - 1;
  }
  get full(): boolean {
    return ((this.tail + 1) & this.mask) === this.head;
  }
  get length(): number {
    return (this.tail - this.head) & this.mask;
  }
}

/** `struct iova_fq` set of one DMA cookie, with its flush counters and timer. */
export class FlushQueue {
  /** Ring size (entries; a ring holds size - 1). */
  readonly size: number;
  /** Timer period in ns. */
  readonly timeoutNs: number;
  /** True for the single global queue. */
  readonly single: boolean;
  /** Counters. */
  readonly counters: FlushQueueCounters = {
    queued: 0,
    released: 0,
    flushes: 0,
    fullFlushes: 0,
    timerFlushes: 0,
  };
  /** `fq_flush_start_cnt`. */
  flushStartCnt = 0;
  /** `fq_flush_finish_cnt`. */
  flushFinishCnt = 0;
  /** `fq_timer_on`. */
  timerOn = false;
  readonly #rings: Ring[];
  readonly #env: FlushQueueEnv;

  /** `iommu_dma_init_fq`. */
  constructor(env: FlushQueueEnv, opts: FlushQueueOptions = {}) {
    this.single = opts.single ?? false;
    this.size = opts.size ?? (this.single ? IOVA_SINGLE_FQ_SIZE : IOVA_DEFAULT_FQ_SIZE);
    this.timeoutNs = opts.timeoutNs ??
      (this.single ? IOVA_SINGLE_FQ_TIMEOUT_NS : IOVA_DEFAULT_FQ_TIMEOUT_NS);
    if (this.size < 2 || (this.size & (this.size - 1)) !== 0) {
      throw new IommuError(
        "EINVAL",
        "iommu_dma_init_fq",
        `flush queue size ${this.size} must be a power of two >= 2`,
      );
    }
    const n = this.single ? 1 : (opts.cpus ?? 1);
    this.#rings = [];
    for (let i = 0; i < n; i++) this.#rings.push(new Ring(this.size));
    this.#env = env;
  }

  /** Entries waiting for a flush (all rings). */
  get pending(): number {
    let n = 0;
    for (const r of this.#rings) n += r.length;
    return n;
  }

  #ringOf(cpu: number): Ring {
    return this.single ? this.#rings[0] : this.#rings[cpu % this.#rings.length];
  }

  /** `fq_ring_free_locked`: release entries a finished flush covers. */
  #ringFree(ring: Ring, cpu: number): void {
    const done = this.flushFinishCnt;
    while (ring.head !== ring.tail) {
      const i = ring.head;
      if (ring.counter[i] >= done) break;
      const fl = ring.freelist[i];
      this.#env.release(ring.pfn[i], ring.pages[i], fl, cpu);
      if (fl.length !== 0) fl.length = 0;
      this.counters.released++;
      ring.head = (ring.head + 1) & ring.mask;
    }
  }

  /** `fq_flush_iotlb`: one flush_iotlb_all bracketed by the start/finish counters. */
  flushIotlb(): void {
    this.flushStartCnt++;
    this.#env.flushAll();
    this.counters.flushes++;
    this.flushFinishCnt++;
  }

  /** `queue_iova(cookie, pfn, pages, freelist)` on `cpu`. */
  queueIova(pfn: number, pages: number, freelist: readonly number[], cpu = 0): void {
    const ring = this.#ringOf(cpu);
    this.#ringFree(ring, cpu);
    if (ring.full) {
      this.counters.fullFlushes++;
      this.flushIotlb();
      this.#ringFree(ring, cpu);
    }
    const i = ring.tail;
    ring.tail = (i + 1) & ring.mask;
    ring.pfn[i] = pfn;
    ring.pages[i] = pages;
    ring.counter[i] = this.flushStartCnt;
    if (freelist.length !== 0) {
      const fl = ring.freelist[i];
      for (let k = 0; k < freelist.length; k++) fl.push(freelist[k]);
    }
    this.counters.queued++;
    if (!this.timerOn) {
      this.timerOn = true;
      this.#env.clock.setTimer(this.timeoutNs, this.#onTimeout);
    }
  }

  /** The timer callback, made once (no closure per arming). */
  readonly #onTimeout = (): void => this.#timeout();

  /** `fq_flush_timeout`: one flush, then drain every ring. */
  #timeout(): void {
    this.timerOn = false;
    this.counters.timerFlushes++;
    this.flushIotlb();
    for (let c = 0; c < this.#rings.length; c++) this.#ringFree(this.#rings[c], c);
  }

  /** Flush now and drain every ring (`iommu_dma_free_fq` / explicit drain). */
  drain(): void {
    if (this.pending === 0) return;
    this.flushIotlb();
    for (let c = 0; c < this.#rings.length; c++) this.#ringFree(this.#rings[c], c);
  }
}
