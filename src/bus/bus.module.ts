import { Global, Module } from '@nestjs/common';
import { InMemoryBus } from './in-memory-bus';
import { MESSAGE_BUS } from './message-bus';

/** Embedded mode: the in-process bus. (Cluster mode, with REDIS_URL, plugs a Redis bus in here.) */
@Global()
@Module({ providers: [{ provide: MESSAGE_BUS, useClass: InMemoryBus }], exports: [MESSAGE_BUS] })
export class BusModule {}
