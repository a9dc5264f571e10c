/**
 * @module
 * The scenario file format (YAML or JSON) as a zod schema, and a parser that
 * reports every problem as one line naming the file, line and field.
 */

import { z } from "zod";
import { isMap, isPair, isScalar, LineCounter, parseDocument } from "yaml";

/** A user-facing error: printed as one line, exit code 2. */
export class UserError extends Error {
  /** One-line message (`file:line: field: what`). */
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}

const Int = z.number().int().nonnegative();
/** An address or size: a number, a hex string ("0x1000"), or a reference ("$buf+0x10"). */
const Addr = z.union([Int, z.string().min(1)]);
/** Bytes: a hex string ("de ad be ef") or an array of byte values. */
const Bytes = z.union([z.string(), z.array(z.number().int().min(0).max(255))]);
const Dir = z.enum(["bidirectional", "to_device", "from_device"]);

const DeviceSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z_][\w-]*$/, "a name of letters, digits, _ and -"),
  bdf: z.string().regex(
    /^(?:[0-9a-fA-F]{1,4}:)?[0-9a-fA-F]{1,2}:[0-9a-fA-F]{1,2}\.[0-7]$/,
    "a PCI address BB:DD.F or SSSS:BB:DD.F (hex)",
  ),
  pasid_bits: z.number().int().min(0).max(20).optional(),
  ats: z.boolean().optional(),
  pri: z.boolean().optional(),
  untrusted: z.boolean().optional(),
  dma_bits: z.number().int().min(12).max(64).optional(),
});

const Expect = z.strictObject({
  ok: z.boolean().optional(),
  fault: z.union([z.boolean(), z.string()]).optional(),
  data: Bytes.optional(),
});

const CounterExpect = z.union([z.number(), z.string().regex(/^(==|>=|<=|>|<|!=)?\s*\d+$/)]);

/** Every step kind with its fields. */
const StepSchemas = {
  alloc: z.strictObject({
    name: z.string(),
    size: Int,
    fill: z.number().int().min(0).max(255).optional(),
  }),
  map: z.strictObject({
    device: z.string(),
    buffer: z.string(),
    offset: Int.optional(),
    size: Int,
    dir: Dir.optional(),
    as: z.string(),
    expect: z.strictObject({ error: z.string().optional() }).optional(),
  }),
  unmap: z.strictObject({ device: z.string(), handle: z.string() }),
  alloc_coherent: z.strictObject({ device: z.string(), size: Int, as: z.string() }),
  free_coherent: z.strictObject({ device: z.string(), handle: z.string() }),
  read: z.strictObject({
    device: z.string(),
    addr: Addr,
    length: Int,
    pasid: Addr.optional(),
    expect: Expect.optional(),
  }),
  write: z.strictObject({
    device: z.string(),
    addr: Addr,
    data: Bytes,
    pasid: Addr.optional(),
    expect: Expect.optional(),
  }),
  cpu_write: z.strictObject({ addr: Addr, data: Bytes }),
  cpu_check: z.strictObject({ addr: Addr, data: Bytes }),
  domain_alloc: z.strictObject({ name: z.string(), device: z.string() }),
  iommu_map: z.strictObject({
    domain: z.string(),
    iova: Addr,
    phys: Addr,
    size: Int,
    prot: z.string().regex(/^r?w?$/, "r, w or rw").optional(),
  }),
  iommu_unmap: z.strictObject({ domain: z.string(), iova: Addr, size: Int }),
  attach: z.strictObject({ device: z.string(), domain: z.string() }),
  detach: z.strictObject({ device: z.string(), domain: z.string() }),
  replace: z.strictObject({ device: z.string(), domain: z.string() }),
  group_type: z.strictObject({
    device: z.string(),
    type: z.enum(["identity", "DMA", "DMA-FQ", "auto"]),
  }),
  pasid_enable: z.strictObject({ device: z.string(), as: z.string() }),
  pasid_attach: z.strictObject({ device: z.string(), domain: z.string(), pasid: Addr }),
  advance: z.strictObject({ ns: Int.optional(), us: Int.optional(), ms: Int.optional() }),
  flush_queue: z.strictObject({ device: z.string() }),
  checking: z.boolean(),
  inject: z.strictObject({ device: z.string(), skip_iotlb_sync: z.boolean() }),
  expect: z.strictObject({
    counters: z.record(z.string(), CounterExpect).optional(),
    missed_invalidations: CounterExpect.optional(),
  }),
  note: z.string(),
} as const;

