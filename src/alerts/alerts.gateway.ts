import type { OnGatewayConnection } from '@nestjs/websockets';
import type { Connection } from '../connection/connection';
import { AllowRoles, UpgradeGuards } from '../upgrade/gateway-metadata';
import { RealtimeGateway } from '../upgrade/realtime-gateway.decorator';
import { AuthenticateGuard } from '../upgrade/guards/authenticate.guard';
import { CapacityGuard } from '../upgrade/guards/capacity.guard';
import { OriginGuard } from '../upgrade/guards/origin.guard';
import { ResumeGuard, type ResumeRequest } from '../upgrade/guards/resume.guard';
import { RolesGuard } from '../upgrade/guards/roles.guard';
import { AlertsService } from './alerts.service';

/** `/api/alerts/subscribe`: alerts for authorities and admins, resumable with `?since=<id>&epoch=<epoch>`. */
@RealtimeGateway({ name: 'alerts', path: '/api/alerts/subscribe' })
@UpgradeGuards(OriginGuard, AuthenticateGuard, RolesGuard, ResumeGuard, CapacityGuard)
@AllowRoles('authority', 'admin')
export class AlertsGateway implements OnGatewayConnection {
  constructor(private readonly alerts: AlertsService) {}

  handleConnection(conn: Connection): void | Promise<void> {
    return this.alerts.attach(conn, conn.attributes.resume as ResumeRequest | undefined);
  }
}
