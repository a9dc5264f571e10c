import assert from "node:assert/strict";
import {
  IOMMU_READ,
  IOMMU_WRITE,
  IotlbGather,
  Machine,
  newDmaRequest,
  newTranslateResult,
  NO_PASID,
  type PciDevice,
} from "@iommu-lab/core";
import plugin, {
  type SmmuDomain,
  SmmuV3,
  SmmuV3Driver,
  STE,
} from "../../../backends/smmuv3/mod.ts";

const RW = IOMMU_READ | IOMMU_WRITE;

function setup(
  opts: Record<string, boolean | number | string> = {},
  devOpts: Partial<{ pasidBits: number; ats: boolean; pri: boolean; canStall: boolean }> = {},
) {
  const m = new Machine();
  const dev = m.pci.add({ name: "dev0", bus: 1, device: 0, fn: 0, ...devOpts });
  const { hw, driver } = plugin.create(m, opts);
  const d = driver as SmmuV3Driver;
  d.probeDevice(dev);
  return { m, dev, hw: hw as SmmuV3, d };
}

function tr(hw: SmmuV3, dev: PciDevice, addr: number, write = false, pasid = NO_PASID) {
  const req = newDmaRequest();
  req.rid = dev.rid;
  req.addr = addr;
  req.pasid = pasid;
  req.access = write ? 3 : 1;
  const out = newTranslateResult();
  hw.translate(req, out);
  return out;
}

Deno.test("probe reads the ID registers: both stages, 2-level tables, range invalidation", () => {
  const { d } = setup();
  assert.equal(d.info.s1, true);
  assert.equal(d.info.s2, true);
  assert.equal(d.info.st2lvl, true);
  assert.equal(d.info.rangeInv, true);
  assert.equal(d.info.sidBits, 32);
  assert.equal(d.pgsizeBitmap % 2 ** 13 >= 4096, true);
});

Deno.test("a probed device with no domain is aborted (STE abort)", () => {
  const { hw, dev } = setup();
  const o = tr(hw, dev, 0x1000);
  assert.equal(o.ok, false);
  assert.equal(o.fault, "STE_ABORT");
});

for (const stage of ["s1", "s2"] as const) {
  Deno.test(`stage-${stage === "s1" ? 1 : 2} domain: attach, map, DMA translates, unmap + sync faults`, () => {
    const { hw, dev, d, m } = setup({ stages: stage === "s1" ? "both" : "s2" });
    const dom = d.domainAllocPaging(dev, 0) as SmmuDomain;
    assert.equal(dom.stage, stage === "s1" ? "S1" : "S2");
    dom.attachDev(dev, null);
    const pa = m.pages.allocPage();
    assert.equal(dom.mapPages!(0x10_0000, pa, 4096, 1, RW), 4096);
    const o = tr(hw, dev, 0x10_0123, true);
    assert.equal(o.ok, true);
    assert.equal(o.pa, pa + 0x123);
    assert.equal(dom.iovaToPhys!(0x10_0123), pa + 0x123);
    const g = new IotlbGather();
    assert.equal(dom.unmapPages!(0x10_0000, 4096, 1, g), 4096);
    dom.iotlbSync!(g);
    const o2 = tr(hw, dev, 0x10_0123);
    assert.equal(o2.ok, false);
    assert.equal(o2.fault, "F_TRANSLATION");
  });
}

Deno.test("identity and blocked domains write bypass and abort STEs", () => {
  const { hw, dev, d } = setup();
  d.identityDomain.attachDev(dev, null);
  assert.equal(tr(hw, dev, 0x5000).pa, 0x5000);
  d.blockedDomain.attachDev(dev, null);
  assert.equal(tr(hw, dev, 0x5000).ok, false);
});

