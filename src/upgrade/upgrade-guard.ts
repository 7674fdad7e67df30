import type { IncomingMessage } from 'node:http';
import type { Principal } from '../auth/principal';

/** What the guard chain knows about an upgrade request; it becomes the Connection when all guards pass. */
export interface UpgradeContext {
  /** The id the connection will have once accepted (guards may register it, e.g. as a seat holder). */
  readonly connectionId: string;
  readonly req: IncomingMessage;
  readonly gateway: string;
  /** The matched path pattern, e.g. `/ws/chat/:room`. */
  readonly pattern: string;
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  /** Subprotocols the client offered, in order. */
  readonly protocols: readonly string[];
  /** Roles declared with @AllowRoles on the gateway (empty: any role). */
  readonly allowedRoles: readonly string[];
  /** The channel a path endpoint serves (its gateway's `channel` option), checked by ChannelGuard. */
  readonly channel?: string;
  /** Set by the authentication guard; every later guard may rely on it. */
  user?: Principal;
  /** Values for the gateway (e.g. a resume id); handed over as `connection.attributes`. */
  readonly attributes: Record<string, unknown>;
  /**
   * What guards reserved for this connection (a per-user slot, a seat): run once, when the upgrade fails after
   * the reservation or when the connection closes.
   */
  readonly releases: (() => void)[];
}

/**
 * One check of the upgrade chain. Refuse by throwing UpgradeRefusal; return (or resolve) to let the request
 * through. Guards are Nest providers, so they get their dependencies injected.
 */
export interface UpgradeGuard {
  canUpgrade(ctx: UpgradeContext): void | Promise<void>;
  /**
   * True when the guard reserves something (a seat, a per-user slot). A plain request asking why an upgrade
   * would fail runs the guards before the first one that reserves, and no further.
   */
  readonly reserves?: boolean;
}
