import { Inject } from '@nestjs/common';
import { ConnectedSocket, MessageBody, SubscribeMessage, type OnGatewayConnection } from '@nestjs/websockets';
import { BrokerUnavailableError } from '../channels/broker';
import { ChannelHub, type AttachFrames } from '../channels/channel-hub';
import { ChannelPermissions } from '../channels/permissions';
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
import { Rooms } from '../rooms/rooms';
import { WS_FRAMES, type PublishFrame, type SubscribeFrame, type UnsubscribeFrame } from './ws.frames';

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
 * `/ws`: one connection, many channels (SPEC v3). Any valid token connects; each channel is admitted by its
 * namespace as the path endpoints are (roles, `claim`, `user:<sub>`), and a refusal is an error frame for that
 * channel: the connection stays. Deliveries are the channel vocabulary (`publication`, `join`, `leave`, …), each
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
  private readonly held = new WeakMap<Connection, Map<string, Promise<void> | true>>();

  constructor(
    private readonly hub: ChannelHub,
    private readonly permissions: ChannelPermissions,
    private readonly rooms: Rooms,
    private readonly metrics: Metrics,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  handleConnection(conn: Connection): void {
    conn.multiplexed = true;
    const channels = new Map<string, Promise<void> | true>();
    this.held.set(conn, channels);
    conn.onClose(() => {
      for (const channel of channels.keys()) this.metrics.subscriptionsActive.labels(channelKind(channel)).dec();
      channels.clear();
    });
  }

  @SubscribeMessage('subscribe')
  async subscribe(@ConnectedSocket() conn: Connection, @MessageBody() frame: SubscribeFrame): Promise<object | void> {
    const { channel } = frame;
    const channels = this.held.get(conn)!;
    const refusal = this.permissions.check(conn.user, channel);
    if (refusal) {
      // forbidden_role on a path endpoint; on /ws every refusal of a channel is one code (SPEC v3 list).
      const code = refusal.code === 'forbidden_role' ? 'forbidden_channel' : refusal.code;
      throw new FrameError(code, refusal.message, channel);
    }
    let since: { id: string; epoch?: string } | undefined;
    if (frame.since !== undefined) {
      if (!parseStreamId(frame.since)) throw new FrameError('invalid_message', 'since must be a message id as received, e.g. 1700000000000-0', channel);
      since = { id: frame.since, epoch: frame.epoch };
    }
    const current = channels.get(channel);
    if (current !== undefined) {
      // Already held: say so again, deliver nothing twice (SPEC v3).
      if (current !== true) await current;
      if (!channels.has(channel)) return;
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
    const attaching = this.hub.attach(conn, [{ channel, since }], WS_ATTACH_FRAMES);
    if (!attaching) {
      channels.set(channel, true);
      await this.becomeMember(conn, channel);
      return unprovable ? { type: 'resumed', channel, recovered: false } : undefined;
    }
    // What the map holds while attaching (never rejects: a second subscribe waiting on it gets its own answer).
    let pending: Promise<void> | undefined = undefined;
    const settled = attaching.then(
      () => {
        if (channels.get(channel) !== pending) return false;
        channels.set(channel, true);
        return true;
      },
      (error: unknown) => {
        if (channels.get(channel) !== pending) return false;
        this.drop(conn, channel);
        if (error instanceof BrokerUnavailableError) throw new FrameError('unavailable', 'this channel is unreachable right now (Redis is down); subscribe again shortly', channel);
        throw error;
      },
    );
    pending = settled.then(
      () => undefined,
      () => undefined,
    );
    channels.set(channel, pending);
    // Still held once attached (not unsubscribed meanwhile): a live-only resume is told it proves nothing.
    if (!(await settled)) return;
    await this.becomeMember(conn, channel);
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
    const bytes = Buffer.byteLength(JSON.stringify(payload));
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

  private drop(conn: Connection, channel: string): void {
    if (!this.held.get(conn)?.delete(channel)) return;
    this.metrics.subscriptionsActive.labels(channelKind(channel)).dec();
    this.rooms.leaveShared(conn, channel);
    this.hub.detach(conn, channel);
  }
}
