/**
 * A configurable fake IOMMU driver for the iommu core tests: it records every
 * call it receives and can be told to refuse devices, fail the Nth attach,
 * fail PASID sets or map calls, report capabilities, a def_domain_type,
 * max_pasids and reserved regions.
 */

import {
  DomainType,
  type Errno,
  type IommuCap,
  type IommuDomain,
  IommuError,
  type IommuKernelHooks,
  type IommuOpsWithHooks,
  type IommuPageResponse,
  type IopfFault,
  IotlbGather,
  Machine,
  type PciDevice,
  type PciDeviceConfig,
  type ResvRegion,
} from "../../../core/mod.ts";

/** What the fake driver should do. */
export interface FakeOptions {
  name?: string;
  pgsizeBitmap?: number;
  /** Devices it translates (others: ENODEV). Default: all. */
  accept?: (dev: PciDevice) => boolean;
  caps?: IommuCap[];
  defDomainType?: (dev: PciDevice) => number;
  maxPasids?: number | ((dev: PciDevice) => number);
  resv?: (dev: PciDevice) => ResvRegion[];
  deviceGroup?: (dev: PciDevice) => string | undefined;
  /** Provide a static identity domain (default true). */
  identity?: boolean;
  /** Provide a static blocked domain that takes PASIDs (default true). */
  blocked?: boolean;
}

/** One mapped leaf in a fake domain. */
export interface FakeLeaf {
  paddr: number;
  size: number;
  prot: number;
}

/** A fake domain: a map of leaves keyed by IOVA. */
export class FakeDomain implements IommuDomain {
  type: DomainType;
  readonly owner: FakeDriver;
  pgsizeBitmap: number;
  geometry = { apertureStart: 0, apertureEnd: 2 ** 48 - 1, forceAperture: true };
  readonly label: string;
  readonly leaves = new Map<number, FakeLeaf>();
  freed = false;
  /** Set to false to make the domain unable to take PASIDs. */
  readonly setDevPasid?: (dev: PciDevice, pasid: number, old: IommuDomain | null) => void;
  iopfHandler?: IommuDomain["iopfHandler"];

  constructor(owner: FakeDriver, type: DomainType, label: string, pasid = true) {
    this.owner = owner;
    this.type = type;
    this.label = label;
    this.pgsizeBitmap = owner.pgsizeBitmap;
    if (pasid) {
      this.setDevPasid = (dev, p, old) => owner.onSetPasid(this, dev, p, old);
    }
  }

  attachDev(dev: PciDevice, old: IommuDomain | null): void {
    this.owner.onAttach(this, dev, old);
  }

  mapPages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): number {
    const d = this.owner;
    d.log.push(`map ${this.label} ${hx(iova)} ${hx(paddr)} ${hx(pgsize)}x${pgcount}`);
    let mapped = 0;
    for (let i = 0; i < pgcount; i++) {
      d.mapCalls++;
      if (d.failMapAtLeaf === d.mapCalls) {
        throw new IommuError("ENOMEM", "fake_map", "injected map failure", { mapped });
      }
      const a = iova + i * pgsize;
      if (this.overlaps(a, pgsize)) {
        throw new IommuError("EEXIST", "fake_map", `iova ${hx(a)} is mapped`, { mapped });
      }
      this.leaves.set(a, { paddr: paddr + i * pgsize, size: pgsize, prot });
      mapped += pgsize;
    }
    return mapped;
  }

  unmapPages(iova: number, pgsize: number, pgcount: number, gather: IotlbGather): number {
    this.owner.log.push(`unmap ${this.label} ${hx(iova)} ${hx(pgsize)}x${pgcount}`);
    let done = 0;
    // As io-pgtable: a leaf of exactly pgsize is removed; a slot holding
    // smaller leaves (a table) is cleared whole; an empty slot or part of a
    // larger leaf stops the unmap.
    for (let i = 0; i < pgcount; i++) {
      const a = iova + i * pgsize;
      const leaf = this.leaves.get(a);
      if (leaf && leaf.size === pgsize) {
        this.leaves.delete(a);
      } else {
        const inside: number[] = [];
        let bigger = false;
        for (const [b, l] of this.leaves) {
          if (b < a + pgsize && a < b + l.size) {
            if (l.size > pgsize) bigger = true;
            else inside.push(b);
          }
        }
        if (bigger || inside.length === 0) break;
        for (const b of inside) this.leaves.delete(b);
      }
      gather.addPage(this, a, pgsize);
      done += pgsize;
    }
    return done;
  }

  iotlbSync(gather: IotlbGather): void {
    this.owner.log.push(`sync ${this.label} ${hx(gather.start)}-${hx(gather.end)}`);
  }

  iotlbSyncMap(iova: number, size: number): void {
    this.owner.log.push(`syncmap ${this.label} ${hx(iova)} ${hx(size)}`);
  }

  flushIotlbAll(): void {
    this.owner.log.push(`flushall ${this.label}`);
  }

  /** True if any leaf overlaps `[iova, iova + size)` (a real table refuses EEXIST there). */
  overlaps(iova: number, size: number): boolean {
    for (const [a, l] of this.leaves) if (a < iova + size && iova < a + l.size) return true;
    return false;
  }

  /** Physical address of `iova`, 0 when unmapped. */
  translate(iova: number): number {
    for (const [a, l] of this.leaves) {
      if (iova >= a && iova < a + l.size) return l.paddr + (iova - a);
    }
    return 0;
  }

  iovaToPhys(iova: number): number {
    return this.translate(iova);
  }

  free(): void {
    this.freed = true;
    this.owner.log.push(`free ${this.label}`);
  }
}

function hx(n: number): string {
  return "0x" + n.toString(16);
}

