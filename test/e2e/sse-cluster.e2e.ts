import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Replica } from '../support/cluster';
import { eventually } from '../support/gateway';
import { FailoverFront } from '../support/front';
import { RedisProcess } from '../support/redis';
import { sendFrame, SseClient } from '../support/sse-client';
import { token } from '../support/tokens';

/** What the `eventsource` package gave its application, one line each (test/support/eventsource-reader.mjs). */
interface ReaderLine {
  event: 'open' | 'message' | 'error';
  lastEventId?: string;
  data?: Record<string, any>;
}

class EventSourceReader {
  readonly lines: ReaderLine[] = [];
  private constructor(readonly child: ChildProcess) {
    let buffered = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        this.lines.push(JSON.parse(buffered.slice(0, nl)));
        buffered = buffered.slice(nl + 1);
      }
    });
  }

  static start(url: string, jwt: string): EventSourceReader {
    return new EventSourceReader(spawn(process.execPath, [join(__dirname, '..', 'support', 'eventsource-reader.mjs'), url, jwt], { stdio: ['ignore', 'pipe', 'inherit'] }));
  }

  messages(type?: string): Record<string, any>[] {
    return this.lines.filter((l) => l.event === 'message' && (!type || l.data!.type === type)).map((l) => l.data!);
  }

  stop(): void {
    this.child.kill('SIGTERM');
  }
}

/**
 * SSE across replicas (SPEC v3): a send reaches the stream whichever replica the POST lands on, and a plain
 * EventSource (the `eventsource` package, its own reconnects and Last-Event-ID) resumes on another replica after
 * the one holding its stream is killed, with every message once and in order.
 */
describe('SSE across replicas (real redis-server, replica processes)', () => {
  let redis: RedisProcess;
  let a: Replica;
  let b: Replica;
  let front: FailoverFront;
  const publisher = { authorization: `Bearer ${token({ sub: 'backend', role: 'service' })}`, 'content-type': 'application/json' };

  beforeAll(async () => {
    redis = await RedisProcess.start();
    [a, b] = await Promise.all([Replica.start('sse-a', redis.url, { LOG_LEVEL: 'info' }), Replica.start('sse-b', redis.url, { LOG_LEVEL: 'info' })]);
    for (const replica of [a, b]) await eventually(async () => (await replica.readyStatus()) === 200, 10_000, `${replica.name} ready`);
    front = await FailoverFront.start(() => [a.process.port, b.process.port]);
  });

  afterAll(async () => {
    await front?.stop();
    await Promise.all([a?.kill(), b?.kill()]);
    await redis?.stop();
  });

  it('hands a frame POSTed to the other replica to the stream\'s connection', async () => {
    const jwt = token({ sub: 'erin', role: 'user' });
    const s = await SseClient.open(a.http('/sse?channel=chat:ward-20'), { authorization: `Bearer ${jwt}` });
    const { session } = (await s.ofType('welcome')).data;
    const sent = await sendFrame(b.http('/sse/send'), jwt, session, { type: 'publish', channel: 'chat:ward-20', data: { text: 'via b' } });
    expect(sent.status).toBe(202);
    expect((await s.ofType('publication')).data).toMatchObject({ channel: 'chat:ward-20', user: 'erin', data: { text: 'via b' } });
    // Someone else's token, through the other replica: the stream is not theirs.
    const other = await sendFrame(b.http('/sse/send'), token({ sub: 'mallory', role: 'user' }), session, { type: 'ping' });
    expect(other).toMatchObject({ status: 404, body: { error: 'unknown_session' } });
    await s.close();
    await eventually(async () => (await sendFrame(b.http('/sse/send'), jwt, session, { type: 'ping' })).status === 404, 5000, 'the ended stream is unknown');
  });

  it('resumes an EventSource on the other replica after its replica is killed: every message once, in order', async () => {
    const reader = EventSourceReader.start(front.http('/sse?channel=chat:ward-21'), token({ sub: 'frank', role: 'user' }));
    try {
      await eventually(() => reader.messages('welcome').length === 1, 10_000, 'the welcome');
      const published: string[] = [];
      const post = async (n: number) => {
        const res = await fetch(b.internal('/api/publish'), { method: 'POST', headers: publisher, body: JSON.stringify({ channel: 'chat:ward-21', data: { n } }) });
        expect(res.status).toBe(202);
        published.push(((await res.json()) as { id: string }).id);
      };
      for (let n = 0; n < 20; n++) await post(n);
      await eventually(() => reader.messages('publication').length === 20, 10_000, 'the first 20');
      await a.kill();
      // Published while the stream is down or reconnecting: the replay must bring them.
      for (let n = 20; n < 40; n++) await post(n);
      await eventually(() => reader.messages('welcome').length === 2, 20_000, `the reconnect (${JSON.stringify(reader.lines.filter((l) => l.event !== 'message' || l.data!.type !== 'publication'))})`);
      for (let n = 40; n < 50; n++) await post(n);
      await eventually(() => reader.messages('publication').length >= 50, 10_000, 'all 50');
      const got = reader.messages('publication').map((m) => m.id);
      expect(got).toEqual(published);
      expect(reader.messages('resumed')).toEqual([{ type: 'resumed', channel: 'chat:ward-21', recovered: true }]);
      expect(reader.lines.some((l) => l.event === 'error')).toBe(true);
    } finally {
      reader.stop();
    }
  }, 60_000);
});
