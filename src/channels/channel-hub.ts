import { Inject, Injectable } from '@nestjs/common';
import { CloseCode } from '../connection/close-codes';
import type { Connection } from '../connection/connection';
import { ConnectionManager } from '../connection/connection-manager';
import type { Members } from '../connection/connection-registry';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';
import { BROKER, type Broker, type Subscription } from './broker';
import { InvalidMessages } from './invalid-messages';
import { NamespaceRegistry } from './namespaces';
import { channelKind, isObject, preciseNow, type HistoryPage, type Publication, type StreamPosition } from './publication';
import { compareStreamIds, parseStreamId, type StreamId } from './stream-id';

/**
 * What a feature says about one kind of channel (`alerts`, `user`, `chat`, …): whether it keeps history, and
 * how a publication becomes a client frame. Registered by name; the core never names a feature.
 */
export interface ChannelPolicy {
  readonly kind: string;
  readonly history: boolean;
  /** Other services append to its stream directly (see SubscribeOptions.externalAppends). */
  readonly externalAppends?: boolean;
  /**
   * The client frame for a publication, serialised once per node and shared by every socket and replay; a
   * string is the reason it is invalid (dropped and counted in ws_bus_invalid_total).
   */
  encode(publication: Publication): Buffer | string;
  /**
   * The frame of `/ws` subscribers (docs/protocol.md: `publication`, `join`, `leave`, …, each naming the channel); null:
   * not for them (a seat-to-seat relay); a string: invalid. Absent: the generic `publication` frame.
   */
  encodeForChannel?(publication: Publication): object | null | string;
  /**
   * Who among the members gets it (targeting), decided once per publication: a filter, or undefined for
   * everyone. Absent: everyone. Called after encode() of the same publication.
   */
  audience?(publication: Publication): ((conn: Connection) => boolean) | undefined;
  /**
   * Whom it reached, for a feature that records deliveries (alerts' receipts): decided once per publication on
   * this node (after encode()), then called with each connection its frame was queued for, live or replayed.
   * Absent or undefined: nothing is recorded, at no cost per socket.
   */
  receipt?(publication: Publication): ((conn: Connection) => void) | undefined;
}

/**
 * The frame every channel of a namespace without a feature's policy gets (an operator-added `ward`, `news`),
 * and what a `/ws` subscriber gets of any publication a policy does not say otherwise about: the server API's and
 * Redis's `{"data":{..}}`, a member's `{"data":{..},"user":<sub>}`.
 */
export function publicationFrame(publication: Publication, data: Record<string, unknown> = publication.data): object | string {
  if (!isObject(data.data)) return 'expected {"data":{...}}';
  for (const key in data) if (key !== 'data' && key !== 'user') return 'expected {"data":{...}}';
  if (data.user !== undefined && typeof data.user !== 'string') return '"user" must be a string';
  const ts = publication.key ? publication.key.ms : Math.floor(publication.ts);
  return { type: 'publication', channel: publication.channel, id: publication.id, data: data.data, ts, user: data.user };
}

/**
 * The policy of a namespace no feature registered one for: it has no path endpoint, so its one vocabulary is
 * `/ws`'s: publications, and the `join` / `leave` of its members where it has join_leave.
 */
class NamespacePolicy implements ChannelPolicy {
  constructor(
    readonly kind: string,
    readonly history: boolean,
  ) {}

  encode(publication: Publication): Buffer | string {
    const frame = this.encodeForChannel(publication);
    return typeof frame === 'string' ? frame : Buffer.from(JSON.stringify(frame));
  }

  encodeForChannel(publication: Publication): object | string {
    const { data } = publication;
    if (data.type === 'system') {
      if ((data.event !== 'join' && data.event !== 'leave') || typeof data.user !== 'string') return 'expected a join or leave of a user';
      return { type: data.event, channel: publication.channel, user: data.user };
    }
    return publicationFrame(publication);
  }
}

function sendAll(conn: Connection, frames: object | readonly object[]): void {
  if (Array.isArray(frames)) for (const frame of frames as object[]) conn.send(frame);
  else conn.send(frames);
}

