import assert from "node:assert/strict";
import {
  DIRECT_TRANSLATOR,
  type DmaTranslator,
  IommuError,
  Machine,
  PciTopology,
} from "@iommu-lab/core";

const isErr = (errno: string) => (e: unknown) => e instanceof IommuError && e.errno === errno;
const names = (ds: { name: string }[]) => ds.map((d) => d.name);

Deno.test("single-function endpoints below ACS root ports get a group each", () => {
  const t = new PciTopology();
  t.add({ name: "rp0", bus: 0, device: 1, fn: 0, kind: "root-port", secondaryBus: 1 });
  t.add({ name: "rp1", bus: 0, device: 2, fn: 0, kind: "root-port", secondaryBus: 2 });
  const a = t.add({ name: "a", bus: 1, device: 0, fn: 0 });
  const b = t.add({ name: "b", bus: 2, device: 0, fn: 0 });
  assert.notEqual(t.groupKeyOf(a), t.groupKeyOf(b));
  assert.deepEqual(names(t.groupMembers(a)), ["a"]);
  assert.equal(t.groupKeyOf(a), 0x100);
});

Deno.test("devices behind a PCIe-to-PCI bridge DMA with the bridge's alias and share its group", () => {
  const m = new Machine();
  const t = m.pci;
  t.add({ name: "rp", bus: 0, device: 1, fn: 0, kind: "root-port", secondaryBus: 1 });
  const br = t.add({
    name: "br",
    bus: 1,
    device: 0,
    fn: 0,
    kind: "pcie-pci-bridge",
    secondaryBus: 2,
  });
  const x = t.add({ name: "x", bus: 2, device: 3, fn: 0 });
  const y = t.add({ name: "y", bus: 2, device: 4, fn: 0 });
  assert.deepEqual(t.dmaAliases(x).map((a) => a.rid), [0x218, 0x200]);
  assert.equal(t.dmaRidOf(x), 0x200);
  assert.equal(t.dmaRidOf(br), 0x100);
  assert.deepEqual(names(t.groupMembers(x)), ["br", "x", "y"]);
  assert.equal(t.groupKeyOf(y), t.groupKeyOf(br));
  const seen: number[] = [];
  t.setTranslator(x, {
    translate(req, out) {
      seen.push(req.rid);
      out.ok = true;
      out.pa = req.addr;
      out.span = 4096;
    },
  });
  m.master(x).read(0x1000, 4);
  assert.deepEqual(seen, [0x200]);
});

Deno.test("a conventional PCI-to-PCI bridge aliases with its own requester ID", () => {
  const t = new PciTopology();
  t.add({ name: "pb", bus: 0, device: 5, fn: 0, kind: "pci-bridge", secondaryBus: 3 });
  const d = t.add({ name: "d", bus: 3, device: 1, fn: 0 });
  assert.equal(t.dmaRidOf(d), 0x28);
  assert.equal(t.isConventional(d), true);
  assert.equal(t.acsEnabled(d), false);
});

Deno.test("functions of a multi-function device without ACS share a group", () => {
  const t = new PciTopology();
  t.add({ name: "rp", bus: 0, device: 1, fn: 0, kind: "root-port", secondaryBus: 1 });
  const f0 = t.add({ name: "f0", bus: 1, device: 0, fn: 0, acs: false });
  const f1 = t.add({ name: "f1", bus: 1, device: 0, fn: 1, acs: false });
  const g0 = t.add({ name: "g0", bus: 0, device: 4, fn: 0 });
  const g1 = t.add({ name: "g1", bus: 0, device: 4, fn: 1 });
  assert.equal(t.groupKeyOf(f0), t.groupKeyOf(f1));
  assert.deepEqual(names(t.groupMembers(f1)), ["f0", "f1"]);
  assert.notEqual(t.groupKeyOf(g0), t.groupKeyOf(g1), "functions with ACS are isolated");
  assert.equal(t.isMultifunction(g0), true);
});

Deno.test("a switch downstream port without ACS groups everything below the switch with it", () => {
  const t = new PciTopology();
  t.add({ name: "rp", bus: 0, device: 1, fn: 0, kind: "root-port", secondaryBus: 1 });
  t.add({ name: "up", bus: 1, device: 0, fn: 0, kind: "switch-upstream", secondaryBus: 2 });
  t.add({
    name: "dp0",
    bus: 2,
    device: 0,
    fn: 0,
    kind: "switch-downstream",
    secondaryBus: 3,
    acs: false,
  });
  t.add({ name: "dp1", bus: 2, device: 1, fn: 0, kind: "switch-downstream", secondaryBus: 4 });
  const a = t.add({ name: "a", bus: 3, device: 0, fn: 0 });
  const b = t.add({ name: "b", bus: 4, device: 0, fn: 0 });
  assert.deepEqual(names(t.groupMembers(a)), ["dp0", "a"]);
  assert.deepEqual(names(t.groupMembers(b)), ["b"]);
});

