import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TestClient } from '../support/clients';
import { clusterDeployment } from '../support/deployment';
import { token } from '../support/tokens';

jest.setTimeout(60_000);

const TTL_MS = 1500;

/**
 * `/ws` members of a presence namespace when a replica dies: a user whose only connection was there is announced
 * gone (after about PRESENCE_TTL_MS) and nothing of it stays in Redis; a user still connected elsewhere is not.
 */
it('announces the users a dead replica took away, and only those', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'rt-wsp-')), 'channels.yaml');
  writeFileSync(file, 'namespaces:\n  lounge: { presence: true, join_leave: true }\n');
  const d = await clusterDeployment({ CHANNELS_FILE: file, PRESENCE_TTL_MS: String(TTL_MS) });
  const open: TestClient[] = [];
  const ws = async (replica: number, sub: string) => {
    const client = await connect(d.ws(replica, '/ws'), { protocols: ['bearer', token({ sub, role: 'user' })] });
    open.push(client);
    client.send({ type: 'subscribe', channel: 'lounge:hall' });
    await client.take((f) => f.type === 'subscribed');
    return client;
  };
  try {
    const ann = await ws(0, 'ann');
    await ann.take((f) => f.type === 'join' && f.user === 'ann');
    await ws(1, 'ben');
    await ws(0, 'ben'); // ben's phone, on the replica that lives
    await ws(1, 'carl');
    await ann.take((f) => f.type === 'join' && f.user === 'ben');
    await ann.take((f) => f.type === 'join' && f.user === 'carl');
    await d.replicas[1].kill();
    expect(await ann.take((f) => f.type === 'leave', TTL_MS * 5)).toEqual({ type: 'leave', channel: 'lounge:hall', user: 'carl' });
    // ben is still there (its phone): no leave, and it is still a member.
    const res = await fetch(d.replicas[0].internal('/api/channels/lounge:hall/presence'), { headers: { authorization: `Bearer ${token({ sub: 's', role: 'service' })}` } });
    expect(((await res.json()) as { members: { user: string }[] }).members.map((m) => m.user).sort()).toEqual(['ann', 'ben']);
    expect(ann.frames.filter((f: any) => f.type === 'leave')).toEqual([]);
    // Nothing of carl is left in Redis.
    expect(await d.redis.command('KEYS *carl*')).toBe('*0\r\n');
  } finally {
    for (const client of open) client.ws.terminate();
    await d.close();
  }
});
