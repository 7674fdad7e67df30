import type { Replica } from './cluster';
import { eventually } from './gateway';
import { ResumingSubscriber } from './resuming-subscriber';

/** `count` resuming alert subscribers that start on different replicas and move to the next on every close. */
export async function resumingSubscribers(name: string, replicas: Replica[], count: number): Promise<ResumingSubscriber[]> {
  const subscribers = Array.from(
    { length: count },
    (_, i) =>
      new ResumingSubscriber(`${name}-${i}`, (attempt) => {
        const target = replicas[(attempt + i) % replicas.length];
        return { name: target.name, url: `ws://127.0.0.1:${target.process.port}` };
      }),
  );
  for (const s of subscribers) s.start();
  await eventually(() => subscribers.every((s) => s.position !== undefined), 10_000, 'the subscriptions');
  return subscribers;
}

/** A service POSTing alerts round-robin over the replicas (about 100/s), keeping the ids it got 202 for. */
export class AlertPublisher {
  readonly published: string[] = [];
  /** The last answer that was not 202 (for failure messages). */
  lastRefusal = '';
  private running = true;
  private readonly loop: Promise<void>;

  constructor(replicas: Replica[]) {
    this.loop = (async () => {
      for (let i = 0; this.running; i++) {
        const result = await replicas[i % replicas.length].publish({ data: { i } }).catch(() => undefined);
        if (result?.status === 202) this.published.push(String(result.body.id));
        else this.lastRefusal = JSON.stringify(result);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
  }

  /** Resolves once `count` more alerts have been acknowledged; says how far it got if not. */
  async more(count: number, ms: number, what: string): Promise<void> {
    const from = this.published.length;
    await eventually(() => this.published.length >= from + count, ms, what).catch((error: Error) => {
      this.running = false;
      throw new Error(`${error.message}; ${this.published.length - from} of ${count}; last refusal ${this.lastRefusal}`);
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

/**
 * The delivery promise, checked per subscriber once the last acknowledged alert reached everyone: every alert it
 * received was acknowledged, none twice or out of order, and every acknowledged alert since its first is there,
 * except those before the first alert it received after a recovered:false (that notice covers them).
 */
export async function expectEveryAlertOnceInOrderOrTold(subscribers: ResumingSubscriber[], published: string[]): Promise<void> {
  const last = published[published.length - 1];
  await eventually(() => subscribers.every((s) => s.received.includes(last)), 20_000, 'the last alert everywhere');
  await Promise.all(subscribers.map((s) => s.stop()));
  const index = new Map(published.map((id, i) => [id, i]));
  for (const [i, s] of subscribers.entries()) {
    const positions = s.received.map((id) => index.get(id));
    expect({ subscriber: i, unknown: positions.filter((p) => p === undefined).length }).toEqual({ subscriber: i, unknown: 0 });
    expect({ subscriber: i, ordered: positions.every((p, j) => j === 0 || p! > positions[j - 1]!) }).toEqual({ subscriber: i, ordered: true });
    const got = new Set(s.received);
    const covered = s.notRecoveredAt.map((at) => (at < s.received.length ? index.get(s.received[at])! : Infinity));
    const silent = published.slice(positions[0]!).filter((id) => !got.has(id) && !covered.some((bound) => index.get(id)! < bound));
    expect({ subscriber: i, silentlyMissing: silent }).toEqual({ subscriber: i, silentlyMissing: [] });
  }
}
