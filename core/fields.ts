/**
 * @module
 * Field tables: one declarative description of each bit-exact structure
 * (descriptors, table entries, registers), with encode and decode helpers.
 * Bit positions count from bit 0 of the structure's first little-endian
 * 32-bit word, so a 512-bit PASID entry has fields up to bit 511.
 *
 * Field tables serve decoding, encoding, tests and `inspect decode`; hot paths
 * may read words directly with the shifts a table documents.
 */

import { IommuError } from "./errors.ts";

/** One named field: bits `hi:lo` inclusive, with an optional value legend. */
export interface FieldSpec {
  /** Field name as the specification spells it (e.g. `"PGTT"`). */
  readonly name: string;
  /** Highest bit, inclusive. */
  readonly hi: number;
  /** Lowest bit. */
  readonly lo: number;
  /** Names of well-known values, e.g. `{ 1: "FL_ONLY" }`. */
  readonly values?: Readonly<Record<number, string>>;
  /**
   * When set, the field holds an address: its value is `field << lo`
   * (the kernel's mask style, e.g. a pointer in bits 63:12). Decode then
   * reports the address rather than the shifted-down field.
   */
  readonly address?: boolean;
  /**
   * For address fields outside the first 64 bits (e.g. a pointer in bits
   * 127:76 of a 128-bit entry): the bit position of the field's lowest bit
   * inside the address (12 for a page pointer). Default `lo`.
   */
  readonly addressShift?: number;
}

/** A decoded structure: field name to value (bigint, exact for any width). */
export type Decoded = Record<string, bigint>;

/** A structure layout: a name, a size in bytes and its fields. */
export class FieldTable {
  /** Structure name, e.g. `"STE"`. */
  readonly name: string;
  /** Size in bytes (a multiple of 4). */
  readonly bytes: number;
  /** Fields in declaration order. */
  readonly fields: readonly FieldSpec[];
  readonly #byName = new Map<string, FieldSpec>();

  /** Declare a structure; overlapping or out-of-range fields are refused. */
  constructor(name: string, bytes: number, fields: readonly FieldSpec[]) {
    this.name = name;
    this.bytes = bytes;
    this.fields = fields;
    for (const f of fields) {
      if (f.lo < 0 || f.hi < f.lo || f.hi >= bytes * 8) {
        throw new IommuError(
          "EINVAL",
          "FieldTable",
          `${name}.${f.name}: bits ${f.hi}:${f.lo} outside ${bytes * 8} bits`,
        );
      }
      if (this.#byName.has(f.name)) {
        throw new IommuError("EINVAL", "FieldTable", `${name}: field ${f.name} declared twice`);
      }
      this.#byName.set(f.name, f);
    }
  }

  /** The spec of field `name`; throws ENOENT listing the known fields. */
  field(name: string): FieldSpec {
    const f = this.#byName.get(name);
    if (!f) {
      throw new IommuError(
        "ENOENT",
        "FieldTable",
        `${this.name} has no field "${name}"; fields: ${[...this.#byName.keys()].join(", ")}`,
      );
    }
    return f;
  }

  /** Number of 32-bit words. */
  get words(): number {
    return this.bytes >>> 2;
  }

  /** Read field `name` from `words` (starting at word `base`) as a bigint (raw field value). */
  getRaw(words: ArrayLike<number>, name: string, base = 0): bigint {
    return getBits(words, base, this.field(name).hi, this.field(name).lo);
  }

  /** Read field `name` as a number (exact for fields up to 53 bits wide). */
  get(words: ArrayLike<number>, name: string, base = 0): number {
    return Number(this.getRaw(words, name, base));
  }

  /** Write raw field value `value` into `words`; refuses values that do not fit. */
  set(words: Uint32Array, name: string, value: number | bigint, base = 0): void {
    const f = this.field(name);
    const v = BigInt(value);
    const width = BigInt(f.hi - f.lo + 1);
    if (v < 0n || v >> width !== 0n) {
      throw new IommuError(
        "ERANGE",
        "FieldTable",
        `${this.name}.${f.name} is ${width} bits wide; value ${v} does not fit`,
      );
    }
    setBits(words, base, f.hi, f.lo, v);
  }

