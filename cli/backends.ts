/**
 * @module
 * The built-in backends (VT-d, SMMUv3 and the example flat IOMMU) and the
 * lookup of a backend by name or by plugin path. A built-in whose package
 * has no plugin yet is listed as "not available" rather than failing.
 */

import { type BackendPlugin, loadPlugin, validatePlugin } from "@iommu-lab/core";
import { UserError } from "./scenario/schema.ts";

/** A built-in backend entry. */
export interface BuiltinBackend {
  /** Registry name (the plugin's name when loaded, else the expected one). */
  name: string;
  /** The package it comes from. */
  pkg: string;
  /** The plugin, or null when not available. */
  plugin: BackendPlugin | null;
  /** Why it is not available. */
  error?: string;
}

const BUILTINS: { name: string; pkg: string; load: () => Promise<Record<string, unknown>> }[] = [
  { name: "vtd", pkg: "@iommu-lab/vtd", load: () => import("@iommu-lab/vtd") },
  { name: "smmuv3", pkg: "@iommu-lab/smmuv3", load: () => import("@iommu-lab/smmuv3") },
  { name: "flat-iommu", pkg: "@iommu-lab/examples", load: () => import("@iommu-lab/examples") },
];

let cache: Promise<BuiltinBackend[]> | null = null;

/** Every built-in backend, loaded once (unavailable ones carry an error). */
export function builtinBackends(): Promise<BuiltinBackend[]> {
  cache ??= Promise.all(BUILTINS.map(async (b): Promise<BuiltinBackend> => {
    try {
      const mod = await b.load();
      if (!("default" in mod) || !mod.default) {
        return { name: b.name, pkg: b.pkg, plugin: null, error: "backend not available yet" };
      }
      const plugin = validatePlugin(mod.default, `default export of ${b.pkg}`);
      return { name: plugin.name, pkg: b.pkg, plugin };
    } catch (e) {
      return {
        name: b.name,
        pkg: b.pkg,
        plugin: null,
        error: `backend not available: ${(e as Error).message.split("\n")[0]}`,
      };
    }
  }));
  return cache;
}

/** The available built-in plugins. */
export async function availableBackends(): Promise<BackendPlugin[]> {
  return (await builtinBackends()).flatMap((b) => b.plugin ? [b.plugin] : []);
}

/**
 * A backend by built-in name, or by plugin path / URL / package (anything
 * containing "/" or ending in .ts/.js). Unknown names are a {@link UserError}
 * listing the known ones.
 */
export async function findBackend(spec: string): Promise<BackendPlugin> {
  const all = await builtinBackends();
  const b = all.find((x) => x.name === spec);
  if (b) {
    if (!b.plugin) throw new UserError(`backend "${spec}": ${b.error}`);
    return b.plugin;
  }
  if (/[/\\]|\.[mc]?[jt]s$|^(file|https?|npm|jsr):/.test(spec)) {
    try {
      return await loadPlugin(spec);
    } catch (e) {
      throw new UserError(`backend "${spec}": ${(e as Error).message}`);
    }
  }
  throw new UserError(
    `unknown backend "${spec}"; built-in backends: ${
      all.map((x) => x.name + (x.plugin ? "" : " (not available)")).join(", ")
    }; or give a plugin path`,
  );
}
