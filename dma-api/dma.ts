/**
 * @module
 * The DMA API of one device (`dma_map_single` & co., dma-iommu.c about
 * v6.9): IOVA allocation with the 32-bit-first attempt, `iommu_map`,
 * strict unmap (invalidate and sync before the IOVA is reused) or lazy
 * unmap through the flush queue, swiotlb bouncing for untrusted devices,
 * dma-direct for identity domains and devices without an IOMMU, and DMA
 * with PASID sharing the RID2PASID page table.
 *
 * Entry point: {@link dmaDevice}(core, dev). One DMA layer (IOVA cookies per
 * domain, the bounce pool, counters) exists per iommu core.
 */

import {
  DomainType,
  IOMMU_MMIO,
  IOMMU_PASID_INVALID,
  type IommuDomain,
  IommuError,
  type IommuOps,
  IotlbGather,
  type Machine,
  type PciDevice,
  pgsizeMin,
  type ResvRegion,
} from "@iommu-lab/core";
import { IovaDomain } from "./iova.ts";
import { FlushQueue } from "./flush-queue.ts";
import { Swiotlb } from "./swiotlb.ts";
import { DmaDirection, dmaInfoToProt } from "./prot.ts";

/** The part of the iommu core (`IommuCore`) the DMA layer uses. */
export interface DmaIommuCore {
  /** The machine. */
  readonly machine: Machine;
  /** The device's IOMMU driver; throws ENODEV when it has none. */
  opsOf(dev: PciDevice): IommuOps;
  /** `iommu_get_dma_domain`: the group's default domain. */
  defaultDomainOf(dev: PciDevice): IommuDomain | null;
  /** The group of `dev`. */
  groupOf(dev: PciDevice): unknown;
  /** Reserved regions of a group. */
  getGroupResvRegions(group: never): ResvRegion[];
  /** `iommu_map`. */
  map(domain: IommuDomain, iova: number, paddr: number, size: number, prot: number): void;
  /** `iommu_unmap_fast`. */
  unmapFast(domain: IommuDomain, iova: number, size: number, gather: IotlbGather): number;
  /** `iommu_iotlb_sync`. */
  iotlbSync(domain: IommuDomain, gather: IotlbGather): void;
  /** `iommu_flush_iotlb_all`. */
  flushIotlbAll(domain: IommuDomain): void;
  /** `iommu_iova_to_phys`. */
  iovaToPhys(domain: IommuDomain, iova: number): number;
  /** `iommu_attach_device_pasid`. */
  attachDevicePasid(domain: IommuDomain, dev: PciDevice, pasid: number): void;
  /** `iommu_detach_device_pasid`. */
  detachDevicePasid(domain: IommuDomain, dev: PciDevice, pasid: number): void;
  /** `iommu_alloc_global_pasid`. */
  allocGlobalPasid(dev: PciDevice): number;
  /** `iommu_free_global_pasid`. */
  freeGlobalPasid(pasid: number): void;
}

/** Counters of the DMA layer (`machine.trace.counters("dma-api", ...)`). */
export interface DmaApiCounters {
  /** Successful map calls (single, page, resource, sg, coherent). */
  maps: number;
  /** Unmap calls. */
  unmaps: number;
  /** Strict unmaps: one IOTLB invalidation + sync each. */
  strictSyncs: number;
  /** Unmaps queued on the flush queue. */
  fqQueued: number;
  /** Flush-alls done by the flush queue. */
  fqFlushes: number;
  /** Mappings bounced through swiotlb. */
  bounces: number;
  /** Map calls served by dma-direct (no translation). */
  directMaps: number;
  /** Map calls that failed (DMA_MAPPING_ERROR). */
  mapErrors: number;
  /** Sync-for-cpu / sync-for-device calls. */
  syncs: number;
  /** IOVAs allocated above 4 GiB after the 32-bit attempt failed. */
  dac: number;
  /** Any further counter. */
  [k: string]: number;
}

/** One allocation/mapping of the DMA API as the caller sees it. */
export interface DmaCoherent {
  /** CPU side: the physical address of the buffer. */
  cpuAddr: number;
  /** Device side: the DMA address. */
  dmaAddr: number;
  /** Size in bytes. */
  size: number;
}

/** A scatterlist entry. */
export interface SgEntry {
  /** Physical address of the segment. */
  paddr: number;
  /** Length in bytes. */
  length: number;
  /** Set by dmaMapSg: DMA address of the segment. */
  dmaAddress?: number;
}

