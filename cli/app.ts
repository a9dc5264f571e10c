/**
 * @module
 * The `iommu-lab` command line (`deno task cli`): `backends`, `scenario
 * list`, `scenario run`, `inspect decode`, `translate` and `demo`. Errors in
 * the user's input are one line `iommu-lab: <what>` on stderr with exit code
 * 2; a scenario whose expectation fails exits 1.
 */

import { Command, CommanderError, Option } from "@commander-js/extra-typings";
import pc from "picocolors";
import { STEP_KINDS, UserError } from "./scenario/schema.ts";
import { backendsText } from "./commands/backends.ts";
import { scenarioList, scenarioRun } from "./commands/scenario.ts";
import { inspectDecode } from "./commands/decode.ts";
import { translateCommand } from "./commands/translate.ts";
import { demo } from "./commands/demo.ts";

/** Where the CLI writes, and what kind of terminal it has. */
export interface CliIo {
  /** Write to stdout (a full line or block, newline included). */
  out(s: string): void;
  /** Write to stderr. */
  err(s: string): void;
  /** stdout is a terminal (progress bars). */
  isTTY: boolean;
  /** Colors enabled (off with NO_COLOR or when not a terminal). */
  color: boolean;
}

/** Colors as the commands use them (identity functions when color is off). */
export interface Colors {
  /** Bold. */
  bold(s: string): string;
  /** Dim. */
  dim(s: string): string;
  /** Green. */
  green(s: string): string;
  /** Red. */
  red(s: string): string;
  /** Yellow. */
  yellow(s: string): string;
}

/** The default IO: Deno's stdout/stderr, NO_COLOR honoured. */
export function denoIo(): CliIo {
  const enc = new TextEncoder();
  const isTTY = Deno.stdout.isTerminal();
  let noColor = false;
  try {
    noColor = Deno.env.get("NO_COLOR") !== undefined && Deno.env.get("NO_COLOR") !== "";
  } catch { /* no env permission: keep colors as the terminal allows */ }
  return {
    out: (s) => void Deno.stdout.writeSync(enc.encode(s)),
    err: (s) => void Deno.stderr.writeSync(enc.encode(s)),
    isTTY,
    color: isTTY && !noColor,
  };
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

function int(name: string) {
  return (v: string): number => {
    const t = v.trim();
    if (!/^(0x[0-9a-fA-F]+|\d+)$/.test(t)) {
      throw new UserError(`${name} "${v}" is not a non-negative integer (decimal or 0x hex)`);
    }
    return Number(t);
  };
}

/** Run the CLI with `argv` (without the program name); resolves to the exit code. */
export async function runCli(argv: string[], io: CliIo = denoIo()): Promise<number> {
  const c: Colors = pc.createColors(io.color);
  let code = 0;
  const program = new Command("iommu-lab")
    .description("Model IOMMU hardware and the Linux IOMMU stack, bit-exactly.")
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.out(s),
      writeErr: (s) => {
        // commander's own errors arrive here as "error: ...": make them one line.
        if (/^error: /.test(s)) return;
        io.err(s);
      },
    })
    .showHelpAfterError(false);

  program.command("backends")
    .description("list the built-in backends and their options")
    .option("--json", "machine-readable output")
    .action(async (o) => {
      io.out(await backendsText(!!o.json, c));
    });

  const scenario = program.command("scenario").description("built-in and file scenarios");
  scenario.command("list")
    .description("list the built-in scenarios")
    .option("--json", "machine-readable output")
    .action((o) => io.out(scenarioList(!!o.json)));
  scenario.command("run")
    .description("run a built-in scenario by name, or a YAML/JSON scenario file")
    .argument("<name|file>", "built-in scenario name or path to a .yaml/.yml/.json file")
    .option("--backend <name|path>", "backend: a built-in name or a plugin path")
    .option("--opt <name=value>", "backend option (repeatable)", collect)
    .option("--seed <n>", "PRNG seed", int("--seed"))
    .option("--json", "print the report as JSON")
    .option("--trace <file>", "write trace events as JSON lines to FILE")
    .addHelpText(
      "after",
      `
A scenario file (YAML or JSON) has: name, description?, requires? [pasid, lazy],
machine? {seed, pa_bits}, backend? (name or {name, options}), policy? {passthrough, strict},
cost? {category: ns}, devices [{name, bdf, pasid_bits?, ats?, pri?, untrusted?, dma_bits?}],
and steps, each one of: ${STEP_KINDS.join(", ")}.
Values may be numbers, hex strings or $name[+offset] (a buffer, DMA handle or PASID).
Counters in expect: set.name (e.g. dma-api.strictSyncs, dma.faults, hw.<counter>,
category.<cost category>). Exit: 0 pass, 1 an expectation failed, 2 bad input.
See the built-ins: iommu-lab scenario list.`,
    )
    .action(async (target, o) => {
      code = await scenarioRun(target, o, io, c);
    });

  const inspect = program.command("inspect").description("decode structures");
  inspect.command("decode")
    .description("decode a structure from hex words, printing every field")
    .argument("[structure]", "structure name (omit to list them)")
    .argument("[words...]", "hex words, 64-bit (0x…) or 32-bit with --words32, low word first")
    .option("--words32", "words are 32-bit")
    .option("--json", "print fields as JSON")
    .action(async (structure, words, o) => {
      io.out(await inspectDecode(structure, words, !!o.words32, !!o.json));
    });

  program.command("translate")
    .description("translate DMA requests with a backend's hardware model driven from outside")
    .requiredOption("--backend <name|path>", "backend: a built-in name or a plugin path")
    .option("--opt <name=value>", "backend option (repeatable)", collect)
    .option("--memory <file>", "memory image: sparse JSON, or raw bytes loaded at --memory-base")
    .option(
      "--memory-base <addr>",
      "physical address of a raw --memory image (default 0)",
      int("--memory-base"),
    )
    .option("--reg <NAME=VALUE>", "set a register (repeatable, applied in order)", collect)
    .option("--rid <BB:DD.F>", "PCI requester ID")
    .option("--sid <n>", "stream ID (SMMUv3)", int("--sid"))
    .addOption(new Option("--pasid <n>", "PASID").argParser(int("--pasid")))
    .addOption(new Option("--ssid <n>", "substream ID (SMMUv3)").argParser(int("--ssid")))
    .option("--iova <hex>", "input address")
    .option("--write", "write access (default read)")
    .option("--exec", "instruction fetch")
    .option("--priv", "privileged request")
    .option("--requests <file>", "JSON array of requests {rid|sid, pasid?, iova, write?}")
    .option("--json", "print JSON")
    .action(async (o) => {
      io.out(await translateCommand(o));
    });

  program.command("demo")
    .description("run the tour on every built-in backend and compare them side by side")
    .option("--scenario <name>", "built-in scenario to run", "tour")
    .action(async (o) => {
      code = await demo(o.scenario, io, c);
    });

  try {
    await program.parseAsync(argv, { from: "user" });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (
        e.code === "commander.helpDisplayed" || e.code === "commander.help" ||
        e.code === "commander.version"
      ) {
        return 0;
      }
      if (e.code === "commander.executeSubCommandAsync") return e.exitCode;
      io.err(`iommu-lab: ${e.message.replace(/^error: /, "").split("\n")[0]}\n`);
      return 2;
    }
    if (e instanceof UserError) {
      io.err(`iommu-lab: ${e.message.split("\n")[0]}\n`);
      return 2;
    }
    if (e instanceof Error && e.name === "IommuError") {
      io.err(`iommu-lab: ${e.message.split("\n")[0]}\n`);
      return 2;
    }
    throw e;
  }
}
