import assert from "node:assert/strict";
import { IommuCore, Machine, resolveOptions } from "@iommu-lab/core";
import { dmaDevice, DmaDirection } from "@iommu-lab/dma-api";
import { findBackend } from "../../cli/backends.ts";
import { cli, tmpFile } from "./helpers.ts";

Deno.test("backends lists the built-ins with their options", async () => {
  const r = await cli("backends");
  assert.equal(r.code, 0);
  assert.match(r.out, /^vtd \(@iommu-lab\/vtd\): /m);
  assert.match(r.out, /^flat-iommu \(@iommu-lab\/examples\): /m);
  assert.match(r.out, /--opt iotlb_entries=<number> \{8\|16\|32\|64\|128\|256\}/);
  const j = JSON.parse((await cli("backends", "--json")).out);
  assert.ok(
    j.some((b: { name: string; available: boolean }) => b.name === "flat-iommu" && b.available),
  );
});

Deno.test("scenario list names every built-in scenario", async () => {
  const r = await cli("scenario", "list");
  assert.equal(r.code, 0);
  for (const n of ["tour", "strict-vs-lazy", "dma-isolation", "missed-invalidation", "pasid-dma"]) {
    assert.match(r.out, new RegExp(`^${n} `, "m"));
  }
});

Deno.test("inspect decode prints every field of an x86 PTE", async () => {
  const r = await cli("inspect", "decode", "x86_pte", "0x8000000012345003");
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^X86_PTE \(io-pgtable, 64 bits\)/);
  assert.match(r.out, /P +\[0:0\] = 0x1/);
  assert.match(r.out, /RW +\[1:1\] = 0x1/);
  assert.match(r.out, /ADDR +\[51:12\] = 0x12345000/);
  assert.match(r.out, /XD +\[63:63\] = 0x1/);
  const j = JSON.parse((await cli("inspect", "decode", "X86_PTE", "0x3", "--json")).out);
  assert.equal(j.fields.RW, "0x1");
});

Deno.test("inspect decode finds the backends' structures (SMMUv3 STE, VT-d entries)", async () => {
  const list = (await cli("inspect", "decode")).out;
  assert.match(list, /smmuv3 +STE +512 bits/);
  assert.match(list, /vtd /);
  const r = await cli("inspect", "decode", "STE", "0x1");
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /V +\[0:0\] = 0x1/);
});

Deno.test("inspect decode of an unknown structure or bad words exits 2 with one line", async () => {
  const a = await cli("inspect", "decode", "NOPE", "0x1");
  assert.equal(a.code, 2);
  assert.match(a.err, /^iommu-lab: unknown structure "NOPE"; known: .*X86_PTE/);
  const b = await cli("inspect", "decode", "X86_PTE", "0xzz");
  assert.equal(b.code, 2);
  assert.match(b.err, /not a hexadecimal word/);
  const c = await cli("inspect", "decode", "X86_PTE", "0x1", "0x2");
  assert.equal(c.code, 2);
  assert.match(c.err, /X86_PTE is 64 bits/);
});

async function flatImage() {
  const plugin = await findBackend("flat-iommu");
  const m = new Machine();
  const dev = m.pci.add({ name: "nic0", bus: 0, device: 3, fn: 0 });
  const { hw, driver } = plugin.create(m, resolveOptions(plugin, {}));
  const core = new IommuCore(m);
  core.registerDriver(driver);
  const buf = m.pages.allocPage();
  const dma = dmaDevice(core, dev).dmaMapSingle(buf, 4096, DmaDirection.TO_DEVICE);
  const regs = hw.registers.filter((r) => r.name === "FLAT_DT_BASE" || r.name === "FLAT_CTRL")
    .sort((a) => a.name === "FLAT_CTRL" ? 1 : -1)
    .map((r) => {
      const a = hw.mmioBase + r.offset;
      const v = r.width === 64 ? m.bus.read64(a) : BigInt(m.bus.read32(a));
      return `${r.name}=0x${v.toString(16)}`;
    });
  const mem = await tmpFile(JSON.stringify(m.mem.saveSparse()), ".json");
  return { buf, dma, regs, mem };
}

