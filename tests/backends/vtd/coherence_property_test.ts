/**
 * Cache coherence with checking mode OFF: random sequences of attach /
 * detach, set_dev_pasid / remove, map / unmap (4 KiB and 2 MiB, whole-table
 * unmaps that free a level-1 table) and device DMA with and without PASID,
 * driven through the driver only. Every DMA outcome (the data read, where a
 * write landed, or the fault reason) is compared with a plain reference
 * model of which IOVA maps where in each domain and which domain each RID /
 * PASID is attached to. A driver that leaves a stale context-cache,
 * PASID-cache, IOTLB, paging-structure-cache or device-TLB entry makes some
 * DMA disagree with the reference.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  IOMMU_READ,
  IOMMU_WRITE,
  IommuError,
  IotlbGather,
  Machine,
  type PciDevice,
} from "@iommu-lab/core";
import vtd, { type VtdDomain, type VtdDriver } from "../../../backends/vtd/mod.ts";

const MB2 = 0x200000;
const REGIONS = 3;
const PAGES = [0, 1, 7, 511];
const PASIDS = [1, 2, 65];
/** Output frames live far above the page-table pool: each map takes fresh ones. */
const FRAMES = 0x40_0000_0000;

type Target = number; // 0..1 paging domains, 2 identity, 3 blocked
type Op =
  | { t: "attach"; dev: number; to: Target }
  | { t: "pasid"; pasid: number; to: Target }
  | { t: "map4k"; d: number; r: number; p: number; w: boolean }
  | { t: "map2m"; d: number; r: number; w: boolean }
  | { t: "unmap4k"; d: number; r: number; p: number }
  | { t: "unmapRegion"; d: number; r: number; big: boolean }
  | { t: "dma"; sel: number; r: number; p: number; w: boolean }
  | { t: "sweep" };

const reg = fc.integer({ min: 0, max: REGIONS - 1 });
const pg = fc.integer({ min: 0, max: PAGES.length - 1 });
const dom = fc.integer({ min: 0, max: 1 });
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant("attach" as const),
      dev: fc.integer({ min: 0, max: 1 }),
      to: fc.constantFrom(0, 1, 0, 1, 2, 3),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant("pasid" as const),
      pasid: fc.integer({ min: 0, max: PASIDS.length - 1 }),
      to: fc.constantFrom(0, 1, 0, 1, 2, 3),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant("map4k" as const),
      d: dom,
      r: reg,
      p: pg,
      w: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant("map2m" as const), d: dom, r: reg, w: fc.boolean() }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ t: fc.constant("unmap4k" as const), d: dom, r: reg, p: pg }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("unmapRegion" as const),
      d: dom,
      r: reg,
      big: fc.boolean(),
    }),
  },
  {
    weight: 10,
    arbitrary: fc.record({
      t: fc.constant("dma" as const),
      sel: fc.integer({ min: 0, max: 1 + PASIDS.length }),
      r: reg,
      p: pg,
      w: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ t: "sweep" as const }) },
);

/** One mapped page or superpage in the reference: output address, writable, frame tag. */
interface Leaf {
  pa: number;
  w: boolean;
}

/** The reference model of one paging domain. */
class RefDomain {
  /** 4 KiB leaves by page number. */
  readonly pages = new Map<number, Leaf>();
  /** Regions (2 MiB) with a level-1 table or a superpage. */
  readonly regions = new Map<number, "table" | "super">();
  /** Superpages by region. */
  readonly supers = new Map<number, Leaf>();

  /** The leaf translating `iova`, and its output address. */
  lookup(iova: number): { pa: number; w: boolean } | null {
    const r = Math.floor(iova / MB2);
    const s = this.supers.get(r);
    if (s) return { pa: s.pa + (iova % MB2), w: s.w };
    const l = this.pages.get(Math.floor(iova / 4096));
    return l ? { pa: l.pa + (iova % 4096), w: l.w } : null;
  }

  /** True when some 4 KiB page of region `r` is mapped. */
  anyPage(r: number): boolean {
    for (const k of this.pages.keys()) if (Math.floor(k / 512) === r) return true;
    return false;
  }
}

interface Mode {
  name: string;
  sm: boolean;
  fs: boolean;
  opts: Record<string, boolean>;
}

const MODES: Mode[] = [
  { name: "scalable mode, first-stage domains", sm: true, fs: true, opts: {} },
  { name: "scalable mode, second-stage domains", sm: true, fs: false, opts: { flts: false } },
  { name: "legacy mode", sm: false, fs: false, opts: { smts: false } },
];

