/**
 * Where receipts live (docs/server-api.md, receipts): memory in embedded mode, Redis in cluster mode
 * (redis-receipt-store.ts). Every method of the Redis store may reject while Redis is unreachable.
 *
 * An alert's record has three parts, written by different replicas in any order:
 * - its description, written once by the replica that published it (`create`): the targeted users, the ack
 *   window, the data (for an escalation), the personal frames' ids (`refs`), its expiry;
 * - `delivered`: user → first time a frame of it was written to one of that user's sockets, from every replica
 *   that delivered it (`delivered`, batched per event-loop turn); the first also marks the alert as asking for
 *   ack, so an ack that overtakes `create` is still recognised;
 * - `acked`: user → first ack.
 * Deliveries that come before `create` (or for an alert whose record is gone) are kept provisionally, for
 * PROVISIONAL_MS: a record that is never created does not outlive that.
 */

/** How long deliveries are kept for an alert whose description has not been written (yet). */
export const PROVISIONAL_MS = 60_000;

/** Where the alert went: `alerts` (filtered by roles / users) or the users' own `user:<sub>` channels. */
export type AlertRoute = 'alerts' | 'user';

export interface AlertRecord {
  /** The alert's id (the POST answer's `id` for alerts that ask for ack). */
  id: string;
  /** Publication time, ms. */
  ts: number;
  /** Acknowledgement asked for (false: deliveries are recorded only to push to users it did not reach). */
  ack: boolean;
  /** The targeted `users` (deduplicated, in the order given); empty for a role-only or broadcast alert. */
  users: readonly string[];
  /** The ack window; the escalation is due at ts + withinS s when `users` is not empty. */
  withinS?: number;
  route: AlertRoute;
  /** Personal alerts: each user's frame id in their `user:<sub>` channel (acks of it are mapped to `id`). */
  refs: Readonly<Record<string, string>>;
  /** The alert's data (kept only when an escalation may need it). */
  data?: Record<string, unknown>;
  /** Random, per record: names its `alert.unacknowledged` event (the same webhook-id if it is ever sent again). */
  nonce: string;
  /** The id push payloads name it by (the POST answer's `id`), when not `id`. */
  answerId?: string;
  /**
   * With Web Push on: when the targeted users it reached on no socket are pushed (the push-at-once, a due task of
   * its own in the same due-set as escalations, so that any replica performs it if the publisher dies).
   */
  pushAt?: number;
  /** When the record expires (ms since the epoch); 0: it lasts until `keep` newer ones push it out. */
  expiresAt: number;
}

/** What GET /api/alerts/<id>/receipts shows. */
export interface ReceiptView {
  id: string;
  ack: boolean;
  /** False while only deliveries are known (the description is not written yet). */
  described: boolean;
  users: readonly string[];
  delivered: Map<string, number>;
  acked: Map<string, number>;
}

/**
 * What is due for an alert: `escalation` (the ack window ended with users pending) or `push` (the push-at-once to
 * the targeted users it reached on no socket).
 */
export type DueKind = 'escalation' | 'push';

/**
 * A due task, claimed by this replica until the lease ends. Its steps already done (by a claimer that died
 * mid-way) are left out: `redeliver` and `push` are the users still to do, `notified` whether the event was queued.
 */
export interface DueEscalation {
  kind: DueKind;
  id: string;
  /** The id push payloads name it by (the POST answer's). */
  answerId: string;
  withinS: number;
  /** Escalation: the targeted users who have not acked (the event's `pending`); push: empty. */
  pending: string[];
  /** Escalation: pending users not yet redelivered to. */
  redeliver: string[];
  /** Users not yet pushed to: escalation, pending ones; push, targeted ones it reached on no socket. */
  push: string[];
  /** Escalation: `alert.unacknowledged` was queued already. */
  notified: boolean;
  route: AlertRoute;
  refs: Record<string, string>;
  data: Record<string, unknown>;
  nonce: string;
}

