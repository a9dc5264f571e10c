import assert from "node:assert/strict";
import { Rig } from "./helpers.ts";
import {
  COMMANDS,
  EVENT,
  EVT,
  L1_CD,
  L1_STD,
  PRI_RECORD,
} from "../../../backends/smmuv3/hw/structs.ts";

const LOG = 4;

Deno.test("2-level stream table: an L2 table holds 2^(SPAN-1) STEs; SPAN 0 or an index beyond it is C_BAD_STREAMID", () => {
  const r = new Rig();
  const l1 = r.alloc(8 * 16, 64);
  r.reg64("STRTAB_BASE", l1);
  r.reg32("STRTAB_BASE_CFG", (1 << 16) | (8 << 6) | 12); // 2LVL, SPLIT 8, 2^12 SIDs
  r.enable(LOG);
  const l2 = r.alloc(64 * 4, 64);
  // L1 entry 3 (SIDs 0x300..0x3ff), SPAN 3: 4 STEs
  r.m.mem.writeWords(l1 + 3 * 8, L1_STD.encode({ SPAN: 3, L2Ptr: l2 }));
  r.writeSte(l2 + 2 * 64, { CONFIG: 4 });
  assert.equal(r.tr(0x302, 0x5000).pa, 0x5000);
  assert.equal(r.tr(0x304, 0x5000).fault, "C_BAD_STREAMID");
  assert.equal(r.tr(0x202, 0x5000).fault, "C_BAD_STREAMID");
  assert.equal(r.tr(0x1000, 0x5000).fault, "C_BAD_STREAMID");
});

/** An S1 STE over a CD table of format `fmt` with S1CDMax `cdMax`; returns helpers. */
function cdRig(fmt: number, cdMax: number, s1dss = 2) {
  const r = new Rig();
  const st = r.linearStrtab(4);
  const q = r.enable(LOG);
  const root0 = r.newTable();
  const root7 = r.newTable();
  r.mapPage(root0, 0x1000, 0xa000);
  r.mapPage(root7, 0x1000, 0xb000);
  let ctx = 0;
  const cdOf = (ssid: number): number => {
    if (fmt === 0) return ctx + ssid * 64;
    const leaf = fmt === 1 ? 64 : 1024;
    const l1 = ctx + Math.floor(ssid / leaf) * 8;
    let l2 = r.m.mem.read32(l1) & 0xfffff000;
    if (l2 === 0) {
      l2 = r.alloc(leaf * 64, 4096);
      r.m.mem.writeWords(l1, L1_CD.encode({ V: 1, L2Ptr: l2 }));
    }
    return l2 + (ssid % leaf) * 64;
  };
  ctx = fmt === 0 ? r.alloc(64 << cdMax, 64) : r.alloc(4096, 4096);
  r.writeCd(cdOf(0), { T0SZ: 16, IPS: 5, ASID: 1, TTB0: root0 / 16 });
  r.writeCd(cdOf(cdMax ? 1000 % 2 ** cdMax : 0), { T0SZ: 16, IPS: 5, ASID: 7, TTB0: root7 / 16 });
  r.writeSte(st + 64, { CONFIG: 5, S1FMT: fmt, S1ContextPtr: ctx, S1CDMax: cdMax, S1DSS: s1dss });
  return { r, q };
}

for (
  const [fmt, name] of [[0, "linear"], [1, "2-level 4K leaves"], [2, "2-level 64K leaves"]] as const
) {
  Deno.test(`CD table ${name}: SSIDs select their CD; no-SSID uses CD 0 (S1DSS=SSID0)`, () => {
    const { r } = cdRig(fmt, 10);
    assert.equal(r.tr(1, 0x1000).pa, 0xa000);
    assert.equal(r.tr(1, 0x1000, { ssid: 1000 }).pa, 0xb000);
    assert.equal(r.tr(1, 0x1000, { ssid: 5 }).fault, "C_BAD_CD");
    // SSID 200 lives in L1 entry 3 of a 4K-leaf table, which is not valid
    assert.equal(
      r.tr(1, 0x1000, { ssid: 200 }).fault,
      fmt === 1 ? "C_BAD_SUBSTREAMID" : "C_BAD_CD",
    );
    assert.equal(r.tr(1, 0x1000, { ssid: 0 }).fault, "C_BAD_SUBSTREAMID");
    assert.equal(r.tr(1, 0x1000, { ssid: 1024 }).fault, "C_BAD_SUBSTREAMID");
  });
}

