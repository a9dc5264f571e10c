import assert from "node:assert/strict";
import { Machine, newDmaRequest, newTranslateResult } from "@iommu-lab/core";
import plugin from "../../../backends/smmuv3/mod.ts";
import { CD, L1_STD, STE } from "../../../backends/smmuv3/hw/structs.ts";

/** Write a memory image by hand (no driver code): 2-level stream table, an S1 STE, a CD and a 4-level table. */
function buildImage(m: Machine): { regs: Record<string, bigint>; sid: number } {
  const mem = m.mem;
  const L1 = 0x10_0000, L2 = 0x10_4000, CDA = 0x10_8000, PGD = 0x11_0000;
  const sid = 0x0108; // 01:01.0
  mem.writeWords(L1 + (sid >> 8) * 8, L1_STD.encode({ SPAN: 9, L2Ptr: L2 }));
  mem.writeWords(L2 + (sid & 0xff) * 64, STE.encode({ V: 1, CONFIG: 5, S1ContextPtr: CDA }));
  mem.writeWords(
    CDA,
    CD.encode({ V: 1, AA64: 1, R: 1, A: 1, T0SZ: 16, IPS: 5, ASID: 1, TTB0: PGD / 16 }),
  );
  const va = 0x12_3456_7000;
  let table = PGD;
  let next = 0x11_1000;
  for (let level = 0; level < 3; level++) {
    const idx = Math.floor(va / 2 ** (12 + 9 * (3 - level))) % 512;
    mem.write64(table + idx * 8, next | 3, 0);
    table = next;
    next += 0x1000;
  }
  mem.write64(table + (Math.floor(va / 4096) % 512) * 8, 0x8000_0000 | 3 | 0x440, 0);
  return {
    sid,
    regs: {
      STRTAB_BASE: BigInt(L1),
      STRTAB_BASE_CFG: (1n << 16n) | (8n << 6n) | 16n,
      CR0: 1n,
    },
  };
}

Deno.test("translate works on a memory image written by other code, registers set by name", () => {
  const src = new Machine();
  const { regs, sid } = buildImage(src);
  const image = src.mem.saveSparse();
  const m = new Machine();
  const hw = plugin.createHardware(m, {});
  m.mem.loadSparse(JSON.parse(JSON.stringify(image)));
  for (const [name, v] of Object.entries(regs)) {
    const spec = hw.registers.find((r) => r.name === name)!;
    if (spec.width === 64) m.bus.write64(hw.mmioBase + spec.offset, v);
    else m.bus.write32(hw.mmioBase + spec.offset, Number(v));
  }
  const req = newDmaRequest();
  req.rid = sid;
  req.addr = 0x12_3456_7abc;
  const out = newTranslateResult();
  hw.translate(req, out);
  assert.equal(out.ok, true);
  assert.equal(out.pa, 0x8000_0abc);
  req.addr = 0x12_3456_8000;
  hw.translate(req, out);
  assert.equal(out.fault, "F_TRANSLATION");
});

Deno.test("every register the CLI can name exists with its architecture offset", () => {
  const hw = plugin.createHardware(new Machine(), {});
  const names = Object.fromEntries(hw.registers.map((r) => [r.name, r]));
  for (
    const n of [
      "IDR0",
      "IDR1",
      "IDR2",
      "IDR3",
      "IDR4",
      "IDR5",
      "CR0",
      "CR0ACK",
      "CR1",
      "CR2",
      "GBPA",
      "GERROR",
      "GERRORN",
      "IRQ_CTRL",
      "STRTAB_BASE",
      "STRTAB_BASE_CFG",
      "CMDQ_BASE",
      "CMDQ_PROD",
      "CMDQ_CONS",
      "EVTQ_BASE",
      "EVTQ_PROD",
      "EVTQ_CONS",
      "PRIQ_BASE",
      "PRIQ_PROD",
      "PRIQ_CONS",
    ]
  ) {
    assert.ok(names[n], n);
  }
  assert.equal(names.STRTAB_BASE.offset, 0x80);
  assert.equal(names.STRTAB_BASE.width, 64);
  assert.equal(names.EVTQ_PROD.offset, 0x100a8);
  assert.equal(names.CMDQ_CONS.offset, 0x9c);
});

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const p = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli/main.ts", ...args],
    cwd: new URL("../../../", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  });
  const r = await p.output();
  return {
    code: r.code,
    out: new TextDecoder().decode(r.stdout),
    err: new TextDecoder().decode(r.stderr),
  };
}

Deno.test("deno task cli translate --backend smmuv3 on a hand-written image; bad input exits 2 with one line", async () => {
  const src = new Machine();
  const { regs, sid } = buildImage(src);
  const file = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(file, JSON.stringify(src.mem.saveSparse()));
  const regArgs = Object.entries(regs).flatMap(([k, v]) => ["--reg", `${k}=0x${v.toString(16)}`]);
  const ok = await cli([
    "translate",
    "--backend",
    "smmuv3",
    "--memory",
    file,
    ...regArgs,
    "--sid",
    String(sid),
    "--iova",
    "0x1234567abc",
    "--json",
  ]);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /0x80000abc/i);
  const bad = await cli([
    "translate",
    "--backend",
    "smmuv3",
    "--memory",
    file,
    "--reg",
    "NOPE=1",
    "--sid",
    "1",
    "--iova",
    "0x1000",
  ]);
  assert.equal(bad.code, 2);
  assert.equal(bad.err.trim().split("\n").length, 1);
  const badOpt = await cli([
    "translate",
    "--backend",
    "smmuv3",
    "--opt",
    "stall=sometimes",
    "--sid",
    "1",
    "--iova",
    "0x1000",
  ]);
  assert.equal(badOpt.code, 2);
  await Deno.remove(file);
});