Deno.test("without the unmap's TLBI the stale entry is caught in checking mode", () => {
  const { hw, dev, d, m } = setup();
  hw.checking = true;
  const dom = d.domainAllocPaging(dev, 0) as SmmuDomain;
  dom.attachDev(dev, null);
  const pa = m.pages.allocPage();
  dom.mapPages!(0x20_0000, pa, 4096, 2, RW); // a second page keeps the table alive (no walk flush)
  assert.equal(tr(hw, dev, 0x20_0000).ok, true);
  const g = new IotlbGather();
  dom.unmapPages!(0x20_0000, 4096, 1, g);
  // skip iotlbSync: the TLB still holds the translation
  const o = tr(hw, dev, 0x20_0000);
  assert.equal(o.ok, true);
  assert.equal(hw.missed.length, 1);
  assert.equal(hw.missed[0].cache, "TLB");
  dom.iotlbSync!(g);
  assert.equal(tr(hw, dev, 0x20_0000).ok, false);
  assert.equal(hw.missed.length, 1);
});

Deno.test("range TLBI: one command covers a 64-page unmap when RIL is supported, 64 without", () => {
  for (const ril of [true, false]) {
    const { hw, dev, d, m } = setup({ range_inv: ril });
    const dom = d.domainAllocPaging(dev, 0) as SmmuDomain;
    dom.attachDev(dev, null);
    const pa = m.pages.allocPages(7);
    dom.mapPages!(0x40_0000, pa, 4096, 65, RW); // page 65 keeps the table alive
    for (let i = 0; i < 64; i++) assert.equal(tr(hw, dev, 0x40_0000 + i * 4096).ok, true);
    const before = hw.counters.cmd_TLBI_NH_VA ?? 0;
    const g = new IotlbGather();
    assert.equal(dom.unmapPages!(0x40_0000, 4096, 64, g), 64 * 4096);
    dom.iotlbSync!(g);
    assert.equal((hw.counters.cmd_TLBI_NH_VA ?? 0) - before, ril ? 1 : 64);
    for (let i = 0; i < 64; i++) assert.equal(tr(hw, dev, 0x40_0000 + i * 4096).ok, false);
  }
});

Deno.test("without RIL an unmap past CMDQ_MAX_TLBI_OPS pages invalidates the whole ASID", () => {
  const { hw, dev, d, m } = setup({ range_inv: false });
  const dom = d.domainAllocPaging(dev, 0) as SmmuDomain;
  dom.attachDev(dev, null);
  const pa = m.pages.allocPages(10);
  dom.mapPages!(0x4000_0000, pa, 4096, 514, RW);
  const g = new IotlbGather();
  // 512 pages across two leaf tables that both stay populated (no walk flushes)
  assert.equal(dom.unmapPages!(0x4000_1000, 4096, 512, g), 512 * 4096);
  dom.iotlbSync!(g);
  assert.equal(hw.counters.cmd_TLBI_NH_ASID, 1);
});

Deno.test("PASID attach writes a CD in a 2-level CD table; DMA with the PASID translates through it", () => {
  const { hw, dev, d, m } = setup({}, { pasidBits: 16 });
  const rid = d.domainAllocPaging(dev, 0) as SmmuDomain;
  rid.attachDev(dev, null);
  const p = d.domainAllocPaging(dev, 0) as SmmuDomain;
  p.setDevPasid!(dev, 1234, null);
  const pa1 = m.pages.allocPage();
  const pa2 = m.pages.allocPage();
  rid.mapPages!(0x1000, pa1, 4096, 1, RW);
  p.mapPages!(0x1000, pa2, 4096, 1, RW);
  assert.equal(tr(hw, dev, 0x1000).pa, pa1);
  assert.equal(tr(hw, dev, 0x1000, false, 1234).pa, pa2);
  // detach the PASID: the CD is cleared, DMA with the PASID now faults
  d.blockedDomain.setDevPasid!(dev, 1234, p);
  assert.equal(tr(hw, dev, 0x1000, false, 1234).fault, "C_BAD_CD");
  assert.equal(tr(hw, dev, 0x1000).pa, pa1);
});