/** Steps of a due task carried out, recorded so that a replica taking it over after a death does only the rest. */
export interface Progress {
  redelivered?: readonly string[];
  pushed?: readonly string[];
  notified?: true;
}

/** Where an ack's frame id points: the alert named by this node's memory, or the frame of a channel. */
export interface AckTarget {
  user: string;
  /** The id the client sent. */
  frameId: string;
  /** The alert this node knows the frame belongs to (it delivered it), if any. */
  alert?: string;
  /** `alerts`: the frame id is the alert's; otherwise (a personal frame, or unknown) mapped through `refs` first. */
  route?: AlertRoute;
}

export type AckResult = { result: 'recorded' | 'repeated'; alert: string } | { result: 'unknown' };

/** A description to write, and how many records that ask for ack are kept (0: this one is not counted). */
export interface NewRecord {
  record: AlertRecord;
  keep: number;
}

/** One alert's deliveries on one replica in one turn (a user may be listed twice). */
export interface Delivery {
  alert: string;
  users: readonly string[];
  ack: boolean;
}

export interface ReceiptStore {
  /**
   * Writes each description once (a second create of the same id, a retried idempotent publish, changes
   * nothing). `keep`: at most this many records that ask for ack are kept (the oldest go first). With `users`
   * and `withinS`, the escalation is due at ts + withinS. Several at once: one round trip.
   */
  create(records: readonly NewRecord[]): Promise<void>;
  /** Deliveries at `ts` (each user's first is kept), of every alert of one turn: one round trip. */
  delivered(deliveries: readonly Delivery[], ts: number): Promise<void>;
  /** Records an ack once: unknown unless the alert asks for ack and was delivered to that user. */
  ack(target: AckTarget, ts: number): Promise<AckResult>;
  read(alert: string): Promise<ReceiptView | undefined>;
  /**
   * Takes up to `max` tasks due at `now`: escalations whose users are not all acked, push-at-once checks with
   * someone to push to; each held by this replica until `leaseUntil` (then any replica may take it again); those
   * with nothing to do are settled without one.
   */
  claimDue(now: number, leaseUntil: number, max: number): Promise<DueEscalation[]>;
  /** Keeps tasks this replica still works on held until `leaseUntil` (a push service may take a minute). */
  renew(tasks: readonly { id: string; kind: DueKind }[], leaseUntil: number): Promise<void>;
  /** Records steps done, atomically: a later claim leaves them out. */
  progress(alert: string, kind: DueKind, done: Progress): Promise<void>;
  /** The task was carried out: never again. */
  complete(alert: string, kind: DueKind, ts: number): Promise<void>;
}

/** The due-set's member of a task: the alert's id for its escalation, `<id>:push` for its push-at-once. */
export function dueMember(alert: string, kind: DueKind): string {
  return kind === 'escalation' ? alert : `${alert}:push`;
}

export const RECEIPT_STORE = Symbol('RECEIPT_STORE');

interface MemoryRecord {
  record?: AlertRecord;
  ack: boolean;
  /**
   * Deliveries as written, one entry per turn: a list of users (no Map per alert, which would be kept for every
   * alert of the history and its 1,000 recipients). Indexed into `first` when first read or acked.
   */
  batches: { ts: number; users: readonly string[] }[];
  first?: Map<string, number>;
  acked: Map<string, number>;
  /** Until a description is written: when the provisional deliveries go. */
  provisionalUntil: number;
  escalated?: number;
  /** Steps done: redelivered (`r`), pushed by the escalation (`p`) and at once (`o`), `n` notified. */
  steps?: { r: Set<string>; p: Set<string>; o: Set<string>; n: boolean };
}

/** Embedded mode's store: this process's memory (lost with it, like the embedded broker's history). */
export class MemoryReceiptStore implements ReceiptStore {
  private readonly records = new Map<string, MemoryRecord>();
  /** `<user>\0<frame id>` → alert. */
  private readonly refs = new Map<string, string>();
  /** Alerts that ask for ack, oldest first (insertion order), for `keep`. */
  private readonly kept = new Set<string>();
  /** Due tasks: dueMember → due time (a claim moves it to the lease's end). */
  private readonly due = new Map<string, number>();
  /**
   * Records that expire soon after they are made (provisional deliveries, the push check's records), in the order
   * they were made: dropped from the front once expired, so none stays because nobody read it again.
   */
  private readonly expiring = new Set<string>();

