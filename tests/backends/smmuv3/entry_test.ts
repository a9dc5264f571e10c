import assert from "node:assert/strict";
import fc from "fast-check";
import {
  cdUsed,
  type EntryWriter,
  steUsed,
  writeEntry,
} from "../../../backends/smmuv3/driver/entry.ts";
import {
  makeAbortSte,
  makeBypassSte,
  makeCdtableSte,
  makeS1Cd,
  makeS2Ste,
} from "../../../backends/smmuv3/driver/entry.ts";

const VTCR = { ps: 5, tg: 0, sh: 3, orgn: 1, irgn: 1, sl: 2, tsz: 16 };
const TCR = { ips: 5, tg: 0, sh: 3, orgn: 1, irgn: 1, tsz: 16 };

/** Every STE config the driver writes, with variants that differ in one or many words. */
function steConfigs(): [string, Uint32Array][] {
  const n = () => new Uint32Array(16);
  return [
    ["zero", n()],
    ["abort", makeAbortSte(n())],
    ["bypass", makeBypassSte(n())],
    ["s1 linear", makeCdtableSte(n(), 0x1000_0000, 0, 0, 0, false, false)],
    ["s1 linear ats", makeCdtableSte(n(), 0x1000_0000, 0, 0, 0, true, false)],
    ["s1 2lvl ssid0", makeCdtableSte(n(), 0x2000_0000, 2, 16, 2, false, true)],
    ["s1 2lvl bypass", makeCdtableSte(n(), 0x2000_0000, 2, 16, 1, false, true)],
    ["s1 2lvl terminate", makeCdtableSte(n(), 0x2000_0000, 2, 16, 0, false, true)],
    ["s1 other table", makeCdtableSte(n(), 0x3000_0000, 0, 8, 2, false, true)],
    ["s2 vmid1", makeS2Ste(n(), 1, VTCR, 0x4000_0000, false)],
    ["s2 vmid2", makeS2Ste(n(), 2, VTCR, 0x5000_0000, false)],
    ["s2 vmid1 ats", makeS2Ste(n(), 1, VTCR, 0x4000_0000, true)],
  ];
}

function cdConfigs(): [string, Uint32Array][] {
  const n = () => new Uint32Array(16);
  const o = { ha: false, hd: false, stall: false };
  return [
    ["clear", n()],
    ["asid1", makeS1Cd(n(), 1, TCR, 0x6000_0000, 0xf404ff44n, o)],
    ["asid1 other ttb", makeS1Cd(n(), 1, TCR, 0x7000_0000, 0xf404ff44n, o)],
    ["asid2", makeS1Cd(n(), 2, TCR, 0x7000_0000, 0xf404ff44n, o)],
    [
      "asid2 ha stall",
      makeS1Cd(n(), 2, TCR, 0x7000_0000, 0xf404ff44n, { ha: true, hd: false, stall: true }),
    ],
    [
      "asid3 epd0",
      (() => {
        const t = makeS1Cd(n(), 3, TCR, 0, 0xf404ff44n, o);
        t[0] |= 1 << 14;
        t[0] &= ~0x3fff | (1 << 14);
        t[2] = 0;
        t[3] = 0;
        return t;
      })(),
    ],
  ];
}

/** Interpretation of an entry: its value masked by the bits it uses (V=0 means "off"). */
function view(e: Uint32Array, used: (e: Uint32Array, u: Uint32Array) => void): string {
  const u = new Uint32Array(16);
  used(e, u);
  return [...e].map((w, i) => (w & u[i]) >>> 0).join(",");
}

/** Run writeEntry from `from` to `to`, checking after every 64-bit write what the SMMU could see. */
function transition(
  from: Uint32Array,
  to: Uint32Array,
  used: (e: Uint32Array, u: Uint32Array) => void,
  vMask: [number, number],
): { rounds: number; syncs: number } {
  const live = from.slice();
  const okViews = new Set([view(from, used), view(to, used)]);
  let syncs = 0;
  const w: EntryWriter = {
    used,
    read(out) {
      out.set(live);
    },
    write(i, lo, hi) {
      live[2 * i] = lo;
      live[2 * i + 1] = hi;
      const off = (live[vMask[0]] & vMask[1]) === 0;
      const v = view(live, used);
      assert.ok(off || okViews.has(v), `after writing word ${i} the SMMU sees a mix: ${v}`);
    },
    sync() {
      syncs++;
    },
  };
  const rounds = writeEntry(w, to);
  assert.deepEqual([...live], [...to]);
  return { rounds, syncs };
}

Deno.test("every STE transition (abort, bypass, stage 1 with each CD table, stage 2) is never a mix", () => {
  const cfgs = steConfigs();
  for (const [na, a] of cfgs) {
    for (const [nb, b] of cfgs) {
      const { rounds, syncs } = transition(a, b, steUsed, [0, 1]);
      assert.equal(rounds, syncs, `${na} -> ${nb}`);
      assert.ok(rounds <= 3, `${na} -> ${nb} took ${rounds} rounds`);
      if (na === nb) assert.equal(rounds, 0);
    }
  }
});

Deno.test("every CD transition is never a mix", () => {
  const cfgs = cdConfigs();
  for (const [na, a] of cfgs) {
    for (const [nb, b] of cfgs) {
      const { rounds } = transition(a, b, cdUsed, [0, 0x80000000]);
      assert.ok(rounds <= 3, `${na} -> ${nb}`);
    }
  }
});

Deno.test("fewest rounds: a hitless S1 CD-table change in one word, a breaking S1->S2 change in three", () => {
  const c = Object.fromEntries(steConfigs());
  // Only S1DSS (word 1) changes: hitless, 1 round.
  assert.equal(transition(c["s1 2lvl ssid0"], c["s1 2lvl bypass"], steUsed, [0, 1]).rounds, 1);
  // abort -> bypass: only CONFIG in word 0 and SHCFG (unused by abort) in word 1 -> 2 rounds
  assert.equal(transition(c["abort"], c["bypass"], steUsed, [0, 1]).rounds, 2);
  // S1 -> S2 changes used bits in words 0, 1, 2 and 3: breaking, 3 rounds.
  assert.equal(transition(c["s1 2lvl ssid0"], c["s2 vmid1"], steUsed, [0, 1]).rounds, 3);
  // ASID change in a live CD: word 0 only -> 1 round (+1 for cleaning)
  const d = Object.fromEntries(cdConfigs());
  assert.equal(transition(d["asid1 other ttb"], d["asid2"], cdUsed, [0, 0x80000000]).rounds, 1);
});

Deno.test("random STE sequences keep every intermediate state readable (fast-check)", () => {
  const cfgs = steConfigs().map((c) => c[1]);
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: cfgs.length - 1 }), { minLength: 1, maxLength: 12 }),
      (seq) => {
        let cur = cfgs[seq[0]];
        for (const i of seq.slice(1)) {
          transition(cur, cfgs[i], steUsed, [0, 1]);
          cur = cfgs[i];
        }
      },
    ),
    { numRuns: 100 },
  );
});
