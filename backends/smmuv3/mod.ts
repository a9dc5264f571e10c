/**
 * @module
 * The Arm SMMUv3 backend: a hardware model ({@link SmmuV3}) and its driver
 * ({@link SmmuV3Driver}, shaped like drivers/iommu/arm/arm-smmu-v3, about
 * v6.12). The default export is the {@link BackendPlugin} named `"smmuv3"`.
 *
 * PASIDs follow the driver since v6.10: a paging domain may sit at a PASID
 * while the RID domain is identity or blocked (the STE then points at the
 * CD table with S1DSS=BYPASS or TERMINATE, CD 0 invalid; the last PASID
 * gone, it is the plain bypass/abort STE again); the identity domain itself
 * has no `set_dev_pasid` (the core answers EOPNOTSUPP), and a stage-2 or
 * nested RID domain is refused with EBUSY while PASIDs are in use.
 *
 * The model sees only its registers (pages 0 and 1) and physical memory:
 * linear and 2-level stream tables (an L2 table holds 2^(SPAN-1) STEs),
 * every STE config (abort, bypass, stage 1, stage 2, nested) with S1DSS,
 * S1STALLD, EATS and STRW, single/linear/2-level (4K and 64K leaf) CD
 * tables, stage-1/stage-2 LPAE walks with 4K/16K/64K granules, concatenated
 * stage-2 start tables, nested walks whose stage-1 tables and CDs are read
 * through stage 2, HTTU access/dirty updates, a TLB, a walk cache of
 * stage-1/stage-2 table descriptors (options `walk_cache`, `walk_cache_size`)
 * and a configuration cache, every command with range invalidation and the CERROR_ILL / ABT /
 * ATC_INV_SYNC errors, the event queue with overflow, the stall model,
 * ATS with a per-device ATC and the PRI queue. Bad tables become the
 * architecture's events, never exceptions. Checking mode compares every
 * TLB, ATC, walk-cache and configuration-cache hit with a fresh read of
 * memory.
 *
 * Walk cache and TLBI hints: a TLBI by address with Leaf=1 leaves walk-cache
 * entries (as an implementation may), so a driver that frees a table but
 * invalidates leaves only is caught; Leaf=0 drops the entries over the
 * range. A non-zero TTL (with TG) is honoured by the walk cache only: a
 * Leaf=0 TLBI then drops only the walk entries read at level TTL (none for
 * TTL=3), so a driver that sets TTL on a walk invalidation, as kernels did
 * before TTL was limited to leaf invalidations, shows in checking mode; the
 * TLB ignores TTL and drops every size over the range (an allowed
 * over-invalidation).
 *
 * Knowingly simplified: hierarchical table attributes (APTable, XNTable)
 * and nG/global entries are not modelled (TLB entries are always per
 * ASID); memory attributes and shareability are decoded but not used; ATS translation requests and the
 * device ATC are modelled inside the SMMU on behalf of ATS-capable PCI
 * devices; a lost page request (PRI queue full) is dropped and the device
 * retries; stage-2 execute permission uses XN bit 54 only.
 */

import {
  type BackendInstance,
  type BackendOptions,
  type BackendPlugin,
  CORE_API_VERSION,
  type FieldTable,
  type Machine,
  type PciDevice,
} from "@iommu-lab/core";
import { resolveFeatures, SMMU_OPTIONS } from "./hw/features.ts";
import { SmmuV3 } from "./hw/smmu.ts";
import { CD, COMMANDS, EVENT, EVENTS, L1_CD, L1_STD, PRI_RECORD, STE } from "./hw/structs.ts";
import { REGISTER_FIELDS } from "./hw/regs.ts";
import { SmmuV3Driver } from "./driver/driver.ts";

export type * from "@iommu-lab/core";
export { resolveFeatures, SMMU_OPTIONS, type SmmuFeatures } from "./hw/features.ts";
export {
  type CdCacheSet,
  type CdConfig,
  type MissedInvalidation,
  SmmuV3,
  type SteConfig,
} from "./hw/smmu.ts";
export * from "./hw/structs.ts";
export * from "./hw/regs.ts";
export {
  type CdTable,
  type DriverStats,
  type Master,
  type SmmuHwInfo,
  SmmuV3Driver,
  type StageKind,
} from "./driver/driver.ts";
export { ffs, NestedDomain, SmmuDomain, StaticDomain, SvaDomain } from "./driver/domain.ts";
export {
  cdUsed,
  type EntryWriter,
  makeAbortSte,
  makeBypassSte,
  makeCdtableSte,
  makeS1Cd,
  makeS2Ste,
  steUsed,
  type UsedFn,
  writeEntry,
} from "./driver/entry.ts";
export { type CmdqStats, DriverCmdq } from "./driver/cmdq.ts";
export { type FaultContext, FaultQueues, type LoggedEvent } from "./driver/faults.ts";
export * from "./driver/cmds.ts";
export * from "./hw/walk.ts";
export * from "./hw/tlb.ts";
export * from "./hw/walkcache.ts";

/** Every SMMUv3 structure by name, for `inspect decode`: STE, CD, L1 descriptors, commands, events, PRI record, registers. */
export const SMMUV3_STRUCTURES: Record<string, FieldTable> = {
  STE,
  CD,
  L1_STD,
  L1_CD,
  EVENT,
  PRI_RECORD,
  ...COMMANDS,
  ...Object.fromEntries(Object.entries(EVENTS).map(([k, v]) => [`EVT_${k}`, v])),
  ...Object.fromEntries(Object.entries(REGISTER_FIELDS).map(([k, v]) => [`REG_${k}`, v])),
};

/** True when `dev` is on the segment and buses of `hw` (its IORT ID mapping). */
export function behind(hw: SmmuV3, dev: PciDevice): boolean {
  const f = hw.features;
  return dev.segment === f.segment && dev.bus >= f.busFirst && dev.bus <= f.busLast;
}

/** Build the hardware model, map it on the bus and put it in front of the PCI devices on its buses. */
export function createSmmuHardware(machine: Machine, options: BackendOptions = {}): SmmuV3 {
  const hw = new SmmuV3(machine, resolveFeatures(options));
  machine.bus.map(hw.mmioBase, hw);
  for (const dev of machine.pci.devices) if (behind(hw, dev)) machine.pci.setTranslator(dev, hw);
  return hw;
}

/** The SMMUv3 backend plugin. */
const plugin: BackendPlugin = {
  name: "smmuv3",
  description: "Arm SMMUv3: stage 1/2 and nested translation, 2-level tables, ATS/PRI, stalls",
  apiVersion: CORE_API_VERSION,
  options: SMMU_OPTIONS,
  createHardware(machine: Machine, options: BackendOptions): SmmuV3 {
    return createSmmuHardware(machine, options);
  },
  create(machine: Machine, options: BackendOptions): BackendInstance {
    const hw = createSmmuHardware(machine, options);
    const driver = new SmmuV3Driver(machine, hw.mmioBase, hw.name, (dev) => behind(hw, dev));
    return { hw, driver };
  },
};

export default plugin;
