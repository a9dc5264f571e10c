/**
 * The hardware model driven from outside: tables written by hand with PhysMem
 * (no driver code), registers set through the bus by specification name, then
 * translate — the path the CLI `translate` command takes.
 */
import assert from "node:assert/strict";
import {
  ACCESS_READ,
  ACCESS_WRITE,
  Machine,
  newDmaRequest,
  newTranslateResult,
  NO_PASID,
} from "@iommu-lab/core";
import vtd, { type VtdHardware } from "../../../backends/vtd/mod.ts";

const RID = 0x0310; // 03:02.0

function machine(opts: Record<string, boolean | number | string> = {}) {
  const m = new Machine({ paBits: 48 });
  const hw = vtd.createHardware(m, opts) as VtdHardware;
  const reg = (name: string, value: number) => {
    const spec = hw.registers.find((r) => r.name === name)!;
    if (spec.width === 64) m.bus.write64(hw.mmioBase + spec.offset, value);
    else m.bus.write32(hw.mmioBase + spec.offset, value);
  };
  const read = (name: string) => {
    const spec = hw.registers.find((r) => r.name === name)!;
    return spec.width === 64
      ? Number(m.bus.read64(hw.mmioBase + spec.offset))
      : m.bus.read32(hw.mmioBase + spec.offset);
  };
  // Values built with `|` above 2^31 come out negative: take them as unsigned 32-bit.
  const q64 = (a: number, v: number) => m.mem.write64n(a, BigInt(v < 0 ? v + 2 ** 32 : v));
  const req = newDmaRequest();
  const out = newTranslateResult();
  const tr = (addr: number, write = false, pasid = NO_PASID) => {
    req.rid = RID;
    req.addr = addr;
    req.pasid = pasid;
    req.access = write ? ACCESS_WRITE : ACCESS_READ;
    hw.translate(req, out);
    return { ...out };
  };
  return { m, hw, reg, read, q64, tr };
}

/** A 4-level second-stage table mapping iova -> pa (4 KiB) at tables from `base`. */
function ssTable(
  q64: (a: number, v: number) => void,
  base: number,
  iova: number,
  pa: number,
  perm = 3,
) {
  const idx = (l: number) => Math.floor(iova / 2 ** (12 + 9 * (l - 1))) % 512;
  q64(base + idx(4) * 8, (base + 0x1000) | 3);
  q64(base + 0x1000 + idx(3) * 8, (base + 0x2000) | 3);
  q64(base + 0x2000 + idx(2) * 8, (base + 0x3000) | 3);
  q64(base + 0x3000 + idx(1) * 8, pa | perm);
}

Deno.test("legacy mode: hand-written root, context and second-stage tables translate", () => {
  const { reg, q64, tr, read } = machine();
  q64(0x100000 + 3 * 16, 0x101000 | 1); // root[bus 3] -> context table
  q64(0x101000 + 0x10 * 16, 0x200000 | 1); // context[devfn 0x10]: P, TT=0, SLPTPTR
  q64(0x101000 + 0x10 * 16 + 8, 2 | (7 << 8)); // AW=2 (4-level), DID 7
  ssTable(q64, 0x200000, 0x7654_3000, 0xabcd_e000);
  reg("RTADDR_REG", 0x100000);
  reg("GCMD_REG", 1 << 30);
  assert.ok(read("GSTS_REG") & (1 << 30));
  reg("GCMD_REG", 1 << 31);
  const r = tr(0x7654_3abc, true);
  assert.equal(r.ok, true);
  assert.equal(r.pa, 0xabcd_eabc);
  assert.equal(tr(0x7654_4000).faultCode, 0x6); // read of a not-present PTE
  assert.equal(tr(0x1000, false, 5).faultCode, 0x31); // PASID request in legacy mode
});

Deno.test("legacy mode: bad AW is an invalid context entry (0x3) and reserved bits give 0xB", () => {
  const { reg, q64, tr } = machine({ sagaw: 0b0100 });
  q64(0x100000 + 3 * 16, 0x101000 | 1);
  q64(0x101000 + 0x10 * 16, 0x200000 | 1);
  q64(0x101000 + 0x10 * 16 + 8, 1); // AW=1 (39-bit) not in SAGAW
  reg("RTADDR_REG", 0x100000);
  reg("GCMD_REG", 1 << 30);
  reg("GCMD_REG", 1 << 31);
  assert.equal(tr(0x1000).faultCode, 0x3);
  q64(0x101000 + 0x10 * 16, 0x200000 | 1 | 0x10); // reserved bit 4
  reg("CCMD_REG", 0); // nothing yet
  // Register-based global context invalidation: ICC | CIRG=1.
  reg("CCMD_REG", 2 ** 63 + 2 ** 61);
  assert.equal(tr(0x1000).faultCode, 0xb);
});

/** Scalable-mode setup: root -> SM context -> PASID dir -> PASID table. */
function smSetup(ctxHi = 0) {
  const env = machine();
  const { q64, reg } = env;
  q64(0x100000 + 3 * 16, 0x101000 | 1); // LCTP (devfn < 128)
  const ce = 0x101000 + 0x10 * 32;
  q64(ce, 0x102000 | (2 << 9) | 8 | 1); // P, PASIDE, PDTS=2, dir
  q64(ce + 8, ctxHi);
  q64(0x102000, 0x103000 | 1); // dir[0] -> PASID table for PASIDs 0..63
  reg("RTADDR_REG", 0x100000 | (1 << 10));
  reg("GCMD_REG", 1 << 30);
  reg("GCMD_REG", 1 << 31);
  const pasidEntry = (pasid: number, w: Uint32Array) =>
    env.m.mem.writeWords(0x103000 + pasid * 64, w);
  return { ...env, pasidEntry };
}

