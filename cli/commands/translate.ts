/**
 * @module
 * `translate`: build a backend's hardware model alone (plugin.createHardware),
 * load a memory image, set registers through the machine's MMIO bus, and
 * translate one request or a file of them. Generic over every plugin.
 */

import {
  ACCESS_EXEC,
  ACCESS_READ,
  ACCESS_WRITE,
  Machine,
  newDmaRequest,
  newTranslateResult,
  NO_PASID,
  parseBdf,
  resolveOptions,
} from "@iommu-lab/core";
import { findBackend } from "../backends.ts";
import { UserError } from "../scenario/schema.ts";

/** Options of `translate`. */
export interface TranslateOptions {
  /** Backend. */
  backend: string;
  /** Backend options. */
  opt?: string[];
  /** Memory image file. */
  memory?: string;
  /** Where a raw memory image is loaded (default 0). */
  memoryBase?: number;
  /** Registers NAME=VALUE. */
  reg?: string[];
  /** Requester ID BB:DD.F. */
  rid?: string;
  /** Stream ID. */
  sid?: number;
  /** PASID. */
  pasid?: number;
  /** Substream ID. */
  ssid?: number;
  /** Input address (hex). */
  iova?: string;
  /** Write access. */
  write?: boolean;
  /** Execute access. */
  exec?: boolean;
  /** Privileged. */
  priv?: boolean;
  /** Requests file. */
  requests?: string;
  /** JSON output. */
  json?: boolean;
}

