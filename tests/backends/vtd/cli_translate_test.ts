/**
 * `deno task cli translate --backend vtd` on a memory image written by hand
 * (no driver code): scalable-mode root, context, PASID directory and entry,
 * and a second-stage table, registers by specification name.
 */
import assert from "node:assert/strict";
import { PhysMem } from "@iommu-lab/core";

const root = new URL("../../../", import.meta.url);

function image(): string {
  const mem = new PhysMem(48);
  const q64 = (a: number, v: number) => mem.write64n(a, BigInt(v));
  q64(0x100000 + 3 * 16, 0x101000 + 1); // root[bus 3].LCTP
  q64(0x101000 + 0x10 * 32, 0x102000 + (2 << 9) + 8 + 1); // SM context of 03:02.0
  q64(0x102000, 0x103000 + 1); // PASID dir[0]
  // PASID 0: PGTT=2 (second stage), AW=2, DID 9, SLPTPTR 0x300000.
  q64(0x103000, 0x300000 + (2 << 2) + (2 << 6) + 1);
  q64(0x103008, 9);
  q64(0x300000, 0x301000 + 3);
  q64(0x301000, 0x302000 + 3);
  q64(0x302000, 0x303000 + 3);
  q64(0x303000 + 4 * 8, 0x9000_0000 + 1); // iova 0x4000 -> 0x9000_0000, read-only
  return JSON.stringify(mem.saveSparse());
}

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli/main.ts", ...args],
    cwd: root,
    env: { NO_COLOR: "1" },
  }).output();
  return {
    code: r.code,
    out: new TextDecoder().decode(r.stdout),
    err: new TextDecoder().decode(r.stderr),
  };
}

const REGS = [
  "--reg",
  "RTADDR_REG=0x100400",
  "--reg",
  "GCMD_REG=0x40000000",
  "--reg",
  "GCMD_REG=0x80000000",
];

Deno.test("cli translate --backend vtd on a hand-written image: one request and a requests file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const img = `${dir}/mem.json`;
    await Deno.writeTextFile(img, image());
    const one = await cli([
      "translate",
      "--backend",
      "vtd",
      "--memory",
      img,
      ...REGS,
      "--rid",
      "03:02.0",
      "--iova",
      "0x4010",
      "--json",
    ]);
    assert.equal(one.code, 0, one.err);
    const j = JSON.parse(one.out);
    const r = Array.isArray(j) ? j[0] : j;
    assert.equal(Number(r.pa), 0x9000_0010);
    const reqs = `${dir}/reqs.json`;
    await Deno.writeTextFile(
      reqs,
      JSON.stringify([
        { rid: "03:02.0", iova: "0x4000" },
        { rid: "03:02.0", iova: "0x4000", write: true },
        { rid: "03:02.0", iova: "0x4000", pasid: 1 },
      ]),
    );
    const many = await cli([
      "translate",
      "--backend",
      "vtd",
      "--memory",
      img,
      ...REGS,
      "--requests",
      reqs,
    ]);
    assert.equal(many.code, 0, many.err);
    const arr = JSON.parse(many.out);
    assert.equal(arr.length, 3);
    assert.equal(Number(arr[0].pa), 0x9000_0000);
    assert.match(JSON.stringify(arr[1]), /SM_SL_PERMISSION|0x69|105/);
    assert.match(JSON.stringify(arr[2]), /SM_PASID_ENTRY_NOT_PRESENT|0x59|89/);
    const bad = await cli([
      "translate",
      "--backend",
      "vtd",
      ...REGS,
      "--reg",
      "NOPE_REG=1",
      "--rid",
      "03:02.0",
      "--iova",
      "0x4000",
    ]);
    assert.equal(bad.code, 2);
    assert.equal(bad.err.trim().split("\n").length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
