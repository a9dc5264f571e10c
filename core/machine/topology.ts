/**
 * @module
 * The PCI topology: functions by requester ID, the bridges and ports that
 * connect buses, DMA aliases (`pci_for_each_dma_alias`), ACS, external-facing
 * ports, IOMMU group computation as the kernel's `pci_device_group` does it,
 * and which DMA translator (IOMMU hardware model) sits in front of each
 * function.
 *
 * Buses: a bus is the secondary bus of at most one bridge or port; a bus that
 * is nobody's secondary bus is a root bus. Add a bridge before the devices
 * below it (a bridge whose secondary bus is already populated is refused).
 */

import { IommuError } from "../errors.ts";
import { PciDevice, type PciDeviceConfig } from "./pci.ts";
import { DIRECT_TRANSLATOR, type DmaTranslator } from "./translate.ts";

/** One DMA alias of a device: the function it is attributed to and the requester ID used. */
export interface DmaAlias {
  /** The function the alias belongs to (the device itself or a bridge above it). */
  dev: PciDevice;
  /** The requester ID. */
  rid: number;
}

function keyOf(segment: number, rid: number): number {
  return segment * 65536 + rid;
}

/** Devices of a machine, how they are connected, and the translator each one's DMA goes through. */
export class PciTopology {
  readonly #byKey = new Map<number, PciDevice>();
  readonly #bridgeOfBus = new Map<number, PciDevice>(); // segment*256+bus -> bridge
  readonly #translator = new Map<PciDevice, DmaTranslator>();
  readonly #segmentTranslator = new Map<number, DmaTranslator>();
  #groups: Map<PciDevice, number> | null = null;
  #members: Map<number, PciDevice[]> | null = null;
  #aliasCount = 0;

  /**
   * Add a function; refuses a duplicate address with EEXIST, a second bridge
   * onto the same secondary bus with EBUSY, and a bridge whose secondary bus
   * already holds devices with EINVAL (add bridges first). A device below an
   * external-facing port (or below an untrusted bridge) is marked untrusted.
   */
  add(cfg: PciDeviceConfig): PciDevice {
    const seg = cfg.segment ?? 0;
    const parent = this.#bridgeOfBus.get(seg * 256 + cfg.bus);
    const untrusted = (cfg.untrusted ?? false) ||
      (parent !== undefined && (parent.externalFacing || parent.untrusted));
    const dev = new PciDevice({ ...cfg, untrusted });
    const key = keyOf(dev.segment, dev.rid);
    if (this.#byKey.has(key)) {
      throw new IommuError("EEXIST", "pci_add", `${dev.bdf} already exists`);
    }
    if (dev.isBridge) {
      const busKey = dev.segment * 256 + dev.secondaryBus;
      const other = this.#bridgeOfBus.get(busKey);
      if (other) {
        throw new IommuError(
          "EBUSY",
          "pci_add",
          `${dev.bdf} (${dev.name}): bus ${dev.secondaryBus} is already the secondary bus of ${other.bdf} (${other.name})`,
        );
      }
      for (const d of this.#byKey.values()) {
        if (d.segment === dev.segment && d.bus === dev.secondaryBus) {
          throw new IommuError(
            "EINVAL",
            "pci_add",
            `${dev.bdf} (${dev.name}): bus ${dev.secondaryBus} already holds ${d.bdf}; add a bridge before the devices below it`,
          );
        }
      }
      if (this.#isBelow(dev.segment, dev.bus, dev.secondaryBus)) {
        throw new IommuError(
          "EINVAL",
          "pci_add",
          `${dev.bdf} (${dev.name}): secondary bus ${dev.secondaryBus} is above bus ${dev.bus} (a loop)`,
        );
      }
      this.#bridgeOfBus.set(busKey, dev);
    }
    this.#byKey.set(key, dev);
    this.#groups = null;
    return dev;
  }

  /**
   * Remove a function (hot-unplug). A bridge with devices on its secondary
   * bus is refused with EBUSY (remove the devices below first); an unknown
   * device is ENODEV. Its translator binding goes with it.
   */
  remove(dev: PciDevice): void {
    this.#known(dev, "pci_remove");
    if (dev.isBridge) {
      for (const d of this.#byKey.values()) {
        if (d.segment === dev.segment && d.bus === dev.secondaryBus) {
          throw new IommuError(
            "EBUSY",
            "pci_remove",
            `${dev.bdf} (${dev.name}) still has ${d.bdf} (${d.name}) below it; remove that first`,
          );
        }
      }
      this.#bridgeOfBus.delete(dev.segment * 256 + dev.secondaryBus);
    }
    this.#byKey.delete(keyOf(dev.segment, dev.rid));
    this.#translator.delete(dev);
    this.#groups = null;
  }

