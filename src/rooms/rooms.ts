import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { BrokerUnavailableError } from '../channels/broker';
import { ChannelHub, type AttachFrames } from '../channels/channel-hub';
import { channelKind, type Publication } from '../channels/publication';
import { CloseCode } from '../connection/close-codes';
import type { Connection } from '../connection/connection';
import { FrameError } from '../connection/frames';
import { LOGGER, type Logger } from '../logging/logger';
import { memberUser, PRESENCE, type Presence } from '../presence/presence';


/**
 * What a feature says about its rooms (`chat`, `signaling`): how a member is named (chat: the user; signaling:
 * the seat) and what a join or a leave looks like on the room's channel. Membership itself is the presence
 * claim the feature's upgrade guard took (one per member per room, cluster-wide).
 */
export interface RoomPolicy {
  /** Channel kind of its rooms; room channels are `<kind>:<name>`. */
  readonly kind: string;
  memberOf(conn: Connection): string;
  /** The live payload telling the room that `member` joined or left; `members` is the room after it. */
  announcement(event: 'join' | 'leave', member: string, members: string[]): Record<string, unknown>;
  /** After `conn` entered (and before its own join is announced), given who is in the room. */
  entered?(conn: Connection, members: string[]): void;
  /**
   * Its members are seats, not users (signaling's doctor and patient): a `/ws` subscriber of such a room is an
   * observer, never a member.
   */
  readonly seats?: boolean;
}

/** The room's users and how many connections each holds it with. */
export function usersOf(members: Iterable<string>): Map<string, number> {
  const users = new Map<string, number>();
  for (const member of members) {
    const user = memberUser(member);
    users.set(user, (users.get(user) ?? 0) + 1);
  }
  return users;
}

/** The payload a room without a feature's policy announces with (an operator-added namespace). */
function genericAnnouncement(event: 'join' | 'leave', user: string, users: string[]): Record<string, unknown> {
  return { type: 'system', event, user, users };
}

/**
 * Rooms that span replicas, written once for every feature: a room is a channel of the hub; entering it
 * attaches the connection (welcome, replay and `resumed` for history rooms) and announces the join; closing
 * announces the leave before the membership is released (so a rejoin cannot overtake it); members whose
 * replica died are announced as gone by every replica to its own members; and a Redis that cannot be reached
 * is the sender's `unavailable` error frame, never a closed socket.
 */
@Injectable()
export class Rooms implements OnModuleDestroy {
  private readonly policies = new Map<string, RoomPolicy>();
  /** Resolves when the connection is in its room; its frames wait for it. */
  private readonly entered = new WeakMap<Connection, Promise<void>>();
  /** `/ws` memberships: per connection, per channel, how to leave (announce, then release). */
  private readonly shared = new WeakMap<Connection, Map<string, () => Promise<void>>>();
  private readonly offNodeGone: () => void;

  constructor(
    private readonly hub: ChannelHub,
    @Inject(PRESENCE) private readonly presence: Presence,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    this.offNodeGone = presence.onNodeGone((_node, claims) => {
      const byRoom = new Map<string, string[]>();
      for (const { group, member } of claims) {
        if (!this.tracked(group) || this.hub.localMembers(group).size === 0) continue;
        byRoom.set(group, [...(byRoom.get(group) ?? []), member]);
      }
      for (const [room, gone] of byRoom) void this.announceGone(room, gone);
    });
  }

  onModuleDestroy(): void {
    this.offNodeGone();
  }

  register(policy: RoomPolicy): void {
    this.policies.set(policy.kind, policy);
  }

  /** Enters `conn` into `room` (a channel name). Errors close only this connection. */
  enter(conn: Connection, room: string, options: { since?: { id: string; epoch?: string }; frames?: AttachFrames } = {}): void {
    const policy = this.policyOf(room);
    const member = policy.memberOf(conn);
    // Announced before the membership is released (after this), so a rejoin cannot overtake the leave.
    conn.onClose(() => conn.finishing(this.announce(room, 'leave', member)));
    const entered = (async () => {
      await this.hub.attach(conn, [{ channel: room, since: options.since }], options.frames);
      if (policy.entered) policy.entered(conn, [...(await this.presence.members(room)).keys()].sort());
      await this.announce(room, 'join', member, conn);
    })();
    this.entered.set(conn, entered);
    entered.catch((error) => {
      if (error instanceof BrokerUnavailableError) conn.close(CloseCode.INTERNAL_ERROR, 'room unavailable (Redis is down); reconnect');
      else conn.fail(error);
    });
  }

  /** Resolves once `conn` is in its room. */
  whenEntered(conn: Connection): Promise<void> {
    return this.entered.get(conn) ?? Promise.resolve();
  }

  /** The room's members (cluster-wide) and their holders. */
  members(room: string): Promise<Map<string, string>> {
    return this.available(() => this.presence.members(room));
  }

  /** The room's users (cluster-wide), path members and `/ws` subscribers alike. */
  async users(room: string): Promise<Set<string>> {
    return new Set(usersOf((await this.members(room)).keys()).keys());
  }

  /**
   * Whether a `/ws` subscriber of `channel` becomes a member: its namespace has presence, and its members are
   * users (not seats).
   */
  tracksSubscribers(channel: string): boolean {
    return (this.hub.namespaces.of(channel)?.presence ?? false) && !this.policies.get(channelKind(channel))?.seats;
  }

