/** A tiny iommu core over a software page table, for DMA-layer tests. */
import {
  DomainType,
  IOMMU_PASID_INVALID,
  type IommuDomain,
  IommuError,
  type IommuOps,
  type IotlbGather,
  Machine,
  type PciDevice,
  type ResvRegion,
} from "@iommu-lab/core";
import type { DmaIommuCore } from "../../dma-api/dma.ts";

export class FakeCore implements DmaIommuCore {
  readonly machine: Machine;
  readonly table = new Map<number, { pa: number; prot: number }>();
  syncs = 0;
  flushAlls = 0;
  readonly pasids = new Map<number, IommuDomain>();
  nextPasid = 1;
  domain: IommuDomain;
  resv: ResvRegion[] = [];
  deferredFlush = true;
  readonly ops: IommuOps;

  constructor(type: number = DomainType.DMA, machine = new Machine()) {
    this.machine = machine;
    // deno-lint-ignore no-this-alias
    const self = this;
    this.ops = {
      name: "fake",
      pgsizeBitmap: 0x1000,
      capable: (_d, cap) => cap === "DEFERRED_FLUSH" ? self.deferredFlush : false,
      domainAllocPaging: () => self.domain,
      probeDevice() {},
      releaseDevice() {},
      getResvRegions: () => self.resv,
      maxPasids: (d) => d.pasidBits ? 2 ** d.pasidBits : 0,
    };
    this.domain = {
      type: type as DomainType,
      owner: this.ops,
      pgsizeBitmap: 0x1000,
      geometry: { apertureStart: 0, apertureEnd: 2 ** 48 - 1, forceAperture: true },
      attachDev() {},
      free() {},
    };
  }
  opsOf(_dev: PciDevice): IommuOps {
    return this.ops;
  }
  defaultDomainOf(_dev: PciDevice): IommuDomain | null {
    return this.domain;
  }
  groupOf(dev: PciDevice): unknown {
    return { dev };
  }
  getGroupResvRegions(): ResvRegion[] {
    return this.resv;
  }
  map(_d: IommuDomain, iova: number, paddr: number, size: number, prot: number): void {
    for (let o = 0; o < size; o += 4096) {
      if (this.table.has(iova + o)) {
        for (let p = 0; p < o; p += 4096) this.table.delete(iova + p);
        throw new IommuError("EEXIST", "iommu_map", `0x${(iova + o).toString(16)} is mapped`);
      }
      this.table.set(iova + o, { pa: paddr + o, prot });
    }
  }
  unmapFast(_d: IommuDomain, iova: number, size: number, gather: IotlbGather): number {
    let n = 0;
    for (let o = 0; o < size; o += 4096) {
      if (!this.table.delete(iova + o)) break;
      n += 4096;
    }
    if (n) gather.addRange(iova, n);
    return n;
  }
  iotlbSync(): void {
    this.syncs++;
  }
  flushIotlbAll(): void {
    this.flushAlls++;
  }
  iovaToPhys(_d: IommuDomain, iova: number): number {
    const e = this.table.get(iova - (iova % 4096));
    return e ? e.pa + (iova % 4096) : 0;
  }
  attachDevicePasid(domain: IommuDomain, _dev: PciDevice, pasid: number): void {
    if (this.pasids.has(pasid)) throw new IommuError("EBUSY", "attach_pasid", "taken");
    this.pasids.set(pasid, domain);
  }
  detachDevicePasid(_d: IommuDomain, _dev: PciDevice, pasid: number): void {
    this.pasids.delete(pasid);
  }
  allocGlobalPasid(dev: PciDevice): number {
    return dev.pasidBits ? this.nextPasid++ : IOMMU_PASID_INVALID;
  }
  freeGlobalPasid(): void {}
}
