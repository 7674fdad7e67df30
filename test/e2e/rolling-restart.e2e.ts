import { connect } from '../support/clients';
import { Replica } from '../support/cluster';
import { eventually } from '../support/gateway';
import { RedisProcess } from '../support/redis';
import { ResumingSubscriber } from '../support/resuming-subscriber';
import { StallingProxy } from '../support/stalling-proxy';
import { token } from '../support/tokens';

jest.setTimeout(60_000);

const ENV = { DRAIN_WINDOW_MS: '500', SHUTDOWN_GRACE_MS: '2000', PRESENCE_TTL_MS: '1500' };

/**
 * A rolling restart as Kubernetes does it with maxUnavailable 0 (start a new replica, then drain an old one),
 * twice, while a service keeps publishing and a client that resumes with `since` and `epoch` stays subscribed.
 */
describe('rolling restart of two replicas', () => {
  let redis: RedisProcess;
  const replicas: Replica[] = [];
  const live = new Set<Replica>();
  /** Stops the test's publisher loop, also when an assertion failed midway. */
  let running = true;

  beforeAll(async () => {
    redis = await RedisProcess.start();
  });
  afterAll(async () => {
    running = false;
    await Promise.all(replicas.map((r) => r.kill()));
    await redis.stop();
  });

  async function startReplica(name: string): Promise<Replica> {
    const replica = await Replica.start(name, redis.url, ENV);
    replicas.push(replica);
    await eventually(async () => (await replica.readyStatus()) === 200, 10_000, `${name} ready`);
    live.add(replica);
    return replica;
  }

  async function drain(replica: Replica): Promise<void> {
    live.delete(replica); // the load balancer stops routing to it (preStop)
    expect(await replica.stop()).toBe(0);
  }

  it('loses no alert for a client that resumes with since, and delivers none twice (on the path endpoint and on /ws)', async () => {
    await startReplica('gen1-a');
    await startReplica('gen1-b');
    const target = (attempt: number) => {
      const targets = [...live];
      const replica = targets[attempt % targets.length];
      return replica && { name: replica.name, url: `ws://127.0.0.1:${replica.process.port}` };
    };
    const subscriber = new ResumingSubscriber('watcher', target);
    const multiplexed = new ResumingSubscriber('ws-watcher', (attempt) => target(attempt + 1), 100, 'ws');
    subscriber.start();
    multiplexed.start();
    await eventually(() => subscriber.client !== undefined && multiplexed.position !== undefined, 5000, 'the first subscriptions');

    // The publisher: POSTs through whichever replica the balancer picks, retrying elsewhere on failure.
    const published: string[] = [];
    let publishing = true;
    const publish = (async () => {
      for (let i = 0; publishing && running; i++) {
        const targets = [...live];
        const target = targets[i % targets.length];
        const result = await target.publish({ data: { i } }).catch(() => undefined);
        if (result?.status === 202) published.push(String(result.body.id));
        await new Promise((resolve) => setTimeout(resolve, 5)); // about 150 alerts/s
      }
    })();

    await eventually(() => published.length >= 20, 5000, 'alerts before the restart');
    const [a, b] = replicas;
    await startReplica('gen2-a');
    await drain(a);
    await startReplica('gen2-b');
    await drain(b);
    const mark = published.length;
    await eventually(() => published.length >= mark + 20, 5000, 'alerts after the restart');
    publishing = false;
    await publish;

    const { received } = subscriber;
    await eventually(() => received.length >= published.length, 10_000, 'the client to catch up').catch((error: Error) => {
      const missing = published.filter((id) => !received.includes(id));
      throw new Error(
        `${error.message}: received ${received.length} of ${published.length}; missing ${missing.length} from index ` +
          `${published.findIndex((id) => !received.includes(id))} (${missing.slice(0, 3).join(', ')}); closes ${subscriber.closes.join(',')}; ` +
          `connected to ${subscriber.connectedTo}; live ${[...live].map((r) => r.name).join(',')}`,
      );
    });
    await eventually(() => multiplexed.received.length >= published.length, 10_000, 'the /ws client to catch up').catch((error: Error) => {
      throw new Error(`${error.message}: received ${multiplexed.received.length} of ${published.length}; closes ${multiplexed.closes.join(',')}`);
    });
    await subscriber.stop();
    await multiplexed.stop();

    expect(subscriber.closes.filter((code) => code === 1012).length).toBeGreaterThanOrEqual(1);
    expect(subscriber.notRecoveredAt).toEqual([]);
    expect(received).toEqual(published); // every alert, in order, once
    expect(multiplexed.closes.filter((code) => code === 1012).length).toBeGreaterThanOrEqual(1);
    expect(multiplexed.notRecoveredAt).toEqual([]);
    expect(multiplexed.received).toEqual(published);
  });

  it('loses no alert for a /ws subscriber whose replica is killed (SIGKILL), and delivers none twice', async () => {
    const survivor = await startReplica('kill-survivor');
    const victim = await startReplica('kill-victim');
    const multiplexed = new ResumingSubscriber('ws-kill', () => {
      const target = live.has(victim) ? victim : survivor;
      return { name: target.name, url: `ws://127.0.0.1:${target.process.port}` };
    }, 100, 'ws');
    multiplexed.start();
    await eventually(() => multiplexed.position !== undefined && multiplexed.connectedTo === 'kill-victim', 5000, 'subscribed on the victim');
    const published: string[] = [];
    let publishing = true;
    const publish = (async () => {
      while (publishing && running) {
        const result = await survivor.publish({ data: { t: Date.now() } }).catch(() => undefined);
        if (result?.status === 202) published.push(String(result.body.id));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    await eventually(() => published.length >= 20, 5000, 'alerts before the kill');
    live.delete(victim);
    await victim.kill();
    const mark = published.length;
    await eventually(() => published.length >= mark + 20 && multiplexed.connectedTo === 'kill-survivor', 10_000, 'alerts after the kill');
    publishing = false;
    await publish;
    await eventually(() => multiplexed.received.length >= published.length, 10_000, 'the /ws client to catch up').catch((error: Error) => {
      throw new Error(`${error.message}: received ${multiplexed.received.length} of ${published.length}; closes ${multiplexed.closes.join(',')}`);
    });
    await multiplexed.stop();
    expect(multiplexed.notRecoveredAt).toEqual([]);
    expect(multiplexed.received).toEqual(published);
    await survivor.stop();
    live.delete(survivor);
  });

  it('reads the replay that arrives in the same read as the 101 response (a client stalled between request and response)', async () => {
    const replica = await startReplica('stalled');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(String((await replica.publish({ data: { i } })).body.id));
    const first = await connect(replica.ws(`/api/alerts/subscribe?token=${token({ sub: 'stalled' })}`));
    const { epoch } = await first.ofType<{ epoch: string }>('welcome');
    await first.close();
    const proxy = await StallingProxy.start(replica.process.port, 300);
    const subscriber = new ResumingSubscriber('stalled', () => ({ name: 'proxy', url: `ws://127.0.0.1:${proxy.port}` }));
    subscriber.position = { id: ids[0], epoch };
    try {
      subscriber.start();
      await eventually(() => subscriber.received.length >= 4, 5000, 'the replay').catch((error: Error) => {
        throw new Error(`${error.message}: received ${subscriber.received.join(',')}`);
      });
      expect(subscriber.received).toEqual(ids.slice(1));
    } finally {
      await subscriber.stop();
      await proxy.stop();
    }
  });
});
