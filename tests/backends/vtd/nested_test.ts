/** Nested domains through the driver: a user first stage over a nest-parent second stage. */
import assert from "node:assert/strict";
import { IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_READ, IOMMU_WRITE, IommuError } from "@iommu-lab/core";
import { PASID_ENTRY } from "../../../backends/vtd/mod.ts";
import { setup, unmapSync, xlate } from "./helpers.ts";

function nestedWorld() {
  const env = setup({ checking: true });
  const { m, drv, acc } = env;
  const parent = drv.domainAllocPaging(acc, IOMMU_HWPT_ALLOC_NEST_PARENT);
  assert.equal(parent.firstStage, false);
  // Guest tables at GPA 0x10000..0x13fff, guest data page at GPA 0x20000.
  const hpa = (n: number) => Array.from({ length: n }, () => m.pages.allocPage());
  const tables = hpa(4);
  const [data] = hpa(1);
  tables.forEach((t, i) =>
    parent.mapPages(0x10000 + i * 0x1000, t, 4096, 1, IOMMU_READ | IOMMU_WRITE)
  );
  parent.mapPages(0x20000, data, 4096, 1, IOMMU_READ | IOMMU_WRITE);
  // S1 (guest) maps VA 0x7000 -> GPA 0x20000; entries hold GPAs.
  const U = 0x27;
  m.mem.write64(tables[0], 0x11000 | U, 0);
  m.mem.write64(tables[1], 0x12000 | U, 0);
  m.mem.write64(tables[2], 0x13000 | U, 0);
  m.mem.write64(tables[3] + 7 * 8, 0x20000 | U, 0);
  const nested = drv.domainAllocNested(acc, parent, 0, {
    flags: 0,
    pgtblAddr: 0x10000,
    addrWidth: 48,
  });
  return { ...env, parent, nested, data };
}

Deno.test("nested domain: DMA walks the user first stage through the parent second stage", () => {
  const { hw, acc, nested, data, m, drv } = nestedWorld();
  nested.attachDev(acc, null);
  assert.equal(xlate(hw, acc, 0x7123, true).pa, data + 0x123);
  // The PASID entry is PGTT=3 with the nested DID, FLPTPTR = the user table.
  const rta = Number(m.bus.read64(0xfed90000 + 0x20)) & ~0xfff;
  const ctx = m.mem.read64(rta + acc.bus * 16) - 1 + (acc.devfn & 0x7f) * 32;
  const dir = m.mem.read64(ctx) - (m.mem.read64(ctx) % 4096);
  const table = m.mem.read64(dir) - 1;
  const w = new Uint32Array(16);
  m.mem.readWords(table, w);
  const pe = PASID_ENTRY.decode(w);
  assert.equal(pe.PGTT, 3n);
  assert.equal(pe.DID, BigInt(nested.did));
  assert.equal(pe.FLPTPTR, 0x10000n);
  assert.notEqual(nested.did, 0);
  void drv;
});

Deno.test("unmapping from the nest parent invalidates the nested translations (IOTLB with the nested DID)", () => {
  const { hw, acc, nested, parent } = nestedWorld();
  nested.attachDev(acc, null);
  assert.equal(xlate(hw, acc, 0x7000).ok, true);
  const c = hw.counters.qiIotlb;
  assert.equal(unmapSync(parent, 0x20000, 4096), 4096);
  assert.ok(hw.counters.qiIotlb > c);
  const r = xlate(hw, acc, 0x7000);
  assert.equal(r.ok, false);
  assert.equal(r.pending, true, "a PRI device asks for the page (second-stage not present)");
  assert.deepEqual(hw.staleReports, []);
});

Deno.test("nested allocation refuses a first-stage parent, bad widths and unknown flags", () => {
  const { drv, acc, parent } = nestedWorld();
  const fsParent = drv.domainAllocPaging(acc, 0);
  const errno = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return (e as IommuError).errno;
    }
    return "none";
  };
  assert.equal(
    errno(() => drv.domainAllocNested(acc, fsParent, 0, { flags: 0, pgtblAddr: 0, addrWidth: 48 })),
    "EINVAL",
  );
  assert.equal(
    errno(() => drv.domainAllocNested(acc, parent, 0, { flags: 0, pgtblAddr: 0, addrWidth: 39 })),
    "EINVAL",
  );
  assert.equal(
    errno(() => drv.domainAllocNested(acc, parent, 0, { flags: 8, pgtblAddr: 0, addrWidth: 48 })),
    "EOPNOTSUPP",
  );
  assert.equal(errno(() => parent.free()), "EBUSY");
});
