/**
 * Bad input: valid tables with random bits flipped (reserved bits, pointers
 * beyond physical memory, bad PGTT/AW/TT, not-present entries) never make
 * translate or the invalidation queue throw: every request ends in a
 * translation or in a fault with a specification reason code.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ACCESS_EXEC,
  ACCESS_READ,
  ACCESS_WRITE,
  Machine,
  newDmaRequest,
  newTranslateResult,
  NO_PASID,
  Prng,
} from "@iommu-lab/core";
import vtd, { VTD_FAULT_REASONS, type VtdHardware } from "../../../backends/vtd/mod.ts";

const RID = 0x0310;

/** Valid tables for RID 03:02.0 (SM: PASIDs 0..63 share one SS or FS table; legacy: SS). */
function build(m: Machine, sm: boolean, pgtt: number): number[] {
  const w = (a: number, lo: number, hi = 0) => m.mem.write64(a, lo >>> 0, hi);
  const used: number[] = [];
  const ent = (a: number, lo: number, hi = 0) => {
    w(a, lo, hi);
    used.push(a);
  };
  ent(0x100000 + 3 * 16, 0x101000 | 1);
  // 4-level table at 0x104000.. mapping iova 0x0..0x3fffff (one 2M leaf + 4K pages).
  const fs = pgtt === 1 || pgtt === 3;
  const nonLeaf = fs ? 0x27 : 3;
  ent(0x104000, 0x105000 | nonLeaf);
  ent(0x105000, 0x106000 | nonLeaf);
  ent(0x106000, 0x107000 | nonLeaf);
  ent(0x106008, 0x20_0000 | (fs ? 0xa7 : 0x83));
  for (let i = 0; i < 8; i++) ent(0x107000 + i * 8, (0x30_0000 + i * 0x1000) | (fs ? 0x27 : 3));
  if (!sm) {
    ent(0x101000 + 0x10 * 16, 0x104000 | 1);
    ent(0x101000 + 0x10 * 16 + 8, 2 | (5 << 8));
    return used;
  }
  ent(0x101000 + 0x10 * 32, 0x102000 | (0 << 9) | 0x1f);
  ent(0x102000, 0x103000 | 1);
  for (let p = 0; p < 4; p++) {
    const pe = 0x103000 + p * 64;
    if (pgtt === 1) {
      ent(pe, (2 << 2) | (1 << 6) | 1);
      ent(pe + 8, 3);
      ent(pe + 16, 0x104000 | 3); // FLPTPTR, SRE, ERE
    } else if (pgtt === 3) {
      // Nested over an identity-ish second stage: SS root 0x108000 maps GPA 0..2M 1:1 with a 2M leaf
      ent(pe, 0x108000 | (2 << 2) | (3 << 6) | 1);
      ent(pe + 8, 3);
      ent(pe + 16, 0x104000 | 3);
    } else ent(pe, 0x104000 | (2 << 2) | (pgtt << 6) | 1);
  }
  ent(0x108000, 0x109000 | 3);
  ent(0x109000, 0x10a000 | 3);
  ent(0x10a000, 0x0 | 0x83);
  return used;
}

Deno.test("valid tables with random bits flipped give faults with specification reasons, never exceptions", () => {
  const outcomes = new Map<string, number>();
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 2 ** 31 - 1 }),
      fc.boolean(),
      fc.constantFrom(1, 2, 3, 4),
      fc.integer({ min: 0, max: 6 }),
      (seed, sm, pgtt, flips) => {
        const m = new Machine({ paBits: 40, poolBase: 0x1000_0000, poolSize: 0x10_0000 });
        m.pci.add({ name: "d", bus: 3, device: 2, fn: 0, ats: true, pri: true, pasidBits: 8 });
        const hw = vtd.createHardware(m, { checking: seed % 2 === 0 }) as VtdHardware;
        const rng = new Prng(seed);
        const used = build(m, sm, pgtt);
        for (let f = 0; f < flips; f++) {
          const a = used[rng.int(used.length)] + 4 * rng.int(2);
          m.mem.write32(a, (m.mem.read32(a) ^ (1 << rng.int(32))) >>> 0);
        }
        m.bus.write64(hw.mmioBase + 0x20, 0x100000 + (sm ? 0x400 : 0));
        m.bus.write32(hw.mmioBase + 0x18, 0x4000_0000);
        m.bus.write32(hw.mmioBase + 0x18, 0x8000_0000);
        // An invalidation queue that may lie beyond memory, with a random tail.
        m.bus.write64(hw.mmioBase + 0x90, rng.bool() ? 0x1f0000 : 0xff_ffff_f000);
        m.bus.write32(hw.mmioBase + 0x18, 0x8400_0000);
        m.bus.write64(hw.mmioBase + 0x88, rng.int(16) << 4);
        const req = newDmaRequest();
        const out = newTranslateResult();
        for (let k = 0; k < 24; k++) {
          req.rid = rng.bool(0.9) ? RID : rng.int(0x10000);
          req.pasid = rng.bool() ? NO_PASID : rng.int(rng.bool(0.8) ? 4 : 1 << 20);
          req.addr = rng.bool(0.9) ? rng.int(0x40_0000) : rng.int(2 ** 26) * 4096;
          req.access =
            [ACCESS_READ, ACCESS_WRITE, ACCESS_EXEC, ACCESS_READ | ACCESS_WRITE][rng.int(4)];
          req.priv = rng.bool(0.3);
          hw.translate(req, out);
          const key = out.ok ? "ok" : out.fault;
          outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
          if (out.ok) {
            assert.ok(out.span >= 4096);
            assert.ok(out.perm !== 0);
          } else if (
            !out.pending && out.fault !== "PAGE_REQUEST_OVERFLOW" &&
            out.fault !== "PAGE_RESPONSE_INVALID"
          ) {
            assert.ok(
              VTD_FAULT_REASONS[out.faultCode],
              `${out.fault} 0x${out.faultCode.toString(16)}`,
            );
          }
        }
      },
    ),
    { numRuns: 150, seed: 11 },
  );
  // The generator reaches deep into the walk, not only the root entry.
  assert.ok((outcomes.get("ok") ?? 0) > 100, JSON.stringify([...outcomes]));
  assert.ok(outcomes.size >= 10, JSON.stringify([...outcomes]));
});