Deno.test("an illegal command is reported in CMDQ_CONS.ERR and GERROR, and the driver recovers", () => {
  const { hw, d } = setup();
  const bad = new Uint32Array([0x7f, 0, 0, 0]);
  d.cmdq.issue([bad], true);
  assert.equal(d.cmdq.lastError, 1);
  assert.equal(hw.counters.cmdErrors, 1);
  assert.equal(d.stats.errors, 1);
  // the queue still works
  d.cmdq.issue([], true);
});

Deno.test("STE encode/decode: the kernel's S1 cdtable STE", () => {
  const w = STE.encode({
    V: 1,
    CONFIG: 5,
    S1FMT: 2,
    S1ContextPtr: 0x1234_5000,
    S1CDMax: 16,
    S1DSS: 2,
    EATS: 1,
  });
  assert.equal(w[0], 0x1234_5000 | 0x20 | 0xa | 1);
  assert.equal(w[1], (16 << 27) >>> 0);
  assert.equal(w[2], 2 | (1 << 28));
  const dec = STE.decode(w);
  assert.equal(dec.S1ContextPtr, 0x1234_5000n);
  assert.equal(dec.CONFIG, 5n);
});

Deno.test("a one-page unmap frees no table (io-pgtable-arm keeps empty tables)", () => {
  const { dev, d, m } = setup();
  const dom = d.domainAllocPaging(dev, 0) as SmmuDomain;
  dom.attachDev(dev, null);
  dom.mapPages!(0x8000_0000, 0x9000_0000, 4096, 1, RW);
  const live = m.pages.liveBlocks().length;
  const g = new IotlbGather();
  assert.equal(dom.unmapPages!(0x8000_0000, 4096, 1, g), 4096);
  assert.equal(g.freelist.length, 0);
  dom.iotlbSync!(g);
  assert.equal(m.pages.liveBlocks().length, live);
});

Deno.test("iotlb_sync frees the last-level table an unmap of its whole 2 MiB span removed, after the invalidation", () => {
  const { dev, d, m } = setup();
  const dom = d.domainAllocPaging(dev, 0) as SmmuDomain;
  dom.attachDev(dev, null);
  dom.mapPages!(0x8000_0000, 0x9000_0000, 4096, 2, RW);
  const g = new IotlbGather();
  // the core splits a 2 MiB-aligned 2 MiB unmap into one 2 MiB page: it meets the L3 table entry
  assert.equal(dom.unmapPages!(0x8000_0000, 0x20_0000, 1, g), 0x20_0000);
  const freed = g.freelist.slice();
  assert.equal(freed.length, 1);
  assert.equal(m.pages.isAllocated(freed[0]), true); // not before the sync
  dom.iotlbSync!(g);
  assert.equal(g.freelist.length, 0);
  assert.equal(m.pages.isAllocated(freed[0]), false);
});

Deno.test("without MSIs the driver completes CMD_SYNC with SEV and polls CONS", () => {
  const { hw, dev, d, m } = setup({ msi: false });
  const dom = d.domainAllocPaging(dev, 0) as SmmuDomain;
  dom.attachDev(dev, null);
  const pa = m.pages.allocPage();
  dom.mapPages!(0x1000, pa, 4096, 1, RW);
  assert.equal(tr(hw, dev, 0x1000).pa, pa);
  assert.ok(hw.counters.sev > 0);
});

Deno.test("linear stream table (no 2-level support) and linear CD tables capped at 10 SSID bits (no CD2L)", () => {
  const { hw, dev, d, m } = setup({ st_2lvl: false, cd2l: false, sidsize: 12 }, { pasidBits: 16 });
  assert.equal(d.info.st2lvl, false);
  assert.equal(m.bus.read32(hw.mmioBase + 0x88), 12); // LINEAR, LOG2SIZE 12
  assert.equal(d.maxPasids(dev), 1024);
  const rid = d.domainAllocPaging(dev, 0) as SmmuDomain;
  rid.attachDev(dev, null);
  const p = d.domainAllocPaging(dev, 0) as SmmuDomain;
  p.setDevPasid!(dev, 1023, null);
  const pa = m.pages.allocPage();
  p.mapPages!(0x3000, pa, 4096, 1, RW);
  assert.equal(tr(hw, dev, 0x3000, false, 1023).pa, pa);
  assert.throws(() => p.setDevPasid!(dev, 1024, null), /EINVAL/);
});

