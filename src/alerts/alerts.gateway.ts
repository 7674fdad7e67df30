import { ConnectedSocket, MessageBody, SubscribeMessage, type OnGatewayConnection } from '@nestjs/websockets';
import type { Connection } from '../connection/connection';
import { Receipts } from '../receipts/receipts';
import { AllowRoles, UpgradeGuards } from '../upgrade/gateway-metadata';
import { RealtimeGateway } from '../upgrade/realtime-gateway.decorator';
import { AuthenticateGuard } from '../upgrade/guards/authenticate.guard';
import { CapacityGuard } from '../upgrade/guards/capacity.guard';
import { OriginGuard } from '../upgrade/guards/origin.guard';
import { ResumeGuard, type ResumeRequest } from '../upgrade/guards/resume.guard';
import { ChannelGuard } from '../upgrade/guards/channel.guard';
import type { AckFrame } from '../receipts/ack-frame';
import { ALERT_FRAMES } from './alert.frames';
import { ALERTS_CHANNEL } from './alert-channels';
import { AlertsService } from './alerts.service';

/**
 * `/api/alerts/subscribe`: the `alerts` channel (and the user's own `user:<sub>`), admitted by the `alerts`
 * namespace (built in: authorities and admins), resumable with `?since=<id>&epoch=<epoch>`. @AllowRoles is the
 * built-in rule, kept for the doctor's advice; ChannelGuard applies the configured one.
 */
@RealtimeGateway({ name: 'alerts', path: '/api/alerts/subscribe', frames: ALERT_FRAMES, channel: () => ALERTS_CHANNEL })
@UpgradeGuards(OriginGuard, AuthenticateGuard, ChannelGuard, ResumeGuard, CapacityGuard)
@AllowRoles('authority', 'admin')
export class AlertsGateway implements OnGatewayConnection {
  constructor(
    private readonly alerts: AlertsService,
    private readonly receipts: Receipts,
  ) {}

  handleConnection(conn: Connection): void | Promise<void> {
    return this.alerts.attach(conn, conn.attributes.resume as ResumeRequest | undefined);
  }

  /** `{"type":"ack","id"}` of an alert frame received with `"ack":true` (docs/protocol.md "Acknowledgements"): recorded once per user. */
  @SubscribeMessage('ack')
  ack(@ConnectedSocket() conn: Connection, @MessageBody() frame: AckFrame): Promise<void> {
    return this.receipts.ack(conn, frame.id, frame.channel);
  }
}
