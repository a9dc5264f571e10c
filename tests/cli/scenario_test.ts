import assert from "node:assert/strict";
import { BUILTIN_SCENARIOS } from "../../cli/scenario/builtin.ts";
import { parseScenario } from "../../cli/scenario/schema.ts";
import { runScenario } from "../../cli/scenario/runner.ts";
import { builtinBackends } from "../../cli/backends.ts";
import { cli, tmpFile } from "./helpers.ts";

const backends = (await builtinBackends()).filter((b) => b.plugin);

for (const sc of BUILTIN_SCENARIOS) {
  for (const b of backends) {
    Deno.test(`built-in scenario ${sc.name} passes on ${b.name}`, () => {
      const r = runScenario(parseScenario(sc.yaml, `builtin:${sc.name}`), { plugin: b.plugin! });
      if (r.skipped) {
        // Only the example backend may lack PASID or deferred flush.
        assert.equal(b.name, "flat-iommu", `${b.name} skipped ${sc.name}: ${r.skipped}`);
        return;
      }
      const bad = r.steps.find((s) => s.status !== "ok");
      assert.equal(bad, undefined, bad && `step #${bad.index} ${bad.kind}: ${bad.text}`);
      assert.equal(r.ok, true);
    });
  }
}

Deno.test("the tour counts one strict sync and two device faults", () => {
  const b = backends[0];
  const r = runScenario(parseScenario(BUILTIN_SCENARIOS[0].yaml, "tour"), { plugin: b.plugin! });
  assert.equal(r.counters["dma-api"].strictSyncs, 1);
  assert.equal(r.counters.dma.faults, 2);
  assert.ok(r.modeledNs > 0);
});

Deno.test("strict-vs-lazy: 4 strict syncs, then 4 queued unmaps cost one flush-all after 10 ms", () => {
  const vtd = backends.find((b) => b.name === "vtd");
  if (!vtd) return;
  const sc = BUILTIN_SCENARIOS.find((s) => s.name === "strict-vs-lazy")!;
  const r = runScenario(parseScenario(sc.yaml, "x"), { plugin: vtd.plugin! });
  assert.equal(r.ok, true);
  assert.equal(r.counters["dma-api"].strictSyncs, 4);
  assert.equal(r.counters["dma-api"].fqQueued, 4);
  assert.equal(r.counters["dma-api"].fqFlushes, 1);
  assert.equal(r.clockNs, 10_000_000);
});

Deno.test("a same scenario and seed give the same trace, byte for byte", () => {
  const b = backends[0];
  const run = () =>
    runScenario(parseScenario(BUILTIN_SCENARIOS[0].yaml, "tour"), {
      plugin: b.plugin!,
      trace: true,
    })
      .trace;
  const a = run();
  assert.ok(a && a.length > 0);
  assert.equal(run(), a);
});

const WRONG = `name: wrong
devices:
  - { name: nic0, bdf: "00:03.0" }
steps:
  - alloc: { name: buf, size: 4096, fill: 0x11 }
  - map: { device: nic0, buffer: buf, size: 4096, as: d }
  - read: { device: nic0, addr: $d, length: 4, expect: { data: "22 22 22 22" } }
  - unmap: { device: nic0, handle: d }
`;

Deno.test("a scenario with a wrong expectation exits 1 naming the step, line and values", async () => {
  const f = await tmpFile(WRONG, ".yaml");
  const r = await cli("scenario", "run", f, "--backend", backends[0].name);
  assert.equal(r.code, 1);
  assert.match(
    r.out,
    /FAIL #3 +line 7 +read +read: expected \[22 22 22 22\], read \[11 11 11 11\]/,
  );
  assert.match(r.out, /skip #4/);
});

Deno.test("scenario run --json reports steps and counters; --trace writes JSON lines", async () => {
  const t = await Deno.makeTempFile({ suffix: ".jsonl" });
  const r = await cli(
    "scenario",
    "run",
    "tour",
    "--backend",
    backends[0].name,
    "--json",
    "--trace",
    t,
  );
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.ok, true);
  assert.equal(j.steps.length, 10);
  assert.equal(j.counters["dma-api"].maps, 1);
  const lines = (await Deno.readTextFile(t)).trim().split("\n");
  assert.ok(lines.length > 3);
  assert.ok(lines.every((l) => typeof JSON.parse(l).name === "string"));
});

