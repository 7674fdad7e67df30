import { Inject } from '@nestjs/common';
import { ConnectedSocket, MessageBody, SubscribeMessage, type OnGatewayConnection } from '@nestjs/websockets';
import { BrokerUnavailableError } from '../channels/broker';
import { ChannelHub, type AttachFrames } from '../channels/channel-hub';
import { ChannelPermissions, ProxyQuestion, type ChannelRefusal } from '../channels/permissions';
import { channelKind } from '../channels/publication';
import { parseStreamId } from '../channels/stream-id';
import { APP_CONFIG, type AppConfig } from '../config/config';
import type { Connection } from '../connection/connection';
import { FrameError } from '../connection/frames';
import { Metrics } from '../metrics/metrics';
import { UpgradeGuards } from '../upgrade/gateway-metadata';
import { AuthenticateGuard } from '../upgrade/guards/authenticate.guard';
import { CapacityGuard } from '../upgrade/guards/capacity.guard';
import { OriginGuard } from '../upgrade/guards/origin.guard';
import { RealtimeGateway } from '../upgrade/realtime-gateway.decorator';
import { STREAM_ATTRIBUTE, type StreamRequest } from '../upgrade/stream-request';
import { Receipts } from '../receipts/receipts';
import { Rooms } from '../rooms/rooms';
import { WS_FRAMES, type AckFrame, type PublishFrame, type SubscribeFrame, type UnsubscribeFrame } from './ws.frames';

const EPOCH = /^[A-Za-z0-9_-]{1,64}$/;

/** Per channel: `subscribed` (its position now), then the replay, then `resumed` when `since` was given. */
const WS_ATTACH_FRAMES: AttachFrames = {
  perChannel: true,
  welcome: (positions, _conn, [channel]) => {
    const position = positions.get(channel);
    return { type: 'subscribed', channel, epoch: position?.epoch, id: position?.id };
  },
  resumed: (recovered, [channel]) => ({ type: 'resumed', channel, recovered }),
};

/**
 * An SSE stream's first attach: one welcome naming the session and every channel's position, each channel's
 * replay, then a `resumed` per resumed channel. Later subscribes (over `/sse/send`) are `/ws`'s.
 */
function streamFrames(session: string): AttachFrames {
  return {
    welcome: (positions, _conn, channels) => ({
      type: 'welcome',
      session,
      channels: Object.fromEntries(channels.map((channel) => {
        const position = positions.get(channel);
        return [channel, position ? { epoch: position.epoch, id: position.id } : {}];
      })),
    }),
    resumed: (_recovered, _channels, each) => [...(each ?? [])].map(([channel, recovered]) => ({ type: 'resumed', channel, recovered })),
  };
}

/**
 * A channel being admitted (a `proxy` namespace's backend deciding) or attached: resolves, never rejects, with the
 * error frame that ended it, if one did.
 */
type Pending = Promise<FrameError | undefined>;

/**
 * A refused channel as its error frame. `forbidden_role` is a path endpoint's code; on /ws every refusal of a
 * channel for who the user is has one code, `forbidden_channel` (docs/protocol.md, `/ws` error codes).
 */
function refusalFrame(refusal: ChannelRefusal, channel: string): FrameError {
  return new FrameError(refusal.code === 'forbidden_role' ? 'forbidden_channel' : refusal.code, refusal.message, channel);
}

/**
 * `/ws`: one connection, many channels (docs/protocol.md). Any valid token connects; each channel is admitted by its
 * namespace as the path endpoints are (roles, `claim`, `user:<sub>`, the subscribe proxy), and a refusal is an
 * error frame for that channel: the connection stays. Deliveries are the channel vocabulary (`publication`, `join`, `leave`, …), each
 * naming its channel, with the same promise per channel as the path endpoints: resume with `since` and `epoch`
 * gets every message once and in order, or `recovered:false`.
 */
@RealtimeGateway({ name: 'ws', path: '/ws', frames: WS_FRAMES })
@UpgradeGuards(OriginGuard, AuthenticateGuard, CapacityGuard)
export class WsGateway implements OnGatewayConnection {
  /**
   * Each connection's channels: true once attached, or the attach still running (a second subscribe or a publish
   * waits for it; an unsubscribe meanwhile removes it, and the attach then ends without starting delivery).
   */
  private readonly held = new WeakMap<Connection, Map<string, Pending | true>>();

