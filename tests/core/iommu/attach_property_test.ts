import assert from "node:assert/strict";
import fc from "fast-check";
import { type Errno, IommuCore, type IommuDomain, IommuError } from "../../../core/mod.ts";
import { dev, FakeDriver, machineWith } from "./fake-driver.ts";

// Random attach / detach / replace / PASID / ownership sequences against a
// plain model of who is attached where. Devices a and b share group "ab"
// (a has 16 PASIDs, b 8); c is alone (4 PASIDs). Three user domains.

type Op =
  | { k: "attach"; d: number; g: number; fail: number }
  | { k: "detach"; d: number; g: number }
  | { k: "replace"; d: number; g: number; fail: number }
  | { k: "pasid"; d: number; dev: number; pasid: number; fail: number }
  | { k: "unpasid"; d: number; dev: number; pasid: number }
  | { k: "repasid"; d: number; dev: number; pasid: number }
  | { k: "claim"; dev: number; owner: number }
  | { k: "release"; dev: number }
  | { k: "use"; dev: number }
  | { k: "unuse"; dev: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant("attach" as const), d: fc.nat(2), g: fc.nat(1), fail: fc.nat(3) }),
  fc.record({ k: fc.constant("detach" as const), d: fc.nat(2), g: fc.nat(1) }),
  fc.record({ k: fc.constant("replace" as const), d: fc.nat(2), g: fc.nat(1), fail: fc.nat(3) }),
  fc.record({
    k: fc.constant("pasid" as const),
    d: fc.nat(2),
    dev: fc.nat(2),
    pasid: fc.nat(17),
    fail: fc.nat(3),
  }),
  fc.record({
    k: fc.constant("unpasid" as const),
    d: fc.nat(2),
    dev: fc.nat(2),
    pasid: fc.nat(17),
  }),
  fc.record({
    k: fc.constant("repasid" as const),
    d: fc.nat(2),
    dev: fc.nat(2),
    pasid: fc.nat(17),
  }),
  fc.record({ k: fc.constant("claim" as const), dev: fc.nat(2), owner: fc.nat(1) }),
  fc.record({ k: fc.constant("release" as const), dev: fc.nat(2) }),
  fc.record({ k: fc.constant("use" as const), dev: fc.nat(2) }),
  fc.record({ k: fc.constant("unuse" as const), dev: fc.nat(2) }),
);

interface ModelGroup {
  devs: number[];
  def: IommuDomain;
  dom: IommuDomain;
  count: number;
  owner: object | null;
  pasids: Map<number, IommuDomain>;
}