/** Result of dmaMapSg. */
export interface SgMapping {
  /** DMA segments after merging (`nents` returned by dma_map_sg). */
  nents: number;
  /** The DMA segments (address, length). */
  segments: { dmaAddress: number; length: number }[];
  /** The one IOVA range the list occupies (iommu mode). */
  iova: number;
  /** Its length. */
  iovaLen: number;
}

/** Options of the DMA layer. */
export interface DmaLayerOptions {
  /** Bounce pool size in bytes (default 512 KiB, allocated on first use). */
  swiotlbBytes?: number;
  /** Model CPUs (magazines and flush-queue rings; default 1). */
  cpus?: number;
  /**
   * Use the single 32768-entry, 1 s flush queue for every domain, as if each
   * device had `shadow_on_flush` (which also selects it per device).
   */
  singleQueue?: boolean;
  /** Devices are DMA-coherent (adds IOMMU_CACHE; default true). */
  coherent?: boolean;
  /** `iommu.forcedac=1`: no 32-bit-first attempt for PCI devices. */
  forceDac?: boolean;
}

/** `struct iommu_dma_cookie` of one domain. */
export class DmaCookie {
  /** The IOVA space. */
  readonly iovad: IovaDomain;
  /** The layer it belongs to. */
  readonly layer: DmaLayer;
  /** The domain. */
  readonly domain: IommuDomain;
  /** `iommu_dma_init_domain` for `domain`, first used by `dev`. */
  constructor(layer: DmaLayer, domain: IommuDomain, dev: PciDevice) {
    this.layer = layer;
    this.domain = domain;
    const core = layer.core;
    const granule = pgsizeMin(domain.pgsizeBitmap);
    if (granule > 0x8000_0000) {
      throw new IommuError(
        "EINVAL",
        "iommu_dma_init_domain",
        `smallest page size 0x${granule.toString(16)} is above 2 GiB; allowed: up to 2 GiB`,
      );
    }
    let basePfn = 1;
    if (domain.geometry.forceAperture) {
      basePfn = Math.max(basePfn, Math.floor(domain.geometry.apertureStart / granule));
    }
    this.iovad = new IovaDomain(granule, basePfn, {
      cpus: layer.cpus,
      timer: core.machine.clock,
    });
    // iova_reserve_iommu_regions: everything but SW_MSI (we manage that one).
    const regions = core.getGroupResvRegions(core.groupOf(dev) as never);
    for (const r of regions) {
      if (r.type === "SW_MSI" || r.length <= 0) continue;
      this.iovad.reserveIova(
        Math.floor(r.start / granule),
        Math.floor((r.start + r.length - 1) / granule),
      );
    }
    this.#dev = dev;
    this.granuleMask = granule - 1;
    this.pfn32 = Math.floor(0xffffffff / granule);
  }

  readonly #dev: PciDevice;
  #fq: FlushQueue | null = null;
  /** `granule - 1` (the granule is a power of two of at most 2^31 here: see {@link DmaCookie.offsetOf}). */
  readonly granuleMask: number = 0;
  /** Last PFN below 4 GiB (`DMA_BIT_MASK(32) >> shift`). */
  readonly pfn32: number = 0;
  #limit = -1;
  #limitPfn = 0;

  /** Offset of the integer `addr >= 0` in its granule: the low word decides it (no float modulo). */
  offsetOf(addr: number): number {
    return (addr >>> 0) & this.granuleMask;
  }

  /** Bytes of whole granules covering `size` bytes that start `off` bytes into a granule. */
  spanOf(size: number, off: number): number {
    const t = size + off + this.granuleMask;
    if (t < 0x8000_0000) return t & ~this.granuleMask;
    const g = this.iovad.granule;
    return Math.floor(t / g) * g;
  }

  /** `limit >> shift` (the last call's answer is kept: callers pass the same mask again and again). */
  limitPfn(limit: number): number {
    if (limit !== this.#limit) {
      this.#limit = limit;
      this.#limitPfn = Math.floor(limit / this.iovad.granule);
    }
    return this.#limitPfn;
  }

