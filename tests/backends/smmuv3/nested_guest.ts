/**
 * @module
 * Test helper: a guest on a nested SMMUv3 domain. The host driver gives a
 * device a NEST_PARENT stage-2 domain; guest RAM is host pages mapped at
 * IPA = PA + {@link IPA_OFF}; the guest's CD and 4-level stage-1 tables are
 * written by hand in IPA space, and its vSTE attaches a nested domain.
 */
import { IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_READ, IOMMU_WRITE, Machine } from "@iommu-lab/core";
import type { PciDevice } from "@iommu-lab/core";
import plugin, {
  CD,
  type SmmuDomain,
  type SmmuV3,
  type SmmuV3Driver,
  STE,
} from "../../../backends/smmuv3/mod.ts";

/** Guest-physical = host-physical + IPA_OFF. */
export const IPA_OFF = 0x10_0000_0000;

/** What {@link nestedGuest} built. */
export interface NestedGuest {
  /** The machine. */
  m: Machine;
  /** The device (bus 3). */
  dev: PciDevice;
  /** The host driver. */
  d: SmmuV3Driver;
  /** The hardware model, checking mode on. */
  smmu: SmmuV3;
  /** The stage-2 NEST_PARENT domain. */
  parent: SmmuDomain;
  /** Host address of the guest's CD (ASID 42). */
  cd: number;
  /** IPAs of the level-1..3 stage-1 tables the walk of `va` reads. */
  tableIpas: number[];
  /** Host addresses of the data pages mapped at `va`, `va + 4K`, ... */
  data: number[];
  /** Attach the nested domain described by the guest's vSTE. */
  attach(): void;
}

/** A guest whose stage-1 maps `pages` consecutive pages from `va` (one last-level table). */
export function nestedGuest(va: number, pages: number): NestedGuest {
  const m = new Machine();
  const dev = m.pci.add({ name: "vf", bus: 3, device: 0, fn: 0 });
  const { hw, driver } = plugin.create(m, {});
  const d = driver as SmmuV3Driver;
  const smmu = hw as SmmuV3;
  smmu.checking = true;
  d.probeDevice(dev);
  const parent = d.domainAllocPaging(dev, IOMMU_HWPT_ALLOC_NEST_PARENT) as SmmuDomain;
  // Guest RAM: pages the host gives the guest, mapped IPA -> PA in the parent.
  const guestPage = () => {
    const pa = m.pages.allocPage();
    parent.mapPages!(pa + IPA_OFF, pa, 4096, 1, IOMMU_READ | IOMMU_WRITE);
    return pa;
  };
  const writeDesc = (at: number, ipa: number, bits: number) =>
    m.mem.write64(at, (ipa % 2 ** 32 | bits) >>> 0, Math.floor(ipa / 2 ** 32));
  const cd = guestPage();
  const pgd = guestPage();
  m.mem.writeWords(
    cd,
    CD.encode({
      V: 1,
      AA64: 1,
      R: 1,
      A: 1,
      T0SZ: 16,
      IPS: 5,
      ASID: 42,
      TTB0: (pgd + IPA_OFF) / 16,
    }),
  );
  let table = pgd;
  const tableIpas: number[] = [];
  for (let level = 0; level < 3; level++) {
    const next = guestPage();
    tableIpas.push(next + IPA_OFF);
    writeDesc(table + (Math.floor(va / 2 ** (12 + 9 * (3 - level))) % 512) * 8, next + IPA_OFF, 3);
    table = next;
  }
  const data: number[] = [];
  for (let i = 0; i < pages; i++) {
    data.push(guestPage());
    writeDesc(table + (Math.floor(va / 4096) % 512 + i) * 8, data[i] + IPA_OFF, 3 | 0x440);
  }
  const attach = () => {
    const vste = STE.encode({ V: 1, CONFIG: 5, S1ContextPtr: cd + IPA_OFF });
    d.domainAllocNested(dev, parent, 0, { ste: vste.subarray(0, 4) }).attachDev(dev, null);
  };
  return { m, dev, d, smmu, parent, cd, tableIpas, data, attach };
}
