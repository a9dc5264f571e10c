import assert from "node:assert/strict";
import { Rig } from "./helpers.ts";
import { COMMANDS, EVENT, EVT } from "../../../backends/smmuv3/hw/structs.ts";

const SID = 0x10;
const LOG = 4;

/** A rig with a linear stream table, queues on, and an S1 STE with one CD over a 4K table. */
function s1Rig(opts: Record<string, boolean | number | string> = {}) {
  const r = new Rig(opts);
  const st = r.linearStrtab(8);
  const q = r.enable(LOG);
  const cd = r.alloc(64, 64);
  const root = r.newTable();
  r.writeCd(cd, { T0SZ: 16, TG0: 0, IPS: 5, ASID: 7, TTB0: root / 16, EPD1: 1 });
  r.writeSte(st + SID * 64, { CONFIG: 5, S1ContextPtr: cd, S1CDMax: 0 });
  return { r, st, q, cd, root };
}

Deno.test("SMMU disabled: GBPA bypass passes addresses through; GBPA.ABORT aborts", () => {
  const r = new Rig();
  assert.equal(r.tr(1, 0x1234).pa, 0x1234);
  r.reg32("GBPA", (1 << 31) | (1 << 20));
  const o = r.tr(1, 0x1234);
  assert.equal(o.ok, false);
  assert.equal(o.fault, "GBPA_ABORT");
});

Deno.test("stage-1 STE with a single CD translates through a hand-written 4-level table", () => {
  const { r, root } = s1Rig();
  r.mapPage(root, 0x4000_1000, 0x8765_4000);
  const o = r.tr(SID, 0x4000_1abc);
  assert.equal(o.ok, true);
  assert.equal(o.pa, 0x8765_4abc);
  assert.equal(o.span, 4096);
  // second access hits the TLB
  r.tr(SID, 0x4000_1000);
  assert.equal(r.hw.counters.tlbHits, 1);
  assert.equal(r.hw.counters.steHits, 1);
});

Deno.test("a 2 MiB block maps with span 2 MiB", () => {
  const { r, root } = s1Rig();
  r.mapPage(root, 0x20_0000, 0x4000_0000, 0x440, 0, 0, 2);
  const o = r.tr(SID, 0x2f_f008);
  assert.equal(o.pa, 0x400f_f008);
  assert.equal(o.span, 0x20_0000);
});

Deno.test("unmapped address gives F_TRANSLATION with an event record naming SID and address", () => {
  const { r, q } = s1Rig();
  const o = r.tr(SID, 0x5000, { write: true });
  assert.equal(o.ok, false);
  assert.equal(o.fault, "F_TRANSLATION");
  const ev = r.events(q.evtq, LOG);
  assert.equal(ev.length, 1);
  const d = EVENT.decode(ev[0]);
  assert.equal(d.EventID, BigInt(EVT.F_TRANSLATION));
  assert.equal(d.StreamID, BigInt(SID));
  assert.equal(d.InputAddr, 0x5000n);
  assert.equal(d.RnW, 0n);
  assert.equal(d.CLASS, 2n);
});

Deno.test("read-only page refuses writes with F_PERMISSION; unprivileged access needs AP[1]", () => {
  const { r, root } = s1Rig();
  r.mapPage(root, 0x1000, 0x9000, 0x400 | 0x40 | 0x80); // AP = RO, EL0
  assert.equal(r.tr(SID, 0x1000).ok, true);
  assert.equal(r.tr(SID, 0x1000, { write: true }).fault, "F_PERMISSION");
  r.mapPage(root, 0x2000, 0xa000, 0x400); // privileged only
  assert.equal(r.tr(SID, 0x2000).fault, "F_PERMISSION");
  assert.equal(r.tr(SID, 0x2000, { priv: true }).pa, 0xa000);
});