  constructor(
    private readonly hub: ChannelHub,
    private readonly permissions: ChannelPermissions,
    private readonly rooms: Rooms,
    private readonly metrics: Metrics,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly receipts: Receipts,
  ) {}

  handleConnection(conn: Connection): void {
    conn.multiplexed = true;
    // A reconnect re-subscribes every channel at once: that many frames are not abuse.
    conn.frameCredit = this.config.maxSubscriptionsPerConnection;
    const channels = new Map<string, Pending | true>();
    this.held.set(conn, channels);
    conn.onClose(() => {
      for (const channel of channels.keys()) this.metrics.subscriptionsActive.labels(channelKind(channel)).dec();
      channels.clear();
    });
    const stream = conn.attributes[STREAM_ATTRIBUTE] as StreamRequest | undefined;
    if (stream) void this.openStream(conn, stream).catch((error: unknown) => conn.fail(error));
  }

  /**
   * An SSE stream's channels (docs/protocol.md "Without WebSocket: Server-Sent Events"), admitted as `/ws` subscribes are (each
   * refusal an error frame for its channel, after the welcome) but attached together, so the stream's first
   * event is one welcome with every position. A `proxy` namespace's channels wait for the backend first.
   */
  private async openStream(conn: Connection, stream: StreamRequest): Promise<void> {
    this.hub.describeGateway(conn.gateway, WS_ATTACH_FRAMES);
    const channels = this.held.get(conn)!;
    const refused: FrameError[] = [];
    const admitted: { channel: string; since?: { id: string; epoch: string } }[] = [];
    const questions: { request: (typeof stream.channels)[number]; question: ProxyQuestion }[] = [];
    for (const request of stream.channels) {
      const checked = this.permissions.checkLocally(conn.user, request.channel);
      if (checked instanceof ProxyQuestion) questions.push({ request, question: checked });
      else if (checked !== undefined) refused.push(refusalFrame(checked, request.channel));
      else admitted.push(request);
    }
    if (questions.length) {
      const answers = await Promise.all(questions.map(({ question }) => question.ask()));
      questions.forEach(({ request }, i) => {
        const refusal = answers[i];
        if (refusal) refused.push(refusalFrame(refusal, request.channel));
        else admitted.push(request);
      });
      if (!conn.isOpen) return;
    }
    // Live-only channels cannot prove a resume: `recovered:false` after the welcome, as on /ws.
    const unprovable = admitted.filter((r) => !this.hub.keepsHistory(r.channel) && (r.since !== undefined || stream.unreadable)).map((r) => r.channel);
    const requests = admitted.map((r) => (r.since && this.hub.keepsHistory(r.channel) ? r : { channel: r.channel }));
    let done!: (ended: FrameError | undefined) => void;
    const pending: Pending = new Promise((resolve) => (done = resolve));
    for (const { channel } of requests) {
      channels.set(channel, pending);
      this.metrics.subscriptionsActive.labels(channelKind(channel)).inc();
    }
    try {
      await this.hub.attach(conn, requests, streamFrames(stream.session));
    } catch (error) {
      for (const { channel } of requests) if (channels.get(channel) === pending) this.drop(conn, channel);
      const failed = error instanceof BrokerUnavailableError ? 'the channels are unreachable right now (Redis is down); reconnect shortly' : undefined;
      done(undefined);
      if (failed === undefined) throw error;
      conn.send({ type: 'welcome', session: stream.session, channels: {} });
      for (const { channel } of requests) conn.sendError('unavailable', failed, channel);
      return;
    }
    // A cursor that could not be read proves nothing: every history channel starts over, told so.
    const restarted = stream.unreadable ? requests.filter((r) => this.hub.keepsHistory(r.channel)).map((r) => r.channel) : [];
    for (const channel of [...restarted, ...unprovable]) conn.send({ type: 'resumed', channel, recovered: false });
    for (const error of refused) conn.sendError(error.code, error.message, error.channel);
    await Promise.all(
      requests.map(async ({ channel }) => {
        if (channels.get(channel) !== pending) return;
        try {
          await this.becomeMember(conn, channel);
        } catch (error) {
          if (error instanceof FrameError) return void conn.sendError(error.code, error.message, error.channel);
          throw error;
        }
        if (channels.get(channel) !== pending) return void this.rooms.leaveShared(conn, channel);
        channels.set(channel, true);
      }),
    ).finally(() => done(undefined));
  }