  /** Decode every field; address fields are reported as addresses (`raw << lo`). */
  decode(words: ArrayLike<number>, base = 0): Decoded {
    const out: Decoded = {};
    for (const f of this.fields) {
      const raw = getBits(words, base, f.hi, f.lo);
      out[f.name] = f.address ? raw << BigInt(f.addressShift ?? f.lo) : raw;
    }
    return out;
  }

  /**
   * Encode from field values (missing fields are 0). Address fields take the
   * address (low bits below `lo` must be zero); others take the raw value.
   */
  encode(values: Readonly<Record<string, number | bigint>>): Uint32Array {
    const words = new Uint32Array(this.words);
    for (const [name, value] of Object.entries(values)) {
      const f = this.field(name);
      let v = BigInt(value);
      if (f.address) {
        const shift = BigInt(f.addressShift ?? f.lo);
        const mask = (1n << shift) - 1n;
        if ((v & mask) !== 0n) {
          throw new IommuError(
            "EINVAL",
            "FieldTable",
            `${this.name}.${f.name}: address 0x${v.toString(16)} is not aligned to ${
              1n << shift
            } bytes`,
          );
        }
        v >>= shift;
      }
      this.set(words, name, v);
    }
    return words;
  }

  /** Bits not covered by any field (the reserved bits), as a per-word mask. */
  reservedMask(): Uint32Array {
    const used = new Uint32Array(this.words);
    for (const f of this.fields) setBits(used, 0, f.hi, f.lo, (1n << BigInt(f.hi - f.lo + 1)) - 1n);
    return used.map((w) => ~w >>> 0);
  }

  /** One line per non-zero field: `NAME = 0x… (legend)`. */
  format(words: ArrayLike<number>, base = 0, all = false): string[] {
    const lines: string[] = [];
    const d = this.decode(words, base);
    for (const f of this.fields) {
      const v = d[f.name];
      if (!all && v === 0n) continue;
      const legend = f.values?.[Number(v)];
      lines.push(
        `${f.name.padEnd(12)} [${f.hi}:${f.lo}] = 0x${v.toString(16)}${
          legend ? ` (${legend})` : ""
        }`,
      );
    }
    return lines;
  }
}

/** Bits `hi:lo` of a little-endian array of 32-bit words, as a bigint. */
export function getBits(words: ArrayLike<number>, base: number, hi: number, lo: number): bigint {
  let v = 0n;
  for (let w = hi >>> 5; w >= lo >>> 5; w--) v = (v << 32n) | BigInt(words[base + w] >>> 0);
  const shift = BigInt(lo - ((lo >>> 5) << 5));
  return (v >> shift) & ((1n << BigInt(hi - lo + 1)) - 1n);
}

/** Set bits `hi:lo` of a little-endian array of 32-bit words to `value`. */
export function setBits(
  words: Uint32Array,
  base: number,
  hi: number,
  lo: number,
  value: bigint,
): void {
  for (let b = lo; b <= hi;) {
    const w = b >>> 5;
    const off = b & 31;
    const n = Math.min(32 - off, hi - b + 1);
    const mask = n === 32 ? 0xffffffff : ((1 << n) - 1) << off;
    const part = Number((value >> BigInt(b - lo)) & ((1n << BigInt(n)) - 1n));
    words[base + w] = ((words[base + w] & ~mask) | ((part << off) & mask)) >>> 0;
    b += n;
  }
}

/** Parse hex words as `inspect decode` takes them ("0x1 0x2" or 64-bit "0x00000002_00000001"): 64-bit tokens split into two 32-bit words. */
export function parseWords(tokens: readonly string[], bits: 32 | 64 = 64): Uint32Array {
  const out: number[] = [];
  for (const t of tokens) {
    const s = t.trim().replaceAll("_", "");
    if (!/^(0x)?[0-9a-fA-F]+$/.test(s)) {
      throw new IommuError("EINVAL", "parseWords", `"${t}" is not a hexadecimal word`);
    }
    const v = BigInt(s.startsWith("0x") ? s : "0x" + s);
    if (bits === 64) out.push(Number(v & 0xffffffffn), Number((v >> 32n) & 0xffffffffn));
    else out.push(Number(v & 0xffffffffn));
  }
  return Uint32Array.from(out);
}
