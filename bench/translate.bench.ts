/**
 * Translation throughput on every built-in backend through its hardware
 * model: IOTLB hits, IOTLB misses (after a flush-all, walk caches as the
 * model keeps them), and invalidation-queue round trips (flush-all = one
 * invalidation command plus a sync/wait through the modeled queue).
 */

import { bench, do_not_optimize, group } from "mitata";
import { ACCESS_READ, newDmaRequest, newTranslateResult, NO_PASID } from "@iommu-lab/core";
import { DmaDirection } from "@iommu-lab/dma-api";
import { availableBackends } from "../cli/backends.ts";
import { dmaEnv } from "./dma.bench.ts";

const N = 1024;

for (const p of await availableBackends()) {
  group(`translate ${p.name}`, () => {
    const { dma, buf, hw, core, dev, m } = dmaEnv(p, true, 1);
    const iovas = new Float64Array(N);
    const pool = m.pages.allocPages(10); // 1024 pages
    for (let i = 0; i < N; i++) {
      iovas[i] = dma.dmaMapSingle(pool + i * 4096, 4096, DmaDirection.BIDIRECTIONAL);
    }
    const hit = dma.dmaMapSingle(buf, 4096, DmaDirection.BIDIRECTIONAL);
    const domain = core.defaultDomainOf(dev)!;
    const req = newDmaRequest();
    const out = newTranslateResult();
    req.rid = m.pci.dmaRidOf(dev);
    req.pasid = NO_PASID;
    req.access = ACCESS_READ;
    req.addr = hit;
    hw.translate(req, out);
    if (!out.ok) throw new Error(`${p.name}: bench setup translation failed: ${out.fault}`);
    bench(`${p.name} IOTLB hit`, () => {
      req.addr = hit;
      hw.translate(req, out);
      do_not_optimize(out.pa);
    });
    bench(`${p.name} IOTLB miss ×${N} (after flush-all)`, () => {
      core.flushIotlbAll(domain);
      for (let i = 0; i < N; i++) {
        req.addr = iovas[i];
        hw.translate(req, out);
      }
      do_not_optimize(out.pa);
    });
    bench(`${p.name} queue: flush_iotlb_all (inv + sync)`, () => {
      core.flushIotlbAll(domain);
    });
  });
}
