/**
 * @module
 * The one error class of iommu-lab: {@link IommuError}, carrying a Linux errno
 * name, the operation that failed and a message saying what was wrong and what
 * is allowed.
 */

/** Linux errno numbers (asm-generic/errno-base.h and errno.h) used by the model. */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EIO: 5,
  E2BIG: 7,
  EAGAIN: 11,
  ENOMEM: 12,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  ERANGE: 34,
  ENOTTY: 25,
  EOVERFLOW: 75,
  EBADE: 52,
  EMSGSIZE: 90,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
  ETIMEDOUT: 110,
} as const;

/** A kernel errno name, such as `"EINVAL"`. */
export type Errno = keyof typeof ERRNO;

/** Extra, machine-readable detail an error may carry. */
export interface IommuErrorDetail {
  /** Bytes already mapped when a map call failed part way (the kernel's `*mapped`). */
  mapped?: number;
  /** Anything else worth keeping (field name, value, limit...). */
  [key: string]: unknown;
}

/**
 * An error with a kernel errno name. `op` names the operation (e.g.
 * `"iommu_attach_device_pasid"`), and the message says what was wrong and what
 * is allowed. A call that throws it leaves no partial state unless documented.
 */
export class IommuError extends Error {
  /** The errno name, e.g. `"EINVAL"`. */
  readonly errno: Errno;
  /** The operation that failed. */
  readonly op: string;
  /** Optional structured detail. */
  readonly detail: IommuErrorDetail;

  /** Build an error: `new IommuError("EINVAL", "map_pages", "iova 0x1001 is not aligned to 4 KiB")`. */
  constructor(errno: Errno, op: string, message: string, detail: IommuErrorDetail = {}) {
    super(`${op}: ${errno}: ${message}`);
    this.name = "IommuError";
    this.errno = errno;
    this.op = op;
    this.detail = detail;
  }

  /** The negative errno value the kernel would return (e.g. -22 for EINVAL). */
  get code(): number {
    return -ERRNO[this.errno];
  }
}

/** Throw an {@link IommuError} unless `cond` holds. */
export function ensure(cond: unknown, errno: Errno, op: string, message: string): asserts cond {
  if (!cond) throw new IommuError(errno, op, message);
}

/** True if `e` is an {@link IommuError}, optionally with the given errno. */
export function isIommuError(e: unknown, errno?: Errno): e is IommuError {
  return e instanceof IommuError && (errno === undefined || e.errno === errno);
}
