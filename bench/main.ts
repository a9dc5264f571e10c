/**
 * `deno task bench [--json] [--filter NAME]`: runs every `bench/*.bench.ts`
 * module (each registers mitata benches when imported) and prints mitata's
 * report, or JSON with `--json`. Modules that export `report()` print
 * extra lines in their own form afterwards (not with `--json`; with
 * `--filter` only when the filter mentions "dma"). A bad argument is one
 * line on stderr and exit code 2, as is a filter that selects nothing to
 * run. `--json` leaves out the raw samples.
 */

import { run } from "mitata";
import { parseArgs } from "node:util";

/** A bad argument: one line on stderr, exit code 2 (as the CLI does). */
function usageError(msg: string): never {
  console.error(`bench: ${msg}; usage: deno task bench [--json] [--filter REGEX]`);
  Deno.exit(2);
}

let values: { json: boolean; filter?: string };
try {
  values = parseArgs({
    args: Deno.args,
    options: { json: { type: "boolean", default: false }, filter: { type: "string" } },
    strict: true,
    allowPositionals: false,
  }).values;
} catch (e) {
  usageError((e as Error).message.split("\n")[0]);
}
let filter: RegExp | undefined;
if (values.filter !== undefined) {
  try {
    filter = new RegExp(values.filter, "i");
  } catch (e) {
    usageError(`--filter "${values.filter}": ${(e as Error).message}`);
  }
}

const dir = new URL(".", import.meta.url);
const files: string[] = [];
for await (const e of Deno.readDir(dir)) {
  if (e.isFile && e.name.endsWith(".bench.ts")) files.push(e.name);
}
files.sort();
const reports: ((out: (s: string) => void) => void)[] = [];
for (const f of files) {
  const mod = await import(new URL(f, dir).href);
  // A module may export report(): extra output in its own form (e.g. the
  // kernel dma_map_benchmark tool's lines), printed after mitata's.
  if (typeof mod.report === "function") reports.push(mod.report);
}

const result = await run({
  // JSON keeps the statistics, not every sample (megabytes per bench).
  format: values.json ? { json: { debug: false, samples: false } } : "mitata",
  filter,
  colors: !Deno.env.get("NO_COLOR") && Deno.stdout.isTerminal(),
});
// The kernel-tool report (e.g. dma_map_benchmark's lines) runs its own
// measurements: printed without a filter or when the filter mentions "dma".
const withReports = !values.json && (!values.filter || /dma/i.test(values.filter));
// In JSON mode an empty result is still a valid answer (the layout is listed).
if (!values.json && !withReports && filter !== undefined && result.benchmarks.length === 0) {
  usageError(`--filter "${values.filter}" matches no benchmark`);
}

if (withReports) {
  for (const r of reports) r((s) => console.log(s));
}