/** A publication's frames on this node, encoded once each and shared by every socket and replay. */
interface Encoded {
  /** The path endpoint's frame (the policy's encode); null: invalid, dropped and counted. */
  native: Buffer | null;
  /** The `/ws` frame, made on first use; null: not for `/ws` subscribers. */
  channel?: Buffer | null;
  audience: ((conn: Connection) => boolean) | null;
  /** Told of each connection the frame was queued for (ChannelPolicy.receipt); null: nobody asked. */
  receipt: ((conn: Connection) => void) | null;
}

export interface ChannelRequest {
  channel: string;
  /** Resume after this position (history channels). */
  since?: { id: string; epoch?: string };
}

/**
 * The frames a gateway wraps deliveries in; one object per gateway (the hub keeps it by gateway name, not per
 * connection). Both are also sent mid-stream when a channel's history is lost while a client is connected:
 * welcome with the new epoch, then resumed with recovered:false, so the client refetches and stays connected.
 */
export interface AttachFrames {
  /**
   * The first frame, given for each history channel the connection is a member of its epoch and the id after
   * which everything reaches this connection (a client that resumes from there misses nothing). `channels` are
   * those this attach is for (a `/ws` subscribe: one).
   */
  welcome?(positions: ReadonlyMap<string, StreamPosition>, conn: Connection, channels: readonly string[]): object;
  /**
   * After the replays, when any channel resumed; `recovered` is true only if every one proved continuity, and
   * `each` says it per channel that resumed. Several frames: sent in order.
   */
  resumed?(recovered: boolean, channels: readonly string[], each?: ReadonlyMap<string, boolean>): object | readonly object[];
  /**
   * One channel per attach, each with its own welcome and resumed (`/ws`): a lost history is told for that
   * channel alone. Otherwise the connection's whole set is described again.
   */
  perChannel?: boolean;
}

/** Per connection and channel while it is attaching or just resumed. */
interface MemberState {
  /** Live publications that came while the connection was attaching, in order. */
  held?: Publication[];
  /** History publications at or before this id were replayed: skipped once when they come live. */
  floor?: StreamId;
}

/**
 * The core of delivery: which local connections are members of which channels, the one broker subscription
 * per channel while it has local members (subscribed with the first, left after the last), and attaching a
 * connection with welcome → replay → resumed → live, in order and without duplicates, for any history channel.
 * Features call attach() and publish(); they never see the broker's implementation.
 */
@Injectable()
export class ChannelHub {
  private readonly policies = new Map<string, ChannelPolicy>();
  /** Whether each kind keeps history: its namespace says (a feature's policy only for kinds of no namespace). */
  private readonly keeps = new Map<string, boolean>();
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly handlers = new Map<ChannelPolicy, (publication: Publication) => void>();
  /**
   * Channels subscribed whose subscription is not live yet (cluster mode: the SUBSCRIBE round trip); every other
   * subscribed channel is live, and members joining it need no wait. Kept as the exceptions, not a Set of every
   * live channel: a node of distinct users has a `user:<sub>` channel per user.
   */
  private readonly pending = new Set<string>();
  private readonly retained = new Set<string>();
  private readonly framesOf = new Map<string, AttachFrames>();
  private readonly members = new Map<Connection, Map<string, MemberState>>();
  /** Each publication's frames on this node (off the message: a publication is data, its frames are ours). */
  private readonly encoded = new WeakMap<Publication, Encoded>();
  private readonly invalid: InvalidMessages;

  constructor(
    @Inject(BROKER) readonly broker: Broker,
    private readonly connections: ConnectionManager,
    private readonly metrics: Metrics,
    @Inject(LOGGER) private readonly log: Logger,
    readonly namespaces: NamespaceRegistry,
  ) {
    this.invalid = new InvalidMessages(metrics, log);
    connections.onRoomsEmptied((channels) => {
      for (const channel of channels) this.leaveIfEmpty(channel);
    });
  }

  register(policy: ChannelPolicy): void {
    if (this.policies.has(policy.kind)) throw new Error(`channel kind "${policy.kind}" is registered twice`);
    this.policies.set(policy.kind, policy);
    this.keeps.delete(policy.kind);
  }