  constructor(private readonly now: () => number = Date.now) {}

  private live(alert: string): MemoryRecord | undefined {
    const entry = this.records.get(alert);
    if (!entry) return undefined;
    const now = this.now();
    const expiresAt = entry.record ? entry.record.expiresAt : entry.provisionalUntil;
    if (expiresAt !== 0 && expiresAt <= now) {
      this.drop(alert);
      return undefined;
    }
    return entry;
  }

  /** Drops the expired records at the front of `expiring` (they expire in the order they were made). */
  private sweep(): void {
    const now = this.now();
    for (const alert of this.expiring) {
      const entry = this.records.get(alert);
      const expiresAt = entry ? (entry.record ? entry.record.expiresAt : entry.provisionalUntil) : 0;
      if (entry && (expiresAt === 0 || expiresAt > now)) break;
      this.drop(alert);
    }
  }

  private drop(alert: string): void {
    this.expiring.delete(alert);
    const entry = this.records.get(alert);
    if (entry?.record) for (const [user, frame] of Object.entries(entry.record.refs)) this.refs.delete(`${user}\0${frame}`);
    this.records.delete(alert);
    this.kept.delete(alert);
    this.due.delete(alert);
    this.due.delete(dueMember(alert, 'push'));
  }

  create(records: readonly NewRecord[]): Promise<void> {
    for (const { record, keep } of records) this.createOne(record, keep);
    return Promise.resolve();
  }

  private createOne(record: AlertRecord, keep: number): void {
    let entry = this.live(record.id);
    if (entry?.record) return;
    entry ??= { ack: false, batches: [], acked: new Map(), provisionalUntil: 0 };
    entry.record = record;
    entry.ack ||= record.ack;
    this.records.set(record.id, entry);
    for (const [user, frame] of Object.entries(record.refs)) this.refs.set(`${user}\0${frame}`, record.id);
    this.sweep();
    // Counted by `keep` from now on (its expiry, if any, is checked when it is read); or expiring soon, in order.
    if (keep > 0) this.expiring.delete(record.id);
    else if (record.expiresAt !== 0) this.expiring.add(record.id);
    if (keep > 0) {
      this.kept.add(record.id);
      for (const old of this.kept) {
        if (this.kept.size <= keep) break;
        this.drop(old);
      }
    }
    if (record.users.length > 0 && record.withinS !== undefined) this.due.set(record.id, record.ts + record.withinS * 1000);
    if (record.users.length > 0 && record.pushAt !== undefined) this.due.set(dueMember(record.id, 'push'), record.pushAt);
  }

  delivered(deliveries: readonly Delivery[], ts: number): Promise<void> {
    for (const { alert, users, ack } of deliveries) this.deliveredOne(alert, users, ts, ack);
    return Promise.resolve();
  }

  private deliveredOne(alert: string, users: readonly string[], ts: number, ack: boolean): void {
    let entry = this.live(alert);
    if (!entry) {
      this.sweep();
      entry = { ack: false, batches: [], acked: new Map(), provisionalUntil: this.now() + PROVISIONAL_MS };
      this.records.set(alert, entry);
      this.expiring.add(alert);
    }
    entry.ack ||= ack;
    if (entry.first) {
      for (const user of users) if (!entry.first.has(user)) entry.first.set(user, ts);
    } else {
      entry.batches.push({ ts, users });
    }
  }

  /** Each user's first delivery, indexed once (then kept up to date by delivered()). */
  private deliveredOf(entry: MemoryRecord): Map<string, number> {
    if (!entry.first) {
      const first = new Map<string, number>();
      for (const { ts, users } of entry.batches) for (const user of users) if (!first.has(user)) first.set(user, ts);
      entry.first = first;
      entry.batches = [];
    }
    return entry.first;
  }