  /**
   * The flush queue when the domain is DMA_FQ and the driver can defer
   * flushes (`iommu_dma_init_fq`, also after a live DMA -> DMA-FQ switch);
   * null in strict mode.
   */
  get fq(): FlushQueue | null {
    if (
      !this.#fq && this.domain.type === DomainType.DMA_FQ &&
      this.layer.core.opsOf(this.#dev).capable(this.#dev, "DEFERRED_FLUSH")
    ) {
      this.#fq = this.#newFq();
    }
    return this.#fq;
  }

  #newFq(): FlushQueue {
    const layer = this.layer, core = layer.core, domain = this.domain, granule = this.granule;
    const trace = core.machine.trace, iovad = this.iovad;
    return new FlushQueue({
      clock: core.machine.clock,
      flushAll: () => {
        layer.counters.fqFlushes++;
        if (trace.observed) {
          trace.emit("dma-api", "dma:fq_flush", {
            pending: this.#fq ? this.#fq.pending : 0,
          });
        }
        core.flushIotlbAll(domain);
      },
      release: (pfn, pages, freelist, cpu) => {
        if (trace.observed) {
          trace.emit("dma-api", "dma:fq_release", {
            iova: pfn * granule,
            size: pages * granule,
          });
        }
        iovad.freeIovaFast(pfn, pages, cpu);
        if (freelist.length !== 0) layer.freePages(freelist);
      },
    }, {
      cpus: layer.cpus,
      // iommu_dma_init_options: the single large queue for shadow_on_flush devices.
      single: layer.singleQueue || this.#dev.iommu?.shadowOnFlush === true,
    });
  }

  /** Allocation granule. */
  get granule(): number {
    return this.iovad.granule;
  }
}

/** The DMA layer of one iommu core: cookies per domain, the bounce pool, counters. */
export class DmaLayer {
  /** Counters. */
  readonly counters: DmaApiCounters;
  /** Model CPUs. */
  readonly cpus: number;
  /** Single flush queue. */
  readonly singleQueue: boolean;
  /** Coherent devices. */
  readonly coherent: boolean;
  /** `iommu.forcedac`. */
  readonly forceDac: boolean;
  readonly #cookies = new WeakMap<IommuDomain, DmaCookie>();
  #swiotlb: Swiotlb | null = null;
  readonly #swiotlbBytes: number;

  /** The iommu core. */
  readonly core: DmaIommuCore;
  /** The layer over `core`. */
  constructor(core: DmaIommuCore, opts: DmaLayerOptions = {}) {
    this.core = core;
    this.cpus = opts.cpus ?? 1;
    this.singleQueue = opts.singleQueue ?? false;
    this.coherent = opts.coherent ?? true;
    this.forceDac = opts.forceDac ?? false;
    this.#swiotlbBytes = opts.swiotlbBytes ?? 512 * 1024;
    this.counters = core.machine.trace.counters<DmaApiCounters>("dma-api", {
      maps: 0,
      unmaps: 0,
      strictSyncs: 0,
      fqQueued: 0,
      fqFlushes: 0,
      bounces: 0,
      directMaps: 0,
      mapErrors: 0,
      syncs: 0,
      dac: 0,
    });
  }

  #lastDomain: IommuDomain | null = null;
  #lastCookie: DmaCookie | null = null;

