/**
 * Machine-model benchmarks: physical memory accesses, DMA through the direct
 * path and through the example flat IOMMU (IOTLB hits and misses), and
 * IOMMU group computation.
 */

import { bench, do_not_optimize, group } from "mitata";
import { IOMMU_READ, IOMMU_WRITE, Machine, PhysMem } from "@iommu-lab/core";
import flatIommu from "../examples/flat-iommu/mod.ts";

group("phys-mem", () => {
  const m = new PhysMem(48);
  for (let a = 0; a < 64 * 4096; a += 4096) m.write32(a, a);
  let i = 0;
  bench("read32 aligned (64 pages, warm)", () => {
    i = (i + 4100) % (64 * 4096);
    do_not_optimize(m.read32(i & ~3));
  });
  bench("write32 aligned", () => {
    i = (i + 4100) % (64 * 4096);
    m.write32(i & ~3, i);
  });
  bench("read32 unaligned", () => {
    i = (i + 4101) % (64 * 4096 - 8);
    do_not_optimize(m.read32(i | 1));
  });
  const buf = new Uint8Array(4096);
  bench("readBytes 4 KiB across a page boundary", () => {
    do_not_optimize(m.readBytes(0x800, 4096, buf));
  });
});

group("dma", () => {
  const direct = new Machine();
  const d0 = direct.pci.add({ name: "d0", bus: 0, device: 1, fn: 0 });
  const dm = direct.master(d0);
  const data64 = new Uint8Array(64);
  bench("direct write 64 B", () => do_not_optimize(dm.write(0x10_0000, data64)));

  const m = new Machine();
  const nic = m.pci.add({ name: "nic", bus: 1, device: 0, fn: 0 });
  const { driver } = flatIommu.create(m, { iotlb_entries: 64 });
  driver.probeDevice(nic);
  const dom = driver.domainAllocPaging(nic, 0);
  dom.attachDev(nic, null);
  const buf = m.pages.allocPages(8);
  dom.mapPages!(0x100_0000, buf, 4096, 256, IOMMU_READ | IOMMU_WRITE);
  const master = m.master(nic);
  bench("flat-iommu read 64 B, IOTLB hit", () => do_not_optimize(master.read(0x100_0040, 64)));
  let p = 0;
  bench("flat-iommu read 64 B, IOTLB miss (walk)", () => {
    p = (p + 67) & 255; // 256 pages through a 64-entry FIFO: mostly misses
    do_not_optimize(master.read(0x100_0000 + p * 4096, 64));
  });
  const big = new Uint8Array(64 * 1024);
  bench(
    "flat-iommu write 64 KiB (16 translations)",
    () => do_not_optimize(master.write(0x100_0000, big)),
  );
});

group("pci-groups", () => {
  bench("group computation, 4 switches x 8 ports x 1 device", function* () {
    yield () => {
      const m = new Machine();
      let bus = 1;
      for (let s = 0; s < 4; s++) {
        const rp = bus++;
        m.pci.add({
          name: `rp${s}`,
          bus: 0,
          device: s + 1,
          fn: 0,
          kind: "root-port",
          secondaryBus: rp,
        });
        const inner = bus++;
        m.pci.add({
          name: `up${s}`,
          bus: rp,
          device: 0,
          fn: 0,
          kind: "switch-upstream",
          secondaryBus: inner,
        });
        for (let p = 0; p < 8; p++) {
          const leaf = bus++;
          m.pci.add({
            name: `dp${s}.${p}`,
            bus: inner,
            device: p,
            fn: 0,
            kind: "switch-downstream",
            secondaryBus: leaf,
            acs: p % 2 === 0,
          });
          m.pci.add({ name: `ep${s}.${p}`, bus: leaf, device: 0, fn: 0 });
        }
      }
      return do_not_optimize(m.pci.groupKeyOf(m.pci.byName("ep3.7")!));
    };
  });
});
