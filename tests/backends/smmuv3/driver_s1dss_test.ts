/**
 * PASIDs while the RID domain is identity or blocked (arm-smmu-v3 since
 * v6.10): the STE points at the CD table with S1DSS=BYPASS or TERMINATE and
 * CD 0 left invalid; the last PASID gone, the STE is the plain bypass/abort
 * one again. The SMMU applies S1DSS to transactions without a SubstreamID;
 * SubstreamID 0 reads CD 0 (C_BAD_CD when invalid), and is illegal with
 * S1DSS=SSID0 (C_BAD_SUBSTREAMID).
 */
import assert from "node:assert/strict";
import {
  IOMMU_READ,
  IOMMU_WRITE,
  IommuCore,
  Machine,
  newDmaRequest,
  newTranslateResult,
  NO_PASID,
  type PciDevice,
} from "@iommu-lab/core";
import plugin, {
  type SmmuDomain,
  type SmmuV3,
  type SmmuV3Driver,
} from "../../../backends/smmuv3/mod.ts";

const RW = IOMMU_READ | IOMMU_WRITE;
const IOVA = 0x4000_0000;

function setup(devOpts: Partial<{ ats: boolean; pasidBits: number }> = {}) {
  const m = new Machine();
  const dev = m.pci.add({ name: "acc0", bus: 1, device: 0, fn: 0, pasidBits: 8, ...devOpts });
  const { hw, driver } = plugin.create(m, {});
  const d = driver as SmmuV3Driver;
  const smmu = hw as SmmuV3;
  d.probeDevice(dev);
  const pasidDom = d.domainAllocPaging(dev, 0) as SmmuDomain;
  const pa = m.pages.allocPage();
  pasidDom.mapPages!(IOVA, pa, 4096, 1, RW);
  return { m, dev, d, hw: smmu, pasidDom, pa };
}

/** The live STE of `dev`, read as the SMMU would: STRTAB_BASE/CFG, then memory. */
function ste(m: Machine, hw: SmmuV3, sid: number): number[] {
  const base = Number(m.bus.read64(hw.mmioBase + 0x80) & 0xf_ffff_ffff_ffc0n);
  const cfg = m.bus.read32(hw.mmioBase + 0x88);
  let addr = base + sid * 64;
  if (((cfg >>> 16) & 3) === 1) {
    const split = (cfg >>> 6) & 0x1f;
    const l1 = base + Math.floor(sid / 2 ** split) * 8;
    const l2 = (m.mem.read32(l1 + 4) & 0xfffff) * 2 ** 32 + ((m.mem.read32(l1) & ~0x3f) >>> 0);
    addr = l2 + (sid % 2 ** split) * 64;
  }
  const w = new Uint32Array(16);
  m.mem.readWords(addr, w);
  return [...w];
}

/** S1ContextPtr of a live STE. */
function ctxPtr(w: number[]): number {
  return (w[1] & 0xfffff) * 2 ** 32 + ((w[0] & ~0x3f) >>> 0);
}

/** CD `ssid` words of a linear CD table at `table`. */
function cd(m: Machine, table: number, ssid: number): number[] {
  const w = new Uint32Array(16);
  m.mem.readWords(table + ssid * 64, w);
  return [...w];
}

/** A DMA read (or write) through the SMMU; events drained into the driver's log. */
function dma(d: SmmuV3Driver, hw: SmmuV3, dev: PciDevice, addr: number, pasid = NO_PASID) {
  const req = newDmaRequest();
  req.rid = dev.rid;
  req.addr = addr;
  req.pasid = pasid;
  req.access = 1;
  const out = newTranslateResult();
  const before = d.faults.eventLog.length;
  hw.translate(req, out);
  d.handleEvtq();
  const ev = d.faults.eventLog.slice(before);
  return {
    ok: out.ok,
    pa: out.pa,
    fault: out.fault,
    events: ev.map((e) => `${e.name}/ssid=${e.ssid}`),
  };
}

