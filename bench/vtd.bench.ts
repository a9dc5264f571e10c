/**
 * VT-d benchmarks: translation through the hardware model (IOTLB hit,
 * paging-structure-cache hit, full walk of every structure, context- and
 * PASID-cache hits and misses, an ATS device's device TLB), and map/unmap
 * through the driver (4 KiB and 2 MiB, strict sync).
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
import vtd, {
  QI_CC_DESC,
  QI_PC_DESC,
  type VtdDriver,
  type VtdHardware,
} from "../backends/vtd/mod.ts";

function env(opts: Record<string, boolean | number | string> = {}) {
  const m = new Machine({ paBits: 48 });
  const dev = m.pci.add({ name: "nic", bus: 0, device: 2, fn: 0 });
  const inst = vtd.create(m, opts);
  const hw = inst.hw as VtdHardware;
  const drv = inst.driver as VtdDriver;
  drv.probeDevice(dev);
  const d = drv.domainAllocPaging(dev, 0);
  d.attachDev(dev, null);
  return { m, dev, hw, drv, d };
}

for (const flts of [true, false]) {
  const stage = flts ? "first stage" : "second stage";
  group(`vtd translate (${stage})`, () => {
    const { dev, hw, drv, d } = env({ flts });
    d.mapPages(0, 0x8000_0000, 4096, 1024, IOMMU_READ | IOMMU_WRITE);
    const req = newDmaRequest();
    const out = newTranslateResult();
    req.rid = dev.rid;
    req.access = ACCESS_READ;
    req.addr = 0x1000;
    hw.translate(req, out);
    bench(`vtd ${stage}: IOTLB hit`, () => {
      hw.translate(req, out);
      do_not_optimize(out.pa);
    });
    let i = 0;
    const gtlb = (): void => {
      // Drop the IOTLB, context and PASID caches: every structure is fetched.
      drv.submitRaw(0x11, 0, 0, 0); // context cache, global
      drv.submitRaw(0x37, 0, 0, 0); // PASID cache, global
      drv.submitRaw(0x12, 0, 0, 0); // IOTLB, global (first-stage entries too)
    };
    bench(`vtd ${stage}: full walk (all caches cold, incl. 3 QI invalidations)`, () => {
      gtlb();
      req.addr = (i = (i + 1) % 1024) * 4096;
      hw.translate(req, out);
      do_not_optimize(out.pa);
    });
    bench(`vtd ${stage}: 3 QI invalidations alone (baseline for the line above)`, () => gtlb());
    bench(
      `vtd ${stage}: 1 page-selective QI invalidation alone (baseline for the line below)`,
      () => {
        if (flts) drv.submitRaw(0x20036, 0, 0x40, 0);
        else drv.submitRaw(0x20032, 0, 0x40, 0);
      },
    );
    bench(
      `vtd ${stage}: 1024 IOTLB misses after one global IOTLB invalidation (walk-cache hits)`,
      () => {
        drv.submitRaw(0x12, 0, 0, 0); // IOTLB global: walk caches of this tag dropped too
        for (let p = 0; p < 1024; p++) {
          req.addr = p * 4096;
          hw.translate(req, out);
        }
        do_not_optimize(out.pa);
      },
    );
    // One page in each of 512 different 2 MiB regions: after a global
    // invalidation every translation is a full 4-level walk (no walk-cache hit).
    for (let r = 0; r < 512; r++) {
      d.mapPages(0x10_0000_0000 + r * 0x200000, 0x8000_0000, 4096, 1, IOMMU_READ);
    }
    bench(`vtd ${stage}: 512 full 4-level walks after one global IOTLB invalidation`, () => {
      drv.submitRaw(0x12, 0, 0, 0);
      for (let r = 0; r < 512; r++) {
        req.addr = 0x10_0000_0000 + r * 0x200000;
        hw.translate(req, out);
      }
      do_not_optimize(out.pa);
    });
    let j = 0;
    bench(`vtd ${stage}: IOTLB miss, walk-cache hit (page-selective inv. IH=1 first)`, () => {
      req.addr = (j = (j + 1) % 1024) * 4096;
      // Drop the one leaf from the IOTLB, keep the walk caches (IH=1).
      if (flts) drv.submitRaw(0x20036, 0, (req.addr | 0x40) >>> 0, 0);
      else drv.submitRaw(0x20032, 0, (req.addr | 0x40) >>> 0, 0);
      hw.translate(req, out);
      do_not_optimize(out.pa);
    });
  });

  group(`vtd context and PASID caches (${stage})`, () => {
    const { m, dev, hw, drv, d } = env({ flts });
    const dev2 = m.pci.add({ name: "nic2", bus: 0, device: 3, fn: 0 });
    drv.probeDevice(dev2);
    d.attachDev(dev2, null);
    d.mapPages(0, 0x8000_0000, 4096, 1, IOMMU_READ);
    const req = newDmaRequest();
    const out = newTranslateResult();
    req.access = ACCESS_READ;
    req.addr = 0;
    const rids = [dev.rid, dev2.rid];
    for (const rid of rids) {
      req.rid = rid;
      hw.translate(req, out);
    }
    let k = 0;
    bench(`vtd ${stage}: 2 devices alternating (context + PASID cache hits, IOTLB hit)`, () => {
      req.rid = rids[k ^= 1];
      hw.translate(req, out);
      do_not_optimize(out.pa);
    });
    const cc = QI_CC_DESC.encode({ TYPE: 1, GRAN: 3, SID: dev.rid });
    const pc = QI_PC_DESC.encode({ TYPE: 7, GRAN: 1, DID: d.did, PASID: 0 });
    const inv = (): void => {
      drv.submitRaw(cc[0], cc[1], cc[2], cc[3]); // context cache, device-selective
      drv.submitRaw(pc[0], pc[1], pc[2], pc[3]); // PASID cache, PASID-selective
    };
    bench(`vtd ${stage}: context + PASID cache miss (2 selective QI invalidations first)`, () => {
      inv();
      req.rid = dev.rid;
      hw.translate(req, out);
      do_not_optimize(out.pa);
    });
    bench(
      `vtd ${stage}: the 2 selective QI invalidations alone (baseline for the line above)`,
      inv,
    );
  });
  group(`vtd device TLB (${stage})`, () => {
    // An ATS device: translations fill the device TLB as well as the IOTLB.
    const m = new Machine({ paBits: 48 });
    const dev = m.pci.add({ name: "acc", bus: 3, device: 0, fn: 0, ats: true });
    const inst = vtd.create(m, { flts });
    const hw = inst.hw as VtdHardware;
    const drv = inst.driver as VtdDriver;
    drv.probeDevice(dev);
    const d = drv.domainAllocPaging(dev, 0);
    d.attachDev(dev, null);
    d.mapPages(0, 0x8000_0000, 4096, 1024, IOMMU_READ | IOMMU_WRITE);
    const req = newDmaRequest();
    const out = newTranslateResult();
    req.rid = dev.rid;
    req.access = ACCESS_READ;
    bench(
      `vtd ${stage}: ATS device, 1024 translations after flush_iotlb_all (device-TLB and IOTLB misses)`,
      () => {
        d.flushIotlbAll();
        for (let p = 0; p < 1024; p++) {
          req.addr = p * 4096;
          hw.translate(req, out);
        }
        do_not_optimize(out.pa);
      },
    );
    bench(`vtd ${stage}: ATS device, device-TLB hit`, () => {
      req.addr = 0x1000;
      hw.translate(req, out);
      do_not_optimize(out.pa);
    });
  });

  group(`vtd checking mode (${stage})`, () => {
    // Checking mode compares every cache hit with a fresh walk of memory.
    const { dev, hw, d } = env({ flts, checking: true });
    d.mapPages(0, 0x8000_0000, 4096, 16, IOMMU_READ | IOMMU_WRITE);
    const req = newDmaRequest();
    const out = newTranslateResult();
    req.rid = dev.rid;
    req.access = ACCESS_READ;
    req.addr = 0x1000;
    hw.translate(req, out);
    bench(`vtd ${stage}: IOTLB hit in checking mode (with the fresh walk)`, () => {
      hw.translate(req, out);
      do_not_optimize(out.pa);
    });
  });

  group(`vtd driver map/unmap (${stage})`, () => {
    const { d } = env({ flts });
    const g = new IotlbGather();
    let k = 0;
    bench(`vtd ${stage}: map + unmap + sync 4 KiB`, () => {
      const iova = 0x1000_0000 + (k = (k + 1) % 256) * 4096;
      d.mapPages(iova, 0x8000_0000, 4096, 1, IOMMU_READ | IOMMU_WRITE);
      g.init();
      d.unmapPages(iova, 4096, 1, g);
      d.iotlbSync(g);
    });
    bench(`vtd ${stage}: map + unmap + sync 2 MiB`, () => {
      d.mapPages(0x4000_0000, 0x8000_0000, 0x200000, 1, IOMMU_READ | IOMMU_WRITE);
      g.init();
      d.unmapPages(0x4000_0000, 0x200000, 1, g);
      d.iotlbSync(g);
    });
    bench(`vtd ${stage}: map + unmap + sync 64 x 4 KiB (one gather)`, () => {
      d.mapPages(0x2000_0000, 0x8000_0000, 4096, 64, IOMMU_READ | IOMMU_WRITE);
      g.init();
      d.unmapPages(0x2000_0000, 4096, 64, g);
      d.iotlbSync(g);
    });
  });
}
