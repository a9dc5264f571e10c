/**
 * @module
 * The scenario runner: builds the machine, devices, backend and iommu core
 * a scenario describes, runs its steps through the DMA API, the iommu core
 * and the devices' DMA masters, checks expectations, and reports each step,
 * the counters and the modeled time.
 */

import {
  type BackendPlugin,
  type Counters,
  DIRECT_TRANSLATOR,
  IOMMU_READ,
  IOMMU_WRITE,
  IommuCore,
  type IommuDomain,
  IommuError,
  type IommuHardware,
  Machine,
  parseBdf,
  type PciDevice,
  resolveOptions,
} from "@iommu-lab/core";
import { type DmaApi, dmaDevice, type DmaDirection, parseDirection } from "@iommu-lab/dma-api";
import { categorize, costModel, modeledNs } from "../cost.ts";
import { type LoadedScenario, type Step, UserError } from "./schema.ts";

/** Outcome of one step. */
export interface StepReport {
  /** 1-based step number. */
  index: number;
  /** Source line. */
  line: number;
  /** Step kind. */
  kind: string;
  /** "ok", "FAIL" or "skipped". */
  status: "ok" | "FAIL" | "skipped";
  /** What happened. */
  text: string;
}

/** Outcome of a run. */
export interface RunReport {
  /** Scenario name. */
  scenario: string;
  /** Source file. */
  file: string;
  /** Backend name. */
  backend: string;
  /** All steps passed (or the run was skipped). */
  ok: boolean;
  /** Set when the backend lacks what the scenario needs. */
  skipped?: string;
  /** Step reports. */
  steps: StepReport[];
  /** Counter sets after setup was done (setup is not counted). */
  counters: Record<string, Counters>;
  /** Name of the hardware's counter set. */
  hwName: string;
  /** Hardware counters by cost category. */
  categories: Record<string, number>;
  /** Modeled time of the steps (ns) from the cost model. */
  modeledNs: number;
  /** Virtual time advanced by the steps (ns). */
  clockNs: number;
  /** Missed invalidations reported by checking mode. */
  missedInvalidations: number;
  /** Trace events as JSON lines when tracing was asked for. */
  trace?: string;
}

/** Run options. */
export interface RunOptions {
  /** The backend plugin to use. */
  plugin: BackendPlugin;
  /** Backend options (override the scenario's when the backend is the scenario's). */
  options?: Record<string, unknown>;
  /** Backend options as `name=value` strings (the CLI's --opt), applied last. */
  cliOptions?: string[];
  /** PRNG seed (overrides the scenario's). */
  seed?: number;
  /** Record trace events. */
  trace?: boolean;
}

interface Handle {
  dev: PciDevice;
  dma: number;
  size: number;
  dir: DmaDirection;
  coherent?: { cpuAddr: number; dmaAddr: number; size: number };
}

class StepFail extends Error {}

/** Parse bytes: "de ad be ef", "deadbeef", "11*16" (16 bytes of 0x11), or an array. */
export function parseBytes(v: string | number[], what: string): Uint8Array {
  if (Array.isArray(v)) return Uint8Array.from(v);
  const out: number[] = [];
  for (const tok of v.trim().split(/[\s,]+/).filter(Boolean)) {
    const m = /^(?:0x)?([0-9a-fA-F]{2})\*(\d+)$/.exec(tok);
    if (m) {
      const n = Number(m[2]);
      if (n > 1 << 20) throw new StepFail(`${what}: repeat count ${n} is too large`);
      for (let i = 0; i < n; i++) out.push(parseInt(m[1], 16));
      continue;
    }
    const h = tok.replace(/^0x/i, "");
    if (!/^([0-9a-fA-F]{2})+$/.test(h)) {
      throw new StepFail(`${what}: "${tok}" is not hex bytes (use "de ad be ef" or "11*16")`);
    }
    for (let i = 0; i < h.length; i += 2) out.push(parseInt(h.slice(i, i + 2), 16));
  }
  return Uint8Array.from(out);
}

