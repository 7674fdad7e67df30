/**
 * Events out (docs/events.md): what the gateway tells the backend. Producers (rooms, connections, the
 * server API) call `emit`; the implementation queues the event (Redis in cluster mode, memory embedded) before
 * its first try and delivers it as a signed Standard Webhooks POST to WEBHOOK_URL. `emit` is synchronous and
 * never waits on the receiver: a slow or dead receiver must not slow a socket.
 */
import type { EventType } from '../config/event-types';

export { DEFAULT_EVENT_TYPES, EVENT_TYPES, type EventType } from '../config/event-types';

export interface EventsOut {
  /** Whether `type` is sent at all (WEBHOOK_URL set and the type in WEBHOOK_EVENTS): producers skip work if not. */
  wants(type: EventType): boolean;
  /**
   * Queues one event (body `{type, timestamp, data}`); never throws, never waits. `options.id`: its `webhook-id`
   * (`msg_<hex>`), for an event a replica may have to emit again after another died mid-way (an escalation): the
   * queue keeps one event per id, and a receiver that deduplicates by webhook-id sees it once. `options.queued`:
   * called once the event is in the queue (cluster mode: written to Redis), so that such a producer can record
   * that this step of its work is done; never called for an event that is not wanted.
   */
  emit(type: EventType, data: Record<string, unknown>, options?: { id?: string; queued?: () => void }): void;
}

export const EVENTS_OUT = Symbol('EVENTS_OUT');

/** No WEBHOOK_URL: nothing is wanted, nothing is queued. */
export class NoEventsOut implements EventsOut {
  wants(): boolean {
    return false;
  }

  emit(): void {}
}
