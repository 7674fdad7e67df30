import { Global, Module } from '@nestjs/common';
import { BROKER } from '../channels/broker';
import { MemoryBroker } from '../channels/memory-broker';
import { DENIAL_STORE, LocalDenialStore } from '../presence/denial-store';
import { LocalPresence } from '../presence/local-presence';
import { PRESENCE } from '../presence/presence';

/** Embedded mode (no REDIS_URL): one process is the deployment; channels, history and presence in memory. */
@Global()
@Module({
  providers: [{ provide: BROKER, useClass: MemoryBroker }, { provide: PRESENCE, useClass: LocalPresence }, { provide: DENIAL_STORE, useClass: LocalDenialStore }],
  exports: [BROKER, PRESENCE, DENIAL_STORE],
})
export class EmbeddedModule {}
