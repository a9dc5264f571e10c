import assert from "node:assert/strict";
import fc from "fast-check";
import { fromBase64, IommuError, PAGE_SIZE, PhysMem, toBase64 } from "@iommu-lab/core";

const isErr = (errno: string, re?: RegExp) => (e: unknown) =>
  e instanceof IommuError && e.errno === errno && (!re || re.test(e.message));

Deno.test("every width is little-endian, aligned or not", () => {
  const m = new PhysMem(40);
  m.write32(0x1001, 0x44332211);
  assert.deepEqual([0x1000, 0x1001, 0x1002, 0x1003, 0x1004, 0x1005].map((a) => m.read8(a)), [
    0,
    0x11,
    0x22,
    0x33,
    0x44,
    0,
  ]);
  assert.equal(m.read16(0x1002), 0x3322);
  assert.equal(m.read32(0x1001), 0x44332211);
  m.write16(0x2003, 0xbeef);
  assert.equal(m.read32(0x2000), 0xef000000);
  assert.equal(m.read8(0x2004), 0xbe);
  m.write64(0x3004, 0x89abcdef, 0x01234567);
  assert.equal(m.read64n(0x3004), 0x0123456789abcdefn);
  m.write64n(0x3010, -1n);
  assert.equal(m.read32(0x3014), 0xffffffff);
  assert.equal(m.read64(0x4000), 0);
  m.write64(0x4000, 0x1000, 0x000f_ffff);
  assert.equal(m.read64(0x4000), 0x000f_ffff_0000_1000);
});

Deno.test("accesses crossing a page boundary touch both pages", () => {
  const m = new PhysMem(32);
  m.write32(0xffe, 0xaabbccdd);
  assert.equal(m.read16(0xffe), 0xccdd);
  assert.equal(m.read16(0x1000), 0xaabb);
  assert.equal(m.read32(0xffe), 0xaabbccdd);
  m.write64(0x1ffc, 1, 2);
  assert.equal(m.read32(0x2000), 2);
  const data = new Uint8Array(PAGE_SIZE * 2 + 10).map((_, i) => i % 251);
  m.writeBytes(0x5ffb, data);
  assert.deepEqual(m.readBytes(0x5ffb, data.length), data);
  assert.deepEqual(m.backedPages().slice(-4), [0x5000, 0x6000, 0x7000, 0x8000]);
});

Deno.test("fill and zero-fill of untouched memory backs no page", () => {
  const m = new PhysMem(48);
  m.fill(0x10_0000, 1 << 20, 0);
  assert.equal(m.stats.pagesBacked, 0);
  m.fill(0x10_0ffe, 4, 0x5a);
  assert.equal(m.read32(0x10_0ffe), 0x5a5a5a5a);
  assert.equal(m.stats.pagesBacked, 2);
});

Deno.test("readBytes into a caller buffer, and refuses a short one", () => {
  const m = new PhysMem(32);
  m.write32(0x100, 0x04030201);
  const out = new Uint8Array(8).fill(9);
  assert.equal(m.readBytes(0x100, 4, out), out);
  assert.deepEqual([...out], [1, 2, 3, 4, 9, 9, 9, 9]);
  assert.throws(() => m.readBytes(0x100, 4, new Uint8Array(2)), isErr("EINVAL", /shorter/));
});

Deno.test("out-of-range, negative and fractional addresses are refused", () => {
  const m = new PhysMem(32);
  assert.throws(() => m.read8(2 ** 32), isErr("EFAULT", /32-bit physical address space/));
  assert.throws(() => m.write32(2 ** 32 - 2, 0), isErr("EFAULT"));
  assert.throws(() => m.read32(-4), isErr("EFAULT"));
  assert.throws(() => m.read32(0.5), isErr("EFAULT"));
  assert.throws(() => m.write32(4.5, 1), isErr("EFAULT"));
  assert.throws(() => m.readBytes(0, -1), isErr("EINVAL"));
  assert.throws(() => m.fill(2 ** 32 - 1, 2), isErr("EFAULT"));
  assert.throws(() => new PhysMem(53), isErr("EINVAL", /12..52/));
  assert.throws(() => new PhysMem(11), isErr("EINVAL"));
  assert.equal(m.stats.pagesBacked, 0);
});

Deno.test("words are fetched and stored in order", () => {
  const m = new PhysMem(32);
  m.writeWords(0x40, [1, 2, 3, 0xffffffff]);
  assert.deepEqual([...m.readWords(0x40, new Uint32Array(4))], [1, 2, 3, 0xffffffff]);
  assert.deepEqual([...m.readWords(0x40, new Uint32Array(4), 2)], [1, 2, 0, 0]);
});

Deno.test("a sparse image round-trips and leaves all-zero pages out", () => {
  const m = new PhysMem(52);
  m.write32(0x2000, 0xdeadbeef);
  m.write32(0xf_ffff_ffff_f000, 7);
  m.fill(0x9000, 4, 1);
  m.fill(0x9000, 4, 0); // backed but zero
  const img = m.saveSparse();
  assert.deepEqual(Object.keys(img.pages), ["0x2000", "0xffffffffff000"]);
  assert.equal(img.format, "iommu-lab-sparse-v1");
  assert.equal(img.page_size, 4096);
  const n = new PhysMem(52);
  n.loadSparse(JSON.parse(JSON.stringify(img)));
  assert.equal(n.read32(0x2000), 0xdeadbeef);
  assert.equal(n.read32(0xf_ffff_ffff_f000), 7);
  assert.deepEqual(n.saveSparse(), img);
});

