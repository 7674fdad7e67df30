/** The verified identity of a connection or an HTTP caller (from the JWT claims). */
export interface Principal {
  sub: string;
  role: string;
  email?: string;
  /** Expiry, seconds since the epoch, when the token has one. */
  exp?: number;
}
