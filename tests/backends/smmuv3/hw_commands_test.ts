import assert from "node:assert/strict";
import { Rig } from "./helpers.ts";
import { COMMANDS } from "../../../backends/smmuv3/hw/structs.ts";

const LOG = 6;
const A = 0x1000;
const B = 0x2000;

/** SIDs 1,2: stage 1 (ASID 1, 2; VMID 0); SID 3: stage 2 (VMID 5); SID 4: EL2 stage 1 (ASID 1). */
function world() {
  const r = new Rig();
  const st = r.linearStrtab(4);
  const q = r.enable(LOG);
  const tables: Record<number, number> = {};
  for (const [sid, asid, el2] of [[1, 1, 0], [2, 2, 0], [4, 1, 1]]) {
    const cd = r.alloc(64, 64);
    const root = r.newTable();
    tables[sid] = root;
    r.writeCd(cd, { T0SZ: 16, IPS: 5, ASID: asid, TTB0: root / 16 });
    r.writeSte(st + sid * 64, { CONFIG: 5, S1ContextPtr: cd, STRW: el2 ? 2 : 0 });
  }
  const s2root = r.newTable();
  tables[3] = s2root;
  r.writeSte(st + 3 * 64, {
    CONFIG: 6,
    S2VMID: 5,
    S2T0SZ: 16,
    S2SL0: 2,
    S2TG: 0,
    S2PS: 5,
    S2AA64: 1,
    S2TTB: s2root / 16,
  });
  const map = (sid: number, va: number, pa: number) =>
    r.mapPage(tables[sid], va, pa, sid === 3 ? 0x400 | 0xc0 : 0x440);
  const sids = [1, 2, 3, 4];
  for (const sid of sids) for (const va of [A, B]) map(sid, va, 0x10_0000 + sid * 0x1_0000 + va);
  for (const sid of sids) {
    for (const va of [A, B]) assert.equal(r.tr(sid, va, { priv: true }).ok, true);
  }
  // Remap everything behind the TLB's back.
  for (const sid of sids) for (const va of [A, B]) map(sid, va, 0x20_0000 + sid * 0x1_0000 + va);
  const fresh = () => {
    const out: string[] = [];
    for (const sid of sids) {
      for (const va of [A, B]) {
        if (r.tr(sid, va, { priv: true }).pa >= 0x20_0000) {
          out.push(`${sid}:${va === A ? "A" : "B"}`);
        }
      }
    }
    return out;
  };
  const cmd = (name: string, f: Record<string, number>) =>
    r.cmd(q.cmdq, LOG, COMMANDS[name].encode({ OP: opOf(name), ...f }));
  return { r, fresh, cmd };
}

const OPS: Record<string, number> = {
  CMD_TLBI_NH_ALL: 0x10,
  CMD_TLBI_NH_ASID: 0x11,
  CMD_TLBI_NH_VA: 0x12,
  CMD_TLBI_NH_VAA: 0x13,
  CMD_TLBI_EL2_ALL: 0x20,
  CMD_TLBI_EL2_ASID: 0x21,
  CMD_TLBI_EL2_VA: 0x22,
  CMD_TLBI_S12_VMALL: 0x28,
  CMD_TLBI_S2_IPA: 0x2a,
  CMD_TLBI_NSNH_ALL: 0x30,
  CMD_CFGI_STE: 3,
  CMD_CFGI_STE_RANGE: 4,
  CMD_CFGI_CD: 5,
  CMD_CFGI_CD_ALL: 6,
  CMD_SYNC: 0x46,
};
function opOf(name: string): number {
  return OPS[name];
}

