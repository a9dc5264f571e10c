/**
 * @module
 * Page-table formats written into physical memory (Arm LPAE, x86, VT-d
 * second stage). Not built yet: exports nothing so far.
 */
export {};
