/**
 * @module
 * The flat IOMMU driver: an {@link IommuOps} that reaches its hardware only
 * through `machine.bus` (registers) and `machine.mem` (device table and flat
 * page tables it allocates from `machine.pages`). Paging domains map 4 KiB
 * pages inside the aperture; identity and blocked domains are static.
 */

import {
  DomainType,
  IOMMU_READ,
  IOMMU_WRITE,
  type IommuCap,
  type IommuDomain,
  IommuError,
  type IommuKernelHooks,
  type IommuOpsWithHooks,
  type IotlbGather,
  type Machine,
  type PciDevice,
  type ResvRegion,
} from "@iommu-lab/core";
import {
  APERTURE_START,
  FLAT_PAGE,
  FLAT_VERSION,
  flatTableBytes,
  MODE_BLOCKED,
  MODE_IDENTITY,
  MODE_TRANSLATE,
  PTE_R,
  PTE_V,
  PTE_W,
  REG_CTRL,
  REG_DT_BASE,
  REG_FAULT_ADDR,
  REG_FAULT_STATUS,
  REG_ID,
  REG_INV,
  REG_STATUS,
} from "./regs.ts";

const TWO32 = 4294967296;
/** Device table entries: one per requester ID. */
const DT_LOG2 = 16;

function orderFor(bytes: number): number {
  return Math.max(0, Math.ceil(Math.log2(bytes / FLAT_PAGE)));
}

/** The flat IOMMU driver. */
export class FlatIommuDriver implements IommuOpsWithHooks {
  /** Driver name. */
  readonly name = "flat-iommu";
  /** 4 KiB pages only. */
  readonly pgsizeBitmap: number = FLAT_PAGE;
  /** The static identity domain. */
  readonly identityDomain: IommuDomain;
  /** The static blocked domain. */
  readonly blockedDomain: IommuDomain;
  /** Aperture end (exclusive) read from FLAT_ID. */
  readonly apertureEnd: number;
  /** Unrecoverable faults the fault handler read from the registers. */
  readonly faultLog: { rid: number; addr: number; reason: number; write: boolean }[] = [];

  readonly #m: Machine;
  readonly #base: number;
  readonly #dt: number;
  readonly #probed = new Set<PciDevice>();
  readonly #hi = new Uint32Array(1);
  #hooks: IommuKernelHooks | null = null;

