import assert from "node:assert/strict";
import {
  ALL_ASIDS,
  ALL_ASIDS_AND_S2,
  atcTag,
  BY_IPA,
  S2_ONLY_ASID,
  type TlbEntry,
  tlbTag,
  TranslationCache,
} from "../../../backends/smmuv3/hw/tlb.ts";

function entry(va: number, sizeShift: number, ipa = 0, nested = false): TlbEntry {
  return { va, pa: va + 0x1000_0000, ipa, sizeShift, permP: 3, permU: 3, nested };
}

Deno.test("TLB lookups find pages and blocks; capacity evicts the oldest entry", () => {
  const t = new TranslationCache(2);
  const tag = tlbTag(0, 1, 5);
  t.insert(tag, entry(0x1000, 12));
  t.insert(tag, entry(0x20_0000, 21));
  assert.equal(t.lookup(tag, 0x1fff)?.va, 0x1000);
  assert.equal(t.lookup(tag, 0x3f_ffff)?.sizeShift, 21);
  assert.equal(t.lookup(tlbTag(0, 1, 6), 0x1000), undefined);
  t.insert(tag, entry(0x5000, 12));
  assert.equal(t.size, 2);
  assert.equal(t.lookup(tag, 0x1000), undefined); // oldest gone
});

Deno.test("context and range invalidation select by regime, VMID, ASID and IPA", () => {
  const t = new TranslationCache(100);
  t.insert(tlbTag(0, 1, 5), entry(0x1000, 12));
  t.insert(tlbTag(0, 1, 6), entry(0x1000, 12));
  t.insert(tlbTag(0, 1, S2_ONLY_ASID), entry(0x1000, 12, 0x1000));
  t.insert(tlbTag(0, 2, 5), entry(0x1000, 12));
  t.insert(tlbTag(1, 0, 5), entry(0x1000, 12));
  t.dropContexts(0, 1, ALL_ASIDS);
  assert.equal(t.size, 3); // S2-only of VMID 1, VMID 2, EL2 remain
  t.dropRange(0, 1, BY_IPA, 0x1000, 1);
  assert.equal(t.size, 2);
  t.dropContexts(1, 0, ALL_ASIDS_AND_S2);
  assert.equal(t.size, 1);
  t.dropAllEl1();
  assert.equal(t.size, 0);
});

Deno.test("ATC invalidation by SubstreamID, globally, and by range", () => {
  const t = new TranslationCache(100);
  t.insert(atcTag(8, -1), entry(0x1000, 12));
  t.insert(atcTag(8, 3), entry(0x1000, 12));
  t.insert(atcTag(8, 3), entry(0x9000, 12));
  t.insert(atcTag(9, -1), entry(0x1000, 12));
  t.dropAtc(8, 3, false, 0x8000, 0x2000, false);
  assert.equal(t.lookup(atcTag(8, 3), 0x9000), undefined);
  assert.ok(t.lookup(atcTag(8, 3), 0x1000));
  t.dropAtc(8, -1, true, 0, 0, true);
  assert.equal(t.size, 1);
  assert.ok(t.lookup(atcTag(9, -1), 0x1000));
});

Deno.test("range invalidation of one ASID drops pages and blocks overlapping the range only", () => {
  const t = new TranslationCache(100);
  const tag = tlbTag(0, 0, 3);
  t.insert(tag, entry(0x1000, 12));
  t.insert(tag, entry(0x3000, 12));
  t.insert(tag, entry(0x20_0000, 21));
  t.insert(tag, entry(0x4000_0000, 30));
  t.dropRange(0, 0, 3, 0x2000, 0x2000); // pages 0x2000..0x3fff
  assert.ok(t.lookup(tag, 0x1000));
  assert.equal(t.lookup(tag, 0x3000), undefined);
  t.dropRange(0, 0, 3, 0x30_0000, 1); // inside the 2 MiB block
  assert.equal(t.lookup(tag, 0x20_0000), undefined);
  t.dropRange(0, 0, 3, 0, 2 ** 40); // too large to probe: iterates
  assert.equal(t.size, 0);
});

Deno.test("a tag found absent by an invalidation is still created by the next insert and dropped by the next invalidation", () => {
  const t = new TranslationCache(8);
  const tag = tlbTag(0, 0, 1);
  // An invalidation of a context with no entries remembers the tag as absent.
  t.dropRange(0, 0, 1, 0x1000, 0x1000);
  assert.equal(t.lookup(tag, 0x1000), undefined);
  t.insert(tag, entry(0x1000, 12));
  assert.equal(t.lookup(tag, 0x1fff)?.pa, 0x1000_1000);
  assert.equal(t.size, 1);
  t.dropRange(0, 0, 1, 0x1000, 0x1000);
  assert.equal(t.size, 0);
  assert.equal(t.lookup(tag, 0x1000), undefined);
  // Absent again, then inserted again: found.
  t.dropRange(0, 0, 1, 0x1000, 0x1000);
  t.insert(tag, entry(0x2000, 12));
  assert.equal(t.lookup(tag, 0x2000)?.va, 0x2000);
});
