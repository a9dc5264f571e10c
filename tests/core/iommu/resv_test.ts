import assert from "node:assert/strict";
import {
  insertResvRegion,
  IommuCore,
  mergeResvRegions,
  type ResvRegion,
} from "../../../core/mod.ts";
import { dev, FakeDriver, machineWith } from "./fake-driver.ts";

const r = (start: number, length: number, type: ResvRegion["type"], prot = 0): ResvRegion => ({
  start,
  length,
  prot,
  type,
});

Deno.test("same-type overlapping regions merge into one", () => {
  assert.deepEqual(
    mergeResvRegions([r(0x1000, 0x2000, "RESERVED"), r(0x2000, 0x3000, "RESERVED")]),
    [
      r(0x1000, 0x4000, "RESERVED"),
    ],
  );
});

Deno.test("same-type adjacent regions merge; a gap keeps them apart", () => {
  assert.deepEqual(mergeResvRegions([r(0x1000, 0x1000, "MSI"), r(0x2000, 0x1000, "MSI")]), [
    r(0x1000, 0x2000, "MSI"),
  ]);
  assert.deepEqual(mergeResvRegions([r(0x1000, 0x1000, "MSI"), r(0x2001, 0x1000, "MSI")]), [
    r(0x1000, 0x1000, "MSI"),
    r(0x2001, 0x1000, "MSI"),
  ]);
});

Deno.test("regions of different types overlap without merging, sorted by start then type", () => {
  const out = mergeResvRegions([
    r(0x8000000, 0x100000, "SW_MSI"),
    r(0x1000, 0x1000, "RESERVED"),
    r(0x1000, 0x1000, "DIRECT"),
  ]);
  assert.deepEqual(out, [
    r(0x1000, 0x1000, "DIRECT"),
    r(0x1000, 0x1000, "RESERVED"),
    r(0x8000000, 0x100000, "SW_MSI"),
  ]);
});

Deno.test("a region inside another of its type disappears; a bridging region joins three", () => {
  const list: ResvRegion[] = [];
  insertResvRegion(list, r(0x0, 0x1000, "DIRECT", 3));
  insertResvRegion(list, r(0x3000, 0x1000, "DIRECT", 1));
  insertResvRegion(list, r(0x100, 0x10, "DIRECT", 1));
  assert.equal(list.length, 2);
  insertResvRegion(list, r(0x800, 0x2900, "DIRECT", 1));
  assert.deepEqual(list, [r(0x0, 0x4000, "DIRECT", 3)]);
});

Deno.test("insertion copies the region (the caller's object is not changed)", () => {
  const a = r(0, 0x1000, "RESERVED");
  const list: ResvRegion[] = [];
  insertResvRegion(list, a);
  insertResvRegion(list, r(0x1000, 0x1000, "RESERVED"));
  assert.equal(a.length, 0x1000);
  assert.equal(list[0].length, 0x2000);
});

Deno.test("group reserved regions are the merged union over the group's devices", () => {
  const m = machineWith([dev("a", 1), dev("b", 2)]);
  const core = new IommuCore(m);
  core.registerDriver(
    new FakeDriver({
      deviceGroup: () => "g",
      resv: (d) =>
        d.name === "a"
          ? [r(0xfee00000, 0x100000, "MSI"), r(0x1000, 0x1000, "DIRECT_RELAXABLE", 3)]
          : [r(0xfef00000, 0x100000, "MSI"), r(0x8000000, 0x100000, "SW_MSI", 3)],
    }),
  );
  const g = core.groupOf(m.pci.byName("a")!);
  assert.deepEqual(core.getGroupResvRegions(g), [
    r(0x1000, 0x1000, "DIRECT_RELAXABLE", 3),
    r(0x8000000, 0x100000, "SW_MSI", 3),
    r(0xfee00000, 0x200000, "MSI"),
  ]);
  assert.deepEqual(core.getResvRegions(m.pci.byName("b")!), [
    r(0x8000000, 0x100000, "SW_MSI", 3),
    r(0xfef00000, 0x100000, "MSI"),
  ]);
});
