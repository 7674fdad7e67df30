import type { StoredSubscription } from './subscription';

/** What registering a subscription did. */
export interface AddResult {
  /** False when the endpoint was registered already (by this user or another one, from whom it moved). */
  created: boolean;
  /** The user's subscriptions now. */
  count: number;
  /** Oldest subscriptions of the user dropped to stay within the cap. */
  evicted: number;
}

/**
 * Where push subscriptions live: memory in embedded mode, Redis in cluster mode (redis-subscription-store.ts).
 * The endpoint is the key: registered again (by anyone), it is replaced, and belongs to whoever registered it
 * last. Each user keeps at most `max`, the most recently registered; a new one beyond that drops the oldest.
 * Every method of the Redis store rejects while Redis is unreachable.
 */
export interface PushSubscriptionStore {
  add(subscription: StoredSubscription, max: number): Promise<AddResult>;
  /** Removes `endpoint` if `user` holds it; false when it was not there or is someone else's. */
  remove(user: string, endpoint: string): Promise<boolean>;
  /** A push service said the subscription is gone (404, 410): removed, unless re-registered with other keys since. */
  discard(endpoint: string, p256dh: string): Promise<void>;
  /** Every subscription of these users. */
  forUsers(users: readonly string[]): Promise<StoredSubscription[]>;
}

export const PUSH_SUBSCRIPTIONS = Symbol('PUSH_SUBSCRIPTIONS');

/** Embedded mode: this process's memory (gone with it; browsers subscribe again when the app asks). */
export class MemorySubscriptionStore implements PushSubscriptionStore {
  private readonly byEndpoint = new Map<string, StoredSubscription>();
  /** Per user, endpoints in registration order (a Map keeps insertion order: the first is the oldest). */
  private readonly byUser = new Map<string, Set<string>>();

  add(subscription: StoredSubscription, max: number): Promise<AddResult> {
    const previous = this.byEndpoint.get(subscription.endpoint);
    if (previous) this.unlink(previous.user, subscription.endpoint);
    this.byEndpoint.set(subscription.endpoint, subscription);
    let endpoints = this.byUser.get(subscription.user);
    if (!endpoints) this.byUser.set(subscription.user, (endpoints = new Set()));
    endpoints.add(subscription.endpoint);
    let evicted = 0;
    for (const oldest of endpoints) {
      if (endpoints.size <= max) break;
      endpoints.delete(oldest);
      this.byEndpoint.delete(oldest);
      evicted++;
    }
    return Promise.resolve({ created: previous === undefined, count: endpoints.size, evicted });
  }

  remove(user: string, endpoint: string): Promise<boolean> {
    const current = this.byEndpoint.get(endpoint);
    if (!current || current.user !== user) return Promise.resolve(false);
    this.byEndpoint.delete(endpoint);
    this.unlink(user, endpoint);
    return Promise.resolve(true);
  }

  discard(endpoint: string, p256dh: string): Promise<void> {
    const current = this.byEndpoint.get(endpoint);
    if (current && current.p256dh === p256dh) {
      this.byEndpoint.delete(endpoint);
      this.unlink(current.user, endpoint);
    }
    return Promise.resolve();
  }

  forUsers(users: readonly string[]): Promise<StoredSubscription[]> {
    const found: StoredSubscription[] = [];
    for (const user of new Set(users)) for (const endpoint of this.byUser.get(user) ?? []) found.push(this.byEndpoint.get(endpoint)!);
    return Promise.resolve(found);
  }

  private unlink(user: string, endpoint: string): void {
    const endpoints = this.byUser.get(user);
    if (!endpoints) return;
    endpoints.delete(endpoint);
    if (endpoints.size === 0) this.byUser.delete(user);
  }
}
