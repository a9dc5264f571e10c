import assert from "node:assert/strict";
import { Machine, newDmaRequest, newTranslateResult } from "@iommu-lab/core";
import plugin, {
  atcInv,
  cfgiAll,
  cfgiCd,
  cfgiCdAll,
  cfgiSte,
  COMMANDS,
  newCmd,
  OP,
  priResp,
  resume,
  type SmmuDomain,
  type SmmuV3,
  type SmmuV3Driver,
  sync,
  tlbiCtx,
  tlbiVa,
} from "../../../backends/smmuv3/mod.ts";

const same = (a: Uint32Array, b: Uint32Array, what: string) =>
  assert.deepEqual([...a], [...b], what);

Deno.test("the driver's command builders agree with the command field tables, bit for bit", () => {
  same(
    cfgiSte(newCmd(), 0x1234, true),
    COMMANDS.CMD_CFGI_STE.encode({ OP: OP.CFGI_STE, SID: 0x1234, Leaf: 1 }),
    "CFGI_STE",
  );
  same(
    cfgiAll(newCmd()),
    COMMANDS.CMD_CFGI_STE_RANGE.encode({ OP: OP.CFGI_STE_RANGE, Range: 31 }),
    "CFGI_ALL",
  );
  same(
    cfgiCd(newCmd(), 7, 0x55, true),
    COMMANDS.CMD_CFGI_CD.encode({ OP: OP.CFGI_CD, SSID: 0x55, SID: 7, Leaf: 1 }).map((w, i) =>
      i === 0 ? w | 0x800 : w
    ),
    "CFGI_CD (SSV)",
  );
  same(
    cfgiCdAll(newCmd(), 9),
    COMMANDS.CMD_CFGI_CD_ALL.encode({ OP: OP.CFGI_CD_ALL, SID: 9 }),
    "CFGI_CD_ALL",
  );
  same(
    tlbiCtx(newCmd(), OP.TLBI_NH_ASID, 3, 0xbeef),
    COMMANDS.CMD_TLBI_NH_ASID.encode({ OP: OP.TLBI_NH_ASID, VMID: 3, ASID: 0xbeef }),
    "NH_ASID",
  );
  same(
    tlbiCtx(newCmd(), OP.TLBI_S12_VMALL, 0xffff, 0),
    COMMANDS.CMD_TLBI_S12_VMALL.encode({ OP: OP.TLBI_S12_VMALL, VMID: 0xffff }),
    "S12_VMALL",
  );
  same(
    tlbiVa(newCmd(), OP.TLBI_NH_VA, 1, 2, 0xf_1234_5000, true, 30, 17, 3, 1),
    COMMANDS.CMD_TLBI_NH_VA.encode({
      OP: OP.TLBI_NH_VA,
      VMID: 1,
      ASID: 2,
      Address: 0xf_1234_5000 / 4096,
      Leaf: 1,
      NUM: 30,
      SCALE: 17,
      TTL: 3,
      TG: 1,
    }),
    "NH_VA",
  );
  same(
    tlbiVa(newCmd(), OP.TLBI_S2_IPA, 4, 0, 0x8_0000_0000, false, 0, 0, 0, 0),
    COMMANDS.CMD_TLBI_S2_IPA.encode({ OP: OP.TLBI_S2_IPA, VMID: 4, Address: 0x8_0000_0000 / 4096 }),
    "S2_IPA",
  );
  same(
    atcInv(newCmd(), 0x108, 3, 0x12_3000, 4),
    COMMANDS.CMD_ATC_INV.encode({
      OP: OP.ATC_INV,
      SSV: 1,
      SSID: 3,
      SID: 0x108,
      Size: 4,
      Address: 0x123,
    }),
    "ATC_INV",
  );
  same(
    priResp(newCmd(), 0x108, 3, true, 0x1ab, 2),
    COMMANDS.CMD_PRI_RESP.encode({
      OP: OP.PRI_RESP,
      SSV: 1,
      SSID: 3,
      SID: 0x108,
      PRGIndex: 0x1ab,
      Resp: 2,
    }),
    "PRI_RESP",
  );
  same(
    resume(newCmd(), 5, 0xabcd, 2),
    COMMANDS.CMD_RESUME.encode({ OP: OP.RESUME, SID: 5, STAG: 0xabcd, Action: 2 }),
    "RESUME",
  );
  same(
    sync(newCmd(), 1, 0x1_2345_6788, 0xfeed),
    COMMANDS.CMD_SYNC.encode({
      OP: OP.CMD_SYNC,
      CS: 1,
      MSH: 3,
      MSIAttr: 0xf,
      MSIData: 0xfeed,
      MSIAddress: 0x1_2345_6788 / 4,
    }),
    "CMD_SYNC",
  );
});

Deno.test("attach that runs out of memory leaves the STE and the ASID space as they were", () => {
  const m = new Machine();
  const dev = m.pci.add({ name: "d", bus: 0, device: 1, fn: 0, pasidBits: 4 });
  const { hw, driver } = plugin.create(m, {});
  const d = driver as SmmuV3Driver;
  d.probeDevice(dev);
  const dom = d.domainAllocPaging(dev, 0) as SmmuDomain;
  m.pages.failAt(1); // the page table's root
  assert.throws(() => dom.attachDev(dev, null), /ENOMEM/);
  const req = newDmaRequest();
  const out = newTranslateResult();
  req.rid = dev.rid;
  (hw as SmmuV3).translate(req, out);
  assert.equal(out.fault, "STE_ABORT");
  m.pages.failAt(0);
  dom.attachDev(dev, null);
  assert.equal(dom.id, 1); // the ASID of the failed attempt was released
  dom.mapPages!(0, 0x9000_0000, 4096, 1, 3);
  (hw as SmmuV3).translate(req, out);
  assert.equal(out.pa, 0x9000_0000);
});

Deno.test("release_device puts the STE back to abort and frees the CD table", () => {
  const m = new Machine();
  const dev = m.pci.add({ name: "d", bus: 0, device: 1, fn: 0, pasidBits: 4 });
  const { hw, driver } = plugin.create(m, {});
  const d = driver as SmmuV3Driver;
  d.probeDevice(dev);
  const dom = d.domainAllocPaging(dev, 0) as SmmuDomain;
  dom.attachDev(dev, null);
  const inUse = m.pages.stats.pagesInUse;
  d.releaseDevice(dev);
  assert.ok(m.pages.stats.pagesInUse < inUse);
  const req = newDmaRequest();
  const out = newTranslateResult();
  req.rid = dev.rid;
  (hw as SmmuV3).translate(req, out);
  assert.equal(out.fault, "STE_ABORT");
  dom.free(); // no longer attached anywhere
});