  /** Whether this channel's kind is served: a namespace declares it, or a feature registered it. */
  knows(channel: string): boolean {
    const kind = channelKind(channel);
    return this.policies.has(kind) || this.namespaces.of(channel) !== undefined;
  }

  policy(channel: string): ChannelPolicy {
    const kind = channelKind(channel);
    let policy = this.policies.get(kind);
    if (!policy) {
      const ns = this.namespaces.of(channel);
      if (!ns) throw new Error(`no channel policy for "${kind}"`);
      policy = new NamespacePolicy(kind, ns.historySize > 0);
      this.policies.set(kind, policy);
    }
    return policy;
  }

  /** Whether the channel keeps history (ids, resume): its namespace's `history.size` > 0. */
  keepsHistory(channel: string): boolean {
    const kind = channelKind(channel);
    let keeps = this.keeps.get(kind);
    if (keeps === undefined) {
      const ns = this.namespaces.of(channel);
      keeps = ns ? ns.historySize > 0 : this.policy(channel).history;
      this.keeps.set(kind, keeps);
    }
    return keeps;
  }

  /** Publishes on a channel with its namespace's history setting. Rejects with BrokerUnavailableError. */
  publish(channel: string, data: Record<string, unknown>, options: { idempotencyKey?: string; history?: boolean } = {}): Promise<Publication> {
    const policy = this.policy(channel);
    const history = this.keepsHistory(channel) && options.history !== false;
    return this.broker.publish(channel, data, { history, externalAppends: policy.externalAppends, idempotencyKey: options.idempotencyKey });
  }

  /**
   * Makes `conn` a member of each channel and sends, in this order: welcome (with the epochs), each resumed
   * channel's publications after `since` still in history, `resumed`, then live publications — none missed,
   * none twice. Synchronous when nothing needs a round trip (embedded mode, channels already subscribed, no
   * resume); otherwise a promise. Rejects with BrokerUnavailableError when history cannot be read. A
   * connection may attach again for other channels (a `/ws` subscribe) while earlier attaches are pending.
   */
  attach(conn: Connection, requests: readonly ChannelRequest[], frames: AttachFrames = {}): void | Promise<void> {
    let waits: Promise<void>[] | undefined;
    for (const { channel } of requests) {
      const ready = this.join(conn, channel);
      if (ready) (waits ??= []).push(ready);
    }
    if (!this.framesOf.has(conn.gateway)) this.framesOf.set(conn.gateway, frames);
    const channels = requests.map((r) => r.channel);
    // The common case, with nothing to wait for: welcome now, live from here on, no per-connection state.
    if (!waits && !requests.some((r) => r.since)) {
      const positions = new Map<string, StreamPosition>();
      let known = true;
      for (const { channel } of requests) {
        if (!this.keepsHistory(channel)) continue;
        const position = this.broker.knownPosition(channel);
        if (position === undefined) known = false;
        else positions.set(channel, position);
      }
      if (known) {
        if (frames.welcome) conn.send(frames.welcome(positions, conn, channels));
        return;
      }
    }
    // Otherwise what arrives meanwhile is held for this connection, in order, until it is started.
    let states = this.members.get(conn);
    if (!states) {
      states = new Map<string, MemberState>();
      this.members.set(conn, states);
      conn.onClose(() => this.members.delete(conn));
    }
    for (const { channel } of requests) states.set(channel, { held: [] });
    return this.attachLater(conn, requests, frames, waits ?? []);
  }

  /**
   * The frames a gateway's connections get when a channel's history is lost mid-stream (otherwise those of its
   * first attach): an SSE stream's first attach has a welcome of its own, its later ones are `/ws`'s.
   */
  describeGateway(gateway: string, frames: AttachFrames): void {
    if (!this.framesOf.has(gateway)) this.framesOf.set(gateway, frames);
  }

  /** Ends `conn`'s membership of one channel (a `/ws` unsubscribe); the last local member unsubscribes the node. */
  detach(conn: Connection, channel: string): void {
    const states = this.members.get(conn);
    if (states?.delete(channel) && states.size === 0) this.members.delete(conn);
    if (this.connections.registry.leave(conn, channel)) this.leaveIfEmpty(channel);
  }

