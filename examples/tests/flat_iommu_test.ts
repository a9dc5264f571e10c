import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { relative } from "node:path";
import {
  DomainType,
  IOMMU_READ,
  IOMMU_WRITE,
  IommuError,
  IotlbGather,
  loadPlugin,
  Machine,
  type PciDevice,
  resolveOptions,
} from "@iommu-lab/core";
import {
  FLAT_DTE,
  FLAT_FAULT_STATUS,
  FLAT_ID,
  FLAT_PTE,
  type FlatIommuDriver,
  type FlatIommuHw,
  REG_FAULT_STATUS,
  REG_ID,
} from "../mod.ts";

const isErr = (errno: string, re?: RegExp) => (e: unknown) =>
  e instanceof IommuError && e.errno === errno && (!re || re.test(e.message));

const PLUGIN_PATH = relative(
  Deno.cwd(),
  fileURLToPath(new URL("../flat-iommu/mod.ts", import.meta.url)),
);
const RW = IOMMU_READ | IOMMU_WRITE;
const IOVA = 0x0100_0000;

async function setup(opts: string[] = []) {
  const plugin = await loadPlugin(PLUGIN_PATH.startsWith(".") ? PLUGIN_PATH : "./" + PLUGIN_PATH);
  const m = new Machine();
  const nic = m.pci.add({ name: "nic", bus: 1, device: 0, fn: 0 });
  const gpu = m.pci.add({ name: "gpu", bus: 2, device: 0, fn: 0 });
  const { hw, driver } = plugin.create(m, resolveOptions(plugin, opts));
  const drv = driver as FlatIommuDriver;
  drv.probeDevice(nic);
  drv.probeDevice(gpu);
  return { plugin, m, nic, gpu, hw: hw as FlatIommuHw, drv };
}

function mapped(m: Machine, drv: FlatIommuDriver, dev: PciDevice) {
  const dom = drv.domainAllocPaging(dev, 0);
  dom.attachDev(dev, null);
  const buf = m.pages.allocPages(1);
  assert.equal(dom.mapPages!(IOVA, buf, 4096, 2, RW), 8192);
  return { dom, buf };
}

Deno.test("the plugin loads by path and describes itself", async () => {
  const { plugin, m, hw } = await setup();
  assert.equal(plugin.name, "flat-iommu");
  assert.deepEqual(plugin.options.map((o) => o.name), [
    "aperture_bits",
    "iotlb_entries",
    "mmio_base",
    "instance",
  ]);
  const id = m.bus.read32(hw.mmioBase + REG_ID);
  assert.deepEqual(FLAT_ID.decode([id]), { VERSION: 1n, APERTURE_BITS: 31n, IOTLB_LOG2: 6n });
});

Deno.test("DMA through a mapped paging domain lands in the mapped pages", async () => {
  const { m, nic, drv } = await setup();
  const { dom, buf } = mapped(m, drv, nic);
  const data = new Uint8Array(6000).map((_, i) => (i * 13) & 0xff);
  const r = m.master(nic).write(IOVA + 100, data);
  assert.equal(r.ok, true);
  assert.deepEqual(m.mem.readBytes(buf + 100, 6000), data);
  assert.equal(dom.iovaToPhys!(IOVA + 0x1234), buf + 0x1234);
  assert.deepEqual(m.master(nic).read(IOVA + 100, 6000).data, data);
});

Deno.test("the table entries in memory are bit-exact", async () => {
  const { m, nic, drv } = await setup();
  const { dom, buf } = mapped(m, drv, nic);
  const table = (dom as unknown as { table: number }).table;
  const pte = m.mem.readWords(table + 8, new Uint32Array(2));
  assert.deepEqual(FLAT_PTE.decode(pte), { V: 1n, R: 1n, W: 1n, ADDR: BigInt(buf + 4096) });
  dom.mapPages!(IOVA + 0x10000, 0x1_2345_6000, 4096, 1, IOMMU_READ);
  const ro = m.mem.readWords(table + 16 * 8, new Uint32Array(2));
  assert.deepEqual([...ro], [0x2345_6003, 0x0000_0001]);
  assert.deepEqual([...ro], [...FLAT_PTE.encode({ V: 1, R: 1, ADDR: 0x1_2345_6000 })]);
});

Deno.test("a missing invalidation leaves a stale translation; iotlbSync removes it", async () => {
  const { m, nic, drv, hw } = await setup();
  const { dom, buf } = mapped(m, drv, nic);
  assert.equal(m.master(nic).read(IOVA, 4).ok, true); // fills the IOTLB
  const gather = new IotlbGather();
  assert.equal(dom.unmapPages!(IOVA, 4096, 1, gather), 4096);
  assert.equal(dom.iovaToPhys!(IOVA), 0);
  m.mem.write32(buf, 0xcafef00d);
  const stale = m.master(nic).read(IOVA, 4);
  assert.equal(stale.ok, true, "the device still reaches the unmapped page");
  assert.equal(stale.data![0], 0x0d);
  hw.checking = true;
  m.master(nic).read(IOVA, 4);
  assert.equal(hw.counters.stale_hits, 1);
  dom.iotlbSync!(gather);
  const after = m.master(nic).read(IOVA, 4);
  assert.equal(after.ok, false);
  assert.equal(after.fault, "PTE_NOT_PRESENT");
});

