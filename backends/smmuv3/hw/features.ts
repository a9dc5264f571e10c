/**
 * @module
 * The SMMUv3 hardware features a model instance implements (what the ID
 * registers report), from backend options with full-featured defaults.
 */

import type { BackendOptions, BackendOptionSpec } from "@iommu-lab/core";
import { IommuError } from "@iommu-lab/core";

/** Resolved features. */
export interface SmmuFeatures {
  /** Stage 1 implemented. */
  s1: boolean;
  /** Stage 2 implemented. */
  s2: boolean;
  /** 2-level stream tables. */
  st2lvl: boolean;
  /** 2-level CD tables. */
  cd2l: boolean;
  /** 16-bit ASIDs. */
  asid16: boolean;
  /** 16-bit VMIDs. */
  vmid16: boolean;
  /** ATS. */
  ats: boolean;
  /** PRI. */
  pri: boolean;
  /** Stall model: "stall" (supported), "terminate" (no stalls), "force". */
  stall: string;
  /** Range invalidation (IDR3.RIL). */
  rangeInv: boolean;
  /** HTTU: "none", "access", "dirty". */
  httu: string;
  /** EL2 (hyp) translation regime. */
  hyp: boolean;
  /** MSI for CMD_SYNC and queues. */
  msi: boolean;
  /** SEV. */
  sev: boolean;
  /** SubstreamID bits. */
  ssidBits: number;
  /** StreamID bits. */
  sidBits: number;
  /** Output address size in bits (one of 32,36,40,42,44,48,52). */
  oas: number;
  /** Granules supported. */
  gran4k: boolean;
  /** 16K granule. */
  gran16k: boolean;
  /** 64K granule. */
  gran64k: boolean;
  /** Log2 of the largest queues. */
  cmdqs: number;
  /** Event queue max log2 size. */
  evtqs: number;
  /** PRI queue max log2 size. */
  priqs: number;
  /** TLB capacity (entries; oldest evicted first). */
  tlbSize: number;
  /** Walk cache of table descriptors on (option `walk_cache`). */
  walkCache: boolean;
  /** Walk-cache capacity (entries; oldest of the oldest context evicted first). */
  walkCacheSize: number;
  /** Physical base of the register window. */
  base: number;
  /** Instance name. */
  name: string;
  /** PCI segment of the devices behind this SMMU. */
  segment: number;
  /** First PCI bus behind this SMMU. */
  busFirst: number;
  /** Last PCI bus behind this SMMU. */
  busLast: number;
}

/** The backend's options (for the CLI and `deno task cli backends`). */
export const SMMU_OPTIONS: readonly BackendOptionSpec[] = [
  { name: "name", type: "string", default: "smmu0", description: "instance name" },
  {
    name: "buses",
    type: "string",
    default: "0-255",
    description: "PCI buses behind this SMMU, FIRST-LAST (the IORT ID mapping)",
  },
  { name: "segment", type: "number", default: 0, min: 0, max: 0xffff, description: "PCI segment" },
  {
    name: "base",
    type: "number",
    default: 0x0900_0000,
    description: "physical base of the register window",
  },
  {
    name: "stages",
    type: "string",
    default: "both",
    values: ["both", "s1", "s2"],
    description: "translation stages implemented (IDR0.S1P/S2P)",
  },
  { name: "st_2lvl", type: "boolean", default: true, description: "2-level stream tables" },
  { name: "cd2l", type: "boolean", default: true, description: "2-level CD tables" },
  { name: "asid16", type: "boolean", default: true, description: "16-bit ASIDs" },
  { name: "vmid16", type: "boolean", default: true, description: "16-bit VMIDs" },
  { name: "ats", type: "boolean", default: true, description: "ATS" },
  { name: "pri", type: "boolean", default: true, description: "PRI queue" },
  {
    name: "stall",
    type: "string",
    default: "stall",
    values: ["stall", "terminate", "force"],
    description: "stall model (IDR0.STALL_MODEL)",
  },
  { name: "range_inv", type: "boolean", default: true, description: "range invalidation (RIL)" },
  {
    name: "httu",
    type: "string",
    default: "dirty",
    values: ["none", "access", "dirty"],
    description: "hardware access/dirty updates",
  },
  { name: "hyp", type: "boolean", default: true, description: "EL2 regime (IDR0.HYP)" },
  { name: "msi", type: "boolean", default: true, description: "MSIs (IDR0.MSI)" },
  { name: "sev", type: "boolean", default: true, description: "SEV (IDR0.SEV)" },
  { name: "ssidsize", type: "number", default: 20, min: 0, max: 20, description: "SSID bits" },
  { name: "sidsize", type: "number", default: 32, min: 0, max: 32, description: "StreamID bits" },
  {
    name: "oas",
    type: "number",
    default: 48,
    values: [32, 36, 40, 42, 44, 48, 52],
    description: "output address size",
  },
  { name: "gran4k", type: "boolean", default: true, description: "4K granule" },
  { name: "gran16k", type: "boolean", default: true, description: "16K granule" },
  { name: "gran64k", type: "boolean", default: true, description: "64K granule" },
  { name: "cmdqs", type: "number", default: 19, min: 0, max: 19, description: "CMDQ log2 max" },
  { name: "evtqs", type: "number", default: 19, min: 0, max: 19, description: "EVTQ log2 max" },
  { name: "priqs", type: "number", default: 19, min: 0, max: 19, description: "PRIQ log2 max" },
  {
    name: "tlb_size",
    type: "number",
    default: 8192,
    min: 1,
    max: 1 << 24,
    description: "TLB entries",
  },
  {
    name: "walk_cache",
    type: "boolean",
    default: true,
    description: "walk cache of stage-1/stage-2 table descriptors",
  },
  {
    name: "walk_cache_size",
    type: "number",
    default: 512,
    min: 1,
    max: 1 << 20,
    description: "walk-cache entries",
  },
];

