import { createHash } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import type { IncomingMessage } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { encrypt, getVapidHeaders } from 'web-push';
import type { Counter } from 'prom-client';
import type { VapidConfig } from '../config/config';
import type { Logger } from '../logging/logger';
import type { Metrics } from '../metrics/metrics';
import type { PushOut, PushPayload } from './push-out';
import { hostOf, isPrivateAddress, type StoredSubscription } from './subscription';
import type { PushSubscriptionStore } from './subscription-store';

/** How long a push service keeps a message for a device that is offline (the `TTL` header): a day. */
export const PUSH_TTL_S = 86_400;
/** No complete answer within this long is a failed attempt (retried): a hanging push service holds one slot, never the loop. */
export const REQUEST_TIMEOUT_MS = 10_000;
/** Requests to push services in flight per replica. */
export const CONCURRENCY = 16;
/** Attempts per push (the first and 4 retries) before it is dropped. */
export const MAX_ATTEMPTS = 5;
/** Backoff after a failed attempt with no Retry-After: 1 s, 2 s, 4 s, 8 s. */
export const FIRST_RETRY_MS = 1000;
/** A Retry-After longer than this is not waited for: the push is dropped (the alert's history still has it). */
export const MAX_RETRY_DELAY_MS = 5 * 60_000;
/** Pushes (one per subscription) waiting on this replica, to send or to retry; beyond it new ones are dropped. */
export const QUEUE_MAX = 10_000;
/** Calls of pushToUsers waiting for their subscriptions to be looked up; beyond it new ones are dropped. */
export const JOBS_MAX = 1000;
/**
 * The largest plaintext that fits a 4096-byte push message (RFC 8030 §7.2 lets a push service refuse more) in
 * one aes128gcm record: 4096 − 86 (header: salt, rs, key id) − 1 (delimiter) − 16 (tag).
 */
export const MAX_PAYLOAD_BYTES = 3993;
/** Subscriptions kept per user (browsers and devices); a new one beyond it drops that user's oldest. */
export const MAX_SUBSCRIPTIONS_PER_USER = 10;
/** The VAPID JWT's lifetime (RFC 8292 §2: at most 24 h), and how long one is reused for the same push service. */
const VAPID_JWT_TTL_S = 12 * 3600;
const VAPID_REUSE_MS = 3600_000;
/** On shutdown, requests in flight get this long to be answered; the rest are cut (and counted dropped). */
const STOP_WAIT_MS = 2000;
/** A lookup of subscriptions that failed (Redis down) is tried again this often, this many times. */
const LOOKUP_RETRY_MS = 1000;
const LOOKUP_TRIES = 5;
const WARN_EVERY_MS = 10_000;

/**
 * What became of a push to one subscription (`ws_push_sent_total{result}`): each ends as exactly one of sent,
 * removed, failed or dropped; `retried` counts the attempts that will be made again.
 */
export type PushResult = 'sent' | 'retried' | 'removed' | 'failed' | 'dropped';
export const PUSH_RESULTS: readonly PushResult[] = ['sent', 'retried', 'removed', 'failed', 'dropped'];

/** The push message's plaintext: the alert, or `{type, id}` alone when the alert would not fit (docs/push.md). */
export function pushMessage(payload: PushPayload): string {
  const full = JSON.stringify({ type: payload.type, id: payload.id, ...(payload.data !== undefined ? { data: payload.data } : {}) });
  if (Buffer.byteLength(full) <= MAX_PAYLOAD_BYTES) return full;
  return JSON.stringify({ type: payload.type, id: payload.id });
}

/** Retry-After (RFC 9110 §10.2.3): seconds, or an HTTP date; ms from now, or undefined when absent or unreadable. */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Backoff after `attempts` failed attempts (1: the first failure). */
export function backoffMs(attempts: number): number {
  return FIRST_RETRY_MS * 2 ** Math.min(attempts - 1, 16);
}

/** What a push service answered, or why there was no answer. */
interface Attempt {
  status?: number;
  retryAfter?: string;
  error?: string;
}

interface Delivery {
  subscription: StoredSubscription;
  url: URL;
  message: string;
  topic: string;
  attempts: number;
  queuedAt: number;
  /** Called when this push ends (sent, removed, failed, dropped): its user's part of `settled`. */
  ended?: () => void;
}

interface Job {
  users: string[];
  payload: PushPayload;
  tries: number;
  settled?: (user: string) => void;
}

/**
 * The `Topic` header of an alert's pushes (RFC 8030 §5.4: at most 32 characters of base64url): the same for every
 * push of one alert, so that a push service still holding an undelivered one replaces it with the next (an
 * escalation's push after the at-once push, or the push an escalation sends again after its replica died mid-way).
 */
