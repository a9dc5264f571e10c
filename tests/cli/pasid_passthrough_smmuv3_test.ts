/**
 * DMA with PASID under the passthrough policy on SMMUv3. arm-smmu-v3 (v6.10
 * through v6.17) gives its identity domain no set_dev_pasid, so the
 * identity default domain cannot be attached to a PASID: the built-in
 * pasid-dma scenario's pasid_enable fails with EOPNOTSUPP, as
 * iommu_attach_device_pasid does in the kernel. A paging domain can still be
 * attached to a PASID while the RID stays identity: the STE then points at
 * the CD table with S1DSS=BYPASS.
 */
import assert from "node:assert/strict";
import { BUILTIN_SCENARIOS } from "../../cli/scenario/builtin.ts";
import { parseScenario } from "../../cli/scenario/schema.ts";
import { runScenario } from "../../cli/scenario/runner.ts";
import { builtinBackends } from "../../cli/backends.ts";

const smmu = (await builtinBackends()).find((b) => b.name === "smmuv3")!;

Deno.test("pasid-dma under passthrough on smmuv3: pasid_enable on the identity default domain is EOPNOTSUPP, nothing left attached", () => {
  const sc = BUILTIN_SCENARIOS.find((s) => s.name === "pasid-dma")!;
  const yaml = sc.yaml.replace(/^policy: .*$/m, "policy: { strict: true, passthrough: true }");
  assert.notEqual(yaml, sc.yaml);
  const r = runScenario(parseScenario(yaml, "pasid-dma-passthrough"), { plugin: smmu.plugin! });
  assert.equal(r.skipped, undefined);
  assert.equal(r.ok, false);
  const enable = r.steps.find((s) => s.kind === "pasid_enable")!;
  assert.equal(enable.status, "FAIL");
  assert.match(enable.text, /EOPNOTSUPP/);
  assert.match(enable.text, /identity/);
  // The global PASID went back; no PASID attach reached the driver.
  assert.equal(r.counters.iommu.pasidAllocs, 1);
  assert.equal(r.counters.iommu.pasidFrees, 1);
  assert.equal(r.counters.iommu.pasidAttaches ?? 0, 0);
});

const IDENTITY_RID_PAGING_PASID = `name: identity-rid-paging-pasid
requires: [pasid]
policy: { strict: true, passthrough: true }
devices:
  - { name: acc0, bdf: "00:05.0", pasid_bits: 8 }
steps:
  - alloc: { name: buf, size: 4096, fill: 0x5a }
  - domain_alloc: { name: u, device: acc0 }
  - iommu_map: { domain: u, iova: 0x2000000, phys: $buf, size: 4096, prot: rw }
  - pasid_attach: { device: acc0, domain: u, pasid: 5 }
  - note: the RID stays identity (S1DSS=BYPASS); PASID 5 translates through its CD
  - read: { device: acc0, addr: $buf, length: 2, expect: { data: "5a 5a" } }
  - read: { device: acc0, addr: 0x2000000, length: 2, pasid: 5, expect: { data: "5a 5a" } }
  - write: { device: acc0, addr: 0x2000000, data: "01 02", pasid: 5, expect: { ok: true } }
  - cpu_check: { addr: $buf, data: "01 02 5a" }
  - note: SubstreamID 0 reads CD 0, which stays invalid (C_BAD_CD)
  - read: { device: acc0, addr: 0x2000000, length: 2, pasid: 0, expect: { fault: true } }
  - iommu_unmap: { domain: u, iova: 0x2000000, size: 4096 }
  - read: { device: acc0, addr: 0x2000000, length: 2, pasid: 5, expect: { fault: true } }
  - read: { device: acc0, addr: $buf, length: 2, expect: { data: "01 02" } }
  - expect: { counters: { dma.faults: 2 } }
`;

Deno.test("passthrough on smmuv3: a paging domain at a PASID beside the identity RID (S1DSS=BYPASS)", () => {
  const r = runScenario(parseScenario(IDENTITY_RID_PAGING_PASID, "s1dss.yaml"), {
    plugin: smmu.plugin!,
  });
  const bad = r.steps.find((s) => s.status !== "ok");
  assert.equal(bad, undefined, bad && `step #${bad.index} ${bad.kind}: ${bad.text}`);
  assert.equal(r.ok, true);
});