Deno.test("STE V=0 gives C_BAD_STE and a StreamID beyond the table gives C_BAD_STREAMID", () => {
  const r = new Rig();
  r.linearStrtab(4);
  const q = r.enable(LOG);
  assert.equal(r.tr(3, 0).fault, "C_BAD_STE");
  assert.equal(r.tr(16, 0).fault, "C_BAD_STREAMID");
  const ev = r.events(q.evtq, LOG);
  assert.deepEqual(ev.map((e) => e[0] & 0xff), [EVT.C_BAD_STE, EVT.C_BAD_STREAMID]);
  assert.deepEqual(ev.map((e) => e[1]), [3, 16]);
});

Deno.test("malformed STE config and CD give the architecture's events, not exceptions", () => {
  const { r, st, cd } = s1Rig();
  r.writeSte(st + 1 * 64, { CONFIG: 2 });
  r.writeSte(st + 2 * 64, { CONFIG: 6, S2AA64: 0 });
  assert.equal(r.tr(1, 0).fault, "C_BAD_STE");
  assert.equal(r.tr(2, 0).fault, "C_BAD_STE");
  r.m.mem.writeWords(cd, new Uint32Array(16)); // CD.V = 0
  r.reg32("CMDQ_PROD", r.read32("CMDQ_PROD"));
  assert.equal(r.tr(SID, 0).fault, "C_BAD_CD");
  r.writeCd(cd, { T0SZ: 50, IPS: 5 });
  assert.equal(r.tr(SID, 0).fault, "C_BAD_CD");
});

Deno.test("bypass and abort STEs", () => {
  const { r, st } = s1Rig();
  r.writeSte(st + 1 * 64, { CONFIG: 4 });
  r.writeSte(st + 2 * 64, { CONFIG: 0 });
  assert.equal(r.tr(1, 0xabc000).pa, 0xabc000);
  assert.equal(r.tr(2, 0xabc000).ok, false);
  assert.equal(r.hw.counters.events, 0);
});

Deno.test("stage-2 STE walks with SL0 and concatenated start tables", () => {
  const r = new Rig();
  const st = r.linearStrtab(4);
  r.enable(LOG);
  // 40-bit IPA, 4K granule, SL0=1 (start level 1): 2 concatenated level-1 tables (8 KiB).
  const root = r.alloc(8192, 8192);
  const va = 0x80_4020_3000; // index 512+ at level 1 -> second table
  // hand-walk: level 1 index = va >> 30 (10 bits)
  const l1idx = Math.floor(va / 2 ** 30);
  const l2 = r.alloc(4096), l3 = r.alloc(4096);
  r.m.mem.write64(root + l1idx * 8, l2 | 3, 0);
  r.m.mem.write64(l2 + (Math.floor(va / 2 ** 21) % 512) * 8, l3 | 3, 0);
  r.m.mem.write64(l3 + (Math.floor(va / 4096) % 512) * 8, 0x7000_0000 | 3 | 0x400 | 0xc0, 0);
  r.writeSte(st + 64, {
    CONFIG: 6,
    S2VMID: 3,
    S2T0SZ: 24,
    S2SL0: 1,
    S2TG: 0,
    S2PS: 2,
    S2AA64: 1,
    S2TTB: root / 16,
    S2R: 1,
  });
  const o = r.tr(1, va + 0x10, { write: true });
  assert.equal(o.ok, true);
  assert.equal(o.pa, 0x7000_0010);
});

Deno.test("command encodings match the kernel's bit positions", () => {
  const c = COMMANDS.CMD_TLBI_NH_VA.encode({
    OP: 0x12,
    ASID: 0x1234,
    VMID: 5,
    NUM: 3,
    SCALE: 2,
    Leaf: 1,
    TTL: 3,
    TG: 1,
    Address: 0x12345,
  });
  assert.deepEqual([...c], [
    0x12 | (3 << 12) | (2 << 20),
    5 | (0x1234 << 16),
    (0x12345 << 12 | 1 | (3 << 8) | (1 << 10)) >>> 0,
    0x12345 >>> 20,
  ]);
  const s = COMMANDS.CMD_SYNC.encode({ OP: 0x46, CS: 1, MSIData: 0xdead, MSIAddress: 0x1000 >> 2 });
  assert.deepEqual([...s], [0x46 | (1 << 12), 0xdead, 0x1000, 0]);
});