Deno.test("translate drives a backend's hardware from a memory image and registers", async () => {
  const { buf, dma, regs, mem } = await flatImage();
  const args = ["translate", "--backend", "flat-iommu", "--memory", mem];
  for (const r of regs) args.push("--reg", r);
  const ok = await cli(...args, "--rid", "00:03.0", "--iova", (dma + 0x10).toString(16), "--json");
  assert.equal(ok.code, 0, ok.err);
  assert.deepEqual(JSON.parse(ok.out), { pa: "0x" + (buf + 0x10).toString(16), perm: "r" });
  const w = await cli(
    ...args,
    "--rid",
    "00:03.0",
    "--iova",
    "0x" + dma.toString(16),
    "--write",
    "--json",
  );
  assert.equal(JSON.parse(w.out).fault, true);
  const reqs = await tmpFile(
    JSON.stringify([
      { rid: "00:03.0", iova: "0x" + dma.toString(16), access: "read" },
      { rid: "00:03.0", iova: "0x1000" },
      { rid: "00:03.0", iova: "0x" + dma.toString(16), access: "write" },
    ]),
    ".json",
  );
  const many = await cli(...args, "--requests", reqs);
  assert.equal(many.code, 0, many.err);
  const arr = JSON.parse(many.out);
  assert.equal(arr.length, 3);
  assert.equal(arr[2].fault, true, "a TO_DEVICE mapping refuses writes");
  assert.equal(arr[0].pa, "0x" + buf.toString(16));
  assert.equal(arr[1].fault, true);
  assert.equal(typeof arr[1].reason, "string");
});

Deno.test("translate with an unknown register exits 2 listing the register names", async () => {
  const r = await cli(
    "translate",
    "--backend",
    "flat-iommu",
    "--reg",
    "NOPE=1",
    "--rid",
    "00:03.0",
    "--iova",
    "1000",
  );
  assert.equal(r.code, 2);
  assert.match(
    r.err,
    /^iommu-lab: --reg: flat-iommu has no register "NOPE"; registers: FLAT_ID, FLAT_CTRL/,
  );
});

Deno.test("translate refuses a bad RID, a missing address and a bad option with exit 2", async () => {
  const a = await cli("translate", "--backend", "flat-iommu", "--rid", "zz", "--iova", "1000");
  assert.equal(a.code, 2);
  assert.match(a.err, /--rid: .*not a PCI address/);
  const b = await cli("translate", "--backend", "flat-iommu", "--rid", "00:03.0");
  assert.equal(b.code, 2);
  assert.match(b.err, /give --iova/);
  const c = await cli(
    "translate",
    "--backend",
    "flat-iommu",
    "--opt",
    "iotlb_entries=7",
    "--rid",
    "00:03.0",
    "--iova",
    "1",
  );
  assert.equal(c.code, 2);
  assert.match(c.err, /iotlb_entries/);
});

Deno.test("unknown commands and options exit 2 with one line; help exits 0", async () => {
  const a = await cli("frobnicate");
  assert.equal(a.code, 2);
  assert.match(a.err, /^iommu-lab: unknown command 'frobnicate'\n$/);
  const b = await cli("scenario", "run", "tour", "--seed", "x");
  assert.equal(b.code, 2);
  assert.match(b.err, /--seed "x" is not a non-negative integer/);
  const h = await cli("--help");
  assert.equal(h.code, 0);
  assert.match(h.out, /scenario/);
});

Deno.test("demo runs the tour on every built-in backend and prints a side-by-side table", async () => {
  const r = await cli("demo");
  assert.equal(r.code, 0, r.out + r.err);
  assert.match(r.out, /running tour on flat-iommu/);
  const header = r.out.split("\n").find((l) =>
    /^\s+vtd\s/.test(l) || /^\s+\S+\s+\S+/.test(l) && l.includes("flat-iommu")
  );
  assert.ok(header, r.out);
  assert.match(r.out, /^result +(PASS +)+PASS$/m);
  assert.match(r.out, /^modeled µs +[\d.]+/m);
  assert.ok(!r.out.includes("\u001b["), "no color codes when not a terminal");
});

Deno.test("NO_COLOR turns colors off", async () => {
  const { denoIo } = await import("../../cli/app.ts");
  const old = Deno.env.get("NO_COLOR");
  Deno.env.set("NO_COLOR", "1");
  try {
    assert.equal(denoIo().color, false);
  } finally {
    if (old === undefined) Deno.env.delete("NO_COLOR");
    else Deno.env.set("NO_COLOR", old);
  }
});

Deno.test("inspect decode takes a VT-d root entry by its short name, two 64-bit words", async () => {
  const r = await cli("inspect", "decode", "root_entry", "0x12345001", "0x67890001");
  if (r.code !== 0 && /unknown structure/.test(r.err)) return; // VT-d backend not built
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /LP +\[0:0\] = 0x1/);
  assert.match(r.out, /LCTP +\[63:12\] = 0x12345000/);
  assert.match(r.out, /UP +\[64:64\] = 0x1/);
  assert.match(r.out, /UCTP +\[127:76\] = 0x67890000/);
});

async function demoWith(isTTY: boolean, color: boolean) {
  const { runCli } = await import("../../cli/app.ts");
  let out = "", err = "";
  const code = await runCli(["demo"], {
    out: (s) => void (out += s),
    err: (s) => void (err += s),
    isTTY,
    color,
  });
  return { code, out, err };
}

