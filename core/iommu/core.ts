/**
 * @module
 * {@link IommuCore}: the kernel's iommu core (drivers/iommu/iommu.c, about
 * v6.8–6.15) over a {@link Machine}: device probe per driver, groups, default
 * domains, group-wide attach with rollback, PASID attach, the global PASID
 * allocator, reserved regions and direct mappings, iommu_map/unmap, DMA
 * ownership and I/O page-fault delivery.
 *
 * Known differences from the kernel (each marked at its method): misuse the
 * kernel only WARNs about (detaching a domain that is not attached, freeing an
 * id that is not allocated, freeing a domain still in use) is refused with
 * EINVAL/EBUSY here, and a page-fault handler answers synchronously.
 */

import { IommuError, isIommuError } from "../errors.ts";
import { IotlbGather } from "../gather.ts";
import { pgsizeMin } from "../pgsize.ts";
import type { Machine } from "../machine/machine.ts";
import type { PciDevice } from "../machine/pci.ts";
import {
  DomainType,
  domainTypeName,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FIRST_GLOBAL_PASID,
  IOMMU_NO_PASID,
  IOMMU_PASID_INVALID,
  type IommuDomain,
  type IommuKernelHooks,
  type IommuOps,
  type IommuOpsWithHooks,
  type IommuPageResponse,
  IommuPageResponseCode,
  type IopfFault,
  type ResvRegion,
} from "../types.ts";
import { type IommuCounters, newIommuCounters } from "./counters.ts";
import { GroupState, type IommuGroup } from "./group.ts";
import { Ida } from "./ida.ts";
import { copyFault, isLastPage, takeIopfGroup } from "./iopf.ts";
import { checkMapArgs, mapRange, unmapRange } from "./map.ts";
import { insertResvRegion } from "./resv.ts";

export type { IommuGroup };

/** Kernel command-line policy: `iommu.passthrough=` and `iommu.strict=`. */
export interface IommuPolicy {
  /** `iommu.passthrough=1`: default domains are IDENTITY (default false). */
  passthrough?: boolean;
  /** `iommu.strict=1`: DMA domains invalidate at once; 0 = lazy DMA_FQ (default true). */
  strict?: boolean;
}

/** The sysfs `type` values of a group, or a domain type number (0 = auto). */
export type GroupDefaultType = "identity" | "DMA" | "DMA-FQ" | "auto" | number;

/** `iommu_fault_handler_t`: called by {@link IommuCore.reportIommuFault} for a domain's device. */
export type IommuFaultHandler = (
  domain: IommuDomain,
  dev: PciDevice,
  iova: number,
  write: boolean,
  reason: string,
) => void;

/** An unrecoverable DMA fault as reported by a driver. */
export interface ReportedFault {
  /** The device, or null when the driver could not tell. */
  dev: PciDevice | null;
  /** Faulting address. */
  iova: number;
  /** Write access. */
  write: boolean;
  /** The driver's reason string (fault record name). */
  reason: string;
}

/** Per-device state (`dev->iommu` plus the core's own view). */
interface DevState {
  ops: IommuOps;
  /** Fixed when the device is added (the hot-device cache relies on it). */
  readonly group: GroupState;
  /** The domain this device is attached to now for requests without PASID. */
  domain: IommuDomain | null;
  /** `dev->iommu->require_direct`: a RESV_DIRECT region exists. */
  requireDirect: boolean;
}

const FAULT_LOG_MAX = 1024;
const PASID_LIMIT = 1 << 20;

function setDomainType(d: IommuDomain, t: number): void {
  (d as { type: number }).type = t;
}

/** The kernel iommu core for one machine. */
export class IommuCore implements IommuKernelHooks {
  /** The machine the core runs on. */
  readonly machine: Machine;
  /** Policy in force. */
  readonly policy: Required<IommuPolicy>;
  /** Counters (`machine.trace.counters("iommu", ...)`). */
  readonly counters: IommuCounters;
  /** Unrecoverable faults reported by drivers, oldest first (at most 1024 kept). */
  readonly faultLog: ReportedFault[] = [];

  readonly #drivers: IommuOps[] = [];
  readonly #devs = new Map<PciDevice, DevState>();
  /** The last device looked up on the DMA path and its state (one-entry cache of {@link #devs}). */
  #hotDev: PciDevice | null = null;
  #hotState: DevState | null = null;
  readonly #groups = new Map<string, GroupState>();
  readonly #groupIds = new Ida();
  readonly #globalPasids = new Ida();
  readonly #partials = new Map<PciDevice, IopfFault[]>();
  readonly #faultHandlers = new Map<IommuDomain, IommuFaultHandler>();
  readonly #gather = new IotlbGather();

  /** A core with no drivers yet. */
  constructor(machine: Machine, policy: IommuPolicy = {}) {
    this.machine = machine;
    this.policy = { passthrough: policy.passthrough ?? false, strict: policy.strict ?? true };
    this.counters = machine.trace.counters("iommu", newIommuCounters());
  }

  // -------------------------------------------------------------------------
  // Drivers, probe, groups.