const BAD: [string, string, RegExp][] = [
  ["syntax error", "name: x\ndevices: [\n", /:3:1: syntax error/],
  [
    "unknown field",
    'name: x\ndevices:\n  - { name: a, bdf: "00:01.0", colour: red }\nsteps: []\n',
    /:3:\d+: devices\[0\]: unknown field "colour"; allowed: name, bdf/,
  ],
  [
    "wrong type",
    'name: x\ndevices:\n  - { name: a, bdf: "00:01.0" }\nsteps:\n  - alloc: { name: b, size: big }\n',
    /:5:\d+: steps\[0\]\.alloc\.size: .*expected number/,
  ],
  [
    "unknown step",
    'name: x\ndevices:\n  - { name: a, bdf: "00:01.0" }\nsteps:\n  - teleport: {}\n',
    /:5:\d+: steps\[0\]\.teleport: unknown step "teleport"/,
  ],
  [
    "unknown backend",
    'name: x\nbackend: nosuch\ndevices:\n  - { name: a, bdf: "00:01.0" }\nsteps: []\n',
    /:2:10: backend: unknown backend "nosuch"; built-in backends: vtd/,
  ],
  [
    "impossible device address",
    'name: x\ndevices:\n  - { name: a, bdf: "00:2f.0" }\nsteps: []\n',
    /:3:21: devices\[0\] \(a\): .*device 47 is outside 0\.\.31/,
  ],
  [
    "a bad backend option",
    'name: x\nbackend:\n  name: vtd\n  options: { cm: maybe }\ndevices:\n  - { name: a, bdf: "00:01.0" }\nsteps: []\n',
    /:4:12: backend\.options: .*option "cm" cannot be "maybe"; allowed: true or false/,
  ],
  [
    "duplicate device address",
    'name: x\ndevices:\n  - { name: a, bdf: "00:01.0" }\n  - { name: b, bdf: "00:01.0" }\nsteps: []\n',
    /:4:21: devices\[1\] \(b\): .*already exists/,
  ],
];

for (const [what, text, re] of BAD) {
  Deno.test(`a scenario file with ${what} gives one line naming the place and exit 2`, async () => {
    const f = await tmpFile(text, ".yaml");
    const r = await cli("scenario", "run", f);
    assert.equal(r.code, 2, r.out + r.err);
    assert.equal(r.err.trim().split("\n").length, 1, r.err);
    assert.match(r.err, /^iommu-lab: /);
    assert.match(r.err, re);
    assert.ok(r.err.startsWith(`iommu-lab: ${f}:`), "names the file and line");
  });
}

const BAD_JSON: [string, string, RegExp][] = [
  ["a syntax error", '{\n  "name": "j",\n  "devices": [\n}\n', /:4:1: syntax error/],
  [
    "an unknown field",
    '{\n  "name": "j",\n  "devices": [{ "name": "a", "bdf": "00:01.0", "colour": 1 }],\n  "steps": []\n}\n',
    /:3:48: devices\[0\]: unknown field "colour"; allowed: name, bdf/,
  ],
  [
    "a wrong type",
    '{\n  "name": "j",\n  "devices": [{ "name": "a", "bdf": "00:01.0" }],\n  "steps": [\n    { "alloc": { "name": "b", "size": "big" } }\n  ]\n}\n',
    /:5:39: steps\[0\]\.alloc\.size: .*expected number/,
  ],
  [
    "an unknown backend",
    '{\n  "name": "j",\n  "backend": { "name": "nosuch" },\n  "devices": [{ "name": "a", "bdf": "00:01.0" }],\n  "steps": []\n}\n',
    /:3:24: backend\.name: unknown backend "nosuch"/,
  ],
];

for (const [what, text, re] of BAD_JSON) {
  Deno.test(`a JSON scenario file with ${what} gives one line naming file, line and field, and exit 2`, async () => {
    const f = await tmpFile(text, ".json");
    const r = await cli("scenario", "run", f);
    assert.equal(r.code, 2, r.out + r.err);
    assert.equal(r.err.trim().split("\n").length, 1, r.err);
    assert.ok(r.err.startsWith(`iommu-lab: ${f}:`), r.err);
    assert.match(r.err, re);
    assert.equal(r.out, "", "nothing runs");
  });
}

Deno.test("--backend on the command line overrides a scenario's unknown backend", async () => {
  const f = await tmpFile(
    'name: x\nbackend: nosuch\ndevices:\n  - { name: a, bdf: "00:01.0" }\nsteps: []\n',
    ".yaml",
  );
  const r = await cli("scenario", "run", f, "--backend", backends[0].name);
  assert.equal(r.code, 0, r.err);
  const opt = await cli("scenario", "run", "tour", "--backend", "vtd", "--opt", "cm=maybe");
  if (backends.some((b) => b.name === "vtd")) {
    assert.equal(opt.code, 2);
    assert.match(opt.err, /^iommu-lab: builtin:tour: backend options \(--opt\): .*"cm" cannot be/);
  }
  const bad = await cli("scenario", "run", "tour", "--backend", "nosuch");
  assert.equal(bad.code, 2);
  assert.match(bad.err, /^iommu-lab: unknown backend "nosuch"; built-in backends: /);
});

Deno.test("JSON scenario files are accepted", async () => {
  const f = await tmpFile(
    JSON.stringify({
      name: "j",
      devices: [{ name: "a", bdf: "00:01.0" }],
      steps: [{ alloc: { name: "b", size: 4096 } }],
    }),
    ".json",
  );
  const r = await cli("scenario", "run", f, "--backend", backends[0].name);
  assert.equal(r.code, 0, r.err + r.out);
});

