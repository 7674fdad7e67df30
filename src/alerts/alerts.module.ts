import { Module } from '@nestjs/common';
import { AlertsGateway } from './alerts.gateway';
import { AlertsService } from './alerts.service';
import { AlertsApi } from './alerts-api';

@Module({
  providers: [AlertsService, AlertsGateway, AlertsApi],
  exports: [AlertsService],
})
export class AlertsModule {}
