/**
 * `deno task bench [--json] [--filter NAME]`: runs every `bench/*.bench.ts`
 * module (each registers mitata benches when imported) and prints mitata's
 * report, or JSON with `--json`.
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
for (const f of files) await import(new URL(f, dir).href);

await run({
  format: values.json ? "json" : "mitata",
  filter: values.filter ? new RegExp(values.filter, "i") : undefined,
  colors: !Deno.env.get("NO_COLOR"),
});
