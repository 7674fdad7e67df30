import { Injectable, type OnApplicationBootstrap, type OnModuleInit } from '@nestjs/common';
import { ChannelHub, type AttachFrames } from '../channels/channel-hub';
import type { Connection } from '../connection/connection';
import type { AlertInput } from './alert';
import { ALERTS_CHANNEL, AlertsChannelPolicy, userChannel, UserChannelPolicy } from './alert-channels';
import type { ResumeRequest } from '../upgrade/guards/resume.guard';

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
  constructor(private readonly hub: ChannelHub) {}

  onModuleInit(): void {
    this.hub.register(new AlertsChannelPolicy());
    this.hub.register(new UserChannelPolicy());
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
   */
  async publish(input: AlertInput, idempotencyKey?: string): Promise<{ id: string; ts: number; ids?: Record<string, string> }> {
    const users = input.users && !input.roles ? [...new Set(input.users)] : undefined;
    if (users && users.length > 0 && users.length <= MAX_PERSONAL_FANOUT) {
      const publications = await Promise.all(users.map((sub) => this.hub.publish(userChannel(sub), { data: input.data }, { idempotencyKey })));
      const first = publications[0];
      const ids = users.length > 1 ? Object.fromEntries(users.map((sub, i) => [sub, publications[i].id!])) : undefined;
      return { id: first.id!, ts: first.key!.ms, ...(ids ? { ids } : {}) };
    }
    const publication = await this.hub.publish(ALERTS_CHANNEL, input, { idempotencyKey });
    return { id: publication.id!, ts: publication.key!.ms };
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