export function topicOf(id: string): string {
  return createHash('sha256').update(`alert\0${id}`).digest('base64url').slice(0, 32);
}

class PrivateAddressError extends Error {
  readonly code = 'EPRIVATEADDRESS';
}

/**
 * dns.lookup, refusing a host that resolves to an address no push service has: in production, an endpoint
 * checked at subscription time could resolve elsewhere later (DNS rebinding), so every connection checks again.
 */
function publicOnlyLookup(hostname: string, options: LookupOptions, callback: (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void): void {
  dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error, '');
    const list = addresses as LookupAddress[];
    if (list.length === 0 || list.some((a) => isPrivateAddress(a.address))) return callback(new PrivateAddressError('resolves to a private address'), '');
    if (options.all) callback(null, list);
    else callback(null, list[0].address, list[0].family);
  });
}

/**
 * Web Push (RFC 8030) to users' subscriptions: each message encrypted for its subscription (RFC 8291
 * aes128gcm) and signed for its push service (RFC 8292 VAPID, ES256, `aud` the endpoint's origin, `exp` 12 h
 * ahead) with the `web-push` package; sent over HTTPS by this class (a deadline on the whole request, answers
 * never buffered, at most CONCURRENCY in flight, in production no private address even after DNS).
 *
 * `pushToUsers` only appends to a list: the subscriptions are looked up, encrypted and sent later, off any path a
 * socket waits on. 404 and 410 remove the subscription; 408, 429, 5xx and no answer are retried (Retry-After
 * honoured, else 1, 2, 4, 8 s) up to MAX_ATTEMPTS; other answers are given up. The queue is this replica's
 * memory: in cluster mode the replica that decided a push sends it, and a push still waiting when it stops is
 * lost (counted dropped); subscriptions themselves are in Redis.
 */
export class WebPushOut implements PushOut {
  readonly enabled = true;
  private readonly counts = new Map<PushResult, Counter.Internal>();
  private readonly agent: Agent;
  private jobs: Job[] = [];
  private resolving = false;
  private resolveScheduled = false;
  private readonly ready: Delivery[] = [];
  /** Pushes waiting for their next attempt, by timer. */
  private readonly retrying = new Map<NodeJS.Timeout, Delivery>();
  private inFlight = 0;
  private stopped = false;
  private readonly requests = new Set<{ destroy(): void }>();
  private readonly vapid = new Map<string, { header: string; until: number }>();
  private readonly warned = new Map<string, { at: number; held: number }>();
  private idle: (() => void) | undefined;

