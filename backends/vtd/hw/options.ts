/**
 * @module
 * VT-d hardware options (capabilities) with full-featured defaults, and
 * their encoding into CAP_REG / ECAP_REG.
 */

import type { BackendOptions, BackendOptionSpec } from "@iommu-lab/core";
import { IommuError } from "@iommu-lab/core";
import { FRO_OFFSET, IRO_OFFSET } from "./registers.ts";
import { geometry } from "./assoc.ts";

/** Resolved VT-d hardware options. */
export interface VtdOptions {
  /** Instance name. */
  name: string;
  /** MMIO base address. */
  mmioBase: number;
  /** CAP.ND: number of domains = 2^(4+2·nd). */
  nd: number;
  /** CAP.SAGAW bitmap (bit 1 = 39-bit 3-level, 2 = 48-bit 4-level, 3 = 57-bit 5-level). */
  sagaw: number;
  /** CAP.MGAW in bits. */
  mgaw: number;
  /** CAP.CM caching mode. */
  cm: boolean;
  /** CAP.PSI page-selective invalidation. */
  psi: boolean;
  /** CAP.MAMV. */
  mamv: number;
  /** CAP.SLLPS (bit 0 = 2 MiB, bit 1 = 1 GiB). */
  sllps: number;
  /** CAP.FL1GP. */
  fl1gp: boolean;
  /** CAP.FL5LP. */
  fl5lp: boolean;
  /** CAP.NFR: fault recording registers. */
  nfr: number;
  /** ECAP.C coherent walks. */
  coherent: boolean;
  /** ECAP.QI. */
  qi: boolean;
  /** ECAP.DT device TLBs. */
  dt: boolean;
  /** ECAP.PT pass-through. */
  pt: boolean;
  /** ECAP.NEST. */
  nest: boolean;
  /** ECAP.PRS page requests. */
  prs: boolean;
  /** ECAP.ERS execute requests. */
  ers: boolean;
  /** ECAP.SRS supervisor requests. */
  srs: boolean;
  /** ECAP.PASID. */
  pasid: boolean;
  /** ECAP.PSS: PASID width − 1. */
  pss: number;
  /** ECAP.SMTS scalable mode. */
  smts: boolean;
  /** ECAP.SLADS second-stage A/D. */
  slads: boolean;
  /** ECAP.SLTS second-stage translation. */
  slts: boolean;
  /** ECAP.FLTS first-stage translation. */
  flts: boolean;
  /** ECAP.RPS RID_PASID support. */
  rps: boolean;
  /** ECAP.PDS page-drain support. */
  pds: boolean;
  /** ECAP.NWFS no-write-flag support. */
  nwfs: boolean;
  /** Checking mode from the start. */
  checking: boolean;
  /** IOTLB entries (all tags: `tlb_ways` × a power of two; LRU within a set). */
  tlb_entries: number;
  /** IOTLB associativity (ways per set; clamped to `tlb_entries`). */
  tlb_ways: number;
  /** Device-TLB entries of each ATS device (its own ATC: `devtlb_ways` × a power of two; LRU within a set). */
  devtlb_entries: number;
  /** Device-TLB associativity (ways per set; clamped to `devtlb_entries`). */
  devtlb_ways: number;
  /** Paging-structure-cache entries per stage (all tags: `psc_ways` × a power of two; LRU within a set). */
  psc_entries: number;
  /** Paging-structure-cache associativity (ways per set; clamped to `psc_entries`). */
  psc_ways: number;
  /** Context-cache entries (`ctx_ways` × a power of two; LRU within a set). */
  ctx_entries: number;
  /** Context-cache associativity (ways per set; clamped to `ctx_entries`). */
  ctx_ways: number;
  /** PASID-cache entries (`pasid_cache_ways` × a power of two; LRU within a set). */
  pasid_cache_entries: number;
  /** PASID-cache associativity (ways per set; clamped to `pasid_cache_entries`). */
  pasid_cache_ways: number;
}

