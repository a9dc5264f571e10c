/**
 * @module
 * The /dev/iommu (iommufd) user API model — not built yet: this package exports nothing so far. Its issue is
 * still open; see the project's README for the plan.
 */
export {};
