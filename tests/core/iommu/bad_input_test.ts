/**
 * Bad input to the iommu core: every refusal is an IommuError with the
 * kernel's errno, a message that says what is allowed, and no state change
 * (no driver call, no mapping, no PASID slot, the same domain attached).
 */
import assert from "node:assert/strict";
import { IOMMU_READ, IOMMU_WRITE, IommuCore, IommuError } from "../../../core/mod.ts";
import { dev, type FakeDomain, FakeDriver, machineWith } from "./fake-driver.ts";

const K4 = 0x1000;
const RW = IOMMU_READ | IOMMU_WRITE;

function setup() {
  const m = machineWith([dev("a", 1, { pasidBits: 4 }), dev("b", 2, { pasidBits: 3 })]);
  const drv = new FakeDriver({ deviceGroup: () => "g" });
  const core = new IommuCore(m);
  core.registerDriver(drv);
  const a = m.pci.byName("a")!;
  const d = core.domainAllocPaging(a) as FakeDomain;
  core.map(d, 0x10_0000, 0x20_0000, K4, RW); // a live mapping that must survive
  drv.log.length = 0;
  return { m, drv, core, a, d };
}

function refused(errno: string, re: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof IommuError, String(e));
    assert.equal(e.errno, errno, e.message);
    assert.match(e.message, re);
    return true;
  };
}

Deno.test("iommu_map refuses misaligned, out-of-range and ill-formed requests with EINVAL and maps nothing", () => {
  const { drv, core, d } = setup();
  const bad: [number, number, number, number, RegExp][] = [
    [0x800, 0, K4, RW, /multiples of the minimum page size 0x1000/],
    [0, 0x800, K4, RW, /multiples of the minimum page size 0x1000/],
    [0, 0, 0x1800, RW, /multiples of the minimum page size 0x1000/],
    [0, 0, K4, 0x40, /bits outside READ\|WRITE\|CACHE\|NOEXEC\|MMIO\|PRIV/],
    [2 ** 53 - K4, 0, 2 * K4, RW, /ends beyond 2\^53/],
    [0, 2 ** 53 - K4, 2 * K4, RW, /ends beyond 2\^53/],
    [-K4, 0, K4, RW, /iova/],
    [0, 1.5, K4, RW, /paddr/],
  ];
  for (const [iova, pa, size, prot, re] of bad) {
    assert.throws(() => core.map(d, iova, pa, size, prot), refused("EINVAL", re), re.source);
  }
  assert.deepEqual(drv.log, [], "no driver call for a refused map");
  assert.deepEqual([...d.leaves.keys()], [0x10_0000]);
  assert.equal(core.iovaToPhys(d, 0x10_0000), 0x20_0000);
  assert.equal(core.iovaToPhys(d, 0), 0);
});

Deno.test("iommu_map on a non-paging domain is EINVAL saying only paging domains map", () => {
  const { drv, core } = setup();
  assert.throws(
    () => core.map(drv.identityDomain!, 0, 0, K4, RW),
    refused("EINVAL", /only paging domains take mappings/),
  );
  assert.deepEqual(drv.log, []);
});

Deno.test("PASID out of range is EINVAL naming the allowed range, and nothing is attached", () => {
  const { drv, core, a, d } = setup();
  const cases: [number, RegExp][] = [
    [0, /IOMMU_NO_PASID: attach the device \(RID\) instead/],
    [-1, /outside 1\.\./],
    [1.5, /outside 1\.\./],
    [2 ** 20, /outside 1\.\.1048575/],
    // a has 16 PASIDs, b (same group) 8: the group allows 1..7.
    [8, /not below max_pasids 8 of b/],
    [15, /not below max_pasids 8 of b/],
  ];
  for (const [pasid, re] of cases) {
    assert.throws(() => core.attachDevicePasid(d, a, pasid), refused("EINVAL", re), String(pasid));
    assert.equal(core.getDomainForDevPasid(a, pasid), null);
  }
  assert.equal(core.groupOf(a).pasidArray.size, 0);
  assert.deepEqual(drv.log, [], "no set_dev_pasid call for a refused PASID");
  // The same domain attaches at a PASID in range.
  core.attachDevicePasid(d, a, 7);
  assert.equal(core.getDomainForDevPasid(a, 7), d);
});