  /**
   * Probe the hardware at `mmioBase` (ENODEV unless FLAT_ID says version 1),
   * allocate the device table, program FLAT_DT_BASE, enable translation and
   * register the fault interrupt handler on `faultIrq`.
   */
  constructor(machine: Machine, mmioBase: number, faultIrq: string) {
    this.#m = machine;
    this.#base = mmioBase;
    const id = machine.bus.read32(mmioBase + REG_ID);
    if ((id & 0xff) !== FLAT_VERSION) {
      throw new IommuError(
        "ENODEV",
        "flat_iommu_probe",
        `FLAT_ID at 0x${mmioBase.toString(16)} reads version ${
          id & 0xff
        }; this driver supports ${FLAT_VERSION}`,
      );
    }
    this.apertureEnd = 2 ** ((id >>> 8) & 0xff);
    this.#dt = machine.pages.allocPages(orderFor(2 ** DT_LOG2 * 8));
    machine.bus.write64Halves(
      mmioBase + REG_DT_BASE,
      (this.#dt % TWO32) | DT_LOG2,
      Math.floor(this.#dt / TWO32),
    );
    machine.bus.write32(mmioBase + REG_CTRL, 1);
    if ((machine.bus.read32(mmioBase + REG_STATUS) & 1) === 0) {
      throw new IommuError(
        "EIO",
        "flat_iommu_probe",
        `translation did not enable (FLAT_STATUS.ENS stayed 0)`,
      );
    }
    machine.irq.register(faultIrq, () => this.#onFault());
    this.identityDomain = new FlatStaticDomain(this, DomainType.IDENTITY, MODE_IDENTITY);
    this.blockedDomain = new FlatStaticDomain(this, DomainType.BLOCKED, MODE_BLOCKED);
  }

  /** Receive the kernel's fault-reporting hooks. */
  setKernelHooks(hooks: IommuKernelHooks): void {
    this.#hooks = hooks;
  }

  #onFault(): void {
    const bus = this.#m.bus;
    const st = bus.read32(this.#base + REG_FAULT_STATUS);
    if ((st & 1) === 0) return;
    const lo = bus.read64Halves(this.#base + REG_FAULT_ADDR, this.#hi);
    const f = {
      rid: st >>> 16,
      addr: this.#hi[0] * TWO32 + lo,
      reason: (st >>> 4) & 0xf,
      write: (st & 0x100) !== 0,
    };
    this.faultLog.push(f);
    bus.write32(this.#base + REG_FAULT_STATUS, st & 3); // W1C
    this.#hooks?.reportIommuFault(
      this.#m.pci.byRid(f.rid) ?? null,
      f.addr,
      f.write,
      `flat reason ${f.reason}`,
    );
  }

  /** Write FLAT_INV.ALL and wait for it to read back 0. */
  invalidateAll(): void {
    const bus = this.#m.bus;
    bus.write32(this.#base + REG_INV, 1);
    for (let i = 0; bus.read32(this.#base + REG_INV) & 1; i++) {
      if (i > 1000) {
        throw new IommuError("ETIMEDOUT", "flat_iommu_inv", `FLAT_INV.ALL did not complete`);
      }
    }
  }

  /**
   * Write the device table entry (V, MODE, TABLE) of every requester ID
   * `dev`'s DMA may carry (its own, its quirk aliases, the bridge aliases
   * above it: what `pci_for_each_dma_alias` visits), then invalidate the IOTLB.
   */
  writeDte(dev: PciDevice, mode: number, table: number): void {
    const lo = ((table % TWO32) | (mode << 1) | PTE_V) >>> 0;
    const hi = Math.floor(table / TWO32);
    for (const a of this.#m.pci.dmaAliases(dev)) this.#m.mem.write64(this.#dt + a.rid * 8, lo, hi);
    this.invalidateAll();
  }

  #checkProbed(dev: PciDevice, op: string): void {
    if (!this.#probed.has(dev)) {
      throw new IommuError("ENODEV", op, `${dev.name} was not probed by ${this.name}`);
    }
  }

  /** Only CACHE_COHERENCY (the model's DMA is coherent). */
  capable(_dev: PciDevice, cap: IommuCap): boolean {
    return cap === "CACHE_COHERENCY";
  }

  /** A new paging domain with its own flat table (EOPNOTSUPP for any flag). */
  domainAllocPaging(dev: PciDevice | null, flags: number): IommuDomain {
    if (flags !== 0) {
      throw new IommuError(
        "EOPNOTSUPP",
        "domain_alloc_paging_flags",
        `flags 0x${flags.toString(16)}: the flat IOMMU supports none`,
      );
    }
    if (dev) this.#checkProbed(dev, "domain_alloc_paging_flags");
    return new FlatPagingDomain(this, this.#m);
  }

  /** Claim PCI segment 0 devices; others are ENODEV. */
  probeDevice(dev: PciDevice): void {
    if (dev.segment !== 0) {
      throw new IommuError(
        "ENODEV",
        "probe_device",
        `${dev.name} is on segment ${dev.segment}; the flat IOMMU serves segment 0`,
      );
    }
    this.#probed.add(dev);
  }

  /** Forget `dev` and invalidate its device table entry. */
  releaseDevice(dev: PciDevice): void {
    if (!this.#probed.delete(dev)) return;
    // Only the device's own ID: bridge aliases may still serve its group siblings.
    this.#m.mem.write64(this.#dt + dev.rid * 8, 0, 0);
    this.invalidateAll();
  }

  /** No reserved regions. */
  getResvRegions(_dev: PciDevice): ResvRegion[] {
    return [];
  }

  /** No PASID support. */
  maxPasids(_dev: PciDevice): number {
    return 0;
  }

  /** @internal attach helper shared by the domains. */
  attach(dev: PciDevice, mode: number, table: number, op: string): void {
    this.#checkProbed(dev, op);
    this.writeDte(dev, mode, table);
  }
}

/** The identity or blocked domain: only a DTE mode. */
class FlatStaticDomain implements IommuDomain {
  readonly type: DomainType;
  readonly owner: FlatIommuDriver;
  pgsizeBitmap = 0;
  geometry = { apertureStart: 0, apertureEnd: 0, forceAperture: false };
  readonly label: string;
  readonly #mode: number;

  constructor(owner: FlatIommuDriver, type: DomainType, mode: number) {
    this.owner = owner;
    this.type = type;
    this.#mode = mode;
    this.label = mode === MODE_IDENTITY ? "flat-identity" : "flat-blocked";
  }

  attachDev(dev: PciDevice): void {
    this.owner.attach(dev, this.#mode, 0, "attach_dev");
  }

  free(): void {}
}

/** A paging domain: one flat table covering the aperture. */
export class FlatPagingDomain implements IommuDomain {
  /** UNMANAGED until the core makes it a DMA domain. */
  type: DomainType = DomainType.UNMANAGED;
  /** The driver. */
  readonly owner: FlatIommuDriver;
  /** 4 KiB. */
  pgsizeBitmap: number = FLAT_PAGE;
  /** The aperture. */
  geometry: { apertureStart: number; apertureEnd: number; forceAperture: boolean };
  /** Physical address of the flat table. */
  readonly table: number;
  readonly #m: Machine;
  #freed = false;

  /** Allocate the flat table. */
  constructor(owner: FlatIommuDriver, machine: Machine) {
    this.owner = owner;
    this.#m = machine;
    this.geometry = {
      apertureStart: APERTURE_START,
      apertureEnd: owner.apertureEnd - 1,
      forceAperture: true,
    };
    this.table = machine.pages.allocPages(orderFor(flatTableBytes(Math.log2(owner.apertureEnd))));
  }

  #live(op: string): void {
    if (this.#freed) throw new IommuError("EINVAL", op, `the domain was freed`);
  }

  #pte(iova: number): number {
    return this.table + ((iova - APERTURE_START) / FLAT_PAGE) * 8;
  }

  /** Point `dev`'s DTE at this domain's table. */
  attachDev(dev: PciDevice): void {
    this.#live("attach_dev");
    this.owner.attach(dev, MODE_TRANSLATE, this.table, "attach_dev");
  }

  /**
   * Map `pgcount` 4 KiB pages. Validates every argument and every target
   * entry first: a failed call maps nothing (`detail.mapped` = 0). Without
   * IOMMU_READ or IOMMU_WRITE nothing is mapped and 0 is returned (as
   * io-pgtable does).
   */
  mapPages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): number {
    const op = "map_pages";
    this.#live(op);
    const fail = (errno: "EINVAL" | "EEXIST", msg: string) =>
      new IommuError(errno, op, msg, { mapped: 0 });
    if (pgsize !== FLAT_PAGE) {
      throw fail("EINVAL", `page size ${pgsize} is not supported; only 4096 is`);
    }
    if (!Number.isInteger(pgcount) || pgcount < 1) {
      throw fail("EINVAL", `page count ${pgcount} must be a positive integer`);
    }
    if (
      !Number.isInteger(iova) || iova % FLAT_PAGE || !Number.isInteger(paddr) ||
      paddr % FLAT_PAGE || paddr < 0
    ) {
      throw fail(
        "EINVAL",
        `iova 0x${iova.toString(16)} and paddr 0x${paddr.toString(16)} must be 4 KiB aligned`,
      );
    }
    const size = pgcount * FLAT_PAGE;
    if (iova < APERTURE_START || iova + size > this.owner.apertureEnd) {
      throw fail(
        "EINVAL",
        `[0x${iova.toString(16)}, 0x${(iova + size).toString(16)}) is outside the aperture [0x${
          APERTURE_START.toString(16)
        }, 0x${this.owner.apertureEnd.toString(16)})`,
      );
    }
    if (paddr + size > 2 ** 52 || paddr + size > this.#m.mem.limit) {
      throw fail(
        "EINVAL",
        `paddr range ends at 0x${(paddr + size).toString(16)}, beyond physical memory`,
      );
    }
    if ((prot & (IOMMU_READ | IOMMU_WRITE)) === 0) return 0;
    const mem = this.#m.mem;
    for (let i = 0; i < pgcount; i++) {
      if (mem.read32(this.#pte(iova + i * FLAT_PAGE)) & PTE_V) {
        throw fail("EEXIST", `iova 0x${(iova + i * FLAT_PAGE).toString(16)} is already mapped`);
      }
    }
    const perm = PTE_V | (prot & IOMMU_READ ? PTE_R : 0) | (prot & IOMMU_WRITE ? PTE_W : 0);
    for (let i = 0; i < pgcount; i++) {
      const pa = paddr + i * FLAT_PAGE;
      mem.write64(
        this.#pte(iova + i * FLAT_PAGE),
        ((pa % TWO32) | perm) >>> 0,
        Math.floor(pa / TWO32),
      );
    }
    return size;
  }

  /**
   * Unmap up to `pgcount` pages, stopping at the first page that is not
   * mapped; returns the bytes unmapped and gathers them for `iotlbSync`.
   * The IOTLB is not touched here: until the sync, the device may still
   * use the old translations.
   */
  unmapPages(iova: number, pgsize: number, pgcount: number, gather: IotlbGather): number {
    const op = "unmap_pages";
    this.#live(op);
    if (pgsize !== FLAT_PAGE) {
      throw new IommuError("EINVAL", op, `page size ${pgsize} is not supported; only 4096 is`);
    }
    if (!Number.isInteger(iova) || iova % FLAT_PAGE || !Number.isInteger(pgcount) || pgcount < 1) {
      throw new IommuError(
        "EINVAL",
        op,
        `iova must be 4 KiB aligned and pgcount a positive integer`,
      );
    }
    const mem = this.#m.mem;
    let n = 0;
    for (; n < pgcount; n++) {
      const va = iova + n * FLAT_PAGE;
      if (va < APERTURE_START || va >= this.owner.apertureEnd) break;
      const a = this.#pte(va);
      if ((mem.read32(a) & PTE_V) === 0) break;
      mem.write64(a, 0, 0);
      gather.addPage(this, va, FLAT_PAGE);
    }
    return n * FLAT_PAGE;
  }

  /** Invalidate what the gather collected (the flat IOMMU can only invalidate everything). */
  iotlbSync(gather: IotlbGather): void {
    if (!gather.empty) this.owner.invalidateAll();
  }

  /** Invalidate everything. */
  flushIotlbAll(): void {
    this.owner.invalidateAll();
  }

  /** The PA `iova` maps to, or 0. */
  iovaToPhys(iova: number): number {
    if (!(iova >= APERTURE_START && iova < this.owner.apertureEnd)) return 0;
    const a = this.#pte(Math.floor(iova / FLAT_PAGE) * FLAT_PAGE);
    const lo = this.#m.mem.read32(a);
    if ((lo & PTE_V) === 0) return 0;
    const hi = this.#m.mem.read32(a + 4) & 0xfffff;
    return hi * TWO32 + ((lo & 0xfffff000) >>> 0) + (iova % FLAT_PAGE);
  }

  /** Return the table to the page allocator. */
  free(): void {
    this.#live("domain_free");
    this.#freed = true;
    this.#m.pages.free(this.table);
  }
}
