import { Module } from '@nestjs/common';
import { AlertsGateway } from './alerts.gateway';
import { AlertsService } from './alerts.service';
import { PublishEndpoint } from './publish-endpoint';

@Module({
  providers: [AlertsService, AlertsGateway, PublishEndpoint],
  exports: [AlertsService, PublishEndpoint],
})
export class AlertsModule {}
