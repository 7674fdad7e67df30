import { Module } from '@nestjs/common';
import { AlertsController } from './alerts.controller';
import { AlertsGateway } from './alerts.gateway';
import { AlertsService } from './alerts.service';
import { ResumeGuard } from './resume.guard';

@Module({
  controllers: [AlertsController],
  providers: [AlertsService, AlertsGateway, ResumeGuard],
  exports: [AlertsService],
})
export class AlertsModule {}
