import { Global, Inject, Injectable, Module, type OnModuleDestroy } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';
import { PushEndpoints } from './push-endpoints';
import { NoPush, PUSH_OUT, type PushOut } from './push-out';
import { RedisSubscriptionStore } from './redis-subscription-store';
import { MemorySubscriptionStore, PUSH_SUBSCRIPTIONS, type PushSubscriptionStore } from './subscription-store';
import { WebPushOut } from './web-push-out';

/** Stops sending on shutdown, before the Redis links close (onModuleDestroy runs before onApplicationShutdown). */
@Injectable()
class PushLifecycle implements OnModuleDestroy {
  constructor(@Inject(PUSH_OUT) private readonly push: PushOut) {}

  async onModuleDestroy(): Promise<void> {
    if (this.push instanceof WebPushOut) await this.push.stop();
  }
}

/**
 * Web Push: PUSH_OUT for the producers (NoPush without VAPID_*, else WebPushOut), the subscriptions (memory in
 * embedded mode, Redis in cluster mode) and the public port's /push endpoints.
 */
@Global()
@Module({
  providers: [
    {
      provide: PUSH_SUBSCRIPTIONS,
      inject: [APP_CONFIG, ModuleRef],
      useFactory: (config: AppConfig, moduleRef: ModuleRef): PushSubscriptionStore =>
        config.redis ? RedisSubscriptionStore.fromModule(moduleRef, config.redisPrefix) : new MemorySubscriptionStore(),
    },
    {
      provide: PUSH_OUT,
      inject: [APP_CONFIG, PUSH_SUBSCRIPTIONS, Metrics, LOGGER],
      useFactory: (config: AppConfig, store: PushSubscriptionStore, metrics: Metrics, log: Logger): PushOut =>
        config.vapid ? new WebPushOut(config.vapid, store, metrics, log, config.nodeEnv === 'production') : new NoPush(),
    },
    PushEndpoints,
    PushLifecycle,
  ],
  exports: [PUSH_OUT, PushEndpoints],
})
export class PushModule {}