Deno.test("scenario run loads a backend plugin by path", async () => {
  const r = await cli("scenario", "run", "tour", "--backend", "./examples/flat-iommu/mod.ts");
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /scenario tour on flat-iommu/);
  const bad = await cli("scenario", "run", "tour", "--backend", "./no/such/plugin.ts");
  assert.equal(bad.code, 2);
  assert.match(
    bad.err,
    /^iommu-lab: backend "\.\/no\/such\/plugin\.ts": .*cannot load plugin module/,
  );
});

const UNMANAGED = `name: unmanaged
requires: [pasid]
devices:
  - { name: nic0, bdf: "00:03.0", pasid_bits: 8 }
steps:
  - alloc: { name: buf, size: 4096, fill: 0x21 }
  - domain_alloc: { name: u, device: nic0 }
  - iommu_map: { domain: u, iova: 0x2000000, phys: $buf, size: 4096, prot: r }
  - attach: { device: nic0, domain: u }
  - read: { device: nic0, addr: 0x2000000, length: 2, expect: { data: "21 21" } }
  - write: { device: nic0, addr: 0x2000000, data: "00", expect: { fault: true } }
  - detach: { device: nic0, domain: u }
  - read: { device: nic0, addr: 0x2000000, length: 2, expect: { fault: true } }
  - replace: { device: nic0, domain: u }
  - read: { device: nic0, addr: 0x2000000, length: 2, expect: { data: "21 21" } }
  - pasid_attach: { device: nic0, domain: u, pasid: 5 }
  - read: { device: nic0, addr: 0x2000000, length: 2, pasid: 5, expect: { data: "21 21" } }
  - iommu_unmap: { domain: u, iova: 0x2000000, size: 4096 }
  - read: { device: nic0, addr: 0x2000000, length: 2, pasid: 5, expect: { fault: true } }
  - expect: { counters: { hw.translations: ">=5", category.faults: ">=2" } }
`;

for (const b of backends) {
  Deno.test(`unmanaged domain steps (alloc, iommu_map, attach, detach, replace, pasid_attach) on ${b.name}`, () => {
    const r = runScenario(parseScenario(UNMANAGED, "unmanaged.yaml"), { plugin: b.plugin! });
    if (r.skipped) return assert.equal(b.name, "flat-iommu");
    const bad = r.steps.find((s) => s.status !== "ok");
    assert.equal(bad, undefined, bad && `step #${bad.index} ${bad.kind}: ${bad.text}`);
  });
}

Deno.test("strict-vs-lazy: the trace shows the exposure window (a device read between the queued unmap and the flush)", () => {
  const vtd = backends.find((b) => b.name === "vtd");
  if (!vtd) return;
  const sc = BUILTIN_SCENARIOS.find((s) => s.name === "strict-vs-lazy")!;
  const r = runScenario(parseScenario(sc.yaml, "x"), { plugin: vtd.plugin!, trace: true });
  const ev = r.trace!.split("\n").map((l) => JSON.parse(l));
  const lastQueue = ev.findLastIndex((e) => e.name === "dma:fq_queue");
  const flush = ev.findIndex((e) => e.name === "dma:fq_flush");
  assert.ok(lastQueue >= 0 && flush > lastQueue);
  const reads = ev.slice(lastQueue, flush).filter((e) => e.name === "dma_read");
  assert.equal(reads.length, 1, "one successful read of the unmapped page inside the window");
  assert.equal(ev[flush].t - ev[lastQueue].t >= 0, true);
  assert.equal(ev[flush].t, 10_000_000, "the 10 ms timer flushes");
});

Deno.test("a failed expectation with --json still exits 1, and the JSON names the failing step", async () => {
  const f = await tmpFile(WRONG, ".yaml");
  const t = await Deno.makeTempFile({ suffix: ".jsonl" });
  const r = await cli("scenario", "run", f, "--backend", backends[0].name, "--json", "--trace", t);
  assert.equal(r.code, 1, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.ok, false);
  const bad = j.steps.find((s: { status: string }) => s.status === "FAIL");
  assert.equal(bad.index, 3);
  assert.equal(bad.line, 7);
  assert.match(bad.text, /expected \[22 22 22 22\], read \[11 11 11 11\]/);
  assert.ok((await Deno.readTextFile(t)).trim().length > 0, "the trace is written on failure too");
});

Deno.test("scenario run refuses a plugin written for another core API version with one line, exit 2", async () => {
  const { CORE_API_VERSION } = await import("@iommu-lab/core");
  const f = await tmpFile(
    `export default { name: "old", description: "d", apiVersion: ${CORE_API_VERSION + 1},
      options: [], createHardware() { throw new Error(); }, create() { throw new Error(); } };\n`,
    ".ts",
  );
  const r = await cli("scenario", "run", "tour", "--backend", f);
  assert.equal(r.code, 2, r.out + r.err);
  assert.equal(r.err.trim().split("\n").length, 1, r.err);
  assert.match(
    r.err,
    new RegExp(
      `^iommu-lab: backend ".*": .*written for core API v${
        CORE_API_VERSION + 1
      }; this core implements v${CORE_API_VERSION}`,
    ),
  );
  assert.equal(r.out, "", "nothing ran");
});
