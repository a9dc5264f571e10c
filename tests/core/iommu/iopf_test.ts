import assert from "node:assert/strict";
import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE as LAST,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID as PV,
  IommuCore,
  IommuPageResponseCode,
  type IopfFault,
  isIommuError,
} from "../../../core/mod.ts";
import { dev, type FakeDomain, FakeDriver, machineWith } from "./fake-driver.ts";

function pr(flags: number, pasid: number, grpid: number, addr: number): IopfFault {
  return { type: "PAGE_REQ", prm: { flags, pasid, grpid, perm: 1, addr, privateData: [0, 0] } };
}

function setup() {
  const m = machineWith([dev("a", 1, { pasidBits: 8, ats: true, pri: true })]);
  const drv = new FakeDriver();
  const core = new IommuCore(m);
  core.registerDriver(drv);
  const a = m.pci.byName("a")!;
  return { m, drv, core, a };
}

Deno.test("non-LAST page requests are parked without a response; LAST groups them by grpid", () => {
  const { drv, core, a } = setup();
  const d = core.domainAllocPaging(a) as FakeDomain;
  const seen: number[] = [];
  d.iopfHandler = (f) => {
    seen.push(f.prm.addr);
    return IommuPageResponseCode.SUCCESS;
  };
  core.attachDevicePasid(d, a, 7);
  drv.hooks!.reportDeviceFault(a, pr(PV, 7, 3, 0x1000));
  drv.hooks!.reportDeviceFault(a, pr(PV, 7, 4, 0x9000)); // another group
  drv.hooks!.reportDeviceFault(a, pr(PV, 7, 3, 0x2000));
  assert.equal(drv.responses.length, 0);
  drv.hooks!.reportDeviceFault(a, pr(PV | LAST, 7, 3, 0x3000));
  // partials newest first, then the last (the kernel's list order)
  assert.deepEqual(seen, [0x2000, 0x1000, 0x3000]);
  assert.equal(drv.responses.length, 1);
  assert.deepEqual(drv.responses[0].resp, { pasid: 7, grpid: 3, code: 0 });
  assert.equal(drv.responses[0].evt.prm.addr, 0x3000);
  // group 4's partial is still parked
  seen.length = 0;
  drv.hooks!.reportDeviceFault(a, pr(PV | LAST, 7, 4, 0xa000));
  assert.deepEqual(seen, [0x9000, 0xa000]);
  assert.equal(core.counters.pageRequests, 5);
  assert.equal(core.counters.pageRequestGroups, 2);
});

Deno.test("a failing fault stops the group and its code is the one response", () => {
  const { drv, core, a } = setup();
  const d = core.domainAllocPaging(a) as FakeDomain;
  let calls = 0;
  d.iopfHandler = () => {
    calls++;
    return IommuPageResponseCode.INVALID;
  };
  core.attachDevicePasid(d, a, 2);
  core.reportDeviceFault(a, pr(PV, 2, 1, 0x1000));
  core.reportDeviceFault(a, pr(PV | LAST, 2, 1, 0x2000));
  assert.equal(calls, 1);
  assert.deepEqual(drv.responses.map((r) => r.resp.code), [IommuPageResponseCode.INVALID]);
  assert.equal(core.counters.pageResponsesFailed, 1);
});

Deno.test("no domain on the PASID, or no handler, responds INVALID", () => {
  const { drv, core, a } = setup();
  core.reportDeviceFault(a, pr(PV | LAST, 9, 5, 0x1000));
  const d = core.domainAllocPaging(a);
  core.attachDevicePasid(d, a, 9);
  core.reportDeviceFault(a, pr(PV | LAST, 9, 6, 0x1000));
  assert.deepEqual(drv.responses.map((r) => r.resp), [
    { pasid: 9, grpid: 5, code: IommuPageResponseCode.INVALID },
    { pasid: 9, grpid: 6, code: IommuPageResponseCode.INVALID },
  ]);
});

Deno.test("a request without PASID goes to the RID domain's handler", () => {
  const { drv, core, a } = setup();
  const d = core.domainAllocPaging(a) as FakeDomain;
  d.iopfHandler = () => IommuPageResponseCode.SUCCESS;
  core.attachDevice(d, a);
  core.reportDeviceFault(a, pr(LAST, 0, 1, 0x4000));
  assert.deepEqual(drv.responses[0].resp, { pasid: 0, grpid: 1, code: 0 });
});

Deno.test("a throwing handler counts as INVALID", () => {
  const { drv, core, a } = setup();
  const d = core.domainAllocPaging(a) as FakeDomain;
  d.iopfHandler = () => {
    throw new Error("boom");
  };
  core.attachDevice(d, a);
  core.reportDeviceFault(a, pr(LAST, 0, 1, 0x4000));
  assert.equal(drv.responses[0].resp.code, IommuPageResponseCode.INVALID);
});

Deno.test("pageResponse forwards to the driver and validates the code", () => {
  const { m, drv, core, a } = setup();
  m.trace.enabled = true;
  const evt = pr(PV | LAST, 3, 2, 0x1000);
  core.pageResponse(a, evt, { pasid: 3, grpid: 2, code: IommuPageResponseCode.SUCCESS });
  assert.equal(drv.responses.length, 1);
  assert.equal(m.trace.events.at(-1)!.name, "iommu:dev_page_response");
  assert.throws(
    () => core.pageResponse(a, evt, { pasid: 3, grpid: 2, code: 7 as 0 }),
    (e) => isIommuError(e, "EINVAL"),
  );
  const x = m.pci.add(dev("x", 9));
  assert.throws(() => core.reportDeviceFault(x, evt), (e) => isIommuError(e, "ENODEV"));
});

Deno.test("reportIommuFault counts, traces io_page_fault, logs and calls the domain's fault handler", () => {
  const { m, core, a } = setup();
  m.trace.enabled = true;
  const seen: string[] = [];
  core.setFaultHandler(core.domainOf(a)!, (_d, dev, iova, write, reason) => {
    seen.push(`${dev.name} ${iova.toString(16)} ${write} ${reason}`);
  });
  core.reportIommuFault(a, 0xdead000, true, "TRANSLATION_FAULT");
  assert.deepEqual(seen, ["a dead000 true TRANSLATION_FAULT"]);
  assert.equal(core.counters.dmaFaults, 1);
  assert.equal(core.faultLog.length, 1);
  const e = m.trace.events.at(-1)!;
  assert.equal(e.name, "iommu:io_page_fault");
  assert.equal(e.fields.iova, 0xdead000);
  assert.equal(e.fields.flags, 1);
});