/** The option specs (names as `--opt NAME=VALUE` takes them). */
export const VTD_OPTION_SPECS: readonly BackendOptionSpec[] = [
  { name: "name", type: "string", default: "vtd0", description: "instance name" },
  {
    name: "mmio_base",
    type: "number",
    default: 0xfed90000,
    description: "register window base address",
  },
  { name: "nd", type: "number", default: 6, min: 0, max: 6, description: "CAP.ND (2^(4+2n) DIDs)" },
  {
    name: "sagaw",
    type: "number",
    default: 0b1110,
    min: 1,
    max: 0b1110,
    description: "CAP.SAGAW bitmap: bit1 39-bit, bit2 48-bit, bit3 57-bit",
  },
  { name: "mgaw", type: "number", default: 57, min: 39, max: 57, description: "CAP.MGAW in bits" },
  { name: "cm", type: "boolean", default: false, description: "CAP.CM caching mode" },
  { name: "psi", type: "boolean", default: true, description: "CAP.PSI page-selective inv." },
  { name: "mamv", type: "number", default: 18, min: 0, max: 63, description: "CAP.MAMV" },
  { name: "sllps", type: "number", default: 3, min: 0, max: 3, description: "CAP.SLLPS" },
  { name: "fl1gp", type: "boolean", default: true, description: "CAP.FL1GP 1 GiB FS pages" },
  { name: "fl5lp", type: "boolean", default: true, description: "CAP.FL5LP 5-level FS" },
  { name: "nfr", type: "number", default: 8, min: 1, max: 8, description: "CAP.NFR+1 records" },
  { name: "coherent", type: "boolean", default: true, description: "ECAP.C coherent walks" },
  { name: "qi", type: "boolean", default: true, description: "ECAP.QI queued invalidation" },
  { name: "dt", type: "boolean", default: true, description: "ECAP.DT device TLBs" },
  { name: "pt", type: "boolean", default: true, description: "ECAP.PT pass-through" },
  { name: "nest", type: "boolean", default: true, description: "ECAP.NEST nested" },
  { name: "prs", type: "boolean", default: true, description: "ECAP.PRS page requests" },
  { name: "ers", type: "boolean", default: true, description: "ECAP.ERS execute requests" },
  { name: "srs", type: "boolean", default: true, description: "ECAP.SRS supervisor requests" },
  { name: "pasid", type: "boolean", default: true, description: "ECAP.PASID" },
  { name: "pss", type: "number", default: 19, min: 0, max: 19, description: "ECAP.PSS" },
  { name: "smts", type: "boolean", default: true, description: "ECAP.SMTS scalable mode" },
  { name: "slads", type: "boolean", default: true, description: "ECAP.SLADS SS A/D" },
  { name: "slts", type: "boolean", default: true, description: "ECAP.SLTS second stage" },
  { name: "flts", type: "boolean", default: true, description: "ECAP.FLTS first stage" },
  { name: "rps", type: "boolean", default: true, description: "ECAP.RPS RID_PASID" },
  { name: "pds", type: "boolean", default: true, description: "ECAP.PDS page drain" },
  { name: "nwfs", type: "boolean", default: true, description: "ECAP.NWFS no-write flag" },
  { name: "checking", type: "boolean", default: false, description: "checking mode" },
  {
    name: "tlb_entries",
    type: "number",
    default: 4096,
    min: 1,
    max: 1 << 20,
    description: "IOTLB capacity (all DIDs and PASIDs; tlb_ways x a power of two; LRU in a set)",
  },
  {
    name: "tlb_ways",
    type: "number",
    default: 8,
    min: 1,
    max: 64,
    description: "IOTLB associativity (ways per set, at most tlb_entries)",
  },
  {
    name: "devtlb_entries",
    type: "number",
    default: 4096,
    min: 1,
    max: 1 << 20,
    description:
      "device-TLB capacity of each ATS device (its own ATC, all its PASIDs; devtlb_ways x a power of two; LRU in a set)",
  },
  {
    name: "devtlb_ways",
    type: "number",
    default: 8,
    min: 1,
    max: 64,
    description: "device-TLB associativity (ways per set, at most devtlb_entries)",
  },
  {
    name: "psc_entries",
    type: "number",
    default: 256,
    min: 1,
    max: 1 << 20,
    description:
      "paging-structure-cache capacity per stage (all DIDs and PASIDs; psc_ways x a power of two; LRU in a set)",
  },
  {
    name: "psc_ways",
    type: "number",
    default: 4,
    min: 1,
    max: 64,
    description: "paging-structure-cache associativity (ways per set, at most psc_entries)",
  },
  {
    name: "ctx_entries",
    type: "number",
    default: 1024,
    min: 1,
    max: 1 << 16,
    description: "context-cache capacity (by RID; ctx_ways x a power of two; LRU in a set)",
  },
  {
    name: "ctx_ways",
    type: "number",
    default: 8,
    min: 1,
    max: 64,
    description: "context-cache associativity (ways per set, at most ctx_entries)",
  },
  {
    name: "pasid_cache_entries",
    type: "number",
    default: 1024,
    min: 1,
    max: 1 << 20,
    description:
      "PASID-cache capacity (by RID and PASID; pasid_cache_ways x a power of two; LRU in a set)",
  },
  {
    name: "pasid_cache_ways",
    type: "number",
    default: 8,
    min: 1,
    max: 64,
    description: "PASID-cache associativity (ways per set, at most pasid_cache_entries)",
  },
];

