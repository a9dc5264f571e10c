import assert from "node:assert/strict";
import { Machine } from "@iommu-lab/core";
import { Rig } from "./helpers.ts";
import {
  CD,
  COMMANDS,
  EVENT,
  EVENTS,
  EVT,
  PRI_RECORD,
} from "../../../backends/smmuv3/hw/structs.ts";
import { SMMUV3_STRUCTURES } from "../../../backends/smmuv3/mod.ts";
import plugin from "../../../backends/smmuv3/mod.ts";

const LOG = 4;
const SID = 1;

function s1(
  opts: Record<string, boolean | number | string> = {},
  cdFields: Record<string, number> = {},
) {
  const r = new Rig(opts);
  const st = r.linearStrtab(4);
  const q = r.enable(LOG);
  const cd = r.alloc(64, 64);
  const root = r.newTable();
  r.writeCd(cd, { T0SZ: 16, IPS: 5, ASID: 1, TTB0: root / 16, ...cdFields });
  r.writeSte(st + SID * 64, { CONFIG: 5, S1ContextPtr: cd });
  return { r, st, q, cd, root };
}

/** Address of the level-3 descriptor of `va` in a 4K table built by Rig.mapPage. */
function leafAddr(r: Rig, root: number, va: number): number {
  let t = root;
  for (let level = 0; level < 3; level++) {
    const idx = Math.floor(va / 2 ** (12 + 9 * (3 - level))) % 512;
    t = r.m.mem.read32(t + idx * 8) & 0xfffff000;
  }
  return t + (Math.floor(va / 4096) % 512) * 8;
}

Deno.test("HTTU: CD.HA sets AF; CD.HD makes a writable-clean (DBM) page dirty by clearing AP[2]", () => {
  const { r, root } = s1({ httu: "dirty" }, { HA: 1, HD: 1 });
  r.mapPage(root, 0x1000, 0x9000, 0x40); // AF = 0
  assert.equal(r.tr(SID, 0x1000).pa, 0x9000);
  assert.equal(r.m.mem.read32(leafAddr(r, root, 0x1000)) & 0x400, 0x400);
  r.mapPage(root, 0x2000, 0xa000, 0x400 | 0x40 | 0x80, 1 << 19); // RO + DBM = writable-clean
  assert.equal(r.tr(SID, 0x2000).ok, true);
  assert.equal(r.m.mem.read32(leafAddr(r, root, 0x2000)) & 0x80, 0x80); // a read leaves it clean
  assert.equal(r.tr(SID, 0x2000, { write: true }).pa, 0xa000);
  assert.equal(r.m.mem.read32(leafAddr(r, root, 0x2000)) & 0x80, 0); // dirty now
});

Deno.test("HTTU not implemented: AF=0 is F_ACCESS, DBM is ignored (F_PERMISSION)", () => {
  const { r, root } = s1({ httu: "none" }, { HA: 1, HD: 1 });
  r.mapPage(root, 0x1000, 0x9000, 0x40);
  assert.equal(r.tr(SID, 0x1000).fault, "F_ACCESS");
  r.mapPage(root, 0x2000, 0xa000, 0x400 | 0x40 | 0x80, 1 << 19);
  assert.equal(r.tr(SID, 0x2000, { write: true }).fault, "F_PERMISSION");
});

Deno.test("an output address beyond CD.IPS gives F_ADDR_SIZE", () => {
  const { r, root } = s1({}, { IPS: 0 }); // 32-bit output
  r.mapPage(root, 0x1000, 0x1_0000_0000);
  assert.equal(r.tr(SID, 0x1000).fault, "F_ADDR_SIZE");
});