  /** The cookie of `domain`, created (iommu_dma_init_domain) on first use by `dev`. */
  cookieOf(domain: IommuDomain, dev: PciDevice): DmaCookie {
    if (domain === this.#lastDomain) return this.#lastCookie!;
    let c = this.#cookies.get(domain);
    if (!c) {
      c = new DmaCookie(this, domain, dev);
      this.#cookies.set(domain, c);
    }
    this.#lastDomain = domain;
    this.#lastCookie = c;
    return c;
  }

  /** The bounce pool (allocated from the page allocator on first use). */
  get swiotlb(): Swiotlb {
    if (!this.#swiotlb) {
      const pages = Math.ceil(this.#swiotlbBytes / 4096);
      const order = Math.min(10, Math.ceil(Math.log2(pages)));
      const base = this.core.machine.pages.allocPages(order);
      this.#swiotlb = new Swiotlb(this.core.machine.mem, base, 4096 * 2 ** order);
    }
    return this.#swiotlb;
  }

  /** Release page-table pages a flush covered. */
  freePages(list: readonly number[]): void {
    const pages = this.core.machine.pages;
    for (const p of list) if (pages.isAllocated(p)) pages.free(p);
  }
}

const layers = new WeakMap<object, DmaLayer>();

/** The DMA layer of `core` (created with `opts` on first call). */
export function dmaLayer(core: DmaIommuCore, opts?: DmaLayerOptions): DmaLayer {
  let l = layers.get(core);
  if (!l) {
    l = new DmaLayer(core, opts);
    layers.set(core, l);
  }
  return l;
}

/** The DMA API of `dev` on `core`: the one entry point drivers use. */
export function dmaDevice(core: DmaIommuCore, dev: PciDevice, opts?: DmaLayerOptions): DmaApi {
  return new DmaApi(dmaLayer(core, opts), dev);
}

/** Fault injection for scenarios and tests: deliberately wrong DMA-layer behaviour. */
export interface DmaInjection {
  /** Strict unmap skips the IOTLB sync (a missed invalidation). */
  skipIotlbSync: boolean;
}

/** The DMA API of one device. */
export class DmaApi {
  /** The device. */
  readonly dev: PciDevice;
  /** The layer. */
  readonly layer: DmaLayer;
  /** The model CPU this driver runs on (magazines, flush-queue ring). */
  cpu = 0;
  /** `dev->iommu->pci_32bit_workaround`: try IOVAs below 4 GiB first. */
  pci32bitWorkaround = true;
  /** Fault injection. */
  readonly inject: DmaInjection = { skipIotlbSync: false };
  /** PASID from {@link DmaApi.enablePasid}, or IOMMU_PASID_INVALID. */
  pasid: number = IOMMU_PASID_INVALID;
  #pasidDomain: IommuDomain | null = null;
  readonly #gather = new IotlbGather();
  readonly #trc: DmaIommuCore["machine"]["trace"];
  readonly #counters: DmaApiCounters;

  /** The DMA API of `dev` in `layer`. */
  constructor(layer: DmaLayer, dev: PciDevice) {
    this.layer = layer;
    this.dev = dev;
    this.pci32bitWorkaround = !layer.forceDac;
    this.#trc = layer.core.machine.trace;
    this.#counters = layer.counters;
  }

  get #core(): DmaIommuCore {
    return this.layer.core;
  }

  /** The DMA domain, or null for dma-direct (no IOMMU, or an identity/blocked default domain). */
  domain(): IommuDomain | null {
    let d: IommuDomain | null;
    try {
      d = this.#core.defaultDomainOf(this.dev);
    } catch {
      return null;
    }
    if (!d || (d.type & 2) === 0) return null; // not __IOMMU_DOMAIN_DMA_API
    return d;
  }

  /** `"iommu"` (strict), `"iommu-lazy"` or `"direct"`. */
  get mode(): "iommu" | "iommu-lazy" | "direct" {
    const d = this.domain();
    if (!d) return "direct";
    return this.layer.cookieOf(d, this.dev).fq ? "iommu-lazy" : "iommu";
  }

  /** `dma_get_mask`. */
  get dmaMask(): number {
    return this.dev.dmaMask;
  }

  /** `dma_set_mask`: `bits` 12..64. */
  dmaSetMask(bits: number): void {
    if (!Number.isInteger(bits) || bits < 12 || bits > 64) {
      throw new IommuError("EIO", "dma_set_mask", `DMA mask width ${bits} is outside 12..64`);
    }
    this.dev.dmaBits = bits;
  }

  /** True when trace events would be seen (test before building an event). */
  get #traced(): boolean {
    return this.#trc.observed;
  }

