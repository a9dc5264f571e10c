/**
 * @module
 * Command builders of the driver (arm_smmu_cmdq_build_cmd): each fills a
 * reusable 4-word array with the architecture's layout, on 32-bit halves.
 * `addr & mask` takes the low half directly (ToInt32 is modulo 2^32).
 */

import { OP } from "../hw/structs.ts";

const TWO32 = 4294967296;

/** A fresh 4-word command buffer. */
export function newCmd(): Uint32Array {
  return new Uint32Array(4);
}

/** CMD_CFGI_STE (leaf). */
export function cfgiSte(c: Uint32Array, sid: number, leaf: boolean): Uint32Array {
  c[0] = OP.CFGI_STE;
  c[1] = sid >>> 0;
  c[2] = leaf ? 1 : 0;
  c[3] = 0;
  return c;
}

/** CMD_CFGI_ALL (CFGI_STE_RANGE with Range 31). */
export function cfgiAll(c: Uint32Array): Uint32Array {
  c[0] = OP.CFGI_STE_RANGE;
  c[1] = 0;
  c[2] = 31;
  c[3] = 0;
  return c;
}

/** CMD_CFGI_CD. */
export function cfgiCd(c: Uint32Array, sid: number, ssid: number, leaf: boolean): Uint32Array {
  c[0] = (OP.CFGI_CD | (ssid !== 0 ? 0x800 : 0) | ((ssid & 0xfffff) << 12)) >>> 0;
  c[1] = sid >>> 0;
  c[2] = leaf ? 1 : 0;
  c[3] = 0;
  return c;
}

/** CMD_CFGI_CD_ALL. */
export function cfgiCdAll(c: Uint32Array, sid: number): Uint32Array {
  c[0] = OP.CFGI_CD_ALL;
  c[1] = sid >>> 0;
  c[2] = 0;
  c[3] = 0;
  return c;
}

/** A TLBI with VMID/ASID only (NH_ALL, NH_ASID, S12_VMALL, NSNH_ALL, EL2_ALL, EL2_ASID). */
export function tlbiCtx(c: Uint32Array, op: number, vmid: number, asid: number): Uint32Array {
  c[0] = op;
  c[1] = ((vmid & 0xffff) | ((asid & 0xffff) << 16)) >>> 0;
  c[2] = 0;
  c[3] = 0;
  return c;
}

/** A TLBI by address (NH_VA, NH_VAA, EL2_VA, S2_IPA) with range fields. */
export function tlbiVa(
  c: Uint32Array,
  op: number,
  vmid: number,
  asid: number,
  addr: number,
  leaf: boolean,
  num: number,
  scale: number,
  ttl: number,
  tg: number,
): Uint32Array {
  c[0] = (op | ((num & 0x1f) << 12) | ((scale & 0x1f) << 20)) >>> 0;
  c[1] = ((vmid & 0xffff) | ((asid & 0xffff) << 16)) >>> 0;
  c[2] = ((addr & 0xfffff000) | (leaf ? 1 : 0) | ((ttl & 3) << 8) | ((tg & 3) << 10)) >>>
    0;
  c[3] = Math.floor(addr / TWO32) >>> 0;
  return c;
}

/** CMD_ATC_INV: `sizeLog` = log2 of the number of 4K pages (52 = everything). */
export function atcInv(
  c: Uint32Array,
  sid: number,
  ssid: number,
  addr: number,
  sizeLog: number,
): Uint32Array {
  c[0] = (OP.ATC_INV | (ssid !== 0 ? 0x800 : 0) | ((ssid & 0xfffff) << 12)) >>> 0;
  c[1] = sid >>> 0;
  c[2] = ((addr & 0xfffff000) | (sizeLog & 0x3f)) >>> 0;
  c[3] = Math.floor(addr / TWO32) >>> 0;
  return c;
}

/** CMD_PRI_RESP. */
export function priResp(
  c: Uint32Array,
  sid: number,
  ssid: number,
  ssv: boolean,
  grpid: number,
  resp: number,
): Uint32Array {
  c[0] = (OP.PRI_RESP | (ssv ? 0x800 : 0) | ((ssid & 0xfffff) << 12)) >>> 0;
  c[1] = sid >>> 0;
  c[2] = ((grpid & 0x1ff) | ((resp & 3) << 12)) >>> 0;
  c[3] = 0;
  return c;
}

/** CMD_RESUME. */
export function resume(c: Uint32Array, sid: number, stag: number, action: number): Uint32Array {
  c[0] = (OP.RESUME | ((action & 3) << 12)) >>> 0;
  c[1] = sid >>> 0;
  c[2] = stag & 0xffff;
  c[3] = 0;
  return c;
}

/** CMD_SYNC with completion signal `cs` and an optional MSI write of `data` to `msiAddr`. */
export function sync(c: Uint32Array, cs: number, msiAddr: number, data: number): Uint32Array {
  c[0] = (OP.CMD_SYNC | ((cs & 3) << 12) | (3 << 22) | (0xf << 24)) >>> 0;
  c[1] = data >>> 0;
  c[2] = (msiAddr & 0xfffffffc) >>> 0;
  c[3] = Math.floor(msiAddr / TWO32) >>> 0;
  return c;
}
