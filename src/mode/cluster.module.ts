import { Global, Module } from '@nestjs/common';
import { ALERT_LOG } from '../alerts/alert-log';
import { RedisAlertLog } from '../alerts/redis-alert-log';
import { MESSAGE_BUS } from '../bus/message-bus';
import { RedisBus } from '../bus/redis-bus';
import { PRESENCE } from '../presence/presence';
import { RedisPresence } from '../presence/redis-presence';
import { RedisConnections } from '../redis/redis-connections';

/**
 * Cluster mode (REDIS_URL set): any number of replicas share one Redis for pub/sub fan-out, the durable
 * alert stream and presence.
 */
@Global()
@Module({
  providers: [
    RedisConnections,
    { provide: MESSAGE_BUS, useClass: RedisBus },
    { provide: ALERT_LOG, useClass: RedisAlertLog },
    { provide: PRESENCE, useClass: RedisPresence },
  ],
  exports: [RedisConnections, MESSAGE_BUS, ALERT_LOG, PRESENCE],
})
export class ClusterModule {}