Deno.test("a device beyond the StreamID space is refused with ENODEV at probe", () => {
  const m = new Machine();
  const dev = m.pci.add({ name: "far", bus: 0x20, device: 0, fn: 0 });
  const { driver } = plugin.create(m, { sidsize: 8 });
  assert.throws(() => driver.probeDevice(dev), /ENODEV/);
});

Deno.test("stage-only SMMUs: S1-only allocates stage-1 domains; NEST_PARENT needs stage 2", () => {
  const { dev, d } = setup({ stages: "s1" });
  assert.equal((d.domainAllocPaging(dev, 0) as SmmuDomain).stage, "S1");
  assert.throws(() => d.domainAllocPaging(dev, 1), /EOPNOTSUPP/);
});

Deno.test("dirty tracking: HTTU marks written pages dirty; read-and-clear reports exactly those", () => {
  const { hw, dev, d, m } = setup();
  const dom = d.domainAllocPaging(dev, 2 /* IOMMU_HWPT_ALLOC_DIRTY_TRACKING */) as SmmuDomain;
  dom.attachDev(dev, null);
  const pa = m.pages.allocPages(2);
  dom.mapPages!(0x10_0000, pa, 4096, 4, RW);
  const seen: number[] = [];
  const bitmap = {
    iova: 0x10_0000,
    pgsize: 4096,
    setDirty: (iova: number, len: number) => seen.push(iova, len),
  };
  // io-pgtable-arm maps writable pages writable-dirty (DBM, AP[2]=0): the first harvest sees them all.
  dom.readAndClearDirty!(0x10_0000, 4 * 4096, 0, bitmap);
  assert.equal(seen.length, 8);
  dom.flushIotlbAll!(); // as iommufd does after clearing
  seen.length = 0;
  assert.equal(tr(hw, dev, 0x10_0000).ok, true); // a read leaves the page clean
  assert.equal(tr(hw, dev, 0x10_2000, true).ok, true); // HTTU: writable-clean -> dirty
  dom.readAndClearDirty!(0x10_0000, 4 * 4096, 0, bitmap);
  assert.deepEqual(seen, [0x10_2000, 4096]);
  seen.length = 0;
  dom.readAndClearDirty!(0x10_0000, 4 * 4096, 0, bitmap);
  assert.deepEqual(seen, []);
  assert.throws(() => setup({ httu: "access" }).d.domainAllocPaging(dev, 2), /EOPNOTSUPP/);
});

Deno.test("an unmap that frees a table costs one TLBI + CMD_SYNC round, issued at iotlb_sync", () => {
  const { hw, dev, d, m } = setup();
  const dom = d.domainAllocPaging(dev, 0) as SmmuDomain;
  dom.attachDev(dev, null);
  const pa = m.pages.allocPage();
  dom.mapPages!(0x7_0000_0000, pa, 4096, 1, RW); // alone in its L3 table
  assert.equal(tr(hw, dev, 0x7_0000_0000).ok, true);
  // One page: leaf TLBI only, the (now empty) L3 table stays linked.
  let syncs = hw.counters.syncs;
  let tlbi = hw.counters.cmd_TLBI_NH_VA;
  let g = new IotlbGather();
  dom.unmapPages!(0x7_0000_0000, 4096, 1, g);
  assert.equal(hw.counters.syncs, syncs); // nothing yet
  assert.equal(g.freelist.length, 0);
  dom.iotlbSync!(g);
  assert.equal(hw.counters.syncs - syncs, 1);
  assert.equal(hw.counters.cmd_TLBI_NH_VA - tlbi, 1);
  assert.equal(tr(hw, dev, 0x7_0000_0000).ok, false);
  // The whole 2 MiB span: the L3 table is freed; its walk invalidation joins the sync's round.
  dom.mapPages!(0x7_0000_0000, pa, 4096, 1, RW);
  syncs = hw.counters.syncs;
  tlbi = hw.counters.cmd_TLBI_NH_VA;
  g = new IotlbGather();
  dom.unmapPages!(0x7_0000_0000, 0x20_0000, 1, g);
  assert.equal(hw.counters.syncs, syncs);
  assert.equal(g.freelist.length, 1);
  dom.iotlbSync!(g);
  assert.equal(hw.counters.syncs - syncs, 1);
  assert.ok(hw.counters.cmd_TLBI_NH_VA - tlbi >= 1);
  assert.equal(tr(hw, dev, 0x7_0000_0000).ok, false);
});

