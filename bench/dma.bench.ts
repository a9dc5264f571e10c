/**
 * The dma_map_benchmark analogue (kernel/dma/map_benchmark.c): per-call
 * `dma_map_single` + `dma_unmap_single` latency for 1-page and 256-page
 * granules, strict and lazy, on each built-in backend, through the whole
 * stack (DMA API, IOVA allocator, iommu core, driver, hardware model with
 * its modeled invalidation queue). `report()` also prints the kernel tool's
 * own output form (average map/unmap latency in µs with standard deviation).
 *
 * The kernel tool's thread maps one buffer and unmaps it again before the
 * next map, so the IOVA comes from (and goes back to) the range cache and
 * one mapping is outstanding. `report()` keeps that shape while timing
 * batches (timer calls cost as much as a map here): it maps a small batch
 * (16 buffers of 1 page, 4 of 256 pages), then unmaps it, and divides each
 * phase's time by the batch size. Thousands of outstanding mappings would
 * instead measure the IOVA tree walk the kernel tool never reaches.
 */

import { bench, do_not_optimize, group } from "mitata";
import {
  type BackendPlugin,
  DomainType,
  IommuCore,
  type IommuDomain,
  type IommuHardware,
  type IommuOps,
  Machine,
  type PciDevice,
  resolveOptions,
} from "@iommu-lab/core";
import { type DmaApi, dmaDevice, DmaDirection, type DmaIommuCore } from "@iommu-lab/dma-api";
import { availableBackends } from "../cli/backends.ts";

/** A device with the DMA API on a backend, and a buffer of `pages` pages. */
export function dmaEnv(
  plugin: BackendPlugin,
  strict: boolean,
  pages: number,
): {
  dma: DmaApi;
  buf: number;
  size: number;
  m: Machine;
  hw: IommuHardware;
  core: IommuCore;
  dev: PciDevice;
} {
  const m = new Machine({ paBits: 48 });
  const dev = m.pci.add({ name: "bench0", bus: 0, device: 3, fn: 0 });
  const { hw, driver } = plugin.create(m, resolveOptions(plugin, {}));
  const core = new IommuCore(m, { strict });
  core.registerDriver(driver);
  if (!strict) {
    try {
      core.setGroupDefaultDomainType(core.groupOf(dev), "DMA-FQ");
    } catch { /* the driver cannot defer flushes: stays strict */ }
  }
  const dma = dmaDevice(core, dev);
  const size = pages * 4096;
  const buf = m.pages.allocPages(Math.ceil(Math.log2(pages)));
  return { dma, buf, size, m, hw, core, dev };
}

const BIDIR = DmaDirection.BIDIRECTIONAL;
const plugins = await availableBackends();

/** The DMA layer alone: an iommu core whose map/unmap/sync do nothing. */
function noopDma(lazy: boolean): DmaApi {
  const m = new Machine({ paBits: 48 });
  const dev = m.pci.add({ name: "noop0", bus: 0, device: 3, fn: 0 });
  const ops = {
    name: "noop",
    pgsizeBitmap: 0x1000,
    capable: () => true,
    domainAllocPaging: () => domain,
    probeDevice() {},
    releaseDevice() {},
    getResvRegions: () => [],
    maxPasids: () => 0,
  } as unknown as IommuOps;
  const domain = {
    type: lazy ? DomainType.DMA_FQ : DomainType.DMA,
    owner: ops,
    pgsizeBitmap: 0x1000,
    geometry: { apertureStart: 0, apertureEnd: 2 ** 48 - 1, forceAperture: true },
    attachDev() {},
    free() {},
  } as IommuDomain;
  const core: DmaIommuCore = {
    machine: m,
    opsOf: () => ops,
    defaultDomainOf: () => domain,
    groupOf: () => ({}),
    getGroupResvRegions: () => [],
    map() {},
    unmapFast(_d, iova, size, g) {
      g.addRange(iova, size);
      return size;
    },
    iotlbSync() {},
    flushIotlbAll() {},
    iovaToPhys: () => 0,
    attachDevicePasid() {},
    detachDevicePasid() {},
    allocGlobalPasid: () => 0,
    freeGlobalPasid() {},
  };
  return dmaDevice(core, dev);
}

group("dma_map_benchmark DMA layer alone (no-op iommu core)", () => {
  for (const lazy of [false, true]) {
    const dma = noopDma(lazy);
    bench(`dma-api ${lazy ? "lazy" : "strict"} map+unmap 1p (no-op core)`, () => {
      const a = dma.dmaMapSingle(0x1000_0000, 4096, BIDIR);
      dma.dmaUnmapSingle(a, 4096, BIDIR);
      do_not_optimize(a);
    });
  }
});

