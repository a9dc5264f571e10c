import assert from "node:assert/strict";
import { IommuError } from "@iommu-lab/core";
import { CAP_REG, ECAP_REG, FLPT_DEFAULT_DID } from "../../../backends/vtd/mod.ts";
import { setup, xlate } from "./helpers.ts";

Deno.test("SVA domain: DMA with the PASID walks the CPU page table; flushIotlbAll makes PTE changes visible", () => {
  const { m, hw, acc, nic, drv } = setup();
  // A CPU (x86 4-level, user) table mapping VA 0x40_0000 -> 0x7000_0000.
  const pgd = m.pages.allocPage();
  const pud = m.pages.allocPage(), pmd = m.pages.allocPage(), pte = m.pages.allocPage();
  const va = 0x40_0000;
  const idx = (l: number) => Math.floor(va / 2 ** (12 + 9 * (l - 1))) % 512;
  const U = 0x27; // P|RW|US|A
  m.mem.write64(pgd + idx(4) * 8, (pud | U) >>> 0, 0);
  m.mem.write64(pud + idx(3) * 8, (pmd | U) >>> 0, 0);
  m.mem.write64(pmd + idx(2) * 8, (pte | U) >>> 0, 0);
  m.mem.write64(pte + idx(1) * 8, (0x7000_0000 | U) >>> 0, 0);
  const mm = { id: 1, pgdPhys: pgd, levels: 4, pasid: 5 };
  const d = drv.domainAllocSva(acc, mm);
  assert.equal(d.did, FLPT_DEFAULT_DID);
  assert.throws(
    () => d.attachDev(acc, null),
    (e: unknown) => e instanceof IommuError && e.errno === "EINVAL",
  );
  assert.throws(
    () => drv.domainAllocSva(nic, mm),
    (e: unknown) => e instanceof IommuError && e.errno === "EOPNOTSUPP",
  );
  d.setDevPasid(acc, 5, null);
  assert.equal(xlate(hw, acc, va + 0x10, true, 5).pa, 0x7000_0010);
  m.mem.write64(pte + idx(1) * 8, (0x7100_0000 | U) >>> 0, 0);
  d.flushIotlbAll();
  assert.equal(xlate(hw, acc, va + 0x10, false, 5).pa, 0x7100_0010);
});

Deno.test("hw_info returns struct iommu_hw_info_vtd with CAP and ECAP", () => {
  const { acc, drv } = setup();
  const info = drv.hwInfo(acc);
  assert.equal(info.type, "INTEL_VTD");
  assert.equal(info.data.length, 6);
  assert.equal(CAP_REG.decode(info.data, 2).SAGAW, 0b1110n);
  assert.equal(ECAP_REG.decode(info.data, 4).SMTS, 1n);
});
