import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '../support/clients';
import { clusterDeployment, embeddedDeployment, type Deployment } from '../support/deployment';
import type { Replica } from '../support/cluster';
import type { RedisProcess } from '../support/redis';
import { eventually } from '../support/gateway';
import { token } from '../support/tokens';

jest.setTimeout(60_000);

/**
 * History TTLs in cluster mode (SPEC v3: `history.ttl_s`, and HISTORY_TTL_MS for namespaces that set none):
 * every Redis key of such a channel carries a TTL and is gone after it, so a client cannot create rooms Redis
 * keeps forever and personal data does not outlive its retention. Failed before namespaces: the keys of
 * `chat:` and `user:` channels had PTTL -1 (only the embedded broker read HISTORY_TTL_MS).
 */
describe('history TTLs in Redis', () => {
  let d: Deployment & { redis: RedisProcess; replicas: Replica[] };
  beforeAll(async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'rt-channels-')), 'channels.yaml');
    writeFileSync(file, ['namespaces:', '  chat:', '    history: { size: 100, ttl_s: 2 }', '    presence: true', '    join_leave: true'].join('\n'));
    d = await clusterDeployment({ CHANNELS_FILE: file, HISTORY_TTL_MS: '3000' }, 1);
  });
  afterAll(() => d.close());

  const publish = async (channel: string) => {
    const res = await fetch(d.replicas[0].internal('/api/publish'), {
      method: 'POST',
      headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel, data: { text: 'kept for a while' } }),
    });
    expect(res.status).toBe(202);
  };
  const pttl = async (key: string) => Number((await d.redis.command(`PTTL ${key}`)).replace(/^:/, '').trim());
  const history = async (channel: string) => {
    const res = await fetch(d.replicas[0].internal(`/api/channels/${encodeURIComponent(channel)}/history?since=0-0`), {
      headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}` },
    });
    return (await res.json()) as { messages: unknown[] };
  };

  it.each([
    ['chat:ttl-room', 2000, 'the namespace file (ttl_s: 2)'],
    ['user:ttl-user', 3000, 'HISTORY_TTL_MS for a namespace that sets none'],
  ])('%s: stream and meta keys carry a TTL from %s ms and are gone after it', async (channel, ttlMs) => {
    await publish(channel);
    expect((await history(channel)).messages).toHaveLength(1);
    for (const key of [`rt:{${channel}}:stream`, `rt:{${channel}}:meta`]) {
      const left = await pttl(key);
      expect([key, left > 0 && left <= ttlMs]).toEqual([key, true]);
    }
    await eventually(async () => (await pttl(`rt:{${channel}}:stream`)) === -2 && (await pttl(`rt:{${channel}}:meta`)) === -2, ttlMs + 3000, 'keys expired');
    expect((await history(channel)).messages).toEqual([]);
  });

  it("gives a TTL to a stream another service appended to without one, once a gateway reads it", async () => {
    await d.redis.command('XADD rt:{chat:ext-room}:stream MAXLEN ~ 100 * data "{\\"via\\":\\"xadd\\"}"');
    expect(await pttl('rt:{chat:ext-room}:stream')).toBe(-1);
    expect((await history('chat:ext-room')).messages).toHaveLength(1);
    const left = await pttl('rt:{chat:ext-room}:stream');
    expect(left > 0 && left <= 2000).toBe(true);
    await eventually(async () => (await pttl('rt:{chat:ext-room}:stream')) === -2, 5000, 'the stream to expire');
  });
});

/**
 * The same TTL in embedded mode, checked on every use (it was a 60 s sweep that spared held channels, so a
 * late resume was served history the TTL should have removed): expired within a second of the TTL, and a
 * holder told at once, positioned at the new history.
 */
describe('history TTLs in embedded mode', () => {
  it('drops an expired history when it is next used, and tells the holder recovered:false at the new epoch', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'rt-channels-')), 'channels.yaml');
    writeFileSync(file, 'namespaces:\n  room: { history: { size: 10, ttl_s: 1 } }\n');
    const d = await embeddedDeployment({ CHANNELS_FILE: file });
    try {
      const api = (path: string, init: RequestInit = {}) =>
        fetch(d.gateway.internal(path), { ...init, headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' } });
      const holder = await connect(d.ws(0, '/ws'), { protocols: ['bearer', token({ sub: 'holder', role: 'user' })] });
      holder.send({ type: 'subscribe', channel: 'room:r' });
      const first = await holder.ofType<{ epoch: string }>('subscribed');
      expect((await api('/api/publish', { method: 'POST', body: JSON.stringify({ channel: 'room:r', data: { n: 1 } }) })).status).toBe(202);
      await holder.ofType('publication');
      const history = async () => (await (await api('/api/channels/room:r/history')).json()) as { epoch: string; messages: unknown[] };
      expect((await history()).messages).toHaveLength(1);
      await eventually(async () => (await history()).messages.length === 0, 3000, 'the history to expire');
      const renewed = await holder.ofType<{ epoch: string; id: string }>('subscribed');
      expect(renewed).toEqual({ type: 'subscribed', channel: 'room:r', epoch: expect.any(String), id: '0-0' });
      expect(renewed.epoch).not.toBe(first.epoch);
      expect(await holder.ofType('resumed')).toEqual({ type: 'resumed', channel: 'room:r', recovered: false });
      const sent = await api('/api/publish', { method: 'POST', body: JSON.stringify({ channel: 'room:r', data: { n: 2 } }) });
      expect(await holder.ofType('publication')).toMatchObject({ id: ((await sent.json()) as { id: string }).id, data: { n: 2 } });
      holder.ws.terminate();
    } finally {
      await d.close();
    }
  });
});