Deno.test("S1DSS: TERMINATE gives F_STREAM_DISABLED, BYPASS passes untagged traffic", () => {
  assert.equal(cdRig(0, 10, 0).r.tr(1, 0x1000).fault, "F_STREAM_DISABLED");
  assert.equal(cdRig(0, 10, 1).r.tr(1, 0x7000).pa, 0x7000);
});

Deno.test("a single-CD STE (S1CDMax 0) refuses a request with an SSID", () => {
  const { r } = cdRig(0, 0);
  assert.equal(r.tr(1, 0x1000, { ssid: 3 }).fault, "C_BAD_SUBSTREAMID");
});

Deno.test("nested: stage-1 tables and CD live in IPA space and are read through stage 2", () => {
  const r = new Rig();
  const st = r.linearStrtab(4);
  const q = r.enable(LOG);
  // Guest-physical layout: IPA = PA + 0x4000_0000 for everything (stage 2 maps IPA x + OFF -> x).
  const OFF = -0x4000_0000;
  const s2root = r.newTable();
  const gAlloc = () => r.alloc(4096); // real PA
  const s1root = gAlloc();
  const cd = gAlloc();
  const data = gAlloc();
  // stage 2: identity+OFF for each page the guest uses (tables, CD, data)
  const s2map = (pa: number) => r.mapPage(s2root, pa - OFF, pa, 0x400 | 0xc0);
  r.writeCd(cd, { T0SZ: 16, IPS: 5, ASID: 3, TTB0: (s1root - OFF) / 16 });
  s2map(cd);
  s2map(s1root);
  // stage-1 table written with IPAs: hand-walk levels 0..3 allocating guest tables
  let table = s1root;
  const va = 0x7f_0000_1000;
  for (let level = 0; level < 3; level++) {
    const idx = Math.floor(va / 2 ** (12 + 9 * (3 - level))) % 512;
    const next = gAlloc();
    s2map(next);
    r.m.mem.write64(table + idx * 8, ((next - OFF) | 3) >>> 0, 0);
    table = next;
  }
  r.m.mem.write64(table + (Math.floor(va / 4096) % 512) * 8, ((data - OFF) | 3 | 0x440) >>> 0, 0);
  s2map(data);
  r.writeSte(st + 64, {
    CONFIG: 7,
    S1ContextPtr: cd - OFF,
    S2VMID: 9,
    S2T0SZ: 16,
    S2SL0: 2,
    S2AA64: 1,
    S2PS: 5,
    S2TTB: s2root / 16,
    S2R: 1,
  });
  const o = r.tr(1, va + 0x44, { write: true });
  assert.equal(o.ok, true);
  assert.equal(o.pa, data + 0x44);
  // A stage-1 table page missing from stage 2 faults at stage 2 (CLASS TTD)
  r.unmapPage(s2root, table - OFF);
  r.cmd(
    Number(r.m.bus.read64(r.hw.mmioBase + 0x90) & 0xffffffffffe0n),
    LOG,
    COMMANDS.CMD_TLBI_S12_VMALL.encode({ OP: 0x28, VMID: 9 }),
  );
  r.events(q.evtq, LOG);
  const o2 = r.tr(1, va + 0x2000);
  assert.equal(o2.fault, "F_TRANSLATION");
  // Recorded as a stage-2 fault on a translation-table fetch, with the table's IPA.
  const d = EVENT.decode(r.events(q.evtq, LOG)[0]);
  assert.equal(d.S2, 1n);
  assert.equal(d.CLASS, 1n);
  assert.equal(d.IPA << 12n, BigInt(table - OFF));
});