/** Resolve `raw` options against the specs (defaults filled; EINVAL naming a bad one). */
export function resolveVtdOptions(raw: BackendOptions = {}): VtdOptions {
  const out: Record<string, boolean | number | string> = {};
  for (const k of Object.keys(raw)) {
    if (!VTD_OPTION_SPECS.some((s) => s.name === k)) {
      throw new IommuError(
        "EINVAL",
        "vtd_options",
        `unknown option "${k}"; known: ${VTD_OPTION_SPECS.map((s) => s.name).join(", ")}`,
      );
    }
  }
  for (const s of VTD_OPTION_SPECS) {
    const v = raw[s.name] ?? s.default;
    const typed = s.type === "number"
      ? typeof v === "number"
      : s.type === "boolean"
      ? typeof v === "boolean"
      : typeof v === "string";
    if (!typed) {
      throw new IommuError("EINVAL", "vtd_options", `option ${s.name} must be a ${s.type}`);
    }
    if (typeof v === "number") {
      if (
        !Number.isInteger(v) || (s.min !== undefined && v < s.min) ||
        (s.max !== undefined && v > s.max)
      ) {
        throw new IommuError(
          "EINVAL",
          "vtd_options",
          `option ${s.name}=${v} is outside ${s.min ?? "-inf"}..${s.max ?? "inf"}`,
        );
      }
    }
    out[s.name] = v;
  }
  const o = {
    ...out,
    mmioBase: out.mmio_base,
  } as unknown as VtdOptions;
  if ((o.sagaw & 0b1110) === 0) {
    throw new IommuError(
      "EINVAL",
      "vtd_options",
      `sagaw=${o.sagaw} supports no AW (need bit 1, 2 or 3)`,
    );
  }
  geometry("tlb", o.tlb_entries, o.tlb_ways);
  geometry("devtlb", o.devtlb_entries, o.devtlb_ways);
  geometry("psc", o.psc_entries, o.psc_ways);
  geometry("ctx", o.ctx_entries, o.ctx_ways);
  geometry("pasid_cache", o.pasid_cache_entries, o.pasid_cache_ways);
  return o;
}

/** CAP_REG value as [lo, hi] halves. */
export function encodeCap(o: VtdOptions): [number, number] {
  const lo = (o.nd & 7) | ((o.cm ? 1 : 0) << 7) | ((o.sagaw & 0x1f) << 8) |
    (((o.mgaw - 1) & 0x3f) << 16) | (((FRO_OFFSET / 16) & 0xff) << 24);
  const hi = ((FRO_OFFSET / 16) >>> 8 & 3) | ((o.sllps & 0xf) << 2) | ((o.psi ? 1 : 0) << 7) |
    (((o.nfr - 1) & 0xff) << 8) | ((o.mamv & 0x3f) << 16) | (1 << 22) | (1 << 23) |
    ((o.fl1gp ? 1 : 0) << 24) | ((o.fl5lp ? 1 : 0) << 28);
  return [lo >>> 0, hi >>> 0];
}

/** ECAP_REG value as [lo, hi] halves. */
export function encodeEcap(o: VtdOptions): [number, number] {
  const b = (x: boolean, n: number) => (x ? 1 : 0) << n;
  const lo = b(o.coherent, 0) | b(o.qi, 1) | b(o.dt, 2) | b(o.pt, 6) | b(true, 7) |
    (((IRO_OFFSET / 16) & 0x3ff) << 8) | b(o.nest, 26) | b(o.prs, 29) | b(o.ers, 30) |
    b(o.srs, 31);
  const hi = b(o.nwfs, 1) | ((o.pss & 0x1f) << 3) | b(o.pasid, 8) | b(o.pds, 10) |
    b(o.smts, 11) | b(o.slads, 13) | b(o.slts, 14) | b(o.flts, 15) | b(o.rps, 17);
  return [lo >>> 0, hi >>> 0];
}
