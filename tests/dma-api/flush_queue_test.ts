import assert from "node:assert/strict";
import { DomainType, VirtualClock } from "@iommu-lab/core";
import { dmaDevice } from "../../dma-api/dma.ts";
import { FakeCore } from "./fake_core.ts";
import {
  FlushQueue,
  IOVA_DEFAULT_FQ_SIZE,
  IOVA_DEFAULT_FQ_TIMEOUT_NS,
  IOVA_SINGLE_FQ_SIZE,
  IOVA_SINGLE_FQ_TIMEOUT_NS,
} from "../../dma-api/flush-queue.ts";

function setup(opts = {}) {
  const clock = new VirtualClock();
  const released: number[] = [];
  const freed: number[] = [];
  let flushes = 0;
  const fq = new FlushQueue({
    clock,
    flushAll: () => flushes++,
    release: (pfn, _pages, freelist) => {
      released.push(pfn);
      freed.push(...freelist);
    },
  }, opts);
  return { clock, fq, released, freed, flushes: () => flushes };
}

Deno.test("kernel flush-queue constants", () => {
  assert.equal(IOVA_DEFAULT_FQ_SIZE, 256);
  assert.equal(IOVA_DEFAULT_FQ_TIMEOUT_NS, 10e6);
  assert.equal(IOVA_SINGLE_FQ_SIZE, 32768);
  assert.equal(IOVA_SINGLE_FQ_TIMEOUT_NS, 1e9);
});

Deno.test("queued IOVAs are released only after the 10 ms timer's flush-all", () => {
  const s = setup();
  s.fq.queueIova(10, 1, [0x5000]);
  s.fq.queueIova(11, 1, []);
  assert.equal(s.fq.pending, 2);
  s.clock.advance(IOVA_DEFAULT_FQ_TIMEOUT_NS - 1);
  assert.equal(s.flushes(), 0);
  assert.deepEqual(s.released, []);
  s.clock.advance(1);
  assert.equal(s.flushes(), 1, "one flush-all for both unmaps");
  assert.deepEqual(s.released, [10, 11]);
  assert.deepEqual(s.freed, [0x5000]);
  assert.equal(s.fq.pending, 0);
  assert.equal(s.fq.timerOn, false);
});

Deno.test("a full 256-entry ring flushes once and keeps going (255 entries fit)", () => {
  const s = setup();
  for (let i = 0; i < 255; i++) s.fq.queueIova(100 + i, 1, []);
  assert.equal(s.flushes(), 0);
  assert.equal(s.fq.pending, 255);
  s.fq.queueIova(1000, 1, []);
  assert.equal(s.flushes(), 1);
  assert.equal(s.fq.counters.fullFlushes, 1);
  assert.equal(s.released.length, 255);
  assert.equal(s.fq.pending, 1);
  // 1000 unmaps cost 3 flushes instead of 1000 syncs
  for (let i = 0; i < 999; i++) s.fq.queueIova(2000 + i, 1, []);
  assert.equal(s.flushes(), 4);
});

Deno.test("entries queued after a flush started wait for the next one", () => {
  const s = setup();
  s.fq.queueIova(1, 1, []);
  s.fq.flushIotlb();
  s.fq.queueIova(2, 1, []); // counter = start count 1: not covered by flush #1
  assert.deepEqual(s.released, [1]);
  s.clock.advance(IOVA_DEFAULT_FQ_TIMEOUT_NS);
  assert.deepEqual(s.released, [1, 2]);
});

Deno.test("per-CPU rings are separate; the timer drains them all", () => {
  const s = setup({ cpus: 2 });
  s.fq.queueIova(1, 1, [], 0);
  s.fq.queueIova(2, 1, [], 1);
  assert.equal(s.fq.pending, 2);
  s.clock.advance(IOVA_DEFAULT_FQ_TIMEOUT_NS);
  assert.deepEqual(s.released.sort(), [1, 2]);
  assert.equal(s.flushes(), 1);
});

Deno.test("the single queue holds 32767 entries and waits 1 s", () => {
  const s = setup({ single: true });
  for (let i = 0; i < 32767; i++) s.fq.queueIova(i + 1, 1, [], i % 4);
  assert.equal(s.flushes(), 0);
  s.clock.advance(IOVA_DEFAULT_FQ_TIMEOUT_NS);
  assert.equal(s.flushes(), 0);
  s.fq.queueIova(99999, 1, []);
  assert.equal(s.flushes(), 1);
  s.clock.advance(IOVA_SINGLE_FQ_TIMEOUT_NS);
  assert.equal(s.flushes(), 2);
  assert.equal(s.fq.pending, 0);
});

Deno.test("a shadow_on_flush device's DMA-FQ domain gets the single 1 s queue; others the per-CPU 10 ms one", () => {
  for (const shadow of [false, true]) {
    const core = new FakeCore(DomainType.DMA_FQ);
    const dev = core.machine.pci.add({ name: "nic0", bus: 1, device: 0, fn: 0 });
    dev.iommu = { priv: null, maxPasids: 0, groupId: 0, shadowOnFlush: shadow };
    const dma = dmaDevice(core, dev);
    const addrs: number[] = [];
    for (let i = 0; i < 300; i++) addrs.push(dma.dmaMapSingle(0x1000_0000 + i * 4096, 4096, 0));
    for (const a of addrs) dma.dmaUnmapSingle(a, 4096, 0);
    const fq = dma.layer.cookieOf(core.domain, dev).fq!;
    assert.equal(fq.single, shadow);
    // 300 unmaps overflow one 256-entry per-CPU ring once; the single queue holds them.
    assert.equal(core.flushAlls, shadow ? 0 : 1);
    core.machine.clock.advance(IOVA_DEFAULT_FQ_TIMEOUT_NS);
    assert.equal(core.flushAlls, shadow ? 0 : 2, "the 10 ms timer");
    core.machine.clock.advance(IOVA_SINGLE_FQ_TIMEOUT_NS);
    assert.equal(core.flushAlls, shadow ? 1 : 2, "the 1 s timer of the single queue");
    assert.equal(fq.pending, 0);
  }
});
