/**
 * Random DMA and random IOTLB / PASID-IOTLB invalidations, compared with a
 * plain reference of what each descriptor removes: after every step the
 * IOTLB holds exactly the reference's entries.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_READ, NO_PASID } from "@iommu-lab/core";
import { QI_EIOTLB_DESC, QI_IOTLB_DESC } from "../../../backends/vtd/mod.ts";
import { setup, xlate } from "./helpers.ts";

type Step =
  | { t: "dma"; who: number; page: number }
  | { t: "iotlb"; gran: number; did: number; page: number; am: number }
  | { t: "piotlb"; gran: number; did: number; pasid: number; page: number; am: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant("dma" as const),
      who: fc.integer({ min: 0, max: 2 }),
      page: fc.integer({ min: 0, max: 15 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("iotlb" as const),
      gran: fc.constantFrom(1, 2, 3, 3),
      did: fc.constantFrom(2, 3),
      page: fc.integer({ min: 0, max: 15 }),
      am: fc.integer({ min: 0, max: 3 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("piotlb" as const),
      gran: fc.constantFrom(2, 3, 3),
      did: fc.constantFrom(2, 3),
      pasid: fc.constantFrom(0, 5),
      page: fc.integer({ min: 0, max: 15 }),
      am: fc.integer({ min: 0, max: 3 }),
    }),
  },
);

Deno.test("IOTLB contents match a reference model under random DMA and invalidations", () => {
  fc.assert(
    fc.property(fc.array(step, { maxLength: 40 }), (steps) => {
      const { hw, drv, nic, m } = setup();
      const pd = m.pci.add({ name: "pd", bus: 4, device: 0, fn: 0, pasidBits: 8 });
      drv.probeDevice(pd);
      const ss = drv.domainAllocPaging(nic, IOMMU_HWPT_ALLOC_NEST_PARENT); // DID 2, second stage
      const fs = drv.domainAllocPaging(pd, 0); // DID 3, first stage
      assert.deepEqual([ss.did, ss.firstStage, fs.did, fs.firstStage], [2, false, 3, true]);
      ss.attachDev(nic, null);
      fs.attachDev(pd, null);
      fs.setDevPasid(pd, 5, null);
      ss.mapPages(0, 0x8000_0000, 4096, 16, IOMMU_READ);
      fs.mapPages(0, 0x9000_0000, 4096, 16, IOMMU_READ);
      const ref = new Set<string>(); // did:pasid:page
      const key = (did: number, pasid: number, page: number) => `${did}:${pasid}:${page}`;
      const inRange = (page: number, base: number, am: number) => {
        const n = 2 ** am;
        const start = base - (base % n);
        return page >= start && page < start + n;
      };
      for (const s of steps) {
        if (s.t === "dma") {
          const [dev, did, pasid, reqPasid] = s.who === 0
            ? [nic, 2, 0, NO_PASID]
            : s.who === 1
            ? [pd, 3, 0, NO_PASID]
            : [pd, 3, 5, 5];
          assert.equal(xlate(hw, dev, s.page * 4096, false, reqPasid).ok, true);
          ref.add(key(did, pasid, s.page));
        } else if (s.t === "iotlb") {
          const w = QI_IOTLB_DESC.encode({
            TYPE: 2,
            GRAN: s.gran,
            DID: s.did,
            ADDR: s.page * 4096,
            AM: s.am,
          });
          drv.submitRaw(w[0], w[1], w[2], w[3]);
          for (const k of [...ref]) {
            const [did, , page] = k.split(":").map(Number);
            const secondStage = did === 2;
            if (s.gran === 1) ref.delete(k);
            else if (
              secondStage && did === s.did && (s.gran === 2 || inRange(page, s.page, s.am))
            ) ref.delete(k);
          }
        } else {
          const w = QI_EIOTLB_DESC.encode({
            TYPE: 6,
            GRAN: s.gran,
            DID: s.did,
            PASID: s.pasid,
            ADDR: s.page * 4096,
            AM: s.am,
          });
          drv.submitRaw(w[0], w[1], w[2], w[3]);
          for (const k of [...ref]) {
            const [did, pasid, page] = k.split(":").map(Number);
            if (did !== 3 || did !== s.did || pasid !== s.pasid) continue;
            if (s.gran === 2 || inRange(page, s.page, s.am)) ref.delete(k);
          }
        }
        for (const [did, pasid] of [[2, 0], [3, 0], [3, 5]]) {
          for (let p = 0; p < 16; p++) {
            assert.equal(
              hw.iotlbHas(did, pasid, p * 4096),
              ref.has(key(did, pasid, p)),
              `${key(did, pasid, p)} after ${JSON.stringify(s)}`,
            );
          }
        }
      }
    }),
    { numRuns: 60, seed: 5 },
  );
});
