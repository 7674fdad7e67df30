import { Global, Module } from '@nestjs/common';
import { EVENTS_OUT, NoEventsOut } from './events-out';

/** Events out: the producers' one dependency (EVENTS_OUT). */
@Global()
@Module({ providers: [{ provide: EVENTS_OUT, useClass: NoEventsOut }], exports: [EVENTS_OUT] })
export class EventsModule {}
