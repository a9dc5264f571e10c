/**
 * @module
 * The built-in scenarios (YAML), runnable on every built-in backend:
 * `tour`, `strict-vs-lazy`, `dma-isolation`, `missed-invalidation`,
 * `untrusted-bounce` and `pasid-dma`. `deno task cli scenario list` shows them.
 */

/** A built-in scenario: its name, one-line summary and YAML text. */
export interface BuiltinScenario {
  /** Name for `scenario run NAME`. */
  name: string;
  /** One line. */
  summary: string;
  /** The scenario file. */
  yaml: string;
}

const TOUR = `# The quickstart tour: map a buffer for a device through the DMA API, let
# the device read and write it, watch a fault outside the mapping, and see
# that after a strict unmap the device can no longer reach the page.
name: tour
description: map, device read/write, fault outside the mapping, strict unmap
policy: { strict: true }
devices:
  - { name: nic0, bdf: "00:03.0" }
steps:
  - alloc: { name: buf, size: 4096, fill: 0x11 }
  - map: { device: nic0, buffer: buf, size: 4096, dir: bidirectional, as: dma0 }
  - read: { device: nic0, addr: $dma0, length: 16, expect: { data: "11*16" } }
  - read: { device: nic0, addr: $dma0+0x800, length: 16, expect: { data: "11*16" } }
  - write: { device: nic0, addr: $dma0+0x10, data: "de ad be ef", expect: { ok: true } }
  - cpu_check: { addr: $buf+0x10, data: "de ad be ef" }
  - read: { device: nic0, addr: $dma0+0x1000, length: 4, expect: { fault: true } }
  - unmap: { device: nic0, handle: dma0 }
  - read: { device: nic0, addr: $dma0, length: 4, expect: { fault: true } }
  - expect:
      counters:
        dma-api.maps: 1
        dma-api.unmaps: 1
        dma-api.strictSyncs: 1
        dma.faults: 2
`;

const STRICT_VS_LAZY = `# Strict versus lazy unmap. Strict: every unmap invalidates and syncs.
# Then the group switches live to DMA-FQ (sysfs type): unmaps are queued,
# no invalidation happens until the flush queue's 10 ms timer does one
# flush-all for all of them - and until then the device can still reach an
# unmapped page through its IOTLB entry (the exposure window).
name: strict-vs-lazy
description: invalidation counts of strict and lazy unmap, and the lazy exposure window
requires: [lazy]
policy: { strict: true }
devices:
  - { name: nic0, bdf: "00:03.0" }
steps:
  - alloc: { name: buf, size: 32768, fill: 0x5a }
  - note: strict phase - 4 map/unmap pairs
  - map: { device: nic0, buffer: buf, offset: 0x0000, size: 4096, as: s0 }
  - map: { device: nic0, buffer: buf, offset: 0x1000, size: 4096, as: s1 }
  - map: { device: nic0, buffer: buf, offset: 0x2000, size: 4096, as: s2 }
  - map: { device: nic0, buffer: buf, offset: 0x3000, size: 4096, as: s3 }
  - unmap: { device: nic0, handle: s0 }
  - unmap: { device: nic0, handle: s1 }
  - unmap: { device: nic0, handle: s2 }
  - unmap: { device: nic0, handle: s3 }
  - expect: { counters: { dma-api.strictSyncs: 4, dma-api.fqQueued: 0 } }
  - group_type: { device: nic0, type: DMA-FQ }
  - note: lazy phase - 4 map/unmap pairs, the device touches the last page first
  - map: { device: nic0, buffer: buf, offset: 0x4000, size: 4096, as: l0 }
  - map: { device: nic0, buffer: buf, offset: 0x5000, size: 4096, as: l1 }
  - map: { device: nic0, buffer: buf, offset: 0x6000, size: 4096, as: l2 }
  - map: { device: nic0, buffer: buf, offset: 0x7000, size: 4096, as: l3 }
  - read: { device: nic0, addr: $l3, length: 4, expect: { data: "5a 5a 5a 5a" } }
  - unmap: { device: nic0, handle: l0 }
  - unmap: { device: nic0, handle: l1 }
  - unmap: { device: nic0, handle: l2 }
  - unmap: { device: nic0, handle: l3 }
  - expect: { counters: { dma-api.strictSyncs: 4, dma-api.fqQueued: 4, dma-api.fqFlushes: 0 } }
  - note: exposure window - the unmapped page is still reachable through the IOTLB
  - read: { device: nic0, addr: $l3, length: 4, expect: { data: "5a 5a 5a 5a" } }
  - advance: { ms: 10 }
  - expect: { counters: { dma-api.fqFlushes: 1 } }
  - read: { device: nic0, addr: $l3, length: 4, expect: { fault: true } }
`;

