/**
 * @module
 * `backends`: the built-in backends with their options.
 */

import { builtinBackends } from "../backends.ts";
import type { Colors } from "../app.ts";

/** Text (or JSON) listing every built-in backend and its options. */
export async function backendsText(json: boolean, c: Colors): Promise<string> {
  const all = await builtinBackends();
  if (json) {
    return JSON.stringify(
      all.map((b) => ({
        name: b.name,
        package: b.pkg,
        available: !!b.plugin,
        description: b.plugin?.description ?? b.error,
        options: b.plugin?.options ?? [],
      })),
      null,
      2,
    ) + "\n";
  }
  const lines: string[] = [];
  for (const b of all) {
    if (!b.plugin) {
      lines.push(
        `${c.bold(b.name)} ${c.dim(`(${b.pkg})`)}: ${c.yellow(b.error ?? "not available")}`,
      );
      continue;
    }
    lines.push(`${c.bold(b.plugin.name)} ${c.dim(`(${b.pkg})`)}: ${b.plugin.description}`);
    for (const o of b.plugin.options) {
      const range = o.values?.length
        ? ` {${o.values.join("|")}}`
        : o.min !== undefined || o.max !== undefined
        ? ` [${o.min ?? ""}..${o.max ?? ""}]`
        : "";
      lines.push(
        `  --opt ${o.name}=<${o.type}>${range}  ${o.description} ${
          c.dim(`(default ${o.default})`)
        }`,
      );
    }
  }
  lines.push("", "Use a plugin of your own with --backend ./path/to/plugin.ts");
  return lines.join("\n") + "\n";
}
