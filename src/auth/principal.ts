/** The verified identity of a connection or an HTTP caller (from the JWT claims). */
export interface Principal {
  sub: string;
  role: string;
  email?: string;
  /** Expiry, seconds since the epoch, when the token has one. */
  exp?: number;
  /** Issued at, seconds since the epoch, when the token says: a user's revocation covers tokens issued before. */
  iat?: number;
  /** The token's id, when it has one: what POST /api/revoke with `jti` names. */
  jti?: string;
  /**
   * The `channels` claim (docs/namespaces.md, `claim`): channel names, or prefixes ending in `*`, this token may subscribe to where
   * the namespace's mode is `claim`.
   */
  channels?: readonly string[];
}

/** At most this many bytes of UTF-8: a sub travels in Redis keys, close reasons and server API bodies. */
export const MAX_SUB_BYTES = 256;
const CONTROL = /[\x00-\x1f\x7f]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * The one rule for a user's `sub`, at the door and in the server API alike (docs/server-api.md, disconnect): whatever connects can be
 * named to disconnect, ban or revoke it. Undefined when valid; otherwise what is wrong (never echoing it).
 */
export function subProblem(sub: string): string | undefined {
  if (sub.length === 0) return 'must not be empty';
  if (CONTROL.test(sub)) return 'must not hold control characters';
  if (LONE_SURROGATE.test(sub)) return 'must be well-formed Unicode (no lone surrogates)';
  if (Buffer.byteLength(sub) > MAX_SUB_BYTES) return `must be at most ${MAX_SUB_BYTES} bytes of UTF-8`;
  return undefined;
}
