/**
 * @module
 * Page-request grouping as `iommu_report_device_fault` / `iopf_group_alloc`
 * (drivers/iommu/io-pgfault.c, v6.8–6.10) do it: requests without LAST_PAGE
 * are parked as partial faults; the LAST request of a group collects the
 * partials with the same group index.
 */

import { IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE, type IopfFault } from "../types.ts";

/** Copy of a fault (the kernel copies the record into its lists). */
export function copyFault(evt: IopfFault): IopfFault {
  const p = evt.prm;
  return {
    type: evt.type,
    prm: {
      flags: p.flags,
      pasid: p.pasid,
      grpid: p.grpid,
      perm: p.perm,
      addr: p.addr,
      privateData: [p.privateData[0], p.privateData[1]],
    },
  };
}

/** True if the request ends its page request group. */
export function isLastPage(evt: IopfFault): boolean {
  return (evt.prm.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE) !== 0;
}

/**
 * `iopf_group_alloc`: remove from `partials` every fault with `last`'s group
 * index and return the group's faults. Each partial is moved to the head of
 * the group's list in arrival order, so the group lists the partials newest
 * first, then the LAST request (the kernel's list order).
 */
export function takeIopfGroup(partials: IopfFault[], last: IopfFault): IopfFault[] {
  const group: IopfFault[] = [last];
  let keep = 0;
  for (let i = 0; i < partials.length; i++) {
    const f = partials[i];
    if (f.prm.grpid === last.prm.grpid) group.unshift(f);
    else partials[keep++] = f;
  }
  partials.length = keep;
  return group;
}
