/**
 * @module
 * The SMMUv3 driver's domains: paging domains (`struct arm_smmu_domain`,
 * stage 1 or stage 2 over the core's LPAE io-pgtable), the static identity
 * and blocked domains, and nested domains (a guest vSTE over a stage-2 nest
 * parent). They ask their driver for every hardware change.
 */

import {
  allocIoPgtable,
  type DirtyBitmap,
  type DomainGeometry,
  DomainType,
  type FlushOps,
  type IommuDomain,
  IommuError,
  type IoPgtable,
  IoPgtableQuirk,
  type IotlbGather,
  type MmHandle,
  type PciDevice,
} from "@iommu-lab/core";
import { makeS1Cd } from "./entry.ts";
import type { Master, SmmuV3Driver, StageKind } from "./driver.ts";

/** `__ffs`: index of the lowest set bit of a positive integer. */
export function ffs(x: number): number {
  if (x > 0 && x <= 0x7fff_ffff && Number.isInteger(x)) return 31 - Math.clz32(x & -x);
  let n = 0;
  while (x % 2 === 0) {
    x /= 2;
    n++;
  }
  return n;
}

/**
 * Identity and blocked domains. As in arm-smmu-v3 (v6.10 through v6.17),
 * only the blocked domain has `set_dev_pasid` (it clears the PASID's CD):
 * the identity domain cannot be attached to a PASID (the core answers
 * EOPNOTSUPP). A PASID may still be used while the RID is identity or
 * blocked: the STE then points at the CD table with S1DSS=BYPASS or
 * TERMINATE (see {@link SmmuV3Driver.setPasid}).
 */
export class StaticDomain implements IommuDomain {
  /** IDENTITY or BLOCKED. */
  readonly type: DomainType;
  /** Its driver. */
  readonly owner: SmmuV3Driver;
  /** No page sizes. */
  pgsizeBitmap = 0;
  /** No aperture. */
  geometry: DomainGeometry = { apertureStart: 0, apertureEnd: 0, forceAperture: false };
  /** "identity" or "blocked". */
  readonly label: string;
  /**
   * Blocked only (`arm_smmu_blocking_set_dev_pasid`): clear the PASID's CD;
   * the last PASID gone, an identity/blocked RID returns to its plain STE.
   * Undefined for the identity domain.
   */
  readonly setDevPasid?: (dev: PciDevice, pasid: number, old?: IommuDomain | null) => void;

  /** A static domain of `type`. */
  constructor(owner: SmmuV3Driver, type: DomainType) {
    this.owner = owner;
    this.type = type;
    this.label = type === DomainType.IDENTITY ? "identity" : "blocked";
    if (type === DomainType.BLOCKED) {
      this.setDevPasid = (dev: PciDevice, pasid: number): void => owner.setPasid(dev, pasid, null);
    }
  }

  /** Attach the RID: bypass or abort STE (a CD table STE with S1DSS while PASIDs are in use). */
  attachDev(dev: PciDevice, _old: IommuDomain | null = null): void {
    this.owner.attachRid(dev, this);
  }

  /** Static: nothing to free. */
  free(): void {}
}

/** `struct arm_smmu_domain`: a stage-1 or stage-2 paging domain. */
export class SmmuDomain implements IommuDomain {
  /** UNMANAGED (the core may retag it). */
  type: DomainType = DomainType.UNMANAGED;
  /** Its driver. */
  readonly owner: SmmuV3Driver;
  /** Stage. */
  readonly stage: StageKind;
  /** Page sizes. */
  pgsizeBitmap: number;
  /** Aperture. */
  geometry: DomainGeometry;
  /** ASID (stage 1) or VMID (stage 2). */
  id = 0;
  /** The page table. */
  pgtable: IoPgtable | null = null;
  /** Masters attached (RID or PASID). */
  readonly masters: Set<Master> = new Set();
  /** Smallest page size (the TLBI granule). */
  granule = 4096;
  #unmapping = false;
  #walkStart = Number.MAX_SAFE_INTEGER;
  #walkEnd = 0;
  /** Allocated with IOMMU_HWPT_ALLOC_NEST_PARENT. */
  nestParent = false;
  /** Allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING (HTTU dirty state, CD.HA/HD). */
  dirtyTracking = false;
  readonly #flush: FlushOps;

