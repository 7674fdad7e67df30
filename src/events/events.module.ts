import { Global, Inject, Injectable, Module, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';
import { EVENTS_OUT, NoEventsOut, type EventsOut } from './events-out';
import { RedisWebhookQueue } from './redis-webhook-queue';
import { MemoryWebhookQueue } from './webhook-queue';
import { DISABLED_STATUS, WEBHOOK_STATUS, WebhookEventsOut } from './webhooks';

/**
 * Starts sending once every module is built, and stops on shutdown before the Redis links close
 * (onModuleDestroy runs before onApplicationShutdown).
 */
@Injectable()
class WebhookLifecycle implements OnApplicationBootstrap, OnModuleDestroy {
  constructor(@Inject(EVENTS_OUT) private readonly events: EventsOut) {}

  onApplicationBootstrap(): void {
    if (this.events instanceof WebhookEventsOut) this.events.start();
  }

  async onModuleDestroy(): Promise<void> {
    if (this.events instanceof WebhookEventsOut) await this.events.stop();
  }
}

/**
 * Events out: the producers' one dependency (EVENTS_OUT). Without WEBHOOK_URL, NoEventsOut (nothing wanted,
 * nothing queued); with it, WebhookEventsOut over a queue in Redis (cluster mode) or in memory (embedded).
 */
@Global()
@Module({
  providers: [
    {
      provide: EVENTS_OUT,
      inject: [APP_CONFIG, Metrics, LOGGER, ModuleRef],
      useFactory: (config: AppConfig, metrics: Metrics, log: Logger, moduleRef: ModuleRef): EventsOut => {
        if (!config.webhook) return new NoEventsOut();
        const queue = config.redis ? RedisWebhookQueue.fromModule(moduleRef, config.redisPrefix) : new MemoryWebhookQueue();
        return new WebhookEventsOut(config.webhook, queue, metrics, log);
      },
    },
    {
      provide: WEBHOOK_STATUS,
      inject: [EVENTS_OUT],
      useFactory: (events: EventsOut) => (events instanceof WebhookEventsOut ? events : DISABLED_STATUS),
    },
    WebhookLifecycle,
  ],
  exports: [EVENTS_OUT, WEBHOOK_STATUS],
})
export class EventsModule {}
