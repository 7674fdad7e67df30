/**
 * Where the access denials in force are kept cluster-wide: bans (`POST /api/disconnect` with `ban_seconds`) and
 * token revocations (`POST /api/revoke`). Every node holds them all in memory (presence/denials.ts); this store
 * is what a node reads to catch up and writes back to after Redis restarted empty.
 */
export type DenialKind = 'ban' | 'revocation';

/**
 * One denial. `member` names it: a ban's is the user's `sub`; a revocation's is `j<NUL><jti>` or
 * `u<NUL><issued_before, unix s><NUL><sub>` (neither a sub nor a jti may hold a control character, so the
 * separator is unambiguous). `until` is when it lapses, ms since the epoch.
 */
export interface Denial {
  kind: DenialKind;
  member: string;
  until: number;
}

export interface DenialStore {
  /**
   * Stores denials (a later `until` wins) and bumps the change counter, in one atomic step per call; drops lapsed
   * ones on the way. Rejects while the store is unreachable.
   */
  write(denials: readonly Denial[]): Promise<void>;
  /** The change counter (null when the store holds none: a Redis restarted empty). Rejects while unreachable. */
  version(): Promise<string | null>;
  /** Up to `count` denials of `kind` from rank `offset` (lowest `until` first), lapsed ones included. */
  page(kind: DenialKind, offset: number, count: number): Promise<Denial[]>;
}

export const DENIAL_STORE = Symbol('DENIAL_STORE');

/** Embedded mode: this process is the deployment, so the in-memory denials are the only copy; nothing to store. */
export class LocalDenialStore implements DenialStore {
  async write(): Promise<void> {}

  async version(): Promise<string | null> {
    return 'local';
  }

  async page(): Promise<Denial[]> {
    return [];
  }
}
