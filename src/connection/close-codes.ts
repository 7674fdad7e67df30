/** Close codes of the docs/protocol.md ("Every endpoint", close codes). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  /** Never sent on the wire: a peer that vanished or missed a heartbeat is counted under it. */
  ABNORMAL: 1006,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  TOKEN_EXPIRED: 4001,
  /** The same code, reason `token revoked` (POST /api/revoke): the client gets a new token, as after expiry. */
  TOKEN_REVOKED: 4001,
  /** Closed by the server API (`POST /api/disconnect`): the SDK does not reconnect. */
  DISCONNECTED: 4003,
} as const;

/**
 * ws reports protocol violations as 'error' events with these codes and then closes with the matching status;
 * we record the status it sent rather than the 1006 it reports locally.
 */
export const WS_ERROR_CLOSE_CODES: Record<string, number> = {
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: CloseCode.MESSAGE_TOO_BIG,
  WS_ERR_INVALID_UTF8: CloseCode.INVALID_PAYLOAD,
};

/** Bounded label for ws_closes_total: RFC codes and our 4xxx codes as they are, anything else collapsed. */
export function closeCodeLabel(code: number): string {
  if ((code >= 1000 && code <= 1015) || (code >= 4000 && code <= 4099)) return String(code);
  return code >= 3000 && code <= 4999 ? 'other' : 'invalid';
}
