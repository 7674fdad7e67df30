/** Error codes of error frames (docs/protocol.md). */
export type ErrorCode =
  | 'invalid_json'
  | 'invalid_message'
  | 'unknown_type'
  | 'message_too_long'
  | 'rate_limited'
  | 'user_not_found'
  | 'peer_not_connected'
  /** An `ack` of an id that names no alert asking for ack delivered to this user (docs/protocol.md). */
  | 'unknown_alert'
  /** The frame could not be delivered because Redis is unreachable. */
  | 'unavailable'
  // `/ws` (docs/protocol.md), each naming the channel it is about.
  | 'forbidden_channel'
  | 'unknown_channel'
  | 'too_many_subscriptions'
  | 'proxy_unavailable'
  | 'not_subscribed'
  | 'forbidden_publish';

export function encodeFrame(frame: object): Buffer {
  return Buffer.from(JSON.stringify(frame));
}

export function errorFrame(code: ErrorCode, message: string, channel?: string) {
  return { type: 'error', payload: channel === undefined ? { code, message } : { code, message, channel } } as const;
}

/**
 * Thrown by a frame handler to answer the sender with an error frame and keep the socket open. Anything
 * else thrown by a handler is a server bug and closes that socket with 1011.
 */
export class FrameError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** The channel it is about (`/ws` errors carry it). */
    readonly channel?: string,
  ) {
    super(message);
  }
}

/** Shared immutable reply to the plain-text heartbeat. */
export const PONG_TEXT = Buffer.from('pong');
