/** The verified identity of a connection or an HTTP caller (from the JWT claims). */
export interface Principal {
  sub: string;
  role: string;
  email?: string;
  /** Expiry, seconds since the epoch, when the token has one. */
  exp?: number;
  /**
   * The `channels` claim (SPEC v3): channel names, or prefixes ending in `*`, this token may subscribe to where
   * the namespace's mode is `claim`.
   */
  channels?: readonly string[];
}
