/**
 * @module
 * `inspect decode <structure> <hex words>`: look the structure up in the
 * backends' exported `VTD_STRUCTURES` / `SMMUV3_STRUCTURES`, the io-pgtable
 * PTE tables and any other exported FieldTable, and print every field.
 */

import { type FieldTable, parseWords } from "@iommu-lab/core";
import { UserError } from "../scenario/schema.ts";

function isTable(x: unknown): x is FieldTable {
  return !!x && typeof x === "object" && typeof (x as FieldTable).decode === "function" &&
    Array.isArray((x as FieldTable).fields) && typeof (x as FieldTable).bytes === "number";
}

const SOURCES: { label: string; load: () => Promise<Record<string, unknown>> }[] = [
  { label: "vtd", load: () => import("@iommu-lab/vtd") },
  { label: "smmuv3", load: () => import("@iommu-lab/smmuv3") },
  { label: "io-pgtable", load: () => import("@iommu-lab/core/io-pgtable") },
  { label: "flat-iommu", load: () => import("@iommu-lab/examples") },
];

/** Every known structure by upper-case name: `{ table, source }`. */
export async function structures(): Promise<Map<string, { table: FieldTable; source: string }>> {
  const out = new Map<string, { table: FieldTable; source: string }>();
  const add = (key: string, t: FieldTable, source: string) => {
    const k = key.toUpperCase();
    if (!out.has(k)) out.set(k, { table: t, source });
  };
  for (const s of SOURCES) {
    let mod: Record<string, unknown>;
    try {
      mod = await s.load();
    } catch {
      continue;
    }
    for (const [name, v] of Object.entries(mod)) {
      if (isTable(v)) add(v.name, v, s.label);
      else if (/_STRUCTURES$/.test(name) && v && typeof v === "object") {
        for (const [k, t] of Object.entries(v as Record<string, unknown>)) {
          if (isTable(t)) {
            add(k, t, s.label);
            add(t.name, t, s.label);
          }
        }
      }
    }
  }
  return out;
}

/** The command's output. */
export async function inspectDecode(
  structure: string | undefined,
  words: string[],
  words32: boolean,
  json: boolean,
): Promise<string> {
  const all = await structures();
  if (!structure) {
    const names = new Map<FieldTable, { source: string; names: string[] }>();
    for (const [key, v] of all) {
      let e = names.get(v.table);
      if (!e) names.set(v.table, e = { source: v.source, names: [] });
      if (key !== v.table.name.toUpperCase()) e.names.push(key.toLowerCase());
    }
    const rows = [...names.entries()].sort((a, b) =>
      a[1].source.localeCompare(b[1].source) || a[0].name.localeCompare(b[0].name)
    );
    return rows.map(([t, e]) =>
      `${e.source.padEnd(11)} ${t.name.padEnd(24)} ${String(t.bytes * 8).padStart(3)} bits${
        e.names.length ? `  (also: ${e.names.join(", ")})` : ""
      }`
    ).join("\n") + "\n";
  }
  const hit = all.get(structure.toUpperCase());
  if (!hit) {
    throw new UserError(
      `unknown structure "${structure}"; known: ${
        [...new Set([...all.values()].map((v) => v.table.name))].sort().join(", ")
      }`,
    );
  }
  if (words.length === 0) {
    throw new UserError(`give the ${hit.table.name} as hex words, low word first`);
  }
  let w: Uint32Array;
  try {
    w = parseWords(words, words32 ? 32 : 64);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  const need = hit.table.bytes / 4;
  if (w.length > need) {
    throw new UserError(
      `${hit.table.name} is ${hit.table.bytes * 8} bits (${need} 32-bit / ${
        need / 2
      } 64-bit words); got ${w.length} 32-bit words`,
    );
  }
  const full = new Uint32Array(need);
  full.set(w);
  if (json) {
    const d = hit.table.decode(full);
    const o: Record<string, string> = {};
    for (const [k, v] of Object.entries(d)) o[k] = "0x" + v.toString(16);
    return JSON.stringify({ structure: hit.table.name, source: hit.source, fields: o }, null, 2) +
      "\n";
  }
  return [
    `${hit.table.name} (${hit.source}, ${hit.table.bytes * 8} bits)`,
    ...hit.table.format(full, 0, true),
  ]
    .join("\n") + "\n";
}
