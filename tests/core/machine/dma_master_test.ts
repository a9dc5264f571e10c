import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ACCESS_EXEC,
  ACCESS_WRITE,
  type DmaRequest,
  dmaResultValue,
  type DmaTranslator,
  IommuError,
  Machine,
  type TranslateResult,
} from "@iommu-lab/core";

const isErr = (errno: string) => (e: unknown) => e instanceof IommuError && e.errno === errno;

/** A page-table-free translator: a Map of 4 KiB IOVA pages to PAs, with a fixed span. */
class MapTranslator implements DmaTranslator {
  readonly pages = new Map<number, { pa: number; perm: number }>();
  readonly seen: DmaRequest[] = [];
  span = 4096;
  pendingAt = -1;
  translate(req: DmaRequest, out: TranslateResult): void {
    this.seen.push({ ...req });
    const base = req.addr - (req.addr % this.span);
    const e = this.pages.get(base);
    out.pending = base === this.pendingAt;
    if (!e || (e.perm & req.access) !== req.access) {
      out.ok = false;
      out.fault = e ? "F_PERMISSION" : "F_TRANSLATION";
      out.faultCode = e ? 0x13 : 0x10;
      return;
    }
    out.ok = true;
    out.pa = e.pa + (req.addr - base);
    out.perm = e.perm;
    out.span = this.span;
    out.fault = "";
    out.faultCode = 0;
  }
}

function setup() {
  const m = new Machine();
  const dev = m.pci.add({ name: "nic", bus: 1, device: 0, fn: 0, pasidBits: 8, dmaBits: 32 });
  const t = new MapTranslator();
  m.pci.setTranslator(dev, t);
  return { m, dev, t };
}

Deno.test("with no translator a device reads and writes memory directly", () => {
  const m = new Machine();
  const dev = m.pci.add({ name: "d", bus: 0, device: 1, fn: 0 });
  const r = m.master(dev).write(0x2ffe, new Uint8Array([1, 2, 3, 4]));
  assert.equal(r.ok, true);
  assert.equal(r.bytes, 4);
  assert.equal(m.mem.read32(0x2ffe & ~3), 0x02010000);
  assert.equal(m.mem.read16(0x3000), 0x0403);
  const rd = m.master(dev).read(0x2ffe, 4);
  assert.deepEqual([...rd.data!], [1, 2, 3, 4]);
});

Deno.test("machine.master returns one cached master per device", () => {
  const { m, dev } = setup();
  assert.equal(m.master(dev), m.master(dev));
  const other = new Machine().pci.add({ name: "x", bus: 9, device: 0, fn: 0 });
  assert.throws(() => m.master(other), isErr("ENODEV"));
});

Deno.test("a transfer crossing pages is split per translation and lands at each page's PA", () => {
  const { m, dev, t } = setup();
  t.pages.set(0x10000, { pa: 0x500000, perm: 3 });
  t.pages.set(0x11000, { pa: 0x200000, perm: 3 });
  const data = new Uint8Array(0x800).map((_, i) => (i * 7) & 0xff);
  const r = m.master(dev).write(0x10c00, data);
  assert.equal(r.ok, true);
  assert.equal(r.bytes, 0x800);
  assert.equal(t.seen.length, 2);
  assert.equal(m.mem.read8(0x500c00), 0);
  assert.equal(m.mem.read8(0x500fff), (0x3ff * 7) & 0xff);
  assert.equal(m.mem.read8(0x200001), (0x401 * 7) & 0xff);
  assert.deepEqual(m.master(dev).read(0x10c00, 0x800).data, data);
});

Deno.test("a large span is translated once for the whole transfer", () => {
  const { m, dev, t } = setup();
  t.span = 2 << 20;
  t.pages.set(0x200000, { pa: 0x4000000, perm: 3 });
  const r = m.master(dev).write(0x200000, new Uint8Array(64 * 1024).fill(7));
  assert.equal(r.ok, true);
  assert.equal(t.seen.length, 1);
  assert.equal(m.mem.read8(0x400ffff), 7);
});

