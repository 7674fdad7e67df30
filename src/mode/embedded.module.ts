import { Global, Module } from '@nestjs/common';
import { ALERT_LOG } from '../alerts/alert-log';
import { MemoryAlertLog } from '../alerts/memory-alert-log';
import { InMemoryBus } from '../bus/in-memory-bus';
import { MESSAGE_BUS } from '../bus/message-bus';
import { LocalPresence } from '../presence/local-presence';
import { PRESENCE } from '../presence/presence';

/** Embedded mode (no REDIS_URL): one process is the deployment; bus, alert history and presence in memory. */
@Global()
@Module({
  providers: [
    { provide: MESSAGE_BUS, useClass: InMemoryBus },
    { provide: ALERT_LOG, useClass: MemoryAlertLog },
    { provide: PRESENCE, useClass: LocalPresence },
  ],
  exports: [MESSAGE_BUS, ALERT_LOG, PRESENCE],
})
export class EmbeddedModule {}
