/**
 * @module
 * `struct iommu_group`: the devices that the IOMMU cannot isolate from one
 * another, and the domain state they share (default domain, current domain,
 * DMA ownership, PASID attachments).
 */

import type { IommuDomain, IommuOps } from "../types.ts";
import type { PciDevice } from "../machine/pci.ts";

/** `struct iommu_group` as the core's users see it. Read the fields; change them through {@link IommuCore}. */
export interface IommuGroup {
  /** Group number (`iommu_group_id`), lowest free first. */
  readonly id: number;
  /** Member devices, in the order they joined. */
  readonly devices: PciDevice[];
  /** The domain the DMA API uses (`group->default_domain`). */
  defaultDomain: IommuDomain | null;
  /** The domain attached now for requests without PASID (`group->domain`). */
  domain: IommuDomain | null;
  /** `owner_cnt`: kernel drivers bound (no owner) or claims by the user owner. */
  ownerCount: number;
  /** The user owner (VFIO/iommufd) holding the group, or null. */
  owner: object | null;
  /** `pasid_array`: PASID to attached domain. */
  readonly pasidArray: Map<number, IommuDomain>;
}

/** The core's full group record (adds what the kernel keeps privately). */
export class GroupState implements IommuGroup {
  /** Group number. */
  readonly id: number;
  /** Member devices. */
  readonly devices: PciDevice[] = [];
  /** Default domain. */
  defaultDomain: IommuDomain | null = null;
  /** Current RID domain. */
  domain: IommuDomain | null = null;
  /** Owner count. */
  ownerCount = 0;
  /** User owner. */
  owner: object | null = null;
  /** PASID attachments. */
  readonly pasidArray: Map<number, IommuDomain> = new Map();
  /** `group->blocking_domain`, allocated on the first DMA-ownership claim. */
  blockingDomain: IommuDomain | null = null;
  /** The driver of every device in the group. */
  readonly ops: IommuOps;
  /** Grouping key (driver key or PCI key), unique per driver. */
  readonly key: string;

  /** A new, empty group. */
  constructor(id: number, ops: IommuOps, key: string) {
    this.id = id;
    this.ops = ops;
    this.key = key;
  }
}
