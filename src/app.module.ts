import { Module, type DynamicModule, type Type } from '@nestjs/common';
import { AdminModule } from './admin/admin.module';
import { AuthModule } from './auth/auth.module';
import { ChannelsModule } from './channels/channels.module';
import { ConfigModule } from './config/config.module';
import type { AppConfig } from './config/config';
import { ConnectionModule } from './connection/connection.module';
import { DemoModule } from './demo/demo.module';
import { EventsModule } from './events/events.module';
import { HealthModule } from './health/health.module';
import type { Logger } from './logging/logger';
import { LoggingModule } from './logging/logging.module';
import { MetricsModule } from './metrics/metrics.module';
import { ClusterModule } from './mode/cluster.module';
import { EmbeddedModule } from './mode/embedded.module';
import { PresenceModule } from './presence/presence.module';
import { PushModule } from './push/push.module';
import { ReceiptsModule } from './receipts/receipts.module';
import { RoomsModule } from './rooms/rooms.module';
import { HttpApiModule } from './http/http-api.module';
import { ServerApiModule } from './server-api/server-api.module';
import { UpgradeModule } from './upgrade/upgrade.module';
import { GATEWAYS } from './gateways';

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
        EventsModule,
        PresenceModule,
        ConnectionModule,
        ChannelsModule,
        RoomsModule,
        ReceiptsModule,
        UpgradeModule,
        PushModule,
        HealthModule,
        HttpApiModule,
        ...(config.demo ? [DemoModule] : []),
        ...GATEWAYS,
        ServerApiModule,
        AdminModule,
        ...extra,
      ],
    };
  }
}