Deno.test("faults are recorded in FLAT_FAULT_STATUS and handled by the driver's interrupt", async () => {
  const { m, nic, drv, hw } = await setup();
  const dom = drv.domainAllocPaging(nic, 0);
  dom.attachDev(nic, null);
  const r = m.master(nic).write(IOVA + 0x5000, new Uint8Array(4));
  assert.equal(r.fault, "PTE_NOT_PRESENT");
  assert.equal(r.faultCode, 5);
  assert.deepEqual(drv.faultLog, [{ rid: 0x100, addr: IOVA + 0x5000, reason: 5, write: true }]);
  assert.equal(m.bus.read32(hw.mmioBase + REG_FAULT_STATUS), 0, "the handler cleared the status");
  // Without a handler the status stays latched and a second fault sets OVERFLOW.
  m.irq.unregister(hw.faultIrq);
  m.master(nic).read(0x1000, 4);
  m.master(nic).read(0x2000, 4);
  const st = FLAT_FAULT_STATUS.decode([m.bus.read32(hw.mmioBase + REG_FAULT_STATUS)]);
  assert.deepEqual(st, { FAULT: 1n, OVERFLOW: 1n, REASON: 3n, WRITE: 0n, RID: 0x100n });
});

Deno.test("identity, blocked and unattached devices behave as their DTE says", async () => {
  const { m, nic, gpu, drv } = await setup();
  assert.equal(m.master(gpu).read(0x1000, 4).fault, "DTE_INVALID");
  drv.identityDomain!.attachDev(gpu, null);
  m.mem.write32(0x7000, 0x11223344);
  assert.equal(m.master(gpu).read(0x7000, 4).data![3], 0x11);
  drv.blockedDomain!.attachDev(gpu, null);
  assert.equal(m.master(gpu).read(0x7000, 4).fault, "BLOCKED");
  const dte = m.mem.readWords(0, new Uint32Array(2)); // unrelated RID 0: still empty
  assert.deepEqual(FLAT_DTE.decode(dte), { V: 0n, MODE: 0n, TABLE: 0n });
  assert.equal(m.master(nic).read(IOVA, 4, { pasid: undefined }).fault, "DTE_INVALID");
  assert.equal(drv.identityDomain!.type, DomainType.IDENTITY);
  assert.equal(drv.maxPasids(nic), 0);
  assert.deepEqual(drv.getResvRegions(nic), []);
});

Deno.test("a read-only mapping refuses device writes; unmap stops at the first hole", async () => {
  const { m, nic, drv } = await setup();
  const dom = drv.domainAllocPaging(nic, 0);
  dom.attachDev(nic, null);
  const buf = m.pages.allocPage();
  dom.mapPages!(IOVA, buf, 4096, 1, IOMMU_READ);
  assert.equal(m.master(nic).read(IOVA, 4).ok, true);
  assert.equal(m.master(nic).write(IOVA, new Uint8Array(4)).fault, "PERMISSION");
  dom.mapPages!(IOVA + 0x2000, buf, 4096, 1, RW);
  assert.equal(dom.unmapPages!(IOVA, 4096, 3, new IotlbGather()), 4096);
  assert.equal(dom.iovaToPhys!(IOVA + 0x2000), buf);
  assert.equal(dom.unmapPages!(IOVA + 0x1000, 4096, 1, new IotlbGather()), 0);
});

Deno.test("bad inputs give IommuErrors and leave nothing mapped", async () => {
  const { m, nic, drv } = await setup();
  const dom = drv.domainAllocPaging(nic, 0);
  assert.throws(() => dom.mapPages!(IOVA, 0x1000, 8192, 1, RW), isErr("EINVAL", /only 4096/));
  assert.throws(() => dom.mapPages!(IOVA + 1, 0x1000, 4096, 1, RW), isErr("EINVAL", /aligned/));
  assert.throws(
    () => dom.mapPages!(0x1000, 0x1000, 4096, 1, RW),
    isErr("EINVAL", /outside the aperture/),
  );
  assert.throws(
    () => dom.mapPages!(2 ** 31 - 4096, 0x1000, 4096, 2, RW),
    isErr("EINVAL", /aperture/),
  );
  dom.mapPages!(IOVA + 0x3000, 0x5000, 4096, 1, RW);
  try {
    dom.mapPages!(IOVA, 0x1000, 4096, 8, RW);
    assert.fail("mapped over a live entry");
  } catch (e) {
    assert.ok(isErr("EEXIST")(e));
    assert.equal((e as IommuError).detail.mapped, 0);
  }
  assert.equal(
    dom.iovaToPhys!(IOVA),
    0,
    "validate then mutate: nothing of the failed range was mapped",
  );
  assert.equal(dom.mapPages!(IOVA, 0x1000, 4096, 1, 0), 0, "no R/W: nothing mapped");
  assert.throws(() => drv.domainAllocPaging(nic, 1), isErr("EOPNOTSUPP"));
  const stranger = m.pci.add({ name: "s", bus: 3, device: 0, fn: 0 });
  assert.throws(() => dom.attachDev(stranger, null), isErr("ENODEV"));
  assert.throws(
    () => drv.probeDevice(m.pci.add({ name: "x", segment: 1, bus: 0, device: 0, fn: 0 })),
    isErr("ENODEV"),
  );
  assert.throws(() => m.master(nic).read(IOVA, 4, { pasid: 1 }), isErr("EINVAL")); // nic has no PASID capability
  dom.free();
  assert.throws(() => dom.mapPages!(IOVA, 0x1000, 4096, 1, RW), isErr("EINVAL", /freed/));
});

