import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleInit } from '@nestjs/common';
import { ChannelHub, type AttachFrames } from '../channels/channel-hub';
import { APP_CONFIG, type AppConfig } from '../config/config';
import type { Connection } from '../connection/connection';
import type { DueEscalation } from '../receipts/receipt-store';
import { Receipts } from '../receipts/receipts';
import type { AlertInput } from './alert';
import { ALERTS_CHANNEL, AlertsChannelPolicy, userChannel, UserChannelPolicy } from './alert-channels';
import type { ResumeRequest } from '../upgrade/guards/resume.guard';

/** The POST answer. */
export interface AlertAccepted {
  id: string;
  ts: number;
  ids?: Record<string, string>;
}

/**
 * Above this many users an alert is filtered on `alerts` instead: one publish per user costs a Redis round trip
 * and a stream entry each, and a broadcast to a few thousand users is cheaper filtered than fanned out.
 */
export const MAX_PERSONAL_FANOUT = 100;

/**
 * Alerts as a policy over the channel core: `alerts` (broadcast, targeted by roles / users) and each
 * subscriber's own `user:<sub>`, both with history. The core does delivery, replay and resume.
 */
@Injectable()
export class AlertsService implements OnModuleInit, OnApplicationBootstrap {
  constructor(
    private readonly hub: ChannelHub,
    private readonly receipts: Receipts,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    this.hub.register(new AlertsChannelPolicy(this.receipts));
    this.hub.register(new UserChannelPolicy(this.receipts));
    this.receipts.onRedeliver((escalation) => this.redeliver(escalation));
  }

  /** Every node serves `alerts`: subscribed from the start, so subscribers attach without a round trip. */
  onApplicationBootstrap(): void {
    void this.hub.retain(ALERTS_CHANNEL);
  }

  /**
   * An alert for `users` only goes to those users' `user:<sub>` channels: in cluster mode only the replicas that
   * hold one of them receive it (on Redis Cluster, only through the shards of those channels), instead of every
   * replica receiving it on `alerts` to filter it out. With `roles` (alone or with `users`), or for more than
   * MAX_PERSONAL_FANOUT users, it is stored once in the `alerts` history and filtered per connection, so a
   * subscriber that matches twice gets it once. Answers the id in the first listed user's channel, and `ids`
   * per user when there are several.
   *
   * With `ack` (docs/protocol.md "Acknowledgements") its frames carry `"ack":true` and its receipts are kept under the alert's id:
   * the `alerts` stream id, or, for an alert to users' channels, an id of its own (`ids` then names every user's
   * frame id, which an ack of that frame is mapped from). With Web Push on, deliveries of every alert to users
   * are recorded too, so that the users it reached on no socket are pushed.
   */
  async publish(input: AlertInput, idempotencyKey?: string): Promise<AlertAccepted> {
    const { ack, ...alert } = input;
    const targeted = input.users ? [...new Set(input.users)] : [];
    const track = ack !== undefined || (this.receipts.pushEnabled && targeted.length > 0);
    const users = input.users && !input.roles ? targeted : undefined;
    if (users && users.length > 0 && users.length <= MAX_PERSONAL_FANOUT) {
      const id = track ? this.receipts.newAlertId(idempotencyKey) : undefined;
      const payload = { data: input.data, ...(ack ? { ack: true } : {}), ...(id ? { alert: id, ...(ack ? {} : { track: true }) } : {}) };
      const publications = await Promise.all(users.map((sub) => this.hub.publish(userChannel(sub), payload, { idempotencyKey })));
      const first = publications[0];
      const frames = Object.fromEntries(users.map((sub, i) => [sub, publications[i].id!]));
      const answer: AlertAccepted = ack
        ? { id: id!, ts: first.key!.ms, ids: frames }
        : { id: first.id!, ts: first.key!.ms, ...(users.length > 1 ? { ids: frames } : {}) };
      if (id) {
        await this.receipts.create({
          id,
          answerId: answer.id,
          ts: answer.ts,
          ack: ack !== undefined,
          users,
          withinS: ack?.within_s,
          route: 'user',
          refs: frames,
          data: input.data,
          ...this.retention(userChannel(users[0]), answer.ts),
        });
      }
      return answer;
    }
    const payload = { ...alert, ...(ack ? { ack: true } : track ? { track: true } : {}) };
    const publication = await this.hub.publish(ALERTS_CHANNEL, payload, { idempotencyKey });
    const answer = { id: publication.id!, ts: publication.key!.ms };
    if (track) {
      await this.receipts.create({
        id: answer.id,
        answerId: answer.id,
        ts: answer.ts,
        ack: ack !== undefined,
        users: targeted,
        withinS: ack?.within_s,
        route: 'alerts',
        refs: {},
        data: input.data,
        ...this.retention(ALERTS_CHANNEL, answer.ts),
      });
    }
    return answer;
  }

