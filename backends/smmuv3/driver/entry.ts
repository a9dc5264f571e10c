/**
 * @module
 * STE and CD construction and the kernel's used-bits update algorithm
 * (arm_smmu_write_entry, v6.9+): an entry is changed so that the SMMU, which
 * may fetch it at any moment, only ever sees either the old or the new
 * configuration in the bits it uses, with the fewest sync rounds:
 *
 * 1. write every bit the current config does not use (hitless), sync;
 * 2. if then only one 64-bit word still differs in used bits, write it
 *    (single-copy atomic), sync, and clean up the rest;
 * 3. otherwise zero word 0 (V=0), sync, write words 1.., sync, write
 *    word 0, sync.
 *
 * Entries are arrays of 64-bit words held as 32-bit halves: word i is
 * `[2i]` (low) and `[2i+1]` (high).
 */

import { EATS, S1DSS, STE_CFG } from "../hw/structs.ts";

/** Number of 64-bit words in an STE or a CD. */
export const ENTRY_QWORDS = 8;

/** Which bits of an entry the SMMU uses, given the entry's own contents. */
export type UsedFn = (entry: Uint32Array, used: Uint32Array) => void;

/** The writer's side: read/write 64-bit words of the live entry and issue a sync. */
export interface EntryWriter {
  /** Bits the hardware uses for an entry value. */
  used: UsedFn;
  /** Read 64-bit word `i` of the live entry into `out[2i..2i+1]`. */
  read(out: Uint32Array): void;
  /** Write 64-bit word `i` (single-copy atomic). */
  write(i: number, lo: number, hi: number): void;
  /** Invalidate the SMMU's cached copy and wait (CFGI + CMD_SYNC). */
  sync(): void;
}

/** `arm_smmu_get_ste_used`. */
export function steUsed(ent: Uint32Array, used: Uint32Array): void {
  used.fill(0);
  used[0] = 1; // V
  if ((ent[0] & 1) === 0) return;
  used[0] |= 0xe; // CONFIG
  const cfg = (ent[0] >>> 1) & 7;
  if (cfg & 1) {
    // stage 1 translates
    used[0] |= 0xffffffc0 | 0x30; // S1CTXPTR low + S1FMT
    used[1] |= 0xfffff | 0xf8000000; // S1CTXPTR high (51:32) + S1CDMAX (63:59)
    used[2] |= 3 | (3 << 2) | (3 << 4) | (3 << 6) | (1 << 27) | (3 << 28) | (3 << 30);
    used[2] >>>= 0;
    used[4] |= 0xffff; // S2VMID
    if ((ent[2] & 3) === S1DSS.BYPASS) used[3] |= 3 << 12; // SHCFG
  }
  if (cfg & 2) {
    // stage 2 translates
    used[2] = (used[2] | (3 << 28)) >>> 0; // EATS
    used[3] |= 3 << 12; // SHCFG
    used[4] |= 0xffff;
    used[5] |= 0x7ffff | (1 << 19) | (1 << 20) | (1 << 22) | (1 << 25) | (1 << 26);
    used[6] = 0xfffffff0;
    used[7] = 0xfffff;
  }
  if (cfg === STE_CFG.BYPASS) used[3] |= 3 << 12;
}

/** `arm_smmu_get_cd_used`. */
export function cdUsed(ent: Uint32Array, used: Uint32Array): void {
  used.fill(0);
  used[0] = 0x80000000; // V
  if ((ent[0] & 0x80000000) === 0) return;
  used.fill(0xffffffff);
  if (ent[0] & (1 << 14)) {
    // EPD0: T0SZ, TG0, IRGN0, ORGN0, SH0 and TTB0 are ignored.
    used[0] = (used[0] & ~0x3fff) >>> 0;
    used[2] = (used[2] & ~0xfffffff0) >>> 0;
    used[3] = (used[3] & ~0xfffff) >>> 0;
  }
}

const scratch = {
  cur: new Uint32Array(16),
  curUsed: new Uint32Array(16),
  tgtUsed: new Uint32Array(16),
  unused: new Uint32Array(16),
};

/** Write `words[start..start+len)` that differ; sync if any did. Returns true when it wrote. */
function entrySet(
  w: EntryWriter,
  cur: Uint32Array,
  words: Uint32Array,
  start: number,
  len: number,
): boolean {
  let changed = false;
  for (let i = start; i < start + len; i++) {
    if (cur[2 * i] !== words[2 * i] || cur[2 * i + 1] !== words[2 * i + 1]) {
      w.write(i, words[2 * i], words[2 * i + 1]);
      cur[2 * i] = words[2 * i];
      cur[2 * i + 1] = words[2 * i + 1];
      changed = true;
    }
  }
  if (changed) w.sync();
  return changed;
}

/**
 * `arm_smmu_write_entry`: move the live entry to `target`. Returns the number
 * of sync rounds it took (0 when nothing changed).
 */