Deno.test("a root port without ACS puts every device below it in one group", () => {
  const t = new PciTopology();
  t.add({ name: "rp", bus: 0, device: 1, fn: 0, kind: "root-port", secondaryBus: 1, acs: false });
  t.add({ name: "up", bus: 1, device: 0, fn: 0, kind: "switch-upstream", secondaryBus: 2 });
  t.add({ name: "dp0", bus: 2, device: 0, fn: 0, kind: "switch-downstream", secondaryBus: 3 });
  t.add({ name: "dp1", bus: 2, device: 1, fn: 0, kind: "switch-downstream", secondaryBus: 4 });
  const a = t.add({ name: "a", bus: 3, device: 0, fn: 0 });
  t.add({ name: "b", bus: 4, device: 0, fn: 0 });
  assert.deepEqual(names(t.groupMembers(a)), ["rp", "up", "dp0", "dp1", "a", "b"]);
});

Deno.test("devices that alias each other by quirk share a group; aliases added later count", () => {
  const t = new PciTopology();
  const a = t.add({ name: "a", bus: 0, device: 2, fn: 0, aliases: [0x18] });
  const b = t.add({ name: "b", bus: 0, device: 3, fn: 0 });
  const c = t.add({ name: "c", bus: 0, device: 4, fn: 0 });
  assert.equal(t.groupKeyOf(a), t.groupKeyOf(b));
  assert.notEqual(t.groupKeyOf(a), t.groupKeyOf(c));
  c.aliases.push(0x10);
  assert.equal(t.groupKeyOf(c), t.groupKeyOf(a));
});

Deno.test("a DMA alias quirk lets a master emit the alias ID, nothing else", () => {
  const m = new Machine();
  const a = m.pci.add({ name: "a", bus: 0, device: 2, fn: 0, aliases: [0x13] });
  const seen: number[] = [];
  m.pci.setTranslator(a, {
    translate(req, out) {
      seen.push(req.rid);
      out.ok = true;
      out.pa = req.addr;
      out.span = 4096;
    },
  });
  m.master(a).read(0, 4, { rid: 0x13 });
  assert.deepEqual(seen, [0x13]);
  assert.throws(() => m.master(a).read(0, 4, { rid: 0x14 }), isErr("EINVAL"));
});

Deno.test("devices below an external-facing port are untrusted, the port itself is not", () => {
  const t = new PciTopology();
  const rp = t.add({
    name: "tbt",
    bus: 0,
    device: 7,
    fn: 0,
    kind: "root-port",
    secondaryBus: 5,
    externalFacing: true,
  });
  t.add({ name: "up", bus: 5, device: 0, fn: 0, kind: "switch-upstream", secondaryBus: 6 });
  const d = t.add({ name: "egpu", bus: 6, device: 0, fn: 0 });
  const inner = t.add({ name: "nvme", bus: 0, device: 8, fn: 0 });
  assert.equal(rp.untrusted, false);
  assert.equal(d.untrusted, true);
  assert.equal(inner.untrusted, false);
  assert.deepEqual(names(t.upstreamPath(d)), ["up", "tbt"]);
});

Deno.test("bad topologies are refused with a clear error", () => {
  const t = new PciTopology();
  t.add({ name: "rp", bus: 0, device: 1, fn: 0, kind: "root-port", secondaryBus: 1 });
  assert.throws(
    () => t.add({ name: "rp2", bus: 0, device: 2, fn: 0, kind: "root-port", secondaryBus: 1 }),
    isErr("EBUSY"),
  );
  t.add({ name: "x", bus: 2, device: 0, fn: 0 });
  assert.throws(
    () => t.add({ name: "late", bus: 0, device: 3, fn: 0, kind: "root-port", secondaryBus: 2 }),
    /add a bridge before the devices below it/,
  );
  assert.throws(() => t.add({ name: "rp", bus: 0, device: 1, fn: 0 }), isErr("EEXIST"));
  assert.throws(
    () => t.add({ name: "e", bus: 0, device: 4, fn: 0, secondaryBus: 3 }),
    /an endpoint has no secondary bus/,
  );
  assert.throws(
    () => t.add({ name: "p", bus: 0, device: 4, fn: 0, kind: "root-port" }),
    /needs a secondary bus/,
  );
  assert.throws(
    () => t.add({ name: "e", bus: 0, device: 4, fn: 0, externalFacing: true }),
    /only a root port or a switch downstream port/,
  );
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => t.add({ name: "k", bus: 0, device: 4, fn: 0, kind: "nic" as any }),
    /kind "nic" is not one of/,
  );
  t.add({ name: "loopA", bus: 1, device: 0, fn: 0, kind: "switch-upstream", secondaryBus: 9 });
  assert.throws(
    () =>
      t.add({
        name: "loopB",
        bus: 9,
        device: 0,
        fn: 0,
        kind: "switch-downstream",
        secondaryBus: 1,
      }),
    isErr("EBUSY"),
  );
  const other = new PciTopology().add({ name: "o", bus: 0, device: 0, fn: 0 });
  assert.throws(() => t.groupKeyOf(other), isErr("ENODEV"));
});