for (const p of plugins) {
  group(`dma_map_benchmark ${p.name}`, () => {
    for (const strict of [true, false]) {
      for (const pages of [1, 256]) {
        const { dma, buf, size } = dmaEnv(p, strict, pages);
        const mode = strict ? "strict" : dma.mode === "iommu-lazy" ? "lazy" : "lazy→strict";
        bench(`${p.name} ${mode} map+unmap ${pages}p`, () => {
          const a = dma.dmaMapSingle(buf, size, BIDIR);
          dma.dmaUnmapSingle(a, size, BIDIR);
          do_not_optimize(a);
        });
      }
    }
  });
}

/** Mean and standard deviation (µs) of per-call latencies measured in batches. */
function measure(
  dma: DmaApi,
  buf: number,
  size: number,
  batches: number,
  per: number,
  rounds: number,
): { map: [number, number]; unmap: [number, number] } {
  const addrs = new Float64Array(per);
  const mapT: number[] = [], unmapT: number[] = [];
  // Warm-up (JIT, range caches, page tables): 20 rounds' worth, untimed.
  for (let r = 0; r < 20 * rounds; r++) {
    for (let i = 0; i < per; i++) addrs[i] = dma.dmaMapSingle(buf, size, BIDIR);
    for (let i = 0; i < per; i++) dma.dmaUnmapSingle(addrs[i], size, BIDIR);
  }
  for (let b = 0; b < batches; b++) {
    // Each sample: `rounds` rounds of `per` maps then `per` unmaps.
    let tm = 0, tu = 0;
    for (let r = 0; r < rounds; r++) {
      const t0 = performance.now();
      for (let i = 0; i < per; i++) addrs[i] = dma.dmaMapSingle(buf, size, BIDIR);
      const t1 = performance.now();
      for (let i = 0; i < per; i++) dma.dmaUnmapSingle(addrs[i], size, BIDIR);
      const t2 = performance.now();
      tm += t1 - t0;
      tu += t2 - t1;
    }
    mapT.push((tm * 1000) / (per * rounds));
    unmapT.push((tu * 1000) / (per * rounds));
  }
  const stat = (xs: number[]): [number, number] => {
    const s = xs.slice(2); // drop warm-up batches
    const avg = s.reduce((a, b) => a + b, 0) / s.length;
    const sd = Math.sqrt(s.reduce((a, b) => a + (b - avg) ** 2, 0) / s.length);
    return [avg, sd];
  };
  return { map: stat(mapT), unmap: stat(unmapT) };
}

/** Print the kernel tool's output form for every backend, mode and granule. */
export function report(out: (s: string) => void = (s) => console.log(s)): void {
  out(
    "\ndma_map_benchmark (kernel tool form; map a batch (16 x 1p, 4 x 256p) then unmap it, " +
      "timed per batch, not 100 ns ktime buckets)",
  );
  for (const p of plugins) {
    for (const strict of [true, false]) {
      for (const pages of [1, 256]) {
        const { dma, buf, size } = dmaEnv(p, strict, pages);
        const per = pages === 1 ? 16 : 4;
        const r = measure(dma, buf, size, pages === 1 ? 24 : 12, per, pages === 1 ? 200 : 25);
        const mode = strict ? "strict" : dma.mode === "iommu-lazy" ? "lazy" : "lazy(n/a: strict)";
        for (const line of kernelToolLines(`${p.name} ${mode}`, pages, r.map, r.unmap)) out(line);
      }
    }
  }
}

/**
 * The kernel tool's (tools/dma/dma_map_benchmark.c) output for one run: a
 * `# label` line, its header line, then average map and unmap latency in µs
 * with the standard deviation, one decimal each. `map` and `unmap` are
 * `[average, standard deviation]` in µs.
 */
export function kernelToolLines(
  label: string,
  granule: number,
  map: [number, number],
  unmap: [number, number],
): string[] {
  return [
    `# ${label}`,
    `dma mapping benchmark: threads:1 seconds:0 node:-1 dir:BIDIRECTIONAL granule: ${granule}`,
    `average map latency(us):${map[0].toFixed(1)} standard deviation:${map[1].toFixed(1)}`,
    `average unmap latency(us):${unmap[0].toFixed(1)} standard deviation:${unmap[1].toFixed(1)}`,
  ];
}
