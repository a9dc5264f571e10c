/**
 * @module
 * Test helpers: a machine with an SMMUv3 model on its bus, and hand-written
 * tables (stream table, CDs, LPAE page tables) built with PhysMem and the
 * field tables — code independent of the driver.
 */

import { Machine, newDmaRequest, newTranslateResult, NO_PASID } from "@iommu-lab/core";
import type { DmaRequest, TranslateResult } from "@iommu-lab/core";
import { resolveFeatures } from "../../../backends/smmuv3/hw/features.ts";
import { SmmuV3 } from "../../../backends/smmuv3/hw/smmu.ts";
import { REG } from "../../../backends/smmuv3/hw/regs.ts";
import { CD, STE } from "../../../backends/smmuv3/hw/structs.ts";

/** A machine, an SMMU and a bump allocator for hand-written tables. */
export class Rig {
  readonly m: Machine;
  readonly hw: SmmuV3;
  next = 0x100_0000;
  readonly req: DmaRequest = newDmaRequest();
  readonly out: TranslateResult = newTranslateResult();

  constructor(opts: Record<string, boolean | number | string> = {}) {
    this.m = new Machine();
    this.hw = new SmmuV3(this.m, resolveFeatures(opts));
    this.m.bus.map(this.hw.mmioBase, this.hw);
  }

  /** Allocate `size` bytes aligned to `align` (zeroed). */
  alloc(size: number, align = 4096): number {
    this.next = Math.ceil(this.next / align) * align;
    const a = this.next;
    this.next += size;
    return a;
  }

  reg32(name: keyof typeof REG, v: number): void {
    this.m.bus.write32(this.hw.mmioBase + REG[name], v);
  }
  reg64(name: keyof typeof REG, v: number | bigint): void {
    this.m.bus.write64(this.hw.mmioBase + REG[name], v);
  }
  read32(name: keyof typeof REG): number {
    return this.m.bus.read32(this.hw.mmioBase + REG[name]);
  }

  /** Linear stream table of 2^log2 STEs; returns its base. */
  linearStrtab(log2: number): number {
    const base = this.alloc(64 << log2, 64);
    this.reg64("STRTAB_BASE", base);
    this.reg32("STRTAB_BASE_CFG", log2);
    return base;
  }

  /** Queues and enable: cmdq/evtq/priq of 2^log2 entries, SMMUEN. */
  enable(log2 = 4): { cmdq: number; evtq: number; priq: number } {
    const cmdq = this.alloc(16 << log2, 32);
    const evtq = this.alloc(32 << log2, 32);
    const priq = this.alloc(16 << log2, 32);
    this.reg64("CMDQ_BASE", cmdq + log2);
    this.reg64("EVTQ_BASE", evtq + log2);
    this.reg64("PRIQ_BASE", priq + log2);
    this.reg32("IRQ_CTRL", 7);
    this.reg32("CR0", 0x1f);
    return { cmdq, evtq, priq };
  }

  writeSte(addr: number, fields: Record<string, number | bigint>): void {
    this.m.mem.writeWords(addr, STE.encode({ V: 1, ...fields }));
  }

  writeCd(addr: number, fields: Record<string, number | bigint>): void {
    this.m.mem.writeWords(addr, CD.encode({ V: 1, AA64: 1, R: 1, ...fields }));
  }

  /** A 4K-granule stage-1 table root (48-bit, 4 levels). */
  newTable(): number {
    return this.alloc(4096);
  }

  /**
   * Map one 4K page (or a block at `level` 1/2) in a 4K-granule table starting at level `start`.
   * `attrs` lo bits (AF, AP, ...) are OR-ed into the leaf; `hiAttrs` into the high word.
   */
  mapPage(
    root: number,
    va: number,
    pa: number,
    attrLo = 0x400 | 0x40,
    hiAttrs = 0,
    start = 0,
    leafLevel = 3,
  ): void {
    let table = root;
    for (let level = start; level < leafLevel; level++) {
      const shift = 12 + 9 * (3 - level);
      const idx = Math.floor(va / 2 ** shift) % 512;
      const da = table + idx * 8;
      const lo = this.m.mem.read32(da);
      if ((lo & 3) === 3) {
        table = (this.m.mem.read32(da + 4) & 0xffff) * 2 ** 32 + (lo & 0xfffff000) >>> 0;
        continue;
      }
      const next = this.alloc(4096);
      this.m.mem.write64(da, (next % 2 ** 32) | 3, Math.floor(next / 2 ** 32));
      table = next;
    }
    const shift = 12 + 9 * (3 - leafLevel);
    const idx = Math.floor(va / 2 ** shift) % 512;
    const type = leafLevel === 3 ? 3 : 1;
    this.m.mem.write64(
      table + idx * 8,
      ((pa % 2 ** 32) | type | attrLo) >>> 0,
      Math.floor(pa / 2 ** 32) | hiAttrs,
    );
  }

  /** Clear the leaf of `va` (4K table). */
  unmapPage(root: number, va: number, start = 0, leafLevel = 3): void {
    let table = root;
    for (let level = start; level < leafLevel; level++) {
      const idx = Math.floor(va / 2 ** (12 + 9 * (3 - level))) % 512;
      const lo = this.m.mem.read32(table + idx * 8);
      table = ((this.m.mem.read32(table + idx * 8 + 4) & 0xffff) * 2 ** 32) +
        ((lo & 0xfffff000) >>> 0);
    }
    const idx = Math.floor(va / 2 ** (12 + 9 * (3 - leafLevel))) % 512;
    this.m.mem.write64(table + idx * 8, 0, 0);
  }

  /** Translate. */
  tr(
    sid: number,
    addr: number,
    opts: { write?: boolean; ssid?: number; priv?: boolean; exec?: boolean } = {},
  ): TranslateResult {
    const r = this.req;
    r.rid = sid;
    r.pasid = opts.ssid ?? NO_PASID;
    r.addr = addr;
    r.access = (opts.write ? 2 : 1) | (opts.exec ? 4 : 0);
    r.priv = opts.priv ?? false;
    this.hw.translate(r, this.out);
    return { ...this.out };
  }

  /** Append commands (each 4 words) to the command queue and ring PROD. */
  cmd(cmdq: number, log2: number, ...cmds: Uint32Array[]): void {
    let prod = this.read32("CMDQ_PROD");
    for (const c of cmds) {
      const idx = prod & ((1 << log2) - 1);
      this.m.mem.writeWords(cmdq + idx * 16, c);
      prod = (prod + 1) & ((2 << log2) - 1);
    }
    this.reg32("CMDQ_PROD", prod);
  }

  /** Event records written so far (array of word arrays), consuming them. */
  events(evtq: number, log2: number): Uint32Array[] {
    const out: Uint32Array[] = [];
    let cons = this.read32("EVTQ_CONS");
    const prod = this.read32("EVTQ_PROD");
    const mask = (2 << log2) - 1;
    while ((cons & mask) !== (prod & mask)) {
      const w = new Uint32Array(8);
      this.m.mem.readWords(evtq + (cons & ((1 << log2) - 1)) * 32, w);
      out.push(w);
      cons = (cons + 1) & mask;
    }
    this.reg32("EVTQ_CONS", cons | (prod & 0x80000000));
    return out;
  }
}