Deno.test("byRid, byName and devices keep working across segments", () => {
  const t = new PciTopology();
  const a = t.add({ name: "a", bus: 0, device: 1, fn: 0, segment: 1 });
  const b = t.add({ name: "b", bus: 0, device: 1, fn: 0 });
  assert.equal(t.byRid(8, 1), a);
  assert.equal(t.byRid(8), b);
  assert.equal(t.byName("a"), a);
  assert.equal(t.byName("zz"), undefined);
  assert.deepEqual(names(t.devices), ["b", "a"]);
  assert.notEqual(t.groupKeyOf(a), t.groupKeyOf(b));
  assert.equal(a.bdf, "0001:00:01.0");
});

Deno.test("removing a device regroups the rest; a bridge with devices below stays", () => {
  const t = new PciTopology();
  const rp = t.add({
    name: "rp",
    bus: 0,
    device: 1,
    fn: 0,
    kind: "root-port",
    secondaryBus: 1,
    acs: false,
  });
  const a = t.add({ name: "a", bus: 1, device: 0, fn: 0 });
  const b = t.add({ name: "b", bus: 1, device: 1, fn: 0 });
  assert.deepEqual(names(t.groupMembers(a)), ["rp", "a", "b"]);
  assert.throws(() => t.remove(rp), /EBUSY.*remove that first/);
  t.remove(b);
  assert.equal(t.byName("b"), undefined);
  assert.deepEqual(names(t.groupMembers(a)), ["rp", "a"]);
  assert.throws(() => t.remove(b), isErr("ENODEV"));
  t.remove(a);
  t.remove(rp);
  assert.equal(t.devices.length, 0);
  t.add({ name: "x", bus: 1, device: 0, fn: 0 }); // bus 1 is a root bus again
  assert.equal(t.parentOf(t.byName("x")!), undefined);
});

Deno.test("describe prints the tree with DMA requester IDs and groups", () => {
  const t = new PciTopology();
  t.add({
    name: "rp",
    bus: 0,
    device: 1,
    fn: 0,
    kind: "root-port",
    secondaryBus: 1,
    externalFacing: true,
  });
  t.add({ name: "br", bus: 1, device: 0, fn: 0, kind: "pcie-pci-bridge", secondaryBus: 2 });
  t.add({ name: "old", bus: 2, device: 3, fn: 0 });
  t.add({ name: "nvme", bus: 0, device: 2, fn: 0, aliases: [0x11] });
  assert.deepEqual(t.describe(), [
    "0000:00:01.0 rp [root-port -> bus 01] external-facing group 0008",
    "  0000:01:00.0 br [pcie-pci-bridge -> bus 02] untrusted no-ACS group 0100",
    "    0000:02:03.0 old untrusted no-ACS dma-rid 0200 group 0100",
    "0000:00:02.0 nvme aliases 0011 group 0010",
  ]);
});

Deno.test("a segment translator covers functions added later; a device's own translator wins", () => {
  const t = new PciTopology();
  const seg: DmaTranslator = { translate() {} };
  const own: DmaTranslator = { translate() {} };
  const a = t.add({ name: "a", bus: 0, device: 1, fn: 0 });
  t.setSegmentTranslator(0, seg);
  const b = t.add({ name: "b", bus: 0, device: 2, fn: 0 });
  const c = t.add({ name: "c", segment: 1, bus: 0, device: 2, fn: 0 });
  t.setTranslator(b, own);
  assert.equal(t.translatorOf(a), seg);
  assert.equal(t.translatorOf(b), own);
  assert.equal(t.translatorOf(c), DIRECT_TRANSLATOR);
});
