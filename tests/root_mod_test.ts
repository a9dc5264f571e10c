import assert from "node:assert/strict";
import * as lab from "../mod.ts";

Deno.test("the root module re-exports the core and every built-in backend plugin", () => {
  assert.equal(typeof lab.IommuCore, "function");
  assert.equal(typeof lab.PhysMem, "function");
  assert.equal(lab.vtd.default.name, "vtd");
  assert.equal(lab.smmuv3.default.name, "smmuv3");
  assert.equal(lab.vtd.default.apiVersion, lab.CORE_API_VERSION);
  assert.equal(lab.smmuv3.default.apiVersion, lab.CORE_API_VERSION);
});
