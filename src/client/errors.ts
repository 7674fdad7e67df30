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

/** Close codes after which reconnecting unchanged is pointless (docs/protocol.md, close codes). */
export const FATAL_CLOSE_CODES = new Set([1003, 1008, 1009, 4003]);

/** Closed by the server API (`POST /api/disconnect`): an operator ended the session; the client stays closed. */
export const DISCONNECTED_CLOSE_CODE = 4003;
/** Upgrade refusals that a retry cannot fix. */
export const FATAL_HTTP_STATUSES = new Set([400, 401, 403, 404]);

/**
 * An error frame of the `/ws` endpoint about one channel, as the subscription handle of that channel reports it.
 * `fatal`: the handle has ended (a refused subscribe that retrying cannot fix); otherwise the handle stays (a
 * refused publish, or a subscribe the SDK retries itself).
 */
export class ChannelError extends Error {
  constructor(
    readonly channel: string,
    /** The server's error code (`forbidden_channel`, `unavailable`, `forbidden_publish`, ...). */
    readonly code: string,
    message: string,
    readonly fatal: boolean,
  ) {
    super(message);
    this.name = 'ChannelError';
  }
}

/** Subscribe refusals that retrying unchanged cannot fix: the handle ends (docs/protocol.md, `/ws` error codes). */
export const FATAL_CHANNEL_CODES = new Set(['forbidden_channel', 'unknown_channel', 'too_many_subscriptions', 'invalid_message']);
/** Subscribe refusals of a moment (Redis or the subscribe proxy unreachable): retried with backoff. */
export const RETRIED_CHANNEL_CODES = new Set(['unavailable', 'proxy_unavailable']);