/** Step kind names. */
export type StepKind = string;
/** Step kind names, in documentation order. */
export const STEP_KINDS: readonly StepKind[] = Object.keys(StepSchemas) as StepKind[];

const StepSchema = z.record(z.string(), z.unknown()).superRefine((o, ctx) => {
  const keys = Object.keys(o);
  if (keys.length !== 1) {
    ctx.addIssue({
      code: "custom",
      message: `a step has exactly one of: ${STEP_KINDS.join(", ")} (found ${
        keys.length ? keys.join(", ") : "none"
      })`,
    });
    return;
  }
  const k = keys[0];
  const schema = (StepSchemas as Record<string, z.ZodType>)[k];
  if (!schema) {
    ctx.addIssue({
      code: "custom",
      path: [k],
      message: `unknown step "${k}"; steps are: ${STEP_KINDS.join(", ")}`,
    });
    return;
  }
  const r = schema.safeParse(o[k]);
  if (!r.success) {
    for (const iss of r.error.issues) {
      ctx.addIssue({ ...iss, path: [k, ...iss.path] } as never);
    }
  }
});

/** The whole scenario file. */
const ScenarioSchema = z.strictObject({
  name: z.string().min(1),
  description: z.string().optional(),
  requires: z.array(z.enum(["pasid", "lazy"])).optional(),
  machine: z.strictObject({
    seed: Int.optional(),
    pa_bits: z.number().int().min(32).max(52).optional(),
  }).optional(),
  backend: z.union([
    z.string(),
    z.strictObject({
      name: z.string(),
      options: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
    }),
  ]).optional(),
  policy: z.strictObject({
    passthrough: z.boolean().optional(),
    strict: z.boolean().optional(),
  }).optional(),
  cost: z.record(z.string(), z.number().nonnegative()).optional(),
  devices: z.array(DeviceSchema).min(1),
  steps: z.array(StepSchema),
});

/** A device of a scenario. */
export interface ScenarioDevice {
  /** Name used by the steps. */
  name: string;
  /** PCI address. */
  bdf: string;
  /** PASID width (0 = no PASID). */
  pasid_bits?: number;
  /** ATS capability. */
  ats?: boolean;
  /** PRI capability. */
  pri?: boolean;
  /** Behind an external-facing port (swiotlb bouncing, no passthrough). */
  untrusted?: boolean;
  /** DMA mask width. */
  dma_bits?: number;
}

/** A parsed scenario (see the schema in this module). */
export interface Scenario {
  /** Scenario name. */
  name: string;
  /** What it shows. */
  description?: string;
  /** What the backend must support, or the run is skipped. */
  requires?: ("pasid" | "lazy")[];
  /** Machine settings. */
  machine?: { seed?: number; pa_bits?: number };
  /** Backend name, or name and options. */
  backend?: string | { name: string; options?: Record<string, string | number | boolean> };
  /** Kernel policy. */
  policy?: { passthrough?: boolean; strict?: boolean };
  /** Cost model overrides (category to ns). */
  cost?: Record<string, number>;
  /** Devices. */
  devices: ScenarioDevice[];
  /** Steps: one key each, the step kind. */
  steps: Record<string, unknown>[];
}
/** One step: `{ kind: fields }`. */
export type Step = Record<string, unknown>;

/** A parsed scenario with the source line of each step. */
export interface LoadedScenario {
  /** The scenario. */
  scenario: Scenario;
  /** Where it came from (file path or `builtin:NAME`). */
  file: string;
  /** 1-based source line of each step. */
  stepLines: number[];
  /**
   * `file:line:col` of the value at `path` (e.g. `["devices", 0, "bdf"]`),
   * or of its nearest enclosing node; absent for scenarios built in code.
   */
  locate?: (path: readonly (string | number)[]) => string;
}

