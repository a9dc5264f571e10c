/**
 * `deno task bench [--json] [--filter NAME]`: runs every `bench/*.bench.ts`
 * module (each registers mitata benches when imported) and prints mitata's
 * report, or JSON with `--json`. Modules that export `report()` print
 * extra lines in their own form afterwards (not with `--json`; with
 * `--filter` only when the filter mentions "dma").
 */

import { run } from "mitata";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: { json: { type: "boolean", default: false }, filter: { type: "string" } },
  strict: true,
});

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

await run({
  format: values.json ? "json" : "mitata",
  filter: values.filter ? new RegExp(values.filter, "i") : undefined,
  colors: !Deno.env.get("NO_COLOR"),
});

if (!values.json && (!values.filter || /dma/i.test(values.filter))) {
  for (const r of reports) r((s) => console.log(s));
}
