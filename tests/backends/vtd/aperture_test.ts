/**
 * Paging-domain apertures as intel-iommu sets them: a first-stage domain
 * leaves out bit N-1 (IOVAs stay canonical in the lower half), a
 * second-stage domain covers its whole address width; a map past the
 * aperture is EFAULT (intel_iommu_map) and changes nothing.
 */
import assert from "node:assert/strict";
import { IOMMU_READ, IommuCore, IommuError, Machine } from "@iommu-lab/core";
import plugin from "../../../backends/vtd/mod.ts";

function paging(opts: Record<string, number | boolean>) {
  const m = new Machine();
  const nic = m.pci.add({ name: "nic", bus: 0, device: 1, fn: 0 });
  const { driver } = plugin.create(m, opts);
  const core = new IommuCore(m, {});
  core.registerDriver(driver);
  return { m, core, dom: core.domainAllocPaging(nic) };
}

Deno.test("a 4-level first-stage domain's aperture ends at 2^47 - 1; mapping at 2^47 is EFAULT and maps nothing", () => {
  const { m, core, dom } = paging({ fl5lp: false });
  assert.equal(dom.geometry!.apertureEnd, 2 ** 47 - 1);
  const pa = m.pages.allocPage();
  core.map(dom, 2 ** 47 - 4096, pa, 4096, IOMMU_READ);
  assert.equal(core.iovaToPhys(dom, 2 ** 47 - 4096), pa);
  const pagesBefore = m.pages.stats.pagesInUse;
  assert.throws(
    () => core.map(dom, 2 ** 47, pa, 4096, IOMMU_READ),
    (e: unknown) =>
      e instanceof IommuError && e.errno === "EFAULT" &&
      /beyond the aperture 0x7fffffffffff/.test(e.message),
  );
  assert.equal(core.iovaToPhys(dom, 2 ** 47), 0);
  assert.equal(m.pages.stats.pagesInUse, pagesBefore, "no table page was allocated");
});

Deno.test("a second-stage domain's aperture is its whole width: 2^47 maps, the first address past it is EFAULT", () => {
  const { m, core, dom } = paging({ flts: false, sagaw: 4 });
  assert.equal(dom.geometry!.apertureEnd, 2 ** 48 - 1);
  const pa = m.pages.allocPage();
  core.map(dom, 2 ** 47, pa, 4096, IOMMU_READ);
  assert.equal(core.iovaToPhys(dom, 2 ** 47), pa);
  assert.throws(
    () => core.map(dom, 2 ** 48, pa, 4096, IOMMU_READ),
    (e: unknown) => e instanceof IommuError && e.errno === "EFAULT",
  );
});
