import assert from "node:assert/strict";
import { IommuError, MmioBus, type MmioRegion } from "@iommu-lab/core";

function region(name: string, size: number): MmioRegion & { regs: Map<number, number> } {
  const regs = new Map<number, number>();
  return {
    name,
    size,
    regs,
    read32: (off) => regs.get(off) ?? 0,
    write32: (off, v) => void regs.set(off, v),
  };
}

Deno.test("an access after its window was unmapped is reported, not served from the last window", () => {
  const bus = new MmioBus();
  const a = region("a", 0x1000);
  bus.map(0x1000, a);
  bus.write32(0x1004, 7);
  assert.equal(bus.read32(0x1004), 7);
  bus.unmap(a);
  assert.throws(() => bus.read32(0x1004), (e) => e instanceof IommuError && e.errno === "EFAULT");
});

Deno.test("alternating accesses to two windows each reach their own registers", () => {
  const bus = new MmioBus();
  const a = region("a", 0x1000);
  const b = region("b", 0x1000);
  bus.map(0x1000, a);
  bus.map(0x3000, b);
  for (let i = 0; i < 4; i++) {
    bus.write32(0x1000 + 4 * i, i);
    bus.write32(0x3000 + 4 * i, 100 + i);
  }
  assert.deepEqual([...a.regs.values()], [0, 1, 2, 3]);
  assert.deepEqual([...b.regs.values()], [100, 101, 102, 103]);
  assert.throws(() => bus.read32(0x1002), (e) => e instanceof IommuError && e.errno === "EINVAL");
  assert.throws(() => bus.read32(0x2000), (e) => e instanceof IommuError && e.errno === "EFAULT");
});
