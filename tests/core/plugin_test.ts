import assert from "node:assert/strict";
import { relative } from "node:path";
import {
  type BackendPlugin,
  CORE_API_VERSION,
  IommuError,
  loadPlugin,
  pluginModuleUrl,
  PluginRegistry,
  resolveOptions,
  validatePlugin,
} from "@iommu-lab/core";

const isErr = (errno: string, re?: RegExp) => (e: unknown) =>
  e instanceof IommuError && e.errno === errno && (!re || re.test(e.message));

function plugin(over: Partial<BackendPlugin> = {}): BackendPlugin {
  return {
    name: "toy",
    description: "a toy backend",
    apiVersion: CORE_API_VERSION,
    options: [
      { name: "aw", type: "number", default: 48, description: "address width", min: 39, max: 57 },
      { name: "levels", type: "number", default: 4, description: "levels", values: [4, 5] },
      {
        name: "mode",
        type: "string",
        default: "strict",
        description: "mode",
        values: ["strict", "lazy"],
      },
      { name: "label", type: "string", default: "", description: "free text" },
      { name: "ats", type: "boolean", default: false, description: "ATS" },
    ],
    createHardware() {
      throw new Error("not used");
    },
    create() {
      throw new Error("not used");
    },
    ...over,
  };
}

Deno.test("validatePlugin accepts a well-formed plugin and returns it", () => {
  const p = plugin();
  assert.equal(validatePlugin(p), p);
});

Deno.test("validatePlugin names every missing or ill-typed member", () => {
  assert.throws(() => validatePlugin(42), isErr("EINVAL", /is a number/));
  assert.throws(() => validatePlugin(null), isErr("EINVAL", /is null/));
  try {
    validatePlugin({ name: "x", apiVersion: "1", options: {}, create: 3 });
    assert.fail("accepted");
  } catch (e) {
    assert.ok(e instanceof IommuError);
    for (const m of ["description", "apiVersion", "options", "createHardware", "create"]) {
      assert.match(e.message, new RegExp(`${m} must be`));
    }
    assert.equal((e.detail.problems as string[]).length, 5);
  }
});

Deno.test("a plugin written for another API version is refused with both versions named", () => {
  assert.throws(
    () => validatePlugin(plugin({ apiVersion: CORE_API_VERSION + 1 })),
    isErr(
      "EINVAL",
      new RegExp(
        `written for core API v${CORE_API_VERSION + 1}; this core implements v${CORE_API_VERSION}`,
      ),
    ),
  );
});

Deno.test("ill-formed option specs are refused", () => {
  const bad = plugin({
    options: [
      { name: "a", type: "number", default: "1", description: "" },
      // deno-lint-ignore no-explicit-any
      { name: "b", type: "float" as any, default: 1, description: "" },
      { name: "a", type: "boolean", default: true, description: "" },
    ],
  });
  assert.throws(
    () => validatePlugin(bad),
    isErr("EINVAL", /default must be a number.*type must be one of.*declared twice/),
  );
});

Deno.test("the registry finds plugins by name and lists the known ones on a miss", () => {
  const r = new PluginRegistry();
  const a = plugin({ name: "beta" });
  const b = plugin({ name: "alpha" });
  r.register(a);
  r.register(b);
  r.register(a); // same object again: harmless
  assert.equal(r.get("beta"), a);
  assert.equal(r.has("alpha"), true);
  assert.deepEqual(r.list().map((p) => p.name), ["alpha", "beta"]);
  assert.throws(() => r.get("gamma"), isErr("ENOENT", /known backends: alpha, beta/));
  assert.throws(() => r.register(plugin({ name: "beta" })), isErr("EEXIST"));
  assert.throws(() => new PluginRegistry().get("x"), /\(none\)/);
  assert.throws(
    () => r.register(plugin({ name: "delta", apiVersion: 99 })),
    isErr("EINVAL", /written for core API v99; this core implements v/),
  );
  assert.throws(() => r.get("gamma"), isErr("ENOENT"));
  // Refusals leave the registry as it was.
  assert.deepEqual(r.list().map((p) => p.name), ["alpha", "beta"]);
  assert.equal(r.has("delta"), false);
  assert.equal(r.get("beta"), a);
});

Deno.test("resolveOptions fills defaults and converts CLI strings", () => {
  const p = plugin();
  assert.deepEqual(resolveOptions(p), { aw: 48, levels: 4, mode: "strict", label: "", ats: false });
  assert.deepEqual(
    resolveOptions(p, ["aw=0x27", "ats=yes", "mode=lazy", "label=a=b", "levels=5"]),
    {
      aw: 39,
      levels: 5,
      mode: "lazy",
      label: "a=b",
      ats: true,
    },
  );
  assert.deepEqual(resolveOptions(p, { aw: 57, ats: false, label: 7 }).label, "7");
});