  private async attachLater(conn: Connection, requests: readonly ChannelRequest[], frames: AttachFrames, waits: Promise<void>[]): Promise<void> {
    await Promise.all(waits);
    const positions = new Map<string, StreamPosition>();
    const pages = new Map<string, HistoryPage>();
    await Promise.all(
      requests.map(async ({ channel, since }) => {
        if (!this.keepsHistory(channel)) return;
        const known = since ? undefined : this.broker.knownPosition(channel);
        if (known !== undefined) {
          // What came while this connection waited is held for it and follows the welcome: its position is
          // just before the first of that, not the broker's newest.
          const first = this.members.get(conn)?.get(channel)?.held?.find((p) => p.prev !== undefined && p.epoch === known.epoch);
          return void positions.set(channel, first ? { id: first.prev!, epoch: known.epoch } : known);
        }
        let page = await this.broker.history(channel, since);
        const sameEpoch = since !== undefined && (since.epoch === undefined || since.epoch === page.epoch);
        // Ids of another epoch mean nothing in this one: no replay, recovered:false, live from the top on.
        if (since && !sameEpoch) page = { ...page, publications: [], recovered: false };
        if (since) pages.set(channel, page);
        // Resuming: the client continues from its own id (unless that is ahead of the channel); otherwise
        // everything after the top reaches it.
        const ahead = since !== undefined && compareStreamIds(parseStreamId(since.id)!, parseStreamId(page.top)!) > 0;
        positions.set(channel, { id: sameEpoch && !ahead ? since!.id : page.top, epoch: page.epoch });
      }),
    );
    // Closed, or unsubscribed, meanwhile.
    const states = this.members.get(conn);
    if (!states || !requests.every((r) => states.get(r.channel)?.held)) return;
    this.start(conn, states, requests, frames, positions, pages);
  }

  private start(
    conn: Connection,
    states: Map<string, MemberState>,
    requests: readonly ChannelRequest[],
    frames: AttachFrames,
    positions: Map<string, StreamPosition>,
    pages: Map<string, HistoryPage>,
  ): void {
    const channels = requests.map((r) => r.channel);
    if (frames.welcome) conn.send(frames.welcome(positions, conn, channels));
    let recovered = true;
    const each = new Map<string, boolean>();
    for (const { channel, since } of requests) {
      const page = pages.get(channel);
      if (!page || !since) continue;
      each.set(channel, page.recovered);
      const state = states.get(channel)!;
      const policy = this.policy(channel);
      let floor: StreamId | undefined;
      for (const publication of page.publications) {
        floor = publication.key;
        const encoded = this.encode(policy, publication);
        const frame = this.frameFor(conn, policy, publication, encoded);
        if (frame && (!encoded.audience || encoded.audience(conn)) && conn.sendEncoded(frame, publication)) encoded.receipt?.(conn);
      }
      if (!floor) {
        // Nothing replayed: live ones after `since` are new; a `since` ahead of the channel must not hold back
        // what comes next (it answered recovered:false).
        const sinceKey = parseStreamId(since.id)!;
        const top = parseStreamId(page.top)!;
        floor = page.recovered && compareStreamIds(sinceKey, top) <= 0 ? sinceKey : top;
      }
      state.floor = floor;
      recovered &&= page.recovered;
    }
    if (frames.resumed && pages.size > 0) sendAll(conn, frames.resumed(recovered, channels, each));
    for (const channel of channels) {
      const state = states.get(channel)!;
      const held = state.held!;
      state.held = undefined;
      const policy = this.policy(channel);
      for (const publication of held) {
        if (publication.lost) {
          state.floor = undefined;
          this.lost(channel, [conn], publication);
        }
        else if (this.deliverTo(conn, state, policy, publication)) this.observeDelivery(publication);
      }
      if (!state.floor) states.delete(channel);
    }
    if (states.size === 0 && this.members.get(conn) === states) this.members.delete(conn);
  }

