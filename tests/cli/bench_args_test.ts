/**
 * `deno task bench` arguments: bad ones are one line and exit 2; `--json`
 * prints mitata's JSON (statistics, no raw samples) and nothing else.
 */
import assert from "node:assert/strict";

const MAIN = new URL("../../bench/main.ts", import.meta.url).pathname;

async function bench(...args: string[]) {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
}

Deno.test("bench: an unknown option, a positional argument or a bad --filter regex exit 2 with one line", async () => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /^bench: Unknown option '--bogus'; usage: deno task bench \[--json\]/],
    [["extra"], /^bench: Unexpected argument 'extra'/],
    [["--filter", "("], /^bench: --filter "\(": Invalid regular expression/],
  ];
  for (const [args, re] of cases) {
    const r = await bench(...args);
    assert.equal(r.code, 2, args.join(" "));
    assert.equal(r.out, "");
    assert.equal(r.err.trim().split("\n").length, 1, r.err);
    assert.match(r.err, re);
  }
});

Deno.test("bench: a --filter that selects nothing says so in one line and exits 2", async () => {
  const r = await bench("--filter", "^no bench has this name$");
  assert.equal(r.code, 2);
  assert.equal(r.err.trim().split("\n").length, 1, r.err);
  assert.match(r.err, /^bench: --filter "\^no bench has this name\$" matches no benchmark/);
});

Deno.test("bench --filter dma_map selects no mitata bench but runs the dma_map_benchmark report", async () => {
  const r = await bench("--filter", "dma_map");
  assert.equal(r.code, 0, r.err);
  for (const name of ["vtd strict", "smmuv3 strict", "vtd lazy", "smmuv3 lazy"]) {
    assert.ok(r.out.includes(`# ${name}\n`), name);
  }
  assert.match(r.out, /^average map latency\(us\):\d+\.\d standard deviation:\d+\.\d$/m);
  assert.match(r.out, /^average unmap latency\(us\):\d+\.\d standard deviation:\d+\.\d$/m);
});

Deno.test("bench --json --filter prints only JSON: the layout of every group and no raw samples", async () => {
  const r = await bench("--json", "--filter", "^no bench has this name$");
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.deepEqual(j.benchmarks, [], "the filter selected nothing");
  const groups = (j.layout as { name: string | null }[]).map((g) => g.name).filter(Boolean);
  assert.ok(groups.some((n) => /^dma_map_benchmark /.test(n!)), groups.join(", "));
  assert.ok(groups.some((n) => /^io-pgtable /.test(n!)), groups.join(", "));
  assert.ok(!r.out.includes('"samples":['), "samples are left out");
  assert.ok(r.out.length < 100_000, `${r.out.length} bytes`);
  assert.ok(!r.out.includes("average map latency"), "no kernel-form lines with --json");
});

Deno.test("the dma bench prints the kernel dma_map_benchmark tool's lines", async () => {
  const { kernelToolLines } = await import("../../bench/dma.bench.ts");
  assert.deepEqual(kernelToolLines("vtd strict", 256, [1.234, 0.05], [12.25, 3.96]), [
    "# vtd strict",
    "dma mapping benchmark: threads:1 seconds:0 node:-1 dir:BIDIRECTIONAL granule: 256",
    "average map latency(us):1.2 standard deviation:0.1",
    "average unmap latency(us):12.3 standard deviation:4.0",
  ]);
});
