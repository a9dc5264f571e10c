/**
 * @module
 * `scenario list` and `scenario run <name|file>`.
 */

import { BUILTIN_SCENARIOS } from "../scenario/builtin.ts";
import { type LoadedScenario, parseScenario, UserError } from "../scenario/schema.ts";
import { formatReport, runScenario } from "../scenario/runner.ts";
import { findBackend } from "../backends.ts";
import type { CliIo, Colors } from "../app.ts";

/** `scenario list`. */
export function scenarioList(json: boolean): string {
  if (json) {
    return JSON.stringify(
      BUILTIN_SCENARIOS.map(({ name, summary }) => ({ name, summary })),
      null,
      2,
    ) +
      "\n";
  }
  const w = Math.max(...BUILTIN_SCENARIOS.map((s) => s.name.length));
  return BUILTIN_SCENARIOS.map((s) => `${s.name.padEnd(w)}  ${s.summary}`).join("\n") + "\n";
}

/** Load a built-in scenario by name or a scenario file by path. */
export async function loadScenario(target: string): Promise<LoadedScenario> {
  const b = BUILTIN_SCENARIOS.find((s) => s.name === target);
  if (b) return parseScenario(b.yaml, `builtin:${b.name}`);
  if (!/\.(ya?ml|json)$/i.test(target) && !target.includes("/")) {
    throw new UserError(
      `no built-in scenario "${target}" (built-ins: ${
        BUILTIN_SCENARIOS.map((s) => s.name).join(", ")
      }); a scenario file ends in .yaml, .yml or .json`,
    );
  }
  let text: string;
  try {
    text = await Deno.readTextFile(target);
  } catch (e) {
    throw new UserError(`${target}: cannot read: ${(e as Error).message.split("\n")[0]}`);
  }
  return parseScenario(text, target);
}

/** Options of `scenario run`. */
export interface ScenarioRunOptions {
  /** Backend name or plugin path. */
  backend?: string;
  /** Backend options `name=value`. */
  opt?: string[];
  /** Seed. */
  seed?: number;
  /** JSON report. */
  json?: boolean;
  /** Trace output file. */
  trace?: string;
}

/** `scenario run`: 0 when every expectation held, 1 when one failed. */
export async function scenarioRun(
  target: string,
  o: ScenarioRunOptions,
  io: CliIo,
  c: Colors,
): Promise<number> {
  const loaded = await loadScenario(target);
  const sb = loaded.scenario.backend;
  const name = o.backend ?? (typeof sb === "string" ? sb : sb?.name) ?? "vtd";
  let plugin;
  try {
    plugin = await findBackend(name);
  } catch (e) {
    // A backend named by the scenario file: say where in the file.
    if (o.backend !== undefined || !(e instanceof UserError) || !loaded.locate) throw e;
    const path = typeof sb === "string" ? ["backend"] : ["backend", "name"];
    throw new UserError(`${loaded.locate(path)}: ${path.join(".")}: ${e.message}`);
  }
  const report = runScenario(loaded, {
    plugin,
    seed: o.seed,
    trace: !!o.trace,
    cliOptions: o.opt,
  });
  if (o.trace) {
    try {
      await Deno.writeTextFile(o.trace, (report.trace ?? "") + "\n");
    } catch (e) {
      throw new UserError(`--trace ${o.trace}: cannot write: ${(e as Error).message}`);
    }
  }
  if (o.json) {
    const { trace: _t, ...rest } = report;
    io.out(JSON.stringify(rest, null, 2) + "\n");
  } else io.out(formatReport(report, c).join("\n") + "\n");
  return report.ok ? 0 : 1;
}
