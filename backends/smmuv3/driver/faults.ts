/**
 * @module
 * The driver's fault side (arm_smmu_evtq_thread, arm_smmu_priq_thread,
 * arm_smmu_page_response): drains the event and PRI queues, turns stall
 * events and page requests into I/O page faults for the kernel, reports the
 * other events as unrecoverable faults, and answers page requests with
 * CMD_PRI_RESP or stalls with CMD_RESUME.
 */

import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  type IommuKernelHooks,
  type IommuPageResponse,
  IommuPageResponseCode,
  type IopfFault,
  type Machine,
  type PciDevice,
} from "@iommu-lab/core";
import { Q_OVF, REG } from "../hw/regs.ts";
import { EVT_NAME, PRI_RESP, RESUME_ACTION } from "../hw/structs.ts";
import { newCmd, priResp, resume } from "./cmds.ts";
import type { DriverCmdq } from "./cmdq.ts";

const TWO32 = 4294967296;

/** An event the driver read and reported (or could not). */
export interface LoggedEvent {
  /** Event ID. */
  id: number;
  /** Event name (EVT_NAME). */
  name: string;
  /** StreamID. */
  sid: number;
  /** SubstreamID or -1. */
  ssid: number;
  /** Input address. */
  addr: number;
}

/** What the fault side needs from its driver. */
export interface FaultContext {
  /** The machine. */
  machine: Machine;
  /** Register window base. */
  regs: number;
  /** The command queue. */
  cmdq: DriverCmdq;
  /** The device of a StreamID the driver probed, and whether it uses PRI. */
  master(sid: number): { dev: PciDevice; sid: number; pri: boolean } | undefined;
  /** The kernel hooks, once the core registered the driver. */
  hooks(): IommuKernelHooks | null;
  /** Counters to bump: events and page requests read. */
  stats: { events: number; pageRequests: number };
}

/** The event and PRI queues of one SMMU, as the driver consumes them. */
export class FaultQueues {
  /** Unrecoverable events read (also reported to the kernel when it listens). */
  readonly eventLog: LoggedEvent[] = [];
  readonly #ctx: FaultContext;
  readonly #evtq: number;
  readonly #evtqLog2: number;
  readonly #priq: number;
  readonly #priqLog2: number;
  readonly #cmd = newCmd();
  readonly #pending = new Map<string, boolean>(); // "sid:grpid" -> stall?

  /** Queues at `evtq` (2^evtqLog2 records) and `priq` (0 when none). */
  constructor(ctx: FaultContext, evtq: number, evtqLog2: number, priq: number, priqLog2: number) {
    this.#ctx = ctx;
    this.#evtq = evtq;
    this.#evtqLog2 = evtqLog2;
    this.#priq = priq;
    this.#priqLog2 = priqLog2;
  }