Deno.test("a write that faults on its second page writes nothing", () => {
  const { m, dev, t } = setup();
  t.pages.set(0x10000, { pa: 0x500000, perm: 3 });
  const r = m.master(dev).write(0x10ff0, new Uint8Array(32).fill(0xaa));
  assert.equal(r.ok, false);
  assert.equal(r.bytes, 0);
  assert.equal(r.fault, "F_TRANSLATION");
  assert.equal(r.faultCode, 0x10);
  assert.equal(r.faultAddr, 0x11000);
  assert.equal(m.mem.read8(0x500ff0), 0);
  assert.equal(m.master(dev).counters.faults, 1);
});

Deno.test("a read-only mapping refuses a write with the translator's permission fault", () => {
  const { m, dev, t } = setup();
  t.pages.set(0x10000, { pa: 0x500000, perm: 1 });
  assert.equal(m.master(dev).read(0x10000, 8).ok, true);
  const w = m.master(dev).write(0x10000, new Uint8Array(8));
  assert.equal(w.fault, "F_PERMISSION");
  assert.equal(t.seen.at(-1)!.access, ACCESS_WRITE);
});

Deno.test("an address beyond the DMA mask faults before reaching the translator", () => {
  const { m, dev, t } = setup();
  const r = m.master(dev).read(0xffff_fff0, 0x20);
  assert.equal(r.ok, false);
  assert.equal(r.fault, "DMA_MASK");
  assert.equal(r.faultAddr, 2 ** 32);
  assert.equal(t.seen.length, 0);
});

Deno.test("a pending translation is reported as pending, not as a fault", () => {
  const { m, dev, t } = setup();
  t.pendingAt = 0x30000;
  const r = m.master(dev).read(0x30000, 4, { pasid: 5 });
  assert.equal(r.pending, true);
  assert.equal(r.ok, false);
  const c = m.master(dev).counters;
  assert.equal(c.pending, 1);
  assert.equal(c.faults, 0);
});

Deno.test("PASID, privilege and exec reach the translator; bad PASIDs are refused", () => {
  const { m, dev, t } = setup();
  t.pages.set(0x10000, { pa: 0x500000, perm: 7 });
  m.master(dev).read(0x10000, 4, { pasid: 255, priv: true, exec: true });
  const q = t.seen.at(-1)!;
  assert.equal(q.pasid, 255);
  assert.equal(q.priv, true);
  assert.equal(q.access & ACCESS_EXEC, ACCESS_EXEC);
  assert.equal(q.rid, 0x100);
  assert.throws(() => m.master(dev).read(0x10000, 4, { pasid: 256 }), isErr("EINVAL"));
  assert.throws(
    () => m.master(dev).write(0x10000, new Uint8Array(1), { exec: true }),
    isErr("EINVAL"),
  );
  const noPasid = m.pci.add({ name: "p", bus: 2, device: 0, fn: 0 });
  assert.throws(() => m.master(noPasid).read(0, 4, { pasid: 1 }), /no PASID capability/);
});

Deno.test("malformed transfers are refused with EINVAL", () => {
  const { m, dev } = setup();
  assert.throws(() => m.master(dev).read(-1, 4), isErr("EINVAL"));
  assert.throws(() => m.master(dev).read(0, 0), isErr("EINVAL"));
  assert.throws(() => m.master(dev).read(0.5, 4), isErr("EINVAL"));
  assert.throws(() => m.master(dev).atomic("add", 2, 4, 1n), isErr("EINVAL"));
  // deno-lint-ignore no-explicit-any
  assert.throws(() => m.master(dev).atomic("xor" as any, 0, 4, 1n), isErr("EINVAL"));
  assert.throws(() => m.master(dev).atomic("cas", 0, 8, 1n), isErr("EINVAL"));
});

