import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { BrokerUnavailableError } from '../channels/broker';
import { ChannelHub, type AttachFrames } from '../channels/channel-hub';
import { channelKind, type Publication } from '../channels/publication';
import { CloseCode } from '../connection/close-codes';
import type { Connection } from '../connection/connection';
import { FrameError } from '../connection/frames';
import { LOGGER, type Logger } from '../logging/logger';
import { memberUser, PRESENCE, type HoldResult, type Presence, type PresenceLeave } from '../presence/presence';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { EVENTS_OUT, type EventsOut, type EventType } from '../events/events-out';

/** Every replica pops due leaves this often, so a leave whose releasing replica died is still told (≤ 1 s late). */
const SWEEP_EVERY_MS = 1000;
/** Leaves popped per SWEEP call: one script run stays well under a millisecond of Redis time. */
const SWEEP_BATCH = 100;
/** Due times this replica keeps a timer for; beyond it (a mass disconnect) the periodic sweep alone tells them. */
const MAX_TIMED_LEAVES = 10_000;


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
 * attaches the connection (welcome, replay and `resumed` for history rooms) and announces the join; a user's
 * last connection closing is a leave told PRESENCE_GRACE_MS later, unless it came back meanwhile (see
 * Presence.hold; a seat's peer-left is told at once, before the seat is released, so a rejoin cannot overtake
 * it); users whose replica died leave the same way, seats are announced as gone by every replica to its own
 * members; the backend hears presence.joined/left and channel.occupied/vacated (EVENTS_OUT); and a Redis that
 * cannot be reached is the sender's `unavailable` error frame, never a closed socket.
 */