/** Resolve options (missing ones take their defaults); refuses unknown or ill-typed values with EINVAL. */
export function resolveFeatures(opts: BackendOptions = {}): SmmuFeatures {
  const v: Record<string, boolean | number | string> = {};
  for (const spec of SMMU_OPTIONS) v[spec.name] = spec.default;
  for (const [k, val] of Object.entries(opts)) {
    const spec = SMMU_OPTIONS.find((s) => s.name === k);
    if (!spec) {
      throw new IommuError(
        "EINVAL",
        "smmuv3_options",
        `unknown option "${k}"; options: ${SMMU_OPTIONS.map((s) => s.name).join(", ")}`,
      );
    }
    const kind: string = typeof val;
    if (kind !== spec.type) {
      throw new IommuError("EINVAL", "smmuv3_options", `option ${k} must be a ${spec.type}`);
    }
    if (spec.values && !spec.values.includes(val as string | number)) {
      throw new IommuError(
        "EINVAL",
        "smmuv3_options",
        `option ${k}=${val} is not one of ${spec.values.join(", ")}`,
      );
    }
    if (
      typeof val === "number" &&
      (!Number.isInteger(val) || (spec.min !== undefined && val < spec.min) ||
        (spec.max !== undefined && val > spec.max))
    ) {
      throw new IommuError(
        "EINVAL",
        "smmuv3_options",
        `option ${k}=${val} is outside ${spec.min}..${spec.max}`,
      );
    }
    v[k] = val;
  }
  const bm = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(String(v.buses));
  if (!bm || Number(bm[1]) > Number(bm[2]) || Number(bm[2]) > 255) {
    throw new IommuError(
      "EINVAL",
      "smmuv3_options",
      `option buses=${v.buses} is not FIRST-LAST with 0 <= FIRST <= LAST <= 255`,
    );
  }
  return {
    segment: v.segment as number,
    busFirst: Number(bm[1]),
    busLast: Number(bm[2]),
    s1: v.stages !== "s2",
    s2: v.stages !== "s1",
    st2lvl: v.st_2lvl as boolean,
    cd2l: v.cd2l as boolean,
    asid16: v.asid16 as boolean,
    vmid16: v.vmid16 as boolean,
    ats: v.ats as boolean,
    pri: v.pri as boolean,
    stall: v.stall as string,
    rangeInv: v.range_inv as boolean,
    httu: v.httu as string,
    hyp: v.hyp as boolean,
    msi: v.msi as boolean,
    sev: v.sev as boolean,
    ssidBits: v.ssidsize as number,
    sidBits: v.sidsize as number,
    oas: v.oas as number,
    gran4k: v.gran4k as boolean,
    gran16k: v.gran16k as boolean,
    gran64k: v.gran64k as boolean,
    cmdqs: v.cmdqs as number,
    evtqs: v.evtqs as number,
    priqs: v.priqs as number,
    tlbSize: v.tlb_size as number,
    walkCache: v.walk_cache as boolean,
    walkCacheSize: v.walk_cache_size as number,
    base: v.base as number,
    name: v.name as string,
  };
}
