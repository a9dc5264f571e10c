/**
 * @module
 * The backend plugin contract. A backend is a module whose default export is
 * a {@link BackendPlugin}: it builds a hardware model (the register side,
 * which translates DMA) and a driver (an {@link IommuOps} that talks to the
 * hardware only through MMIO and memory).
 */

import type { Counters } from "./trace.ts";
import type { IommuOps } from "./types.ts";
import type { Machine } from "./machine/machine.ts";
import type { MmioRegion } from "./machine/mmio.ts";
import type { DmaTranslator } from "./machine/translate.ts";

/** The core API version this build of the core implements. */
export const CORE_API_VERSION = 1;

/** One backend option, for validation, help and `deno task cli backends`. */
export interface BackendOptionSpec {
  /** Option name, e.g. `"aw"` or `"range_inv"`. */
  name: string;
  /** Value kind. */
  type: "boolean" | "number" | "string";
  /** Default value. */
  default: boolean | number | string;
  /** One-line description. */
  description: string;
  /** Allowed values (string or number options). */
  values?: readonly (string | number)[];
  /** Inclusive minimum (number options). */
  min?: number;
  /** Inclusive maximum (number options). */
  max?: number;
}

/** A register as the specification names it, for `--reg NAME=VALUE`. */
export interface RegisterSpec {
  /** Specification name, e.g. `"RTADDR_REG"` or `"STRTAB_BASE"`. */
  name: string;
  /** Offset in the MMIO window. */
  offset: number;
  /** Access width in bits. */
  width: 32 | 64;
}

/** Resolved option values. */
export type BackendOptions = Record<string, boolean | number | string>;

/** A hardware model: registers, translation, caches, counters. */
export interface IommuHardware extends DmaTranslator {
  /** Instance name, e.g. `"vtd0"`. */
  readonly name: string;
  /** The register window. */
  readonly mmio: MmioRegion;
  /** Physical address of the register window on the machine's bus. */
  readonly mmioBase: number;
  /** The specification's register names and offsets. */
  readonly registers: readonly RegisterSpec[];
  /** Counters (translations, cache hits/misses, walk reads, commands...). */
  readonly counters: Counters;
  /** Checking mode: compare every cache hit with a fresh walk and report differences. */
  checking: boolean;
}

/** What `create` returns: the hardware model and the driver bound to it. */
export interface BackendInstance {
  /** The hardware model (already mapped on the machine's bus). */
  hw: IommuHardware;
  /** The driver, probed against the hardware (it read the ID registers). */
  driver: IommuOps;
}

/** A backend plugin module's default export. */
export interface BackendPlugin {
  /** Registry name, e.g. `"vtd"`. */
  readonly name: string;
  /** One-line description. */
  readonly description: string;
  /** The core API version it was written for (must equal {@link CORE_API_VERSION}). */
  readonly apiVersion: number;
  /** Its options. */
  readonly options: readonly BackendOptionSpec[];
  /** Build the hardware model alone (to be driven from outside: memory image + registers). */
  createHardware(machine: Machine, options: BackendOptions): IommuHardware;
  /** Build the hardware model and its driver, and initialise the driver (probe, tables, enable). */
  create(machine: Machine, options: BackendOptions): BackendInstance;
}