Deno.test("demo on a terminal draws a progress bar (on stderr) instead of plain lines", async () => {
  const r = await demoWith(true, true);
  assert.equal(r.code, 0, r.out);
  const n = await builtinCount();
  assert.match(r.err, new RegExp(`█+ ${n}/${n} `), "the bar reaches the backend count");
  assert.ok(!r.out.includes("running tour on"), "no plain progress lines on a terminal");
  assert.ok(r.out.includes("\u001b["), "colors on a terminal without NO_COLOR");
  const plain = await demoWith(false, false);
  assert.equal(plain.err, "", "no bar when stdout is not a terminal");
  assert.match(plain.out, /running tour on vtd\.\.\./);
});

Deno.test("a terminal with NO_COLOR (color off) gets no color codes but still the bar", async () => {
  const r = await demoWith(true, false);
  assert.equal(r.code, 0);
  assert.ok(!r.out.includes("\u001b["), "NO_COLOR: no escape codes in the output");
  assert.match(r.out, /^result +(PASS +)+PASS$/m);
  assert.match(r.err, /█/);
});

async function builtinCount(): Promise<number> {
  const { builtinBackends } = await import("../../cli/backends.ts");
  return (await builtinBackends()).filter((b) => b.plugin).length;
}

Deno.test("inspect decode prints the leaf entries of the Arm LPAE S1/S2 and VT-d second-stage formats", async () => {
  // The S1 4K page R|W|NOEXEC|CACHE of the io-pgtable tests.
  const s1 = await cli("inspect", "decode", "ARM_LPAE_S1_LEAF", "0x0060000012345f47");
  assert.equal(s1.code, 0, s1.err);
  assert.match(s1.out, /ATTRINDX +\[4:2\] = 0x1 \(CACHE\)/);
  assert.match(s1.out, /AF +\[10:10\] = 0x1/);
  assert.match(s1.out, /nG +\[11:11\] = 0x1/);
  assert.match(s1.out, /OA +\[47:12\] = 0x12345000/);
  assert.match(s1.out, /UXN +\[54:54\] = 0x1/);
  const s2 = await cli("inspect", "decode", "arm_lpae_s2_leaf", "0x0040000012345fff");
  assert.equal(s2.code, 0, s2.err);
  assert.match(s2.out, /MEMATTR +\[5:2\] = 0xf \(OIWB\)/);
  assert.match(s2.out, /S2AP +\[7:6\] = 0x3 \(RW\)/);
  assert.match(s2.out, /XN +\[54:53\] = 0x2/);
  const ss = await cli("inspect", "decode", "VTD_SS_PTE", "0x12345883");
  assert.equal(ss.code, 0, ss.err);
  assert.match(ss.out, /R +\[0:0\] = 0x1/);
  assert.match(ss.out, /PS +\[7:7\] = 0x1/);
  assert.match(ss.out, /SNP +\[11:11\] = 0x1/);
  assert.match(ss.out, /ADDR +\[51:12\] = 0x12345000/);
});

Deno.test("translate loads a raw memory image at --memory-base and translates as with the sparse one", async () => {
  const { buf, dma, regs, mem } = await flatImage();
  const img = JSON.parse(await Deno.readTextFile(mem)) as { pages: Record<string, string> };
  const pages = Object.keys(img.pages).map(Number);
  const lo = Math.min(...pages), hi = Math.max(...pages) + 4096;
  assert.ok(hi - lo <= 64 << 20, `the image spans ${hi - lo} bytes`);
  const m = new Machine();
  m.mem.loadSparse(img);
  const raw = await tmpFile(m.mem.saveRaw(lo, hi - lo), ".bin");
  const args = ["translate", "--backend", "flat-iommu", "--memory", raw];
  for (const r of regs) args.push("--reg", r);
  const iova = "0x" + (dma + 0x10).toString(16);
  const at = await cli(
    ...args,
    "--memory-base",
    "0x" + lo.toString(16),
    "--rid",
    "00:03.0",
    "--iova",
    iova,
    "--json",
  );
  assert.equal(at.code, 0, at.err);
  assert.deepEqual(JSON.parse(at.out), { pa: "0x" + (buf + 0x10).toString(16), perm: "r" });
  // Loaded at 0 instead, the tables are not where the registers point: a fault.
  if (lo !== 0) {
    const wrong = await cli(...args, "--rid", "00:03.0", "--iova", iova, "--json");
    assert.equal(wrong.code, 0, wrong.err);
    assert.equal(JSON.parse(wrong.out).fault, true);
  }
  const bad = await cli(
    ...args,
    "--memory-base",
    "0xfffffffffffff0",
    "--rid",
    "00:03.0",
    "--iova",
    iova,
  );
  assert.equal(bad.code, 2);
  assert.match(
    bad.err,
    /^iommu-lab: --memory .*: raw image of \d+ bytes at 0xfffffffffffff0 does not fit/,
  );
  const noMem = await cli(
    "translate",
    "--backend",
    "flat-iommu",
    "--memory-base",
    "0x1000",
    "--iova",
    "0x0",
  );
  assert.equal(noMem.code, 2);
  assert.match(noMem.err, /--memory-base needs --memory FILE/);
});
