/**
 * Why the client stopped or could not connect. `fatal` errors end reconnecting: retrying unchanged would fail
 * the same way (a refused token, a wrong path, a frame the server rejects).
 */
export class GatewayError extends Error {
  constructor(
    readonly kind: 'http' | 'close' | 'queue',
    /** HTTP status of a refused upgrade (in browsers, which hide it, the server's answer to a plain GET) or the close code. */
    readonly code: number,
    /** The server's error code (`token_expired`, `forbidden_role`, ...) when it sent one. */
    readonly error: string | undefined,
    message: string,
    readonly fatal: boolean,
  ) {
    super(message);
    this.name = 'GatewayError';
  }
}

/** Close codes after which reconnecting unchanged is pointless (SPEC "Close codes"). */
export const FATAL_CLOSE_CODES = new Set([1003, 1008, 1009, 4003]);

/** Closed by the server API (`POST /api/disconnect`): an operator ended the session; the client stays closed. */
export const DISCONNECTED_CLOSE_CODE = 4003;
/** Upgrade refusals that a retry cannot fix. */
export const FATAL_HTTP_STATUSES = new Set([400, 401, 403, 404]);