  /**
   * Keeps a channel subscribed on this node with or without members (a broadcast channel every node serves):
   * its first subscriber then attaches without a round trip.
   */
  retain(channel: string): Promise<void> {
    this.retained.add(channel);
    return this.subscription(channel).ready;
  }

  /** Every retained channel is subscribed and positioned: the node can serve (part of /readyz). */
  isReady(): boolean {
    for (const channel of this.retained) if (!this.isLive(channel)) return false;
    return true;
  }

  private isLive(channel: string): boolean {
    return this.subscriptions.has(channel) && !this.pending.has(channel);
  }

  /** Local membership and, for the channel's first local member, the broker subscription. */
  private join(conn: Connection, channel: string): Promise<void> | undefined {
    this.connections.registry.join(conn, channel);
    const subscription = this.subscription(channel);
    return this.pending.has(channel) ? subscription.ready : undefined;
  }

  private subscription(channel: string): Subscription {
    let subscription = this.subscriptions.get(channel);
    if (!subscription) {
      const policy = this.policy(channel);
      subscription = this.broker.subscribe(channel, this.handlerFor(policy), {
        history: this.keepsHistory(channel),
        externalAppends: policy.externalAppends,
      });
      this.subscriptions.set(channel, subscription);
      if (!subscription.settled) {
        this.pending.add(channel);
        const current = subscription;
        void subscription.ready.then(() => {
          if (this.subscriptions.get(channel) === current) this.pending.delete(channel);
        });
      }
    }
    return subscription;
  }

  /**
   * One broker handler per policy (the publication names its channel), not a closure per channel: a node of
   * distinct users subscribes a `user:<sub>` channel for each.
   */
  private handlerFor(policy: ChannelPolicy): (publication: Publication) => void {
    let handler = this.handlers.get(policy);
    if (!handler) {
      handler = (publication) => this.deliver(policy, publication);
      this.handlers.set(policy, handler);
    }
    return handler;
  }

  private leaveIfEmpty(channel: string): void {
    // Close listeners run after the registry dropped the connection.
    const current = this.subscriptions.get(channel);
    if (!current || this.retained.has(channel) || this.connections.registry.roomSize(channel) > 0) return;
    this.subscriptions.delete(channel);
    this.pending.delete(channel);
    current();
  }

  /** Delivers a live-only message to this node's members of `channel` only (no broker round trip). */
  deliverLocally(channel: string, data: Record<string, unknown>): void {
    this.deliver(this.policy(channel), { channel, ts: preciseNow(), origin: 'local', data });
  }

  /** A live-only message to one connection only, in its vocabulary (no broker, no other member). */
  sendDirect(conn: Connection, channel: string, data: Record<string, unknown>): void {
    const policy = this.policy(channel);
    const publication: Publication = { channel, ts: preciseNow(), origin: 'local', data };
    const encoded = this.encode(policy, publication);
    const frame = this.frameFor(conn, policy, publication, encoded);
    if (frame && conn.sendEncoded(frame)) encoded.receipt?.(conn);
  }

  /** Members of a channel on this node. */
  localMembers(channel: string): Members {
    return this.connections.registry.inRoom(channel);
  }

  /** How many connections of this node are members of `channel`. */
  localCount(channel: string): number {
    return this.connections.registry.roomSize(channel);
  }

  /** The path endpoint's frame and the audience, once per publication on this node (invalid: counted once). */
  private encode(policy: ChannelPolicy, publication: Publication): Encoded {
    let encoded = this.encoded.get(publication);
    if (encoded === undefined) {
      const frame = policy.encode(publication);
      if (typeof frame === 'string') {
        this.invalid.drop(policy.kind, frame);
        encoded = { native: null, audience: null, receipt: null };
      } else {
        encoded = {
          native: frame,
          audience: policy.audience ? (policy.audience(publication) ?? null) : null,
          receipt: policy.receipt ? (policy.receipt(publication) ?? null) : null,
        };
      }
      this.encoded.set(publication, encoded);
    }
    return encoded;
  }

