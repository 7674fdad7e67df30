import { Inject, Injectable, Optional, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { createHash, randomUUID } from 'node:crypto';
import { BrokerUnavailableError } from '../channels/broker';
import type { Connection } from '../connection/connection';
import { FrameError } from '../connection/frames';
import { EVENTS_OUT, type EventsOut } from '../events/events-out';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';
import { PUSH_OUT, type PushOut, type PushPayload } from '../push/push-out';
import { RECEIPT_STORE, type AlertRecord, type AlertRoute, type DueEscalation, type NewRecord, type ReceiptStore, type ReceiptView } from './receipt-store';

/** How often every replica looks for due escalations (the publishing replica also wakes at the deadline itself). */
export const POLL_MS = 500;
/**
 * A claimed escalation belongs to its replica this long; if that replica dies mid-way, another takes it when
 * the lease ends (and sends the event again under the same webhook-id).
 */
export const LEASE_MS = 10_000;
/** Escalations one replica takes per poll. */
const CLAIM_MAX = 16;
/**
 * After publishing an alert to users, the publishing replica waits this long for the deliveries to be recorded,
 * then pushes to the targeted users it reached on no socket (docs/server-api.md: "pushed at once" to users with no live alerts
 * connection: a user none of whose connections got the alert has none, cluster-wide).
 */
export const PUSH_CHECK_MS = 1000;
/** Records of alerts that ask for no ack, kept only for that check. */
const TRACK_ONLY_MS = 5 * 60_000;
/** Personal frames whose alert this node remembers (it delivered them): an ack of one needs no lookup. */
const FRAMES_REMEMBERED = 50_000;
/** Warn lines of one kind at most this often. */
const WARN_EVERY_MS = 10_000;

/** GET /api/alerts/<id>/receipts. */
export interface ReceiptsBody {
  id: string;
  delivered: { user: string; ts: number }[];
  acked: { user: string; ts: number }[];
  pending: string[];
}

/** What the alerts feature asks to be recorded for a publication it published. */
export interface NewAlert {
  id: string;
  /** The POST answer's id (push payloads name the alert by it). */
  answerId: string;
  ts: number;
  ack: boolean;
  users: readonly string[];
  withinS?: number;
  route: AlertRoute;
  refs: Readonly<Record<string, string>>;
  data: Record<string, unknown>;
  /** When the alert's history expires (0: never); the receipts go with it. */
  expiresAt: number;
  /** Receipts kept at most (the alert history's size). */
  keep: number;
}

/** Delivers the alert again to the pending users' live connections (the alerts feature knows its frames). */
export type Redeliver = (escalation: DueEscalation) => Promise<void>;

/** One publication's deliveries on this node in one event-loop turn (a user twice when two of its sockets got it). */
interface Batch {
  alert: string;
  ack: boolean;
  users: string[];
  flushed: boolean;
}

const byTime = (times: Map<string, number>) =>
  [...times].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1)).map(([user, ts]) => ({ user, ts }));

/**
 * Receipts of alerts (docs/server-api.md, receipts): deliveries recorded as the hub writes frames,
 * batched into one store write per alert per event-loop turn (never a Redis round trip per socket); acks from
 * every transport; the escalation of alerts not acked in time, claimed by one replica at a time; and the push
 * to targeted users an alert reached on no socket.
 */
@Injectable()
export class Receipts implements OnApplicationBootstrap, OnModuleDestroy {
  private batches: Batch[] = [];
  private armed = false;
  /** `<channel>\0<frame id>` → alert, for personal frames delivered by this node. */
  private readonly frames = new Map<string, string>();
  private redeliver: Redeliver | undefined;
  private poller: NodeJS.Timeout | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private polling = false;
  private stopped = false;
  private readonly warned = new Map<string, number>();
  private readonly push: PushOut | undefined;
  /** Descriptions waiting for this turn's write. */
  private describing: { entries: NewRecord[]; done: Promise<void> } | undefined;

  constructor(
    @Inject(RECEIPT_STORE) private readonly store: ReceiptStore,
    @Inject(EVENTS_OUT) private readonly events: EventsOut,
    private readonly metrics: Metrics,
    @Inject(LOGGER) private readonly log: Logger,
    @Optional() @Inject(PUSH_OUT) push?: PushOut,
  ) {
    this.push = push?.enabled ? push : undefined;
  }

  /** Whether Web Push is configured: then deliveries of every alert to users are recorded, to push the missed. */
  get pushEnabled(): boolean {
    return this.push !== undefined;
  }

  onRedeliver(redeliver: Redeliver): void {
    this.redeliver = redeliver;
  }

  onApplicationBootstrap(): void {
    this.poller = setInterval(() => void this.poll(), POLL_MS).unref();
  }