const ISOLATION = `# DMA isolation: each device reaches only what was mapped for it, with the
# direction's permission; a faulting write writes nothing, not even the
# part of it that fell inside the mapping.
name: dma-isolation
description: a device outside its mappings faults and nothing is written
policy: { strict: true }
devices:
  - { name: nic0, bdf: "00:03.0" }
  - { name: disk0, bdf: "00:04.0" }
steps:
  - alloc: { name: a, size: 8192, fill: 0xaa }
  - alloc: { name: b, size: 4096, fill: 0xbb }
  - map: { device: nic0, buffer: a, size: 4096, dir: bidirectional, as: na }
  - map: { device: nic0, buffer: a, offset: 0x1000, size: 4096, dir: to_device, as: na2 }
  - map: { device: disk0, buffer: b, size: 4096, dir: to_device, as: db }
  - read: { device: nic0, addr: $na, length: 4, expect: { data: "aa aa aa aa" } }
  - note: disk0 tries an address mapped only for nic0 (each device has its own IOVA space)
  - read: { device: disk0, addr: $na2, length: 4, expect: { fault: true } }
  - note: a write straddling the end of nic0's mapping
  - write: { device: nic0, addr: $na+0xffc, data: "01 02 03 04 05 06 07 08", expect: { fault: true } }
  - cpu_check: { addr: $a+0xffc, data: "aa aa aa aa aa aa aa aa" }
  - note: disk0 may read its TO_DEVICE buffer but not write it
  - read: { device: disk0, addr: $db, length: 4, expect: { data: "bb bb bb bb" } }
  - write: { device: disk0, addr: $db, data: "00 00 00 00", expect: { fault: true } }
  - cpu_check: { addr: $b, data: "bb bb bb bb" }
  - expect: { counters: { dma.faults: 3 } }
`;

const MISSED = `# A missed invalidation caught in checking mode: the DMA layer is made to
# skip the IOTLB sync of a strict unmap (fault injection). The IOVA is
# reused at once for another buffer, but the IOTLB still holds the old
# translation: the device reads the OLD buffer. In checking mode the
# hardware model compares each IOTLB hit with a fresh walk of memory and
# reports the difference.
name: missed-invalidation
description: a skipped IOTLB sync leaves a stale entry; checking mode reports it
policy: { strict: true }
devices:
  - { name: nic0, bdf: "00:03.0" }
steps:
  - checking: true
  - alloc: { name: old, size: 4096, fill: 0x0d }
  - alloc: { name: new, size: 4096, fill: 0x4e }
  - map: { device: nic0, buffer: old, size: 4096, as: d0 }
  - read: { device: nic0, addr: $d0, length: 4, expect: { data: "0d 0d 0d 0d" } }
  - expect: { missed_invalidations: 0 }
  - inject: { device: nic0, skip_iotlb_sync: true }
  - unmap: { device: nic0, handle: d0 }
  - map: { device: nic0, buffer: new, size: 4096, as: d1 }
  - note: same IOVA, new page table entry, stale IOTLB entry
  - read: { device: nic0, addr: $d1, length: 4, expect: { data: "0d 0d 0d 0d" } }
  - expect: { missed_invalidations: ">=1" }
`;