@Injectable()
export class Rooms implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly policies = new Map<string, RoomPolicy>();
  /** Resolves when the connection is in its room; its frames wait for it. */
  private readonly entered = new WeakMap<Connection, Promise<void>>();
  /** `/ws` memberships: per connection, per channel, how to leave (release; the leave is told after the grace). */
  private readonly shared = new WeakMap<Connection, Map<string, () => Promise<void>>>();
  private readonly offNodeGone: () => void;
  /**
   * When the leaves this replica released are due (local clock), in due order (one grace for all): one timer,
   * for the first. The sweep that pops a leave may run on any replica; these make it on time here.
   */
  private readonly due: number[] = [];
  private dueTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private sweepAgain = false;
  private readonly graceMs: number;

  constructor(
    private readonly hub: ChannelHub,
    @Inject(PRESENCE) private readonly presence: Presence,
    @Inject(LOGGER) private readonly log: Logger,
    @Inject(EVENTS_OUT) private readonly events: EventsOut,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.graceMs = config.presenceGraceMs;
    this.offNodeGone = presence.onNodeGone((_node, claims) => {
      // The dead node's presence holds ended in the same reap: their leaves are due after the grace.
      this.leaveDueIn(Math.max(this.graceMs, 1));
      const byRoom = new Map<string, string[]>();
      for (const { group, member } of claims) {
        if (!this.tracked(group) || this.hub.localCount(group) === 0) continue;
        // A user's leave is told by the sweep, once the grace is over; a seat's peer-left at once (below).
        if (!this.policies.get(channelKind(group))?.seats) continue;
        byRoom.set(group, [...(byRoom.get(group) ?? []), member]);
      }
      for (const [room, gone] of byRoom) void this.announceGone(room, gone);
    });
  }

  onApplicationBootstrap(): void {
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_EVERY_MS);
    this.sweepTimer.unref();
  }

  onModuleDestroy(): void {
    this.offNodeGone();
    clearInterval(this.sweepTimer);
    clearTimeout(this.dueTimer);
  }

  register(policy: RoomPolicy): void {
    this.policies.set(policy.kind, policy);
  }

  /** Enters `conn` into `room` (a channel name). Errors close only this connection. */
  enter(conn: Connection, room: string, options: { since?: { id: string; epoch?: string }; frames?: AttachFrames } = {}): void {
    const policy = this.policyOf(room);
    const member = policy.memberOf(conn);
    // The user's presence (a seat's holder for signaling): its leave is told after the grace, by the sweep.
    // Told as soon as decided (before the attach, which may fail), so a presence.left never comes without its join.
    const held = this.hub.namespaces.of(room)?.presence
      ? this.presence.hold(room, conn.user.sub, conn.id).then((hold) => {
          this.tellJoined(room, conn.user.sub, hold);
          return hold;
        })
      : undefined;
    if (held) conn.onClose(() => conn.finishing(held.then((hold) => hold.release()).then((due) => this.leaveDueIn(due))));
    // A seat's peer-left is told at once, before the seat is released (after this), so a rejoin cannot overtake
    // it: WebRTC peers renegotiate with whoever takes the seat next.
    if (policy.seats) conn.onClose(() => conn.finishing(this.announce(room, 'leave', member)));
    const entered = (async () => {
      await this.hub.attach(conn, [{ channel: room, since: options.since }], options.frames);
      if (policy.entered) policy.entered(conn, [...(await this.presence.members(room)).keys()].sort());
      const hold = await held;
      if (policy.seats) await this.announce(room, 'join', member, conn);
      else await this.announceJoin(room, member, hold?.joined ?? true, conn);
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
    const { release } = await this.available(() => this.presence.share(channel, user, conn.id));
    const hold = await this.presence.hold(channel, user, conn.id);
    let left = false;
    const leave = async () => {
      if (left) return;
      left = true;
      await release();
      // The user's last hold (atomically decided, one leave however many connections): told after the grace.
      this.leaveDueIn(await hold.release());
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
    this.tellJoined(channel, user, hold);
    if (hold.joined) await this.announceUser(channel, 'join', user);
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

  /** Events out for a hold: the channel's first user, a user's first hold (a return within the grace is neither). */
  private tellJoined(channel: string, user: string, hold: HoldResult): void {
    if (hold.occupied) this.emit('channel.occupied', { channel });
    if (hold.joined) this.emit('presence.joined', { channel, user });
  }

  private emit(type: EventType, data: Record<string, unknown>): void {
    if (this.events.wants(type)) this.events.emit(type, data);
  }

  /**
   * A user's join to a room with a policy (chat): the room is told when it is the user's first hold; otherwise
   * (back within the grace, or in the room through /ws already) only the new connection learns who is here.
   */
  private async announceJoin(room: string, user: string, joined: boolean, joining: Connection): Promise<void> {
    if (!this.hub.namespaces.of(room)?.joinLeave) return;
    try {
      const users = [...usersOf((await this.presence.members(room)).keys()).keys()].sort();
      const payload = this.policyOf(room).announcement('join', user, users);
      if (joined) await this.hub.publish(room, payload, { history: false });
      else this.hub.sendDirect(joining, room, payload);
    } catch (error) {
      this.log.warn({ event: 'announce_failed', channel: channelKind(room), type: 'join', err: (error as Error).message }, 'could not tell the room');
    }
  }

  /** A leave of this replica's is due in `ms` (undefined: the user still holds the channel, nothing is due). */
  private leaveDueIn(ms: number | undefined): void {
    if (ms === undefined || this.due.length >= MAX_TIMED_LEAVES) return;
    this.due.push(Date.now() + ms);
    if (this.due.length === 1) this.armDue();
  }

  private armDue(): void {
    clearTimeout(this.dueTimer);
    if (this.due.length === 0) return;
    this.dueTimer = setTimeout(() => {
      const now = Date.now();
      while (this.due.length > 0 && this.due[0] <= now) this.due.shift();
      this.sweep();
      this.armDue();
    }, Math.max(0, this.due[0] - Date.now()));
    this.dueTimer.unref();
  }

  /** Pops the leaves that are due (on any replica's behalf) and tells them; one sweep at a time here. */
  private sweep(): void {
    if (this.sweeping) {
      this.sweepAgain = true;
      return;
    }
    this.sweeping = (async () => {
      do {
        this.sweepAgain = false;
        let leaves: PresenceLeave[];
        try {
          leaves = await this.presence.sweep(SWEEP_BATCH);
        } catch {
          return; // Redis is down: the leaves wait there, and the next sweep tells them
        }
        for (const leave of leaves) await this.tellLeft(leave);
        if (leaves.length === SWEEP_BATCH) this.sweepAgain = true;
      } while (this.sweepAgain);
    })().finally(() => (this.sweeping = undefined));
  }

  /** A user gone for longer than the grace: the backend and (users, not seats) the room are told, once. */
  private async tellLeft({ channel, user, vacated }: PresenceLeave): Promise<void> {
    this.emit('presence.left', { channel, user });
    if (vacated) this.emit('channel.vacated', { channel });
    // A seat's peer-left was told when the seat was released; /ws observers of a consultation see no leaves.
    if (this.policies.get(channelKind(channel))?.seats || !this.hub.namespaces.of(channel)?.joinLeave) return;
    try {
      const users = usersOf((await this.presence.members(channel)).keys());
      // Its membership may still be on its way out (released after the hold): it left, so it is not listed.
      users.delete(user);
      await this.hub.publish(channel, this.announcementOf(channel)('leave', user, [...users.keys()].sort()), { history: false });
    } catch (error) {
      this.log.warn({ event: 'announce_failed', channel: channelKind(channel), type: 'leave', err: (error as Error).message }, 'could not tell the room');
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