Deno.test("atomics return the old value and apply add, swap and cas", () => {
  const m = new Machine();
  const dev = m.pci.add({ name: "d", bus: 0, device: 1, fn: 0 });
  const dma = m.master(dev);
  m.mem.write32(0x1000, 0xffff_fffe);
  const a = dma.atomic("add", 0x1000, 4, 3n);
  assert.equal(dmaResultValue(a), 0xffff_fffen);
  assert.equal(m.mem.read32(0x1000), 1);
  m.mem.write64n(0x2000, 0x1122334455667788n);
  assert.equal(dmaResultValue(dma.atomic("swap", 0x2000, 8, 5n)), 0x1122334455667788n);
  assert.equal(m.mem.read64n(0x2000), 5n);
  assert.equal(dmaResultValue(dma.atomic("cas", 0x2000, 8, 9n, 4n)), 5n);
  assert.equal(m.mem.read64n(0x2000), 5n, "cas with a wrong compare stores nothing");
  dma.atomic("cas", 0x2000, 8, 9n, 5n);
  assert.equal(m.mem.read64n(0x2000), 9n);
  assert.equal(m.master(dev).counters.atomics, 4);
});

Deno.test("counters and trace events record each transaction", () => {
  const m = new Machine();
  const dev = m.pci.add({ name: "d", bus: 0, device: 1, fn: 0, dmaBits: 16 });
  m.trace.enabled = true;
  m.master(dev).write(0x100, new Uint8Array(16));
  m.master(dev).read(0x100, 8);
  m.master(dev).read(0xfff0, 0x20);
  const c = m.master(dev).counters;
  assert.deepEqual([c.reads, c.writes, c.bytes, c.faults], [2, 1, 24, 1]);
  assert.deepEqual(m.trace.events.map((e) => e.name), ["dma_write", "dma_read", "dma_fault"]);
  assert.equal(m.trace.events[2].fields.reason, "DMA_MASK");
});

Deno.test("pending interrupts are delivered after each transaction", () => {
  const { m, dev, t } = setup();
  let handled = 0;
  m.irq.register("evtq", () => handled++);
  const raising: DmaTranslator = {
    translate(req, out) {
      m.irq.raise("evtq");
      t.translate(req, out);
    },
  };
  m.pci.setTranslator(dev, raising);
  m.master(dev).read(0x9000, 4);
  assert.equal(handled, 1);
});

Deno.test("a translation to a PA beyond physical memory is a bus error", () => {
  const m = new Machine({ paBits: 32, poolBase: 0x1000_0000, poolSize: 0x100_0000 });
  const dev = m.pci.add({ name: "d", bus: 0, device: 1, fn: 0 });
  m.pci.setTranslator(dev, {
    translate(_req, out) {
      out.ok = true;
      out.pa = 2 ** 32;
      out.span = 4096;
    },
  });
  const r = m.master(dev).write(0, new Uint8Array(4));
  assert.equal(r.fault, "BUS_ERROR");
});