  /**
   * Receipts last as long as the alert's history (docs/server-api.md): until the channel's history TTL when its namespace
   * has one, and at most as many as `alerts` keeps messages.
   */
  private retention(channel: string, ts: number): { expiresAt: number; keep: number } {
    const ttl = this.hub.namespaces.of(channel)?.historyTtlMs ?? 0;
    const keep = this.hub.namespaces.of(ALERTS_CHANNEL)?.historySize || this.config.historySize;
    return { expiresAt: ttl > 0 ? ts + ttl : 0, keep };
  }

  /**
   * An escalation's redelivery: the same frame (same id and time, `"redelivered":true`) to the pending users'
   * live connections, as live-only publications (no new id, no history entry): on their `user:<sub>` channels,
   * or on `alerts` targeted at them alone (in pieces that each fit MAX_PUBLISH_BYTES).
   */
  private async redeliver(escalation: DueEscalation): Promise<void> {
    const { id, pending, data } = escalation;
    if (escalation.route === 'user') {
      await Promise.all(
        pending
          .filter((sub) => escalation.refs[sub])
          .map((sub) => this.hub.publish(userChannel(sub), { data, ack: true, alert: id, redelivery: escalation.refs[sub] }, { history: false })),
      );
      return;
    }
    const budget = Math.max(1024, Math.floor(this.config.maxPublishBytes / 2) - Buffer.byteLength(JSON.stringify(data)));
    let piece: string[] = [];
    let bytes = 0;
    const sends: Promise<unknown>[] = [];
    const send = () => sends.push(this.hub.publish(ALERTS_CHANNEL, { data, users: piece, ack: true, redelivery: id }, { history: false }));
    for (const sub of pending) {
      const size = Buffer.byteLength(JSON.stringify(sub)) + 1;
      if (piece.length > 0 && (bytes + size > budget || piece.length >= 10_000)) {
        send();
        piece = [];
        bytes = 0;
      }
      piece.push(sub);
      bytes += size;
    }
    if (piece.length > 0) send();
    await Promise.all(sends);
  }

  /**
   * A subscriber: welcome (both epochs), then, when resuming, what it missed on each channel and `resumed`,
   * then live alerts. Synchronous in the common case (no resume, channels already live on this node).
   */
  attach(conn: Connection, resume: ResumeRequest | undefined): void | Promise<void> {
    return this.hub.attach(
      conn,
      [
        { channel: ALERTS_CHANNEL, since: resume?.main },
        { channel: userChannel(conn.user.sub), since: resume?.user },
      ],
      ALERT_FRAMES,
    );
  }
}

const ALERT_FRAMES: AttachFrames = {
  welcome: (positions, conn) => {
    const main = positions.get(ALERTS_CHANNEL);
    const personal = positions.get(userChannel(conn.user.sub));
    return { type: 'welcome', epoch: main?.epoch, id: main?.id, user_epoch: personal?.epoch, user_id: personal?.id };
  },
  resumed: (recovered) => ({ type: 'resumed', recovered }),
};
