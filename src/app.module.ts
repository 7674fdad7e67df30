import { Module, type DynamicModule, type Type } from '@nestjs/common';
import { AlertsModule } from './alerts/alerts.module';
import { AuthModule } from './auth/auth.module';
import { ChatModule } from './chat/chat.module';
import { ConfigModule } from './config/config.module';
import type { AppConfig } from './config/config';
import { ConnectionModule } from './connection/connection.module';
import { DemoModule } from './demo/demo.module';
import { HealthModule } from './health/health.module';
import type { Logger } from './logging/logger';
import { LoggingModule } from './logging/logging.module';
import { MetricsModule } from './metrics/metrics.module';
import { ClusterModule } from './mode/cluster.module';
import { EmbeddedModule } from './mode/embedded.module';
import { SignalingModule } from './signaling/signaling.module';
import { UpgradeModule } from './upgrade/upgrade.module';

@Module({})
export class AppModule {
  static forRoot(config: AppConfig, logger: Logger, extra: (Type | DynamicModule)[] = []): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        LoggingModule.forRoot(logger),
        MetricsModule,
        AuthModule,
        config.redisUrl ? ClusterModule : EmbeddedModule,
        ConnectionModule,
        UpgradeModule,
        HealthModule,
        DemoModule,
        AlertsModule,
        SignalingModule,
        ChatModule,
        ...extra,
      ],
    };
  }
}
