import { Injectable, type OnApplicationBootstrap, type OnModuleInit } from '@nestjs/common';
import { ChannelHub, type AttachFrames } from '../channels/channel-hub';
import type { Connection } from '../connection/connection';
import type { AlertInput } from './alert';
import { ALERTS_CHANNEL, AlertsChannelPolicy, userChannel, UserChannelPolicy } from './alert-channels';
import type { ResumeRequest } from '../upgrade/guards/resume.guard';

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

  /** Stores the alert in the `alerts` history; every node delivers it from there. */
  async publish(input: AlertInput, idempotencyKey?: string): Promise<{ id: string; ts: number }> {
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