Deno.test("stall: a stalled fault waits for CMD_RESUME; RETRY re-walks, ABORT terminates", () => {
  const r = new Rig();
  const st = r.linearStrtab(4);
  const q = r.enable(LOG);
  const cd = r.alloc(64, 64);
  const root = r.newTable();
  r.writeCd(cd, { T0SZ: 16, IPS: 5, ASID: 1, TTB0: root / 16, S: 1 });
  r.writeSte(st + 64, { CONFIG: 5, S1ContextPtr: cd });
  const o = r.tr(1, 0x3000, { write: true });
  assert.equal(o.pending, true);
  const ev = r.events(q.evtq, LOG);
  assert.equal(ev.length, 1);
  const d = EVENT.decode(ev[0]);
  assert.equal(d.Stall, 1n);
  assert.equal(d.EventID, BigInt(EVT.F_TRANSLATION));
  const stag = Number(d.STAG);
  // Still stalled: no new event
  assert.equal(r.tr(1, 0x3000, { write: true }).pending, true);
  assert.equal(r.events(q.evtq, LOG).length, 0);
  // Fix the mapping, resume with RETRY
  r.mapPage(root, 0x3000, 0xc000);
  r.cmd(q.cmdq, LOG, COMMANDS.CMD_RESUME.encode({ OP: 0x44, SID: 1, STAG: stag, Action: 1 }));
  assert.equal(r.tr(1, 0x3000, { write: true }).pa, 0xc000);
  // A second stall aborted
  const o3 = r.tr(1, 0x5000);
  assert.equal(o3.pending, true);
  const stag2 = Number(EVENT.decode(r.events(q.evtq, LOG)[0]).STAG);
  r.cmd(q.cmdq, LOG, COMMANDS.CMD_RESUME.encode({ OP: 0x44, SID: 1, STAG: stag2, Action: 2 }));
  const o4 = r.tr(1, 0x5000);
  assert.equal(o4.ok, false);
  assert.equal(o4.pending, false);
  assert.equal(o4.fault, "STALL_TERMINATED");
});

Deno.test("ATS + PRI: a fault becomes a page request; PRI_RESP success lets the retry translate", () => {
  const r = new Rig();
  r.m.pci.add({ name: "nic", bus: 0, device: 1, fn: 0, ats: true, pri: true, pasidBits: 8 });
  const sid = 8; // 00:01.0
  const st = r.linearStrtab(6);
  const q = r.enable(LOG);
  const cd = r.alloc(64, 64);
  const root = r.newTable();
  r.writeCd(cd, { T0SZ: 16, IPS: 5, ASID: 1, TTB0: root / 16 });
  r.writeSte(st + sid * 64, { CONFIG: 5, S1ContextPtr: cd, EATS: 1 });
  const o = r.tr(sid, 0x9000, { write: true });
  assert.equal(o.pending, true);
  assert.equal(r.events(q.evtq, LOG).length, 0);
  const rec = new Uint32Array(4);
  r.m.mem.readWords(q.priq, rec);
  const d = PRI_RECORD.decode(rec);
  assert.equal(d.StreamID, BigInt(sid));
  assert.equal(d.Write, 1n);
  assert.equal(d.Last, 1n);
  assert.equal(d.PageAddr, 0x9n);
  assert.equal(r.read32("PRIQ_PROD"), 1);
  // Still pending until the response
  assert.equal(r.tr(sid, 0x9000, { write: true }).pending, true);
  r.mapPage(root, 0x9000, 0xd000);
  r.cmd(
    q.cmdq,
    LOG,
    COMMANDS.CMD_PRI_RESP.encode({ OP: 0x41, SID: sid, PRGIndex: Number(d.PRGIndex), Resp: 2 }),
  );
  assert.equal(r.tr(sid, 0x9000, { write: true }).pa, 0xd000);
  // Now in the device's ATC
  assert.equal(r.tr(sid, 0x9000).pa, 0xd000);
  assert.equal(r.hw.counters.atcHits >= 1, true);
  // ATC_INV drops it
  r.unmapPage(root, 0x9000);
  r.cmd(q.cmdq, LOG, COMMANDS.CMD_TLBI_NH_ASID.encode({ OP: 0x11, ASID: 1 }));
  assert.equal(r.tr(sid, 0x9000).pa, 0xd000); // stale in the ATC
  r.cmd(q.cmdq, LOG, COMMANDS.CMD_ATC_INV.encode({ OP: 0x40, SID: sid, Size: 52 }));
  assert.equal(r.tr(sid, 0x9000).pending, true); // a new page request
});

Deno.test("event queue overflow sets EVTQ_PROD.OVFLG and loses records", () => {
  const r = new Rig();
  r.linearStrtab(4);
  r.enable(2); // 4 entries
  for (let i = 0; i < 6; i++) r.tr(3, i * 0x1000);
  const prod = r.read32("EVTQ_PROD");
  assert.equal(prod >>> 31, 1);
  assert.equal(prod & 7, 4); // wrapped once, full
  assert.equal(r.hw.counters.eventsLost, 2);
});

