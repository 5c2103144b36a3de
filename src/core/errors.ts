/**
 * Errors that reach the user. Every error path of the CLI ends in one line
 * `Error: <file>: <problem>`, a non-zero exit code and no stack trace.
 */

/** A problem with the user's input (files, flags): printed as one line. */
export class UserError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'UserError';
    this.exitCode = exitCode;
  }
}

/** The short reason of a failed file operation: its errno code (ENOENT, EISDIR, …), else its message. */
export function ioReason(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

/** `<file>: <problem>` */
export function fileError(file: string, problem: string): UserError {
  return new UserError(`${file}: ${problem}`);
}

/** Mirrors lsw_status in cuda/include/lsw.h. */
export const LswStatus = {
  OK: 0,
  INVALID_ARGUMENT: 1,
  IO: 2,
  FORMAT: 3,
  UNSUPPORTED: 4,
  OUT_OF_MEMORY: 5,
  BACKEND_UNAVAILABLE: 6,
  DEVICE: 7,
  CONTEXT_FULL: 8,
  INTERNAL: 9,
  NUMERIC: 10,
} as const;

export const STATUS_NAMES: Record<number, string> = {
  0: 'LSW_OK',
  1: 'LSW_E_INVALID_ARGUMENT',
  2: 'LSW_E_IO',
  3: 'LSW_E_FORMAT',
  4: 'LSW_E_UNSUPPORTED',
  5: 'LSW_E_OUT_OF_MEMORY',
  6: 'LSW_E_BACKEND_UNAVAILABLE',
  7: 'LSW_E_DEVICE',
  8: 'LSW_E_CONTEXT_FULL',
  9: 'LSW_E_INTERNAL',
  10: 'LSW_E_NUMERIC',
};

/** A non-zero lsw_status, carrying lsw_last_error(). */
export class NativeError extends Error {
  readonly status: number;
  readonly fn: string;
  readonly nativeMessage: string;
  readonly exitCode: number = 1;
  constructor(fn: string, status: number, nativeMessage: string) {
    const detail = nativeMessage && nativeMessage.trim() !== '' ? nativeMessage.trim() : STATUS_NAMES[status] ?? `status ${status}`;
    super(`${fn}: ${detail}`);
    this.name = 'NativeError';
    this.status = status;
    this.fn = fn;
    this.nativeMessage = nativeMessage;
  }
}
export class NativeInvalidArgumentError extends NativeError { override name = 'NativeInvalidArgumentError'; }
export class NativeIOError extends NativeError { override name = 'NativeIOError'; }
export class NativeFormatError extends NativeError { override name = 'NativeFormatError'; }
export class NativeUnsupportedError extends NativeError { override name = 'NativeUnsupportedError'; }
export class NativeOutOfMemoryError extends NativeError { override name = 'NativeOutOfMemoryError'; }
export class BackendUnavailableError extends NativeError { override name = 'BackendUnavailableError'; }
export class DeviceError extends NativeError { override name = 'DeviceError'; }
export class ContextFullError extends NativeError { override name = 'ContextFullError'; }
export class NativeInternalError extends NativeError { override name = 'NativeInternalError'; }
/** A token was to be sampled from logits that are not all finite (NaN or infinity). */
export class NonFiniteLogitsError extends NativeError { override name = 'NonFiniteLogitsError'; }

const CLASSES: Record<number, new (fn: string, status: number, msg: string) => NativeError> = {
  1: NativeInvalidArgumentError,
  2: NativeIOError,
  3: NativeFormatError,
  4: NativeUnsupportedError,
  5: NativeOutOfMemoryError,
  6: BackendUnavailableError,
  7: DeviceError,
  8: ContextFullError,
  9: NativeInternalError,
  10: NonFiniteLogitsError,
};

export function nativeError(fn: string, status: number, message: string): NativeError {
  const Cls = CLASSES[status] ?? NativeError;
  return new Cls(fn, status, message);
}

/** One line for the terminal: no stack, no newlines (multi-line messages, e.g. oclif's parse errors, are joined). */
export function oneLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  const parts = msg
    .split('\n')
    .map((s) => s.trim())
    .filter((s) => s !== '' && !/^See more help with/.test(s) && !/^The following errors? occurred:?$/.test(s));
  const line = parts.join(' ').replace(/\s+/g, ' ').trim();
  return line === '' ? 'unknown error' : line;
}

export function exitCodeOf(err: unknown): number {
  const code = (err as { exitCode?: unknown })?.exitCode;
  return typeof code === 'number' && code > 0 ? code : 1;
}
