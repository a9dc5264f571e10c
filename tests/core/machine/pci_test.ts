import assert from "node:assert/strict";
import { IommuError, parseBdf, PciDevice } from "@iommu-lab/core";

const isErr = (errno: string, re?: RegExp) => (e: unknown) =>
  e instanceof IommuError && e.errno === errno && (!re || re.test(e.message));

Deno.test("requester ID, devfn and BDF follow the PCI encoding", () => {
  const d = new PciDevice({ name: "x", segment: 0x12, bus: 0xab, device: 0x1f, fn: 7 });
  assert.equal(d.rid, 0xabff);
  assert.equal(d.devfn, 0xff);
  assert.equal(d.bdf, "0012:ab:1f.7");
  assert.equal(d.isBridge, false);
  assert.equal(d.kind, "endpoint");
  assert.equal(d.secondaryBus, -1);
});

Deno.test("the DMA mask follows dmaBits and is capped at 2^53 - 1", () => {
  assert.equal(
    new PciDevice({ name: "a", bus: 0, device: 0, fn: 0, dmaBits: 32 }).dmaMask,
    0xffff_ffff,
  );
  assert.equal(
    new PciDevice({ name: "b", bus: 0, device: 0, fn: 0 }).dmaMask,
    Number.MAX_SAFE_INTEGER,
  );
  const c = new PciDevice({ name: "c", bus: 0, device: 0, fn: 0, dmaBits: 40 });
  c.dmaBits = 36; // dma_set_mask
  assert.equal(c.dmaMask, 2 ** 36 - 1);
});

Deno.test("a device config is validated field by field", () => {
  const base = { name: "d", bus: 0, device: 0, fn: 0 };
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ bus: 256 }, /bus 256 is outside 0..255/],
    [{ device: 32 }, /device 32 is outside 0..31/],
    [{ fn: 8 }, /function 8 is outside 0..7/],
    [{ segment: 0x10000 }, /segment/],
    [{ pasidBits: 21 }, /PASID width 21 is outside 0..20/],
    [{ dmaBits: 8 }, /DMA mask width 8 is outside 12..64/],
    [{ pri: true }, /PRI needs ATS/],
    [{ aliases: [0x10000] }, /DMA alias 65536 is not a requester ID/],
    [{ kind: "root-port", secondaryBus: 0 }, /secondary bus in 1..255 other than its own bus 0/],
  ];
  for (const [over, re] of cases) {
    assert.throws(
      () => new PciDevice({ ...base, ...over } as never),
      isErr("EINVAL", re),
      JSON.stringify(over),
    );
  }
  const rp = new PciDevice({ ...base, kind: "root-port", secondaryBus: 4, externalFacing: true });
  assert.equal(rp.isBridge, true);
  assert.equal(rp.secondaryBus, 4);
});

Deno.test("parseBdf accepts BB:DD.F and SSSS:BB:DD.F and refuses the rest", () => {
  assert.deepEqual(parseBdf("03:1f.7"), { segment: 0, bus: 3, device: 31, fn: 7 });
  assert.deepEqual(parseBdf(" 0001:ff:00.0 "), { segment: 1, bus: 255, device: 0, fn: 0 });
  assert.throws(() => parseBdf("03:20.0"), isErr("EINVAL", /device 32 is outside 0..31/));
  assert.throws(() => parseBdf("3.1"), isErr("EINVAL", /use BB:DD.F or SSSS:BB:DD.F/));
  assert.throws(() => parseBdf("00:00.8"), isErr("EINVAL"));
});

Deno.test("changing the DMA mask width is validated", () => {
  const d = new PciDevice({ name: "d", bus: 0, device: 0, fn: 0 });
  d.dmaBits = 32;
  assert.equal(d.dmaMask, 0xffff_ffff);
  assert.throws(() => (d.dmaBits = 65), isErr("EINVAL", /outside 12..64/));
  assert.equal(d.dmaBits, 32);
});