function run(ops: Op[]): void {
  const m = machineWith([
    dev("a", 1, { pasidBits: 4 }),
    dev("b", 2, { pasidBits: 3 }),
    dev("c", 3, { pasidBits: 2 }),
  ]);
  const drv = new FakeDriver({ deviceGroup: (d) => (d.name === "c" ? "c" : "ab") });
  const core = new IommuCore(m);
  core.registerDriver(drv);
  const devs = ["a", "b", "c"].map((n) => m.pci.byName(n)!);
  const maxP = [16, 8, 4];
  const doms = [0, 1, 2].map(() => core.domainAllocPaging(devs[0]));
  const owners = [{}, {}];
  const blocked = drv.blockedDomain!;
  const cg = [core.groupOf(devs[0]), core.groupOf(devs[2])];
  const mg: ModelGroup[] = cg.map((g, i) => ({
    devs: i === 0 ? [0, 1] : [2],
    def: g.defaultDomain!,
    dom: g.defaultDomain!,
    count: 0,
    owner: null,
    pasids: new Map(),
  }));
  const groupOfDev = (i: number) => (i === 2 ? 1 : 0);

  const expectErr = (errno: Errno | null, f: () => void) => {
    if (errno === null) {
      f();
      return;
    }
    assert.throws(f, (e) => e instanceof IommuError && e.errno === errno);
  };

  for (const op of ops) {
    switch (op.k) {
      case "attach":
      case "replace": {
        const g = mg[op.g];
        const d = doms[op.d];
        let want: Errno | null = null;
        if (op.k === "attach" && g.dom !== g.def && g.dom !== blocked) want = "EBUSY";
        // fail the op.fail-th device attach (0 = no failure)
        const willFail = want === null && g.dom !== d && op.fail > 0 && op.fail <= g.devs.length;
        if (willFail) {
          drv.failAttachAt = drv.attachCalls + op.fail;
          want = "EINVAL";
        }
        expectErr(
          want,
          () =>
            op.k === "attach"
              ? core.attachGroup(d, cg[op.g])
              : core.replaceGroupDomain(cg[op.g], d),
        );
        drv.failAttachAt = 0;
        if (want === null) g.dom = d;
        break;
      }
      case "detach": {
        const g = mg[op.g];
        const d = doms[op.d];
        const want: Errno | null = g.dom !== d ? "EINVAL" : null;
        expectErr(want, () => core.detachGroup(d, cg[op.g]));
        if (want === null) g.dom = g.owner ? blocked : g.def;
        break;
      }
      case "pasid": {
        const g = mg[groupOfDev(op.dev)];
        const d = doms[op.d];
        let want: Errno | null = null;
        if (op.pasid === 0 || g.devs.some((i) => op.pasid >= maxP[i])) want = "EINVAL";
        else if (g.pasids.has(op.pasid)) want = "EBUSY";
        else if (op.fail > 0 && op.fail <= g.devs.length) {
          drv.failPasidAt = drv.pasidCalls + op.fail;
          want = "ENOSPC";
        }
        expectErr(want, () => core.attachDevicePasid(d, devs[op.dev], op.pasid));
        drv.failPasidAt = 0;
        if (want === null) g.pasids.set(op.pasid, d);
        break;
      }
      case "unpasid": {
        const g = mg[groupOfDev(op.dev)];
        const d = doms[op.d];
        const want: Errno | null = g.pasids.get(op.pasid) !== d ? "EINVAL" : null;
        expectErr(want, () => core.detachDevicePasid(d, devs[op.dev], op.pasid));
        if (want === null) g.pasids.delete(op.pasid);
        break;
      }
      case "repasid": {
        const g = mg[groupOfDev(op.dev)];
        const d = doms[op.d];
        const want: Errno | null = op.pasid === 0 || !g.pasids.has(op.pasid) ? "EINVAL" : null;
        expectErr(want, () => core.replaceDevicePasid(d, devs[op.dev], op.pasid));
        if (want === null) g.pasids.set(op.pasid, d);
        break;
      }
      case "claim": {
        const g = mg[groupOfDev(op.dev)];
        const o = owners[op.owner];
        let want: Errno | null = null;
        if (g.count > 0) {
          if (g.owner !== o) want = "EPERM";
          else g.count++;
        } else if (g.dom !== g.def || g.pasids.size > 0) want = "EBUSY";
        else {
          g.count = 1;
          g.owner = o;
          g.dom = blocked;
        }
        expectErr(want, () => core.deviceClaimDmaOwner(devs[op.dev], o));
        break;
      }
      case "release": {
        const g = mg[groupOfDev(op.dev)];
        let want: Errno | null = null;
        if (g.count > 1 && g.owner) g.count--;
        else if (g.count === 0 || !g.owner || g.pasids.size > 0) want = "EINVAL";
        else {
          g.count = 0;
          g.owner = null;
          g.dom = g.def;
        }
        expectErr(want, () => core.deviceReleaseDmaOwner(devs[op.dev]));
        break;
      }
      case "use": {
        const g = mg[groupOfDev(op.dev)];
        const busy = g.count > 0 && (g.dom !== g.def || g.owner !== null || g.pasids.size > 0);
        expectErr(busy ? "EBUSY" : null, () => core.deviceUseDefaultDomain(devs[op.dev]));
        if (!busy) g.count++;
        break;
      }
      case "unuse": {
        const g = mg[groupOfDev(op.dev)];
        const bad = g.count === 0 || g.owner !== null || g.pasids.size > 0;
        expectErr(bad ? "EINVAL" : null, () => core.deviceUnuseDefaultDomain(devs[op.dev]));
        if (!bad) g.count--;
        break;
      }
    }
    // Core state, the core's per-device view and the driver's own view all match the model.
    for (let gi = 0; gi < 2; gi++) {
      const g = mg[gi];
      const c = cg[gi];
      assert.equal(c.domain, g.dom, `group ${gi} domain after ${JSON.stringify(op)}`);
      assert.equal(c.ownerCount, g.count);
      assert.equal(c.owner, g.owner);
      assert.deepEqual([...c.pasidArray.entries()].sort(), [...g.pasids.entries()].sort());
      for (const i of g.devs) {
        assert.equal(core.deviceDomainOf(devs[i]), g.dom);
        assert.equal(
          drv.current.get(devs[i]) as IommuDomain,
          g.dom,
          `driver view of ${devs[i].name}`,
        );
        for (let p = 1; p < 17; p++) {
          assert.equal(
            drv.pasids.get(`${devs[i].name}:${p}`) as IommuDomain | undefined,
            g.pasids.get(p),
          );
        }
      }
    }
  }
}

Deno.test("random attach/detach/replace/PASID/ownership sequences match a reference model", () => {
  fc.assert(fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => run(ops)), { numRuns: 150 });
});
