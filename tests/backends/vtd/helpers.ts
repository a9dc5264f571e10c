/** Shared fixtures for the VT-d tests. */
import {
  ACCESS_READ,
  ACCESS_WRITE,
  IotlbGather,
  Machine,
  newDmaRequest,
  newTranslateResult,
  NO_PASID,
  type PciDevice,
  type TranslateResult,
} from "@iommu-lab/core";
import vtd, { type VtdDriver, type VtdHardware } from "../../../backends/vtd/mod.ts";

/** A machine with a plain device, an ATS+PRI+PASID device, and the VT-d backend. */
export function setup(opts: Record<string, boolean | number | string> = {}) {
  const m = new Machine({ paBits: 48 });
  const nic = m.pci.add({ name: "nic", bus: 0, device: 2, fn: 0 });
  const acc = m.pci.add({
    name: "acc",
    bus: 3,
    device: 0,
    fn: 1,
    pasidBits: 20,
    ats: true,
    pri: true,
  });
  const inst = vtd.create(m, opts);
  const hw = inst.hw as VtdHardware;
  const drv = inst.driver as VtdDriver;
  drv.probeDevice(nic);
  drv.probeDevice(acc);
  return { m, nic, acc, hw, drv };
}

const req = newDmaRequest();
const res = newTranslateResult();

/** Translate one request; returns a copy of the result. */
export function xlate(
  hw: VtdHardware,
  dev: PciDevice,
  addr: number,
  write = false,
  pasid = NO_PASID,
  priv = false,
): TranslateResult {
  req.rid = dev.rid;
  req.pasid = pasid;
  req.addr = addr;
  req.access = write ? ACCESS_WRITE : ACCESS_READ;
  req.priv = priv;
  hw.translate(req, res);
  return { ...res };
}

/** Unmap and sync. */
export function unmapSync(
  d: {
    unmapPages(a: number, s: number, c: number, g: IotlbGather): number;
    iotlbSync(g: IotlbGather): void;
  },
  iova: number,
  size: number,
  count = 1,
): number {
  const g = new IotlbGather();
  const n = d.unmapPages(iova, size, count, g);
  d.iotlbSync(g);
  return n;
}