// Known STE words (SMMU defaults: ATTR_TYPES_OVR, stall model "stall", device without stalls,
// so S1STALLD; 8 PASID bits: a linear CD table, S1FMT 0, S1CDMAX 8; STRW NSEL1, S2VMID 0).
const PLAIN_BYPASS = [0x9, 0, 0, 0x1000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const PLAIN_ABORT = [0x1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/** Config=S1 translate (0b101), V, S1FMT 0; word 1: S1CDMAX 8. */
function cdtableSte(table: number, s1dss: number, ats = false): number[] {
  return [
    (0xb | table) >>> 0,
    8 << 27,
    // S1DSS | S1CIR WBRA | S1COR WBRA | S1CSH ISH | S1STALLD | EATS
    (s1dss | 0xd4 | (1 << 27) | (ats ? 1 << 28 : 0)) >>> 0,
    s1dss === 1 ? 0x1000 : 0, // SHCFG INCOMING with S1DSS=BYPASS only
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
  ];
}

Deno.test("identity RID + PASID: CD table STE with S1DSS=BYPASS, CD 0 invalid; DMA without PASID bypasses", () => {
  const { m, dev, d, hw, pasidDom, pa } = setup();
  d.identityDomain.attachDev(dev, null);
  assert.deepEqual(ste(m, hw, dev.rid), PLAIN_BYPASS);
  assert.equal(dma(d, hw, dev, 0x1234_5000).pa, 0x1234_5000);
  // Plain bypass STE: a SubstreamID is illegal.
  assert.deepEqual(dma(d, hw, dev, IOVA, 5).events, ["C_BAD_SUBSTREAMID/ssid=5"]);

  pasidDom.setDevPasid!(dev, 5, null);
  const w = ste(m, hw, dev.rid);
  const table = ctxPtr(w);
  assert.ok(table > 0 && table % 4096 === 0);
  assert.deepEqual(w, cdtableSte(table, 1));
  assert.equal(cd(m, table, 0)[0] >>> 31, 0); // CD 0: V=0
  assert.equal(cd(m, table, 5)[0] >>> 31, 1);
  assert.equal((cd(m, table, 5)[1] >>> 16) & 0xffff, pasidDom.id); // ASID

  // Without a SubstreamID: S1DSS=BYPASS, the address is the physical address.
  assert.deepEqual(dma(d, hw, dev, 0x1234_5000), {
    ok: true,
    pa: 0x1234_5000,
    fault: "",
    events: [],
  });
  // PASID 5 translates through its CD.
  assert.equal(dma(d, hw, dev, IOVA + 0x10, 5).pa, pa + 0x10);
  // SubstreamID 0 reads CD 0, which the kernel leaves invalid: C_BAD_CD.
  assert.deepEqual(dma(d, hw, dev, IOVA, 0).events, ["C_BAD_CD/ssid=0"]);
  // A PASID with no CD, and one beyond S1CDMAX.
  assert.deepEqual(dma(d, hw, dev, IOVA, 6).events, ["C_BAD_CD/ssid=6"]);
  assert.deepEqual(dma(d, hw, dev, IOVA, 256).events, ["C_BAD_SUBSTREAMID/ssid=256"]);
  assert.deepEqual(hw.missed, []);
});

Deno.test("blocked RID + PASID: S1DSS=TERMINATE; DMA without PASID raises F_STREAM_DISABLED", () => {
  const { m, dev, d, hw, pasidDom, pa } = setup();
  d.blockedDomain.attachDev(dev, null);
  assert.deepEqual(ste(m, hw, dev.rid), PLAIN_ABORT);
  // Plain abort STE (Config 0b000): terminated silently, no event.
  const r0 = dma(d, hw, dev, 0x1000);
  assert.equal(r0.ok, false);
  assert.deepEqual(r0.events, []);

  pasidDom.setDevPasid!(dev, 5, null);
  const w = ste(m, hw, dev.rid);
  assert.deepEqual(w, cdtableSte(ctxPtr(w), 0));
  const r1 = dma(d, hw, dev, 0x1000);
  assert.equal(r1.ok, false);
  assert.equal(r1.fault, "F_STREAM_DISABLED");
  assert.deepEqual(r1.events, ["F_STREAM_DISABLED/ssid=-1"]);
  assert.equal(dma(d, hw, dev, IOVA, 5).pa, pa);
  assert.deepEqual(dma(d, hw, dev, IOVA, 0).events, ["C_BAD_CD/ssid=0"]);
});

Deno.test("stage-1 RID + PASID: S1DSS=SSID0; no PASID uses CD 0, SubstreamID 0 is C_BAD_SUBSTREAMID", () => {
  const { m, dev, d, hw, pasidDom, pa } = setup();
  const rid = d.domainAllocPaging(dev, 0) as SmmuDomain;
  const ridPa = m.pages.allocPage();
  rid.mapPages!(IOVA, ridPa, 4096, 1, RW);
  rid.attachDev(dev, null);
  pasidDom.setDevPasid!(dev, 5, null);
  const w = ste(m, hw, dev.rid);
  assert.deepEqual(w, cdtableSte(ctxPtr(w), 2));
  assert.equal((cd(m, ctxPtr(w), 0)[1] >>> 16) & 0xffff, rid.id);
  assert.equal(dma(d, hw, dev, IOVA).pa, ridPa);
  assert.equal(dma(d, hw, dev, IOVA, 5).pa, pa);
  assert.deepEqual(dma(d, hw, dev, IOVA, 0).events, ["C_BAD_SUBSTREAMID/ssid=0"]);
});

Deno.test("identity -> identity+PASID -> identity: hitless, two STE sync rounds each way", () => {
  const { m, dev, d, hw, pasidDom, pa } = setup();
  d.identityDomain.attachDev(dev, null);
  const r0 = d.stats.steSyncRounds;
  const cfgi0 = hw.counters.cmd_CFGI_STE;
  pasidDom.setDevPasid!(dev, 5, null);
  // word 1 (S1DSS, cache attributes: unused by a bypass STE) first, then word 0 in one write.
  assert.equal(d.stats.steSyncRounds - r0, 2);
  assert.equal(hw.counters.cmd_CFGI_STE - cfgi0, 2);
  assert.equal(dma(d, hw, dev, IOVA, 5).pa, pa);
  const r1 = d.stats.steSyncRounds;
  d.blockedDomain.setDevPasid!(dev, 5, pasidDom);
  assert.equal(d.stats.steSyncRounds - r1, 2);
  assert.deepEqual(ste(m, hw, dev.rid), PLAIN_BYPASS);
  assert.equal(dma(d, hw, dev, 0x7000).pa, 0x7000);
  assert.deepEqual(dma(d, hw, dev, IOVA, 5).events, ["C_BAD_SUBSTREAMID/ssid=5"]);
  assert.equal(pasidDom.masters.size, 0);
  assert.deepEqual(hw.missed, []);
});

Deno.test("blocked -> blocked+PASID -> blocked: the abort STE comes back with the last PASID", () => {
  const { m, dev, d, hw, pasidDom } = setup();
  d.blockedDomain.attachDev(dev, null);
  pasidDom.setDevPasid!(dev, 5, null);
  pasidDom.setDevPasid!(dev, 9, null);
  assert.equal(ste(m, hw, dev.rid)[2] & 3, 0);
  d.blockedDomain.setDevPasid!(dev, 5, pasidDom);
  assert.equal(ste(m, hw, dev.rid)[2] & 3, 0); // PASID 9 still there
  d.blockedDomain.setDevPasid!(dev, 9, pasidDom);
  assert.deepEqual(ste(m, hw, dev.rid), PLAIN_ABORT);
  assert.equal(dma(d, hw, dev, IOVA, 9).ok, false);
});

Deno.test("replacing the RID domain while a PASID stays attached keeps the PASID translating", () => {
  const { m, dev, d, hw, pasidDom, pa } = setup();
  const rid = d.domainAllocPaging(dev, 0) as SmmuDomain;
  const ridPa = m.pages.allocPage();
  rid.mapPages!(0x10_0000, ridPa, 4096, 1, RW);
  d.identityDomain.attachDev(dev, null);
  pasidDom.setDevPasid!(dev, 5, null);
  const table = ctxPtr(ste(m, hw, dev.rid));
  const steps: [string, () => void, number, (pa: number) => void][] = [
    // identity -> blocked: only S1DSS and SHCFG change (word 1): one round.
    ["blocked", () => d.blockedDomain.attachDev(dev, null), 0, () => {
      assert.deepEqual(dma(d, hw, dev, 0x10_0000).events, ["F_STREAM_DISABLED/ssid=-1"]);
    }],
    ["identity", () => d.identityDomain.attachDev(dev, null), 1, () => {
      assert.equal(dma(d, hw, dev, 0x10_0000).pa, 0x10_0000);
    }],
    // identity -> stage 1: CD 0 written, then S1DSS=SSID0.
    ["stage 1", () => rid.attachDev(dev, null), 2, () => {
      assert.equal(dma(d, hw, dev, 0x10_0000).pa, ridPa);
    }],
    // stage 1 -> blocked: S1DSS=TERMINATE first, then CD 0 cleared.
    ["blocked", () => d.blockedDomain.attachDev(dev, null), 0, () => {
      assert.equal(cd(m, table, 0)[0] >>> 31, 0);
      assert.deepEqual(dma(d, hw, dev, 0x10_0000).events, ["F_STREAM_DISABLED/ssid=-1"]);
    }],
  ];
  for (const [name, step, s1dss, check] of steps) {
    const r = d.stats.steSyncRounds;
    step();
    const w = ste(m, hw, dev.rid);
    assert.deepEqual(w, cdtableSte(table, s1dss), name);
    assert.equal(d.stats.steSyncRounds - r, 1, `${name}: one STE sync round`);
    check(pa);
    assert.equal(dma(d, hw, dev, IOVA, 5).pa, pa, `${name}: PASID 5 still translates`);
  }
  assert.deepEqual(hw.missed, []);
});

Deno.test("PASIDs in use: a stage-2 or nested RID domain is refused with EBUSY, nothing changes", () => {
  const { m, dev, d, hw, pasidDom, pa } = setup();
  d.identityDomain.attachDev(dev, null);
  pasidDom.setDevPasid!(dev, 5, null);
  const before = ste(m, hw, dev.rid);
  const s2 = d.domainAllocPaging(dev, 1 /* NEST_PARENT */) as SmmuDomain;
  assert.throws(
    () => s2.attachDev(dev, null),
    (e: Error & { errno?: string }) => e.errno === "EBUSY",
  );
  const nested = d.domainAllocNested(dev, s2, 0, { ste: [0, 0, 0, 0] });
  assert.throws(
    () => nested.attachDev(dev, null),
    (e: Error & { errno?: string }) => e.errno === "EBUSY",
  );
  assert.deepEqual(ste(m, hw, dev.rid), before);
  assert.equal(dma(d, hw, dev, IOVA, 5).pa, pa);
  // And the other way: a PASID on a master whose RID is stage 2 is EINVAL.
  d.blockedDomain.setDevPasid!(dev, 5, pasidDom);
  s2.attachDev(dev, null);
  assert.throws(
    () => pasidDom.setDevPasid!(dev, 6, null),
    (e: Error & { errno?: string }) => e.errno === "EINVAL",
  );
});

Deno.test("ATS master: the CD table STE enables ATS (EATS=TRANS) even for an identity RID", () => {
  const { m, dev, d, hw, pasidDom } = setup({ ats: true });
  d.identityDomain.attachDev(dev, null);
  assert.equal((ste(m, hw, dev.rid)[2] >>> 28) & 3, 0);
  pasidDom.setDevPasid!(dev, 5, null);
  const w = ste(m, hw, dev.rid);
  assert.deepEqual(w, cdtableSte(ctxPtr(w), 1, true));
});

Deno.test("the identity domain has no set_dev_pasid: iommu_attach_device_pasid answers EOPNOTSUPP", () => {
  const m = new Machine();
  const dev = m.pci.add({ name: "acc0", bus: 1, device: 0, fn: 0, pasidBits: 8 });
  const { driver } = plugin.create(m, {});
  const core = new IommuCore(m);
  core.registerDriver(driver);
  const d = driver as SmmuV3Driver;
  assert.equal(d.identityDomain.setDevPasid, undefined);
  assert.equal(typeof d.blockedDomain.setDevPasid, "function");
  assert.throws(
    () => core.attachDevicePasid(d.identityDomain, dev, 1),
    (e: Error & { errno?: string }) => e.errno === "EOPNOTSUPP",
  );
});