  /** The frame for this connection's vocabulary: the path endpoint's, or the `/ws` one (made once). */
  private frameFor(conn: Connection, policy: ChannelPolicy, publication: Publication, encoded: Encoded): Buffer | null {
    if (encoded.native === null || !conn.multiplexed) return encoded.native;
    if (encoded.channel === undefined) {
      const frame = policy.encodeForChannel ? policy.encodeForChannel(publication) : publicationFrame(publication);
      encoded.channel = frame === null || typeof frame === 'string' ? null : Buffer.from(JSON.stringify(frame));
    }
    return encoded.channel;
  }

  private deliver(policy: ChannelPolicy, publication: Publication): void {
    const members = this.connections.registry.inRoom(publication.channel);
    if (publication.lost) return this.lost(publication.channel, members, publication);
    const encoded = this.encode(policy, publication);
    if (!encoded.native) return;
    const audience = encoded.audience;
    const receipt = encoded.receipt;
    let written = false;
    const tracking = this.members.size > 0;
    for (const conn of members) {
      if (tracking) {
        const state = this.members.get(conn)?.get(publication.channel);
        if (state) {
          if (this.deliverTo(conn, state, policy, publication)) written = true;
          continue;
        }
      }
      if (audience && !audience(conn)) continue;
      const frame = conn.multiplexed ? this.frameFor(conn, policy, publication, encoded) : encoded.native;
      if (frame && conn.sendEncoded(frame, publication)) {
        written = true;
        if (receipt !== null) receipt(conn);
      }
    }
    // Only what reached a socket is a delivery: a replica without members would otherwise report every
    // message as delivered at once and pull the histogram down.
    if (written) this.observeDelivery(publication);
  }

  private observeDelivery(publication: Publication): void {
    this.connections.whenFlushed(() => this.metrics.deliverySeconds.observe(Math.max(0, preciseNow() - publication.ts) / 1000));
  }

  /**
   * This node could not get some publications of a channel (its history was lost or trimmed first): every
   * member is told, without being disconnected. A gateway without those frames closes its members instead, so
   * that nothing is lost silently.
   */
  private lost(channel: string, members: Iterable<Connection>, notice?: Publication): void {
    for (const conn of [...members]) {
      // Still attaching: told after its welcome (in order with what else it was held), not before it.
      const state = notice !== undefined && this.members.size > 0 ? this.members.get(conn)?.get(channel) : undefined;
      if (state?.held) {
        state.held.push(notice!);
        continue;
      }
      // A replay's floor is of the old epoch: the new one's ids start again below it.
      if (state) state.floor = undefined;
      const frames = this.framesOf.get(conn.gateway);
      if (!frames?.resumed) {
        conn.close(CloseCode.SERVICE_RESTART, 'history lost; resume');
        continue;
      }
      const channels = frames.perChannel ? [channel] : (conn.rooms ?? []);
      if (frames.welcome) {
        const positions = new Map<string, StreamPosition>();
        for (const room of channels) {
          // A notice that names where the renewed history starts is that position (what is published next
          // follows it), whatever the broker knows by the time this runs.
          const named = room === channel && notice?.epoch !== undefined && notice.prev !== undefined ? { id: notice.prev, epoch: notice.epoch } : undefined;
          const position = named ?? (this.keepsHistory(room) ? this.broker.knownPosition(room) : undefined);
          if (position !== undefined) positions.set(room, position);
        }
        conn.send(frames.welcome(positions, conn, channels));
      }
      sendAll(conn, frames.resumed(false, channels));
    }
  }

  private deliverTo(conn: Connection, state: MemberState, policy: ChannelPolicy, publication: Publication): boolean {
    if (state.held) {
      state.held.push(publication);
      return false;
    }
    if (state.floor && publication.key) {
      if (compareStreamIds(publication.key, state.floor) <= 0) return false;
      state.floor = undefined;
      const states = this.members.get(conn);
      states?.delete(publication.channel);
      if (states?.size === 0) this.members.delete(conn);
    }
    const encoded = this.encode(policy, publication);
    if (encoded.audience && !encoded.audience(conn)) return false;
    const frame = this.frameFor(conn, policy, publication, encoded);
    if (frame === null || !conn.sendEncoded(frame, publication)) return false;
    encoded.receipt?.(conn);
    return true;
  }
}