  ack(target: AckTarget, ts: number): Promise<AckResult> {
    const alert = target.alert ?? (target.route === 'alerts' ? undefined : this.refs.get(`${target.user}\0${target.frameId}`)) ?? target.frameId;
    const entry = this.live(alert);
    if (!entry?.ack || !this.deliveredOf(entry).has(target.user)) return Promise.resolve({ result: 'unknown' });
    if (entry.acked.has(target.user)) return Promise.resolve({ result: 'repeated', alert });
    entry.acked.set(target.user, ts);
    return Promise.resolve({ result: 'recorded', alert });
  }

  read(alert: string): Promise<ReceiptView | undefined> {
    const entry = this.live(alert);
    if (!entry) return Promise.resolve(undefined);
    return Promise.resolve({
      id: alert,
      ack: entry.ack,
      described: entry.record !== undefined,
      users: entry.record?.users ?? [],
      delivered: new Map(this.deliveredOf(entry)),
      acked: new Map(entry.acked),
    });
  }

  claimDue(now: number, leaseUntil: number, max: number): Promise<DueEscalation[]> {
    const claimed: DueEscalation[] = [];
    for (const [member, due] of this.due) {
      if (claimed.length >= max) break;
      if (due > now) continue;
      const kind: DueKind = member.endsWith(':push') ? 'push' : 'escalation';
      const alert = kind === 'push' ? member.slice(0, -':push'.length) : member;
      const entry = this.live(alert);
      const record = entry?.record;
      if (!entry || !record || (kind === 'escalation' && entry.escalated !== undefined)) {
        this.due.delete(member);
        continue;
      }
      const steps = (entry.steps ??= { r: new Set(), p: new Set(), o: new Set(), n: false });
      let task: DueEscalation | undefined;
      const base = { id: alert, answerId: record.answerId ?? alert, withinS: record.withinS ?? 0, route: record.route, refs: { ...record.refs }, data: record.data ?? {}, nonce: record.nonce };
      if (kind === 'escalation') {
        const pending = record.users.filter((user) => !entry.acked.has(user));
        if (pending.length > 0) {
          task = { ...base, kind, pending, redeliver: pending.filter((u) => !steps.r.has(u)), push: pending.filter((u) => !steps.p.has(u)), notified: steps.n };
        }
      } else {
        const delivered = this.deliveredOf(entry);
        const push = record.users.filter((user) => !delivered.has(user) && !steps.o.has(user));
        if (push.length > 0) task = { ...base, kind, pending: [], redeliver: [], push, notified: true };
      }
      if (!task) {
        this.due.delete(member);
        continue;
      }
      this.due.set(member, leaseUntil);
      claimed.push(task);
    }
    return Promise.resolve(claimed);
  }

  renew(tasks: readonly { id: string; kind: DueKind }[], leaseUntil: number): Promise<void> {
    for (const { id, kind } of tasks) {
      const member = dueMember(id, kind);
      const due = this.due.get(member);
      if (due !== undefined && due < leaseUntil) this.due.set(member, leaseUntil);
    }
    return Promise.resolve();
  }

  progress(alert: string, kind: DueKind, done: Progress): Promise<void> {
    const entry = this.records.get(alert);
    if (!entry) return Promise.resolve();
    const steps = (entry.steps ??= { r: new Set(), p: new Set(), o: new Set(), n: false });
    for (const user of done.redelivered ?? []) steps.r.add(user);
    for (const user of done.pushed ?? []) (kind === 'escalation' ? steps.p : steps.o).add(user);
    if (done.notified) steps.n = true;
    return Promise.resolve();
  }

  complete(alert: string, kind: DueKind, ts: number): Promise<void> {
    const entry = this.records.get(alert);
    if (entry && kind === 'escalation') entry.escalated = ts;
    this.due.delete(dueMember(alert, kind));
    return Promise.resolve();
  }
}