  onModuleDestroy(): void {
    this.stopped = true;
    clearInterval(this.poller);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.flush();
  }

  /**
   * The id of an alert to users that keeps receipts: none of its personal frames' ids (each is its user's
   * channel's own, and two users' channels can give the same one), so one of its own. A retried publish with the
   * same Idempotency-Key gets the same one, as it gets the same frames.
   */
  newAlertId(idempotencyKey?: string): string {
    return idempotencyKey === undefined ? randomUUID().replace(/-/g, '').slice(0, 24) : createHash('sha256').update(`alert\0${idempotencyKey}`).digest('hex').slice(0, 24);
  }

  /**
   * What the hub calls for each connection a tracked publication's frame was queued for: the cost per socket is
   * one array push (the user's sub) into this turn's batch of the publication. `frame`: a personal frame's channel
   * and id, remembered so that an ack of it needs no lookup.
   */
  tracker(alert: string, ack: boolean, frame?: { channel: string; id: string }): (conn: Connection) => void {
    if (frame) this.remember(`${frame.channel}\0${frame.id}`, alert);
    let batch: Batch | undefined;
    return (conn) => {
      if (batch === undefined || batch.flushed) batch = this.open(alert, ack);
      batch.users.push(conn.user.sub);
    };
  }

  private remember(key: string, alert: string): void {
    if (this.frames.has(key)) return;
    this.frames.set(key, alert);
    if (this.frames.size > FRAMES_REMEMBERED) this.frames.delete(this.frames.keys().next().value!);
  }

  private open(alert: string, ack: boolean): Batch {
    const batch: Batch = { alert, ack, users: [], flushed: false };
    this.batches.push(batch);
    if (!this.armed) {
      this.armed = true;
      // After the outbox's turn (armed by the first frame queued, before this): the frames are written by then.
      setImmediate(() => this.flush());
    }
    return batch;
  }

  /** This turn's deliveries, of every alert: one store write. */
  private flush(): void {
    this.armed = false;
    if (this.batches.length === 0) return;
    const batches = this.batches;
    this.batches = [];
    for (const batch of batches) batch.flushed = true;
    this.store.delivered(batches, Date.now()).catch((error: unknown) => this.warn('receipts_unavailable', `deliveries could not be recorded: ${(error as Error).message}`));
  }

  /**
   * The publisher's part: the alert's description (targets, window, data), its escalation timer, and the
   * push to targeted users it reaches on no socket. Rejects with BrokerUnavailableError (the publish then
   * answers 503; a retry with the same Idempotency-Key publishes nothing new and writes this again).
   */
  async create(alert: NewAlert): Promise<void> {
    const record: AlertRecord = {
      id: alert.id,
      ts: alert.ts,
      ack: alert.ack,
      users: alert.users,
      withinS: alert.ack ? alert.withinS : undefined,
      route: alert.route,
      refs: alert.refs,
      data: alert.ack && alert.users.length > 0 ? alert.data : undefined,
      // randomUUID draws from a cached pool: a synchronous randomBytes per alert was a visible cost in a profile.
      nonce: randomUUID(),
      expiresAt: alert.ack ? alert.expiresAt : Date.now() + TRACK_ONLY_MS,
    };
    await this.describe({ record, keep: alert.ack ? alert.keep : 0 });
    if (record.withinS !== undefined && record.users.length > 0) this.at(record.ts + record.withinS * 1000, () => void this.poll());
    if (this.push && alert.users.length > 0) {
      const payload: PushPayload = { type: 'alert', id: alert.answerId, data: alert.data };
      this.at(Date.now() + PUSH_CHECK_MS, () => void this.pushMissed(alert.id, alert.users, payload));
    }
  }