/** The fake driver. */
export class FakeDriver implements IommuOpsWithHooks {
  readonly name: string;
  readonly pgsizeBitmap: number;
  readonly identityDomain?: FakeDomain;
  readonly blockedDomain?: FakeDomain;
  readonly log: string[] = [];
  hooks: IommuKernelHooks | null = null;
  readonly opts: FakeOptions;
  /** attach_dev calls seen (successful or not). */
  attachCalls = 0;
  /** Fail the attach_dev call with this 1-based number. */
  failAttachAt = 0;
  /** Errno for the injected attach failure. */
  failAttachErrno: Errno = "EINVAL";
  /** Fail every attach of this device (optional). */
  failAttachDev: PciDevice | null = null;
  /** set_dev_pasid calls seen. */
  pasidCalls = 0;
  /** Fail the set_dev_pasid call with this 1-based number. */
  failPasidAt = 0;
  /** Leaves mapped (one count per leaf) across domains. */
  mapCalls = 0;
  /** Fail when this leaf number is mapped (1-based). */
  failMapAtLeaf = 0;
  /** Page responses received. */
  readonly responses: { dev: string; evt: IopfFault; resp: IommuPageResponse }[] = [];
  /** The driver's own view: the domain each device was last attached to. */
  readonly current = new Map<PciDevice, FakeDomain>();
  /** The driver's own view: `${dev.name}:${pasid}` to domain (blocked entries removed). */
  readonly pasids = new Map<string, FakeDomain>();
  #domains = 0;

  constructor(opts: FakeOptions = {}) {
    this.opts = opts;
    this.name = opts.name ?? "fake-iommu";
    this.pgsizeBitmap = opts.pgsizeBitmap ?? (0x1000 + 0x200000 + 0x40000000);
    if (opts.identity ?? true) {
      this.identityDomain = new FakeDomain(this, DomainType.IDENTITY, "identity", false);
    }
    if (opts.blocked ?? true) {
      this.blockedDomain = new FakeDomain(this, DomainType.BLOCKED, "blocked", true);
    }
  }

  setKernelHooks(hooks: IommuKernelHooks): void {
    this.hooks = hooks;
  }

  capable(_dev: PciDevice, cap: IommuCap): boolean {
    return (this.opts.caps ?? []).includes(cap);
  }

  domainAllocPaging(_dev: PciDevice | null, _flags: number): IommuDomain {
    const d = new FakeDomain(this, DomainType.UNMANAGED, `d${++this.#domains}`);
    this.log.push(`alloc ${d.label}`);
    return d;
  }

  probeDevice(dev: PciDevice): void {
    if (this.opts.accept && !this.opts.accept(dev)) {
      throw new IommuError("ENODEV", "fake_probe", `${dev.name} is not behind ${this.name}`);
    }
    this.log.push(`probe ${dev.name}`);
    dev.iommu!.priv = { fake: true };
  }

  releaseDevice(dev: PciDevice): void {
    this.log.push(`release ${dev.name}`);
  }

  deviceGroup(dev: PciDevice): string | undefined {
    return this.opts.deviceGroup?.(dev);
  }

  getResvRegions(dev: PciDevice): ResvRegion[] {
    return this.opts.resv?.(dev) ?? [];
  }

  defDomainType(dev: PciDevice): number {
    return this.opts.defDomainType?.(dev) ?? 0;
  }

  pageResponse(dev: PciDevice, evt: IopfFault, resp: IommuPageResponse): void {
    this.responses.push({ dev: dev.name, evt, resp: { ...resp } });
  }

  maxPasids(dev: PciDevice): number {
    const m = this.opts.maxPasids;
    if (typeof m === "function") return m(dev);
    return m ?? (dev.pasidBits ? 2 ** dev.pasidBits : 0);
  }

  /** Called by FakeDomain.attachDev. */
  onAttach(d: FakeDomain, dev: PciDevice, old: IommuDomain | null): void {
    this.attachCalls++;
    if (this.attachCalls === this.failAttachAt || this.failAttachDev === dev) {
      this.log.push(`attach-fail ${d.label} ${dev.name}`);
      throw new IommuError(this.failAttachErrno, "fake_attach", `injected failure for ${dev.name}`);
    }
    this.log.push(`attach ${d.label} ${dev.name} old=${old?.label ?? "none"}`);
    this.current.set(dev, d);
  }

  /** Called by FakeDomain.setDevPasid. */
  onSetPasid(d: FakeDomain, dev: PciDevice, pasid: number, old: IommuDomain | null): void {
    this.pasidCalls++;
    if (this.pasidCalls === this.failPasidAt) {
      this.log.push(`pasid-fail ${d.label} ${dev.name} ${pasid}`);
      throw new IommuError("ENOSPC", "fake_set_dev_pasid", `injected failure for ${dev.name}`);
    }
    this.log.push(`pasid ${d.label} ${dev.name} ${pasid} old=${old?.label ?? "none"}`);
    if (d === this.blockedDomain) this.pasids.delete(`${dev.name}:${pasid}`);
    else this.pasids.set(`${dev.name}:${pasid}`, d);
  }
}

/** A machine with the given PCI devices. */
export function machineWith(devs: PciDeviceConfig[]): Machine {
  const m = new Machine();
  for (const d of devs) m.pci.add(d);
  return m;
}

/** Shorthand device config on bus 0. */
export function dev(
  name: string,
  device: number,
  extra: Partial<PciDeviceConfig> = {},
): PciDeviceConfig {
  return { name, bus: 0, device, fn: 0, ...extra };
}

/** The log lines that start with `prefix`. */
export function logOf(d: FakeDriver, prefix: string): string[] {
  return d.log.filter((l) => l.startsWith(prefix));
}

export { IotlbGather };
