/**
 * @module
 * The cost model: modeled time from counters. Each counter of the IOMMU
 * hardware's counter set, and a few of the DMA layer's, falls in a category
 * by its name; each category has a latency in nanoseconds per count. The
 * modeled time of a run is the sum of count × latency. Latencies are
 * assumptions (the literature gives no page-walk or CMD_SYNC figures; see
 * kernel-facts.md §3.3), chosen to be of the right order on a server:
 *
 * | category      | hardware counter names (first match wins)              | ns   |
 * |---------------|--------------------------------------------------------|------|
 * | staleHits     | `stale`, `missed` (checking-mode reports)              | 0    |
 * | cacheHits     | `hit` (every cache: IOTLB, context, PASID, STE, CD...) | 1    |
 * | cacheMisses   | `miss`                                                 | 5    |
 * | pageRequests  | `page_req`, `pri`, `prq`                               | 2000 |
 * | syncs         | `syncs`, `qiWait`, `waits`                             | 500  |
 * | invalidations | `cmd_TLBI*`, `cmd_CFGI*`, `cmd_ATC_INV`, `qi*`, `inv*` | 100  |
 * | commands      | `commands`, `qiDescriptors`, `cmds`                    | 20   |
 * | walkReads     | `walk`, `*_reads`, `*Reads`, `fetch`                   | 80   |
 * | faults        | `faults`                                               | 1000 |
 * | translations  | `translations`                                         | 2    |
 * | dmaBytes      | the DMA masters' `dma.bytes`                           | 0.05 |
 *
 * Every other counter (per-opcode breakdowns already counted by an
 * aggregate, such as `cmd_CMD_SYNC`, `events`, `faultsRecorded`) costs
 * nothing, so nothing is counted twice: a command costs `commands`, and a
 * sync or an invalidation adds its own latency on top.
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
  { key: "syncs", match: /^(syncs?|qiWait|waits?)$/i, ns: 500 },
  {
    key: "invalidations",
    match: /^(cmd_(TLBI|CFGI|ATC_INV)|qi(?!Descriptors$|Wait$)[A-Z]|inv)/,
    ns: 100,
  },
  { key: "commands", match: /^(commands|qiDescriptors|cmds)$/, ns: 20 },
  { key: "walkReads", match: /walk|_reads$|Reads$|fetch/, ns: 80 },
  { key: "faults", match: /^faults$/, ns: 1000 },
  { key: "translations", match: /^translations$/, ns: 2 },
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