  /** Descriptions made in one turn (alerts published together) go to the store in one write. */
  private describe(entry: NewRecord): Promise<void> {
    if (!this.describing) {
      const pending: { entries: NewRecord[]; done: Promise<void> } = { entries: [], done: undefined as unknown as Promise<void> };
      pending.done = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        if (this.describing === pending) this.describing = undefined;
        return this.store.create(pending.entries);
      });
      this.describing = pending;
    }
    this.describing.entries.push(entry);
    return this.describing.done;
  }

  private at(when: number, run: () => void): void {
    if (this.stopped) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      run();
    }, Math.max(0, when - Date.now()));
    timer.unref();
    this.timers.add(timer);
  }

  /** Pushes to the targeted users no socket got the alert on. */
  private async pushMissed(alert: string, users: readonly string[], payload: PushPayload): Promise<void> {
    let view: ReceiptView | undefined;
    try {
      this.flush();
      view = await this.store.read(alert);
    } catch (error) {
      // Unknown who was reached: push to everyone rather than to no one.
      this.warn('receipts_unavailable', `deliveries of an alert could not be read: ${(error as Error).message}`);
    }
    const missed = users.filter((user) => !view?.delivered.has(user));
    if (missed.length > 0) this.pushTo(missed, payload, 'offline');
  }

  private pushTo(users: string[], payload: PushPayload, reason: 'offline' | 'escalation'): void {
    if (!this.push) return;
    this.push.pushToUsers(users, payload);
    this.log.debug({ event: 'push_requested', alert: payload.id, users: users.length, reason }, 'alert handed to Web Push');
  }

  /**
   * A client's `ack` of a frame id (docs/protocol.md "Acknowledgements"): on `/ws` and SSE with the frame's channel, on the alerts endpoint
   * with or without it. Throws FrameError `unknown_alert` unless that user was delivered an alert asking for ack
   * under that id; a repeat is accepted and recorded once.
   */
  async ack(conn: Connection, frameId: string, channel?: string): Promise<void> {
    const user = conn.user.sub;
    const shown = frameId.length > 64 ? `${frameId.slice(0, 64)}…` : frameId;
    const unknown = () => new FrameError('unknown_alert', `no alert ${JSON.stringify(shown)} asking for ack was delivered to you${channel === undefined ? '' : ' on this channel'}`, channel);
    let route: AlertRoute | undefined;
    if (channel !== undefined) {
      if (channel === 'alerts') route = 'alerts';
      else if (channel === `user:${user}`) route = 'user';
      else throw unknown();
    }
    const known = route === 'alerts' ? undefined : this.frames.get(`user:${user}\0${frameId}`);
    // This node's deliveries go to the store first, on the same link: an ack right after a frame finds it.
    this.flush();
    let outcome;
    try {
      outcome = await this.store.ack({ user, frameId, alert: known, route }, Date.now());
    } catch (error) {
      if (error instanceof BrokerUnavailableError) throw new FrameError('unavailable', 'acks cannot be recorded right now (Redis is unreachable); send it again shortly', channel);
      throw error;
    }
    if (outcome.result === 'unknown') throw unknown();
    if (outcome.result === 'recorded') this.metrics.acks.inc();
  }

  /** GET /api/alerts/<id>/receipts; undefined for an alert that asked for no ack, or whose receipts are gone. */
  async view(alert: string): Promise<ReceiptsBody | undefined> {
    const view = await this.store.read(alert);
    if (!view?.ack) return undefined;
    return { id: alert, delivered: byTime(view.delivered), acked: byTime(view.acked), pending: view.users.filter((user) => !view.acked.has(user)) };
  }

  /** Takes due escalations (at most one replica holds each) and carries them out. */
  private async poll(): Promise<void> {
    if (this.polling || this.stopped) return;
    this.polling = true;
    try {
      const now = Date.now();
      const due = await this.store.claimDue(now, now + LEASE_MS, CLAIM_MAX);
      for (const escalation of due) await this.escalate(escalation);
    } catch (error) {
      this.warn('receipts_unavailable', `escalations could not be claimed: ${(error as Error).message}`);
    } finally {
      this.polling = false;
    }
  }

  /**
   * Redelivery to the pending users' live connections, Web Push to them, and `alert.unacknowledged`; then the
   * alert is settled. A replica killed before settling leaves it to the next one after the lease: the event then
   * goes out again under the same webhook-id.
   */
  private async escalate(escalation: DueEscalation): Promise<void> {
    const { id, pending, withinS } = escalation;
    try {
      await this.redeliver?.(escalation);
    } catch (error) {
      this.warn('redelivery_failed', `an unacknowledged alert could not be delivered again: ${(error as Error).message}`);
    }
    this.pushTo(pending, { type: 'alert', id, data: escalation.data }, 'escalation');
    this.events.emit('alert.unacknowledged', { id, pending, within_s: withinS }, { id: webhookId(escalation.nonce) });
    // The event is queued on the next turn (one write with the others): settle after it, so that a replica
    // killed in between leaves the escalation to be taken again rather than the event unsent.
    await new Promise((resolve) => setImmediate(resolve));
    await this.store.complete(id, Date.now());
    this.log.info({ event: 'alert_escalated', alert: id, pending: pending.length, within_s: withinS }, 'alert not acknowledged in time: escalated');
  }

  private warn(kind: string, message: string): void {
    const now = Date.now();
    if ((this.warned.get(kind) ?? 0) > now - WARN_EVERY_MS) return;
    this.warned.set(kind, now);
    this.log.warn({ event: kind }, message);
  }
}

/** The `webhook-id` of an alert's `alert.unacknowledged`: the same each time it is sent. */
export function webhookId(nonce: string): string {
  return `msg_${createHash('sha256').update(`alert.unacknowledged\0${nonce}`).digest('hex').slice(0, 32)}`;
}
