/**
 * @module
 * Arm SMMUv3 backend — not built yet: this package exports nothing so far.
 */
export {};
