import assert from "node:assert/strict";
import fc from "fast-check";
import { parse } from "yaml";
import { BUILTIN_SCENARIOS } from "../../cli/scenario/builtin.ts";
import { cli } from "./helpers.ts";

const TOKENS = [
  ":",
  "- ",
  "[",
  "]",
  "{",
  "}",
  ",",
  "0x",
  "$",
  "steps",
  "map",
  "read",
  "device",
  "addr",
  "size: -1",
  "size: 1e30",
  "\n",
  "  ",
  "\t",
  "'",
  '"',
  "nic0",
  "null",
  "~",
  "&a",
  "*a",
  "!!binary",
  "expect",
  "fault",
  "data",
  "ffffffffffffffff",
  "99999999999999999999",
  "pasid: 5",
];

const mutation = fc.oneof(
  fc.record({
    op: fc.constant("del" as const),
    at: fc.nat(),
    len: fc.integer({ min: 1, max: 40 }),
  }),
  fc.record({ op: fc.constant("ins" as const), at: fc.nat(), tok: fc.constantFrom(...TOKENS) }),
  fc.record({ op: fc.constant("dupline" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("swap" as const), a: fc.nat(), b: fc.nat() }),
  fc.record({
    op: fc.constant("num" as const),
    at: fc.nat(),
    v: fc.integer({ min: -5, max: 2 ** 40 }),
  }),
);

type Mut = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(text: string, ms: Mut[]): string {
  let t = text;
  for (const m of ms) {
    const lines = t.split("\n");
    switch (m.op) {
      case "del": {
        const at = m.at % Math.max(1, t.length);
        t = t.slice(0, at) + t.slice(at + m.len);
        break;
      }
      case "ins": {
        const at = m.at % Math.max(1, t.length);
        t = t.slice(0, at) + m.tok + t.slice(at);
        break;
      }
      case "dupline": {
        const i = m.at % lines.length;
        lines.splice(i, 0, lines[i]);
        t = lines.join("\n");
        break;
      }
      case "swap": {
        const a = m.a % lines.length, b = m.b % lines.length;
        [lines[a], lines[b]] = [lines[b], lines[a]];
        t = lines.join("\n");
        break;
      }
      case "num": {
        let k = 0;
        const nth = m.at % 20;
        t = t.replace(/\b\d+\b/g, (x) => (k++ === nth ? String(m.v) : x));
        break;
      }
    }
  }
  return t;
}

Deno.test("fuzz: mutated scenario files end in a report or a one-line error, never an uncaught exception", async () => {
  const dir = await Deno.makeTempDir();
  let n = 0;
  const codes = [0, 0, 0];
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...BUILTIN_SCENARIOS),
      fc.array(mutation, { minLength: 1, maxLength: 4 }),
      fc.constantFrom(".yaml", ".json"),
      async (sc, ms, ext) => {
        const text = ext === ".json"
          ? mutate(JSON.stringify(parse(sc.yaml), null, 1), ms)
          : mutate(sc.yaml, ms);
        const f = `${dir}/s${n++}${ext}`;
        await Deno.writeTextFile(f, text);
        const r = await cli("scenario", "run", f, "--backend", "flat-iommu");
        assert.ok([0, 1, 2].includes(r.code), `exit ${r.code}`);
        codes[r.code]++;
        if (r.code === 2) {
          assert.equal(r.err.trim().split("\n").length, 1, r.err);
          assert.match(r.err, /^iommu-lab: /);
        }
        assert.doesNotMatch(r.out + r.err, /internal error|at .*\.ts:\d+/, r.out + r.err);
      },
    ),
    { numRuns: 150, seed: 42 },
  );
  // The mutations reach every outcome: passing runs, failed expectations and refused files.
  assert.ok(codes[0] > 0 && codes[1] > 0 && codes[2] > 0, `exit codes seen: ${codes}`);
});
