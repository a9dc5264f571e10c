/**
 * `deno task cli` entry point: runs the iommu-lab command line and exits
 * with its code (2 for bad input, 1 for a failed scenario expectation).
 *
 * @module
 */

import { runCli } from "./app.ts";

if (import.meta.main) {
  Deno.exit(await runCli(Deno.args));
}
