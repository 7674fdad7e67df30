import { Inject, Injectable, Optional, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { createHash, randomUUID } from 'node:crypto';
import { BrokerUnavailableError } from '../channels/broker';
import type { Connection } from '../connection/connection';
import { FrameError } from '../connection/frames';
import { EVENTS_OUT, type EventsOut } from '../events/events-out';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';
import { PUSH_OUT, type PushOut } from '../push/push-out';
import { dueMember, RECEIPT_STORE, type AlertRecord, type AlertRoute, type DueEscalation, type NewRecord, type ReceiptStore } from './receipt-store';

/** How often every replica looks for due escalations (the publishing replica also wakes at the deadline itself). */
export const POLL_MS = 500;
/**
 * A claimed task (escalation or push-at-once) belongs to its replica this long, renewed every third of it while
 * the replica works on it (a push service may take a minute: 5 attempts of up to 10 s); if that replica dies
 * mid-way, another takes it when the lease ends and does only the steps not recorded as done.
 */
export const LEASE_MS = 10_000;
const RENEW_MS = Math.floor(LEASE_MS / 3);
/** Tasks one replica works on at once (a task waits on push services: they run side by side, not in a row). */
const CLAIM_MAX = 16;
/**
 * An alert to users is checked this long after publication for the targeted users it reached on no socket, who
 * are then pushed (docs/server-api.md: "pushed at once" to users with no live alerts connection: a user none of whose
 * connections got the alert has none, cluster-wide). A task in the due-set: any replica performs it, so the
 * publisher dying within this second loses nothing.
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

/** Which step a log line `alert_escalation_progress` reports. */
type Step = 'redelivered' | 'notified' | 'pushed';

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
  private renewer: NodeJS.Timeout | undefined;
  /** Tasks this replica works on, by due-set member (their leases are renewed). */
  private readonly working = new Map<string, DueEscalation>();
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
    this.renewer = setInterval(() => void this.renew(), RENEW_MS).unref();
  }

  onModuleDestroy(): void {
    this.stopped = true;
    clearInterval(this.poller);
    clearInterval(this.renewer);
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
      data: alert.users.length > 0 && (alert.ack || this.push) ? alert.data : undefined,
      // randomUUID draws from a cached pool: a synchronous randomBytes per alert was a visible cost in a profile.
      nonce: randomUUID(),
      expiresAt: alert.ack ? alert.expiresAt : Date.now() + TRACK_ONLY_MS,
      answerId: alert.answerId,
      pushAt: this.push && alert.users.length > 0 ? Date.now() + PUSH_CHECK_MS : undefined,
    };
    await this.describe({ record, keep: alert.ack ? alert.keep : 0 });
    // This replica wakes at its own deadlines; every replica's poll takes them too if it is gone.
    if (record.withinS !== undefined && record.users.length > 0) this.at(record.ts + record.withinS * 1000, () => void this.poll());
    if (record.pushAt !== undefined) this.at(record.pushAt, () => void this.poll());
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

  /** Takes due tasks (at most one replica holds each) and starts them; they run side by side. */
  private async poll(): Promise<void> {
    if (this.polling || this.stopped) return;
    const room = CLAIM_MAX - this.working.size;
    if (room <= 0) return;
    this.polling = true;
    try {
      // This node's deliveries first: a push-at-once must see every socket this node wrote the alert to.
      this.flush();
      const now = Date.now();
      const due = await this.store.claimDue(now, now + LEASE_MS, room);
      for (const task of due) {
        const member = dueMember(task.id, task.kind);
        if (this.working.has(member)) continue;
        this.working.set(member, task);
        void this.carryOut(task).finally(() => this.working.delete(member));
      }
    } catch (error) {
      this.warn('receipts_unavailable', `escalations could not be claimed: ${(error as Error).message}`);
    } finally {
      this.polling = false;
    }
  }

  /** Keeps the leases of the tasks this replica works on. */
  private async renew(): Promise<void> {
    if (this.working.size === 0 || this.stopped) return;
    try {
      await this.store.renew([...this.working.values()], Date.now() + LEASE_MS);
    } catch (error) {
      this.warn('receipts_unavailable', `escalation leases could not be renewed: ${(error as Error).message}`);
    }
  }

  /**
   * An escalation: redelivery to the pending users' live connections, `alert.unacknowledged` queued, Web Push to
   * them; a push-at-once: Web Push to the targeted users it reached on no socket. Each step is recorded in the
   * store as it is done (per user for pushes, as each user's pushes end), so a replica that takes the task over
   * after this one died (when its lease ends) does only what is left. A step that fails leaves the task to be
   * claimed again when the lease ends.
   */
  private async carryOut(task: DueEscalation): Promise<void> {
    const { id, kind, withinS } = task;
    if (kind === 'escalation') this.log.info({ event: 'alert_escalation_claimed', alert: id, pending: task.pending.length, resumed: task.redeliver.length < task.pending.length || task.notified || task.push.length < task.pending.length }, 'alert not acknowledged in time: escalating');
    try {
      if (task.redeliver.length > 0) {
        await this.redeliver?.({ ...task, pending: task.redeliver });
        await this.step(task, 'redelivered', task.redeliver);
      }
      if (!task.notified) {
        await this.notify(task);
        await this.step(task, 'notified', []);
      }
      if (task.push.length > 0) await this.pushAll(task);
      await this.store.complete(id, kind, Date.now());
    } catch (error) {
      this.warn('escalation_failed', `${kind === 'escalation' ? 'an escalation' : 'a push of an alert'} stopped mid-way (taken again in ${LEASE_MS / 1000} s): ${(error as Error).message}`);
      return;
    }
    if (kind === 'escalation') this.log.info({ event: 'alert_escalated', alert: id, pending: task.pending.length, within_s: withinS }, 'alert not acknowledged in time: escalated');
    else this.log.debug({ event: 'push_requested', alert: task.answerId, users: task.push.length, reason: 'offline' }, 'alert pushed to users it reached on no socket');
  }

  /** Records a step done, and says so in a line (tests wait for it; an operator sees how far an escalation got). */
  private async step(task: DueEscalation, step: Step, users: readonly string[]): Promise<void> {
    await this.store.progress(task.id, task.kind, step === 'redelivered' ? { redelivered: users } : step === 'pushed' ? { pushed: users } : { notified: true });
    this.log.debug({ event: 'alert_escalation_progress', alert: task.id, kind: task.kind, step, users: users.length }, 'step recorded');
  }

  /** `alert.unacknowledged`, resolved once it is in the events-out queue (at once when the event is not wanted). */
  private notify(task: DueEscalation): Promise<void> {
    if (!this.events.wants('alert.unacknowledged')) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.events.emit('alert.unacknowledged', { id: task.id, pending: task.pending, within_s: task.withinS }, { id: webhookId(task.nonce), queued: resolve });
    });
  }

  /**
   * Web Push to the task's users; each user is recorded as pushed once all of their pushes ended (sent, removed,
   * failed, dropped), in one store write per event-loop turn. Resolves when every user is recorded.
   */
  private pushAll(task: DueEscalation): Promise<void> {
    const push = this.push;
    if (!push) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let left = new Set(task.push).size;
      let ended: string[] = [];
      const writes: Promise<void>[] = [];
      let failed: unknown;
      const write = () => {
        const users = ended;
        ended = [];
        // Caught at once (a rejection may come long before the last user's pushes end): reported at the end.
        writes.push(this.step(task, 'pushed', users).catch((error: unknown) => void (failed ??= error)));
      };
      push.pushToUsers(task.push, { type: 'alert', id: task.answerId, data: task.data }, (user) => {
        ended.push(user);
        if (ended.length === 1) setImmediate(write);
        // After this turn's write is started (setImmediate runs in order): then wait for every write.
        if (--left === 0) setImmediate(() => void Promise.all(writes).then(() => (failed === undefined ? resolve() : reject(failed as Error))));
      });
      this.log.debug({ event: 'push_requested', alert: task.answerId, users: task.push.length, reason: task.kind === 'escalation' ? 'escalation' : 'offline' }, 'alert handed to Web Push');
    });
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
