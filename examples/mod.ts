/**
 * @module
 * Example third-party backend — not built yet: this package exports nothing so far.
 */
export {};
