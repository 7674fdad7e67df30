import { Module } from '@nestjs/common';
import { AlertsGateway } from './alerts.gateway';
import { AlertsService } from './alerts.service';
import { PublishEndpoint } from './publish-endpoint';
import { ResumeGuard } from './resume.guard';

@Module({
  providers: [AlertsService, AlertsGateway, ResumeGuard, PublishEndpoint],
  exports: [AlertsService, PublishEndpoint],
})
export class AlertsModule {}