Deno.test("two SMMUs split the PCI buses: each translates and probes only its own devices", () => {
  const m = new Machine();
  const a = m.pci.add({ name: "a", bus: 1, device: 0, fn: 0 });
  const b = m.pci.add({ name: "b", bus: 0x80, device: 0, fn: 0 });
  const s0 = plugin.create(m, { name: "smmu0", buses: "0-127" });
  const s1 = plugin.create(m, { name: "smmu1", buses: "128-255", base: 0x0a00_0000 });
  assert.equal(m.pci.translatorOf(a), s0.hw);
  assert.equal(m.pci.translatorOf(b), s1.hw);
  s0.driver.probeDevice(a);
  assert.throws(() => s0.driver.probeDevice(b), /ENODEV/);
  s1.driver.probeDevice(b);
  assert.throws(() => plugin.create(new Machine(), { buses: "9-3" }), /buses=9-3/);
});

for (
  const [opts, granule] of [[{ gran4k: false, gran16k: true, gran64k: false }, 16384], [{
    gran4k: false,
    gran16k: false,
    gran64k: true,
  }, 65536]] as const
) {
  for (const stages of ["both", "s2"]) {
    Deno.test(`${granule / 1024}K granule (${stages === "both" ? "stage 1" : "stage 2"}): the walker reads the io-pgtable's tables`, () => {
      const { hw, dev, d, m } = setup({ ...opts, stages });
      const dom = d.domainAllocPaging(dev, 0) as SmmuDomain;
      dom.attachDev(dev, null);
      assert.equal(dom.granule, granule);
      const pa = m.pages.allocPages(5); // 128 KiB, aligned
      dom.mapPages!(0x4000_0000, pa, granule, 1, RW);
      const o = tr(hw, dev, 0x4000_0000 + granule - 8, true);
      assert.equal(o.ok, true, o.fault);
      assert.equal(o.pa, pa + granule - 8);
      assert.equal(o.span, granule);
      const g = new IotlbGather();
      assert.equal(dom.unmapPages!(0x4000_0000, granule, 1, g), granule);
      dom.iotlbSync!(g);
      assert.equal(tr(hw, dev, 0x4000_0000).ok, false);
    });
  }
}

Deno.test("STE and CD writes are traced with their sync rounds", () => {
  const { dev, d, m } = setup();
  m.trace.enabled = true;
  const dom = d.domainAllocPaging(dev, 0) as SmmuDomain;
  dom.attachDev(dev, null);
  const ste = m.trace.events.filter((e) => e.name === "arm_smmu_write_ste");
  const cd = m.trace.events.filter((e) => e.name === "arm_smmu_write_cd");
  assert.equal(ste.length, 1);
  assert.equal(ste[0].fields.config, 5);
  assert.equal(cd.length, 1);
  assert.equal(cd[0].fields.valid, true);
  assert.equal(
    (ste[0].fields.rounds as number) + (cd[0].fields.rounds as number),
    d.stats.steSyncRounds + d.stats.cdSyncRounds,
  );
});
