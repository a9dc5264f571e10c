/** Invalidation-queue errors: IQE, ITE and ICE as the hardware reports them and the driver handles them. */
import assert from "node:assert/strict";
import { IOMMU_READ, IommuError, Machine } from "@iommu-lab/core";
import vtd, {
  FSTS,
  FSTS_REG,
  GCMD,
  IQERCD_REG,
  QI_DIOTLB_DESC,
  QI_IOTLB_DESC,
  QI_IWD_DESC,
  REG,
  type VtdHardware,
} from "../../../backends/vtd/mod.ts";
import { setup, xlate } from "./helpers.ts";

const QUEUE = 0x10000;
const STATUS = 0x20000;
const SID = 0x0310;

/** A bare unit with queued invalidation enabled on a 4 KiB queue of 128-bit descriptors. */
function bare() {
  const m = new Machine({ paBits: 48 });
  m.pci.add({ name: "acc", bus: 3, device: 2, fn: 0, ats: true, pri: true, pasidBits: 8 });
  const hw = vtd.createHardware(m, {}) as VtdHardware;
  const wr = (off: number, v: number) => m.bus.write32(hw.mmioBase + off, v);
  const rd = (off: number) => m.bus.read32(hw.mmioBase + off);
  wr(REG.FECTL, 0); // unmask the fault event: each event is one raise
  wr(REG.IQA, QUEUE);
  wr(REG.IQA + 4, 0);
  wr(REG.GCMD, GCMD.QIE);
  let tail = 0;
  /** Write descriptors at the software tail (not yet submitted). */
  const put = (...descs: Uint32Array[]) => {
    for (const d of descs) {
      for (let i = 0; i < 4; i++) m.mem.write32(QUEUE + tail + 4 * i, d[i]);
      tail += 16;
    }
  };
  const submit = () => m.bus.write64(hw.mmioBase + REG.IQT, BigInt(tail));
  const devtlb = () => QI_DIOTLB_DESC.encode({ TYPE: 3, SID });
  const wait = (data: number) =>
    QI_IWD_DESC.encode({ TYPE: 5, SW: 1, STATUS_DATA: data, STATUS_ADDR: STATUS });
  const faults = () => m.irq.raised[`${hw.name}:fault`] ?? 0;
  const iqercd = () => IQERCD_REG.decode([rd(REG.IQERCD), rd(REG.IQERCD + 4)]);
  return { m, hw, wr, rd, put, submit, devtlb, wait, faults, iqercd, tail: () => tail };
}

Deno.test("FSTS_REG and IQERCD_REG field tables decode known values", () => {
  const f = FSTS_REG.decode([0x0000_0360]);
  assert.deepEqual([f.ICE, f.ITE, f.IQE, f.PPF, f.FRI], [1n, 1n, 0n, 0n, 3n]);
  assert.equal(FSTS_REG.encode({ ICE: 1 })[0], FSTS.ICE);
  assert.equal(FSTS_REG.encode({ ITE: 1, IQE: 1 })[0], FSTS.ITE | FSTS.IQE);
  // ICESID 63:48, ITESID 47:32, IQEI 3:0.
  const e = IQERCD_REG.encode({ ICESID: 0x0310, ITESID: 0x0b01, IQEI: 4 });
  assert.deepEqual([...e], [0x4, 0x0310_0b01]);
});

Deno.test("a stray invalid completion (bad source-id) sets ICE and ICESID, and the queue goes on", () => {
  const q = bare();
  q.hw.injectBadCompletion(SID, "sid", { sid: 0x0999, alsoValid: true });
  q.put(q.devtlb(), q.wait(0x1234));
  q.submit();
  assert.equal(q.rd(REG.FSTS), FSTS.ICE);
  assert.equal(q.iqercd().ICESID, 0x999n);
  assert.equal(q.faults(), 1, "one fault event");
  assert.equal(q.rd(REG.IQH), 0x20, "both descriptors fetched: ICE does not stop the queue");
  assert.equal(q.m.mem.read32(STATUS), 0x1234, "the wait descriptor completed");
  assert.equal(q.hw.counters.qiIce, 1);
  assert.equal(q.hw.counters.qiErrors, 0, "no queue error");
  // A second invalid completion while ICE is set: ICESID keeps the first,
  // and it is no new interrupt condition.
  q.hw.injectBadCompletion(SID, "sid", { sid: 0x0777, alsoValid: true });
  q.put(q.devtlb(), q.wait(0x5678));
  q.submit();
  assert.equal(q.rd(REG.IQH), 0x40);
  assert.equal(q.m.mem.read32(STATUS), 0x5678);
  assert.equal(q.iqercd().ICESID, 0x999n);
  assert.equal(q.faults(), 1);
  assert.equal(q.hw.counters.qiIce, 2);
  // ICE is RW1C.
  q.wr(REG.FSTS, FSTS.ICE);
  assert.equal(q.rd(REG.FSTS), 0);
});

