import assert from "node:assert/strict";
import {
  FLAT_CTRL,
  FLAT_DT_BASE,
  FLAT_DTE,
  FLAT_FAULT_STATUS,
  FLAT_ID,
  FLAT_INV,
  FLAT_PTE,
  flatTableBytes,
} from "../mod.ts";

Deno.test("register layouts encode known values", () => {
  assert.deepEqual([...FLAT_ID.encode({ VERSION: 1, APERTURE_BITS: 31, IOTLB_LOG2: 6 })], [
    0x00061f01,
  ]);
  assert.deepEqual([...FLAT_CTRL.encode({ EN: 1 })], [1]);
  assert.deepEqual([...FLAT_INV.encode({ ALL: 1 })], [1]);
  assert.deepEqual([...FLAT_DT_BASE.encode({ ADDR: 0x1_2345_6000, LOG2SIZE: 16 })], [
    0x23456010,
    1,
  ]);
  assert.deepEqual(
    [...FLAT_FAULT_STATUS.encode({ FAULT: 1, REASON: 5, WRITE: 1, RID: 0x0100 })],
    [0x01000151],
  );
  assert.deepEqual(FLAT_FAULT_STATUS.format([0x01000151]), [
    "FAULT        [0:0] = 0x1",
    "REASON       [7:4] = 0x5 (PTE_NOT_PRESENT)",
    "WRITE        [8:8] = 0x1",
    "RID          [31:16] = 0x100",
  ]);
});

Deno.test("memory structures encode known values and reserve the rest", () => {
  assert.deepEqual([...FLAT_DTE.encode({ V: 1, MODE: 2, TABLE: 0xf_ffff_f000 })], [
    0xfffff005,
    0xf,
  ]);
  assert.deepEqual(FLAT_DTE.format([5, 0]), [
    "V            [0:0] = 0x1",
    "MODE         [2:1] = 0x2 (TRANSLATE)",
  ]);
  assert.deepEqual([...FLAT_PTE.encode({ V: 1, W: 1, ADDR: 0x8000_0000 })], [0x80000005, 0]);
  assert.deepEqual([...FLAT_PTE.reservedMask()], [0x00000ff8, 0xfff00000]);
  assert.throws(() => FLAT_PTE.encode({ ADDR: 0x1234 }), /not aligned/);
  assert.equal(flatTableBytes(31), ((2 ** 31 - 2 ** 24) / 4096) * 8);
  assert.equal(flatTableBytes(25), 32768);
});