const CASES: [string, Record<string, number>, string[]][] = [
  ["CMD_TLBI_NH_VA", { ASID: 1, VMID: 0, Address: A >> 12 }, ["1:A"]],
  ["CMD_TLBI_NH_VA", { ASID: 1, VMID: 0, Address: A >> 12, TG: 1, NUM: 1, SCALE: 0 }, [
    "1:A",
    "1:B",
  ]],
  ["CMD_TLBI_NH_VAA", { VMID: 0, Address: A >> 12 }, ["1:A", "2:A"]],
  ["CMD_TLBI_NH_ASID", { ASID: 2, VMID: 0 }, ["2:A", "2:B"]],
  ["CMD_TLBI_NH_ALL", { VMID: 0 }, ["1:A", "1:B", "2:A", "2:B"]],
  ["CMD_TLBI_S2_IPA", { VMID: 5, Address: B >> 12 }, ["3:B"]],
  ["CMD_TLBI_S12_VMALL", { VMID: 5 }, ["3:A", "3:B"]],
  ["CMD_TLBI_EL2_VA", { ASID: 1, Address: B >> 12 }, ["4:B"]],
  ["CMD_TLBI_EL2_ASID", { ASID: 1 }, ["4:A", "4:B"]],
  ["CMD_TLBI_EL2_ALL", {}, ["4:A", "4:B"]],
  ["CMD_TLBI_NSNH_ALL", {}, ["1:A", "1:B", "2:A", "2:B", "3:A", "3:B"]],
];

for (const [name, fields, expected] of CASES) {
  Deno.test(`${name} ${JSON.stringify(fields)} invalidates exactly ${expected.join(" ")}`, () => {
    const { fresh, cmd } = world();
    assert.deepEqual(fresh(), []);
    cmd(name, fields);
    assert.deepEqual(fresh(), expected);
  });
}

Deno.test("CFGI_STE, CFGI_STE_RANGE, CFGI_ALL, CFGI_CD, CFGI_CD_ALL drop exactly the cached configs", () => {
  const { r, cmd } = world();
  const c = r.hw.counters;
  const misses = () => {
    const s = c.steMisses, d = c.cdMisses;
    for (const sid of [1, 2, 3, 4]) r.tr(sid, A, { priv: true });
    return [c.steMisses - s, c.cdMisses - d];
  };
  assert.deepEqual(misses(), [0, 0]);
  cmd("CMD_CFGI_STE", { SID: 2, Leaf: 1 });
  assert.deepEqual(misses(), [1, 1]); // refetching an STE drops its CDs
  cmd("CMD_CFGI_CD", { SID: 1, SSID: 0, Leaf: 1 });
  assert.deepEqual(misses(), [0, 1]);
  cmd("CMD_CFGI_CD_ALL", { SID: 4 });
  assert.deepEqual(misses(), [0, 1]);
  cmd("CMD_CFGI_STE_RANGE", { SID: 2, Range: 1 }); // SIDs 0..3
  assert.deepEqual(misses(), [3, 2]);
  cmd("CMD_CFGI_STE_RANGE", { SID: 0, Range: 31 }); // CFGI_ALL
  assert.deepEqual(misses(), [4, 3]);
});

Deno.test("CMD_SYNC with CS=IRQ and an MSI address writes MSIData there", () => {
  const { r, cmd } = world();
  const a = r.alloc(4096);
  cmd("CMD_SYNC", { CS: 1, MSIData: 0x1234_5678, MSIAddress: a / 4 });
  assert.equal(r.m.mem.read32(a), 0x1234_5678);
  assert.equal(r.hw.counters.syncs, 1);
});

Deno.test("an unknown opcode stops the queue with CERROR_ILL in CMDQ_CONS and GERROR.CMDQ_ERR", () => {
  const { r } = world();
  const cmdq = Number(r.m.bus.read64(r.hw.mmioBase + 0x90) & 0xffffffffffe0n);
  r.cmd(cmdq, LOG, new Uint32Array([0x7e, 0, 0, 0]), COMMANDS.CMD_SYNC.encode({ OP: 0x46 }));
  const cons = r.read32("CMDQ_CONS");
  assert.equal((cons >>> 24) & 0x7f, 1);
  assert.equal(cons & 0xfffff, 0);
  assert.equal(r.read32("GERROR") & 1, 1);
  assert.equal(r.hw.counters.syncs, 0);
  // Acknowledge without fixing: processing resumes at the bad command and the error is raised again.
  r.reg32("GERRORN", 1);
  assert.equal((r.read32("GERROR") ^ r.read32("GERRORN")) & 1, 1);
  assert.equal(r.hw.counters.cmdErrors, 2);
  // Fix it (replace with CMD_SYNC as the kernel does) and acknowledge: the queue drains.
  r.m.mem.writeWords(cmdq, COMMANDS.CMD_SYNC.encode({ OP: 0x46 }));
  r.reg32("GERRORN", r.read32("GERROR"));
  assert.equal(r.read32("CMDQ_CONS"), 2);
  assert.equal(r.hw.counters.syncs, 2);
});