Deno.test("resolveOptions refuses unknown, ill-typed and out-of-range values saying what is allowed", () => {
  const p = plugin();
  assert.throws(
    () => resolveOptions(p, ["speed=1"]),
    isErr("EINVAL", /unknown option "speed"; known options: aw, levels, mode, label, ats/),
  );
  assert.throws(
    () => resolveOptions(p, ["aw=big"]),
    isErr("EINVAL", /"aw" is "big", not a number; allowed: a number in 39..57/),
  );
  assert.throws(() => resolveOptions(p, { aw: 64 }), isErr("EINVAL", /above the maximum 57/));
  assert.throws(() => resolveOptions(p, ["aw=12"]), isErr("EINVAL", /below the minimum 39/));
  assert.throws(() => resolveOptions(p, ["levels=3"]), isErr("EINVAL", /allowed: one of 4, 5/));
  assert.throws(
    () => resolveOptions(p, ["mode=eager"]),
    isErr("EINVAL", /allowed: one of strict, lazy/),
  );
  assert.throws(() => resolveOptions(p, ["ats=maybe"]), isErr("EINVAL", /allowed: true or false/));
  assert.throws(() => resolveOptions(p, { ats: 1 }), isErr("EINVAL", /true or false/));
  assert.throws(() => resolveOptions(p, { label: {} }), isErr("EINVAL", /not a string/));
  assert.throws(() => resolveOptions(p, ["aw"]), isErr("EINVAL", /name=value/));
  assert.throws(() => resolveOptions(p, ["aw=40", "aw=41"]), isErr("EINVAL", /given twice/));
  assert.throws(() => resolveOptions(plugin({ options: [] }), ["x=1"]), /has no options/);
});

Deno.test("pluginModuleUrl turns paths into file URLs and leaves specifiers alone", () => {
  assert.equal(pluginModuleUrl("./p.ts", "/a/b"), "file:///a/b/p.ts");
  assert.equal(pluginModuleUrl("../p.ts", "/a/b/"), "file:///a/p.ts");
  assert.equal(pluginModuleUrl("/x/y.ts", "/a"), "file:///x/y.ts");
  assert.equal(pluginModuleUrl("file:///x/y.ts"), "file:///x/y.ts");
  assert.equal(pluginModuleUrl("@iommu-lab/examples"), "@iommu-lab/examples");
});

Deno.test("loadPlugin loads by relative path and by file URL, and refuses bad modules", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iommu-lab-plugin-test-" });
  try {
    const body = (v: number) =>
      `export default { name: "tmp", description: "d", apiVersion: ${v}, options: [],
        createHardware() { throw new Error(); }, create() { throw new Error(); } };`;
    await Deno.writeTextFile(`${dir}/good.ts`, body(CORE_API_VERSION));
    await Deno.writeTextFile(`${dir}/old.ts`, body(CORE_API_VERSION + 1));
    await Deno.writeTextFile(`${dir}/nodefault.ts`, `export const x = 1;`);
    await Deno.writeTextFile(`${dir}/notplugin.ts`, `export default { name: "n" };`);
    const rel = relative(Deno.cwd(), dir);
    assert.equal((await loadPlugin(`${rel}/good.ts`)).name, "tmp");
    assert.equal((await loadPlugin(`file://${dir}/good.ts`)).name, "tmp");
    await assert.rejects(
      () => loadPlugin(`${rel}/old.ts`),
      isErr("EINVAL", /written for core API/),
    );
    await assert.rejects(
      () => loadPlugin(`${rel}/nodefault.ts`),
      isErr("EINVAL", /no default export/),
    );
    await assert.rejects(
      () => loadPlugin(`${rel}/notplugin.ts`),
      isErr("EINVAL", /description must be/),
    );
    await assert.rejects(
      () => loadPlugin(`${rel}/missing.ts`),
      isErr("ENOENT", /cannot load plugin module/),
    );
    await assert.rejects(() => loadPlugin("  "), isErr("EINVAL"));
    // An unknown package specifier (resolved locally, no registry).
    await assert.rejects(
      () => loadPlugin("@iommu-lab/no-such-backend"),
      isErr("ENOENT", /cannot load plugin module "@iommu-lab\/no-such-backend"/),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
