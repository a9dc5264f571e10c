/**
 * SMMUv3 benchmarks: translation through the hardware model (TLB hit on one
 * page, on 64 pages in turn and for 8 devices in turn, stage-1 walk, stage-2
 * walk (no walk cache), a TLB miss that hits the walk cache, an unmapped access with its event record), map/unmap
 * through the driver (4 KiB and 2 MiB, strict TLBI + CMD_SYNC) and
 * command-queue throughput.
 */

import { bench, do_not_optimize, group } from "mitata";
import {
  ACCESS_READ,
  IOMMU_READ,
  IOMMU_WRITE,
  IotlbGather,
  Machine,
  newDmaRequest,
  newTranslateResult,
} from "@iommu-lab/core";
import smmuv3, { type SmmuDomain, type SmmuV3, type SmmuV3Driver } from "../backends/smmuv3/mod.ts";
import { tlbiVa } from "../backends/smmuv3/driver/cmds.ts";

function env(opts: Record<string, boolean | number | string> = {}) {
  const m = new Machine({ paBits: 48 });
  const dev = m.pci.add({ name: "nic", bus: 0, device: 2, fn: 0 });
  const inst = smmuv3.create(m, opts);
  const hw = inst.hw as SmmuV3;
  const drv = inst.driver as SmmuV3Driver;
  drv.probeDevice(dev);
  const d = drv.domainAllocPaging(dev, 0) as SmmuDomain;
  d.attachDev(dev, null);
  return { m, dev, hw, drv, d };
}

for (const stages of ["both", "s2"]) {
  const stage = stages === "both" ? "stage 1" : "stage 2";
  group(`smmuv3 translate (${stage})`, () => {
    const hitEnv = env({ stages });
    hitEnv.d.mapPages(0, 0x8000_0000, 4096, 1024, IOMMU_READ | IOMMU_WRITE);
    const req = newDmaRequest();
    const out = newTranslateResult();
    req.rid = hitEnv.dev.rid;
    req.access = ACCESS_READ;
    req.addr = 0x1000;
    hitEnv.hw.translate(req, out);
    bench(`smmuv3 ${stage}: TLB hit`, () => {
      hitEnv.hw.translate(req, out);
      do_not_optimize(out.pa);
    });
    // Hits on 64 pages in turn: never the same page twice in a row.
    const reqs = newDmaRequest();
    reqs.rid = hitEnv.dev.rid;
    reqs.access = ACCESS_READ;
    for (let p = 0; p < 64; p++) {
      reqs.addr = p * 4096;
      hitEnv.hw.translate(reqs, out);
    }
    let k = 0;
    bench(`smmuv3 ${stage}: TLB hit, 64 pages in turn`, () => {
      reqs.addr = (k++ & 63) * 4096;
      hitEnv.hw.translate(reqs, out);
      do_not_optimize(out.pa);
    });
    // A one-entry TLB and no walk cache: every other address misses and walks all levels.
    const walkEnv = env({ stages, tlb_size: 1, walk_cache: false });
    walkEnv.d.mapPages(0, 0x8000_0000, 4096, 1024, IOMMU_READ | IOMMU_WRITE);
    const req2 = newDmaRequest();
    req2.rid = walkEnv.dev.rid;
    req2.access = ACCESS_READ;
    let i = 0;
    bench(`smmuv3 ${stage}: TLB miss, table walk`, () => {
      req2.addr = (i++ & 1023) * 4096;
      walkEnv.hw.translate(req2, out);
      do_not_optimize(out.pa);
    });
    // The same with the walk cache: the level-2 descriptors of both leaf tables are cached, so
    // each miss reads the leaf descriptor only.
    const wcEnv = env({ stages, tlb_size: 1 });
    wcEnv.d.mapPages(0, 0x8000_0000, 4096, 1024, IOMMU_READ | IOMMU_WRITE);
    const req3 = newDmaRequest();
    req3.rid = wcEnv.dev.rid;
    req3.access = ACCESS_READ;
    let j = 0;
    bench(`smmuv3 ${stage}: TLB miss, walk-cache hit (leaf read only)`, () => {
      req3.addr = (j++ & 1023) * 4096;
      wcEnv.hw.translate(req3, out);
      do_not_optimize(out.pa);
    });
  });
}

