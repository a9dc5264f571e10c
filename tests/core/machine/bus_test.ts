import assert from "node:assert/strict";
import { IommuError, Machine, MmioBus, type MmioRegion } from "@iommu-lab/core";

const isErr = (errno: string, re?: RegExp) => (e: unknown) =>
  e instanceof IommuError && e.errno === errno && (!re || re.test(e.message));

class Regs implements MmioRegion {
  readonly regs = new Uint32Array(64);
  readonly log: string[] = [];
  constructor(readonly name: string, readonly size = 0x100) {}
  read32(off: number): number {
    this.log.push(`r${off}`);
    return this.regs[off >>> 2];
  }
  write32(off: number, v: number): void {
    this.log.push(`w${off}`);
    this.regs[off >>> 2] = v;
  }
}

class AtomicRegs extends Regs {
  read64(off: number, hi: Uint32Array): number {
    this.log.push(`R${off}`);
    hi[0] = this.regs[(off >>> 2) + 1];
    return this.regs[off >>> 2];
  }
  write64(off: number, lo: number, hi: number): void {
    this.log.push(`W${off}`);
    this.regs[off >>> 2] = lo;
    this.regs[(off >>> 2) + 1] = hi;
  }
}

Deno.test("accesses reach the window at their offset", () => {
  const bus = new MmioBus();
  const a = new Regs("a");
  const b = new Regs("b");
  bus.map(0xfed0_0000, a);
  bus.map(0xfed0_1000, b);
  bus.write32(0xfed0_1010, 0x1234);
  assert.equal(b.regs[4], 0x1234);
  assert.equal(bus.read32(0xfed0_1010), 0x1234);
  assert.equal(bus.baseOf(b), 0xfed0_1000);
  assert.deepEqual(bus.windows().map((w) => w.region.name), ["a", "b"]);
  bus.unmap(a);
  assert.equal(bus.baseOf(a), -1);
  assert.throws(() => bus.read32(0xfed0_0000), isErr("EFAULT"));
});

Deno.test("overlapping windows and bad windows are refused", () => {
  const bus = new MmioBus();
  bus.map(0x1000, new Regs("a"));
  assert.throws(() => bus.map(0x10fc, new Regs("b")), isErr("EBUSY", /overlaps a/));
  assert.throws(() => bus.map(0x0f04, new Regs("c")), isErr("EBUSY"));
  bus.map(0x1100, new Regs("d")); // adjacent is fine
  assert.throws(() => bus.map(0x2002, new Regs("e")), isErr("EINVAL", /aligned/));
  assert.throws(() => bus.map(0x3000, new Regs("f", 0)), isErr("EINVAL", /positive multiple of 4/));
});

Deno.test("an access outside every window is EFAULT, counted and traced", () => {
  const m = new Machine();
  m.bus.map(0x1000, new Regs("a"));
  m.trace.enabled = true;
  assert.throws(() => m.bus.write32(0x10fe_0000, 1), isErr("EFAULT", /hits no register window/));
  assert.throws(() => m.bus.read64(0x1100), isErr("EFAULT"), "just past the window end");
  assert.equal(m.bus.counters.unassigned, 2);
  assert.equal(m.trace.snapshot().mmio.unassigned, 2);
  assert.deepEqual(m.trace.events.map((e) => [e.name, e.fields.kind]), [
    ["mmio_unassigned", "write"],
    ["mmio_unassigned", "read"],
  ]);
  assert.throws(() => m.bus.read32(0x1002), isErr("EINVAL", /not 4-byte aligned/));
});

Deno.test("64-bit accesses go as halves, low first, or atomically when the region can", () => {
  const bus = new MmioBus();
  const split = new Regs("split");
  const atomic = new AtomicRegs("atomic");
  bus.map(0x0, split);
  bus.map(0x1000, atomic);
  bus.write64(0x8, 0x1122334455667788n);
  assert.deepEqual(split.log, ["w8", "w12"]);
  assert.equal(bus.read64(0x8), 0x1122334455667788n);
  assert.deepEqual(split.log.slice(2), ["r8", "r12"]);
  bus.write64(0x1010, 2 ** 40 + 5);
  assert.deepEqual(atomic.log, ["W16"]);
  const hi = new Uint32Array(1);
  assert.equal(bus.read64Halves(0x1010, hi), 5);
  assert.equal(hi[0], 0x100);
  assert.throws(() => bus.read64(0x1004), isErr("EINVAL", /8-byte aligned/));
});

Deno.test("the access hook sees every access with its region", () => {
  const bus = new MmioBus();
  const r = new Regs("r");
  bus.map(0x1000, r);
  const seen: string[] = [];
  bus.hook = (kind, addr, width, region) =>
    seen.push(`${kind}:${addr.toString(16)}:${width}:${region.name}`);
  bus.write32(0x1004, 1);
  bus.read64(0x1008);
  assert.deepEqual(seen, ["write:1004:32:r", "read:1008:64:r"]);
  assert.deepEqual([bus.counters.reads, bus.counters.writes], [1, 1]);
});