Deno.test("an input address beyond T0SZ gives F_TRANSLATION; EPD0 gives F_TRANSLATION", () => {
  const { r, cd, root } = s1({}, { T0SZ: 32 });
  r.mapPage(root, 0x1000, 0x9000);
  assert.equal(r.tr(SID, 0x1_0000_0000).fault, "F_TRANSLATION");
  r.writeCd(cd, { T0SZ: 16, IPS: 5, ASID: 1, EPD0: 1 });
  const q = Number(r.m.bus.read64(r.hw.mmioBase + 0x90) & 0xffffffffffe0n);
  r.cmd(q, LOG, COMMANDS.CMD_CFGI_CD.encode({ OP: 5, SID }));
  assert.equal(r.tr(SID, 0x5000).fault, "F_TRANSLATION");
});

Deno.test("a stream table beyond physical memory gives F_STE_FETCH; a CD beyond it gives F_CD_FETCH", () => {
  const r = new Rig();
  r.reg64("STRTAB_BASE", 2 ** 48 - 64 * 4);
  r.reg32("STRTAB_BASE_CFG", 8);
  r.enable(LOG);
  assert.equal(r.tr(200, 0).fault, "F_STE_FETCH");
  const st = r.linearStrtab(4);
  r.writeSte(st + 64, { CONFIG: 5, S1ContextPtr: 2 ** 48 - 64 });
  r.writeSte(st + 2 * 64, { CONFIG: 5, S1ContextPtr: 2 ** 48 });
  assert.equal(r.tr(1, 0).fault, "C_BAD_CD"); // the last CD in memory exists (zero)
  assert.equal(r.tr(2, 0).fault, "F_CD_FETCH");
});

Deno.test("checking mode reports a skipped CFGI_STE and a skipped CFGI_CD", () => {
  const { r, st, cd, root } = s1();
  r.hw.checking = true;
  r.mapPage(root, 0x1000, 0x9000);
  assert.equal(r.tr(SID, 0x1000).ok, true);
  r.writeCd(cd, { T0SZ: 16, IPS: 5, ASID: 2, TTB0: root / 16 }); // no CFGI_CD
  r.tr(SID, 0x1000);
  assert.equal(r.hw.missed.at(-1)?.cache, "CD");
  r.writeSte(st + SID * 64, { CONFIG: 4 }); // no CFGI_STE
  r.tr(SID, 0x1000);
  assert.ok(r.hw.missed.some((x) => x.cache === "STE" && x.sid === SID));
  assert.equal(r.hw.counters.missedInvalidations, r.hw.missed.length);
});

Deno.test("ATC_INV to a device that never answers fails the next CMD_SYNC with CERROR_ATC_INV_SYNC", () => {
  const { r } = s1();
  r.hw.atcInvTimeout.add(SID);
  const q = Number(r.m.bus.read64(r.hw.mmioBase + 0x90) & 0xffffffffffe0n);
  r.cmd(
    q,
    LOG,
    COMMANDS.CMD_ATC_INV.encode({ OP: 0x40, SID, Size: 52 }),
    COMMANDS.CMD_SYNC.encode({ OP: 0x46 }),
  );
  const cons = r.read32("CMDQ_CONS");
  assert.equal((cons >>> 24) & 0x7f, 3);
  assert.equal(cons & 0xff, 1); // stopped at the CMD_SYNC
  assert.equal((r.read32("GERROR") ^ r.read32("GERRORN")) & 1, 1);
});

Deno.test("EL2 and stage-2 commands are illegal when the SMMU lacks HYP or stage 2", () => {
  const { r } = s1({ hyp: false, stages: "s1" });
  const q = Number(r.m.bus.read64(r.hw.mmioBase + 0x90) & 0xffffffffffe0n);
  r.cmd(q, LOG, COMMANDS.CMD_TLBI_EL2_ALL.encode({ OP: 0x20 }));
  assert.equal((r.read32("CMDQ_CONS") >>> 24) & 0x7f, 1);
});

