/**
 * @module
 * Intel VT-d backend (scalable mode) — not built yet: this package exports nothing so far.
 */
export {};
