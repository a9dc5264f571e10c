/**
 * @module
 * Backend plugins: a registry of built-in backends by name, a loader for
 * third-party ones (by filesystem path, `file:` URL or package specifier),
 * validation of what a module exports, and resolution of user option values
 * (CLI strings or typed scenario values) against a plugin's option schema.
 */

import { IommuError } from "./errors.ts";
import {
  type BackendOptions,
  type BackendOptionSpec,
  type BackendPlugin,
  CORE_API_VERSION,
} from "./plugin-api.ts";

const OPTION_TYPES = ["boolean", "number", "string"] as const;

function describe(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return "an array";
  return typeof x === "object" ? "an object" : `a ${typeof x}`;
}

function validateOptionSpec(where: string, i: number, o: unknown): string[] {
  const errs: string[] = [];
  const at = `${where}: options[${i}]`;
  if (o === null || typeof o !== "object") return [`${at} is ${describe(o)}, not an option spec`];
  const s = o as Partial<BackendOptionSpec>;
  if (typeof s.name !== "string" || s.name === "") {
    errs.push(`${at}.name must be a non-empty string`);
  }
  const label = typeof s.name === "string" ? `${where}: option "${s.name}"` : at;
  if (!OPTION_TYPES.includes(s.type as never)) {
    errs.push(
      `${label}: type must be one of ${OPTION_TYPES.join(", ")} (got ${JSON.stringify(s.type)})`,
    );
  } else if (describe(s.default) !== `a ${s.type}`) {
    errs.push(`${label}: default must be a ${s.type} (got ${describe(s.default)})`);
  }
  if (typeof s.description !== "string") errs.push(`${label}: description must be a string`);
  if (s.values !== undefined && !Array.isArray(s.values)) {
    errs.push(`${label}: values must be an array`);
  }
  if (s.min !== undefined && typeof s.min !== "number") errs.push(`${label}: min must be a number`);
  if (s.max !== undefined && typeof s.max !== "number") errs.push(`${label}: max must be a number`);
  return errs;
}

/**
 * Check that `x` is a {@link BackendPlugin} written for this core's API
 * version. Throws EINVAL naming every missing or ill-typed member, or
 * EINVAL saying which API version the plugin was written for.
 */
export function validatePlugin(x: unknown, where = "plugin"): BackendPlugin {
  const op = "validate_plugin";
  if (x === null || typeof x !== "object") {
    throw new IommuError(
      "EINVAL",
      op,
      `${where} is ${
        describe(x)
      }; a backend plugin is an object with name, description, apiVersion, options, createHardware and create`,
    );
  }
  const p = x as Record<string, unknown>;
  const errs: string[] = [];
  if (typeof p.name !== "string" || p.name === "") {
    errs.push(`name must be a non-empty string (got ${describe(p.name)})`);
  }
  if (typeof p.description !== "string") {
    errs.push(`description must be a string (got ${describe(p.description)})`);
  }
  if (typeof p.apiVersion !== "number") {
    errs.push(`apiVersion must be a number (got ${describe(p.apiVersion)})`);
  }
  if (!Array.isArray(p.options)) errs.push(`options must be an array (got ${describe(p.options)})`);
  if (typeof p.createHardware !== "function") {
    errs.push(`createHardware must be a function (got ${describe(p.createHardware)})`);
  }
  if (typeof p.create !== "function") {
    errs.push(`create must be a function (got ${describe(p.create)})`);
  }
  const name = typeof p.name === "string" && p.name ? `plugin "${p.name}"` : where;
  if (errs.length > 0) {
    throw new IommuError("EINVAL", op, `${name} is not a backend plugin: ${errs.join("; ")}`, {
      problems: errs,
    });
  }
  if (p.apiVersion !== CORE_API_VERSION) {
    throw new IommuError(
      "EINVAL",
      op,
      `${name} was written for core API v${p.apiVersion}; this core implements v${CORE_API_VERSION}`,
    );
  }
  const optErrs: string[] = [];
  const seen = new Set<string>();
  (p.options as unknown[]).forEach((o, i) => {
    optErrs.push(...validateOptionSpec(name, i, o));
    const n = (o as { name?: unknown } | null)?.name;
    if (typeof n === "string") {
      if (seen.has(n)) optErrs.push(`${name}: option "${n}" is declared twice`);
      seen.add(n);
    }
  });
  if (optErrs.length > 0) {
    throw new IommuError("EINVAL", op, optErrs.join("; "), { problems: optErrs });
  }
  return x as BackendPlugin;
}