function hexBytes(b: Uint8Array, max = 16): string {
  const s = [...b.slice(0, max)].map((x) => x.toString(16).padStart(2, "0")).join(" ");
  return b.length > max ? `${s} … (${b.length} bytes)` : s;
}

const hex = (n: number) => "0x" + n.toString(16);

/** Run a loaded scenario on `opts.plugin`. Never throws for scenario problems: they are step failures. */
export function runScenario(loaded: LoadedScenario, opts: RunOptions): RunReport {
  const sc = loaded.scenario;
  const file = loaded.file;
  const machine = new Machine({
    seed: opts.seed ?? sc.machine?.seed ?? 1,
    paBits: sc.machine?.pa_bits,
  });
  if (opts.trace) machine.trace.enabled = true;
  // Devices.
  const devs = new Map<string, PciDevice>();
  sc.devices.forEach((d, i) => {
    try {
      const bdf = parseBdf(d.bdf);
      devs.set(
        d.name,
        machine.pci.add({
          name: d.name,
          ...bdf,
          pasidBits: d.pasid_bits,
          ats: d.ats,
          pri: d.pri,
          untrusted: d.untrusted,
          dmaBits: d.dma_bits,
        }),
      );
    } catch (e) {
      const at = loaded.locate?.(["devices", i, "bdf"]) ?? file;
      throw new UserError(`${at}: devices[${i}] (${d.name}): ${(e as Error).message}`);
    }
  });
  // Backend, core, default domains.
  const plugin = opts.plugin;
  const scenarioBackend = typeof sc.backend === "string" ? { name: sc.backend } : sc.backend;
  let bopts;
  try {
    const fromScenario = scenarioBackend?.name === plugin.name
      ? scenarioBackend?.options ?? {}
      : {};
    const merged: Record<string, unknown> = { ...fromScenario, ...(opts.options ?? {}) };
    for (const kv of opts.cliOptions ?? []) {
      const eq = kv.indexOf("=");
      if (eq <= 0) throw new UserError(`--opt "${kv}" is not of the form name=value`);
      merged[kv.slice(0, eq).trim()] = kv.slice(eq + 1);
    }
    bopts = resolveOptions(plugin, merged);
  } catch (e) {
    if (e instanceof UserError) throw e;
    // Options from the command line win; otherwise the file's backend.options is at fault.
    const fromFile = !(opts.cliOptions?.length) && !opts.options &&
      typeof sc.backend === "object" && sc.backend?.options !== undefined &&
      scenarioBackend?.name === plugin.name;
    const msg = (e as Error).message;
    if (fromFile && loaded.locate) {
      throw new UserError(`${loaded.locate(["backend", "options"])}: backend.options: ${msg}`);
    }
    throw new UserError(
      `${file}: backend options${opts.cliOptions?.length ? " (--opt)" : ""}: ${msg}`,
    );
  }
  const { hw, driver } = plugin.create(machine, bopts);
  for (const d of devs.values()) {
    if (machine.pci.translatorOf(d) === DIRECT_TRANSLATOR) machine.pci.setTranslator(d, hw);
  }
  const core = new IommuCore(machine, {
    passthrough: sc.policy?.passthrough ?? false,
    strict: sc.policy?.strict ?? true,
  });
  core.registerDriver(driver);
  let cost;
  try {
    cost = costModel(sc.cost ?? {});
  } catch (e) {
    throw new UserError(`${file}: cost: ${(e as Error).message}`);
  }

  const base: RunReport = {
    scenario: sc.name,
    file,
    backend: plugin.name,
    ok: true,
    steps: [],
    counters: {},
    hwName: hw.name,
    categories: {},
    modeledNs: 0,
    clockNs: 0,
    missedInvalidations: 0,
  };
  // Requirements.
  const req = sc.requires ?? [];
  for (const r of req) {
    for (const d of devs.values()) {
      if (r === "pasid" && d.pasidBits > 0 && driver.maxPasids(d) === 0) {
        return { ...base, skipped: `${plugin.name} has no PASID support` };
      }
      if (r === "lazy" && !driver.capable(d, "DEFERRED_FLUSH")) {
        return { ...base, skipped: `${plugin.name} cannot defer flushes (no lazy mode)` };
      }
    }
  }

  let missed = 0;
  machine.trace.listen((e) => {
    if (
      /stale|missed/i.test(e.name) || /missed invalidation/i.test(String(e.fields.reason ?? ""))
    ) {
      missed++;
    }
  });
  machine.trace.reset();
  const t0 = machine.clock.now();

  const dmas = new Map<PciDevice, DmaApi>();
  const dmaOf = (d: PciDevice) => {
    let x = dmas.get(d);
    if (!x) dmas.set(d, x = dmaDevice(core, d));
    return x;
  };
  const buffers = new Map<string, number>();
  const handles = new Map<string, Handle>();
  const pasids = new Map<string, number>();
  const retired = new Map<string, number>(); // DMA addresses of unmapped handles
  const domains = new Map<string, IommuDomain>();

  const dev = (name: unknown): PciDevice => {
    const d = devs.get(String(name));
    if (!d) throw new StepFail(`unknown device "${name}"; devices: ${[...devs.keys()].join(", ")}`);
    return d;
  };
  const value = (v: unknown, what: string): number => {
    if (typeof v === "number") return v;
    const s = String(v).trim();
    const m = /^\$?([A-Za-z_][\w-]*)?\s*(?:([+-])\s*(0x[0-9a-fA-F]+|\d+))?$/.exec(s);
    if (/^(0x[0-9a-fA-F]+|\d+)$/.test(s)) return Number(s);
    if (m && m[1]) {
      const n = m[1];
      let b: number | undefined = buffers.get(n) ?? handles.get(n)?.dma ?? pasids.get(n) ??
        retired.get(n);
      if (b === undefined) {
        throw new StepFail(
          `${what}: "${n}" is not a buffer, DMA handle or PASID defined by an earlier step`,
        );
      }
      if (m[2]) b += (m[2] === "-" ? -1 : 1) * Number(m[3]);
      return b;
    }
    throw new StepFail(`${what}: "${s}" is not a number, hex value or $name[+offset]`);
  };
  const domain = (name: unknown, d: PciDevice): IommuDomain => {
    const n = String(name);
    if (n === "default") {
      const x = core.defaultDomainOf(d);
      if (!x) throw new StepFail(`${d.name} has no default domain`);
      return x;
    }
    const x = domains.get(n);
    if (!x) throw new StepFail(`unknown domain "${n}"; allocate it with domain_alloc first`);
    return x;
  };
  const checkDma = (
    r: { ok: boolean; fault: string; faultAddr: number; data: Uint8Array | null; bytes: number },
    expect: { ok?: boolean; fault?: boolean | string; data?: string | number[] } | undefined,
    what: string,
  ): string => {
    const got = r.ok
      ? `ok${r.data ? " [" + hexBytes(r.data) + "]" : ""}`
      : `fault ${r.fault} at ${hex(r.faultAddr)}`;
    if (!expect) return got;
    const wantFault = expect.fault !== undefined && expect.fault !== false;
    if (wantFault && r.ok) throw new StepFail(`${what}: expected a fault, got ${got}`);
    if (
      typeof expect.fault === "string" &&
      !r.fault.toLowerCase().includes(expect.fault.toLowerCase())
    ) {
      throw new StepFail(`${what}: expected fault "${expect.fault}", got ${got}`);
    }
    if ((expect.ok === true || expect.fault === false || expect.data !== undefined) && !r.ok) {
      throw new StepFail(`${what}: expected success, got ${got}`);
    }
    if (expect.ok === false && r.ok) throw new StepFail(`${what}: expected failure, got ${got}`);
    if (expect.data !== undefined && r.data) {
      const want = parseBytes(expect.data, `${what} expect.data`);
      if (want.length !== r.data.length || want.some((b, i) => b !== r.data![i])) {
        throw new StepFail(`${what}: expected [${hexBytes(want)}], read [${hexBytes(r.data)}]`);
      }
    }
    return got + " (as expected)";
  };
  const compare = (name: string, got: number, want: number | string): void => {
    const m = typeof want === "number"
      ? ["", "==", String(want)]
      : /^(==|>=|<=|>|<|!=)?\s*(\d+)$/.exec(want)!;
    const op = m[1] || "==", w = Number(m[2]);
    const ok = op === "=="
      ? got === w
      : op === ">="
      ? got >= w
      : op === "<="
      ? got <= w
      : op === ">"
      ? got > w
      : op === "<"
      ? got < w
      : got !== w;
    if (!ok) throw new StepFail(`${name} is ${got}, expected ${op} ${w}`);
  };
  const counterValue = (name: string): number => {
    const snap = machine.trace.snapshot();
    const dot = name.indexOf(".");
    let set = dot > 0 ? name.slice(0, dot) : "";
    const key = dot > 0 ? name.slice(dot + 1) : name;
    if (set === "hw") set = hw.name;
    if (set === "category") {
      const cats = categorize(cost, snap[hw.name] ?? {});
      if (!(key in cats)) {
        throw new StepFail(
          `unknown cost category "${key}"; categories: ${Object.keys(cats).join(", ")}`,
        );
      }
      return cats[key];
    }
    const c = snap[set];
    if (!c || !(key in c)) {
      throw new StepFail(
        `unknown counter "${name}"; counter sets: ${
          Object.keys(snap).join(", ")
        } ("hw" = ${hw.name}, "category.X" = cost categories)`,
      );
    }
    return c[key];
  };

  const exec = (kind: string, s: Record<string, unknown>): string => {
    switch (kind) {
      case "note":
        return String(s);
      case "alloc": {
        const size = s.size as number;
        const order = Math.max(0, Math.ceil(Math.log2(Math.max(1, size) / 4096)));
        if (order > 10) throw new StepFail(`alloc ${s.name}: ${size} bytes is above 4 MiB`);
        const pa = machine.pages.allocPages(order);
        if (s.fill !== undefined) machine.mem.fill(pa, size, s.fill as number);
        buffers.set(String(s.name), pa);
        return `${s.name} = ${hex(pa)} (${size} bytes)`;
      }
      case "map": {
        const d = dev(s.device);
        const dir = parseDirection(String(s.dir ?? "bidirectional"));
        const phys = value(s.buffer, "buffer") + ((s.offset as number) ?? 0);
        const exp = s.expect as { error?: string } | undefined;
        try {
          const dma = dmaOf(d).dmaMapSingle(phys, s.size as number, dir);
          if (exp) {
            throw new StepFail(`expected error ${exp.error ?? ""}, got DMA address ${hex(dma)}`);
          }
          handles.set(String(s.as), { dev: d, dma, size: s.size as number, dir });
          return `${s.as} = ${hex(dma)} → ${hex(phys)} (${dmaOf(d).mode})`;
        } catch (e) {
          if (exp && e instanceof IommuError && (!exp.error || e.errno === exp.error)) {
            return `failed with ${e.errno} (as expected)`;
          }
          throw e;
        }
      }
      case "unmap": {
        const h = handles.get(String(s.handle));
        if (!h) throw new StepFail(`unknown DMA handle "${s.handle}"`);
        if (h.dev !== dev(s.device)) throw new StepFail(`${s.handle} belongs to ${h.dev.name}`);
        dmaOf(h.dev).dmaUnmapSingle(h.dma, h.size, h.dir);
        handles.delete(String(s.handle));
        retired.set(String(s.handle), h.dma);
        return `unmapped ${hex(h.dma)}+${hex(h.size)}`;
      }
      case "alloc_coherent": {
        const d = dev(s.device);
        const c = dmaOf(d).dmaAllocCoherent(s.size as number);
        handles.set(String(s.as), { dev: d, dma: c.dmaAddr, size: c.size, dir: 0, coherent: c });
        buffers.set(String(s.as) + "_cpu", c.cpuAddr);
        return `${s.as} = ${hex(c.dmaAddr)} (cpu ${hex(c.cpuAddr)})`;
      }
      case "free_coherent": {
        const h = handles.get(String(s.handle));
        if (!h?.coherent) throw new StepFail(`"${s.handle}" is not a coherent allocation`);
        dmaOf(dev(s.device)).dmaFreeCoherent(h.coherent);
        handles.delete(String(s.handle));
        return `freed ${hex(h.dma)}`;
      }
      case "read": {
        const d = dev(s.device);
        const addr = value(s.addr, "addr");
        const o = s.pasid !== undefined ? { pasid: value(s.pasid, "pasid") } : undefined;
        const r = machine.master(d).read(addr, s.length as number, o);
        return `${d.name} read ${hex(addr)}+${s.length}${o ? " pasid " + o.pasid : ""}: ` +
          checkDma(r, s.expect as never, "read");
      }
      case "write": {
        const d = dev(s.device);
        const addr = value(s.addr, "addr");
        const data = parseBytes(s.data as string, "data");
        const o = s.pasid !== undefined ? { pasid: value(s.pasid, "pasid") } : undefined;
        const r = machine.master(d).write(addr, data, o);
        return `${d.name} write ${hex(addr)}+${data.length}${o ? " pasid " + o.pasid : ""}: ` +
          checkDma(r, s.expect as never, "write");
      }
      case "cpu_write": {
        const a = value(s.addr, "addr");
        machine.mem.writeBytes(a, parseBytes(s.data as string, "data"));
        return `wrote ${hex(a)}`;
      }
      case "cpu_check": {
        const a = value(s.addr, "addr");
        const want = parseBytes(s.data as string, "data");
        const got = machine.mem.readBytes(a, want.length);
        if (want.some((b, i) => b !== got[i])) {
          throw new StepFail(
            `memory at ${hex(a)} is [${hexBytes(got)}], expected [${hexBytes(want)}]`,
          );
        }
        return `memory at ${hex(a)} = [${hexBytes(got)}] (as expected)`;
      }
      case "domain_alloc": {
        const d = core.domainAllocPaging(dev(s.device));
        domains.set(String(s.name), d);
        return `${s.name}: paging domain allocated`;
      }
      case "iommu_map": {
        const dm = domains.get(String(s.domain));
        if (!dm) throw new StepFail(`unknown domain "${s.domain}"`);
        const p = String(s.prot ?? "rw");
        const prot = (p.includes("r") ? IOMMU_READ : 0) | (p.includes("w") ? IOMMU_WRITE : 0);
        const iova = value(s.iova, "iova"), pa = value(s.phys, "phys");
        core.map(dm, iova, pa, s.size as number, prot);
        return `${s.domain}: ${hex(iova)} → ${hex(pa)} (${s.size} bytes, ${p})`;
      }
      case "iommu_unmap": {
        const dm = domains.get(String(s.domain));
        if (!dm) throw new StepFail(`unknown domain "${s.domain}"`);
        const n = core.unmap(dm, value(s.iova, "iova"), s.size as number);
        return `${s.domain}: unmapped ${n} bytes`;
      }
      case "attach": {
        const d = dev(s.device);
        core.attachDevice(domain(s.domain, d), d);
        return `${d.name} attached to ${s.domain}`;
      }
      case "detach": {
        const d = dev(s.device);
        core.detachDevice(domain(s.domain, d), d);
        return `${d.name} detached from ${s.domain}`;
      }
      case "replace": {
        const d = dev(s.device);
        core.replaceGroupDomain(core.groupOf(d), domain(s.domain, d));
        return `${d.name}'s group now uses ${s.domain}`;
      }
      case "group_type": {
        const d = dev(s.device);
        core.setGroupDefaultDomainType(core.groupOf(d), s.type as "DMA");
        return `${d.name}'s group default domain type is now ${s.type}`;
      }
      case "pasid_enable": {
        const d = dev(s.device);
        const p = dmaOf(d).enablePasid();
        pasids.set(String(s.as), p);
        return `${s.as} = ${p} (attached to the default domain, shared with RID2PASID)`;
      }
      case "pasid_attach": {
        const d = dev(s.device);
        const p = value(s.pasid, "pasid");
        core.attachDevicePasid(domain(s.domain, d), d, p);
        return `${d.name} pasid ${p} attached to ${s.domain}`;
      }
      case "advance": {
        const ns = ((s.ns as number) ?? 0) + ((s.us as number) ?? 0) * 1e3 +
          ((s.ms as number) ?? 0) * 1e6;
        machine.clock.advance(ns);
        return `time +${ns} ns`;
      }
      case "flush_queue":
        dmaOf(dev(s.device)).flushQueue();
        return `flush queue drained`;
      case "checking":
        (hw as IommuHardware).checking = !!s;
        return `checking mode ${s ? "on" : "off"}`;
      case "inject": {
        dmaOf(dev(s.device)).inject.skipIotlbSync = !!s.skip_iotlb_sync;
        return `fault injection: skip IOTLB sync = ${!!s.skip_iotlb_sync}`;
      }
      case "expect": {
        const parts: string[] = [];
        const ctr = (s.counters ?? {}) as Record<string, number | string>;
        for (const [k, v] of Object.entries(ctr)) {
          const got = counterValue(k);
          compare(k, got, v);
          parts.push(`${k}=${got}`);
        }
        if (s.missed_invalidations !== undefined) {
          compare("missed invalidations", missed, s.missed_invalidations as number | string);
          parts.push(`missed invalidations=${missed}`);
        }
        return parts.join(", ") + " (as expected)";
      }
    }
    throw new StepFail(`unknown step kind ${kind}`);
  };

  let failed = false;
  sc.steps.forEach((step: Step, i) => {
    const kind = Object.keys(step)[0];
    const line = loaded.stepLines[i] ?? 0;
    if (failed) {
      base.steps.push({ index: i + 1, line, kind, status: "skipped", text: "" });
      return;
    }
    try {
      const text = exec(kind, step[kind] as Record<string, unknown>);
      base.steps.push({ index: i + 1, line, kind, status: "ok", text });
    } catch (e) {
      failed = true;
      const msg = e instanceof StepFail || e instanceof IommuError || e instanceof RangeError
        ? e.message
        : `internal error: ${(e as Error)?.message ?? e}`;
      base.steps.push({ index: i + 1, line, kind, status: "FAIL", text: msg });
    }
  });
  for (const d of dmas.values()) void d;
  const counters = machine.trace.snapshot();
  const hwc = counters[hw.name] ?? {};
  base.ok = !failed;
  base.counters = counters;
  base.categories = categorize(cost, hwc);
  base.modeledNs = modeledNs(cost, hwc, counters.dma?.bytes ?? 0, sc.cost ?? {});
  base.clockNs = machine.clock.now() - t0;
  base.missedInvalidations = missed;
  if (opts.trace) base.trace = machine.trace.toJsonLines();
  return base;
}