  #r32(off: number): number {
    return this.#ctx.machine.bus.read32(this.#ctx.regs + off);
  }

  #w32(off: number, v: number): void {
    this.#ctx.machine.bus.write32(this.#ctx.regs + off, v);
  }

  /** Drain the event queue (the evtq interrupt thread); acknowledge overflow. */
  handleEvtq(): void {
    const w = new Uint32Array(8);
    let cons = this.#r32(REG.EVTQ_CONS);
    const prod = this.#r32(REG.EVTQ_PROD);
    const n = 2 ** this.#evtqLog2;
    const wrap = 2 * n - 1;
    while ((cons & wrap) !== (prod & wrap)) {
      this.#ctx.machine.mem.readWords(this.#evtq + (cons & (n - 1)) * 32, w);
      this.#handleEvent(w);
      cons = ((cons & wrap) + 1) & wrap;
    }
    // Acknowledge overflow by copying PROD.OVFLG into CONS.OVACKFLG.
    this.#w32(REG.EVTQ_CONS, (cons | (prod & Q_OVF)) >>> 0);
  }

  #handleEvent(w: Uint32Array): void {
    const ctx = this.#ctx;
    ctx.stats.events++;
    const id = w[0] & 0xff;
    const ssv = (w[0] & 0x800) !== 0;
    const ssid = ssv ? (w[0] >>> 12) & 0xfffff : 0;
    const sid = w[1];
    const addr = w[5] * TWO32 + w[4];
    const stall = (w[2] & 0x80000000) !== 0;
    const master = ctx.master(sid);
    const hooks = ctx.hooks();
    if (stall && master) {
      const stag = w[2] & 0xffff;
      const write = (w[3] & (1 << 3)) === 0;
      if (!hooks) {
        // No fault handler: terminate the stalled transaction.
        ctx.cmdq.issueOne(resume(this.#cmd, sid, stag, RESUME_ACTION.ABORT), true);
        return;
      }
      this.#pending.set(`${sid}:${stag}`, true);
      hooks.reportDeviceFault(master.dev, {
        type: "PAGE_REQ",
        prm: {
          flags: IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE |
            (ssv ? IOMMU_FAULT_PAGE_REQUEST_PASID_VALID : 0),
          pasid: ssid,
          grpid: stag,
          perm: (write ? IOMMU_FAULT_PERM_WRITE : IOMMU_FAULT_PERM_READ) |
            (w[3] & (1 << 2) ? IOMMU_FAULT_PERM_EXEC : 0) |
            (w[3] & (1 << 1) ? IOMMU_FAULT_PERM_PRIV : 0),
          addr: addr - (addr % 4096),
          privateData: [stag, sid],
        },
      });
      return;
    }
    const name = EVT_NAME[id] ?? `0x${id.toString(16)}`;
    this.eventLog.push({ id, name, sid, ssid: ssv ? ssid : -1, addr });
    hooks?.reportIommuFault(master?.dev ?? null, addr, (w[3] & (1 << 3)) === 0, name);
  }

  /** Drain the PRI queue (the priq interrupt thread); acknowledge overflow. */
  handlePriq(): void {
    if (this.#priq === 0) return;
    const w = new Uint32Array(4);
    let cons = this.#r32(REG.PRIQ_CONS);
    const prod = this.#r32(REG.PRIQ_PROD);
    const n = 2 ** this.#priqLog2;
    const wrap = 2 * n - 1;
    while ((cons & wrap) !== (prod & wrap)) {
      this.#ctx.machine.mem.readWords(this.#priq + (cons & (n - 1)) * 16, w);
      this.#handlePri(w);
      cons = ((cons & wrap) + 1) & wrap;
    }
    this.#w32(REG.PRIQ_CONS, (cons | (prod & Q_OVF)) >>> 0);
  }

  #handlePri(w: Uint32Array): void {
    const ctx = this.#ctx;
    ctx.stats.pageRequests++;
    const sid = w[0];
    const ssv = (w[1] & 0x80000000) !== 0;
    const ssid = w[1] & 0xfffff;
    const grpid = w[2] & 0x1ff;
    const addr = w[3] * TWO32 + ((w[2] & 0xfffff000) >>> 0);
    const last = (w[1] & (1 << 30)) !== 0;
    const master = ctx.master(sid);
    const hooks = ctx.hooks();
    const perm = (w[1] & (1 << 28) ? IOMMU_FAULT_PERM_READ : 0) |
      (w[1] & (1 << 29) ? IOMMU_FAULT_PERM_WRITE : 0) |
      (w[1] & (1 << 27) ? IOMMU_FAULT_PERM_EXEC : 0) |
      (w[1] & (1 << 26) ? IOMMU_FAULT_PERM_PRIV : 0);
    if (!master || !hooks) {
      if (last) ctx.cmdq.issueOne(priResp(this.#cmd, sid, ssid, ssv, grpid, PRI_RESP.DENY), true);
      return;
    }
    this.#pending.set(`${sid}:${grpid}`, false);
    hooks.reportDeviceFault(master.dev, {
      type: "PAGE_REQ",
      prm: {
        flags: (ssv ? IOMMU_FAULT_PAGE_REQUEST_PASID_VALID : 0) |
          (last ? IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE : 0),
        pasid: ssid,
        grpid,
        perm,
        addr,
        privateData: [0, sid],
      },
    });
  }

  /**
   * `arm_smmu_page_response`: CMD_RESUME (RETRY on success, else ABORT) for a
   * stall, CMD_PRI_RESP (SUCC, DENY for INVALID, FAIL) for a page request.
   */
  pageResponse(
    master: { sid: number; pri: boolean },
    evt: IopfFault,
    msg: IommuPageResponse,
  ): void {
    const key = `${master.sid}:${evt.prm.grpid}`;
    const stall = this.#pending.get(key) ?? !master.pri;
    this.#pending.delete(key);
    const c = this.#cmd;
    if (stall) {
      const action = msg.code === IommuPageResponseCode.SUCCESS
        ? RESUME_ACTION.RETRY
        : RESUME_ACTION.ABORT;
      this.#ctx.cmdq.issueOne(resume(c, master.sid, evt.prm.grpid, action), true);
    } else {
      const resp = msg.code === IommuPageResponseCode.SUCCESS
        ? PRI_RESP.SUCC
        : msg.code === IommuPageResponseCode.INVALID
        ? PRI_RESP.DENY
        : PRI_RESP.FAIL;
      const ssv = (evt.prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) !== 0;
      this.#ctx.cmdq.issueOne(
        priResp(c, master.sid, ssv ? evt.prm.pasid : 0, ssv, evt.prm.grpid, resp),
        true,
      );
    }
  }
}