  @SubscribeMessage('subscribe')
  async subscribe(@ConnectedSocket() conn: Connection, @MessageBody() frame: SubscribeFrame): Promise<object | void> {
    const { channel } = frame;
    const channels = this.held.get(conn)!;
    const current = channels.get(channel);
    // A channel held (or being admitted) was admitted for this same token: neither checked nor asked again.
    const checked = current === undefined ? this.permissions.checkLocally(conn.user, channel) : undefined;
    if (checked !== undefined && !(checked instanceof ProxyQuestion)) throw refusalFrame(checked, channel);
    let since: { id: string; epoch?: string } | undefined;
    if (frame.epoch !== undefined && !EPOCH.test(frame.epoch)) throw new FrameError('invalid_message', 'epoch must be an epoch as received in the subscribed frame', channel);
    if (frame.since !== undefined) {
      if (!parseStreamId(frame.since)) throw new FrameError('invalid_message', 'since must be a message id as received, e.g. 1700000000000-0', channel);
      since = { id: frame.since, epoch: frame.epoch };
    }
    if (current !== undefined) {
      // Already held: say so again, deliver nothing twice (docs/protocol.md). Still being admitted: wait, and when that
      // failed, answer with the same error.
      if (current !== true) {
        const ended = await current;
        if (!channels.has(channel)) {
          if (ended) throw ended;
          return;
        }
      }
      const position = this.hub.keepsHistory(channel) ? this.hub.broker.knownPosition(channel) : undefined;
      return { type: 'subscribed', channel, epoch: position?.epoch, id: position?.id };
    }
    if (channels.size >= this.config.maxSubscriptionsPerConnection) {
      throw new FrameError(
        'too_many_subscriptions',
        `a connection holds at most ${this.config.maxSubscriptionsPerConnection} channels (MAX_SUBSCRIPTIONS_PER_CONNECTION); unsubscribe from one first`,
        channel,
      );
    }
    // A live-only channel has no positions: a resume cannot be proven, and the client is told so after `subscribed`.
    const unprovable = since !== undefined && !this.hub.keepsHistory(channel);
    if (unprovable) since = undefined;
    this.metrics.subscriptionsActive.labels(channelKind(channel)).inc();
    // What the map holds while admitting and attaching (see `pending` below).
    let pending: Pending | undefined = undefined;
    let attaching: void | Promise<void>;
    if (checked instanceof ProxyQuestion) {
      // Held (and counted against the limit) while the backend decides: an unsubscribe meanwhile wins, and a
      // publish waits for the answer.
      attaching = this.askThenAttach(conn, channels, channel, since, checked, () => pending);
    } else {
      // Synchronous when nothing needed a round trip; the membership below may still need one.
      attaching = this.hub.attach(conn, [{ channel, since }], WS_ATTACH_FRAMES) ?? Promise.resolve();
    }
    const settled = attaching.then(
      async () => {
        if (channels.get(channel) !== pending) return false;
        // Held only once a member too (presence namespaces), so a publish right after cannot overtake the join.
        await this.becomeMember(conn, channel);
        if (channels.get(channel) !== pending) {
          this.rooms.leaveShared(conn, channel); // unsubscribed while joining: leave again
          return false;
        }
        channels.set(channel, true);
        return true;
      },
      (error: unknown) => {
        if (channels.get(channel) !== pending) return false;
        this.drop(conn, channel);
        if (error instanceof FrameError) throw error;
        if (error instanceof BrokerUnavailableError) throw new FrameError('unavailable', 'this channel is unreachable right now (Redis is down); subscribe again shortly', channel);
        throw error;
      },
    );
    // Never rejects: a second subscribe waiting on it gets its own answer (the same error when this one failed).
    pending = settled.then(
      () => undefined,
      (error: unknown) => (error instanceof FrameError ? error : undefined),
    );
    channels.set(channel, pending);
    // Still held once attached (not unsubscribed meanwhile): a live-only resume is told it proves nothing.
    if (!(await settled)) return;
    if (unprovable) return { type: 'resumed', channel, recovered: false };
  }