const PASID = `# DMA with PASID: the driver asks for PASID DMA and gets a global PASID
# attached to its default domain, the same I/O page table requests without
# PASID use (RID2PASID). One mapping serves both; one strict unmap
# invalidates both.
name: pasid-dma
description: DMA with PASID sharing the RID2PASID page table; one invalidation covers both
requires: [pasid]
policy: { strict: true }
devices:
  - { name: acc0, bdf: "00:05.0", pasid_bits: 8 }
steps:
  - alloc: { name: buf, size: 4096, fill: 0x77 }
  - pasid_enable: { device: acc0, as: p }
  - map: { device: acc0, buffer: buf, size: 4096, as: d }
  - read: { device: acc0, addr: $d, length: 4, pasid: $p, expect: { data: "77 77 77 77" } }
  - read: { device: acc0, addr: $d, length: 4, expect: { data: "77 77 77 77" } }
  - write: { device: acc0, addr: $d, data: "01 02", pasid: $p, expect: { ok: true } }
  - cpu_check: { addr: $buf, data: "01 02 77" }
  - unmap: { device: acc0, handle: d }
  - read: { device: acc0, addr: $d, length: 4, pasid: $p, expect: { fault: true } }
  - read: { device: acc0, addr: $d, length: 4, expect: { fault: true } }
  - expect: { counters: { dma-api.strictSyncs: 1, dma.faults: 2 } }
`;

const BOUNCE = `# swiotlb bouncing for an untrusted device (behind an external-facing
# port): a 4-byte buffer in the middle of a page full of other data is not
# granule-aligned, so the DMA API copies it into a bounce slot and maps
# that, with the rest of the slot's page zeroed. The device sees the buffer
# and zeros - never the neighbouring bytes - and its write comes back to the
# original buffer at unmap.
name: untrusted-bounce
description: an untrusted device's unaligned buffer is bounced; the padding is zeroed
policy: { strict: true }
devices:
  - { name: tb0, bdf: "05:00.0", untrusted: true }
steps:
  - alloc: { name: page, size: 4096, fill: 0xee }
  - cpu_write: { addr: $page+0x200, data: "01 02 03 04" }
  - map: { device: tb0, buffer: page, offset: 0x200, size: 4, dir: bidirectional, as: d }
  - read: { device: tb0, addr: $d, length: 8, expect: { data: "01 02 03 04 00 00 00 00" } }
  - read: { device: tb0, addr: $d+0x800, length: 4, expect: { data: "00 00 00 00" } }
  - write: { device: tb0, addr: $d, data: "0a 0b", expect: { ok: true } }
  - cpu_check: { addr: $page+0x200, data: "01 02 03 04" }
  - unmap: { device: tb0, handle: d }
  - cpu_check: { addr: $page+0x1fe, data: "ee ee 0a 0b 03 04 ee ee" }
  - expect: { counters: { dma-api.bounces: 1 } }
`;

/** The built-in scenarios. */
export const BUILTIN_SCENARIOS: readonly BuiltinScenario[] = [
  { name: "tour", summary: "quickstart tour: map, device DMA, faults, strict unmap", yaml: TOUR },
  {
    name: "strict-vs-lazy",
    summary: "invalidation counts of strict vs lazy unmap and the lazy exposure window",
    yaml: STRICT_VS_LAZY,
  },
  {
    name: "dma-isolation",
    summary: "a device outside its mappings faults and nothing is written",
    yaml: ISOLATION,
  },
  {
    name: "missed-invalidation",
    summary: "a skipped IOTLB sync caught by checking mode",
    yaml: MISSED,
  },
  {
    name: "untrusted-bounce",
    summary: "swiotlb bouncing for an untrusted device, padding zeroed",
    yaml: BOUNCE,
  },
  {
    name: "pasid-dma",
    summary: "DMA with PASID sharing the RID2PASID page table",
    yaml: PASID,
  },
];