Deno.test("stage-2 faults stall with STE.S2S and record S2=1 with the IPA", () => {
  const r = new Rig();
  const st = r.linearStrtab(4);
  const q = r.enable(LOG);
  const root = r.newTable();
  r.writeSte(st + 64, {
    CONFIG: 6,
    S2VMID: 1,
    S2T0SZ: 16,
    S2SL0: 2,
    S2AA64: 1,
    S2PS: 5,
    S2TTB: root / 16,
    S2S: 1,
    S2R: 1,
  });
  const o = r.tr(1, 0x7000, { write: true });
  assert.equal(o.pending, true);
  const d = EVENT.decode(r.events(q.evtq, LOG)[0]);
  assert.equal(d.S2, 1n);
  assert.equal(d.Stall, 1n);
  assert.equal(d.IPA, 0x7n);
});

Deno.test("stall model 'terminate' never stalls; 'force' stalls even without CD.S", () => {
  for (const [model, pending] of [["terminate", false], ["force", true]] as const) {
    const r = new Rig({ stall: model });
    const st = r.linearStrtab(4);
    r.enable(LOG);
    const cd = r.alloc(64, 64);
    r.writeCd(cd, { T0SZ: 16, IPS: 5, ASID: 1, TTB0: r.newTable() / 16, S: 0 });
    r.writeSte(st + 64, { CONFIG: 5, S1ContextPtr: cd });
    assert.equal(r.tr(1, 0x3000).pending, pending, model);
  }
});

Deno.test("PRI queue overflow sets PRIQ_PROD.OVFLG and the request is lost", () => {
  const r = new Rig();
  r.m.pci.add({ name: "nic", bus: 0, device: 1, fn: 0, ats: true, pri: true });
  const st = r.linearStrtab(6);
  r.enable(1); // 2 entries
  const cd = r.alloc(64, 64);
  r.writeCd(cd, { T0SZ: 16, IPS: 5, ASID: 1, TTB0: r.newTable() / 16 });
  r.writeSte(st + 8 * 64, { CONFIG: 5, S1ContextPtr: cd, EATS: 1 });
  for (let i = 0; i < 3; i++) r.tr(8, 0x10000 * (i + 1));
  assert.equal(r.read32("PRIQ_PROD") >>> 31, 1);
  assert.equal(r.hw.counters.lostPriRecords, 1);
  assert.equal(r.hw.pendingPageRequests.length, 2);
});

Deno.test("S1DSS with stage 2 (Config 0b111): BYPASS skips only stage 1, TERMINATE stops, SSID0 reads CD 0 through stage 2", () => {
  for (const s1dss of [0, 1, 2]) {
    const r = new Rig();
    const st = r.linearStrtab(4);
    r.enable(LOG);
    const OFF = -0x4000_0000; // IPA = PA - OFF
    const s2root = r.newTable();
    const s2map = (pa: number) => r.mapPage(s2root, pa - OFF, pa, 0x400 | 0xc0);
    const data = r.alloc(4096);
    s2map(data);
    const cds = r.alloc(4 * 64, 64); // S1CDMax 2: CDs 0..3, CD 0 and CD 1 left invalid
    s2map(cds);
    r.writeSte(st + 64, {
      CONFIG: 7,
      S1ContextPtr: cds - OFF,
      S1CDMax: 2,
      S1DSS: s1dss,
      S2VMID: 3,
      S2T0SZ: 16,
      S2SL0: 2,
      S2AA64: 1,
      S2PS: 5,
      S2TTB: s2root / 16,
      S2R: 1,
    });
    const noSsid = r.tr(1, data - OFF + 0x10);
    if (s1dss === 1) {
      assert.equal(noSsid.ok, true);
      assert.equal(noSsid.pa, data + 0x10); // stage 2 alone
    } else if (s1dss === 0) assert.equal(noSsid.fault, "F_STREAM_DISABLED");
    else assert.equal(noSsid.fault, "C_BAD_CD"); // CD 0, fetched through stage 2, is invalid
    assert.equal(
      r.tr(1, 0x1000, { ssid: 0 }).fault,
      s1dss === 2 ? "C_BAD_SUBSTREAMID" : "C_BAD_CD",
    );
    assert.equal(r.tr(1, 0x1000, { ssid: 1 }).fault, "C_BAD_CD");
    assert.equal(r.tr(1, 0x1000, { ssid: 4 }).fault, "C_BAD_SUBSTREAMID");
  }
});