  /**
   * `iommu_device_register` + `bus_iommu_probe`: hand the driver the kernel
   * hooks, probe every unprobed PCI device with it (ENODEV from its
   * probeDevice = not its device), build the groups, then set up and attach
   * each new group's default domain. On any failure every device probed here
   * is released again and the error is rethrown.
   */
  registerDriver(driver: IommuOps): void {
    if (this.#drivers.includes(driver)) {
      throw new IommuError(
        "EEXIST",
        "iommu_device_register",
        `driver ${driver.name} is already registered`,
      );
    }
    this.#drivers.push(driver);
    const hooked = driver as Partial<IommuOpsWithHooks>;
    if (typeof hooked.setKernelHooks === "function") hooked.setKernelHooks(this);
    const newGroups: GroupState[] = [];
    const probed: PciDevice[] = [];
    try {
      for (const dev of this.machine.pci.devices) {
        if (this.#devs.has(dev)) continue;
        if (this.#probeWith(driver, dev, newGroups)) probed.push(dev);
      }
      for (const g of newGroups) this.#setupDefaultDomain(g, 0);
    } catch (e) {
      for (let i = probed.length - 1; i >= 0; i--) this.#removeDevice(probed[i]);
      this.#drivers.splice(this.#drivers.indexOf(driver), 1);
      throw e;
    }
  }

  /** Registered drivers, in registration order. */
  drivers(): IommuOps[] {
    return [...this.#drivers];
  }

  /**
   * `iommu_probe_device` (hotplug): offer `dev` to each registered driver in
   * turn; the first that accepts it owns it. The device joins (or creates)
   * its group and is attached to the group's current domain, or the new
   * group's default domain is set up. ENODEV when no driver takes it, EEXIST
   * when it is probed already.
   */
  probeDevice(dev: PciDevice): void {
    if (this.#devs.has(dev)) {
      throw new IommuError(
        "EEXIST",
        "iommu_probe_device",
        `${dev.name} (${dev.bdf}) is already probed`,
      );
    }
    for (const driver of this.#drivers) {
      if (this.#probeWith(driver, dev, null)) return;
    }
    throw new IommuError(
      "ENODEV",
      "iommu_probe_device",
      `no registered IOMMU driver translates ${dev.name} (${dev.bdf})`,
    );
  }

  /**
   * `iommu_release_device`: the driver's release_device, then the device
   * leaves its group; the last device frees the group and its default and
   * blocking domains. EBUSY while a user owner holds the group, a PASID is
   * attached to it, or (last device) a kernel driver still uses it.
   */
  releaseDevice(dev: PciDevice): void {
    const st = this.#state(dev, "iommu_release_device");
    const g = st.group;
    if (g.owner !== null || g.pasidArray.size > 0 || (g.ownerCount > 0 && g.devices.length === 1)) {
      throw new IommuError(
        "EBUSY",
        "iommu_release_device",
        `group ${g.id} of ${dev.name} is in use (owner count ${g.ownerCount}, ${g.pasidArray.size} PASIDs attached); release ownership and PASIDs first`,
      );
    }
    this.#removeDevice(dev);
  }

  /** `iommu_group_get`: the group of `dev`; ENODEV when no IOMMU translates it. */
  groupOf(dev: PciDevice): IommuGroup {
    return this.#state(dev, "iommu_group_get").group;
  }

  /** Every group, by id. */
  groups(): IommuGroup[] {
    return [...this.#groups.values()].sort((a, b) => a.id - b.id);
  }

  /** `dev_iommu_ops`: the driver of `dev`; ENODEV when none. */
  opsOf(dev: PciDevice): IommuOps {
    return this.#state(dev, "dev_iommu_ops").ops;
  }

  /** `iommu_get_domain_for_dev`: the group's current domain (null without IOMMU). */
  domainOf(dev: PciDevice): IommuDomain | null {
    return this.#devs.get(dev)?.group.domain ?? null;
  }

  /** `iommu_get_dma_domain`: the group's default domain (null without IOMMU). */
  defaultDomainOf(dev: PciDevice): IommuDomain | null {
    if (dev === this.#hotDev) return this.#hotState!.group.defaultDomain ?? null;
    const st = this.#devs.get(dev);
    if (st === undefined) return null;
    this.#hotDev = dev;
    this.#hotState = st;
    return st.group.defaultDomain ?? null;
  }

  /** The domain the driver was last told to use for `dev` (per device, during a group switch it may lag). */
  deviceDomainOf(dev: PciDevice): IommuDomain | null {
    return this.#devs.get(dev)?.domain ?? null;
  }

  // -------------------------------------------------------------------------
  // Domains.

  /**
   * `iommu_paging_domain_alloc_flags`: a new UNMANAGED paging domain from the
   * device's driver. ENODEV when `dev` has no IOMMU; driver errors surface.
   */
  domainAllocPaging(dev: PciDevice, flags = 0): IommuDomain {
    const st = this.#state(dev, "iommu_paging_domain_alloc");
    const d = st.ops.domainAllocPaging(dev, flags);
    this.#initDomain(st.ops, d, DomainType.UNMANAGED);
    return d;
  }

  /**
   * `iommu_domain_free`. The driver's static identity/blocked domains are
   * never freed. EBUSY (the kernel would use-after-free) while the domain is
   * any group's current, default or blocking domain or attached to a PASID.
   */
  domainFree(domain: IommuDomain): void {
    if (this.#isStatic(domain)) return;
    for (const g of this.#groups.values()) {
      let used = g.domain === domain || g.defaultDomain === domain || g.blockingDomain === domain;
      if (!used) { for (const d of g.pasidArray.values()) if (d === domain) used = true; }
      if (used) {
        throw new IommuError(
          "EBUSY",
          "iommu_domain_free",
          `domain ${
            domain.label ?? domainTypeName(domain.type)
          } is still in use by group ${g.id}; detach it first`,
        );
      }
    }
    this.#faultHandlers.delete(domain);
    this.#freeDomain(domain);
  }

  /** `iommu_set_fault_handler`: where unrecoverable faults of devices attached to `domain` go. */
  setFaultHandler(domain: IommuDomain, handler: IommuFaultHandler | null): void {
    if (handler) this.#faultHandlers.set(domain, handler);
    else this.#faultHandlers.delete(domain);
  }

  // -------------------------------------------------------------------------
  // Attach.

  /**
   * `iommu_attach_device`: attach `domain` to the single device of `dev`'s
   * group. ENODEV without IOMMU; EINVAL for a multi-device group (use
   * attachGroup) or a domain of another driver; EBUSY when a domain other
   * than the default/blocking one is attached; driver errors surface (EINVAL
   * = incompatible) and leave the previous domain attached.
   */
  attachDevice(domain: IommuDomain, dev: PciDevice): void {
    const g = this.#state(dev, "iommu_attach_device").group;
    if (g.devices.length !== 1) {
      throw new IommuError(
        "EINVAL",
        "iommu_attach_device",
        `group ${g.id} of ${dev.name} has ${g.devices.length} devices; attach the group instead`,
      );
    }
    this.#attachGroup(domain, g, "iommu_attach_device");
  }

  /**
   * `iommu_detach_device`: return the device's single-device group to its
   * core domain (the default domain, or the blocking domain while owned).
   * EINVAL for a multi-device group or when `domain` is not attached (the
   * kernel only WARNs).
   */
  detachDevice(domain: IommuDomain, dev: PciDevice): void {
    const g = this.#state(dev, "iommu_detach_device").group;
    if (g.devices.length !== 1) {
      throw new IommuError(
        "EINVAL",
        "iommu_detach_device",
        `group ${g.id} of ${dev.name} has ${g.devices.length} devices; detach the group instead`,
      );
    }
    this.#detachGroup(domain, g, "iommu_detach_device");
  }

  /**
   * `iommu_attach_group`: attach `domain` to every device of the group in
   * order; on a failure the devices already switched go back to the previous
   * domain and the driver's error is rethrown. EBUSY when a domain other
   * than the default/blocking one is attached; EINVAL for another driver's
   * domain.
   */
  attachGroup(domain: IommuDomain, group: IommuGroup): void {
    this.#attachGroup(domain, this.#groupState(group, "iommu_attach_group"), "iommu_attach_group");
  }

  /** `iommu_detach_group`: back to the core domain. EINVAL when `domain` is not attached (the kernel only WARNs). */
  detachGroup(domain: IommuDomain, group: IommuGroup): void {
    this.#detachGroup(domain, this.#groupState(group, "iommu_detach_group"), "iommu_detach_group");
  }

  /**
   * `iommu_group_replace_domain`: switch the group to `domain` whatever is
   * attached now (no EBUSY), with the same per-device rollback. EINVAL for a
   * domain of another driver.
   */
  replaceGroupDomain(group: IommuGroup, domain: IommuDomain): void {
    const g = this.#groupState(group, "iommu_group_replace_domain");
    if (!domain) throw new IommuError("EINVAL", "iommu_group_replace_domain", "no domain given");
    this.#checkOwner(domain, g, "iommu_group_replace_domain");
    this.#setGroupDomain(g, domain, false);
  }

  /**
   * sysfs `iommu_group/type`: "identity", "DMA", "DMA-FQ" or "auto" (or the
   * domain type number, 0 = auto). DMA → DMA-FQ switches the live default
   * domain to lazy mode (EINVAL when a device lacks DEFERRED_FLUSH). Any
   * other change needs no driver bound (EPERM otherwise) and allocates a new
   * default domain of that type (EINVAL when the driver's def_domain_type or
   * an untrusted device forbids it), attaches it, and frees the old one.
   */
  setGroupDefaultDomainType(group: IommuGroup, type: GroupDefaultType): void {
    const op = "iommu_group_store_type";
    const g = this.#groupState(group, op);
    let req: number;
    switch (type) {
      case "identity":
        req = DomainType.IDENTITY;
        break;
      case "DMA":
        req = DomainType.DMA;
        break;
      case "DMA-FQ":
        req = DomainType.DMA_FQ;
        break;
      case "auto":
        req = 0;
        break;
      default:
        if (
          typeof type === "number" &&
          (type === 0 || type === DomainType.IDENTITY || type === DomainType.DMA ||
            type === DomainType.DMA_FQ)
        ) {
          req = type;
        } else {
          throw new IommuError(
            "EINVAL",
            op,
            `type ${String(type)} is not one of identity, DMA, DMA-FQ, auto`,
          );
        }
    }
    const def = g.defaultDomain;
    if (!def) throw new IommuError("EINVAL", op, `group ${g.id} has no default domain`);
    if (req === DomainType.DMA_FQ && def.type === DomainType.DMA) {
      for (const dev of g.devices) {
        if (!g.ops.capable(dev, "DEFERRED_FLUSH")) {
          throw new IommuError(
            "EINVAL",
            op,
            `${dev.name}: driver ${g.ops.name} lacks DEFERRED_FLUSH; no flush queue possible`,
          );
        }
      }
      setDomainType(def, DomainType.DMA_FQ);
      return;
    }
    if (g.ownerCount > 0) {
      throw new IommuError(
        "EPERM",
        op,
        `group ${g.id} has a driver bound (owner count ${g.ownerCount}); unbind it first (only DMA -> DMA-FQ is allowed live)`,
      );
    }
    this.#setupDefaultDomain(g, req);
  }

  /**
   * sysfs `iommu_group/type` as read: the default domain's type as
   * `iommu_group_show_type` prints it ("blocked", "identity", "unmanaged",
   * "DMA", "DMA-FQ", or "unknown").
   */
  groupDefaultDomainTypeName(group: IommuGroup): string {
    const t = this.#groupState(group, "iommu_group_show_type").defaultDomain?.type;
    switch (t) {
      case DomainType.BLOCKED:
        return "blocked";
      case DomainType.IDENTITY:
        return "identity";
      case DomainType.UNMANAGED:
        return "unmanaged";
      case DomainType.DMA:
        return "DMA";
      case DomainType.DMA_FQ:
        return "DMA-FQ";
      default:
        return "unknown";
    }
  }

  // -------------------------------------------------------------------------
  // PASID.

  /**
   * The checks attach and replace of a PASID share: the domain can take a
   * PASID (EOPNOTSUPP), the device has an IOMMU (ENODEV) whose blocked domain
   * takes PASIDs, the domain is of the device's driver (EINVAL), and the
   * PASID value is valid (EINVAL). Returns the device's core state.
   */
  #pasidAttachState(domain: IommuDomain, dev: PciDevice, pasid: number, op: string) {
    if (!domain.setDevPasid) {
      throw new IommuError(
        "EOPNOTSUPP",
        op,
        `domain ${
          domain.label ?? domainTypeName(domain.type)
        } cannot be attached to a PASID (no set_dev_pasid)`,
      );
    }
    const st = this.#state(dev, op);
    this.#checkBlockedPasid(st.ops, op);
    if (st.ops !== domain.owner) {
      throw new IommuError(
        "EINVAL",
        op,
        `domain belongs to driver ${domain.owner?.name}, ${dev.name} to ${st.ops.name}`,
      );
    }
    this.#checkPasidValue(pasid, op);
    return st;
  }

  /**
   * `iommu_attach_device_pasid`: route `pasid` of every device in `dev`'s
   * group to `domain`. EOPNOTSUPP when the domain has no setDevPasid or the
   * driver's blocked domain cannot take PASIDs; ENODEV without IOMMU; EINVAL
   * for another driver's domain, IOMMU_NO_PASID, or a PASID ≥ max_pasids of
   * any group device; EBUSY when the PASID is attached already. A driver
   * failure reverts the devices already set and frees the slot.
   */
  attachDevicePasid(domain: IommuDomain, dev: PciDevice, pasid: number): void {
    const op = "iommu_attach_device_pasid";
    const st = this.#pasidAttachState(domain, dev, pasid, op);
    const g = st.group;
    for (const d of g.devices) {
      const max = d.iommu?.maxPasids ?? 0;
      if (pasid >= max) {
        throw new IommuError(
          "EINVAL",
          op,
          `PASID ${pasid} is not below max_pasids ${max} of ${d.name} in group ${g.id}`,
        );
      }
    }
    if (g.pasidArray.has(pasid)) {
      throw new IommuError(
        "EBUSY",
        op,
        `PASID ${pasid} of group ${g.id} already has a domain; detach or replace it`,
      );
    }
    this.#setGroupPasid(domain, g, pasid, null);
    g.pasidArray.set(pasid, domain);
  }

  /**
   * `iommu_detach_device_pasid`: set `pasid` of every group device to the
   * driver's blocked domain and free the slot. EINVAL when `domain` is not
   * the one attached there (the kernel does not check).
   */
  detachDevicePasid(domain: IommuDomain, dev: PciDevice, pasid: number): void {
    const op = "iommu_detach_device_pasid";
    const st = this.#state(dev, op);
    const g = st.group;
    if (g.pasidArray.get(pasid) !== domain) {
      throw new IommuError(
        "EINVAL",
        op,
        `PASID ${pasid} of group ${g.id} is not attached to this domain`,
      );
    }
    const blocked = st.ops.blockedDomain!;
    let err: unknown = null;
    for (const d of g.devices) {
      try {
        blocked.setDevPasid!(d, pasid, domain);
        this.counters.pasidDetaches++;
      } catch (e) {
        err ??= e; // the kernel WARNs and goes on
      }
    }
    g.pasidArray.delete(pasid);
    if (err !== null) throw err;
  }

  /**
   * `iommu_replace_device_pasid`: switch an attached `pasid` to `domain`
   * (no-op when it is there already). EINVAL when nothing is attached there,
   * plus the attach errnos; a driver failure puts the devices already
   * switched back on the old domain.
   */
  replaceDevicePasid(domain: IommuDomain, dev: PciDevice, pasid: number): void {
    const op = "iommu_replace_device_pasid";
    const st = this.#pasidAttachState(domain, dev, pasid, op);
    const g = st.group;
    const cur = g.pasidArray.get(pasid);
    if (!cur) {
      throw new IommuError(
        "EINVAL",
        op,
        `PASID ${pasid} of group ${g.id} has no domain to replace; attach instead`,
      );
    }
    if (cur === domain) return;
    this.#setGroupPasid(domain, g, pasid, cur);
    g.pasidArray.set(pasid, domain);
  }

  /** `iommu_get_domain_for_dev_pasid`: the domain on `pasid` (null when none, or when `type` is given and differs). */
  getDomainForDevPasid(dev: PciDevice, pasid: number, type = 0): IommuDomain | null {
    const d = this.#devs.get(dev)?.group.pasidArray.get(pasid) ?? null;
    if (d && type !== 0 && d.type !== type) return null;
    return d;
  }

  /**
   * `iommu_alloc_global_pasid`: the lowest free PASID in
   * `[1, max_pasids - 1]` of `dev`, or IOMMU_PASID_INVALID when the device
   * has no PASID support or the range is used up. ENODEV without IOMMU.
   */
  allocGlobalPasid(dev: PciDevice): number {
    this.#state(dev, "iommu_alloc_global_pasid");
    const max = dev.iommu?.maxPasids ?? 0;
    if (max === 0) return IOMMU_PASID_INVALID;
    const id = this.#globalPasids.allocRange(IOMMU_FIRST_GLOBAL_PASID, max - 1);
    if (id < 0) return IOMMU_PASID_INVALID;
    this.counters.pasidAllocs++;
    return id;
  }

  /** `iommu_free_global_pasid`. EINVAL for IOMMU_PASID_INVALID or a PASID not allocated (the kernel WARNs). */
  freeGlobalPasid(pasid: number): void {
    if (pasid === IOMMU_PASID_INVALID) {
      throw new IommuError(
        "EINVAL",
        "iommu_free_global_pasid",
        "IOMMU_PASID_INVALID is not an allocated PASID",
      );
    }
    try {
      this.#globalPasids.free(pasid);
    } catch {
      throw new IommuError("EINVAL", "iommu_free_global_pasid", `PASID ${pasid} is not allocated`);
    }
    this.counters.pasidFrees++;
  }

  /** True if the global PASID `pasid` is allocated. */
  isGlobalPasidAllocated(pasid: number): boolean {
    return this.#globalPasids.has(pasid);
  }

  // -------------------------------------------------------------------------
  // Map and unmap.

  /**
   * `iommu_map`: map `[iova, iova+size)` to `paddr` with `prot`, split into
   * the domain's page sizes as `iommu_pgsize` does, then `iotlb_sync_map`.
   * EINVAL for unaligned or malformed arguments or a non-paging domain,
   * ENODEV for a domain that cannot map; on a driver failure everything
   * mapped by this call is unmapped again and the error is rethrown.
   */
  map(domain: IommuDomain, iova: number, paddr: number, size: number, prot: number): void {
    checkMapArgs(domain, iova, paddr, size, prot);
    mapRange(domain, iova, paddr, size, prot, this.counters, this.#undo);
    if (domain.iotlbSyncMap) {
      this.counters.iotlbSyncMaps++;
      try {
        domain.iotlbSyncMap(iova, size);
      } catch (e) {
        this.counters.mapFailures++;
        this.#undo(domain, iova, size);
        throw e;
      }
    }
    this.counters.maps++;
    this.counters.mapBytes += size;
    const t = this.machine.trace;
    if (t.observed) t.emit("iommu", "iommu:map", { iova, paddr, size });
  }

  /**
   * `iommu_map_sg`: map the segments back to back from `iova`, merging
   * physically contiguous ones, then one `iotlb_sync_map`. Returns the bytes
   * mapped. On failure everything mapped is unmapped and the error rethrown.
   */
  mapSg(
    domain: IommuDomain,
    iova: number,
    sg: { paddr: number; length: number }[],
    prot: number,
  ): number {
    let mapped = 0;
    let start = 0;
    let len = 0;
    try {
      for (let i = 0; i <= sg.length; i++) {
        const s = i < sg.length ? sg[i] : null;
        if (len > 0 && (s === null || s.paddr !== start + len)) {
          checkMapArgs(domain, iova + mapped, start, len, prot);
          mapRange(domain, iova + mapped, start, len, prot, this.counters, this.#undo);
          const t = this.machine.trace;
          if (t.observed) {
            t.emit("iommu", "iommu:map", { iova: iova + mapped, paddr: start, size: len });
          }
          mapped += len;
          len = 0;
        }
        if (s === null) break;
        if (len > 0) len += s.length;
        else {
          len = s.length;
          start = s.paddr;
        }
      }
      if (domain.iotlbSyncMap) {
        this.counters.iotlbSyncMaps++;
        domain.iotlbSyncMap(iova, mapped);
      }
    } catch (e) {
      if (mapped > 0) this.#undo(domain, iova, mapped);
      throw e;
    }
    this.counters.maps++;
    this.counters.mapBytes += mapped;
    return mapped;
  }

  /**
   * `iommu_unmap`: unmap `[iova, iova+size)` and sync the IOTLB. Returns the
   * bytes unmapped: stops at the first hole; 0 when unaligned to the
   * smallest page size (the kernel returns 0 there too).
   */
  unmap(domain: IommuDomain, iova: number, size: number): number {
    const gather = this.#gather.init();
    const n = unmapRange(domain, iova, size, gather, this.counters, this.machine.trace);
    this.iotlbSync(domain, gather);
    return n;
  }

  /** `iommu_unmap_fast`: as {@link unmap} but the caller syncs `gather` (or lets a flush queue do it). */
  unmapFast(domain: IommuDomain, iova: number, size: number, gather: IotlbGather): number {
    return unmapRange(domain, iova, size, gather, this.counters, this.machine.trace);
  }

  /** `iommu_iotlb_sync`: the domain's iotlb_sync on `gather`, then re-init the gather. */
  iotlbSync(domain: IommuDomain, gather: IotlbGather): void {
    if (domain.iotlbSync) {
      this.counters.iotlbSyncs++;
      domain.iotlbSync(gather);
    }
    gather.init();
  }

  /** `iommu_flush_iotlb_all`. */
  flushIotlbAll(domain: IommuDomain): void {
    if (domain.flushIotlbAll) {
      this.counters.flushIotlbAll++;
      domain.flushIotlbAll();
    }
  }

  /** `iommu_iova_to_phys`: identity domains return `iova`, blocked 0, others ask the domain (0 = not mapped). */
  iovaToPhys(domain: IommuDomain, iova: number): number {
    if (domain.type === DomainType.IDENTITY) return iova;
    if (domain.type === DomainType.BLOCKED) return 0;
    return domain.iovaToPhys ? domain.iovaToPhys(iova) : 0;
  }

  // -------------------------------------------------------------------------
  // Reserved regions.

  /** `iommu_get_resv_regions`: the driver's regions for one device, sorted and merged. */
  getResvRegions(dev: PciDevice): ResvRegion[] {
    const st = this.#state(dev, "iommu_get_resv_regions");
    const out: ResvRegion[] = [];
    for (const r of st.ops.getResvRegions(dev)) insertResvRegion(out, r);
    return out;
  }

  /**
   * `iommu_get_group_resv_regions`: the union of every group device's
   * reserved regions, merged as `iommu_insert_resv_region` does (sorted by
   * start then type; same-type overlapping or adjacent regions merged).
   */
  getGroupResvRegions(group: IommuGroup): ResvRegion[] {
    const g = this.#groupState(group, "iommu_get_group_resv_regions");
    const out: ResvRegion[] = [];
    for (const dev of g.devices) {
      for (const r of g.ops.getResvRegions(dev)) insertResvRegion(out, r);
    }
    return out;
  }

  // -------------------------------------------------------------------------
  // DMA ownership.

  /**
   * `iommu_device_use_default_domain`: a kernel driver binds to `dev`
   * (owner count + 1, no owner). EBUSY while a user owner holds the group, a
   * non-default domain is attached or a PASID is attached. Devices without
   * IOMMU are accepted (the kernel returns 0).
   */
  deviceUseDefaultDomain(dev: PciDevice): void {
    const st = this.#devs.get(dev);
    if (!st) return;
    const g = st.group;
    if (
      g.ownerCount > 0 &&
      (g.domain !== g.defaultDomain || g.owner !== null || g.pasidArray.size > 0)
    ) {
      throw new IommuError(
        "EBUSY",
        "iommu_device_use_default_domain",
        `group ${g.id} of ${dev.name} is owned by a user or not on its default domain`,
      );
    }
    g.ownerCount++;
  }

  /** `iommu_device_unuse_default_domain`: the kernel driver unbinds. EINVAL when no driver use is counted (the kernel WARNs). */
  deviceUnuseDefaultDomain(dev: PciDevice): void {
    const st = this.#devs.get(dev);
    if (!st) return;
    const g = st.group;
    if (g.ownerCount === 0 || g.owner !== null || g.pasidArray.size > 0) {
      throw new IommuError(
        "EINVAL",
        "iommu_device_unuse_default_domain",
        `group ${g.id} of ${dev.name} has no kernel driver use to drop`,
      );
    }
    g.ownerCount--;
  }

  /**
   * `iommu_device_claim_dma_owner`, with the kernel's errnos: ENODEV without
   * IOMMU; EINVAL for a null owner; EPERM while a kernel driver uses the
   * group or another owner holds it; the same owner just counts up. The first
   * claim attaches the blocking domain: EBUSY unless the group is on its
   * default domain with no PASID attached.
   */
  deviceClaimDmaOwner(dev: PciDevice, owner: object): void {
    const op = "iommu_device_claim_dma_owner";
    const g = this.#state(dev, op).group;
    if (!owner) throw new IommuError("EINVAL", op, "owner must be an object, not null");
    if (g.ownerCount > 0) {
      if (g.owner !== owner) {
        throw new IommuError(
          "EPERM",
          op,
          g.owner === null
            ? `group ${g.id} of ${dev.name} is used by a kernel driver (owner count ${g.ownerCount})`
            : `group ${g.id} of ${dev.name} is owned by another user`,
        );
      }
      g.ownerCount++;
      return;
    }
    this.#takeOwnership(g, owner, op);
  }

  /** `iommu_device_release_dma_owner`: count down; the last release restores the default domain. EINVAL when not owned. */
  deviceReleaseDmaOwner(dev: PciDevice): void {
    const g = this.#state(dev, "iommu_device_release_dma_owner").group;
    if (g.ownerCount > 1 && g.owner !== null) g.ownerCount--;
    else this.#releaseOwnership(g, "iommu_device_release_dma_owner");
  }

  /**
   * `iommu_group_claim_dma_owner`: EINVAL for a null owner; EPERM when the
   * group has any owner count (kernel driver or user, even the same one);
   * EBUSY unless on the default domain with no PASID attached.
   */
  groupClaimDmaOwner(group: IommuGroup, owner: object): void {
    const op = "iommu_group_claim_dma_owner";
    const g = this.#groupState(group, op);
    if (!owner) throw new IommuError("EINVAL", op, "owner must be an object, not null");
    if (g.ownerCount > 0) {
      throw new IommuError(
        "EPERM",
        op,
        `group ${g.id} is already in use (owner count ${g.ownerCount})`,
      );
    }
    this.#takeOwnership(g, owner, op);
  }

  /** `iommu_group_release_dma_owner`: drop the user ownership and return to the default domain. EINVAL when not owned. */
  groupReleaseDmaOwner(group: IommuGroup): void {
    this.#releaseOwnership(
      this.#groupState(group, "iommu_group_release_dma_owner"),
      "iommu_group_release_dma_owner",
    );
  }

  /** `iommu_group_dma_owner_claimed`. */
  groupDmaOwnerClaimed(group: IommuGroup): boolean {
    return group.ownerCount > 0 && group.owner !== null;
  }

  // -------------------------------------------------------------------------
  // Faults.

  /**
   * `iommu_report_device_fault`: a page request from the driver. Without
   * LAST_PAGE it is parked as a partial fault (no response). With LAST_PAGE
   * the group is formed (partials with the same group index, then the last),
   * the domain is found by PASID (PASID_VALID) or IOMMU_NO_PASID (the RID
   * domain), its `iopfHandler` runs for each fault until one does not return
   * SUCCESS, and one response goes to the driver's pageResponse. No domain or
   * handler: respond INVALID. ENODEV without IOMMU.
   */
  reportDeviceFault(dev: PciDevice, evt: IopfFault): void {
    const op = "iommu_report_device_fault";
    const st = this.#state(dev, op);
    const c = this.counters;
    c.pageRequests++;
    const t = this.machine.trace;
    const p = evt.prm;
    if (t.observed) {
      t.emit("iommu", "iommu:dev_fault", {
        device: dev.name,
        flags: p.flags,
        pasid: p.pasid,
        grpid: p.grpid,
        perm: p.perm,
        addr: p.addr,
      });
    }
    if (!isLastPage(evt)) {
      let list = this.#partials.get(dev);
      if (!list) this.#partials.set(dev, list = []);
      list.push(copyFault(evt));
      return;
    }
    const last = copyFault(evt);
    const faults = takeIopfGroup(this.#partials.get(dev) ?? [], last);
    c.pageRequestGroups++;
    const g = st.group;
    let domain: IommuDomain | null | undefined;
    if (p.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) {
      domain = g.pasidArray.get(p.pasid);
      if (
        !domain && (st.ops as { userPasidTable?: boolean }).userPasidTable &&
        g.domain?.type === DomainType.NESTED
      ) {
        domain = g.domain;
      }
    } else {
      domain = g.pasidArray.get(IOMMU_NO_PASID) ?? g.domain;
    }
    let code: IommuPageResponseCode = IommuPageResponseCode.INVALID;
    const handler = domain?.iopfHandler;
    if (handler) {
      code = IommuPageResponseCode.SUCCESS;
      for (const f of faults) {
        try {
          code = handler(f, dev);
        } catch {
          code = IommuPageResponseCode.INVALID;
        }
        if (code !== IommuPageResponseCode.SUCCESS) break;
      }
    }
    this.#respond(st, dev, last, { pasid: p.pasid, grpid: p.grpid, code });
  }

  /**
   * `report_iommu_fault`: an unrecoverable DMA fault seen by a driver. Counted,
   * traced as `iommu:io_page_fault`, logged in {@link faultLog}, and passed
   * to the fault handler of the device's current domain if one is set.
   */
  reportIommuFault(dev: PciDevice | null, iova: number, write: boolean, reason: string): void {
    this.counters.dmaFaults++;
    const t = this.machine.trace;
    if (t.observed) {
      t.emit("iommu", "iommu:io_page_fault", {
        device: dev?.name ?? "?",
        driver: dev ? this.#devs.get(dev)?.ops.name ?? "" : "",
        iova,
        flags: write ? 1 : 0,
        reason,
      });
    }
    if (this.faultLog.length < FAULT_LOG_MAX) this.faultLog.push({ dev, iova, write, reason });
    if (dev) {
      const d = this.#devs.get(dev)?.group.domain;
      const h = d ? this.#faultHandlers.get(d) : undefined;
      if (d && h) h(d, dev, iova, write, reason);
    }
  }

  /**
   * `iopf_group_response` for a caller that answers later (iommufd fault
   * queues): send `resp` for the request `evt` through the driver's
   * pageResponse. ENODEV without IOMMU, EINVAL for an unknown code.
   */
  pageResponse(dev: PciDevice, evt: IopfFault, resp: IommuPageResponse): void {
    const st = this.#state(dev, "iommu_page_response");
    const code = resp.code as number;
    if (code !== 0 && code !== 1 && code !== 2) {
      throw new IommuError(
        "EINVAL",
        "iommu_page_response",
        `response code ${code} is not SUCCESS(0), INVALID(1) or FAILURE(2)`,
      );
    }
    this.#respond(st, dev, evt, resp);
  }

  // =========================================================================
  // Internals.

  #respond(st: DevState, dev: PciDevice, evt: IopfFault, resp: IommuPageResponse): void {
    const c = this.counters;
    c.pageResponses++;
    if (resp.code !== IommuPageResponseCode.SUCCESS) c.pageResponsesFailed++;
    const t = this.machine.trace;
    if (t.observed) {
      t.emit("iommu", "iommu:dev_page_response", {
        device: dev.name,
        pasid: resp.pasid,
        grpid: resp.grpid,
        code: resp.code,
      });
    }
    st.ops.pageResponse?.(dev, evt, resp);
  }

  readonly #undo = (domain: IommuDomain, iova: number, size: number): number =>
    this.unmap(domain, iova, size);

  #state(dev: PciDevice, op: string): DevState {
    const st = this.#devs.get(dev);
    if (!st) {
      throw new IommuError(
        "ENODEV",
        op,
        `${dev?.name} has no IOMMU (not probed by any registered driver)`,
      );
    }
    return st;
  }

  #groupState(group: IommuGroup, op: string): GroupState {
    if (!(group instanceof GroupState) || this.#groups.get(group.key) !== group) {
      throw new IommuError("ENODEV", op, `group ${group?.id} is not a live group of this core`);
    }
    return group;
  }

  #isStatic(d: IommuDomain): boolean {
    const o = d.owner;
    return !!o && (d === o.identityDomain || d === o.blockedDomain);
  }

  #freeDomain(d: IommuDomain | null): void {
    if (!d || this.#isStatic(d)) return;
    d.free();
    this.counters.domainFrees++;
  }

  #initDomain(ops: IommuOps, d: IommuDomain, type: number): void {
    setDomainType(d, type);
    if (!d.owner) (d as { owner: IommuOps }).owner = ops;
    if (!(d.pgsizeBitmap > 0)) d.pgsizeBitmap = ops.pgsizeBitmap;
    this.counters.domainAllocs++;
  }

  #checkOwner(domain: IommuDomain, g: GroupState, op: string): void {
    if (domain.owner !== g.ops) {
      throw new IommuError(
        "EINVAL",
        op,
        `domain belongs to driver ${domain.owner?.name}, group ${g.id} to ${g.ops.name}`,
      );
    }
  }

  #checkBlockedPasid(ops: IommuOps, op: string): void {
    if (!ops.blockedDomain?.setDevPasid) {
      throw new IommuError(
        "EOPNOTSUPP",
        op,
        `driver ${ops.name} has no blocked domain that can take PASIDs, so a PASID could not be removed again`,
      );
    }
  }

  #checkPasidValue(pasid: number, op: string): void {
    if (pasid === IOMMU_NO_PASID) {
      throw new IommuError(
        "EINVAL",
        op,
        "PASID 0 is IOMMU_NO_PASID: attach the device (RID) instead",
      );
    }
    if (!Number.isInteger(pasid) || pasid < 0 || pasid >= PASID_LIMIT) {
      throw new IommuError("EINVAL", op, `PASID ${pasid} is outside 1..${PASID_LIMIT - 1}`);
    }
  }

