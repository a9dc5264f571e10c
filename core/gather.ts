/**
 * @module
 * `struct iommu_iotlb_gather` with the kernel's add-page and sync rules
 * (include/linux/iommu.h): a range `[start, end]` (end inclusive), the page
 * size, a freelist of page-table pages to release after the invalidation,
 * and `queued` (a flush queue will do a flush-all later instead of a sync).
 */

/** The domain side of the gather: what `addPage` calls when it must sync first. */
export interface GatherSyncTarget {
  /** `iotlb_sync`. */
  iotlbSync?(gather: IotlbGather): void;
}

/** `struct iommu_iotlb_gather`. */
export class IotlbGather {
  /** First IOVA gathered (MAX_SAFE_INTEGER when empty, as the kernel's ULONG_MAX). */
  start: number = Number.MAX_SAFE_INTEGER;
  /** Last IOVA gathered, inclusive (0 when empty). */
  end = 0;
  /** Page size of the gathered leaves (0 when none). */
  pgsize = 0;
  /** Physical addresses of table pages to free after the invalidation. */
  readonly freelist: number[] = [];
  /** True when a flush queue will invalidate later (lazy mode). */
  queued = false;

  /** `iommu_iotlb_gather_init`: empty the gather (keeps the array, no allocation). */
  init(): this {
    this.start = Number.MAX_SAFE_INTEGER;
    this.end = 0;
    this.pgsize = 0;
    if (this.freelist.length !== 0) this.freelist.length = 0;
    this.queued = false;
    return this;
  }

  /** True when nothing has been gathered. */
  get empty(): boolean {
    return this.end === 0 && this.start === Number.MAX_SAFE_INTEGER;
  }

  /** Size of the gathered range in bytes (0 when empty). */
  get size(): number {
    return this.empty ? 0 : this.end - this.start + 1;
  }

  /** `iommu_iotlb_gather_add_range`: widen the range to cover `[iova, iova+size)`. */
  addRange(iova: number, size: number): void {
    const end = iova + size - 1;
    if (this.start > iova) this.start = iova;
    if (this.end < end) this.end = end;
  }

  /** `iommu_iotlb_gather_is_disjoint`: would `[iova, iova+size)` leave a gap? */
  isDisjoint(iova: number, size: number): boolean {
    const start = iova;
    const end = iova + size - 1;
    return this.end !== 0 && (end + 1 < this.start || start > this.end + 1);
  }

  /**
   * `iommu_iotlb_gather_add_page`: if the page size differs from what was
   * gathered, or the page is disjoint from the range, sync what was gathered
   * first (`domain.iotlbSync(gather)` then re-init); then add the page.
   */
  addPage(domain: GatherSyncTarget, iova: number, size: number): void {
    if ((this.pgsize !== 0 && this.pgsize !== size) || this.isDisjoint(iova, size)) {
      domain.iotlbSync?.(this);
      const queued = this.queued;
      this.init();
      this.queued = queued;
    }
    this.pgsize = size;
    this.addRange(iova, size);
  }
}
