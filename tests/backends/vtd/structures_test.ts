import assert from "node:assert/strict";
import {
  CAP_REG,
  ECAP_REG,
  encodeCap,
  encodeEcap,
  FAULT_RECORD,
  LEGACY_CONTEXT_ENTRY,
  PAGE_REQ_DESC,
  PASID_ENTRY,
  QI_EIOTLB_DESC,
  QI_IOTLB_DESC,
  QI_IWD_DESC,
  QI_PC_DESC,
  QI_PGRP_RESP_DESC,
  resolveVtdOptions,
  ROOT_ENTRY,
  SM_CONTEXT_ENTRY,
  VTD_STRUCTURES,
} from "../../../backends/vtd/mod.ts";

// Kernel constants: drivers/iommu/intel/iommu.h and pasid.h (about v6.8).

Deno.test("SM context entry encodes P, PDTS and the PASID directory pointer as the kernel does", () => {
  const w = SM_CONTEXT_ENTRY.encode({
    P: 1,
    PDTS: 2,
    PASIDDIRPTR: 0x12345000,
    DTE: 1,
    PASIDE: 1,
    PRE: 1,
  });
  assert.equal(w[0], 0x1234541d);
  assert.equal(w.length, 8);
  assert.equal(SM_CONTEXT_ENTRY.decode(w).PASIDDIRPTR, 0x12345000n);
});

Deno.test("root entry: upper context-table pointer sits in bits 127:76 with UP at bit 64", () => {
  const w = ROOT_ENTRY.encode({ LP: 1, LCTP: 0x5000, UP: 1, UCTP: 0x1_2345_6000 });
  assert.deepEqual([...w], [0x5001, 0, 0x23456001, 0x1]);
  assert.equal(ROOT_ENTRY.decode(w).UCTP, 0x1_2345_6000n);
});

Deno.test("legacy context entry: TT at bits 3:2, AW at 66:64, DID at 87:72", () => {
  const w = LEGACY_CONTEXT_ENTRY.encode({ P: 1, TT: 2, SLPTPTR: 0xabc000, AW: 2, DID: 0x1234 });
  assert.deepEqual([...w], [0xabc009, 0, 0x123402, 0]);
});

Deno.test("PASID entry: PGTT 8:6, AW 4:2, DID 79:64, SRE 128, FLPM 131:130, FLPTPTR 191:140", () => {
  const w = PASID_ENTRY.encode({
    P: 1,
    AW: 2,
    PGTT: 1,
    DID: 5,
    PWSNP: 1,
    SRE: 1,
    FLPM: 1,
    FLPTPTR: 0xabc000,
  });
  assert.equal(w[0], 0x49);
  assert.equal(w[2], 0x800005);
  assert.equal(w[4], 0xabc005);
  assert.equal(w.length, 16);
});

Deno.test("QI descriptors match the kernel's QI_* macros", () => {
  // qi_flush_iotlb PSI with DR/DW: type 2 | GRAN(3)<<4 | DW | DR | DID<<16.
  assert.equal(QI_IOTLB_DESC.encode({ TYPE: 2, GRAN: 3, DW: 1, DR: 1, DID: 7 })[0], 0x700f2);
  const iotlb = QI_IOTLB_DESC.encode({ TYPE: 2, GRAN: 3, ADDR: 0x100000, AM: 4, IH: 1 });
  assert.equal(iotlb[2], 0x100044);
  // QI_PC_PASID_SEL: type 7 | 1<<4, PASID at 51:32.
  assert.deepEqual([...QI_PC_DESC.encode({ TYPE: 7, GRAN: 1, DID: 3, PASID: 0x12345 })], [
    0x30017,
    0x12345,
    0,
    0,
  ]);
  // QI_GRAN_PSI_PASID = 3.
  assert.equal(QI_EIOTLB_DESC.encode({ TYPE: 6, GRAN: 3, DID: 1 })[0], 0x10036);
  // qi_submit_sync's wait: QI_IWD_STATUS_DATA | QI_IWD_STATUS_WRITE | QI_IWD_FENCE.
  const iwd = QI_IWD_DESC.encode({
    TYPE: 5,
    SW: 1,
    FN: 1,
    STATUS_DATA: 0xcafe,
    STATUS_ADDR: 0x1000_0004,
  });
  assert.deepEqual([...iwd], [0x65, 0xcafe, 0x1000_0004, 0]);
  const resp = QI_PGRP_RESP_DESC.encode({
    TYPE: 9,
    PASID_P: 1,
    RESP: 15,
    RID: 0x301,
    PASID: 7,
    LPIG: 1,
    PRG_INDEX: 5,
  });
  assert.deepEqual([...resp], [0x0301f019, 7, 0x2c, 0]);
});

Deno.test("page request descriptor and fault record decode known words", () => {
  const prq = PAGE_REQ_DESC.decode(Uint32Array.from([0x03010101, 0x7, 0x5007, 0, 0, 0, 0, 0]));
  assert.equal(prq.RID, 0x301n);
  assert.equal(prq.PASID, 7n);
  assert.equal(prq.LPIG, 1n);
  assert.equal(prq.ADDR, 0x5000n);
  const fr = FAULT_RECORD.decode(Uint32Array.from([0x3000, 0, 0x10, 0xc0000061]));
  assert.equal(fr.F, 1n);
  assert.equal(fr.T1, 1n);
  assert.equal(fr.FR, 0x61n);
  assert.equal(fr.SID, 0x10n);
});

Deno.test("VTD_STRUCTURES names every structure and descriptor", () => {
  for (
    const n of [
      "root_entry",
      "context_entry",
      "sm_context_entry",
      "pasid_dir_entry",
      "pasid_entry",
      "qi_cc",
      "qi_iotlb",
      "qi_dev_iotlb",
      "qi_iec",
      "qi_wait",
      "qi_piotlb",
      "qi_pc",
      "qi_dev_piotlb",
      "qi_page_grp_resp",
      "page_req_dsc",
      "fault_record",
    ]
  ) {
    assert.ok(VTD_STRUCTURES[n], n);
  }
});

Deno.test("default options model a full-featured unit in CAP/ECAP", () => {
  const o = resolveVtdOptions({});
  const [cl, ch] = encodeCap(o);
  const [el, eh] = encodeEcap(o);
  const cap = CAP_REG.decode([cl, ch]);
  const ecap = ECAP_REG.decode([el, eh]);
  assert.equal(cap.SAGAW, 0b1110n);
  assert.equal(cap.MGAW, 56n);
  assert.equal(cap.FRO * 16n, 0x400n);
  assert.equal(cap.NFR, 7n);
  assert.equal(cap.FL1GP, 1n);
  assert.equal(ecap.IRO * 16n, 0x500n);
  for (
    const f of ["QI", "DT", "PT", "NEST", "PRS", "PASID", "SMTS", "FLTS", "SLTS", "RPS", "SLADS"]
  ) {
    assert.equal(ecap[f], 1n, f);
  }
  assert.equal(ecap.PSS, 19n);
  assert.throws(() => resolveVtdOptions({ bogus: 1 }), /unknown option "bogus"/);
  assert.throws(() => resolveVtdOptions({ nd: 9 }), /nd=9 is outside 0..6/);
});
