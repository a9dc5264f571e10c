/**
 * @module
 * A PCI function as the IOMMU layers see it: segment/bus/device/function,
 * requester ID, capabilities (PASID width, ATS, PRI), trust, DMA mask, and
 * the per-device IOMMU state the kernel keeps in `dev->iommu`.
 */

import { IommuError } from "../errors.ts";

/**
 * What a PCI function is, as its PCIe capability's device/port type says:
 * an endpoint, a root port, a switch's upstream or downstream port, a
 * PCIe-to-PCI(-X) bridge (`PCI_EXP_TYPE_PCI_BRIDGE`), or a conventional
 * PCI-to-PCI bridge (no PCIe capability).
 */
export type PciDeviceKind =
  | "endpoint"
  | "root-port"
  | "switch-upstream"
  | "switch-downstream"
  | "pcie-pci-bridge"
  | "pci-bridge";

/** Every {@link PciDeviceKind}, for validation and help. */
export const PCI_DEVICE_KINDS: readonly PciDeviceKind[] = [
  "endpoint",
  "root-port",
  "switch-upstream",
  "switch-downstream",
  "pcie-pci-bridge",
  "pci-bridge",
];

/** Capabilities and properties of a PCI function. */
export interface PciDeviceConfig {
  /** Name for traces and reports, e.g. `"nvme0"`. */
  name: string;
  /** PCI segment (domain), default 0. */
  segment?: number;
  /** Bus number 0..255. */
  bus: number;
  /** Device number 0..31. */
  device: number;
  /** Function number 0..7. */
  fn: number;
  /** PASID capability: width in bits (0 = no PASID, up to 20). */
  pasidBits?: number;
  /** ATS capability. */
  ats?: boolean;
  /** PRI capability. */
  pri?: boolean;
  /**
   * Untrusted device (the kernel's `pdev->untrusted`). The topology also sets
   * it for every device below an external-facing port.
   */
  untrusted?: boolean;
  /** Device/port type (default `"endpoint"`). */
  kind?: PciDeviceKind;
  /** Bridges and ports: the bus number of the secondary (downstream) bus. */
  secondaryBus?: number;
  /** Root and downstream ports: the port faces the outside (Thunderbolt, USB4). */
  externalFacing?: boolean;
  /** DMA alias quirk: other requester IDs (same segment) this function may use. */
  aliases?: number[];
  /** DMA mask width in bits (default 64). */
  dmaBits?: number;
  /** Can the device stall (SMMU stall model, platform devices). */
  canStall?: boolean;
  /**
   * ACS (request redirect, completion redirect, upstream forwarding, source
   * validation) enabled: on a root or downstream port it isolates the devices
   * below; on a function of a multi-function device it isolates it from its
   * siblings. Default true. Conventional PCI never has ACS.
   */
  acs?: boolean;
}

/** The kernel's `dev->iommu` (struct dev_iommu), kept by the iommu core and the driver. */
export interface DevIommu {
  /** Driver-private per-device data (`dev_iommu_priv`). */
  priv: unknown;
  /** `max_pasids` set by the driver's probe. */
  maxPasids: number;
  /** Group key assigned by the core. */
  groupId: number;
  /**
   * `shadow_on_flush`, set by a driver's probe when its IOTLB flushes also
   * update a shadow table (s390 with tlb_refresh, virtio-iommu): dma-iommu
   * then uses one 32768-entry flush queue with a 1 s timeout instead of the
   * per-CPU queues. Absent means false.
   */
  shadowOnFlush?: boolean;
}

/** A PCI function. */
export class PciDevice {
  /** Name for traces. */
  readonly name: string;
  /** Segment number. */
  readonly segment: number;
  /** Bus number. */
  readonly bus: number;
  /** Device number. */
  readonly device: number;
  /** Function number. */
  readonly fn: number;
  /** PASID width in bits (0 = none). */
  readonly pasidBits: number;
  /** ATS capable. */
  readonly ats: boolean;
  /** PRI capable. */
  readonly pri: boolean;
  /** Untrusted (behind an external-facing port). */
  readonly untrusted: boolean;
  #dmaBits = 64;
  /** Can stall on faults. */
  readonly canStall: boolean;
  /** ACS isolation of this function from its siblings. */
  readonly acs: boolean;
  /** Device/port type. */
  readonly kind: PciDeviceKind;
  /** Secondary bus number of a bridge or port; -1 for an endpoint. */
  readonly secondaryBus: number;
  /** External-facing root or downstream port. */
  readonly externalFacing: boolean;
  /** IOMMU state (the kernel's `dev->iommu`), null until probed. */
  iommu: DevIommu | null = null;
  /** Devices whose requester ID this device may also use (DMA aliases). */
  readonly aliases: number[] = [];