  /** A domain of `stage` (page table allocated at first use). */
  constructor(owner: SmmuV3Driver, stage: StageKind) {
    this.owner = owner;
    this.stage = stage;
    const ias = stage === "S1" ? 48 : Math.min(owner.info.oas, 48);
    this.pgsizeBitmap = owner.pgsizeBitmap;
    this.geometry = { apertureStart: 0, apertureEnd: 2 ** ias - 1, forceAperture: true };
    this.#flush = {
      tlbFlushAll: (): void => owner.flushAll(this),
      tlbFlushWalk: (iova: number, size: number, granule: number): void => {
        if (this.#unmapping) {
          // Tables freed by an unmap go to the gather's freelist and are reused only after
          // iotlb_sync, so their walk invalidation can join the sync's (one TLBI round).
          if (iova < this.#walkStart) this.#walkStart = iova;
          if (iova + size > this.#walkEnd) this.#walkEnd = iova + size;
        } else owner.invRange(this, iova, size, granule, false);
      },
      tlbAddPage: (gather: IotlbGather, iova: number, granule: number): void =>
        gather.addPage(this, iova, granule),
    };
  }

  /** arm_smmu_domain_finalise: ASID/VMID and page table (once). */
  finalise(): void {
    if (this.pgtable) return;
    const info = this.owner.info;
    const s1 = this.stage === "S1";
    const id = this.owner.allocId(this.stage);
    try {
      this.pgtable = allocIoPgtable(s1 ? "ARM_64_LPAE_S1" : "ARM_64_LPAE_S2", {
        quirks: this.dirtyTracking ? IoPgtableQuirk.ARM_HD : 0,
        pgsizeBitmap: this.pgsizeBitmap,
        ias: s1 ? 48 : Math.min(info.oas, 48),
        oas: info.oas,
        coherentWalk: true,
        tlb: this.#flush,
      }, { mem: this.owner.m.mem, pages: this.owner.m.pages });
    } catch (e) {
      this.owner.freeId(this.stage, id);
      throw e;
    }
    this.id = id;
    this.pgsizeBitmap = this.pgtable.cfg.pgsizeBitmap;
    this.granule = 2 ** ffs(this.pgsizeBitmap);
  }

  /** The CD of this stage-1 domain. */
  makeCd(master: Master, t: Uint32Array): Uint32Array {
    const s1 = this.pgtable!.s1!;
    // As the kernel: HA and HD together, only for dirty-tracking domains (IO_PGTABLE_QUIRK_ARM_HD).
    return makeS1Cd(t, this.id, s1.tcr, s1.ttbr, s1.mair, {
      ha: this.dirtyTracking,
      hd: this.dirtyTracking,
      stall: master.stallEnabled,
    });
  }

  /** `attach_dev`. */
  attachDev(dev: PciDevice, _old: IommuDomain | null = null): void {
    this.owner.attachRid(dev, this);
  }

  /** `set_dev_pasid`. */
  setDevPasid(dev: PciDevice, pasid: number, _old: IommuDomain | null = null): void {
    this.owner.setPasid(dev, pasid, this);
  }

  /** `map_pages`. */
  mapPages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): number {
    this.finalise();
    return this.pgtable!.mapPages(iova, paddr, pgsize, pgcount, prot);
  }

  /** `unmap_pages`. */
  unmapPages(iova: number, pgsize: number, pgcount: number, gather: IotlbGather): number {
    if (!this.pgtable) return 0;
    this.#unmapping = true;
    try {
      return this.pgtable.unmapPages(iova, pgsize, pgcount, gather);
    } finally {
      this.#unmapping = false;
    }
  }

