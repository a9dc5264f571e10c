/**
 * @module
 * pKVM paravirtual SMMUv3 backend — not built yet: this package exports nothing so far. Its issue is
 * still open; see the project's README for the plan.
 */
export {};