  /** In a presence namespace (chat, or one a file adds) a subscriber is a member: listed, joins and leaves told. */
  private async becomeMember(conn: Connection, channel: string): Promise<void> {
    if (!this.rooms.tracksSubscribers(channel)) return;
    try {
      await this.rooms.joinShared(conn, channel);
    } catch (error) {
      this.drop(conn, channel);
      if (error instanceof FrameError) throw new FrameError(error.code, error.message, channel);
      throw error;
    }
  }

  /**
   * A `proxy` channel: one question to the backend, then the attach, unless the channel was unsubscribed (or
   * the connection closed) while the backend decided: then nothing is attached and nothing said.
   */
  private async askThenAttach(
    conn: Connection,
    channels: Map<string, Pending | true>,
    channel: string,
    since: { id: string; epoch?: string } | undefined,
    question: ProxyQuestion,
    entry: () => Pending | undefined,
  ): Promise<void> {
    const refusal = await question.ask();
    if (channels.get(channel) !== entry()) return;
    if (refusal) throw refusalFrame(refusal, channel);
    await this.hub.attach(conn, [{ channel, since }], WS_ATTACH_FRAMES);
  }

  @SubscribeMessage('unsubscribe')
  unsubscribe(@ConnectedSocket() conn: Connection, @MessageBody() { channel }: UnsubscribeFrame): object {
    if (!this.held.get(conn)!.has(channel)) throw new FrameError('not_subscribed', 'this connection does not hold this channel', channel);
    this.drop(conn, channel);
    return { type: 'unsubscribed', channel };
  }

  @SubscribeMessage('publish')
  async publish(@ConnectedSocket() conn: Connection, @MessageBody() { channel, data }: PublishFrame): Promise<void> {
    const held = this.held.get(conn)!.get(channel);
    if (held === undefined) throw new FrameError('not_subscribed', 'subscribe to a channel before publishing on it', channel);
    const ns = this.hub.namespaces.require(channel);
    if (ns.publish !== 'members') throw new FrameError('forbidden_publish', `${ns.name} channels are published by the server only (server API, Redis)`, channel);
    const payload = { data, user: conn.user.sub };
    // The message is `data`: the limit does not shrink with the length of the sender's sub.
    const bytes = Buffer.byteLength(JSON.stringify(data));
    if (bytes > ns.maxMessageBytes) {
      throw new FrameError('message_too_long', `messages on ${ns.name} channels are limited to ${ns.maxMessageBytes} bytes of JSON (got ${bytes})`, channel);
    }
    if (held !== true) {
      await held;
      if (this.held.get(conn)!.get(channel) !== true) throw new FrameError('not_subscribed', 'the subscription to this channel did not complete', channel);
    }
    try {
      await this.hub.publish(channel, payload);
    } catch (error) {
      if (error instanceof BrokerUnavailableError) throw new FrameError('unavailable', 'this channel is unreachable right now (Redis is down); retry shortly', channel);
      throw error;
    }
  }

  /**
   * `{"type":"ack","id","channel"}` of an alert received with `"ack":true` (docs/protocol.md "Acknowledgements"), on `/ws` and, through
   * POST /sse/send, on SSE streams: recorded once per user; `unknown_alert` (naming the channel) otherwise.
   */
  @SubscribeMessage('ack')
  ack(@ConnectedSocket() conn: Connection, @MessageBody() frame: AckFrame): Promise<void> {
    return this.receipts.ack(conn, frame.id, frame.channel);
  }

  private drop(conn: Connection, channel: string): void {
    if (!this.held.get(conn)?.delete(channel)) return;
    this.metrics.subscriptionsActive.labels(channelKind(channel)).dec();
    this.rooms.leaveShared(conn, channel);
    this.hub.detach(conn, channel);
  }
}