group("smmuv3 translate: faults and several devices", () => {
  // Unmapped DMA: a 4-level walk that faults, an F_TRANSLATION record in the event queue
  // (drained every 64 as the evtq thread would, the driver's log cleared).
  const f = env();
  f.d.mapPages(0, 0x8000_0000, 4096, 4, IOMMU_READ | IOMMU_WRITE);
  const fr = newDmaRequest();
  const out = newTranslateResult();
  fr.rid = f.dev.rid;
  fr.access = ACCESS_READ;
  let n = 0;
  bench("smmuv3 stage 1: unmapped DMA (walk fault + event record)", () => {
    fr.addr = 0x10_0000 + (n & 255) * 4096;
    f.hw.translate(fr, out);
    if ((++n & 63) === 0) {
      f.drv.handleEvtq();
      f.drv.faults.eventLog.length = 0;
    }
    do_not_optimize(out.fault);
  });
  // Eight devices on buses 4-11, each with its own domain, translating in turn (TLB and
  // configuration-cache hits, a different StreamID and ASID every time).
  const m = new Machine({ paBits: 48 });
  const inst = smmuv3.create(m, {});
  const hw = inst.hw as SmmuV3;
  const drv = inst.driver as SmmuV3Driver;
  const reqs: ReturnType<typeof newDmaRequest>[] = [];
  for (let i = 0; i < 8; i++) {
    const dev = m.pci.add({ name: `nic${i}`, bus: 4 + i, device: 0, fn: 0 });
    drv.probeDevice(dev);
    const d = drv.domainAllocPaging(dev, 0) as SmmuDomain;
    d.attachDev(dev, null);
    d.mapPages(0, 0x8000_0000, 4096, 16, IOMMU_READ | IOMMU_WRITE);
    const r = newDmaRequest();
    r.rid = dev.rid;
    r.access = ACCESS_READ;
    r.addr = 0x1000;
    hw.translate(r, out);
    reqs.push(r);
  }
  let k = 0;
  bench("smmuv3 stage 1: TLB hit, 8 devices in turn", () => {
    hw.translate(reqs[k++ & 7], out);
    do_not_optimize(out.pa);
  });
});

group("smmuv3 driver map/unmap (strict)", () => {
  const { d } = env();
  const g = new IotlbGather();
  // Keep one page mapped in each region so the leaf tables stay (the leaf path is measured).
  d.mapPages(0x10f_f000, 0x8000_0000, 4096, 1, IOMMU_READ);
  d.mapPages(0x7fe0_0000, 0x8000_0000, 0x20_0000, 1, IOMMU_READ);
  d.mapPages(0x2ff_f000, 0x8000_0000, 4096, 1, IOMMU_READ);
  const sync = (): void => {
    d.iotlbSync(g); // frees the gather's table pages after the invalidation
  };
  bench("smmuv3 map+unmap+sync 4 KiB", () => {
    d.mapPages(0x100_0000, 0x8000_0000, 4096, 1, IOMMU_READ | IOMMU_WRITE);
    g.init();
    d.unmapPages(0x100_0000, 4096, 1, g);
    sync();
  });
  // io-pgtable-arm frees a table only when an unmap covers its span: unmapping the 2 MiB
  // around a lone 4 KiB page frees its leaf table (walk TLBI joins the sync's round).
  bench("smmuv3 map 4 KiB + unmap its 2 MiB span (leaf table freed) + sync", () => {
    d.mapPages(0x80_0000_0000, 0x8000_0000, 4096, 1, IOMMU_READ | IOMMU_WRITE);
    g.init();
    d.unmapPages(0x80_0000_0000, 0x20_0000, 1, g);
    sync();
  });
  bench("smmuv3 map+unmap+sync 2 MiB block", () => {
    d.mapPages(0x4000_0000, 0x8000_0000, 0x20_0000, 1, IOMMU_READ | IOMMU_WRITE);
    g.init();
    d.unmapPages(0x4000_0000, 0x20_0000, 1, g);
    sync();
  });
  bench("smmuv3 map+unmap+sync 64 x 4 KiB (one range TLBI)", () => {
    d.mapPages(0x200_0000, 0x8000_0000, 4096, 64, IOMMU_READ | IOMMU_WRITE);
    g.init();
    d.unmapPages(0x200_0000, 4096, 64, g);
    sync();
  });
});

group("smmuv3 command queue", () => {
  const { drv } = env();
  const cmds: Uint32Array[] = [];
  for (let i = 0; i < 64; i++) {
    cmds.push(tlbiVa(new Uint32Array(4), 0x12, 0, 1, i * 4096, true, 0, 0, 0, 0));
  }
  bench("smmuv3 cmdq: 64 x TLBI_NH_VA + CMD_SYNC", () => {
    drv.cmdq.issue(cmds, true);
  });
  const none: Uint32Array[] = [];
  bench("smmuv3 cmdq: CMD_SYNC alone", () => {
    drv.cmdq.issue(none, true);
  });
});