type Path = readonly PropertyKey[];

/**
 * Parse and validate scenario text (YAML; JSON is YAML too). Throws a
 * {@link UserError} `file:line:col: field: message` for the first problem.
 */
export function parseScenario(text: string, file: string): LoadedScenario {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const pos = e.linePos?.[0] ?? lc.linePos(e.pos[0]);
    const msg = e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
    throw new UserError(`${file}:${pos.line}:${pos.col}: syntax error: ${msg}`);
  }
  const data = doc.toJS({ maxAliasCount: 100 });
  const where = (path: Path, key?: string): string => {
    let node: unknown = doc.getIn(path as unknown[], true);
    if (key !== undefined && isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === key);
      if (pair && isScalar(pair.key)) node = pair.key;
    }
    // Walk up until a node with a range is found.
    let p = [...path];
    while (!(node as { range?: number[] } | undefined)?.range && p.length > 0) {
      p = p.slice(0, -1);
      node = p.length ? doc.getIn(p as unknown[], true) : doc.contents;
    }
    const range = (node as { range?: number[] } | undefined)?.range;
    const pos = range ? lc.linePos(range[0]) : { line: 1, col: 1 };
    return `${file}:${pos.line}:${pos.col}`;
  };
  const r = ScenarioSchema.safeParse(data);
  if (!r.success) {
    const iss = r.error.issues[0];
    const path = iss.path as PropertyKey[];
    const field = path.length
      ? path.map((x) => typeof x === "number" ? `[${x}]` : `.${String(x)}`).join("").replace(
        /^\./,
        "",
      )
      : "(top level)";
    if (iss.code === "unrecognized_keys") {
      const key = (iss as { keys: string[] }).keys[0];
      const known = knownKeys(path);
      throw new UserError(
        `${where(path, key)}: ${field === "(top level)" ? "" : field + ": "}unknown field "${key}"${
          known ? `; allowed: ${known}` : ""
        }`,
      );
    }
    throw new UserError(`${where(path)}: ${field}: ${iss.message}`);
  }
  const stepLines = (r.data.steps as unknown[]).map((_, i) => {
    const n = doc.getIn(["steps", i], true) as { range?: number[] } | undefined;
    return n?.range ? lc.linePos(n.range[0]).line : 0;
  });
  return { scenario: r.data as Scenario, file, stepLines, locate: (path) => where(path) };
}

function knownKeys(path: readonly PropertyKey[]): string {
  let s: unknown = ScenarioSchema;
  if (path.length >= 3 && path[0] === "steps") {
    s = (StepSchemas as Record<string, unknown>)[String(path[2])];
    for (const k of path.slice(3)) s = shapeOf(s)?.[String(k)];
  } else {
    for (const k of path) {
      if (typeof k === "number") {
        let x = s as { element?: unknown; unwrap?: () => unknown } | undefined;
        for (let i = 0; i < 3 && x && !x.element && typeof x.unwrap === "function"; i++) {
          x = x.unwrap() as typeof x;
        }
        s = x?.element;
      } else s = shapeOf(s)?.[String(k)];
    }
  }
  const shape = shapeOf(s);
  return shape ? Object.keys(shape).join(", ") : "";
}

function shapeOf(s: unknown): Record<string, unknown> | undefined {
  let x = s as { shape?: Record<string, unknown>; unwrap?: () => unknown; options?: unknown[] };
  for (let i = 0; i < 4 && x; i++) {
    if (x.shape) return x.shape;
    if (x.options) {
      const o = x.options.find((y) => (y as { shape?: unknown }).shape);
      if (o) return (o as { shape: Record<string, unknown> }).shape;
      return undefined;
    }
    if (typeof x.unwrap === "function") x = x.unwrap() as typeof x;
    else if ((x as { element?: unknown }).element) x = (x as { element: typeof x }).element;
    else return undefined;
  }
  return undefined;
}
