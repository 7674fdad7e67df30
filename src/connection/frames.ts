/** Error codes of error frames (SPEC "Frames"). */
export type ErrorCode =
  | 'invalid_json'
  | 'invalid_message'
  | 'unknown_type'
  | 'message_too_long'
  | 'rate_limited'
  | 'user_not_found'
  | 'peer_not_connected'
  /** Not in the SPEC list (an addition): the frame could not be delivered because Redis is unreachable. */
  | 'unavailable';

export function encodeFrame(frame: object): Buffer {
  return Buffer.from(JSON.stringify(frame));
}

export function errorFrame(code: ErrorCode, message: string) {
  return { type: 'error', payload: { code, message } } as const;
}

/**
 * Thrown by a frame handler to answer the sender with an error frame and keep the socket open. Anything
 * else thrown by a handler is a server bug and closes that socket with 1011.
 */
export class FrameError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Shared immutable reply to the plain-text heartbeat. */
export const PONG_TEXT = Buffer.from('pong');
