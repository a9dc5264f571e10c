/**
 * @module
 * `alloc_io_pgtable_ops`: build a page table of a given format in physical
 * memory.
 */

import { IommuError } from "../errors.ts";
import type { IoPgtable, IoPgtableCfg, IoPgtableEnv, IoPgtableFormat } from "./api.ts";
import { ArmLpaePgtable } from "./arm-lpae.ts";
import type { RadixPgtable } from "./engine.ts";
import { VtdSsPgtable } from "./vtd-ss.ts";
import { X86Pgtable } from "./x86.ts";

/** Every format {@link allocIoPgtable} builds. */
export const IO_PGTABLE_FORMATS: readonly IoPgtableFormat[] = [
  "ARM_64_LPAE_S1",
  "ARM_64_LPAE_S2",
  "X86_64",
  "VTD_SS",
];

/**
 * `alloc_io_pgtable_ops(fmt, cfg, cookie)`: validate `cfg` for `fmt`,
 * allocate the (zeroed) top-level table from `env.pages` and return the
 * live table. The result's `cfg` has `pgsizeBitmap` (and for Arm ias/oas)
 * narrowed as the kernel does. A refused configuration throws EINVAL (or
 * EOPNOTSUPP for a quirk the model does not implement) naming what is
 * allowed; a failed root allocation throws ENOMEM. Nothing is allocated on
 * failure.
 */
export function allocIoPgtable(
  fmt: IoPgtableFormat,
  cfg: IoPgtableCfg,
  env: IoPgtableEnv,
): IoPgtable & RadixPgtable {
  switch (fmt) {
    case "ARM_64_LPAE_S1":
    case "ARM_64_LPAE_S2":
      return new ArmLpaePgtable(fmt, cfg, env);
    case "X86_64":
      return new X86Pgtable(cfg, env);
    case "VTD_SS":
      return new VtdSsPgtable(cfg, env);
    default:
      throw new IommuError(
        "EINVAL",
        "alloc_io_pgtable_ops",
        `unknown page-table format "${fmt}"; allowed: ${IO_PGTABLE_FORMATS.join(", ")}`,
      );
  }
}