Deno.test("event records encode and decode against known words", () => {
  const w = EVENT.encode({
    EventID: EVT.F_PERMISSION,
    SSV: 1,
    SubstreamID: 0x123,
    StreamID: 0x800,
    STAG: 0x55,
    Stall: 1,
    PnU: 1,
    RnW: 1,
    S2: 1,
    CLASS: 2,
    InputAddr: 0x1234_5678_9000n,
    IPA: 0xabcde,
  });
  assert.deepEqual([...w], [
    0x13 | 0x800 | (0x123 << 12),
    0x800,
    (0x55 | 0x80000000) >>> 0,
    2 | 8 | 0x80 | 0x200,
    0x5678_9000,
    0x1234,
    0xabcd_e000 >>> 0,
    0,
  ]);
  for (const [name, t] of Object.entries(EVENTS)) {
    const e = t.encode({ EventID: EVT[name as keyof typeof EVT], StreamID: 7 });
    assert.equal(e[0] & 0xff, EVT[name as keyof typeof EVT], name);
    assert.equal(t.decode(e).StreamID, 7n, name);
  }
  const p = PRI_RECORD.encode({
    StreamID: 0x42,
    SubstreamID: 3,
    SSV: 1,
    Read: 1,
    Write: 1,
    Last: 1,
    PRGIndex: 0x1ff,
    PageAddr: 0x12345,
  });
  assert.deepEqual([...p], [
    0x42,
    (3 | (1 << 28) | (1 << 29) | (1 << 30) | (1 << 31)) >>> 0,
    (0x1ff | (0x12345 << 12)) >>> 0,
    0x12345 >>> 20,
  ]);
});

Deno.test("the kernel's stage-1 CD (v6.12 arm_smmu_make_s1_cd) decodes field by field", () => {
  // T0SZ 16, TG0 4K, IRGN/ORGN WBWA, SH IS, EPD1, V, IPS 48-bit, AA64, R, A, ASET, ASID 5, TTB0, MAIR 0xf404ff44
  const words = new Uint32Array([
    0xc000_3510,
    0x0005_e205,
    0x4321_0000,
    0,
    0,
    0,
    0xf404_ff44,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
  ]);
  const d = CD.decode(words);
  assert.equal(d.T0SZ, 16n);
  assert.equal(d.IRGN0, 1n);
  assert.equal(d.ORGN0, 1n);
  assert.equal(d.SH0, 3n);
  assert.equal(d.EPD1, 1n);
  assert.equal(d.V, 1n);
  assert.equal(d.IPS, 5n);
  assert.equal(d.AA64, 1n);
  assert.equal(d.R, 1n);
  assert.equal(d.A, 1n);
  assert.equal(d.ASET, 1n);
  assert.equal(d.ASID, 5n);
  assert.equal(d.TTB0 << 4n, 0x4321_0000n);
  assert.equal(d.MAIR0, 0xf404ff44n);
});

Deno.test("SMMUV3_STRUCTURES names every structure, command and event for inspect decode", () => {
  for (
    const n of [
      "STE",
      "CD",
      "L1_STD",
      "L1_CD",
      "EVENT",
      "PRI_RECORD",
      "CMD_TLBI_NH_VA",
      "CMD_SYNC",
      "CMD_CFGI_STE",
      "CMD_ATC_INV",
      "CMD_PRI_RESP",
      "CMD_RESUME",
      "EVT_F_TRANSLATION",
      "EVT_C_BAD_STE",
      "REG_IDR0",
      "REG_STRTAB_BASE_CFG",
    ]
  ) {
    assert.ok(SMMUV3_STRUCTURES[n], n);
  }
  assert.equal(SMMUV3_STRUCTURES.STE.bytes, 64);
  assert.equal(SMMUV3_STRUCTURES.CMD_SYNC.bytes, 16);
  assert.equal(SMMUV3_STRUCTURES.EVENT.bytes, 32);
});