function parseNum(v: unknown, what: string): number {
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return v;
  if (
    typeof v === "string" && /^\s*(0x[0-9a-fA-F]+|[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*|\d+)\s*$/.test(v)
  ) {
    const t = v.trim();
    const n = /^0x/i.test(t) || /[a-fA-F]/.test(t)
      ? parseInt(t.replace(/^0x/i, ""), 16)
      : Number(t);
    if (Number.isSafeInteger(n)) return n;
  }
  throw new UserError(`${what} ${JSON.stringify(v)} is not an address (hex, e.g. 0x1000)`);
}

function parseHexAddr(v: unknown, what: string): number {
  if (typeof v === "string" && /^\s*[0-9a-fA-F]+\s*$/.test(v) && !/^\s*0x/i.test(v)) {
    const n = parseInt(v.trim(), 16);
    if (Number.isSafeInteger(n)) return n;
  }
  return parseNum(v, what);
}

/** An access kind: "read", "write", "exec", "atomic" / "rw", letters r, w, x, or ACCESS_* bits. */
function parseAccess(v: string | number, what: string): number {
  if (typeof v === "number" && Number.isInteger(v) && v > 0 && v < 8) return v;
  const t = String(v).toLowerCase().trim();
  const named: Record<string, number> = {
    read: ACCESS_READ,
    write: ACCESS_WRITE,
    exec: ACCESS_READ | ACCESS_EXEC,
    atomic: ACCESS_READ | ACCESS_WRITE,
  };
  if (t in named) return named[t];
  if (/^[rwx]+$/.test(t)) {
    return (t.includes("r") ? ACCESS_READ : 0) | (t.includes("w") ? ACCESS_WRITE : 0) |
      (t.includes("x") ? ACCESS_EXEC : 0);
  }
  throw new UserError(
    `${what} ${JSON.stringify(v)}: use read, write, exec, atomic or r/w/x letters`,
  );
}

const perm = (p: number) =>
  (p & ACCESS_READ ? "r" : "") + (p & ACCESS_WRITE ? "w" : "") + (p & ACCESS_EXEC ? "x" : "");

/** Run the command; returns the output text. */
export async function translateCommand(o: TranslateOptions): Promise<string> {
  const plugin = await findBackend(o.backend);
  const machine = new Machine();
  let options;
  try {
    options = resolveOptions(plugin, o.opt ?? []);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  const hw = plugin.createHardware(machine, options);
  if (o.memory) {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(o.memory);
    } catch (e) {
      throw new UserError(
        `--memory ${o.memory}: cannot read: ${(e as Error).message.split("\n")[0]}`,
      );
    }
    const first = bytes.find((b) => b > 0x20);
    if (first === 0x7b /* { */) {
      try {
        machine.mem.loadSparse(JSON.parse(new TextDecoder().decode(bytes)));
      } catch (e) {
        throw new UserError(
          `--memory ${o.memory}: not a sparse memory image: ${(e as Error).message.split("\n")[0]}`,
        );
      }
    } else {
      const base = o.memoryBase ?? 0;
      try {
        machine.mem.loadRaw(bytes, base);
      } catch (e) {
        throw new UserError(
          `--memory ${o.memory}: raw image of ${bytes.length} bytes at 0x${
            base.toString(16)
          } does not fit: ${(e as Error).message.split("\n")[0]}`,
        );
      }
    }
  } else if (o.memoryBase !== undefined) {
    throw new UserError("--memory-base needs --memory FILE (a raw image)");
  }
  for (const r of o.reg ?? []) {
    const eq = r.indexOf("=");
    if (eq <= 0) throw new UserError(`--reg "${r}" is not NAME=VALUE`);
    const name = r.slice(0, eq).trim();
    const spec = hw.registers.find((x) => x.name.toUpperCase() === name.toUpperCase());
    if (!spec) {
      throw new UserError(
        `--reg: ${plugin.name} has no register "${name}"; registers: ${
          hw.registers.map((x) => x.name).join(", ")
        }`,
      );
    }
    const raw = r.slice(eq + 1).trim();
    let value: bigint;
    try {
      if (!/^(0x[0-9a-fA-F_]+|\d+)$/.test(raw)) throw new Error();
      value = BigInt(raw.replaceAll("_", ""));
    } catch {
      throw new UserError(`--reg ${name}: "${raw}" is not a number (decimal or 0x hex)`);
    }
    if (value >= 1n << BigInt(spec.width)) {
      throw new UserError(`--reg ${name}: ${raw} does not fit in ${spec.width} bits`);
    }
    const addr = hw.mmioBase + spec.offset;
    if (spec.width === 64) machine.bus.write64(addr, value);
    else machine.bus.write32(addr, Number(value));
  }
  interface Req {
    rid?: string | number;
    sid?: number;
    pasid?: number;
    ssid?: number;
    iova: string | number;
    access?: string | number;
    write?: boolean;
    exec?: boolean;
    priv?: boolean;
  }
  let reqs: Req[];
  let single = false;
  if (o.requests) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(await Deno.readTextFile(o.requests));
    } catch (e) {
      throw new UserError(`--requests ${o.requests}: ${(e as Error).message.split("\n")[0]}`);
    }
    if (!Array.isArray(parsed)) {
      throw new UserError(`--requests ${o.requests}: expected a JSON array of requests`);
    }
    reqs = parsed as Req[];
  } else {
    if (o.iova === undefined) throw new UserError("give --iova HEX (or --requests FILE)");
    single = true;
    reqs = [{
      rid: o.rid,
      sid: o.sid,
      pasid: o.pasid,
      ssid: o.ssid,
      iova: o.iova,
      write: o.write,
      exec: o.exec,
      priv: o.priv,
    }];
  }
  const req = newDmaRequest();
  const out = newTranslateResult();
  const results = reqs.map((r, i) => {
    const where = o.requests ? `--requests ${o.requests}[${i}]` : "";
    if (!r || typeof r !== "object") throw new UserError(`${where}: not an object`);
    if (r.rid !== undefined && r.sid !== undefined) {
      throw new UserError(`${where} give --rid or --sid, not both`.trim());
    }
    if (r.rid === undefined && r.sid === undefined) {
      throw new UserError(`${where} give --rid BB:DD.F or --sid N`.trim());
    }
    let rid: number;
    if (r.rid !== undefined) {
      if (typeof r.rid === "number") rid = r.rid;
      else {
        try {
          const b = parseBdf(r.rid);
          rid = (b.bus << 8) | (b.device << 3) | b.fn;
        } catch (e) {
          throw new UserError(`${where} --rid: ${(e as Error).message}`.trim());
        }
      }
    } else rid = parseNum(r.sid, `${where} --sid`.trim());
    const pasid = r.pasid ?? r.ssid;
    req.rid = rid;
    req.pasid = pasid === undefined ? NO_PASID : parseNum(pasid, "pasid");
    req.addr = parseHexAddr(r.iova, `${where} --iova`.trim());
    req.access = r.access !== undefined
      ? parseAccess(r.access, `${where} access`.trim())
      : r.write
      ? ACCESS_WRITE
      : r.exec
      ? ACCESS_READ | ACCESS_EXEC
      : ACCESS_READ;
    req.priv = !!r.priv;
    hw.translate(req, out);
    return out.ok ? { pa: "0x" + out.pa.toString(16), perm: perm(out.perm) } : {
      fault: true,
      reason: out.fault,
      code: out.faultCode,
      ...(out.pending ? { pending: true } : {}),
    };
  });
  if (o.json || !single) {
    return JSON.stringify(single ? results[0] : results, null, single ? 0 : 2) + "\n";
  }
  const r = results[0] as { pa?: string; perm?: string; reason?: string; code?: number };
  return r.pa
    ? `${r.pa} ${r.perm}\n`
    : `fault ${r.reason} (code 0x${(r.code ?? 0).toString(16)})\n`;
}
