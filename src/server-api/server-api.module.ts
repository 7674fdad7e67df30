import { Module } from '@nestjs/common';
import { HealthModule } from '../health/health.module';
import { ServerApi } from './server-api';

@Module({ imports: [HealthModule], providers: [ServerApi] })
export class ServerApiModule {}