/** Backends by name. */
export class PluginRegistry {
  readonly #plugins = new Map<string, BackendPlugin>();

  /** Register a (validated) plugin; EEXIST if another plugin has its name. */
  register(plugin: BackendPlugin): void {
    const p = validatePlugin(plugin);
    const old = this.#plugins.get(p.name);
    if (old && old !== p) {
      throw new IommuError(
        "EEXIST",
        "plugin_register",
        `a backend named "${p.name}" is already registered`,
      );
    }
    this.#plugins.set(p.name, p);
  }

  /** The plugin called `name`; ENOENT listing the known names otherwise. */
  get(name: string): BackendPlugin {
    const p = this.#plugins.get(name);
    if (!p) {
      const known = this.list().map((q) => q.name);
      throw new IommuError(
        "ENOENT",
        "plugin_get",
        `no backend named "${name}"; known backends: ${known.length ? known.join(", ") : "(none)"}`,
      );
    }
    return p;
  }

  /** True if a plugin called `name` is registered. */
  has(name: string): boolean {
    return this.#plugins.has(name);
  }

  /** Registered plugins in name order. */
  list(): BackendPlugin[] {
    return [...this.#plugins.values()].sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0
    );
  }
}

/** Turn a user specifier into something `import()` accepts: paths become file URLs. */
export function pluginModuleUrl(specifier: string, cwd?: string): string {
  if (/^(file|https?|npm|jsr|data):/.test(specifier)) return specifier;
  if (
    specifier.startsWith("./") || specifier.startsWith("../") || specifier.startsWith("/") ||
    specifier === "." || /\.(m?[jt]sx?)$/.test(specifier)
  ) {
    const base = cwd ?? Deno.cwd();
    const dir = base.endsWith("/") ? base : base + "/";
    return new URL(specifier, new URL("file://" + encodeURI(dir).replace(/#/g, "%23"))).href;
  }
  return specifier; // a package specifier (mapped by the import map)
}

/**
 * Load a plugin module by filesystem path (relative to the current
 * directory), `file:` URL or package specifier, and validate its default
 * export. ENOENT when the module cannot be loaded; EINVAL when it does not
 * export a valid plugin.
 */
export async function loadPlugin(specifier: string): Promise<BackendPlugin> {
  const op = "load_plugin";
  if (typeof specifier !== "string" || specifier.trim() === "") {
    throw new IommuError(
      "EINVAL",
      op,
      `a plugin specifier must be a non-empty path, URL or package name`,
    );
  }
  const url = pluginModuleUrl(specifier.trim());
  let mod: Record<string, unknown>;
  try {
    mod = await import(url);
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    throw new IommuError("ENOENT", op, `cannot load plugin module "${specifier}": ${msg}`);
  }
  if (!("default" in mod)) {
    throw new IommuError(
      "EINVAL",
      op,
      `module "${specifier}" has no default export; a backend module's default export is its BackendPlugin`,
    );
  }
  return validatePlugin(mod.default, `default export of "${specifier}"`);
}

function allowed(spec: BackendOptionSpec): string {
  if (spec.values && spec.values.length) return `one of ${spec.values.join(", ")}`;
  if (spec.type === "boolean") return "true or false";
  if (spec.type === "number") {
    if (spec.min !== undefined && spec.max !== undefined) {
      return `a number in ${spec.min}..${spec.max}`;
    }
    if (spec.min !== undefined) return `a number >= ${spec.min}`;
    if (spec.max !== undefined) return `a number <= ${spec.max}`;
    return "a number";
  }
  return "a string";
}

function coerce(plugin: string, spec: BackendOptionSpec, raw: unknown): boolean | number | string {
  const op = "backend_options";
  const bad = (why: string) =>
    new IommuError(
      "EINVAL",
      op,
      `${plugin}: option "${spec.name}" ${why}; allowed: ${allowed(spec)}`,
      { option: spec.name, value: raw },
    );
  let v: boolean | number | string;
  if (spec.type === "boolean") {
    if (typeof raw === "boolean") v = raw;
    else if (typeof raw === "string" && /^(true|1|yes|on)$/i.test(raw.trim())) v = true;
    else if (typeof raw === "string" && /^(false|0|no|off)$/i.test(raw.trim())) v = false;
    else throw bad(`cannot be ${JSON.stringify(raw)}`);
  } else if (spec.type === "number") {
    if (typeof raw === "number") v = raw;
    else if (
      typeof raw === "string" && /^\s*-?(0x[0-9a-f]+|\d+(\.\d+)?(e[+-]?\d+)?)\s*$/i.test(raw)
    ) {
      const t = raw.trim();
      v = /^-?0x/i.test(t)
        ? (t.startsWith("-") ? -parseInt(t.slice(1), 16) : parseInt(t, 16))
        : Number(t);
    } else throw bad(`is ${JSON.stringify(raw)}, not a number`);
    if (!Number.isFinite(v)) throw bad(`is ${raw}, not a finite number`);
    if (spec.min !== undefined && v < spec.min) throw bad(`is ${v}, below the minimum ${spec.min}`);
    if (spec.max !== undefined && v > spec.max) throw bad(`is ${v}, above the maximum ${spec.max}`);
  } else {
    if (typeof raw === "string") v = raw;
    else if (typeof raw === "number" || typeof raw === "boolean") v = String(raw);
    else throw bad(`is ${describe(raw)}, not a string`);
  }
  if (spec.values && spec.values.length && !spec.values.includes(v as never)) {
    throw bad(`is ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * Resolve user option values against `plugin.options`: `given` is either a
 * list of `name=value` strings (the CLI's repeated `--opt`) or an object of
 * names to values (strings, numbers or booleans, as a scenario file has
 * them). Unknown names, ill-typed values, numbers outside min..max and
 * values not in the allowed list are EINVAL; missing options get their
 * defaults. Validates everything before returning.
 */
export function resolveOptions(
  plugin: BackendPlugin,
  given: readonly string[] | Record<string, unknown> = {},
): BackendOptions {
  const op = "backend_options";
  const specs = new Map(plugin.options.map((o) => [o.name, o]));
  const known = () => specs.size ? [...specs.keys()].join(", ") : "(this backend has no options)";
  const pairs: [string, unknown][] = [];
  if (Array.isArray(given)) {
    for (const item of given) {
      if (typeof item !== "string") {
        throw new IommuError(
          "EINVAL",
          op,
          `${plugin.name}: option ${JSON.stringify(item)} is not a "name=value" string`,
        );
      }
      const eq = item.indexOf("=");
      if (eq <= 0) {
        throw new IommuError(
          "EINVAL",
          op,
          `${plugin.name}: option "${item}" is not of the form name=value`,
        );
      }
      pairs.push([item.slice(0, eq).trim(), item.slice(eq + 1)]);
    }
  } else if (given !== null && typeof given === "object") {
    pairs.push(...Object.entries(given));
  } else {
    throw new IommuError(
      "EINVAL",
      op,
      `${plugin.name}: options must be name=value strings or an object`,
    );
  }
  const values = new Map<string, boolean | number | string>();
  for (const [name, raw] of pairs) {
    const spec = specs.get(name);
    if (!spec) {
      throw new IommuError(
        "EINVAL",
        op,
        `${plugin.name}: unknown option "${name}"; known options: ${known()}`,
        {
          option: name,
        },
      );
    }
    if (values.has(name)) {
      throw new IommuError("EINVAL", op, `${plugin.name}: option "${name}" is given twice`);
    }
    values.set(name, coerce(plugin.name, spec, raw));
  }
  const out: BackendOptions = {};
  for (const spec of plugin.options) out[spec.name] = values.get(spec.name) ?? spec.default;
  return out;
}