  /**
   * `iotlb_sync`: invalidate the gathered range (leaf) and wait, then free
   * the table pages the unmap put on the gather's freelist (they may be
   * reused only once the SMMU can no longer walk them).
   */
  iotlbSync(gather: IotlbGather): void {
    if (!this.pgtable) return;
    if (this.#walkEnd > this.#walkStart) {
      // Freed tables: one non-leaf invalidation over the walks and the leaves.
      let start = this.#walkStart;
      let end = this.#walkEnd;
      if (!gather.empty) {
        start = Math.min(start, gather.start);
        end = Math.max(end, gather.end + 1);
      }
      this.#walkStart = Number.MAX_SAFE_INTEGER;
      this.#walkEnd = 0;
      this.owner.invRange(this, start, end - start, this.granule, false);
    } else if (!gather.empty) {
      this.owner.invRange(this, gather.start, gather.size, gather.pgsize, true);
    }
    const freelist = gather.freelist;
    if (freelist.length !== 0) {
      // Only when there is something to free: setting length runs the slow array setter.
      const pages = this.owner.m.pages;
      for (let i = 0; i < freelist.length; i++) pages.free(freelist[i]);
      freelist.length = 0;
    }
  }

  /** `flush_iotlb_all` (also covers walks pending from unmaps). */
  flushIotlbAll(): void {
    this.#walkStart = Number.MAX_SAFE_INTEGER;
    this.#walkEnd = 0;
    if (this.pgtable) this.owner.flushAll(this);
  }

  /** `iova_to_phys`. */
  iovaToPhys(iova: number): number {
    return this.pgtable ? this.pgtable.iovaToPhys(iova) : 0;
  }

  /** `set_dirty_tracking`: HD is always on in a dirty-tracking domain's CD, so nothing to do (as the kernel). */
  setDirtyTracking(_enable: boolean): void {
    if (!this.dirtyTracking) {
      throw new IommuError(
        "EINVAL",
        "arm_smmu_set_dirty_tracking",
        "the domain was not allocated for dirty tracking",
      );
    }
  }

  /** `read_and_clear_dirty`: the page table's dirty bits (DBM/AP[2] as the SMMU leaves them). */
  readAndClearDirty(iova: number, size: number, flags: number, dirty: DirtyBitmap): void {
    if (!this.dirtyTracking || !this.pgtable?.readAndClearDirty) {
      throw new IommuError(
        "EINVAL",
        "arm_smmu_read_and_clear_dirty",
        "the domain does not track dirty state",
      );
    }
    this.pgtable.readAndClearDirty(iova, size, flags, dirty);
  }

  /** `free`. */
  free(): void {
    if (this.masters.size > 0) {
      throw new IommuError("EBUSY", "arm_smmu_domain_free", "domain is still attached");
    }
    if (this.pgtable) {
      this.owner.flushAll(this);
      this.pgtable.free();
      this.owner.freeId(this.stage, this.id);
      this.pgtable = null;
    }
  }
}

/** A nested domain: a guest's stage-1 configuration over a stage-2 parent. */
export class NestedDomain implements IommuDomain {
  /** NESTED. */
  readonly type: DomainType = DomainType.NESTED;
  /** Its driver. */
  readonly owner: SmmuV3Driver;
  /** The stage-2 parent. */
  readonly parent: SmmuDomain;
  /** The guest's STE words 0-1 (as four 32-bit halves). */
  readonly vste: Uint32Array;
  /** No mappings of its own. */
  pgsizeBitmap = 0;
  /** The parent's aperture. */
  geometry: DomainGeometry;

  /** A nested domain over `parent` with the vSTE `vste`. */
  constructor(owner: SmmuV3Driver, parent: SmmuDomain, vste: Uint32Array) {
    this.owner = owner;
    this.parent = parent;
    this.vste = vste;
    this.geometry = parent.geometry;
  }

  /** Attach the RID: a NESTED (or abort / stage-2 bypass) STE. */
  attachDev(dev: PciDevice, _old: IommuDomain | null = null): void {
    this.owner.attachNested(dev, this);
  }

