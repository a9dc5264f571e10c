import assert from "node:assert/strict";
import fc from "fast-check";
import { Machine, newDmaRequest, newTranslateResult } from "@iommu-lab/core";
import plugin, { EVT_NAME, type SmmuV3 } from "../../../backends/smmuv3/mod.ts";

const KNOWN = new Set([
  ...Object.values(EVT_NAME),
  "STE_ABORT",
  "GBPA_ABORT",
  "STALLED",
  "STALL_TERMINATED",
  "PRI_PENDING",
  "PRI_RESP_DENY",
  "PRI_RESP_FAIL",
]);

const word = fc.oneof(fc.constant(0), fc.constant(0xffffffff), fc.nat({ max: 0xffffffff }));

Deno.test("random stream tables, STEs, CDs, descriptors and registers never throw: every failure is an event", () => {
  fc.assert(
    fc.property(
      fc.array(word, { minLength: 64, maxLength: 64 }), // STE/CD/L1 area
      fc.array(word, { minLength: 32, maxLength: 32 }), // table area
      fc.nat({ max: 0x3ffff }), // STRTAB_BASE_CFG
      fc.integer({ min: 0, max: 300 }), // sid
      fc.oneof(fc.constant(-1), fc.nat({ max: 0xfffff })), // ssid
      fc.nat({ max: 2 ** 48 - 1 }), // address
      fc.integer({ min: 1, max: 7 }), // access
      fc.boolean(), // stream table at the random area (else at a random address)
      (area, tables, cfg, sid, ssid, addr, access, atArea) => {
        const m = new Machine({ paBits: 40 });
        const hw = plugin.createHardware(m, {}) as SmmuV3;
        // Areas at fixed places; some pointers in them will point here, most anywhere.
        const AREA = 0x1000;
        for (let i = 0; i < 256; i++) m.mem.writeWords(AREA + i * 256, area);
        for (let i = 0; i < 64; i++) m.mem.writeWords(0x4_0000 + i * 128, tables);
        const base = hw.mmioBase;
        m.bus.write64(base + 0x80, atArea ? BigInt(AREA) : BigInt(area[0]) * 64n * 4096n);
        m.bus.write32(base + 0x88, cfg);
        m.bus.write64(base + 0xa0, BigInt(AREA + 0x10_0000) | 4n);
        m.bus.write32(base + 0x20, 1 | 4);
        const req = newDmaRequest();
        const out = newTranslateResult();
        req.rid = sid;
        req.pasid = ssid;
        req.addr = addr;
        req.access = access;
        for (let k = 0; k < 2; k++) {
          hw.translate(req, out);
          if (!out.ok) assert.ok(KNOWN.has(out.fault), `unknown fault name ${out.fault}`);
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("an event queue beyond memory raises GERROR.EVTQ_ABT_ERR instead of throwing", () => {
  const m = new Machine({ paBits: 40 });
  const hw = plugin.createHardware(m, {}) as SmmuV3;
  m.bus.write64(hw.mmioBase + 0xa0, (1n << 45n) | 4n);
  m.bus.write32(hw.mmioBase + 0x88, 4);
  m.bus.write32(hw.mmioBase + 0x20, 1 | 4);
  const req = newDmaRequest();
  const out = newTranslateResult();
  req.rid = 1;
  hw.translate(req, out);
  assert.equal(out.fault, "C_BAD_STE");
  assert.equal(m.bus.read32(hw.mmioBase + 0x60) & 4, 4);
});
