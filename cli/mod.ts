/**
 * @module
 * The iommu-lab command line as a library: {@link runCli} (what `deno task
 * cli` runs), the scenario schema, parser and runner, the built-in
 * scenarios and backends, and the cost model.
 */

export { type CliIo, type Colors, denoIo, runCli } from "./app.ts";
export * from "./scenario/schema.ts";
export * from "./scenario/runner.ts";
export * from "./scenario/builtin.ts";
export * from "./backends.ts";
export * from "./cost.ts";
export { demoTable } from "./commands/demo.ts";
export { structures } from "./commands/decode.ts";
/** The core types this package's API refers to. */
export type * from "@iommu-lab/core";
