/** An exclusive registration, e.g. group `seat:c42`, member `doctor`, held by one connection somewhere. */
export interface Claim {
  group: string;
  member: string;
  /** `<nodeId>|<connectionId>` of the holder. */
  owner: string;
}

export type ClaimResult = { ok: true; release: () => void } | { ok: false; holder: string };
/**
 * A membership several connections of one user may hold at once (`/ws` subscribers of a presence namespace).
 * `first`: no other connection of that user (nor its exclusive claim) holds the group; release() resolves true
 * when this was the last. Both decided atomically by the storage, so a user joins once and leaves once however
 * its connections come and go, on any replica.
 */
export type ShareResult = { first: boolean; release: () => Promise<boolean> };

/**
 * The member key of a shared membership: `<user><SHARED_SEP><connection id>`. A connection id never holds the
 * separator, so the last one splits it; an exclusive claim's member is the bare user (or a seat).
 */
export const SHARED_SEP = '\u001f';

export function sharedMember(user: string, connectionId: string): string {
  return `${user}${SHARED_SEP}${connectionId}`;
}

/** The user a member key names. */
export function memberUser(member: string): string {
  const at = member.lastIndexOf(SHARED_SEP);
  return at === -1 ? member : member.slice(0, at);
}
/**
 * A user's hold on a channel's presence: one per connection (a chat room's path connection, each `/ws`
 * subscription, a signaling seat's holder), counted per user and decided atomically by the storage, so a user
 * joins once and leaves once cluster-wide however its connections come and go.
 * `joined`: the user held the channel nowhere and was not within PRESENCE_GRACE_MS of leaving (a return within
 * the grace is not a join). `occupied`: and nobody else held it or was within the grace either.
 * `release()` resolves to the ms until the user's leave is due when this was its last hold (the grace; the leave
 * is then popped by sweep(), on whichever replica comes first), undefined otherwise.
 */
export interface HoldResult {
  joined: boolean;
  occupied: boolean;
  release: () => Promise<number | undefined>;
}

/** A leave whose grace ended without the user coming back; `vacated`: nobody else holds the channel or is within the grace. */
export interface PresenceLeave {
  channel: string;
  user: string;
  vacated: boolean;
}

export type SlotResult = { ok: true; release: () => void } | { ok: false; open: number };

/**
 * Who is connected where, across the deployment. Embedded mode: this process. Cluster mode: Redis, with
 * every registration tied to its node's liveness key, so a crashed node's registrations vanish after about
 * PRESENCE_TTL_MS.
 */
export interface Presence {
  /** Counts one more connection of `user` unless it already has `limit` open (cluster-wide). */
  acquireUserSlot(user: string, limit: number): Promise<SlotResult>;
  /**
   * Atomically claims `member` in `group` for a connection, unless a live connection holds it. `onLost` runs if
   * the claim is later taken away (this node was presumed dead during a Redis partition and someone else
   * claimed it meanwhile). Rejects with BrokerUnavailableError while Redis is down.
   */
  claim(group: string, member: string, connectionId: string, onLost?: () => void): Promise<ClaimResult>;
  /** Joins `group` for one connection of `user` (see ShareResult). Rejects while Redis is down. */
  share(group: string, user: string, connectionId: string): Promise<ShareResult>;
  /**
   * Counts one more hold of `user` on `channel` for a connection. Never rejects: while Redis is down the hold is
   * kept here, reported as neither a join nor an occupation, and written back when Redis returns.
   */
  hold(channel: string, user: string, connectionId: string): Promise<HoldResult>;
  /**
   * Pops (at most `max`) leaves whose grace has ended: each is returned exactly once deployment-wide, so the
   * replica that gets it tells the room and the backend. Rejects while Redis is down.
   */
  sweep(max: number): Promise<PresenceLeave[]>;
  /** The members of a group and their holders. Rejects while Redis is down. */
  members(group: string): Promise<Map<string, string>>;
  /** Claims that vanished because their node died (after about the TTL), delivered on every node. */
  onNodeGone(listener: (node: string, claims: Claim[]) => void): () => void;
  /** Called after presence was written back to storage (start, every reconnect: Redis may have lost it all). */
  onResync(listener: () => void): void;
  /** Where this node's description comes from; read on every heartbeat (cluster) or on each nodes() call. */
  describeNode(describe: () => NodeInfo | Promise<NodeInfo>): void;
  /**
   * Every live node's description: this node's as of now, the others' as of their last heartbeat (at most
   * a third of PRESENCE_TTL_MS old). Rejects while Redis is down.
   */
  nodes(): Promise<NodeInfo[]>;
}

/** What a node says about itself (GET /api/nodes). */
export interface NodeInfo {
  id: string;
  [field: string]: unknown;
}

export const PRESENCE = Symbol('PRESENCE');

export function ownerOf(nodeId: string, connectionId: string): string {
  return `${nodeId}|${connectionId}`;
}

/** Connections per user on this node: the local truth both presence implementations keep. */
export class UserCounts {
  private readonly counts = new Map<string, number>();

  get(user: string): number {
    return this.counts.get(user) ?? 0;
  }

  increment(user: string): void {
    this.counts.set(user, this.get(user) + 1);
  }

  decrement(user: string): void {
    const left = this.get(user) - 1;
    if (left > 0) this.counts.set(user, left);
    else this.counts.delete(user);
  }

  users(): IterableIterator<string> {
    return this.counts.keys();
  }
}

/** A release that runs once however often it is called (a connection can close and abort at once). */
export function releaseOnce(release: () => void): () => void {
  let released = false;
  return () => {
    if (released) return;
    released = true;
    release();
  };
}
