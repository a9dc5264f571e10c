/**
 * @module
 * Example third-party backends for iommu-lab, written only against the
 * public API of `@iommu-lab/core`. `flatIommu` is the `flat-iommu` backend
 * plugin (also the default export of `./flat-iommu/mod.ts`, which is what
 * `loadPlugin` reads).
 */

import flatIommu from "./flat-iommu/mod.ts";

export * from "./flat-iommu/mod.ts";
export { flatIommu };
export default flatIommu;