/** The report as text lines. */
export function formatReport(
  r: RunReport,
  color: {
    green(s: string): string;
    red(s: string): string;
    dim(s: string): string;
    bold(s: string): string;
  },
): string[] {
  const out: string[] = [];
  out.push(color.bold(`scenario ${r.scenario} on ${r.backend}`) + color.dim(` (${r.file})`));
  if (r.skipped) {
    out.push(`  skipped: ${r.skipped}`);
    return out;
  }
  for (const s of r.steps) {
    const st = s.status === "ok"
      ? color.green("ok  ")
      : s.status === "FAIL"
      ? color.red("FAIL")
      : color.dim("skip");
    out.push(
      `  ${st} #${String(s.index).padEnd(3)} ${color.dim(`line ${s.line}`.padEnd(9))} ${
        s.kind.padEnd(14)
      } ${s.text}`,
    );
  }
  out.push("  counters:");
  for (const [set, c] of Object.entries(r.counters)) {
    const nz = Object.entries(c).filter(([, v]) => v !== 0);
    if (nz.length === 0) continue;
    out.push(`    ${set}: ${nz.map(([k, v]) => `${k}=${v}`).join(" ")}`);
  }
  out.push(`  missed invalidations reported: ${r.missedInvalidations}`);
  out.push(
    `  modeled time: ${(r.modeledNs / 1000).toFixed(3)} µs (cost model), virtual clock advanced ${
      (r.clockNs / 1e6).toFixed(3)
    } ms`,
  );
  out.push(r.ok ? color.green("  PASS") : color.red("  FAIL"));
  return out;
}