  #trace(name: string, fields: Record<string, number | string | boolean>): void {
    this.#trc.emit("dma-api", name, { dev: this.dev.name, ...fields });
  }

  #mapError(op: string, why: string): never {
    this.layer.counters.mapErrors++;
    throw new IommuError("ENOMEM", op, `${this.dev.name}: DMA_MAPPING_ERROR: ${why}`);
  }

  /** `iommu_dma_alloc_iova`: returns the IOVA (bytes) or 0. */
  #allocIova(cookie: DmaCookie, domain: IommuDomain, size: number, dmaLimit: number): number {
    const iovad = cookie.iovad;
    const shift = iovad.granule;
    const len = size / shift;
    let limit = dmaLimit;
    const geo = domain.geometry;
    if (geo.forceAperture && geo.apertureEnd < limit) limit = geo.apertureEnd;
    if (limit > 0xffffffff && this.pci32bitWorkaround) {
      const pfn = iovad.allocIovaFast(len, cookie.pfn32, false, this.cpu);
      if (pfn) return pfn * shift;
      this.pci32bitWorkaround = false;
      this.#counters.dac++;
      if (this.#traced) this.#trace("dma:using_dac", { bits: Math.ceil(Math.log2(limit + 1)) });
    }
    const pfn = iovad.allocIovaFast(len, cookie.limitPfn(limit), true, this.cpu);
    return pfn * shift;
  }

  /** `__iommu_dma_map`: map `[phys, phys+size)` and return the DMA address. */
  #iommuMap(
    op: string,
    domain: IommuDomain,
    cookie: DmaCookie,
    phys: number,
    size: number,
    prot: number,
    dmaMask: number,
  ): number {
    const off = cookie.offsetOf(phys);
    const len = cookie.spanOf(size, off);
    const iova = this.#allocIova(cookie, domain, len, dmaMask);
    if (!iova) {
      this.#mapError(op, `no free IOVA range of ${len} bytes below 0x${dmaMask.toString(16)}`);
    }
    try {
      this.layer.core.map(domain, iova, phys - off, len, prot);
    } catch (e) {
      const g = cookie.iovad.granule;
      cookie.iovad.freeIovaFast(iova / g, len / g, this.cpu);
      this.#counters.mapErrors++;
      throw e;
    }
    this.#counters.maps++;
    return iova + off;
  }

  /** `__iommu_dma_unmap`: unmap, then sync (strict) or queue (lazy), and free the IOVA. */
  #iommuUnmap(domain: IommuDomain, dmaAddr: number, size: number): void {
    const cookie = this.layer.cookieOf(domain, this.dev);
    const g = cookie.iovad.granule;
    const off = cookie.offsetOf(dmaAddr);
    const iova = dmaAddr - off;
    const len = cookie.spanOf(size, off);
    const fq = cookie.fq;
    const gather = this.#gather.init();
    gather.queued = fq !== null;
    const core = this.layer.core;
    const unmapped = core.unmapFast(domain, iova, len, gather);
    if (unmapped !== len) {
      throw new IommuError(
        "EINVAL",
        "dma_unmap",
        `${this.dev.name}: 0x${dmaAddr.toString(16)}+0x${
          size.toString(16)
        } unmapped ${unmapped} of ${len} bytes: not a live mapping of this device`,
      );
    }
    const c = this.#counters;
    c.unmaps++;
    if (fq !== null) {
      c.fqQueued++;
      if (this.#traced) {
        this.#trace("dma:fq_queue", { iova, size: len, pending: fq.pending + 1 });
      }
      fq.queueIova(iova / g, len / g, gather.freelist, this.cpu);
    } else {
      if (!this.inject.skipIotlbSync) {
        core.iotlbSync(domain, gather);
        c.strictSyncs++;
      }
      cookie.iovad.freeIovaFast(iova / g, len / g, this.cpu);
    }
  }

  /** Does a mapping of `[phys, phys+size)` need bouncing (`dev_use_swiotlb` && unaligned)? */
  #needsBounce(cookie: DmaCookie, phys: number, size: number): boolean {
    return this.dev.untrusted && (cookie.offsetOf(phys) !== 0 || cookie.offsetOf(size) !== 0);
  }

  /**
   * `dma_map_page_attrs` / `dma_map_single`: map `size` bytes at physical
   * `phys` for DMA in direction `dir`; returns the DMA address. Throws
   * ENOMEM (DMA_MAPPING_ERROR) when no IOVA or bounce slot is free.
   */
  dmaMapSingle(phys: number, size: number, dir: DmaDirection, attrs = 0): number {
    const op = "dma_map_page";
    checkDmaArgs(op, phys, size, dir);
    const domain = this.domain();
    if (!domain) return this.#directMap(op, phys, size, dir);
    const cookie = this.layer.cookieOf(domain, this.dev);
    const g = cookie.iovad.granule;
    let p = phys;
    let bounced = false;
    if (this.#needsBounce(cookie, phys, size)) {
      const pool = this.layer.swiotlb;
      try {
        p = pool.mapSingle(phys, size, g - 1);
      } catch (e) {
        this.layer.counters.mapErrors++;
        throw e;
      }
      bounced = true;
      this.layer.counters.bounces++;
      if (this.#traced) this.#trace("swiotlb_bounced", { phys, size });
      // Untrusted devices must not see leftovers around the buffer: zero the padding.
      const mem = this.#core.machine.mem;
      const pre = p - Math.floor(p / g) * g;
      if (pre) mem.fill(p - pre, pre, 0);
      const end = p + size;
      const post = Math.ceil(end / g) * g - end;
      if (post) mem.fill(end, post, 0);
    }
    try {
      const prot = dmaInfoToProt(dir, this.layer.coherent, attrs);
      const dma = this.#iommuMap(op, domain, cookie, p, size, prot, this.dev.dmaMask);
      if (this.#traced) this.#trace("dma:dma_map_page", { phys, dma, size, dir, bounced });
      return dma;
    } catch (e) {
      if (bounced) this.layer.swiotlb.unmapSingle(p, size, DmaDirection.TO_DEVICE);
      throw e;
    }
  }

  /** `dma_map_page`: same as {@link DmaApi.dmaMapSingle} with a page address and offset. */
  dmaMapPage(page: number, offset: number, size: number, dir: DmaDirection, attrs = 0): number {
    return this.dmaMapSingle(page + offset, size, dir, attrs);
  }

  #directMap(op: string, phys: number, size: number, dir: DmaDirection): number {
    if (phys + size - 1 > this.dmaMask) {
      this.#mapError(
        op,
        `0x${phys.toString(16)}+0x${
          size.toString(16)
        } is beyond the ${this.dev.dmaBits}-bit DMA mask (dma-direct)`,
      );
    }
    this.layer.counters.directMaps++;
    this.layer.counters.maps++;
    if (this.#traced) {
      this.#trace("dma:dma_map_page", { phys, dma: phys, size, dir, bounced: false });
    }
    return phys;
  }

  /** `dma_unmap_page` / `dma_unmap_single`. */
  dmaUnmapSingle(dmaAddr: number, size: number, dir: DmaDirection, attrs = 0): void {
    const domain = this.domain();
    if (!domain) {
      this.layer.counters.unmaps++;
      if (this.#traced) this.#trace("dma:dma_unmap_page", { dma: dmaAddr, size, dir });
      return;
    }
    // Only an untrusted device's mapping can be a bounce buffer (iova_to_phys first, as the kernel).
    const phys = this.dev.untrusted ? this.#core.iovaToPhys(domain, dmaAddr) : 0;
    this.#iommuUnmap(domain, dmaAddr, size);
    if (this.#traced) this.#trace("dma:dma_unmap_page", { dma: dmaAddr, size, dir });
    void attrs;
    if (this.dev.untrusted) {
      const pool = this.layer.swiotlb;
      if (pool.contains(phys)) pool.unmapSingle(phys, size, dir);
    }
  }

  /** `dma_unmap_page`. */
  dmaUnmapPage(dmaAddr: number, size: number, dir: DmaDirection, attrs = 0): void {
    this.dmaUnmapSingle(dmaAddr, size, dir, attrs);
  }

  /** `dma_sync_single_for_cpu`: bounce back FROM_DEVICE/BIDIRECTIONAL data. */
  dmaSyncSingleForCpu(dmaAddr: number, size: number, dir: DmaDirection): void {
    this.layer.counters.syncs++;
    const domain = this.domain();
    if (!domain || !this.dev.untrusted) return;
    const phys = this.#core.iovaToPhys(domain, dmaAddr);
    if (this.layer.swiotlb.contains(phys)) this.layer.swiotlb.syncForCpu(phys, size, dir);
  }

  /** `dma_sync_single_for_device`: refresh the bounce copy for TO_DEVICE/BIDIRECTIONAL. */
  dmaSyncSingleForDevice(dmaAddr: number, size: number, dir: DmaDirection): void {
    this.layer.counters.syncs++;
    const domain = this.domain();
    if (!domain || !this.dev.untrusted) return;
    const phys = this.#core.iovaToPhys(domain, dmaAddr);
    if (this.layer.swiotlb.contains(phys)) this.layer.swiotlb.syncForDevice(phys, size, dir);
  }

  /** `dma_map_resource`: map MMIO (no bouncing), adds IOMMU_MMIO. */
  dmaMapResource(phys: number, size: number, dir: DmaDirection, attrs = 0): number {
    checkDmaArgs("dma_map_resource", phys, size, dir);
    const domain = this.domain();
    if (!domain) return this.#directMap("dma_map_resource", phys, size, dir);
    const prot = dmaInfoToProt(dir, false, attrs) | IOMMU_MMIO;
    const cookie = this.layer.cookieOf(domain, this.dev);
    return this.#iommuMap("dma_map_resource", domain, cookie, phys, size, prot, this.dmaMask);
  }

  /** `dma_unmap_resource`. */
  dmaUnmapResource(dmaAddr: number, size: number): void {
    const domain = this.domain();
    this.layer.counters.unmaps++;
    if (domain) {
      this.layer.counters.unmaps--;
      this.#iommuUnmap(domain, dmaAddr, size);
    }
  }

  /**
   * `dma_map_sg`: one contiguous IOVA range for the whole list (each
   * segment padded to the granule), mapped at once; contiguous segments
   * merge into one DMA segment up to `maxSegSize` (64 KiB default).
   * Untrusted devices map each segment separately (with bouncing).
   */
  dmaMapSg(sg: SgEntry[], dir: DmaDirection, attrs = 0, maxSegSize = 65536): SgMapping {
    if (sg.length === 0) {
      throw new IommuError("EINVAL", "dma_map_sg", "empty scatterlist: give at least one segment");
    }
    for (let i = 0; i < sg.length; i++) {
      checkDmaArgs(`dma_map_sg segment ${i}`, sg[i].paddr, sg[i].length, dir);
    }
    const domain = this.domain();
    if (!domain || this.dev.untrusted) {
      // Segment by segment; a failure unmaps the segments already mapped.
      const segments: { dmaAddress: number; length: number }[] = [];
      try {
        for (const s of sg) {
          s.dmaAddress = this.dmaMapSingle(s.paddr, s.length, dir, attrs);
          segments.push({ dmaAddress: s.dmaAddress, length: s.length });
        }
      } catch (e) {
        for (const m of segments) this.dmaUnmapSingle(m.dmaAddress, m.length, dir, attrs);
        throw e;
      }
      return { nents: segments.length, segments, iova: segments[0].dmaAddress, iovaLen: 0 };
    }
    const cookie = this.layer.cookieOf(domain, this.dev);
    const g = cookie.granule;
    let total = 0;
    for (const s of sg) total += Math.ceil(((s.paddr % g) + s.length) / g) * g;
    const iova = this.#allocIova(cookie, domain, total, this.dmaMask);
    if (!iova) this.#mapError("dma_map_sg", `no free IOVA range of ${total} bytes`);
    const prot = dmaInfoToProt(dir, this.layer.coherent, attrs);
    let at = iova;
    let done = 0;
    try {
      for (const s of sg) {
        const off = s.paddr % g;
        const len = Math.ceil((off + s.length) / g) * g;
        this.#core.map(domain, at, s.paddr - off, len, prot);
        done += len;
        s.dmaAddress = at + off;
        at += len;
      }
    } catch (e) {
      if (done) {
        const gather = this.#gather.init();
        this.#core.unmapFast(domain, iova, done, gather);
        this.#core.iotlbSync(domain, gather);
      }
      cookie.iovad.freeIovaFast(iova / g, total / g, this.cpu);
      this.layer.counters.mapErrors++;
      throw e;
    }
    // __finalise_sg: merge segments contiguous in IOVA space.
    const segments: { dmaAddress: number; length: number }[] = [];
    for (const s of sg) {
      const last = segments[segments.length - 1];
      if (
        last && last.dmaAddress + last.length === s.dmaAddress &&
        last.length + s.length <= maxSegSize
      ) {
        last.length += s.length;
      } else segments.push({ dmaAddress: s.dmaAddress!, length: s.length });
    }
    this.layer.counters.maps++;
    if (this.#traced) {
      this.#trace("dma:dma_map_sg", {
        iova,
        size: total,
        nents: sg.length,
        dma_nents: segments.length,
      });
    }
    return { nents: segments.length, segments, iova, iovaLen: total };
  }

  /** `dma_unmap_sg`: unmap what {@link DmaApi.dmaMapSg} mapped. */
  dmaUnmapSg(m: SgMapping, dir: DmaDirection): void {
    const domain = this.domain();
    if (!domain || m.iovaLen === 0) {
      for (const s of m.segments) this.dmaUnmapSingle(s.dmaAddress, s.length, dir);
      return;
    }
    this.#iommuUnmap(domain, m.iova, m.iovaLen);
  }

  /**
   * `dma_alloc_coherent`: zeroed pages from the page allocator, mapped
   * BIDIRECTIONAL (coherent) below the DMA mask.
   */
  dmaAllocCoherent(size: number, attrs = 0): DmaCoherent {
    if (!(size > 0)) {
      throw new IommuError("EINVAL", "dma_alloc_coherent", `size ${size} must be > 0`);
    }
    const pages = Math.ceil(size / 4096);
    const order = Math.ceil(Math.log2(pages));
    const cpuAddr = this.#core.machine.pages.allocPages(order);
    const bytes = 4096 * 2 ** order;
    const domain = this.domain();
    try {
      let dmaAddr: number;
      if (!domain) dmaAddr = this.#directMap("dma_alloc_coherent", cpuAddr, bytes, 0);
      else {
        const prot = dmaInfoToProt(DmaDirection.BIDIRECTIONAL, true, attrs);
        const cookie = this.layer.cookieOf(domain, this.dev);
        dmaAddr = this.#iommuMap(
          "dma_alloc_coherent",
          domain,
          cookie,
          cpuAddr,
          size,
          prot,
          this.dmaMask,
        );
      }
      if (this.#traced) this.#trace("dma:dma_alloc", { phys: cpuAddr, dma: dmaAddr, size });
      return { cpuAddr, dmaAddr, size };
    } catch (e) {
      this.#core.machine.pages.free(cpuAddr);
      throw e;
    }
  }

  /** `dma_free_coherent`. */
  dmaFreeCoherent(c: DmaCoherent): void {
    const domain = this.domain();
    if (domain) this.#iommuUnmap(domain, c.dmaAddr, c.size);
    else this.layer.counters.unmaps++;
    this.#core.machine.pages.free(c.cpuAddr);
    if (this.#traced) {
      this.#trace("dma:dma_free", { phys: c.cpuAddr, dma: c.dmaAddr, size: c.size });
    }
  }

  /** Flush the lazy queue now (e.g. before checking a device can no longer reach an unmapped page). */
  flushQueue(): void {
    const d = this.domain();
    if (d) this.layer.cookieOf(d, this.dev).fq?.drain();
  }

  /**
   * DMA with PASID: allocate a global PASID and attach it to the device's
   * default domain (the RID2PASID page table), so the same DMA addresses
   * work with and without PASID and every invalidation covers both. The
   * addressing mode follows the platform's default domain (identity or
   * translated), not the driver's choice. Returns the PASID.
   */
  enablePasid(): number {
    if (this.pasid !== IOMMU_PASID_INVALID) return this.pasid;
    const op = "dma_enable_pasid";
    let domain: IommuDomain | null;
    try {
      domain = this.#core.defaultDomainOf(this.dev);
    } catch (e) {
      throw new IommuError("ENODEV", op, `${this.dev.name} has no IOMMU: ${(e as Error).message}`);
    }
    if (!domain) throw new IommuError("ENODEV", op, `${this.dev.name} has no default domain`);
    const pasid = this.#core.allocGlobalPasid(this.dev);
    if (pasid === IOMMU_PASID_INVALID) {
      throw new IommuError(
        "EOPNOTSUPP",
        op,
        `${this.dev.name} has no PASID capability (max_pasids is 0)`,
      );
    }
    try {
      this.#core.attachDevicePasid(domain, this.dev, pasid);
    } catch (e) {
      this.#core.freeGlobalPasid(pasid);
      throw e;
    }
    this.pasid = pasid;
    this.#pasidDomain = domain;
    if (this.#traced) this.#trace("dma:pasid_enable", { pasid });
    return pasid;
  }

  /** Undo {@link DmaApi.enablePasid}. */
  disablePasid(): void {
    if (this.pasid === IOMMU_PASID_INVALID || !this.#pasidDomain) return;
    this.#core.detachDevicePasid(this.#pasidDomain, this.dev, this.pasid);
    this.#core.freeGlobalPasid(this.pasid);
    this.pasid = IOMMU_PASID_INVALID;
    this.#pasidDomain = null;
  }
}

/**
 * Validate a DMA API buffer and direction before anything is allocated:
 * EINVAL unless `phys` is an integer ≥ 0, `size` an integer > 0, the buffer
 * ends at or below 2^53, and `dir` is BIDIRECTIONAL, TO_DEVICE or
 * FROM_DEVICE (the kernel's `valid_dma_direction`; DMA_NONE is refused).
 */
function checkDmaArgs(op: string, phys: number, size: number, dir: number): void {
  if (
    size > 0 && phys >= 0 && Number.isInteger(size) && Number.isInteger(phys) &&
    phys + size <= 2 ** 53 && (dir === 0 || dir === 1 || dir === 2)
  ) {
    return;
  }
  if (dir !== 0 && dir !== 1 && dir !== 2) {
    throw new IommuError(
      "EINVAL",
      op,
      `DMA direction ${dir} is not valid: use BIDIRECTIONAL (0), TO_DEVICE (1) or FROM_DEVICE (2)`,
    );
  }
  throw new IommuError(
    "EINVAL",
    op,
    `buffer ${phys}+${size}: the address must be an integer >= 0, the size an integer > 0, ` +
      "and the buffer must end at or below 2^53",
  );
}