Deno.test("ID registers reflect the options (IDR0/IDR1/IDR3/IDR5)", () => {
  const m = new Machine();
  const hw = plugin.createHardware(m, {
    stages: "s1",
    ats: false,
    range_inv: false,
    ssidsize: 8,
    sidsize: 16,
    oas: 44,
  });
  const rd = (o: number) => m.bus.read32(hw.mmioBase + o);
  const idr0 = rd(0);
  assert.equal(idr0 & 3, 2); // S1P only
  assert.equal((idr0 >>> 10) & 1, 0); // no ATS
  assert.equal((rd(4) >>> 6) & 0x1f, 8);
  assert.equal(rd(4) & 0x3f, 16);
  assert.equal((rd(0xc) >>> 10) & 1, 0);
  assert.equal(rd(0x14) & 7, 4);
  assert.throws(() => plugin.createHardware(new Machine(), { oas: 47 }), /oas=47/);
});

Deno.test("F_STE_FETCH records the address whose fetch failed", () => {
  const r = new Rig();
  r.reg64("STRTAB_BASE", 2 ** 48 - 64 * 4);
  r.reg32("STRTAB_BASE_CFG", 8);
  const q = r.enable(LOG);
  r.tr(200, 0);
  const ev = r.events(q.evtq, LOG);
  const d = EVENTS.F_STE_FETCH.decode(ev[0]);
  assert.equal(d.EventID, BigInt(EVT.F_STE_FETCH));
  assert.equal(d.FetchAddr << 3n, BigInt(2 ** 48 - 64 * 4 + 200 * 64));
});

Deno.test("CMD_PREFETCH_CONFIG loads the STE and CD into the configuration cache", () => {
  const { r } = s1();
  const q = Number(r.m.bus.read64(r.hw.mmioBase + 0x90) & 0xffffffffffe0n);
  r.cmd(q, LOG, COMMANDS.CMD_PREFETCH_CONFIG.encode({ OP: 1, SID }));
  const misses = r.hw.counters.steMisses;
  r.tr(SID, 0x1000);
  assert.equal(r.hw.counters.steMisses, misses);
});

Deno.test("stage-2 HTTU: STE.S2HA sets AF, STE.S2HD sets S2AP[1] on a DBM page", () => {
  const r = new Rig({ httu: "dirty" });
  const st = r.linearStrtab(4);
  r.enable(LOG);
  const root = r.newTable();
  r.writeSte(st + 64, {
    CONFIG: 6,
    S2VMID: 1,
    S2T0SZ: 16,
    S2SL0: 2,
    S2AA64: 1,
    S2PS: 5,
    S2TTB: root / 16,
    S2HA: 1,
    S2HD: 1,
    S2R: 1,
  });
  r.mapPage(root, 0x1000, 0x9000, 0x40, 1 << 19); // S2AP read-only, AF=0, DBM
  assert.equal(r.tr(1, 0x1000).pa, 0x9000);
  const leaf = leafAddr(r, root, 0x1000);
  assert.equal(r.m.mem.read32(leaf) & 0x400, 0x400);
  assert.equal(r.m.mem.read32(leaf) & 0x80, 0);
  assert.equal(r.tr(1, 0x1000, { write: true }).pa, 0x9000);
  assert.equal(r.m.mem.read32(leaf) & 0x80, 0x80);
});

Deno.test("interrupt lines: CMD_SYNC CS=IRQ without an MSI address, GERROR on a command error, EVTQ on an event", () => {
  const { r, q } = s1();
  r.cmd(q.cmdq, LOG, COMMANDS.CMD_SYNC.encode({ OP: 0x46, CS: 1 }));
  assert.equal(r.m.irq.raised["smmu0:cmdq-sync"], 1);
  r.cmd(q.cmdq, LOG, new Uint32Array([0x7d, 0, 0, 0]));
  assert.equal(r.m.irq.raised["smmu0:gerror"], 1);
  r.tr(SID, 0x7000);
  assert.equal(r.m.irq.raised["smmu0:evtq"], 1);
  // With IRQ_CTRL off, nothing is raised.
  r.reg32("IRQ_CTRL", 0);
  r.tr(SID, 0x8000);
  assert.equal(r.m.irq.raised["smmu0:evtq"], 1);
});
