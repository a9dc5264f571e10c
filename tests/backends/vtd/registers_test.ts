/** Register semantics, driven from outside by specification name. */
import assert from "node:assert/strict";
import {
  ACCESS_READ,
  ACCESS_WRITE,
  Machine,
  newDmaRequest,
  newTranslateResult,
} from "@iommu-lab/core";
import vtd, { PAGE_REQ_DESC, type VtdHardware } from "../../../backends/vtd/mod.ts";

function env(opts: Record<string, boolean | number | string> = {}) {
  const m = new Machine({ paBits: 48 });
  m.pci.add({ name: "acc", bus: 3, device: 2, fn: 0, ats: true, pri: true, pasidBits: 8 });
  const hw = vtd.createHardware(m, opts) as VtdHardware;
  const spec = (n: string) => hw.registers.find((r) => r.name === n)!;
  const wr = (n: string, v: number) =>
    spec(n).width === 64
      ? m.bus.write64(hw.mmioBase + spec(n).offset, v)
      : m.bus.write32(hw.mmioBase + spec(n).offset, v);
  const rd = (n: string) =>
    spec(n).width === 64
      ? Number(m.bus.read64(hw.mmioBase + spec(n).offset))
      : m.bus.read32(hw.mmioBase + spec(n).offset);
  const q64 = (a: number, v: number) => m.mem.write64n(a, BigInt(v));
  const req = newDmaRequest();
  const out = newTranslateResult();
  const tr = (addr: number, write = false, pasid = -1) => {
    req.rid = 0x0310;
    req.pasid = pasid;
    req.addr = addr;
    req.access = write ? ACCESS_WRITE : ACCESS_READ;
    hw.translate(req, out);
    return { ...out };
  };
  return { m, hw, wr, rd, q64, tr };
}

/** Legacy tables at `base`: root -> context (DID 4) -> 4-level SS mapping 0x1000 -> pa. */
function legacy(q64: (a: number, v: number) => void, base: number, pa: number) {
  q64(base + 3 * 16, base + 0x1001);
  q64(base + 0x1000 + 0x10 * 16, base + 0x2001);
  q64(base + 0x1000 + 0x10 * 16 + 8, 2 | (4 << 8));
  q64(base + 0x2000, base + 0x3003);
  q64(base + 0x3000, base + 0x4003);
  q64(base + 0x4000, base + 0x5003);
  q64(base + 0x5000 + 8, pa + 3);
}

Deno.test("RTADDR takes effect only when latched by GCMD.SRTP", () => {
  const { wr, rd, q64, tr } = env();
  legacy(q64, 0x100000, 0xa000_0000);
  legacy(q64, 0x200000, 0xb000_0000);
  wr("RTADDR_REG", 0x100000);
  wr("GCMD_REG", 1 << 30);
  wr("GCMD_REG", 1 << 31);
  assert.ok(rd("GSTS_REG") & (1 << 31));
  assert.equal(tr(0x1000).pa, 0xa000_0000);
  wr("RTADDR_REG", 0x200000); // not latched yet
  wr("CCMD_REG", 2 ** 63 + 2 ** 61); // global context invalidation
  assert.equal(tr(0x1000).pa, 0xa000_0000);
  wr("GCMD_REG", (1 << 31 | 1 << 30) >>> 0);
  wr("CCMD_REG", 2 ** 63 + 2 ** 61);
  // The IOTLB (DID 4) still holds the old page until the IOTLB register invalidates it.
  assert.equal(tr(0x1000).pa, 0xa000_0000);
  wr("IOTLB_REG", 2 ** 63 + 2 * 2 ** 60 + 4 * 2 ** 32); // IVT, IIRG=domain, DID 4
  assert.equal(Math.floor(rd("IOTLB_REG") / 2 ** 63), 0, "IVT clears when done");
  assert.equal(tr(0x1000).pa, 0xb000_0000);
  wr("GCMD_REG", 0); // TE off: DMA is not remapped
  assert.equal(rd("GSTS_REG") & (1 << 31), 0);
  assert.equal(tr(0x1234).pa, 0x1234);
});

Deno.test("FECTL.IM holds the fault event pending (IP) and unmasking delivers it", () => {
  const { m, hw, wr, rd, tr } = env();
  let fired = 0;
  m.irq.register(`${hw.name}:fault`, () => fired++);
  wr("RTADDR_REG", 0x100000); // empty root table
  wr("GCMD_REG", 1 << 30);
  wr("GCMD_REG", 1 << 31);
  wr("FECTL_REG", 0x8000_0000);
  assert.equal(tr(0x1000).faultCode, 0x1);
  m.irq.deliver();
  assert.equal(fired, 0);
  assert.ok(rd("FECTL_REG") & 0x4000_0000, "IP set");
  wr("FECTL_REG", 0);
  m.irq.deliver();
  assert.equal(fired, 1);
  // The record: F set, write-1-to-clear.
  assert.ok(rd("FRCD_REG_0_HI") >= 2 ** 63);
  wr("FRCD_REG_0_HI", 2 ** 63);
  assert.ok(rd("FRCD_REG_0_HI") < 2 ** 63);
  assert.equal(rd("FSTS_REG") & 2, 0, "PPF clears with the last record");
});

Deno.test("the page request queue fills to PRO; the descriptor decodes with the request's fields", () => {
  const { m, wr, rd, q64, tr } = env();
  // SM tables: context with PRE, PASID entry SS-only with an empty table.
  q64(0x100000 + 3 * 16, 0x101001);
  q64(0x101000 + 0x10 * 32, 0x102000 | 0x1f);
  q64(0x102000, 0x103001);
  q64(0x103000 + 2 * 64, 0x104000 | (2 << 2) | (2 << 6) | 1);
  wr("PQA_REG", 0x200000); // PQS 0: 4 KiB = 128 descriptors
  wr("RTADDR_REG", 0x100400);
  wr("GCMD_REG", 1 << 30);
  wr("GCMD_REG", 1 << 31);
  const r = tr(0x5678, true, 2);
  assert.equal(r.pending, true);
  assert.equal(rd("PQT_REG"), 32);
  assert.ok(rd("PRS_REG") & 1, "PPR");
  const w = new Uint32Array(8);
  m.mem.readWords(0x200000, w);
  const d = PAGE_REQ_DESC.decode(w);
  assert.equal(d.RID, 0x310n);
  assert.equal(d.PASID_P, 1n);
  assert.equal(d.PASID, 2n);
  assert.equal(d.WR, 1n);
  assert.equal(d.ADDR, 0x5000n);
  for (let i = 1; i < 127; i++) assert.equal(tr(0x5000 + i * 4096, false, 2).pending, true);
  const full = tr(0x900000, false, 2);
  assert.equal(full.pending, false);
  assert.equal(full.fault, "PAGE_REQUEST_OVERFLOW");
  assert.ok(rd("PRS_REG") & 2, "PRO");
});