Deno.test("plugin options are validated and applied", async () => {
  const { plugin, hw } = await setup(["aperture_bits=25", "iotlb_entries=8", "instance=tiny"]);
  assert.equal(hw.name, "tiny");
  assert.throws(() => resolveOptions(plugin, ["aperture_bits=40"]), isErr("EINVAL", /25..31/));
  assert.throws(() => resolveOptions(plugin, ["iotlb=8"]), isErr("EINVAL", /known options/));
});

Deno.test("a small IOTLB evicts in FIFO order and counts hits and misses", async () => {
  const { m, nic, drv, hw } = await setup(["iotlb_entries=8"]);
  const dom = drv.domainAllocPaging(nic, 0);
  dom.attachDev(nic, null);
  dom.mapPages!(IOVA, m.pages.allocPages(4), 4096, 16, RW);
  const before = { ...hw.counters };
  for (let i = 0; i < 10; i++) m.master(nic).read(IOVA + i * 4096, 4);
  assert.equal(hw.iotlbOccupancy, 8);
  m.master(nic).read(IOVA + 9 * 4096, 4); // still cached
  m.master(nic).read(IOVA, 4); // evicted
  assert.equal(hw.counters.iotlb_misses - before.iotlb_misses, 11);
  assert.equal(hw.counters.iotlb_hits - before.iotlb_hits, 1);
});

Deno.test("the plugin also loads by package specifier and by file URL", async () => {
  const byPkg = await loadPlugin("@iommu-lab/examples");
  assert.equal(byPkg.name, "flat-iommu");
  const byUrl = await loadPlugin(new URL("../flat-iommu/mod.ts", import.meta.url).href);
  assert.equal(byUrl, byPkg, "the same module instance");
});

Deno.test("the hardware alone translates tables written from outside (image + registers)", async () => {
  const plugin = await loadPlugin(PLUGIN_PATH.startsWith(".") ? PLUGIN_PATH : "./" + PLUGIN_PATH);
  const m = new Machine();
  const dev = m.pci.add({ name: "dev", bus: 0, device: 3, fn: 0 });
  const hw = plugin.createHardware(m, resolveOptions(plugin, ["aperture_bits=25"]));
  // A device table at 0x10_0000 (256 entries) and a flat table at 0x20_0000.
  m.mem.writeWords(0x10_0000 + dev.rid * 8, FLAT_DTE.encode({ V: 1, MODE: 2, TABLE: 0x20_0000 }));
  m.mem.writeWords(0x20_0000 + 5 * 8, FLAT_PTE.encode({ V: 1, R: 1, W: 1, ADDR: 0xabc_d000 }));
  m.bus.write64(hw.mmioBase + 0x10, 0x10_0000 | 8); // FLAT_DT_BASE: ADDR, LOG2SIZE 8
  m.bus.write32(hw.mmioBase + 0x04, 1); // FLAT_CTRL.EN
  const req = { rid: dev.rid, pasid: -1, addr: IOVA + 5 * 4096 + 0x10, access: 2, priv: false };
  const out = { ok: false, pa: 0, perm: 0, span: 0, fault: "", faultCode: 0, pending: false };
  hw.translate(req, out);
  assert.deepEqual(out, {
    ok: true,
    pa: 0xabc_d010,
    perm: 3,
    span: 4096,
    fault: "",
    faultCode: 0,
    pending: false,
  });
  req.rid = 0x300; // beyond the 256-entry table
  hw.translate(req, out);
  assert.equal(out.fault, "DT_OVERFLOW");
});

Deno.test("a device hot-added after the IOMMU is translated too", async () => {
  const { m, drv } = await setup();
  const late = m.pci.add({ name: "late", bus: 5, device: 0, fn: 0 });
  assert.equal(m.master(late).read(0x1000, 4).fault, "DTE_INVALID", "not attached: no DMA");
  drv.probeDevice(late);
  drv.identityDomain!.attachDev(late, null);
  assert.equal(m.master(late).read(0x1000, 4).ok, true);
});
