/**
 * @module
 * `flat-iommu`: an example third-party backend written only against the
 * public exports of `@iommu-lab/core`. Its default export is the
 * {@link BackendPlugin}; load it with `loadPlugin("./examples/flat-iommu/mod.ts")`.
 */

import {
  type BackendInstance,
  type BackendOptions,
  type BackendPlugin,
  CORE_API_VERSION,
  type Machine,
} from "@iommu-lab/core";
import { FlatIommuDriver } from "./driver.ts";
import { FlatIommuHw } from "./hw.ts";

export * from "./regs.ts";
export { type FlatCounters, type FlatHwConfig, FlatIommuHw } from "./hw.ts";
export { FlatIommuDriver, FlatPagingDomain } from "./driver.ts";

function hardware(machine: Machine, o: BackendOptions): FlatIommuHw {
  const hw = new FlatIommuHw(machine, {
    name: String(o.instance ?? "flat0"),
    mmioBase: Number(o.mmio_base ?? 0xfed9_0000),
    apertureBits: Number(o.aperture_bits ?? 31),
    iotlbEntries: Number(o.iotlb_entries ?? 64),
  });
  // The flat IOMMU sits in front of every segment-0 function, present or hot-added.
  machine.pci.setSegmentTranslator(0, hw);
  return hw;
}

/** The flat-iommu backend plugin. */
const flatIommu: BackendPlugin = {
  name: "flat-iommu",
  description: "A software IOMMU with one flat page table per domain (example third-party backend)",
  apiVersion: CORE_API_VERSION,
  options: [
    {
      name: "aperture_bits",
      type: "number",
      default: 31,
      min: 25,
      max: 31,
      description: "the aperture is [16 MiB, 2^aperture_bits)",
    },
    {
      name: "iotlb_entries",
      type: "number",
      default: 64,
      values: [8, 16, 32, 64, 128, 256],
      description: "IOTLB entries (FIFO replacement)",
    },
    {
      name: "mmio_base",
      type: "number",
      default: 0xfed9_0000,
      min: 0,
      max: 2 ** 48 - 0x1000,
      description: "physical address of the register window",
    },
    { name: "instance", type: "string", default: "flat0", description: "instance name" },
  ],
  createHardware(machine: Machine, options: BackendOptions): FlatIommuHw {
    return hardware(machine, options);
  },
  create(machine: Machine, options: BackendOptions): BackendInstance {
    const hw = hardware(machine, options);
    const driver = new FlatIommuDriver(machine, hw.mmioBase, hw.faultIrq);
    return { hw, driver };
  },
};

export default flatIommu;
