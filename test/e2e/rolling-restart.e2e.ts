import { connect, type TestClient } from '../support/clients';
import { Replica } from '../support/cluster';
import { eventually } from '../support/gateway';
import { RedisProcess } from '../support/redis';
import { token } from '../support/tokens';

jest.setTimeout(60_000);

const ENV = { DRAIN_WINDOW_MS: '500', SHUTDOWN_GRACE_MS: '2000', PRESENCE_TTL_MS: '1500' };

/**
 * A rolling restart as Kubernetes does it with maxUnavailable 0 (start a new replica, then drain an old one),
 * twice, while a service keeps publishing and a client that resumes with `since` stays subscribed throughout.
 */
describe('rolling restart of two replicas', () => {
  let redis: RedisProcess;
  const replicas: Replica[] = [];
  const live = new Set<Replica>();
  /** Stops the test's client and publisher loops, also when an assertion failed midway. */
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

  it('loses no alert for a client that resumes with since, and delivers none twice', async () => {
    await startReplica('gen1-a');
    await startReplica('gen1-b');

    // The subscriber: on every close it reconnects to a live replica with the last id it saw.
    const received: string[] = [];
    const closes: number[] = [];
    let client: TestClient | undefined;
    let connectedTo = '';
    const subscribe = async (): Promise<void> => {
      for (let attempt = 0; running; attempt++) {
        const targets = [...live];
        const target = targets[attempt % targets.length];
        const since = received.length ? `&since=${received[received.length - 1]}` : '';
        try {
          connectedTo = target.name;
          client = await connect(target.ws(`/api/alerts/subscribe?token=${token({ sub: 'watcher' })}${since}`));
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 50)); // backoff before the next replica
          continue;
        }
        const current = client;
        current.ws.on('message', (data) => {
          const frame = JSON.parse(data.toString()) as { type: string; id?: string };
          if (frame.type === 'alert') received.push(frame.id!);
        });
        const { code } = await current.closed;
        closes.push(code);
        attempt = -1;
        // Clients reconnect after a short jitter (the SDK's behaviour on 1012); alerts keep coming meanwhile.
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    const subscribing = subscribe();
    await eventually(() => client !== undefined, 5000, 'the first subscription');

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

    await eventually(() => received.length >= published.length, 10_000, 'the client to catch up').catch((error: Error) => {
      // Seen once in about 14 full runs: say whether an alert went missing or the client stopped receiving.
      const missing = published.filter((id) => !received.includes(id));
      const firstMissing = published.findIndex((id) => !received.includes(id));
      throw new Error(
        `${error.message}: received ${received.length} of ${published.length}; missing ${missing.length} from index ${firstMissing} ` +
          `(${missing.slice(0, 3).join(', ')}); closes ${closes.join(',')}; connected to ${connectedTo}, socket state ${client?.ws.readyState}; ` +
          `live ${[...live].map((r) => r.name).join(',')}`,
      );
    });
    running = false;
    client?.ws.terminate();
    await subscribing;

    expect(closes.filter((code) => code === 1012).length).toBeGreaterThanOrEqual(1);
    expect(received).toEqual(published); // every alert, in order, once
  });
});