  constructor(
    private readonly config: VapidConfig,
    private readonly store: PushSubscriptionStore,
    metrics: Metrics,
    private readonly log: Logger,
    private readonly production: boolean,
  ) {
    for (const result of PUSH_RESULTS) this.counts.set(result, metrics.pushSent.labels(result));
    // Kept-alive sockets: one TLS handshake per push service, not per push.
    this.agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY, maxTotalSockets: CONCURRENCY });
  }

  pushToUsers(users: readonly string[], payload: PushPayload, settled?: (user: string) => void): void {
    if (this.stopped || users.length === 0) return;
    if (this.jobs.length >= JOBS_MAX) {
      this.count('dropped', users.length);
      this.warn('push_dropped', { reason: 'queue_full' }, `push dropped for ${users.length} user(s): ${JOBS_MAX} pushes already wait for their subscriptions to be looked up`);
      if (settled) for (const user of users) settled(user);
      return;
    }
    this.jobs.push({ users: [...users], payload, tries: 0, settled });
    this.scheduleResolve();
  }

  /** Stops taking and sending; requests in flight get STOP_WAIT_MS, and what is left is counted dropped. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const timer of this.retrying.keys()) clearTimeout(timer);
    const left = this.retrying.size + this.ready.length + this.jobs.reduce((n, job) => n + job.users.length, 0);
    this.retrying.clear();
    this.ready.length = 0;
    this.jobs = [];
    if (left > 0) this.count('dropped', left);
    if (this.inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.idle = resolve;
        timer = setTimeout(resolve, STOP_WAIT_MS);
      });
      clearTimeout(timer);
    }
    for (const request of this.requests) request.destroy();
    this.agent.destroy();
  }

  private scheduleResolve(): void {
    if (this.resolveScheduled || this.resolving || this.stopped) return;
    this.resolveScheduled = true;
    setImmediate(() => {
      this.resolveScheduled = false;
      void this.resolve();
    });
  }

  /** Looks up the subscriptions of waiting jobs, one job at a time, and queues one push per subscription. */
  private async resolve(): Promise<void> {
    if (this.resolving || this.stopped) return;
    this.resolving = true;
    try {
      while (this.jobs.length > 0 && !this.stopped) {
        const job = this.jobs[0];
        let subscriptions: StoredSubscription[];
        try {
          subscriptions = await this.store.forUsers(job.users);
        } catch {
          if (++job.tries < LOOKUP_TRIES) {
            this.warn('push_lookup_failed', { tries: job.tries }, 'push subscriptions could not be read (Redis unreachable); trying again in 1 s');
            setTimeout(() => this.scheduleResolve(), LOOKUP_RETRY_MS).unref();
            return;
          }
          this.jobs.shift();
          this.count('dropped', job.users.length);
          this.warn('push_dropped', { reason: 'redis_unavailable' }, `push dropped for ${job.users.length} user(s): their subscriptions could not be read for ${LOOKUP_TRIES} s`);
          if (job.settled) for (const user of job.users) job.settled(user);
          continue;
        }
        this.jobs.shift();
        if (this.stopped) return;
        const message = pushMessage(job.payload);
        const topic = topicOf(job.payload.id);
        const now = Date.now();
        const ended = job.settled ? this.endings(job.users, subscriptions, job.settled) : undefined;
        for (const subscription of subscriptions) {
          const end = ended?.get(subscription.user);
          if (subscription.expirationTime !== null && subscription.expirationTime <= now) {
            // The browser has dropped it: nothing will ever be delivered there.
            this.count('removed');
            void this.store.discard(subscription.endpoint, subscription.p256dh).catch(() => undefined);
            end?.();
            continue;
          }
          if (this.ready.length + this.retrying.size + this.inFlight >= QUEUE_MAX) {
            this.count('dropped');
            this.warn('push_dropped', { reason: 'queue_full' }, `push dropped: ${QUEUE_MAX} pushes already wait on this replica`);
            end?.();
            continue;
          }
          this.ready.push({ subscription, url: new URL(subscription.endpoint), message, topic, attempts: 0, queuedAt: now, ended: end });
        }
        this.pump();
      }
    } finally {
      this.resolving = false;
    }
  }

  /**
   * Per user of a job: the function each of its pushes calls when it ends; the last one calls `settled(user)`.
   * Users with no subscription are settled at once.
   */
  private endings(users: readonly string[], subscriptions: readonly StoredSubscription[], settled: (user: string) => void): Map<string, () => void> {
    const left = new Map<string, number>();
    for (const subscription of subscriptions) left.set(subscription.user, (left.get(subscription.user) ?? 0) + 1);
    const ended = new Map<string, () => void>();
    for (const [user] of left) {
      ended.set(user, () => {
        const rest = left.get(user)! - 1;
        left.set(user, rest);
        if (rest === 0) settled(user);
      });
    }
    for (const user of new Set(users)) if (!left.has(user)) settled(user);
    return ended;
  }

  /** Starts attempts while there is room. */
  private pump(): void {
    while (!this.stopped && this.inFlight < CONCURRENCY && this.ready.length > 0) void this.attempt(this.ready.shift()!);
  }

  private async attempt(delivery: Delivery): Promise<void> {
    this.inFlight++;
    let attempt: Attempt;
    try {
      attempt = await this.post(delivery);
    } catch (error) {
      // Encryption or signing refused the subscription (a key the validation let through): it cannot be pushed to.
      attempt = { error: (error as Error).message, status: -1 };
    } finally {
      this.inFlight--;
    }
    delivery.attempts++;
    if (!this.stopped) this.settle(delivery, attempt);
    if (this.stopped) {
      if (this.inFlight === 0) this.idle?.();
      return;
    }
    this.pump();
  }

  private settle(delivery: Delivery, attempt: Attempt): void {
    const { status } = attempt;
    const service = delivery.url.host;
    if (status !== undefined && status >= 200 && status < 300) {
      this.count('sent');
      delivery.ended?.();
      return;
    }
    if (status === 404 || status === 410 || attempt.error === 'EPRIVATEADDRESS') {
      // RFC 8030 §7.3: the subscription expired or was unsubscribed; it will never accept a message again.
      this.count('removed');
      this.log.debug({ event: 'push_subscription_removed', service, status, user: delivery.subscription.user }, 'push subscription gone: removed');
      void this.store.discard(delivery.subscription.endpoint, delivery.subscription.p256dh).catch(() => undefined);
      delivery.ended?.();
      return;
    }
    if (status === undefined || status === 408 || status === 429 || status >= 500) {
      const asked = retryAfterMs(attempt.retryAfter);
      const delay = Math.max(asked ?? 0, backoffMs(delivery.attempts));
      if (delivery.attempts >= MAX_ATTEMPTS || delay > MAX_RETRY_DELAY_MS) {
        this.count('dropped');
        this.warn('push_dropped', { service, status, reason: attempt.error, attempts: delivery.attempts }, `push to ${service} dropped after ${delivery.attempts} attempt(s) (${status ?? attempt.error}${delay > MAX_RETRY_DELAY_MS ? `; it asked to wait ${Math.round(delay / 1000)} s` : ''})`);
        delivery.ended?.();
        return;
      }
      this.count('retried');
      this.log.debug({ event: 'push_retry', service, status, reason: attempt.error, delay_ms: delay }, 'push will be tried again');
      const timer = setTimeout(() => {
        this.retrying.delete(timer);
        this.ready.push(delivery);
        this.pump();
      }, delay);
      timer.unref();
      this.retrying.set(timer, delivery);
      return;
    }
    this.count('failed');
    delivery.ended?.();
    this.warn('push_failed', { service, status, reason: attempt.error }, `push service ${service} refused a push with ${status === -1 ? `an unusable subscription (${attempt.error})` : status}; not retried (403: the subscription was made with another VAPID key; 413: message too large)`);
  }

  /** One push: encrypted, signed, sent; resolves with the answer or why there was none. Never rejects after sending. */
  private post(delivery: Delivery): Promise<Attempt> {
    const { subscription, url } = delivery;
    const host = hostOf(url);
    if (this.production && isIP(host) && isPrivateAddress(host)) return Promise.resolve({ error: 'EPRIVATEADDRESS' });
    const encrypted = encrypt(subscription.p256dh, subscription.auth, delivery.message, 'aes128gcm');
    // What is left of the day the message is worth, after the time it waited here.
    const ttl = Math.max(0, PUSH_TTL_S - Math.floor((Date.now() - delivery.queuedAt) / 1000));
    return new Promise<Attempt>((resolve) => {
      let settled = false;
      const done = (attempt: Attempt) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.requests.delete(request);
        resolve(attempt);
      };
      const request = httpsRequest(url, {
        method: 'POST',
        agent: this.agent,
        ...(this.production ? { lookup: publicOnlyLookup as never } : {}),
        headers: {
          TTL: String(ttl),
          Urgency: 'high',
          Topic: delivery.topic,
          'Content-Type': 'application/octet-stream',
          'Content-Encoding': 'aes128gcm',
          'Content-Length': encrypted.cipherText.length,
          Authorization: this.vapidHeader(url.origin),
        },
      });
      this.requests.add(request);
      const timer = setTimeout(() => {
        done({ error: 'timeout' });
        request.destroy();
      }, REQUEST_TIMEOUT_MS);
      request.on('response', (response: IncomingMessage) => {
        // Only the status and Retry-After matter; the body is drained unread (never buffered: the endpoint is the user's).
        const answer = { status: response.statusCode, retryAfter: response.headers['retry-after'] };
        response.resume();
        response.on('end', () => done(answer));
        response.on('error', () => done(answer));
      });
      request.on('error', (error: Error & { code?: string }) => done({ error: error.code ?? 'request failed' }));
      request.end(encrypted.cipherText);
    });
  }

  /** `vapid t=<JWT>, k=<public key>` for a push service's origin, signed once an hour per origin. */
  private vapidHeader(origin: string): string {
    const now = Date.now();
    const cached = this.vapid.get(origin);
    if (cached && cached.until > now) return cached.header;
    const { Authorization } = getVapidHeaders(origin, this.config.subject, this.config.publicKey, this.config.privateKey, 'aes128gcm', Math.floor(now / 1000) + VAPID_JWT_TTL_S);
    // A handful of push services in practice; a bound all the same, since endpoints come from users.
    if (this.vapid.size >= 1000) this.vapid.clear();
    this.vapid.set(origin, { header: Authorization, until: now + VAPID_REUSE_MS });
    return Authorization;
  }

  private count(result: PushResult, by = 1): void {
    this.counts.get(result)!.inc(by);
  }

  /** A warn line, at most one per kind per 10 s; the next says how many were held back. Never the endpoint. */
  private warn(kind: string, fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    const last = this.warned.get(kind);
    if (last && now - last.at < WARN_EVERY_MS) {
      last.held++;
      return;
    }
    const held = last?.held ?? 0;
    this.warned.set(kind, { at: now, held: 0 });
    this.log.warn({ event: kind, ...fields, ...(held ? { suppressed: held } : {}) }, held ? `${message} (and ${held} more like it in the last ${Math.round((now - last!.at) / 1000)} s)` : message);
  }
}