Deno.test("an invalid completion (bad ITag) alone leaves the invalidation outstanding: ICE then ITE", () => {
  const q = bare();
  q.m.mem.write32(STATUS, 0);
  q.hw.injectBadCompletion(SID, "itag");
  q.put(q.devtlb(), q.wait(0x1234));
  q.submit();
  assert.equal(q.rd(REG.FSTS), FSTS.ICE | FSTS.ITE);
  const e = q.iqercd();
  assert.deepEqual([e.ICESID, e.ITESID], [BigInt(SID), BigInt(SID)]);
  assert.equal(q.faults(), 1, "ITE while ICE is set is no new interrupt condition");
  assert.equal(q.rd(REG.IQH), 0x20, "ITE discards the pending descriptors");
  assert.equal(q.m.mem.read32(STATUS), 0, "the wait descriptor was aborted");
  // ITE stops fetching: a new submission waits ...
  q.put(q.wait(0xaaaa));
  q.submit();
  assert.equal(q.rd(REG.IQH), 0x20);
  assert.equal(q.m.mem.read32(STATUS), 0);
  // ... until ITE is cleared; ICE, still set, does not hold the queue.
  q.wr(REG.FSTS, FSTS.ITE);
  assert.equal(q.rd(REG.FSTS), FSTS.ICE);
  assert.equal(q.rd(REG.IQH), 0x30);
  assert.equal(q.m.mem.read32(STATUS), 0xaaaa);
});

Deno.test("a bad source-id completion must name another SID", () => {
  const q = bare();
  assert.throws(
    () => q.hw.injectBadCompletion(SID, "sid", { sid: SID }),
    (e: unknown) => e instanceof IommuError && e.errno === "EINVAL",
  );
});

Deno.test("an ATS timeout records ITESID, raises one fault event and discards up to the tail", () => {
  const q = bare();
  q.hw.injectAtsTimeout(SID);
  q.put(q.devtlb(), q.wait(0x1));
  q.submit();
  assert.equal(q.rd(REG.FSTS), FSTS.ITE);
  assert.equal(q.iqercd().ITESID, BigInt(SID));
  assert.equal(q.faults(), 1);
  assert.equal(q.rd(REG.IQH), q.tail());
});

Deno.test("the driver clears a stray ICE and the submission succeeds; the device TLB was invalidated", () => {
  const { drv, hw, acc, m } = setup();
  const d = drv.domainAllocPaging(acc, 0);
  d.attachDev(acc, null);
  d.mapPages(0x0, 0x8000_0000, 4096, 1, IOMMU_READ);
  xlate(hw, acc, 0x0);
  assert.equal(hw.devtlbHas(acc.rid, -1, 0x0), true);
  hw.injectBadCompletion(acc.rid, "itag", { alsoValid: true });
  const w = QI_DIOTLB_DESC.encode({ TYPE: 3, SID: acc.rid });
  drv.submitRaw(w[0], w[1], w[2], w[3]);
  assert.equal(hw.devtlbHas(acc.rid, -1, 0x0), false);
  assert.equal(m.bus.read32(hw.mmioBase + REG.FSTS) & FSTS.ICE, 0, "the driver cleared ICE");
  assert.deepEqual(drv.qiFaults, [`ICE SID 0x${acc.rid.toString(16)}`]);
  assert.equal(
    m.bus.read32(hw.mmioBase + REG.IQH),
    m.bus.read32(hw.mmioBase + REG.IQT),
    "the queue is drained",
  );
});

Deno.test("ICE with ITE: the driver sees ETIMEDOUT, clears ITE first and ICE at the next sync", () => {
  const { drv, hw, acc, m } = setup();
  const fsts = () => m.bus.read32(hw.mmioBase + REG.FSTS);
  hw.injectBadCompletion(acc.rid, "sid", { sid: 0x0042 });
  const w = QI_DIOTLB_DESC.encode({ TYPE: 3, SID: acc.rid });
  assert.throws(
    () => drv.submitRaw(w[0], w[1], w[2], w[3]),
    (e: unknown) => e instanceof IommuError && e.errno === "ETIMEDOUT",
  );
  assert.deepEqual(drv.qiFaults, [`ITE SID 0x${acc.rid.toString(16)}`, "ICE SID 0x42"]);
  // qi_check_fault returns from the ITE branch before it reaches ICE.
  assert.equal(fsts(), FSTS.ICE);
  const iotlb = QI_IOTLB_DESC.encode({ TYPE: 2, GRAN: 1 });
  drv.submitRaw(iotlb[0], iotlb[1], iotlb[2], iotlb[3]);
  assert.equal(fsts(), 0);
  assert.equal(drv.qiFaults.length, 3);
  assert.equal(hw.counters.qiErrors, 1, "only the ITE is a queue error");
});

Deno.test("inspect decode names FSTS.ICE/ITE and the IQERCD source-ids", async () => {
  const { inspectDecode } = await import("../../../cli/commands/decode.ts");
  const fsts = await inspectDecode("vtd_fsts_reg", ["0x60"], true, false);
  assert.match(fsts, /ICE +\[5:5\] = 0x1/);
  assert.match(fsts, /ITE +\[6:6\] = 0x1/);
  assert.match(fsts, /IQE +\[4:4\] = 0x0/);
  const iqer = await inspectDecode("VTD_IQERCD_REG", ["0x0042031000000000"], false, false);
  assert.match(iqer, /ITESID +\[47:32\] = 0x310/);
  assert.match(iqer, /ICESID +\[63:48\] = 0x42/);
});
