/**
 * @module
 * The contract between a DMA master and the hardware model that translates
 * its requests ("a device does DMA only through the hardware model's
 * translation path"). Request and result objects are reused by callers so
 * that a translation allocates nothing.
 */

/** Access kind bit: read. */
export const ACCESS_READ = 1;
/** Access kind bit: write. */
export const ACCESS_WRITE = 2;
/** Access kind bit: instruction fetch (execute). */
export const ACCESS_EXEC = 4;
/** Access kind: atomic (read and write in one transaction). */
export const ACCESS_ATOMIC = ACCESS_READ | ACCESS_WRITE;

/** No PASID on the request. */
export const NO_PASID: number = -1;

/** One untranslated DMA transaction as it leaves the device. */
export interface DmaRequest {
  /** Requester ID (PCI) — SMMUv3 uses it as the StreamID. */
  rid: number;
  /** PASID / SubstreamID, or {@link NO_PASID}. */
  pasid: number;
  /** Input address (IOVA, or VA for SVA); below 2^53. */
  addr: number;
  /** ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC. */
  access: number;
  /** Privileged (supervisor) request. */
  priv: boolean;
}

/** Outcome of a translation. Fields are overwritten on every call. */
export interface TranslateResult {
  /** True when the access may proceed at `pa`. */
  ok: boolean;
  /** Output physical address of `addr` (valid when ok). */
  pa: number;
  /** Permissions of the translation (ACCESS_* bits). */
  perm: number;
  /**
   * Size of the naturally aligned region around `addr` that the same
   * translation covers (the page or block size); a master may reuse the
   * result for other addresses in it. At least 4096 when ok.
   */
  span: number;
  /** Fault reason name when not ok (the specification's name, e.g. `"F_TRANSLATION"`, `"DMAR_FR_PTE_NOT_PRESENT"`). */
  fault: string;
  /** The specification's fault/event code (VT-d fault reason, SMMU event ID). */
  faultCode: number;
  /**
   * When not ok: the request is waiting rather than failed — a page request
   * was queued (PRI) or the transaction stalled. The device retries after
   * the response arrives.
   */
  pending: boolean;
}

/** A fresh, reusable result object. */
export function newTranslateResult(): TranslateResult {
  return { ok: false, pa: 0, perm: 0, span: 0, fault: "", faultCode: 0, pending: false };
}

/** A fresh, reusable request object. */
export function newDmaRequest(): DmaRequest {
  return { rid: 0, pasid: NO_PASID, addr: 0, access: ACCESS_READ, priv: false };
}

/** Anything that translates DMA: an IOMMU hardware model. */
export interface DmaTranslator {
  /** Translate `req` into `out`; never throws for bad tables (they are faults). */
  translate(req: DmaRequest, out: TranslateResult): void;
}

/** Identity translation: a device with no IOMMU reaches memory directly. */
export const DIRECT_TRANSLATOR: DmaTranslator = {
  translate(req: DmaRequest, out: TranslateResult): void {
    out.ok = true;
    out.pa = req.addr;
    out.perm = ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC;
    out.span = 4096;
    out.fault = "";
    out.faultCode = 0;
    out.pending = false;
  },
};