function run(mode: Mode, ops: Op[]): void {
  const m = new Machine({ paBits: 48 });
  const nic = m.pci.add({ name: "nic", bus: 0, device: 2, fn: 0 });
  const acc = m.pci.add({ name: "acc", bus: 3, device: 0, fn: 1, pasidBits: 8, ats: true });
  const { driver } = vtd.create(m, { ...mode.opts, checking: false });
  const drv = driver as VtdDriver;
  drv.probeDevice(nic);
  drv.probeDevice(acc);
  const devs = [nic, acc];
  const doms = [drv.domainAllocPaging(acc, 0), drv.domainAllocPaging(acc, 0)] as VtdDomain[];
  assert.equal(doms[0].firstStage, mode.fs);
  const refs = [new RefDomain(), new RefDomain()];
  const targets = [doms[0], doms[1], drv.identityDomain, drv.blockedDomain];
  /** Reference attachments: RID of each device, then each PASID of acc (3 = blocked). */
  const ridAt: Target[] = [3, 3];
  const pasidAt: Target[] = PASIDS.map(() => 3);
  let nextFrame = 0;
  let nextBig = 0;
  let stamp = 0;
  /** A fresh 4 KiB output frame, tagged at offset 8. */
  const frame = (): number => {
    const pa = FRAMES + (nextFrame++) * 4096;
    m.mem.write32(pa + 8, 0x5a000000 + nextFrame);
    return pa;
  };
  /** A fresh 2 MiB output block, each probed page tagged at offset 8. */
  const block = (): number => {
    const pa = FRAMES + 0x10_0000_0000 + (nextBig++) * MB2;
    for (const p of PAGES) m.mem.write32(pa + p * 4096 + 8, 0x6b000000 + nextBig * 1024 + p);
    return pa;
  };
  const prot = (w: boolean) => w ? IOMMU_READ | IOMMU_WRITE : IOMMU_READ;
  const sync = (d: VtdDomain, f: (g: IotlbGather) => number): number => {
    const g = new IotlbGather();
    const n = f(g);
    d.iotlbSync(g);
    return n;
  };
  const attachTo = (t: Target, dev: PciDevice, pasid: number) => {
    if (pasid === 0) targets[t].attachDev(dev, null);
    else targets[t].setDevPasid(dev, pasid, null);
  };

  /** The DMA of `sel` (0 nic, 1 acc, 2.. acc with PASIDS[sel - 2]) at `iova`, checked. */
  const dma = (sel: number, iova: number, write: boolean, why: string): void => {
    const dev = sel === 0 ? nic : acc;
    const pasidIdx = mode.sm && sel >= 2 ? sel - 2 : -1;
    const at = pasidIdx >= 0 ? pasidAt[pasidIdx] : ridAt[sel === 0 ? 0 : 1];
    const opts = pasidIdx >= 0 ? { pasid: PASIDS[pasidIdx] } : undefined;
    let want: { pa: number; w: boolean } | null = null;
    let cls: "none" | "page" | "ok";
    if (at === 3) cls = "none";
    else if (at === 2) {
      cls = "ok";
      want = { pa: iova, w: true };
    } else {
      want = refs[at].lookup(iova);
      cls = want === null || (write && !want.w) ? "page" : "ok";
    }
    const master = m.master(dev);
    const ctx = `${why}: ${write ? "write" : "read"} ${dev.name}${
      opts ? ` PASID ${opts.pasid}` : ""
    } iova 0x${iova.toString(16)}`;
    if (!write) {
      const r = master.read(iova + 8, 4, opts);
      if (cls === "ok") {
        assert.equal(r.ok, true, `${ctx}: expected data, got fault ${r.fault}`);
        const got = new DataView(r.data!.buffer).getUint32(0, true);
        assert.equal(got, m.mem.read32(want!.pa + 8), `${ctx}: data from the wrong page`);
        assert.equal(r.faultCode, 0);
        return;
      }
      assert.equal(r.ok, false, `${ctx}: expected a ${cls} fault, read succeeded`);
      assertFault(cls, r.faultCode, false, ctx, want);
      return;
    }
    const v = 0x7c000000 + ++stamp;
    const r = master.write(iova + 16, new Uint8Array(new Uint32Array([v]).buffer), opts);
    if (cls === "ok") {
      assert.equal(r.ok, true, `${ctx}: expected the write to land, got fault ${r.fault}`);
      assert.equal(m.mem.read32(want!.pa + 16), v, `${ctx}: the write landed elsewhere`);
      return;
    }
    assert.equal(r.ok, false, `${ctx}: expected a ${cls} fault, write succeeded`);
    assertFault(cls, r.faultCode, true, ctx, want);
  };

  const assertFault = (
    cls: "none" | "page",
    code: number,
    write: boolean,
    ctx: string,
    want: { pa: number; w: boolean } | null,
  ) => {
    let codes: number[];
    if (cls === "none") codes = mode.sm ? [0x51, 0x59] : [0x1, 0x2];
    else if (!mode.sm) codes = write ? [0x5] : [0x6];
    else if (!mode.fs) codes = [0x69];
    else codes = want === null ? [0x61] : [0x75];
    assert.ok(
      codes.includes(code),
      `${ctx}: fault 0x${code.toString(16)}, expected ${
        codes.map((c) => "0x" + c.toString(16)).join(" or ")
      }`,
    );
  };

  // Start attached: nic and PASID 1 to domain 0, acc and PASID 2 to domain 1.
  const start: [number, number, Target][] = [[0, 0, 0], [1, 0, 1]];
  if (mode.sm) start.push([1, 1, 0], [1, 2, 1]);
  for (const [dv, pi, t] of start) {
    attachTo(t, devs[dv], pi === 0 ? 0 : PASIDS[pi - 1]);
    if (pi === 0) ridAt[dv] = t;
    else pasidAt[pi - 1] = t;
  }
  for (let i = 0; i < ops.length; i++) {
    const o = ops[i];
    const why = `step ${i} ${JSON.stringify(o)}`;
    switch (o.t) {
      case "attach":
        attachTo(o.to, devs[o.dev], 0);
        ridAt[o.dev] = o.to;
        break;
      case "pasid":
        if (!mode.sm) break;
        attachTo(o.to, acc, PASIDS[o.pasid]);
        pasidAt[o.pasid] = o.to;
        break;
      case "map4k": {
        const ref = refs[o.d];
        const page = o.r * 512 + PAGES[o.p];
        if (ref.regions.get(o.r) === "super" || ref.pages.has(page)) break;
        const pa = frame();
        doms[o.d].mapPages(page * 4096, pa, 4096, 1, prot(o.w));
        doms[o.d].iotlbSyncMap(page * 4096, 4096);
        ref.pages.set(page, { pa, w: o.w });
        ref.regions.set(o.r, "table");
        break;
      }
      case "map2m": {
        const ref = refs[o.d];
        if (ref.regions.get(o.r) === "super") break;
        if (ref.anyPage(o.r)) {
          assert.throws(
            () => doms[o.d].mapPages(o.r * MB2, block(), MB2, 1, prot(o.w)),
            (e: unknown) => e instanceof IommuError && e.errno === "EEXIST",
            `${why}: a block over a table that still maps pages`,
          );
          break;
        }
        const pa = block();
        doms[o.d].mapPages(o.r * MB2, pa, MB2, 1, prot(o.w));
        doms[o.d].iotlbSyncMap(o.r * MB2, MB2);
        ref.regions.set(o.r, "super");
        ref.supers.set(o.r, { pa, w: o.w });
        break;
      }
      case "unmap4k": {
        const ref = refs[o.d];
        const page = o.r * 512 + PAGES[o.p];
        const n = sync(doms[o.d], (g) => doms[o.d].unmapPages(page * 4096, 4096, 1, g));
        assert.equal(n, ref.pages.has(page) ? 4096 : 0, why);
        ref.pages.delete(page);
        break;
      }
      case "unmapRegion": {
        const ref = refs[o.d];
        const d = doms[o.d];
        const n = sync(
          d,
          (g) => o.big ? d.unmapPages(o.r * MB2, MB2, 1, g) : d.unmapPages(o.r * MB2, 4096, 512, g),
        );
        assert.equal(n, ref.regions.has(o.r) ? MB2 : 0, why);
        for (const k of [...ref.pages.keys()]) if (Math.floor(k / 512) === o.r) ref.pages.delete(k);
        ref.regions.delete(o.r);
        ref.supers.delete(o.r);
        break;
      }
      case "dma":
        dma(o.sel, o.r * MB2 + PAGES[o.p] * 4096, o.w, why);
        break;
      case "sweep":
        for (let sel = 0; sel < 2 + (mode.sm ? PASIDS.length : 0); sel++) {
          for (let r = 0; r < REGIONS; r++) {
            for (const p of PAGES) dma(sel, r * MB2 + p * 4096, false, `${why} sweep`);
          }
        }
        break;
    }
  }
}

for (const mode of MODES) {
  Deno.test(`random attach/PASID/map/unmap/DMA sequences agree with a reference model, checking mode off (${mode.name})`, () => {
    fc.assert(
      fc.property(
        fc.array(op, { minLength: 30, maxLength: 90, size: "max" }),
        (ops) => run(mode, ops),
      ),
      { numRuns: 100, seed: 20261123 },
    );
  });
}