Deno.test("scalable mode: PGTT second-stage only via a hand-written PASID entry", () => {
  const { tr, q64, pasidEntry } = smSetup();
  ssTable(q64, 0x300000, 0x4000, 0x9000_0000);
  const w = new Uint32Array(16);
  w[0] = 0x300000 | (2 << 2) | (2 << 6) | 1;
  w[2] = 9;
  pasidEntry(0, w);
  assert.equal(tr(0x4010).pa, 0x9000_0010);
});

Deno.test("scalable mode: RID_PASID selects the PASID entry of requests without PASID", () => {
  const { tr, q64, pasidEntry } = smSetup(5);
  ssTable(q64, 0x300000, 0x4000, 0x9000_0000);
  const w = new Uint32Array(16);
  w[0] = 0x300000 | (2 << 2) | (2 << 6) | 1;
  w[2] = 9;
  pasidEntry(5, w);
  assert.equal(tr(0x4000).pa, 0x9000_0000);
});

Deno.test("scalable mode: nested translation walks first-stage tables through the second stage", () => {
  const { tr, q64, pasidEntry } = smSetup();
  // Second stage: identity-ish map of GPA page 0x10000..0x14000 -> HPA 0x500000.., and GPA 0x20000 -> HPA 0x9000_0000.
  const ss = 0x300000;
  q64(ss, (ss + 0x1000) | 3);
  q64(ss + 0x1000, (ss + 0x2000) | 3);
  q64(ss + 0x2000, (ss + 0x3000) | 3);
  for (let i = 0; i < 4; i++) q64(ss + 0x3000 + (0x10 + i) * 8, (0x500000 + i * 0x1000) | 3);
  q64(ss + 0x3000 + 0x20 * 8, 0x9000_0000 | 3);
  // First stage at GPA 0x10000 (HPA 0x500000): maps VA 0x7000 -> GPA 0x20000; P|RW|US.
  q64(0x500000, 0x11000 | 7);
  q64(0x501000, 0x12000 | 7);
  q64(0x502000, 0x13000 | 7);
  q64(0x503000 + 7 * 8, 0x20000 | 7);
  const w = new Uint32Array(16);
  w[0] = ss | (2 << 2) | (3 << 6) | 1;
  w[2] = 4;
  w[4] = 0x10000;
  pasidEntry(0, w);
  const r = tr(0x7123, true);
  assert.equal(r.ok, true);
  assert.equal(r.pa, 0x9000_0123);
});

Deno.test("scalable mode: reserved bits, bad AW and FPD", () => {
  const { tr, pasidEntry, read, hw } = smSetup();
  const w = new Uint32Array(16);
  w[0] = (2 << 2) | (2 << 6) | 1 | 0x400;
  pasidEntry(1, w);
  assert.equal(tr(0x1000, false, 1).faultCode, 0x5a);
  w[0] = (4 << 2) | (2 << 6) | 1; // AW 4 is not a valid width
  pasidEntry(2, w);
  assert.equal(tr(0x1000, false, 2).faultCode, 0x5b);
  const recorded = hw.counters.faultsRecorded;
  w[0] = (2 << 2) | (2 << 6) | 1 | 2; // FPD set; SS table empty -> fault not recorded
  pasidEntry(3, w);
  assert.equal(tr(0x1000, false, 3).faultCode, 0x69);
  assert.equal(hw.counters.faultsRecorded, recorded);
  // Fault recording register 0 holds the first fault: FR 0x5a, PASID 1, read.
  const hi = BigInt(read("FRCD_REG_0_HI"));
  assert.equal(Number((hi >> 32n) & 0xffn), 0x5a);
  assert.equal(Number((hi >> 40n) & 0xfffffn), 1);
  assert.equal(Number((hi >> 63n) & 1n), 1);
  assert.ok(read("FSTS_REG") & 2, "PPF set");
});

Deno.test("fault recording overflows into PFO when every record is full", () => {
  const { tr, read } = smSetup();
  for (let i = 0; i < 9; i++) tr(0x1000 * i, false, 10 + i); // PASID entries not present
  assert.ok(read("FSTS_REG") & 1, "PFO set");
});

Deno.test("translation is off until GCMD.TE: requests pass untranslated", () => {
  const { hw, m } = machine();
  const req = newDmaRequest();
  const out = newTranslateResult();
  req.addr = 0x1234;
  hw.translate(req, out);
  assert.equal(out.pa, 0x1234);
  void m;
});

Deno.test("second-stage entries: ignored bits 61:52 are ignored; address bits beyond the host width are reserved", () => {
  const { tr, q64, pasidEntry, m } = smSetup();
  ssTable(q64, 0x300000, 0x4000, 0x9000_0000);
  const w = new Uint32Array(16);
  w[0] = 0x300000 | (2 << 2) | (2 << 6) | 1;
  w[2] = 9;
  pasidEntry(0, w);
  const leaf = 0x303000 + 4 * 8;
  m.mem.write32(leaf + 4, 1 << 23); // bit 55: ignored
  assert.equal(tr(0x4000).pa, 0x9000_0000);
  m.mem.write32(0x303000 + 5 * 8, 0x9000_1003);
  m.mem.write32(0x303000 + 5 * 8 + 4, 0x10000); // bit 48: beyond the 48-bit memory
  assert.equal(tr(0x5000).faultCode, 0x6a);
});