Deno.test("random transfers through random mappings agree with a byte-level reference", () => {
  const PAGES = 8;
  const IOVA0 = 0x40000;
  fc.assert(
    fc.property(
      fc.array(fc.option(fc.integer({ min: 0, max: 63 }), { nil: undefined }), {
        minLength: PAGES,
        maxLength: PAGES,
      }),
      fc.array(
        fc.record({
          write: fc.boolean(),
          off: fc.integer({ min: 0, max: PAGES * 4096 - 1 }),
          len: fc.integer({ min: 1, max: 9000 }),
          seed: fc.integer({ min: 0, max: 255 }),
        }),
        { maxLength: 25 },
      ),
      (frames, ops) => {
        const m = new Machine();
        const dev = m.pci.add({ name: "d", bus: 1, device: 0, fn: 0 });
        const t = new MapTranslator();
        m.pci.setTranslator(dev, t);
        const pa = (i: number) => 0x100_0000 + frames[i]! * 4096;
        frames.forEach((f, i) => {
          if (f !== undefined) t.pages.set(IOVA0 + i * 4096, { pa: pa(i), perm: 3 });
        });
        const ref = new Map<number, number>(); // PA -> byte
        const toPa = (iova: number) => {
          const i = Math.floor((iova - IOVA0) / 4096);
          if (i < 0 || i >= PAGES || frames[i] === undefined) return -1;
          return pa(i) + (iova % 4096);
        };
        for (const o of ops) {
          const a = IOVA0 + o.off;
          let firstBad = -1;
          for (let k = 0; k < o.len; k++) {
            if (toPa(a + k) < 0) {
              firstBad = a + k;
              break;
            }
          }
          if (o.write) {
            const data = new Uint8Array(o.len).map((_, k) => (o.seed + k) & 0xff);
            const r = m.master(dev).write(a, data);
            if (r.ok !== (firstBad < 0)) return false;
            if (!r.ok && r.faultAddr !== firstBad) return false;
            if (r.ok) data.forEach((v, k) => ref.set(toPa(a + k), v));
          } else {
            const r = m.master(dev).read(a, o.len);
            if (r.ok !== (firstBad < 0)) return false;
            if (r.ok) {
              for (let k = 0; k < o.len; k++) {
                if (r.data![k] !== (ref.get(toPa(a + k)) ?? 0)) return false;
              }
            } else if (r.faultAddr !== firstBad || r.data !== null) return false;
          }
        }
        // Every mapped frame holds exactly what the reference says: a faulting
        // write left nothing behind.
        for (let i = 0; i < PAGES; i++) {
          if (frames[i] === undefined) continue;
          const bytes = m.mem.readBytes(pa(i), 4096);
          for (let k = 0; k < 4096; k++) if (bytes[k] !== (ref.get(pa(i) + k) ?? 0)) return false;
        }
        return true;
      },
    ),
    { numRuns: 60, seed: 11 },
  );
});

class Doorbell {
  readonly name: string = "doorbell";
  constructor(readonly size = 0x1000) {}
  readonly writes: [number, number][] = [];
  read32(off: number): number {
    return 0xd0000000 | off;
  }
  write32(off: number, v: number): void {
    this.writes.push([off, v]);
  }
}

Deno.test("DMA that reaches an MMIO window becomes 32-bit register accesses", () => {
  const m = new Machine();
  const bell = new Doorbell();
  m.bus.map(0xfee0_0000, bell);
  const dev = m.pci.add({ name: "d", bus: 0, device: 1, fn: 0 });
  const dma = m.master(dev);
  const r = dma.write(0xfee0_0040, new Uint8Array([0x21, 0x43, 0x65, 0x87, 1, 0, 0, 0]));
  assert.equal(r.ok, true);
  assert.deepEqual(bell.writes, [[0x40, 0x87654321], [0x44, 1]]);
  assert.equal(m.mem.stats.pagesBacked, 0, "nothing reached RAM");
  assert.deepEqual([...dma.read(0xfee0_0010, 4).data!], [0x10, 0, 0, 0xd0]);
  // A transfer from RAM into the window is split by kind.
  m.mem.write32(0xfedf_fffc, 0xaabbccdd);
  const mixed = dma.read(0xfedf_fffc, 8);
  assert.deepEqual([...mixed.data!], [0xdd, 0xcc, 0xbb, 0xaa, 0, 0, 0, 0xd0]);
  assert.equal(
    dma.write(0xfee0_0042, new Uint8Array(4)).fault,
    "BUS_ERROR",
    "unaligned register access",
  );
  const small = new Doorbell(0x100);
  m.bus.map(0xfee0_2000, small);
  assert.equal(
    dma.write(0xfee0_20fc, new Uint8Array(8)).fault,
    "BUS_ERROR",
    "straddles the window end",
  );
  assert.equal(small.writes.length, 0);
  assert.equal(dma.atomic("add", 0xfee0_0000, 4, 1n).fault, "BUS_ERROR", "no atomics to registers");
  assert.equal(bell.writes.length, 2, "failed transfers wrote no register");
});