  /**
   * Makes a `/ws` subscriber a member of `channel` (cluster-wide, per connection) and announces the user's join
   * when this is its first connection in the room. Rejects with FrameError `unavailable` while Redis is down.
   * leaveShared() or the close announces the leave (when it was the user's last) before releasing.
   */
  async joinShared(conn: Connection, channel: string): Promise<void> {
    const user = conn.user.sub;
    const { first, release } = await this.available(() => this.presence.share(channel, user, conn.id));
    let left = false;
    const leave = async () => {
      if (left) return;
      left = true;
      // Released first, atomically told whether it was the user's last hold: one leave however many connections.
      if (await release()) await this.announceUser(channel, 'leave', user);
    };
    let mine = this.shared.get(conn);
    if (!mine) {
      const memberships = (mine = new Map());
      this.shared.set(conn, memberships);
      conn.onClose(() => {
        for (const leaveRoom of memberships.values()) conn.finishing(leaveRoom());
        memberships.clear();
      });
    }
    mine.set(channel, leave);
    if (first) await this.announceUser(channel, 'join', user);
  }

  /** Ends a `/ws` subscriber's membership (unsubscribe). */
  leaveShared(conn: Connection, channel: string): void {
    const leave = this.shared.get(conn)?.get(channel);
    if (!leave) return;
    this.shared.get(conn)!.delete(channel);
    void leave();
  }

  /**
   * A member's message: refused with `forbidden_publish` where the room's namespace says `publish: server`
   * (CHANNELS_FILE), as on `/ws`.
   */
  publishFromMember(room: string, data: Record<string, unknown>, history?: boolean): Promise<Publication> {
    const ns = this.hub.namespaces.of(room);
    if (ns && ns.publish !== 'members') {
      return Promise.reject(new FrameError('forbidden_publish', `${ns.name} channels are published by the server only (server API, Redis)`));
    }
    return this.publish(room, data, history);
  }

  /** Publishes on the room's channel (history per its kind unless `history` says otherwise). */
  publish(room: string, data: Record<string, unknown>, history?: boolean): Promise<Publication> {
    return this.available(() => this.hub.publish(room, data, { history }));
  }

  /** Rooms whose presence this class announces: a feature's, or a presence namespace's. */
  private tracked(room: string): boolean {
    return this.policies.has(channelKind(room)) || (this.hub.namespaces.of(room)?.presence ?? false);
  }

  private announcementOf(room: string): RoomPolicy['announcement'] {
    const policy = this.policies.get(channelKind(room));
    return policy ? (event, member, members) => policy.announcement(event, member, members) : genericAnnouncement;
  }

  /** A user's first join or last leave through its `/ws` connections, told with the room's users. */
  private async announceUser(room: string, event: 'join' | 'leave', user: string): Promise<void> {
    if (!this.hub.namespaces.of(room)?.joinLeave) return;
    try {
      const users = [...usersOf((await this.presence.members(room)).keys()).keys()].sort();
      await this.hub.publish(room, this.announcementOf(room)(event, user, users), { history: false });
    } catch (error) {
      this.log.warn({ event: 'announce_failed', channel: channelKind(room), type: event, err: (error as Error).message }, 'could not tell the room');
    }
  }

  private policyOf(room: string): RoomPolicy {
    const policy = this.policies.get(channelKind(room));
    if (!policy) throw new Error(`no room policy for "${channelKind(room)}"`);
    return policy;
  }

  private async announce(room: string, event: 'join' | 'leave', member: string, joining?: Connection): Promise<void> {
    if (this.hub.namespaces.of(room)?.joinLeave === false) return;
    try {
      const members = await this.presence.members(room);
      // On leave the membership is still held (it is released after this), so drop it from the list.
      if (event === 'leave') members.delete(member);
      const policy = this.policyOf(room);
      // A chat user also subscribed on /ws is in the room already: no second join, no leave while it stays.
      const users = policy.seats ? new Map([...members.keys()].map((m) => [m, 1])) : usersOf(members.keys());
      const payload = policy.announcement(event, member, [...users.keys()].sort());
      if (!policy.seats && (event === 'join' ? (users.get(member) ?? 0) > 1 : users.has(member))) {
        // Already in the room through /ws: nobody is told again, but the new connection still learns who is here.
        if (joining) this.hub.sendDirect(joining, room, payload);
        return;
      }
      await this.hub.publish(room, payload, { history: false });
    } catch (error) {
      this.log.warn({ event: 'announce_failed', channel: channelKind(room), type: event, err: (error as Error).message }, 'could not tell the room');
    }
  }

  /** Members whose replica died left without a goodbye: each replica tells its own local members. */
  private async announceGone(room: string, gone: string[]): Promise<void> {
    try {
      const users = usersOf((await this.presence.members(room)).keys());
      const list = [...users.keys()].sort();
      const announcement = this.announcementOf(room);
      // A user still in the room through another connection did not leave; one gone on two connections left once.
      for (const user of new Set(gone.map(memberUser))) {
        if (!users.has(user)) this.hub.deliverLocally(room, announcement('leave', user, list));
      }
    } catch {
      // Redis is down again: nothing more can be said now.
    }
  }

  /** Redis down: the sender learns that this message went nowhere, and the socket stays open. */
  private async available<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      if (error instanceof BrokerUnavailableError) throw new FrameError('unavailable', 'the room is unreachable right now (Redis is down); retry shortly');
      throw error;
    }
  }
}