  /** Nothing of its own to free. */
  free(): void {}
}

/** The CPU MAIR the SVA CD carries (the model does not use memory attributes; the kernel's io-pgtable MAIR). */
const SVA_MAIR = 0xf404ff44n;

/**
 * An SVA domain (`arm_smmu_sva_domain_alloc`): a stage-1 CD over a CPU mm's
 * AArch64 page table (4K granule, 48-bit VA, `mm.pgdPhys` as TTB0) with an
 * ASID of its own; attached per PASID only. The mm owns the mappings, so
 * map/unmap are refused; the mm's notifier calls
 * {@link SvaDomain.invalidateSecondaryTlbs}.
 */
export class SvaDomain extends SmmuDomain {
  /** The shared mm. */
  mm: MmHandle;

  /** A domain sharing `mm`. */
  constructor(owner: SmmuV3Driver, mm: MmHandle) {
    super(owner, "S1");
    this.type = DomainType.SVA;
    this.mm = mm;
    this.pgsizeBitmap = 0;
    this.geometry = { apertureStart: 0, apertureEnd: 2 ** 48 - 1, forceAperture: true };
  }

  /** Allocate the ASID (once); there is no page table of our own. */
  override finalise(): void {
    if (this.id === 0) this.id = this.owner.allocId("S1");
  }

  /** `arm_smmu_make_sva_cd`: TTB0 = the mm's table, T0SZ for 48 bits, 4K granule, the domain's ASID. */
  override makeCd(master: Master, t: Uint32Array): Uint32Array {
    return makeS1Cd(
      t,
      this.id,
      { ips: 5, tg: 0, sh: 3, orgn: 1, irgn: 1, tsz: 16 },
      this.mm!.pgdPhys,
      SVA_MAIR,
      { ha: false, hd: false, stall: master.stallEnabled },
    );
  }

  /** Refused: an SVA domain is attached per PASID only. */
  override attachDev(_dev: PciDevice, _old: IommuDomain | null = null): void {
    throw new IommuError(
      "EINVAL",
      "arm_smmu_attach_dev",
      "an SVA domain can only be attached to a PASID",
    );
  }

  /** Refused: the mm owns the mappings. */
  override mapPages(): number {
    throw new IommuError("EOPNOTSUPP", "iommu_map", "an SVA domain's mappings belong to its mm");
  }

  /** Nothing of ours to unmap. */
  override unmapPages(): number {
    return 0;
  }

  /**
   * `arm_smmu_mm_arch_invalidate_secondary_tlbs(mm, start, end)`: `end` is
   * exclusive; a non-leaf range invalidation of the ASID (the whole ASID past
   * CMDQ_MAX_TLBI_OPS pages without range invalidation), then the ATCs.
   */
  invalidateSecondaryTlbs(start: number, end: number): void {
    if (this.id === 0) return;
    if (end - start >= 2 ** 48) this.owner.flushAll(this);
    else this.owner.invRange(this, start, end - start, 4096, false);
  }

  /** `iotlb_sync`: as a secondary-TLB invalidation of the gathered range. */
  override iotlbSync(gather: IotlbGather): void {
    if (!gather.empty) this.invalidateSecondaryTlbs(gather.start, gather.end + 1);
  }

  /** `flush_iotlb_all`: the whole ASID. */
  override flushIotlbAll(): void {
    if (this.id !== 0) this.owner.flushAll(this);
  }

  /** Not mapped by us: the mm's tables are walked by the SMMU. */
  override iovaToPhys(): number {
    return 0;
  }

  /** `free`: release the ASID after invalidating it. */
  override free(): void {
    if (this.masters.size > 0) {
      throw new IommuError("EBUSY", "arm_smmu_domain_free", "domain is still attached");
    }
    if (this.id !== 0) {
      this.owner.flushAll(this);
      this.owner.freeId("S1", this.id);
      this.id = 0;
    }
  }
}
