import assert from "node:assert/strict";
import { PhysMem } from "@iommu-lab/core";
import { IO_TLB_SEGSIZE, IO_TLB_SIZE, Swiotlb } from "../../dma-api/swiotlb.ts";
import { DMA_ATTR_PRIVILEGED, DmaDirection, dmaInfoToProt } from "../../dma-api/prot.ts";

Deno.test("swiotlb constants match the kernel", () => {
  assert.equal(IO_TLB_SIZE, 2048);
  assert.equal(IO_TLB_SEGSIZE, 128);
});

Deno.test("map copies the original in, aligned to the granule; unmap copies back FROM_DEVICE", () => {
  const mem = new PhysMem(40);
  const pool = new Swiotlb(mem, 0x100000, 64 * IO_TLB_SIZE);
  mem.writeBytes(0x5010, new Uint8Array([1, 2, 3, 4]));
  const tlb = pool.mapSingle(0x5010, 4, 4095);
  assert.equal(tlb % 4096, 0);
  assert.deepEqual([...mem.readBytes(tlb, 4)], [1, 2, 3, 4]);
  mem.writeBytes(tlb, new Uint8Array([9, 9]));
  pool.unmapSingle(tlb, 4, DmaDirection.FROM_DEVICE);
  assert.deepEqual([...mem.readBytes(0x5010, 4)], [9, 9, 3, 4]);
  assert.equal(pool.usedSlots, 0);
});

Deno.test("TO_DEVICE unmap does not copy back", () => {
  const mem = new PhysMem(40);
  const pool = new Swiotlb(mem, 0x100000, 64 * IO_TLB_SIZE);
  mem.writeBytes(0x5000, new Uint8Array([7]));
  const tlb = pool.mapSingle(0x5000, 1, 4095);
  mem.writeBytes(tlb, new Uint8Array([8]));
  pool.unmapSingle(tlb, 1, DmaDirection.TO_DEVICE);
  assert.equal(mem.read8(0x5000), 7);
});

Deno.test("sync for device refreshes the bounce copy; sync for cpu copies back", () => {
  const mem = new PhysMem(40);
  const pool = new Swiotlb(mem, 0x100000, 64 * IO_TLB_SIZE);
  const tlb = pool.mapSingle(0x5000, 8, 4095);
  mem.write8(0x5000, 0x42);
  pool.syncForDevice(tlb, 8, DmaDirection.BIDIRECTIONAL);
  assert.equal(mem.read8(tlb), 0x42);
  mem.write8(tlb + 1, 0x43);
  pool.syncForCpu(tlb, 8, DmaDirection.BIDIRECTIONAL);
  assert.equal(mem.read8(0x5001), 0x43);
});

Deno.test("a full pool fails with ENOMEM; a mapping never crosses a segment", () => {
  const mem = new PhysMem(40);
  const pool = new Swiotlb(mem, 0x100000, 4 * IO_TLB_SIZE);
  pool.mapSingle(0x1000, 4096, 4095);
  pool.mapSingle(0x2000, 4096, 4095);
  assert.throws(() => pool.mapSingle(0x3000, 1, 4095), { errno: "ENOMEM" });
  assert.throws(
    () => pool.mapSingle(0x3000, (IO_TLB_SEGSIZE + 1) * IO_TLB_SIZE, 4095),
    { errno: "ENOMEM" },
  );
  assert.equal(pool.counters.failures, 2);
});

Deno.test("unmapping an address that is not a bounce mapping fails with EINVAL", () => {
  const mem = new PhysMem(40);
  const pool = new Swiotlb(mem, 0x100000, 4 * IO_TLB_SIZE);
  assert.throws(() => pool.unmapSingle(0x100000, 1, 0), { errno: "EINVAL" });
});

Deno.test("dma_info_to_prot maps directions as the kernel does", () => {
  assert.equal(dmaInfoToProt(DmaDirection.BIDIRECTIONAL, false, 0), 3);
  assert.equal(dmaInfoToProt(DmaDirection.TO_DEVICE, false, 0), 1);
  assert.equal(dmaInfoToProt(DmaDirection.FROM_DEVICE, false, 0), 2);
  assert.equal(dmaInfoToProt(DmaDirection.TO_DEVICE, true, 0), 1 | 4);
  assert.equal(dmaInfoToProt(DmaDirection.FROM_DEVICE, false, DMA_ATTR_PRIVILEGED), 2 | 32);
  assert.equal(dmaInfoToProt(DmaDirection.NONE, true, 0), 0);
});
