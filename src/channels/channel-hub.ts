import { Inject, Injectable } from '@nestjs/common';
import { CloseCode } from '../connection/close-codes';
import type { Connection } from '../connection/connection';
import { ConnectionManager } from '../connection/connection-manager';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';
import { BROKER, type Broker, type Subscription } from './broker';
import { InvalidMessages } from './invalid-messages';
import { channelKind, preciseNow, type HistoryPage, type Publication, type StreamPosition } from './publication';
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
  /** Drop a history nobody wrote to for this long (default HISTORY_TTL_MS; 0: never). */
  readonly historyTtlMs?: number;
  /**
   * The client frame for a publication, serialised once per node and shared by every socket and replay; a
   * string is the reason it is invalid (dropped and counted in ws_bus_invalid_total).
   */
  encode(publication: Publication): Buffer | string;
  /**
   * Who among the members gets it (targeting), decided once per publication: a filter, or undefined for
   * everyone. Absent: everyone.
   */
  audience?(publication: Publication): ((conn: Connection) => boolean) | undefined;
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
   * which everything reaches this connection (a client that resumes from there misses nothing).
   */
  welcome?(positions: ReadonlyMap<string, StreamPosition>, conn: Connection): object;
  /** After the replays, when any channel resumed; `recovered` is true only if every one proved continuity. */
  resumed?(recovered: boolean): object;
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
  private readonly subscriptions = new Map<string, Subscription>();
  /** Channels whose subscription is live: members joining them need no wait. */
  private readonly live = new Set<string>();
  private readonly retained = new Set<string>();
  private readonly framesOf = new Map<string, AttachFrames>();
  private readonly members = new Map<Connection, Map<string, MemberState>>();
  private readonly invalid: InvalidMessages;

  constructor(
    @Inject(BROKER) readonly broker: Broker,
    private readonly connections: ConnectionManager,
    private readonly metrics: Metrics,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    this.invalid = new InvalidMessages(metrics, log);
    connections.onRoomsEmptied((channels) => {
      for (const channel of channels) this.leaveIfEmpty(channel);
    });
  }

  register(policy: ChannelPolicy): void {
    if (this.policies.has(policy.kind)) throw new Error(`channel kind "${policy.kind}" is registered twice`);
    this.policies.set(policy.kind, policy);
  }

  /** Whether a feature registered this channel's kind. */
  knows(channel: string): boolean {
    return this.policies.has(channelKind(channel));
  }

  policy(channel: string): ChannelPolicy {
    const policy = this.policies.get(channelKind(channel));
    if (!policy) throw new Error(`no channel policy for "${channelKind(channel)}"`);
    return policy;
  }

  /** Publishes on a channel with its kind's history setting. Rejects with BrokerUnavailableError. */
  publish(channel: string, data: Record<string, unknown>, options: { idempotencyKey?: string; history?: boolean } = {}): Promise<Publication> {
    const policy = this.policy(channel);
    const history = options.history ?? policy.history;
    return this.broker.publish(channel, data, {
      history,
      externalAppends: policy.externalAppends,
      historyTtlMs: history ? policy.historyTtlMs : undefined,
      idempotencyKey: options.idempotencyKey,
    });
  }

  /**
   * Makes `conn` a member of each channel and sends, in this order: welcome (with the epochs), each resumed
   * channel's publications after `since` still in history, `resumed`, then live publications — none missed,
   * none twice. Synchronous when nothing needs a round trip (embedded mode, channels already subscribed, no
   * resume); otherwise a promise. Rejects with BrokerUnavailableError when history cannot be read.
   */
  attach(conn: Connection, requests: readonly ChannelRequest[], frames: AttachFrames = {}): void | Promise<void> {
    let waits: Promise<void>[] | undefined;
    for (const { channel } of requests) {
      const ready = this.join(conn, channel);
      if (ready) (waits ??= []).push(ready);
    }
    if (!this.framesOf.has(conn.gateway)) this.framesOf.set(conn.gateway, frames);
    // The common case, with nothing to wait for: welcome now, live from here on, no per-connection state.
    if (!waits && !requests.some((r) => r.since)) {
      const positions = new Map<string, StreamPosition>();
      let known = true;
      for (const { channel } of requests) {
        if (!this.policy(channel).history) continue;
        const position = this.broker.knownPosition(channel);
        if (position === undefined) known = false;
        else positions.set(channel, position);
      }
      if (known) {
        if (frames.welcome) conn.send(frames.welcome(positions, conn));
        return;
      }
    }
    // Otherwise what arrives meanwhile is held for this connection, in order, until it is started.
    const states = new Map<string, MemberState>();
    for (const { channel } of requests) states.set(channel, { held: [] });
    this.members.set(conn, states);
    conn.onClose(() => this.members.delete(conn));
    return this.attachLater(conn, requests, frames, waits ?? []);
  }

  private async attachLater(conn: Connection, requests: readonly ChannelRequest[], frames: AttachFrames, waits: Promise<void>[]): Promise<void> {
    await Promise.all(waits);
    const positions = new Map<string, StreamPosition>();
    const pages = new Map<string, HistoryPage>();
    await Promise.all(
      requests.map(async ({ channel, since }) => {
        if (!this.policy(channel).history) return;
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
    if (!this.members.has(conn)) return; // closed meanwhile
    this.start(conn, requests, frames, positions, pages);
  }

  private start(conn: Connection, requests: readonly ChannelRequest[], frames: AttachFrames, positions: Map<string, StreamPosition>, pages: Map<string, HistoryPage>): void {
    const states = this.members.get(conn)!;
    if (frames.welcome) conn.send(frames.welcome(positions, conn));
    let recovered = true;
    for (const { channel, since } of requests) {
      const page = pages.get(channel);
      if (!page || !since) continue;
      const state = states.get(channel)!;
      const policy = this.policy(channel);
      let floor: StreamId | undefined;
      for (const publication of page.publications) {
        floor = publication.key;
        const frame = this.frameOf(policy, publication);
        if (frame && (!publication.audience || publication.audience(conn))) conn.sendEncoded(frame);
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
    if (frames.resumed && pages.size > 0) conn.send(frames.resumed(recovered));
    for (const [channel, state] of states) {
      const held = state.held!;
      state.held = undefined;
      const policy = this.policy(channel);
      for (const publication of held) if (this.deliverTo(conn, state, policy, publication)) this.observeDelivery(publication);
      if (!state.floor) states.delete(channel);
    }
    if (states.size === 0) this.members.delete(conn);
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
    for (const channel of this.retained) if (!this.live.has(channel)) return false;
    return true;
  }

  /** Local membership and, for the channel's first local member, the broker subscription. */
  private join(conn: Connection, channel: string): Promise<void> | undefined {
    this.connections.registry.join(conn, channel);
    const subscription = this.subscription(channel);
    return this.live.has(channel) ? undefined : subscription.ready;
  }

  private subscription(channel: string): Subscription {
    let subscription = this.subscriptions.get(channel);
    if (!subscription) {
      const policy = this.policy(channel);
      subscription = this.broker.subscribe(channel, (publication) => this.deliver(policy, publication), {
        history: policy.history,
        externalAppends: policy.externalAppends,
      });
      this.subscriptions.set(channel, subscription);
      const current = subscription;
      void subscription.ready.then(() => {
        if (this.subscriptions.get(channel) === current) this.live.add(channel);
      });
    }
    return subscription;
  }

  private leaveIfEmpty(channel: string): void {
    // Close listeners run after the registry dropped the connection.
    const current = this.subscriptions.get(channel);
    if (!current || this.retained.has(channel) || this.connections.registry.inRoom(channel).size > 0) return;
    this.subscriptions.delete(channel);
    this.live.delete(channel);
    current();
  }

  /** Delivers a live-only message to this node's members of `channel` only (no broker round trip). */
  deliverLocally(channel: string, data: Record<string, unknown>): void {
    this.deliver(this.policy(channel), { channel, ts: preciseNow(), origin: 'local', data });
  }

  /** Members of a channel on this node. */
  localMembers(channel: string): ReadonlySet<Connection> {
    return this.connections.registry.inRoom(channel);
  }

  private frameOf(policy: ChannelPolicy, publication: Publication): Buffer | undefined {
    let frame = publication.frame;
    if (frame === undefined) {
      const encoded = policy.encode(publication);
      if (typeof encoded === 'string') {
        this.invalid.drop(policy.kind, encoded);
        frame = null;
      } else {
        frame = encoded;
      }
      publication.frame = frame;
      publication.audience = frame && policy.audience ? (policy.audience(publication) ?? null) : null;
    }
    return frame ?? undefined;
  }

  private deliver(policy: ChannelPolicy, publication: Publication): void {
    const members = this.connections.registry.inRoom(publication.channel);
    if (publication.lost) return this.lost(members);
    const frame = this.frameOf(policy, publication);
    if (!frame) return;
    const audience = publication.audience;
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
      if ((!audience || audience(conn)) && conn.sendEncoded(frame)) written = true;
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
  private lost(members: ReadonlySet<Connection>): void {
    for (const conn of [...members]) {
      const frames = this.framesOf.get(conn.gateway);
      if (!frames?.resumed) {
        conn.close(CloseCode.SERVICE_RESTART, 'history lost; resume');
        continue;
      }
      if (frames.welcome) {
        const positions = new Map<string, StreamPosition>();
        for (const channel of conn.rooms ?? []) {
          const position = this.policy(channel).history ? this.broker.knownPosition(channel) : undefined;
          if (position !== undefined) positions.set(channel, position);
        }
        conn.send(frames.welcome(positions, conn));
      }
      conn.send(frames.resumed(false));
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
    const frame = this.frameOf(policy, publication);
    return frame !== undefined && (!publication.audience || publication.audience(conn)) && conn.sendEncoded(frame);
  }
}
