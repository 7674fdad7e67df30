import { Global, Module } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { MemoryReceiptStore, RECEIPT_STORE, type ReceiptStore } from './receipt-store';
import { Receipts } from './receipts';
import { RedisReceiptStore } from './redis-receipt-store';

/**
 * Receipts of alerts: the store (memory embedded, Redis in cluster mode) and the service the alerts endpoint,
 * `/ws` (and SSE through it) and the server API share.
 */
@Global()
@Module({
  providers: [
    {
      provide: RECEIPT_STORE,
      inject: [APP_CONFIG, ModuleRef],
      useFactory: (config: AppConfig, moduleRef: ModuleRef): ReceiptStore =>
        config.redis ? RedisReceiptStore.fromModule(moduleRef, config.redisPrefix) : new MemoryReceiptStore(),
    },
    Receipts,
  ],
  exports: [Receipts],
})
export class ReceiptsModule {}
