import assert from "node:assert/strict";
import { IommuCore, Machine, resolveOptions } from "@iommu-lab/core";
import { dmaDevice, DmaDirection } from "@iommu-lab/dma-api";
import { builtinBackends } from "../../cli/backends.ts";
import { cli, tmpFile } from "./helpers.ts";

/** The registers a fresh model needs to translate what the driver set up, per backend. */
const ENABLE: Record<string, (v: Record<string, string>) => string[]> = {
  vtd: (v) => [`RTADDR_REG=${v.RTADDR_REG}`, "GCMD_REG=0x40000000", "GCMD_REG=0x80000000"],
  smmuv3: (
    v,
  ) => [`STRTAB_BASE=${v.STRTAB_BASE}`, `STRTAB_BASE_CFG=${v.STRTAB_BASE_CFG}`, "CR0=0x1"],
};

for (const b of (await builtinBackends()).filter((x) => x.plugin && ENABLE[x.name])) {
  Deno.test(`translate on ${b.name}: a fresh model, the driver's memory image and the spec's registers`, async () => {
    const plugin = b.plugin!;
    const m = new Machine();
    const dev = m.pci.add({ name: "nic0", bus: 0, device: 3, fn: 0 });
    const { hw, driver } = plugin.create(m, resolveOptions(plugin, {}));
    const core = new IommuCore(m);
    core.registerDriver(driver);
    const buf = m.pages.allocPage();
    const dma = dmaDevice(core, dev).dmaMapSingle(buf, 4096, DmaDirection.TO_DEVICE);
    const vals: Record<string, string> = {};
    for (const r of hw.registers) {
      const a = hw.mmioBase + r.offset;
      vals[r.name] = "0x" +
        (r.width === 64 ? m.bus.read64(a) : BigInt(m.bus.read32(a))).toString(16);
    }
    const mem = await tmpFile(JSON.stringify(m.mem.saveSparse()), ".json");
    const args = ["translate", "--backend", b.name, "--memory", mem];
    for (const r of ENABLE[b.name](vals)) args.push("--reg", r);
    const id = b.name === "vtd" ? ["--rid", "00:03.0"] : ["--sid", String(dev.rid)];
    const rd = await cli(...args, ...id, "--iova", (dma + 8).toString(16), "--json");
    assert.equal(rd.code, 0, rd.err);
    const ok = JSON.parse(rd.out);
    assert.equal(ok.pa, "0x" + (buf + 8).toString(16));
    assert.match(ok.perm, /^r/);
    const wr = await cli(...args, ...id, "--iova", dma.toString(16), "--write", "--json");
    assert.equal(JSON.parse(wr.out).fault, true, "TO_DEVICE mapping: no write");
    const un = await cli(...args, ...id, "--iova", "0x1000", "--json");
    assert.equal(JSON.parse(un.out).fault, true);
  });
}
