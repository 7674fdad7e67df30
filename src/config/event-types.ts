/**
 * The event types of docs/events.md. Declared here, beside the configuration that names them in
 * WEBHOOK_EVENTS, so config/ never imports events/ (events/ imports config/); `events/events-out.ts` re-exports
 * them for the producers.
 */
export const EVENT_TYPES = [
  'channel.occupied',
  'channel.vacated',
  'presence.joined',
  'presence.left',
  'user.disconnected',
  'token.revoked',
  'alert.unacknowledged',
  'connection.opened',
  'connection.closed',
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

/** The events sent when WEBHOOK_EVENTS is not set: all but the `connection.*` pair. */
export const DEFAULT_EVENT_TYPES: readonly EventType[] = EVENT_TYPES.filter((t) => !t.startsWith('connection.'));
