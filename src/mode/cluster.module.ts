import { Global, Module } from '@nestjs/common';
import { BROKER } from '../channels/broker';
import { RedisBroker } from '../channels/redis/redis-broker';
import { DENIAL_STORE } from '../presence/denial-store';
import { PRESENCE } from '../presence/presence';
import { RedisDenialStore } from '../presence/redis-denials';
import { RedisPresence } from '../presence/redis-presence';
import { RedisConnections } from '../redis/redis-connections';

/**
 * Cluster mode (REDIS_URL set): any number of replicas share one Redis for channels (pub/sub fan-out and
 * stream history) and presence.
 */
@Global()
@Module({
  providers: [RedisConnections, { provide: BROKER, useClass: RedisBroker }, { provide: PRESENCE, useClass: RedisPresence }, { provide: DENIAL_STORE, useClass: RedisDenialStore }],
  exports: [RedisConnections, BROKER, PRESENCE, DENIAL_STORE],
})
export class ClusterModule {}
