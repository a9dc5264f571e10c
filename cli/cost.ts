/**
 * @module
 * The cost model: modeled time from counters. Each counter of the IOMMU
 * hardware's counter set, and a few of the DMA layer's, falls in a category
 * by its name; each category has a latency in nanoseconds per count. The
 * modeled time of a run is the sum of count × latency. Latencies are
 * assumptions (the literature gives no page-walk or CMD_SYNC figures; see
 * kernel-facts.md §3.3), chosen to be of the right order on a server:
 *
 * | category       | counter names (regex, case-insensitive)        | ns   |
 * |----------------|------------------------------------------------|------|
 * | staleHits      | `stale`, `missed`                              | 0    |
 * | cacheHits      | `hit`                                          | 1    |
 * | cacheMisses    | `miss`                                         | 5    |
 * | walkReads      | `walk`, `_reads$`, `Reads$`, `fetch`           | 80   |
 * | syncs          | `sync`, `wait`, `drain`                        | 500  |
 * | invalidations  | `inv`, `tlbi`, `flush`                         | 100  |
 * | commands       | `cmd`, `command`, `desc`                       | 20   |
 * | faults         | `fault`, `event`                               | 1000 |
 * | pageRequests   | `page_?req`, `pri`, `prq`                      | 2000 |
 * | translations   | `translat`                                     | 2    |
 * | bounceBytes    | `dma-api` swiotlb copies (bytes)               | 0.1  |
 * | dmaBytes       | `dma.bytes`                                    | 0.05 |
 *
 * A scenario's `cost:` map overrides a category's latency by name.
 */

import type { Counters } from "@iommu-lab/core";

/** A cost category. */
export interface CostCategory {
  /** Category key (also the override name). */
  key: string;
  /** Counter names that fall in it. */
  match: RegExp;
  /** Nanoseconds per count. */
  ns: number;
}

/** The default categories, first match wins (order matters). */
export const DEFAULT_COST_MODEL: readonly CostCategory[] = [
  { key: "staleHits", match: /stale|missed/i, ns: 0 },
  { key: "cacheHits", match: /hit/i, ns: 1 },
  { key: "cacheMisses", match: /miss/i, ns: 5 },
  { key: "pageRequests", match: /page_?req|\bpri|prq/i, ns: 2000 },
  { key: "syncs", match: /sync|wait|drain/i, ns: 500 },
  { key: "walkReads", match: /walk|_reads$|Reads$|fetch/, ns: 80 },
  { key: "invalidations", match: /inv|tlbi|flush/i, ns: 100 },
  { key: "commands", match: /cmd|command|desc/i, ns: 20 },
  { key: "faults", match: /fault|event/i, ns: 1000 },
  { key: "translations", match: /translat/i, ns: 2 },
];

/** A cost model with overrides applied. */
export function costModel(overrides: Record<string, number> = {}): CostCategory[] {
  const known = new Set(DEFAULT_COST_MODEL.map((c) => c.key));
  for (const k of Object.keys(overrides)) {
    if (!known.has(k) && k !== "dmaBytes") {
      throw new RangeError(
        `unknown cost category "${k}"; categories: ${[...known, "dmaBytes"].join(", ")}`,
      );
    }
  }
  return DEFAULT_COST_MODEL.map((c) => ({ ...c, ns: overrides[c.key] ?? c.ns }));
}

/** Category of a counter name, or undefined. */
export function categoryOf(model: readonly CostCategory[], name: string): CostCategory | undefined {
  return model.find((c) => c.match.test(name));
}

/** Per-category totals of a hardware counter set. */
export function categorize(
  model: readonly CostCategory[],
  hw: Counters,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of model) out[c.key] = 0;
  for (const [name, v] of Object.entries(hw)) {
    const c = categoryOf(model, name);
    if (c) out[c.key] += v;
  }
  return out;
}

/**
 * Modeled time in ns: the hardware counters by category, plus DMA bytes
 * moved (`dmaBytes` ns per byte, default 0.05).
 */
export function modeledNs(
  model: readonly CostCategory[],
  hw: Counters,
  dmaBytes: number,
  overrides: Record<string, number> = {},
): number {
  let t = 0;
  for (const [name, v] of Object.entries(hw)) {
    const c = categoryOf(model, name);
    if (c) t += v * c.ns;
  }
  return t + dmaBytes * (overrides.dmaBytes ?? 0.05);
}
