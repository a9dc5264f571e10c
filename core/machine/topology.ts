/**
 * @module
 * The PCI topology: functions by requester ID, and which DMA translator
 * (IOMMU hardware model) sits in front of each. (Bridges, aliases, ACS and
 * group computation are added by the machine-model work.)
 */

import { IommuError } from "../errors.ts";
import { PciDevice, type PciDeviceConfig } from "./pci.ts";
import { DIRECT_TRANSLATOR, type DmaTranslator } from "./translate.ts";

/** Devices of a machine and the translator each one's DMA goes through. */
export class PciTopology {
  readonly #byKey = new Map<number, PciDevice>();
  readonly #translator = new Map<PciDevice, DmaTranslator>();

  /** Add a function; refuses a duplicate address with EEXIST. */
  add(cfg: PciDeviceConfig): PciDevice {
    const dev = new PciDevice(cfg);
    const key = dev.segment * 65536 + dev.rid;
    if (this.#byKey.has(key)) {
      throw new IommuError("EEXIST", "pci_add", `${dev.bdf} already exists`);
    }
    this.#byKey.set(key, dev);
    return dev;
  }

  /** The function at `rid` on `segment`, or undefined. */
  byRid(rid: number, segment = 0): PciDevice | undefined {
    return this.#byKey.get(segment * 65536 + rid);
  }

  /** The function named `name`, or undefined. */
  byName(name: string): PciDevice | undefined {
    for (const d of this.#byKey.values()) if (d.name === name) return d;
    return undefined;
  }

  /** All functions, in requester-ID order. */
  get devices(): PciDevice[] {
    return [...this.#byKey.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
  }

  /** Put `translator` in front of `dev`'s DMA. */
  setTranslator(dev: PciDevice, translator: DmaTranslator): void {
    this.#translator.set(dev, translator);
  }

  /** The translator of `dev` (direct access when none). */
  translatorOf(dev: PciDevice): DmaTranslator {
    return this.#translator.get(dev) ?? DIRECT_TRANSLATOR;
  }
}
