/**
 * @module
 * `demo`: run a built-in scenario (the tour) on every built-in backend and
 * print a side-by-side table of results, counters by cost category and
 * modeled time. A progress bar on a terminal, plain lines otherwise.
 */

import cliProgress from "cli-progress";
import { builtinBackends } from "../backends.ts";
import { BUILTIN_SCENARIOS } from "../scenario/builtin.ts";
import { parseScenario, UserError } from "../scenario/schema.ts";
import { type RunReport, runScenario } from "../scenario/runner.ts";
import type { CliIo, Colors } from "../app.ts";

/** Rows of the demo table: label and how to get the cell from a report. */
const ROWS: [string, (r: RunReport) => string][] = [
  ["result", (r) => r.skipped ? "skipped" : r.ok ? "PASS" : "FAIL"],
  ["steps ok", (r) => `${r.steps.filter((s) => s.status === "ok").length}/${r.steps.length}`],
  ["translations", (r) => String(r.categories.translations ?? 0)],
  ["cache hits", (r) => String(r.categories.cacheHits ?? 0)],
  ["cache misses", (r) => String(r.categories.cacheMisses ?? 0)],
  ["walk reads", (r) => String(r.categories.walkReads ?? 0)],
  ["invalidations", (r) => String(r.categories.invalidations ?? 0)],
  ["commands", (r) => String(r.categories.commands ?? 0)],
  ["syncs", (r) => String(r.categories.syncs ?? 0)],
  ["faults", (r) => String(r.categories.faults ?? 0)],
  ["DMA-API syncs", (r) => String(r.counters["dma-api"]?.strictSyncs ?? 0)],
  ["device faults", (r) => String(r.counters.dma?.faults ?? 0)],
  ["modeled µs", (r) => (r.modeledNs / 1000).toFixed(3)],
];

/** The side-by-side table of several reports. */
export function demoTable(reports: RunReport[], c: Colors): string {
  const cols = reports.map((r) => r.backend);
  const cells = ROWS.map(([label, f]) => [label, ...reports.map(f)]);
  const widths = [
    Math.max(...ROWS.map((r) => r[0].length)),
    ...cols.map((n, i) => Math.max(n.length, ...cells.map((row) => row[i + 1].length))),
  ];
  const fmt = (row: string[]) =>
    row.map((s, i) => i === 0 ? s.padEnd(widths[0]) : s.padStart(widths[i])).join("  ");
  const lines = [c.bold(fmt(["", ...cols])), fmt(widths.map((w) => "-".repeat(w)))];
  for (const row of cells) {
    const line = fmt(row);
    lines.push(
      row[0] === "result"
        ? line.replace(/PASS/g, c.green("PASS")).replace(/FAIL/g, c.red("FAIL"))
        : line,
    );
  }
  return lines.join("\n") + "\n";
}

/** Run the demo; 0 when every available backend passed. */
export async function demo(scenario: string, io: CliIo, c: Colors): Promise<number> {
  const sc = BUILTIN_SCENARIOS.find((s) => s.name === scenario);
  if (!sc) {
    throw new UserError(
      `no built-in scenario "${scenario}"; built-ins: ${
        BUILTIN_SCENARIOS.map((s) => s.name).join(", ")
      }`,
    );
  }
  const loaded = parseScenario(sc.yaml, `builtin:${sc.name}`);
  const all = await builtinBackends();
  const usable = all.filter((b) => b.plugin);
  io.out(c.bold(`iommu-lab demo: scenario "${sc.name}" on ${usable.length} backend(s)\n`));
  for (const b of all) if (!b.plugin) io.out(c.yellow(`  ${b.name}: ${b.error}\n`));
  const bar = io.isTTY
    ? new cliProgress.SingleBar(
      {
        format: "  {bar} {value}/{total} {backend}",
        hideCursor: true,
        stream: barStream(io),
      },
      cliProgress.Presets.shades_classic,
    )
    : null;
  bar?.start(usable.length, 0, { backend: "" });
  const reports: RunReport[] = [];
  for (const b of usable) {
    if (!bar) io.out(`  running ${sc.name} on ${b.name}...\n`);
    let r: RunReport;
    try {
      r = runScenario(loaded, { plugin: b.plugin! });
    } catch (e) {
      // A backend that fails to set up still gets its column.
      r = {
        scenario: sc.name,
        file: loaded.file,
        backend: b.name,
        ok: false,
        steps: [{ index: 0, line: 0, kind: "setup", status: "FAIL", text: (e as Error).message }],
        counters: {},
        hwName: "",
        categories: {},
        modeledNs: 0,
        clockNs: 0,
        missedInvalidations: 0,
      };
    }
    reports.push(r);
    bar?.increment(1, { backend: b.name });
    if (!bar) io.out(`  ${b.name}: ${r.skipped ? "skipped" : r.ok ? "PASS" : "FAIL"}\n`);
  }
  bar?.stop();
  io.out("\n" + demoTable(reports, c));
  for (const r of reports) {
    const f = r.steps.find((s) => s.status === "FAIL");
    if (f) io.out(c.red(`${r.backend}: step #${f.index} (line ${f.line}) ${f.kind}: ${f.text}\n`));
  }
  io.out(c.dim("\nmodeled µs: counters × latencies of the cost model (cli/cost.ts)\n"));
  return reports.every((r) => r.ok) ? 0 : 1;
}

/** A terminal stream for the progress bar that writes through `io.err`. */
function barStream(io: CliIo): NodeJS.WritableStream {
  return {
    isTTY: true,
    columns: 80,
    write(chunk: string | Uint8Array): boolean {
      io.err(typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk));
      return true;
    },
  } as unknown as NodeJS.WritableStream;
}
