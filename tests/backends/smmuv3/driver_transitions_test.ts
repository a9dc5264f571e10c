import assert from "node:assert/strict";
import { Machine, type PciDevice } from "@iommu-lab/core";
import plugin, {
  cdUsed,
  type SmmuDomain,
  type SmmuV3,
  type SmmuV3Driver,
  steUsed,
} from "../../../backends/smmuv3/mod.ts";

/** What the SMMU would read: the STE of `sid` walked from the registers and memory. */
function steWords(m: Machine, hw: SmmuV3, sid: number): Uint32Array {
  const base = Number(m.bus.read64(hw.mmioBase + 0x80) & 0xf_ffff_ffff_ffc0n);
  const cfg = m.bus.read32(hw.mmioBase + 0x88);
  const w = new Uint32Array(16);
  let addr: number;
  if (((cfg >>> 16) & 3) === 1) {
    const split = (cfg >>> 6) & 0x1f;
    const l1 = base + Math.floor(sid / 2 ** split) * 8;
    const l2 = (m.mem.read32(l1 + 4) & 0xfffff) * 2 ** 32 + ((m.mem.read32(l1) & ~0x3f) >>> 0);
    addr = l2 + (sid % 2 ** split) * 64;
  } else addr = base + sid * 64;
  m.mem.readWords(addr, w);
  return w;
}

function cdWords(m: Machine, ste: Uint32Array, ssid: number): Uint32Array | null {
  const cfg = (ste[0] >>> 1) & 7;
  if ((ste[0] & 1) === 0 || (cfg & 1) === 0) return null;
  const ctx = (ste[1] & 0xfffff) * 2 ** 32 + ((ste[0] & ~0x3f) >>> 0);
  const fmt = (ste[0] >>> 4) & 3;
  let addr = ctx + ssid * 64;
  if (fmt === 2) {
    const l1 = ctx + Math.floor(ssid / 1024) * 8;
    const lo = m.mem.read32(l1);
    if ((lo & 1) === 0) return null;
    addr = (m.mem.read32(l1 + 4) & 0xfffff) * 2 ** 32 + ((lo & 0xfffff000) >>> 0) +
      (ssid % 1024) * 64;
  }
  const w = new Uint32Array(16);
  m.mem.readWords(addr, w);
  return w;
}

function view(e: Uint32Array | null, used: (e: Uint32Array, u: Uint32Array) => void): string {
  if (e === null) return "none";
  const u = new Uint32Array(16);
  used(e, u);
  if ((e[0] & u[0] & (used === steUsed ? 1 : 0x80000000)) === 0) return "off";
  return [...e].map((w, i) => (w & u[i]) >>> 0).join(",");
}

Deno.test("driver walks every STE/CD transition; at each CFGI the SMMU sees old, new or invalid, never a mix", () => {
  const m = new Machine();
  const dev: PciDevice = m.pci.add({
    name: "gpu",
    bus: 2,
    device: 0,
    fn: 0,
    pasidBits: 12,
    ats: true,
  });
  const { hw, driver } = plugin.create(m, {});
  const d = driver as SmmuV3Driver;
  const smmu = hw as SmmuV3;
  d.probeDevice(dev);
  const s1a = d.domainAllocPaging(dev, 0) as SmmuDomain;
  const s1b = d.domainAllocPaging(dev, 0) as SmmuDomain;
  const s2 = d.domainAllocPaging(dev, 1 /* NEST_PARENT -> stage 2 */) as SmmuDomain;
  const pasidDom = d.domainAllocPaging(dev, 0) as SmmuDomain;
  assert.equal(s2.stage, "S2");
  const seenSte: string[] = [];
  const seenCd: string[] = [];
  m.trace.listen((e) => {
    if (e.name === "smmuv3_cmdq_cfgi_ste" && e.fields.sid === dev.rid) {
      seenSte.push(view(steWords(m, smmu, dev.rid), steUsed));
    }
    if (e.name === "smmuv3_cmdq_cfgi_cd" && e.fields.sid === dev.rid) {
      seenCd.push(
        `${e.fields.ssid}:` +
          view(cdWords(m, steWords(m, smmu, dev.rid), e.fields.ssid as number), cdUsed),
      );
    }
  });
  const steps: [string, () => void][] = [
    ["blocked", () => d.blockedDomain.attachDev(dev, null)],
    ["identity", () => d.identityDomain.attachDev(dev, null)],
    ["s1a", () => s1a.attachDev(dev, null)],
    ["s2", () => s2.attachDev(dev, null)],
    ["s1b", () => s1b.attachDev(dev, null)],
    ["s1a", () => s1a.attachDev(dev, null)],
    ["pasid 5 -> pasidDom", () => pasidDom.setDevPasid!(dev, 5, null)],
    ["identity (pasid kept)", () => d.identityDomain.attachDev(dev, null)],
    ["blocked (pasid kept)", () => d.blockedDomain.attachDev(dev, null)],
    ["s1b (pasid kept)", () => s1b.attachDev(dev, null)],
    ["pasid 5 -> s1a", () => s1a.setDevPasid!(dev, 5, pasidDom)],
    ["pasid 5 removed", () => d.blockedDomain.setDevPasid!(dev, 5, s1a)],
    ["s2", () => s2.attachDev(dev, null)],
    ["abort", () => d.blockedDomain.attachDev(dev, null)],
    ["identity", () => d.identityDomain.attachDev(dev, null)],
    ["pasid 7 on identity", () => pasidDom.setDevPasid!(dev, 7, null)],
    ["pasid 7 removed", () => d.blockedDomain.setDevPasid!(dev, 7, pasidDom)],
  ];
  let prevSte = view(steWords(m, smmu, dev.rid), steUsed);
  const prevCd = new Map<number, string>();
  const roundsBefore = d.stats.steSyncRounds;
  for (const [name, step] of steps) {
    seenSte.length = 0;
    seenCd.length = 0;
    const cdBefore = new Map<number, string>();
    for (const ssid of [0, 5]) {
      cdBefore.set(ssid, view(cdWords(m, steWords(m, smmu, dev.rid), ssid), cdUsed));
    }
    step();
    const nextSte = view(steWords(m, smmu, dev.rid), steUsed);
    for (const v of seenSte) {
      assert.ok(
        v === prevSte || v === nextSte || v === "off",
        `${name}: SMMU saw a mixed STE ${v}`,
      );
    }
    for (const entry of seenCd) {
      const [ssidText, v] = entry.split(/:(.*)/s);
      const ssid = Number(ssidText);
      const after = view(cdWords(m, steWords(m, smmu, dev.rid), ssid), cdUsed);
      const before = cdBefore.get(ssid) ?? "none";
      assert.ok(
        v === before || v === after || v === "off" || v === "none",
        `${name}: SMMU saw a mixed CD ${ssid} ${v}`,
      );
    }
    prevSte = nextSte;
    void prevCd;
  }
  assert.ok(d.stats.steSyncRounds - roundsBefore >= steps.length);
  // The last PASID gone, the identity RID is back on a plain bypass STE.
  assert.equal((steWords(m, smmu, dev.rid)[0] >>> 1) & 7, 4);
  // Every attach leaves the device translating as its domain says.
  assert.deepEqual(smmu.missed, []);
});
