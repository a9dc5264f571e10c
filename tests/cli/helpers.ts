import type { CliIo } from "../../cli/app.ts";
import { runCli } from "../../cli/app.ts";

/** Run the CLI with captured output. */
export async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "", err = "";
  const io: CliIo = {
    out: (s) => void (out += s),
    err: (s) => void (err += s),
    isTTY: false,
    color: false,
  };
  const code = await runCli(argv, io);
  return { code, out, err };
}

/** Write `text` to a temp file with `ext`; returns its path. */
export async function tmpFile(text: string | Uint8Array, ext: string): Promise<string> {
  const p = await Deno.makeTempFile({ suffix: ext });
  if (typeof text === "string") await Deno.writeTextFile(p, text);
  else await Deno.writeFile(p, text);
  return p;
}