  /** Validate and build a device; throws EINVAL naming the bad field. */
  constructor(cfg: PciDeviceConfig) {
    const op = "pci_device";
    const chk = (ok: boolean, what: string) => {
      if (!ok) throw new IommuError("EINVAL", op, `${cfg.name}: ${what}`);
    };
    const seg = cfg.segment ?? 0;
    chk(Number.isInteger(seg) && seg >= 0 && seg <= 0xffff, `segment ${seg} is outside 0..0xffff`);
    chk(
      Number.isInteger(cfg.bus) && cfg.bus >= 0 && cfg.bus <= 255,
      `bus ${cfg.bus} is outside 0..255`,
    );
    chk(
      Number.isInteger(cfg.device) && cfg.device >= 0 && cfg.device <= 31,
      `device ${cfg.device} is outside 0..31`,
    );
    chk(
      Number.isInteger(cfg.fn) && cfg.fn >= 0 && cfg.fn <= 7,
      `function ${cfg.fn} is outside 0..7`,
    );
    const pb = cfg.pasidBits ?? 0;
    chk(Number.isInteger(pb) && pb >= 0 && pb <= 20, `PASID width ${pb} is outside 0..20`);
    const db = cfg.dmaBits ?? 64;
    chk(Number.isInteger(db) && db >= 12 && db <= 64, `DMA mask width ${db} is outside 12..64`);
    chk(!cfg.pri || !!cfg.ats, `PRI needs ATS`);
    this.name = cfg.name;
    this.segment = seg;
    this.bus = cfg.bus;
    this.device = cfg.device;
    this.fn = cfg.fn;
    this.pasidBits = pb;
    this.ats = cfg.ats ?? false;
    this.pri = cfg.pri ?? false;
    this.untrusted = cfg.untrusted ?? false;
    this.dmaBits = db;
    this.canStall = cfg.canStall ?? false;
    this.acs = cfg.acs ?? true;
    const kind = cfg.kind ?? "endpoint";
    chk(
      PCI_DEVICE_KINDS.includes(kind),
      `kind "${kind}" is not one of ${PCI_DEVICE_KINDS.join(", ")}`,
    );
    this.kind = kind;
    if (kind === "endpoint") {
      chk(cfg.secondaryBus === undefined, `an endpoint has no secondary bus`);
      this.secondaryBus = -1;
    } else {
      const sb = cfg.secondaryBus;
      chk(
        sb !== undefined && Number.isInteger(sb) && sb >= 1 && sb <= 255 && sb !== cfg.bus,
        `a ${kind} needs a secondary bus in 1..255 other than its own bus ${cfg.bus} (got ${sb})`,
      );
      this.secondaryBus = sb!;
    }
    const ext = cfg.externalFacing ?? false;
    chk(
      !ext || kind === "root-port" || kind === "switch-downstream",
      `only a root port or a switch downstream port can be external-facing, not a ${kind}`,
    );
    this.externalFacing = ext;
    for (const a of cfg.aliases ?? []) {
      chk(
        Number.isInteger(a) && a >= 0 && a <= 0xffff,
        `DMA alias ${a} is not a requester ID (0..0xffff)`,
      );
      this.aliases.push(a);
    }
  }

  /** True for ports and bridges (functions with a secondary bus). */
  get isBridge(): boolean {
    return this.secondaryBus >= 0;
  }

  /** Requester ID: bus << 8 | device << 3 | function. */
  get rid(): number {
    return (this.bus << 8) | (this.device << 3) | this.fn;
  }

  /** devfn: device << 3 | function. */
  get devfn(): number {
    return (this.device << 3) | this.fn;
  }

  /** `SSSS:BB:DD.F`. */
  get bdf(): string {
    const h = (n: number, w: number) => n.toString(16).padStart(w, "0");
    return `${h(this.segment, 4)}:${h(this.bus, 2)}:${h(this.device, 2)}.${this.fn}`;
  }

  /** DMA mask width in bits (the kernel's `dma_set_mask`); 12..64. */
  get dmaBits(): number {
    return this.#dmaBits;
  }

  /** Change the DMA mask width (EINVAL outside 12..64). */
  set dmaBits(bits: number) {
    if (!Number.isInteger(bits) || bits < 12 || bits > 64) {
      throw new IommuError(
        "EINVAL",
        "dma_set_mask",
        `${this.name}: DMA mask width ${bits} is outside 12..64`,
      );
    }
    this.#dmaBits = bits;
  }

  /** Largest DMA address (mask) as a number, capped at 2^53 - 1. */
  get dmaMask(): number {
    return this.dmaBits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** this.dmaBits - 1;
  }
}

/** Parse `BB:DD.F` or `SSSS:BB:DD.F` into its parts; throws EINVAL naming the format. */
export function parseBdf(s: string): { segment: number; bus: number; device: number; fn: number } {
  const m = /^(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$/.exec(
    s.trim(),
  );
  if (!m) {
    throw new IommuError(
      "EINVAL",
      "parse_bdf",
      `"${s}" is not a PCI address; use BB:DD.F or SSSS:BB:DD.F in hex`,
    );
  }
  const device = parseInt(m[3], 16);
  if (device > 31) {
    throw new IommuError("EINVAL", "parse_bdf", `"${s}": device ${device} is outside 0..31`);
  }
  return {
    segment: m[1] ? parseInt(m[1], 16) : 0,
    bus: parseInt(m[2], 16),
    device,
    fn: parseInt(m[4], 10),
  };
}