  #groupKey(driver: IommuOps, dev: PciDevice): string {
    const idx = this.#drivers.indexOf(driver);
    const k = driver.deviceGroup?.(dev);
    if (k !== undefined) return `${idx}/drv/${k}`;
    const pci = this.machine.pci as unknown as { groupKeyOf?: (d: PciDevice) => unknown };
    if (typeof pci.groupKeyOf === "function") return `${idx}/pci/${String(pci.groupKeyOf(dev))}`;
    return `${idx}/rid/${dev.segment}:${dev.rid}`;
  }

  /** Probe `dev` with `driver`; false when the driver says ENODEV. */
  #probeWith(driver: IommuOps, dev: PciDevice, defer: GroupState[] | null): boolean {
    dev.iommu = { priv: null, maxPasids: 0, groupId: -1 };
    try {
      driver.probeDevice(dev);
    } catch (e) {
      dev.iommu = null;
      if (isIommuError(e, "ENODEV")) return false;
      throw e;
    }
    let key: string;
    try {
      const max = driver.maxPasids(dev);
      dev.iommu.maxPasids = Number.isInteger(max) && max > 0 ? Math.min(max, PASID_LIMIT) : 0;
      key = this.#groupKey(driver, dev);
    } catch (e) {
      driver.releaseDevice(dev);
      dev.iommu = null;
      throw e;
    }
    let g = this.#groups.get(key);
    if (!g) {
      g = new GroupState(this.#groupIds.allocRange(0, 0x7fffffff), driver, key);
      this.#groups.set(key, g);
      this.counters.groupsCreated++;
    }
    this.#devs.set(dev, { ops: driver, group: g, domain: null, requireDirect: false });
    g.devices.push(dev);
    dev.iommu.groupId = g.id;
    this.counters.probes++;
    const t = this.machine.trace;
    if (t.observed) {
      t.emit("iommu", "iommu:add_device_to_group", { groupID: g.id, device: dev.name });
    }
    try {
      if (g.defaultDomain) {
        try {
          this.#createDirectMappings(g.defaultDomain, dev);
        } catch {
          // the kernel ignores this result at probe
        }
      }
      if (g.domain) this.#setDeviceDomain(g, dev, g.domain, false);
      else if (!g.defaultDomain) {
        if (defer) {
          if (!defer.includes(g)) defer.push(g);
        } else this.#setupDefaultDomain(g, 0);
      }
    } catch (e) {
      this.#removeDevice(dev);
      throw e;
    }
    return true;
  }

  #removeDevice(dev: PciDevice): void {
    const st = this.#devs.get(dev);
    if (!st) return;
    const g = st.group;
    const i = g.devices.indexOf(dev);
    if (i >= 0) g.devices.splice(i, 1);
    this.#devs.delete(dev);
    if (dev === this.#hotDev) {
      this.#hotDev = null;
      this.#hotState = null;
    }
    this.#partials.delete(dev);
    try {
      st.ops.releaseDevice(dev);
    } finally {
      dev.iommu = null;
      this.counters.releases++;
      const t = this.machine.trace;
      if (t.observed) {
        t.emit("iommu", "iommu:remove_device_from_group", { groupID: g.id, device: dev.name });
      }
      if (g.devices.length === 0) {
        const def = g.defaultDomain;
        const blk = g.blockingDomain;
        g.defaultDomain = null;
        g.blockingDomain = null;
        g.domain = null;
        g.ownerCount = 0;
        g.owner = null;
        g.pasidArray.clear();
        this.#groups.delete(g.key);
        this.#groupIds.free(g.id);
        this.counters.groupsFreed++;
        this.#freeDomain(def);
        if (blk !== def) this.#freeDomain(blk);
      }
    }
  }

  /** `iommu_get_default_domain_type`: the type the group must have (0 = no constraint). */
  #defaultDomainType(g: GroupState, target: number): number {
    const op = "iommu_setup_default_domain";
    let driverType = 0;
    let untrusted: PciDevice | null = null;
    for (const dev of g.devices) {
      const t = g.ops.defDomainType?.(dev) ?? 0;
      if (t && t !== driverType) {
        if (!driverType) driverType = t;
        else if (t === DomainType.IDENTITY) driverType = t; // conflicting: IDENTITY wins
      }
      if (dev.untrusted) untrusted = dev;
    }
    if (untrusted) {
      if (driverType && driverType !== DomainType.DMA) {
        throw new IommuError(
          "EINVAL",
          op,
          `${untrusted.name} is untrusted but driver ${g.ops.name} wants ${
            domainTypeName(driverType)
          } for group ${g.id}`,
        );
      }
      driverType = DomainType.DMA;
    }
    if (target) {
      if (driverType && target !== driverType) {
        throw new IommuError(
          "EINVAL",
          op,
          `group ${g.id} cannot use ${domainTypeName(target)}: ${
            untrusted
              ? `${untrusted.name} is untrusted (DMA only)`
              : `driver ${g.ops.name} requires ${domainTypeName(driverType)}`
          }`,
        );
      }
      return target;
    }
    return driverType;
  }

  /** `__iommu_group_alloc_default_domain`. */
  #allocDefaultOfType(g: GroupState, type: number): IommuDomain {
    const op = "iommu_group_alloc_default_domain";
    if (type === DomainType.IDENTITY) {
      if (g.ops.identityDomain) return g.ops.identityDomain;
      throw new IommuError("EOPNOTSUPP", op, `driver ${g.ops.name} has no identity domain`);
    }
    if (type !== DomainType.DMA && type !== DomainType.DMA_FQ) {
      throw new IommuError(
        "EINVAL",
        op,
        `default domains are IDENTITY, DMA or DMA_FQ, not ${domainTypeName(type)}`,
      );
    }
    const d = g.ops.domainAllocPaging(g.devices[0], 0);
    let t = type;
    // iommu_dma_init_domain: no flush queue without DEFERRED_FLUSH.
    if (t === DomainType.DMA_FQ) {
      for (const dev of g.devices) if (!g.ops.capable(dev, "DEFERRED_FLUSH")) t = DomainType.DMA;
    }
    this.#initDomain(g.ops, d, t);
    return d;
  }

  /** `iommu_group_alloc_default_domain`: the required type, else the policy's, else DMA. */
  #allocDefault(g: GroupState, req: number): IommuDomain {
    if (req) return this.#allocDefaultOfType(g, req);
    const def = this.policy.passthrough
      ? DomainType.IDENTITY
      : this.policy.strict
      ? DomainType.DMA
      : DomainType.DMA_FQ;
    try {
      return this.#allocDefaultOfType(g, def);
    } catch (e) {
      if (def === DomainType.DMA) throw e;
      return this.#allocDefaultOfType(g, DomainType.DMA);
    }
  }

  /** `iommu_setup_default_domain`. */
  #setupDefaultDomain(g: GroupState, target: number): void {
    const req = this.#defaultDomainType(g, target);
    const dom = this.#allocDefault(g, req);
    const old = g.defaultDomain;
    if (dom === old) return;
    let directFailed = false;
    for (const dev of g.devices) {
      try {
        this.#createDirectMappings(dom, dev);
      } catch {
        directFailed = true;
      }
    }
    g.defaultDomain = dom;
    const restore = (e: unknown): never => {
      if (old) {
        try {
          this.#setGroupDomain(g, old, true);
        } catch {
          // nofail path: the kernel WARNs
        }
      }
      g.defaultDomain = old;
      if (g.domain === dom) g.domain = old;
      this.#freeDomain(dom);
      throw e;
    };
    try {
      this.#setGroupDomain(g, dom, old === null);
    } catch (e) {
      restore(e);
    }
    if (directFailed) {
      try {
        for (const dev of g.devices) this.#createDirectMappings(dom, dev);
      } catch (e) {
        restore(e);
      }
    }
    this.#freeDomain(old);
  }

  /** `iommu_create_device_direct_mappings`. */
  #createDirectMappings(domain: IommuDomain, dev: PciDevice): void {
    const st = this.#devs.get(dev)!;
    const dma = (domain.type & DomainType.DMA) === DomainType.DMA; // iommu_is_dma_domain
    const regions = st.ops.getResvRegions(dev);
    if (dma && !(domain.pgsizeBitmap > 0)) {
      throw new IommuError(
        "EINVAL",
        "iommu_create_device_direct_mappings",
        "DMA domain has no page sizes",
      );
    }
    const pg = domain.pgsizeBitmap > 0 ? pgsizeMin(domain.pgsizeBitmap) : 0;
    for (const r of regions) {
      if (r.type === "DIRECT") st.requireDirect = true;
      if ((r.type !== "DIRECT" && r.type !== "DIRECT_RELAXABLE") || !dma) continue;
      const start = Math.ceil(r.start / pg) * pg;
      const end = Math.ceil((r.start + r.length) / pg) * pg;
      let run = 0;
      for (let addr = start; addr <= end; addr += pg) {
        if (addr !== end && this.iovaToPhys(domain, addr) === 0) {
          run += pg;
          continue;
        }
        if (run > 0) {
          this.map(domain, addr - run, addr - run, run, r.prot);
          run = 0;
        }
      }
    }
    if (regions.length > 0 && dma) this.flushIotlbAll(domain);
  }

  /** `__iommu_device_set_domain`. */
  #setDeviceDomain(g: GroupState, dev: PciDevice, nd: IommuDomain, mustSucceed: boolean): void {
    const st = this.#devs.get(dev)!;
    if (st.requireDirect && (nd.type === DomainType.BLOCKED || nd === g.blockingDomain)) {
      throw new IommuError(
        "EINVAL",
        "iommu_attach_device",
        `${dev.name} has a RESV_DIRECT region (firmware requires a 1:1 mapping); it cannot be blocked`,
      );
    }
    try {
      nd.attachDev(dev, st.domain);
    } catch (e) {
      this.counters.attachFailures++;
      const blk = g.blockingDomain;
      if (mustSucceed && blk && blk !== nd) {
        try {
          blk.attachDev(dev, st.domain);
          st.domain = blk;
        } catch {
          // nothing more to try
        }
      }
      throw e;
    }
    st.domain = nd;
    this.counters.attaches++;
    const t = this.machine.trace;
    if (t.observed) {
      t.emit("iommu", "iommu:attach_device_to_domain", {
        device: dev.name,
        domain: nd.label ?? domainTypeName(nd.type),
      });
    }
  }

  /**
   * `__iommu_group_set_domain_internal`: attach every device in order; on a
   * failure put the already switched devices back on the current domain
   * (a device that never left it is not re-attached). With `mustSucceed`,
   * go on past failures, switch the group anyway, then rethrow the first.
   */
  #setGroupDomain(g: GroupState, nd: IommuDomain, mustSucceed: boolean): void {
    if (g.domain === nd) return;
    let first: unknown = null;
    const devs = g.devices;
    for (let i = 0; i < devs.length; i++) {
      try {
        this.#setDeviceDomain(g, devs[i], nd, mustSucceed);
      } catch (e) {
        if (mustSucceed) {
          first ??= e;
          continue;
        }
        const cur = g.domain;
        if (cur) {
          for (let j = 0; j <= i; j++) {
            if (this.#devs.get(devs[j])!.domain === cur) continue;
            try {
              this.#setDeviceDomain(g, devs[j], cur, true);
            } catch {
              // the kernel WARNs
            }
          }
        }
        throw e;
      }
    }
    g.domain = nd;
    if (first !== null) throw first;
  }

  #attachGroup(domain: IommuDomain, g: GroupState, op: string): void {
    if (g.domain && g.domain !== g.defaultDomain && g.domain !== g.blockingDomain) {
      throw new IommuError(
        "EBUSY",
        op,
        `group ${g.id} already has domain ${
          g.domain.label ?? domainTypeName(g.domain.type)
        } attached; detach it or replace`,
      );
    }
    this.#checkOwner(domain, g, op);
    this.#setGroupDomain(g, domain, false);
  }

  #detachGroup(domain: IommuDomain, g: GroupState, op: string): void {
    if (g.domain !== domain) {
      throw new IommuError("EINVAL", op, `group ${g.id} is not attached to this domain`);
    }
    this.#setCoreDomain(g);
  }

  /** `__iommu_group_set_core_domain`: the blocking domain while owned, else the default domain. */
  #setCoreDomain(g: GroupState): void {
    const nd = g.owner !== null ? g.blockingDomain : g.defaultDomain;
    if (nd) this.#setGroupDomain(g, nd, true);
  }

  /** `__iommu_set_group_pasid`: every device, reverting the ones done on failure. */
  #setGroupPasid(domain: IommuDomain, g: GroupState, pasid: number, old: IommuDomain | null): void {
    const devs = g.devices;
    for (let i = 0; i < devs.length; i++) {
      try {
        domain.setDevPasid!(devs[i], pasid, old);
        this.counters.pasidAttaches++;
      } catch (e) {
        this.counters.pasidAttachFailures++;
        for (let j = 0; j < i; j++) {
          try {
            if (old) old.setDevPasid!(devs[j], pasid, domain);
            else g.ops.blockedDomain!.setDevPasid!(devs[j], pasid, domain);
          } catch {
            // the kernel WARNs
          }
        }
        throw e;
      }
    }
  }

  /** `__iommu_group_alloc_blocking_domain`: the driver's blocked domain, else an empty paging domain. */
  #blockingDomain(g: GroupState): IommuDomain {
    if (g.blockingDomain) return g.blockingDomain;
    let d: IommuDomain;
    if (g.ops.blockedDomain) d = g.ops.blockedDomain;
    else {
      d = g.ops.domainAllocPaging(g.devices[0], 0);
      this.#initDomain(g.ops, d, DomainType.UNMANAGED);
    }
    g.blockingDomain = d;
    return d;
  }

  /** `__iommu_take_dma_ownership`. */
  #takeOwnership(g: GroupState, owner: object, op: string): void {
    if (g.domain !== g.defaultDomain || g.pasidArray.size > 0) {
      throw new IommuError(
        "EBUSY",
        op,
        `group ${g.id} is not on its default domain or has PASIDs attached`,
      );
    }
    const blk = this.#blockingDomain(g);
    this.#setGroupDomain(g, blk, false);
    g.owner = owner;
    g.ownerCount++;
  }

  /** `__iommu_release_dma_ownership`. */
  #releaseOwnership(g: GroupState, op: string): void {
    if (g.ownerCount === 0 || g.owner === null || g.pasidArray.size > 0) {
      throw new IommuError(
        "EINVAL",
        op,
        `group ${g.id} is not owned by a user (or still has PASIDs attached)`,
      );
    }
    g.ownerCount = 0;
    g.owner = null;
    if (g.defaultDomain) this.#setGroupDomain(g, g.defaultDomain, true);
  }
}
