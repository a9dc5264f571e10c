/**
 * Shared fixtures for the io-pgtable tests: a memory + allocator pair, a
 * recording FlushOps, and helpers to snapshot memory and release a gather.
 */
import {
  type FlushOps,
  type IoPgtableCfg,
  type IoPgtableFormat,
  IotlbGather,
  PageAllocator,
  PhysMem,
} from "@iommu-lab/core";
import { allocIoPgtable, type RadixPgtable } from "@iommu-lab/core/io-pgtable";

/** Page sizes for the common configurations. */
export const SZ_4K = 0x1000;
export const SZ_16K = 0x4000;
export const SZ_64K = 0x10000;
export const SZ_2M = 0x20_0000;
export const SZ_32M = 0x200_0000;
export const SZ_512M = 0x2000_0000;
export const SZ_1G = 0x4000_0000;
export const SZ_2G = 0x8000_0000;

/** A flush callback as recorded. */
export type FlushEvent =
  | { kind: "all" }
  | { kind: "walk"; iova: number; size: number; granule: number }
  | { kind: "page"; iova: number; granule: number };

/** FlushOps that records every callback in order. */
export class RecordingFlush implements FlushOps {
  /** Callbacks seen, in order. */
  readonly events: FlushEvent[] = [];
  /** `tlb_flush_all`. */
  tlbFlushAll(): void {
    this.events.push({ kind: "all" });
  }
  /** `tlb_flush_walk`. */
  tlbFlushWalk(iova: number, size: number, granule: number): void {
    this.events.push({ kind: "walk", iova, size, granule });
  }
  /** `tlb_add_page`. */
  tlbAddPage(gather: IotlbGather, iova: number, granule: number): void {
    this.events.push({ kind: "page", iova, granule });
    gather.addRange(iova, granule);
  }
}

/** A fresh machine memory with a table-page allocator at [256M, 1G). */
export function makeEnv(): { mem: PhysMem; pages: PageAllocator } {
  const mem = new PhysMem(52);
  const pages = new PageAllocator(mem, 0x1000_0000, 0x4000_0000);
  return { mem, pages };
}

/** Build a table with sensible defaults. */
export function makeTable(
  fmt: IoPgtableFormat,
  over: Partial<IoPgtableCfg> = {},
  env = makeEnv(),
): { t: RadixPgtable; mem: PhysMem; pages: PageAllocator; tlb: RecordingFlush } {
  const tlb = new RecordingFlush();
  const cfg: IoPgtableCfg = {
    quirks: 0,
    pgsizeBitmap: SZ_4K + SZ_2M + SZ_1G,
    ias: 48,
    oas: 48,
    coherentWalk: true,
    tlb,
    ...over,
  };
  const t = allocIoPgtable(fmt, cfg, env);
  return { t, mem: env.mem, pages: env.pages, tlb };
}

/** The bytes of every backed page, for "nothing changed" checks. */
export function snapshot(mem: PhysMem): string {
  return JSON.stringify(mem.saveSparse());
}

/** What the iommu core does after iotlb_sync: free the gathered table pages. */
export function releaseGather(pages: PageAllocator, g: IotlbGather): number {
  const n = g.freelist.length;
  for (const p of g.freelist) pages.free(p);
  g.init();
  return n;
}

/** Read the 64-bit entry at `addr` as a bigint. */
export function entryAt(mem: PhysMem, addr: number): bigint {
  return mem.read64n(addr);
}

/** Level (0 = root) whose entries map `size` bytes, or -1. */
export function levelOf(t: RadixPgtable, size: number): number {
  for (let l = 0; l < t.levels; l++) if (t.blockSize(l) === size) return l;
  return -1;
}

/** Configurations every behaviour runs on. */
export const CONFIGS: [string, IoPgtableFormat, Partial<IoPgtableCfg>][] = [
  ["ARM_64_LPAE_S1 4K", "ARM_64_LPAE_S1", {}],
  ["ARM_64_LPAE_S2 4K concatenated", "ARM_64_LPAE_S2", { ias: 40, oas: 40 }],
  ["ARM_64_LPAE_S1 16K", "ARM_64_LPAE_S1", { pgsizeBitmap: SZ_16K + SZ_32M }],
  ["ARM_64_LPAE_S2 64K", "ARM_64_LPAE_S2", { pgsizeBitmap: SZ_64K + SZ_512M }],
  ["X86_64", "X86_64", {}],
  ["VTD_SS", "VTD_SS", {}],
];