  /** True if `bus` lies below `ancestorBus` (following bridges upward). */
  #isBelow(segment: number, bus: number, ancestorBus: number): boolean {
    for (let b = bus, guard = 0; guard < 257; guard++) {
      if (b === ancestorBus) return true;
      const br = this.#bridgeOfBus.get(segment * 256 + b);
      if (!br) return false;
      b = br.bus;
    }
    return true;
  }

  /** The function at `rid` on `segment`, or undefined. */
  byRid(rid: number, segment = 0): PciDevice | undefined {
    return this.#byKey.get(keyOf(segment, rid));
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

  /** The bridge or port whose secondary bus `dev` sits on; undefined on a root bus. */
  parentOf(dev: PciDevice): PciDevice | undefined {
    return this.#bridgeOfBus.get(dev.segment * 256 + dev.bus);
  }

  /** The bridges and ports from `dev`'s parent up to the root port, nearest first. */
  upstreamPath(dev: PciDevice): PciDevice[] {
    const out: PciDevice[] = [];
    for (let b = this.parentOf(dev); b; b = this.parentOf(b)) out.push(b);
    return out;
  }

  /** Other functions in the same slot (same segment, bus and device number). */
  slotSiblings(dev: PciDevice): PciDevice[] {
    const out: PciDevice[] = [];
    for (let fn = 0; fn < 8; fn++) {
      if (fn === dev.fn) continue;
      const d = this.byRid((dev.bus << 8) | (dev.device << 3) | fn, dev.segment);
      if (d) out.push(d);
    }
    return out;
  }

  /** True if another function shares `dev`'s slot (the kernel's `pdev->multifunction`). */
  isMultifunction(dev: PciDevice): boolean {
    return this.slotSiblings(dev).length > 0;
  }

  /** True for conventional PCI (no PCIe capability): a PCI-to-PCI bridge or anything below a PCI bus. */
  isConventional(dev: PciDevice): boolean {
    if (dev.kind === "pci-bridge") return true;
    const p = this.parentOf(dev);
    return p !== undefined && (p.kind === "pcie-pci-bridge" || p.kind === "pci-bridge");
  }

  /**
   * The kernel's `pci_acs_enabled(dev, REQ_ACS_FLAGS)`: conventional PCI and
   * PCI bridges never; root and downstream ports when ACS is enabled;
   * endpoints and upstream ports only need ACS when multi-function.
   */
  acsEnabled(dev: PciDevice): boolean {
    if (this.isConventional(dev)) return false;
    switch (dev.kind) {
      case "pcie-pci-bridge":
      case "pci-bridge":
        return false;
      case "root-port":
      case "switch-downstream":
        return dev.acs;
      default:
        return this.isMultifunction(dev) ? dev.acs : true;
    }
  }

  /** The kernel's `pci_acs_path_enabled(start, NULL, ...)`: ACS on `start` and everything above it. */
  acsPathEnabled(start: PciDevice): boolean {
    for (let d: PciDevice | undefined = start; d; d = this.parentOf(d)) {
      if (!this.acsEnabled(d)) return false;
    }
    return true;
  }

  /**
   * `pci_for_each_dma_alias`: the device's own requester ID and its quirk
   * aliases, then, walking up, each PCIe-to-PCI bridge's (secondary bus,
   * devfn 0) and each conventional bridge's own ID. Root and switch ports
   * forward the requester ID unchanged.
   */
  dmaAliases(dev: PciDevice): DmaAlias[] {
    const out: DmaAlias[] = [{ dev, rid: dev.rid }];
    for (const a of dev.aliases) out.push({ dev, rid: a });
    for (let b = this.parentOf(dev); b; b = this.parentOf(b)) {
      if (b.kind === "pcie-pci-bridge") out.push({ dev: b, rid: b.secondaryBus << 8 });
      else if (b.kind === "pci-bridge") out.push({ dev: b, rid: b.rid });
    }
    return out;
  }

  /**
   * The requester ID `dev`'s DMA carries when it reaches the IOMMU: the last
   * bridge alias above it, else its own ID.
   */
  dmaRidOf(dev: PciDevice): number {
    let rid = dev.rid;
    for (let b = this.parentOf(dev); b; b = this.parentOf(b)) {
      if (b.kind === "pcie-pci-bridge") rid = b.secondaryBus << 8;
      else if (b.kind === "pci-bridge") rid = b.rid;
    }
    return rid;
  }

  /** The device the kernel's `pci_device_group` stops at: last DMA alias, then up while ACS is missing. */
  #anchor(dev: PciDevice): PciDevice {
    let p = dev;
    for (let b = this.parentOf(dev); b; b = this.parentOf(b)) {
      if (b.kind === "pcie-pci-bridge" || b.kind === "pci-bridge") p = b;
    }
    for (let b = this.parentOf(p); b; b = this.parentOf(b)) {
      if (this.acsPathEnabled(b)) break;
      p = b;
    }
    return p;
  }

  #computeGroups(): Map<PciDevice, number> {
    let aliasCount = 0;
    for (const d of this.#byKey.values()) aliasCount += d.aliases.length;
    if (this.#groups && aliasCount === this.#aliasCount) return this.#groups;
    this.#aliasCount = aliasCount;
    const devs = this.devices;
    const parent = new Map<PciDevice, PciDevice>();
    const find = (d: PciDevice): PciDevice => {
      let r = d;
      while (parent.get(r) !== r) r = parent.get(r)!;
      parent.set(d, r);
      return r;
    };
    const union = (a: PciDevice, b: PciDevice) => {
      const ra = find(a), rb = find(b);
      if (ra !== rb) parent.set(ra, rb);
    };
    for (const d of devs) parent.set(d, d);
    for (const d of devs) {
      const a = this.#anchor(d);
      union(d, a);
      // Devices that alias each other (quirks) share a group.
      for (const rid of d.aliases) {
        const t = this.byRid(rid, d.segment);
        if (t) union(d, t);
      }
      // Functions of a multi-function slot without ACS share a group.
      if (!this.acsEnabled(a) && this.isMultifunction(a)) {
        for (const s of this.slotSiblings(a)) if (!this.acsEnabled(s)) union(a, s);
      }
    }
    const groups = new Map<PciDevice, number>();
    const members = new Map<number, PciDevice[]>();
    const keyOfRoot = new Map<PciDevice, number>();
    for (const d of devs) { // in key order: the first member names the group
      const r = find(d);
      let k = keyOfRoot.get(r);
      if (k === undefined) {
        k = keyOf(d.segment, d.rid);
        keyOfRoot.set(r, k);
        members.set(k, []);
      }
      groups.set(d, k);
      members.get(k)!.push(d);
    }
    this.#groups = groups;
    this.#members = members;
    return groups;
  }

  #known(dev: PciDevice, op: string): void {
    if (this.#byKey.get(keyOf(dev.segment, dev.rid)) !== dev) {
      throw new IommuError("ENODEV", op, `${dev.bdf} (${dev.name}) is not in this topology`);
    }
  }

  /**
   * The IOMMU group key of `dev` (as `pci_device_group` would group it): the
   * segment*65536 + requester ID of the group's first member. Throws ENODEV
   * for a device of another topology.
   */
  groupKeyOf(dev: PciDevice): number {
    this.#known(dev, "pci_device_group");
    return this.#computeGroups().get(dev)!;
  }

  /** Every function in `dev`'s IOMMU group (itself included), in requester-ID order. */
  groupMembers(dev: PciDevice): PciDevice[] {
    const k = this.groupKeyOf(dev);
    return [...this.#members!.get(k)!];
  }

  /**
   * The topology as an indented tree, one line per function (like
   * `lspci -t` with the IOMMU view): address, name, kind, secondary bus,
   * ACS, trust, the requester ID its DMA carries and its group key.
   */
  describe(): string[] {
    const lines: string[] = [];
    const hex = (n: number, w: number) => n.toString(16).padStart(w, "0");
    const walk = (d: PciDevice, depth: number) => {
      const parts = [`${"  ".repeat(depth)}${d.bdf} ${d.name}`];
      if (d.kind !== "endpoint") parts.push(`[${d.kind} -> bus ${hex(d.secondaryBus, 2)}]`);
      if (d.externalFacing) parts.push("external-facing");
      if (d.untrusted) parts.push("untrusted");
      if (!this.acsEnabled(d)) parts.push("no-ACS");
      const rid = this.dmaRidOf(d);
      if (rid !== d.rid) parts.push(`dma-rid ${hex(rid, 4)}`);
      if (d.aliases.length) parts.push(`aliases ${d.aliases.map((a) => hex(a, 4)).join(",")}`);
      parts.push(`group ${hex(this.groupKeyOf(d), 4)}`);
      lines.push(parts.join(" "));
      if (d.isBridge) {
        for (const c of this.devices) {
          if (c.segment === d.segment && c.bus === d.secondaryBus) walk(c, depth + 1);
        }
      }
    };
    for (const d of this.devices) if (!this.parentOf(d)) walk(d, 0);
    return lines;
  }

  /** Put `translator` in front of `dev`'s DMA. */
  setTranslator(dev: PciDevice, translator: DmaTranslator): void {
    this.#translator.set(dev, translator);
  }

  /**
   * Put `translator` in front of every function of `segment` that has no
   * translator of its own, including functions added later (an IOMMU that
   * covers a whole PCI segment, as a DRHD with INCLUDE_PCI_ALL does).
   */
  setSegmentTranslator(segment: number, translator: DmaTranslator): void {
    this.#segmentTranslator.set(segment, translator);
  }

  /** The translator of `dev`: its own, else its segment's, else direct access. */
  translatorOf(dev: PciDevice): DmaTranslator {
    return this.#translator.get(dev) ?? this.#segmentTranslator.get(dev.segment) ??
      DIRECT_TRANSLATOR;
  }
}