export function writeEntry(w: EntryWriter, target: Uint32Array): number {
  const { cur, curUsed, tgtUsed, unused } = scratch;
  w.read(cur);
  w.used(cur, curUsed);
  w.used(target, tgtUsed);
  let diffMask = 0;
  for (let i = 0; i < ENTRY_QWORDS; i++) {
    for (let h = 0; h < 2; h++) {
      const k = 2 * i + h;
      // Bits unused by the current config can take their target value at once.
      unused[k] = ((cur[k] & curUsed[k]) | (target[k] & ~curUsed[k])) >>> 0;
      if (((unused[k] ^ target[k]) & tgtUsed[k]) !== 0) diffMask |= 1 << i;
    }
  }
  let rounds = 0;
  const critical = diffMask !== 0 && (diffMask & (diffMask - 1)) === 0
    ? 31 - Math.clz32(diffMask)
    : -1;
  if (critical >= 0) {
    // Hitless: one word carries every used change.
    unused[2 * critical] = cur[2 * critical];
    unused[2 * critical + 1] = cur[2 * critical + 1];
    if (entrySet(w, cur, unused, 0, ENTRY_QWORDS)) rounds++;
    if (entrySet(w, cur, target, critical, 1)) rounds++;
    if (entrySet(w, cur, target, 0, ENTRY_QWORDS)) rounds++;
  } else if (diffMask !== 0) {
    // Disruptive: break V, rewrite the rest, then set word 0.
    unused[0] = 0;
    unused[1] = 0;
    if (entrySet(w, cur, unused, 0, 1)) rounds++;
    if (entrySet(w, cur, target, 1, ENTRY_QWORDS - 1)) rounds++;
    if (entrySet(w, cur, target, 0, 1)) rounds++;
  } else {
    // Only unused bits differ.
    if (entrySet(w, cur, target, 0, ENTRY_QWORDS)) rounds++;
  }
  return rounds;
}

/** STE cache attributes the kernel uses for the CD table fetch: WBRA, inner shareable. */
const STE1_S1_ATTRS = (1 << 2) | (1 << 4) | (3 << 6);

/** `arm_smmu_make_abort_ste`. */
export function makeAbortSte(t: Uint32Array): Uint32Array {
  t.fill(0);
  t[0] = 1 | (STE_CFG.ABORT << 1);
  return t;
}

/** `arm_smmu_make_bypass_ste`: SHCFG=INCOMING when the SMMU has ATTR_TYPES_OVR. */
export function makeBypassSte(t: Uint32Array, attrTypesOvr = true): Uint32Array {
  t.fill(0);
  t[0] = 1 | (STE_CFG.BYPASS << 1);
  if (attrTypesOvr) t[3] = 1 << 12; // SHCFG = INCOMING
  return t;
}

/** `arm_smmu_make_cdtable_ste`. */
export function makeCdtableSte(
  t: Uint32Array,
  cdTable: number,
  s1fmt: number,
  cdMax: number,
  s1dss: number,
  ats: boolean,
  stallDisable: boolean,
  attrTypesOvr = true,
): Uint32Array {
  t.fill(0);
  t[0] = (1 | (STE_CFG.S1_TRANS << 1) | (s1fmt << 4) | ((cdTable % 4294967296) & ~0x3f)) >>> 0;
  t[1] = ((Math.floor(cdTable / 4294967296) & 0xfffff) | (cdMax << 27)) >>> 0;
  t[2] = (s1dss | STE1_S1_ATTRS | (stallDisable ? 1 << 27 : 0) |
    ((ats ? EATS.TRANS : 0) << 28)) >>> 0;
  if (attrTypesOvr && s1dss === S1DSS.BYPASS) t[3] = 1 << 12;
  return t;
}

/** `arm_smmu_make_s2_domain_ste`. VTCR fields packed as the STE's bits 50:32. */
export function makeS2Ste(
  t: Uint32Array,
  vmid: number,
  vtcr: { ps: number; tg: number; sh: number; orgn: number; irgn: number; sl: number; tsz: number },
  vttbr: number,
  ats: boolean,
  stall = false,
  attrTypesOvr = true,
): Uint32Array {
  t.fill(0);
  t[0] = 1 | (STE_CFG.S2_TRANS << 1);
  t[2] = ((ats ? EATS.TRANS : 0) << 28) >>> 0;
  if (attrTypesOvr) t[3] = 1 << 12;
  t[4] = vmid & 0xffff;
  t[5] = (vtcr.tsz | (vtcr.sl << 6) | (vtcr.irgn << 8) | (vtcr.orgn << 10) | (vtcr.sh << 12) |
    (vtcr.tg << 14) | (vtcr.ps << 16) | (1 << 19) | (1 << 22) | (stall ? 1 << 25 : 0) |
    (1 << 26)) >>> 0; // S2AA64, S2PTW, S2S, S2R
  t[6] = ((vttbr % 4294967296) & 0xfffffff0) >>> 0;
  t[7] = Math.floor(vttbr / 4294967296) & 0xfffff;
  return t;
}

/** `arm_smmu_make_s1_cd`: a valid stage-1 CD (HA and HD together, for dirty tracking). */
export function makeS1Cd(
  t: Uint32Array,
  asid: number,
  tcr: { ips: number; tg: number; sh: number; orgn: number; irgn: number; tsz: number },
  ttbr: number,
  mair: bigint,
  opts: { ha: boolean; hd: boolean; stall: boolean },
): Uint32Array {
  t.fill(0);
  t[0] = (tcr.tsz | (tcr.tg << 6) | (tcr.irgn << 8) | (tcr.orgn << 10) | (tcr.sh << 12) |
    (1 << 30) | 0x80000000) >>> 0; // EPD1, V
  t[1] = (tcr.ips | (1 << 9) | (opts.hd ? 1 << 10 : 0) | (opts.ha ? 1 << 11 : 0) |
    (opts.stall ? 1 << 12 : 0) | (1 << 13) | (1 << 14) | (1 << 15) | ((asid & 0xffff) << 16)) >>> 0; // AA64, R, A, ASET
  t[2] = ((ttbr % 4294967296) & 0xfffffff0) >>> 0;
  t[3] = Math.floor(ttbr / 4294967296) & 0xfffff;
  t[6] = Number(mair & 0xffffffffn);
  t[7] = Number((mair >> 32n) & 0xffffffffn);
  return t;
}