Deno.test("every malformed sparse image is refused and changes nothing", () => {
  const page = toBase64(new Uint8Array(PAGE_SIZE).fill(1));
  const ok = { format: "iommu-lab-sparse-v1", page_size: 4096, pages: { "0x1000": page } };
  const cases: [unknown, RegExp][] = [
    [null, /"format" must be/],
    ["text", /"format" must be/],
    [{ ...ok, format: "v2" }, /"format" must be/],
    [{ ...ok, page_size: 65536 }, /page_size 65536 is not supported/],
    [{ ...ok, pages: null }, /"pages" must be an object/],
    [{ ...ok, pages: [page] }, /"pages" must be an object/],
    [{ ...ok, pages: { ...ok.pages, "4096": page } }, /not a hexadecimal address/],
    [{ ...ok, pages: { ...ok.pages, "0x1001": page } }, /not page-aligned/],
    [{ ...ok, pages: { ...ok.pages, "0x100000000": page } }, /outside the 32-bit/],
    [{ ...ok, pages: { ...ok.pages, "0x2000": 5 } }, /must be a base64 string/],
    [{ ...ok, pages: { ...ok.pages, "0x2000": "@@@" } }, /not valid base64/],
    [{ ...ok, pages: { ...ok.pages, "0x2000": "AAAA" } }, /3 bytes decoded; a page is 4096/],
    [{ ...ok, pages: { ...ok.pages, "0x01000": page } }, /name the same page/],
  ];
  for (const [img, re] of cases) {
    const m = new PhysMem(32);
    assert.throws(
      () => m.loadSparse(img),
      isErr("EINVAL", re),
      `case ${JSON.stringify(img)?.slice(0, 80)}`,
    );
    assert.equal(m.stats.pagesBacked, 0, "validated before anything is written");
  }
  const m = new PhysMem(32);
  m.loadSparse(ok);
  assert.equal(m.read8(0x1fff), 1);
});

Deno.test("a raw image loads at a base and saves back", () => {
  const m = new PhysMem(32);
  const raw = new Uint8Array(10_000).map((_, i) => (i * 7) & 0xff);
  m.loadRaw(raw, 0x8000_0ffc);
  assert.deepEqual(m.saveRaw(0x8000_0ffc, raw.length), raw);
  assert.equal(m.read8(0x8000_0ffc + 9999), (9999 * 7) & 0xff);
  const before = m.stats.pagesBacked;
  assert.throws(
    () => m.loadRaw(raw, 2 ** 32 - 100),
    isErr("EFAULT", /outside the 32-bit physical address space/),
  );
  assert.equal(m.stats.pagesBacked, before, "a raw image that does not fit writes nothing");
  assert.equal(m.read32(2 ** 32 - 100), 0);
});

Deno.test("base64 helpers round-trip large arrays", () => {
  const b = new Uint8Array(100_000).map((_, i) => (i * 31) & 0xff);
  assert.deepEqual(fromBase64(toBase64(b)), b);
});

Deno.test("random writes of random widths agree with a plain byte map", () => {
  const base = 0x7fff_e000; // straddles pages around 0x7fff_f000 and 0x8000_0000
  const op = fc.record({
    width: fc.constantFrom(1, 2, 4, 8, 0),
    off: fc.integer({ min: 0, max: 3 * PAGE_SIZE + 64 }),
    value: fc.integer({ min: 0, max: 0xffffffff }),
    hi: fc.integer({ min: 0, max: 0xffffffff }),
    len: fc.integer({ min: 0, max: 300 }),
  });
  fc.assert(
    fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
      const m = new PhysMem(32);
      const ref = new Map<number, number>();
      const put = (a: number, v: number) => ref.set(a, v & 0xff);
      for (const o of ops) {
        const a = base + o.off;
        if (o.width === 1) {
          m.write8(a, o.value);
          put(a, o.value);
        } else if (o.width === 2) {
          m.write16(a, o.value);
          put(a, o.value);
          put(a + 1, o.value >>> 8);
        } else if (o.width === 4) {
          m.write32(a, o.value);
          for (let i = 0; i < 4; i++) put(a + i, o.value >>> (8 * i));
        } else if (o.width === 8) {
          m.write64(a, o.value, o.hi);
          for (let i = 0; i < 4; i++) put(a + i, o.value >>> (8 * i));
          for (let i = 0; i < 4; i++) put(a + 4 + i, o.hi >>> (8 * i));
        } else {
          const bytes = new Uint8Array(o.len).map((_, i) => (o.value + i * 17) & 0xff);
          m.writeBytes(a, bytes);
          bytes.forEach((v, i) => put(a + i, v));
        }
      }
      const byte = (a: number) => ref.get(a) ?? 0;
      for (let a = base - 8; a < base + 3 * PAGE_SIZE + 80; a++) {
        if (m.read8(a) !== byte(a)) return false;
      }
      for (const o of ops) {
        const a = base + o.off;
        const w32 = (byte(a) | (byte(a + 1) << 8) | (byte(a + 2) << 16) | (byte(a + 3) << 24)) >>>
          0;
        if (m.read32(a) !== w32 || m.read16(a) !== (byte(a) | (byte(a + 1) << 8))) return false;
        let v = 0n;
        for (let i = 7; i >= 0; i--) v = (v << 8n) | BigInt(byte(a + i));
        if (m.read64n(a) !== v) return false;
      }
      return true;
    }),
    { numRuns: 60, seed: 42 },
  );
});
