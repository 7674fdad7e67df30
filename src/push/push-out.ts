/**
 * Web Push to users' push subscriptions (docs/push.md), as the rest of the service sees
 * it: one injection token, one synchronous call that never waits on a push service and never throws. Without
 * `VAPID_*` it is `NoPush` (enabled false). Producers: alerts for users with no live alerts connection, and the
 * escalation of unacknowledged alerts.
 */
export const PUSH_OUT = Symbol('PUSH_OUT');

/** What a push message carries (an alert too large for one carries `id` only). */
export interface PushPayload {
  type: 'alert';
  id: string;
  data?: Record<string, unknown>;
}

export interface PushOut {
  readonly enabled: boolean;
  /**
   * Queues a push to every subscription of each user; returns at once. `settled(user)`: called once every push to
   * that user's subscriptions has ended (sent, removed, failed or dropped; at once for a user with none), so that
   * a caller can record the user as done (an escalation does, in Redis); not called for pushes cut by shutdown.
   */
  pushToUsers(users: readonly string[], payload: PushPayload, settled?: (user: string) => void): void;
}

export class NoPush implements PushOut {
  readonly enabled = false;
  pushToUsers(): void {}
}
