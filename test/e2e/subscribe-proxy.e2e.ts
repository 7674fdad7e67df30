import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, refusal, type TestClient } from '../support/clients';
import type { Replica } from '../support/cluster';
import { clusterDeployment, embeddedDeployment, type Deployment } from '../support/deployment';
import { eventually, metricValue, type TestGateway } from '../support/gateway';
import { DENY_REASON, SubscribeBackend } from '../support/subscribe-backend';
import { token } from '../support/tokens';

jest.setTimeout(60_000);

/**
 * The subscribe proxy (SPEC v3 "Namespaces and permissions", Proxy) against a real HTTP backend: what a client
 * sees on `/ws` and on a path endpoint for each kind of answer (allow, deny with a reason, 500, no answer, a late
 * answer, 10 MB, invalid JSON, a non-boolean `allow`, the backend down), what the backend receives, what is
 * logged and counted. Both modes.
 */
const TIMEOUT_MS = 300;
/** The backend's late answers come this long after the question: well past the gateway's deadline. */
const LATE_MS = TIMEOUT_MS + 400;
const SECRET = 'proxy-secret-4c1d9e0f7a6b5c4d3e2f1a0b';

const FILE = join(mkdtempSync(join(tmpdir(), 'rt-proxy-')), 'channels.yaml');
writeFileSync(
  FILE,
  [
    'namespaces:',
    '  ward:',
    '    history: { size: 100 }',
    '    subscribe: { mode: proxy, roles: [nurse] }',
    '  user:',
    '    history: { size: 100 }',
    '    subscribe: { mode: proxy }',
    '  chat:',
    '    history: { size: 100 }',
    '    presence: true',
    '    join_leave: true',
    '    subscribe: { mode: proxy }',
    '    publish: members',
  ].join('\n'),
);

type Frame = Record<string, any>;
type Deployed = Deployment & { gateway?: TestGateway; replicas?: Replica[] };
const modes: [string, (env: Record<string, string>) => Promise<Deployed>][] = [
  ['embedded', (env) => embeddedDeployment(env)],
  ['cluster', (env) => clusterDeployment(env)],
];

describe.each(modes)('subscribe proxy, %s', (_mode, deploy) => {
  let d: Deployed;
  let backend: SubscribeBackend;
  const open: TestClient[] = [];
  /** Every token handed to the gateway: none may reach the backend or a log line. */
  const tokens: string[] = [];
  let n = 0;
  beforeAll(async () => {
    backend = await SubscribeBackend.start(LATE_MS);
    d = await deploy({
      CHANNELS_FILE: FILE,
      SUBSCRIBE_PROXY_URL: backend.url,
      PROXY_SECRET: SECRET,
      PROXY_TIMEOUT_MS: String(TIMEOUT_MS),
      RATE_LIMIT_PER_SEC: '100000',
      RATE_LIMIT_BURST: '100000',
      LOG_LEVEL: 'debug',
    });
  });
  afterAll(async () => {
    for (const client of open) client.ws.terminate();
    await d.close();
    await backend.stop();
  });
  const fresh = (prefix: string) => `${prefix}-${++n}-${Date.now()}`;
  const NURSE = { sub: 'nurse-1', role: 'nurse', email: 'nurse.one@hospital.example', channels: ['ward:icu-*'] };
  const bearer = (claims: Record<string, unknown>) => {
    const jwt = token(claims);
    tokens.push(jwt);
    return { protocols: ['bearer', jwt] };
  };
  async function ws(replica: number, claims: Record<string, unknown> = NURSE): Promise<TestClient> {
    const client = await connect(d.ws(replica, '/ws'), bearer(claims));
    open.push(client);
    return client;
  }
  const forChannel = (client: TestClient, type: string, channel: string, timeoutMs?: number) =>
    client.take<Frame>((f) => f.type === type && f.channel === channel, timeoutMs);
  const errorFor = (client: TestClient, channel: string) => client.take<Frame>((f) => f.type === 'error' && f.payload?.channel === channel);
  const internal = (path: string) => (d.replicas ? d.replicas[0].internal(path) : d.gateway!.internal(path));
  async function publish(channel: string, data: object): Promise<string> {
    const res = await fetch(internal('/api/publish'), {
      method: 'POST',
      headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel, data }),
    });
    expect(res.status).toBe(202);
    return ((await res.json()) as { id: string }).id;
  }
  /** A ping answered: every frame the server sent before it has arrived. */
  async function settled(client: TestClient): Promise<void> {
    client.send({ type: 'ping' });
    await client.ofType('pong');
  }
  /** ws_proxy_requests_total{result}, over every replica. */
  async function proxyCount(result: string): Promise<number> {
    const expositions = d.replicas
      ? await Promise.all(d.replicas.map(async (r) => (await fetch(r.internal('/metrics'))).text()))
      : [await d.gateway!.metrics()];
    return expositions.reduce((sum, text) => sum + (metricValue(text, 'ws_proxy_requests_total', { result }) ?? 0), 0);
  }
  function logLines(): string[] {
    return d.replicas ? d.replicas.flatMap((r) => [...r.process.stdout, r.process.stderr()]) : d.gateway!.rawLogs;
  }

  it('asks the backend with the bearer secret and the documented body (never the raw token), and admits on {"allow":true}', async () => {
    const channel = `ward:${fresh('open')}`;
    const client = await ws(0);
    client.send({ type: 'subscribe', channel });
    expect(await forChannel(client, 'subscribed', channel)).toEqual({ type: 'subscribed', channel, epoch: expect.any(String), id: expect.any(String) });
    const asked = await backend.requestAbout(channel);
    expect([asked.method, asked.url]).toEqual(['POST', '/realtime/subscribe']);
    expect(asked.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(asked.headers['content-type']).toBe('application/json');
    expect(asked.body).toEqual({ user: 'nurse-1', role: 'nurse', channel, claims: { sub: 'nurse-1', role: 'nurse', email: NURSE.email, channels: NURSE.channels } });
    const seen = `${JSON.stringify(asked.headers)}${asked.raw}`;
    for (const jwt of tokens) expect(seen).not.toContain(jwt);
    expect(seen).not.toContain('eyJ'); // no JWT of any kind
    const id = await publish(channel, { bed: 4 });
    expect(await forChannel(client, 'publication', channel)).toMatchObject({ channel, id, data: { bed: 4 } });
  });

  it('refuses {"allow":false} with forbidden_channel carrying the cleaned reason; the connection keeps its other channels', async () => {
    const kept = `ward:${fresh('open')}`;
    const channel = `ward:${fresh('closed')}`;
    const client = await ws(1);
    client.send({ type: 'subscribe', channel: kept });
    await forChannel(client, 'subscribed', kept);
    client.send({ type: 'subscribe', channel });
    const refused = await errorFor(client, channel);
    expect(refused.payload).toEqual({ code: 'forbidden_channel', message: expect.stringContaining('Ward closed for cleaning until 14:00'), channel });
    expect(refused.payload.message).not.toMatch(/[\r\n\u202e]/);
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    const id = await publish(kept, { still: 'here' });
    expect(await forChannel(client, 'publication', kept)).toMatchObject({ id });
  });

  it.each([
    ['broken', 'a 500'],
    ['garbled', 'invalid JSON'],
    ['yes', '{"allow":"yes"}'],
    ['huge', '10 MB without a Content-Length'],
    ['hugedecl', '10 MB with a Content-Length'],
  ])('refuses %s (%s) with proxy_unavailable, never admitting, and keeps the connection', async (kind) => {
    const kept = `ward:${fresh('open')}`;
    const channel = `ward:${fresh(kind)}`;
    const client = await ws(0);
    client.send({ type: 'subscribe', channel: kept });
    await forChannel(client, 'subscribed', kept);
    client.send({ type: 'subscribe', channel });
    expect((await errorFor(client, channel)).payload).toEqual({ code: 'proxy_unavailable', message: expect.stringMatching(/retry/), channel });
    if (kind.startsWith('huge')) {
      // The gateway hung up after at most its 64 KiB cap: the backend could not hand over its 10 MB.
      expect(await (await backend.requestAbout(channel)).ended).toEqual({ finished: false });
    }
    await settled(client);
    expect(client.frames.filter((f: any) => f.channel === channel)).toEqual([]);
    const id = await publish(kept, { after: kind });
    expect(await forChannel(client, 'publication', kept)).toMatchObject({ id });
    // Refused, not held: a publish on it is not_subscribed.
    client.send({ type: 'publish', channel, data: {} });
    expect((await errorFor(client, channel)).payload.code).toBe('not_subscribed');
  });

  it('gives up on a backend that does not answer after PROXY_TIMEOUT_MS (the request is aborted), and a late answer admits nobody', async () => {
    const client = await ws(1);
    const hang = `ward:${fresh('hang')}`;
    const asked = Date.now();
    client.send({ type: 'subscribe', channel: hang });
    expect((await errorFor(client, hang)).payload.code).toBe('proxy_unavailable');
    const took = Date.now() - asked;
    expect(took).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
    expect(took).toBeLessThan(TIMEOUT_MS + 1000);
    expect(await (await backend.requestAbout(hang)).ended).toEqual({ finished: false });

    const late = `ward:${fresh('late')}`;
    const lateAnswer = new Promise((resolve) => backend.once('late', resolve));
    client.send({ type: 'subscribe', channel: late });
    expect((await errorFor(client, late)).payload.code).toBe('proxy_unavailable');
    await lateAnswer;
    await settled(client);
    expect(client.frames.filter((f: any) => f.channel === late)).toEqual([]);
    client.send({ type: 'publish', channel: late, data: {} });
    expect((await errorFor(client, late)).payload.code).toBe('not_subscribed');
  });

  it('answers roles and user:<sub> itself, before any round trip', async () => {
    const doctor = await ws(0, { sub: 'dr-1', role: 'doctor' });
    const ward = `ward:${fresh('open')}`;
    doctor.send({ type: 'subscribe', channel: ward });
    expect((await errorFor(doctor, ward)).payload.code).toBe('forbidden_channel');
    doctor.send({ type: 'subscribe', channel: 'user:nurse-1' });
    expect((await errorFor(doctor, 'user:nurse-1')).payload.code).toBe('forbidden_channel');
    expect(backend.about(ward)).toEqual([]);
    expect(backend.about('user:nurse-1')).toEqual([]);
    // Its own personal channel passes the local check and is then the backend's to decide (no "open" rule: 404).
    doctor.send({ type: 'subscribe', channel: 'user:dr-1' });
    expect((await errorFor(doctor, 'user:dr-1')).payload.code).toBe('proxy_unavailable');
    expect(backend.about('user:dr-1')).toHaveLength(1);
  });

  it('asks once per subscribe: a second subscribe while the first waits gets the same answer without asking again', async () => {
    const client = await ws(0);
    const allowed = `ward:${fresh('open')}`;
    const denied = `ward:${fresh('closed')}`;
    for (const channel of [allowed, allowed, denied, denied]) client.send({ type: 'subscribe', channel });
    await forChannel(client, 'subscribed', allowed);
    await forChannel(client, 'subscribed', allowed);
    expect((await errorFor(client, denied)).payload.code).toBe('forbidden_channel');
    expect((await errorFor(client, denied)).payload.code).toBe('forbidden_channel');
    // Held: subscribing again answers subscribed without a question.
    client.send({ type: 'subscribe', channel: allowed });
    await forChannel(client, 'subscribed', allowed);
    expect([backend.about(allowed).length, backend.about(denied).length]).toEqual([1, 1]);
  });

  it('lets an unsubscribe sent while the backend decides win: an allow that comes after it attaches nothing', async () => {
    const client = await ws(1);
    const channel = `ward:${fresh('gated')}`;
    client.send({ type: 'subscribe', channel });
    await backend.requestAbout(channel);
    client.send({ type: 'unsubscribe', channel });
    expect(await forChannel(client, 'unsubscribed', channel)).toEqual({ type: 'unsubscribed', channel });
    const allowed = await proxyCount('allowed');
    backend.release(channel);
    // Counted once the gateway has the answer; what it does with it follows before any later I/O.
    await eventually(async () => (await proxyCount('allowed')) > allowed, 5000, 'the allow to be counted');
    await settled(client);
    expect(client.frames.filter((f: any) => f.channel === channel || f.payload?.channel === channel)).toEqual([]);
    const id = await publish(channel, { to: 'nobody' });
    const kept = `ward:${fresh('open')}`;
    client.send({ type: 'subscribe', channel: kept });
    await forChannel(client, 'subscribed', kept);
    expect(client.frames.filter((f: any) => f.id === id)).toEqual([]);
  });

  it('refuses a proxy namespace on its path endpoint before the handshake: 403 with the reason, 503 + Retry-After on failure', async () => {
    const room = fresh('open');
    const member = await connect(d.ws(0, `/ws/chat/${room}`), bearer({ sub: 'carol', role: 'user' }));
    open.push(member);
    await member.ofType('welcome');
    expect((await backend.requestAbout(`chat:${room}`)).body).toMatchObject({ user: 'carol', role: 'user', channel: `chat:${room}` });

    const closed = await refusal(d.ws(1, `/ws/chat/${fresh('closed')}`), bearer({ sub: 'carol', role: 'user' }));
    expect([closed.status, closed.body.error]).toEqual([403, 'forbidden_channel']);
    expect(closed.body.message).toContain('Ward closed for cleaning until 14:00');
    for (const kind of ['broken', 'yes']) {
      const failed = await refusal(d.ws(0, `/ws/chat/${fresh(kind)}`), bearer({ sub: 'carol', role: 'user' }));
      expect([failed.status, failed.body.error, failed.headers['retry-after']]).toEqual([503, 'proxy_unavailable', '2']);
    }
    const asked = Date.now();
    const hung = await refusal(d.ws(1, `/ws/chat/${fresh('hang')}`), bearer({ sub: 'carol', role: 'user' }));
    expect([hung.status, hung.body.error, hung.headers['retry-after']]).toEqual([503, 'proxy_unavailable', '2']);
    expect(Date.now() - asked).toBeLessThan(TIMEOUT_MS + 1000);
  });

  it('counts every question by result, and logs failures without the URL, the secret, a token, the claims or a reason', async () => {
    expect(await proxyCount('allowed')).toBeGreaterThanOrEqual(3);
    expect(await proxyCount('denied')).toBeGreaterThanOrEqual(3);
    expect(await proxyCount('error')).toBeGreaterThanOrEqual(5);
    expect(await proxyCount('timeout')).toBeGreaterThanOrEqual(3);
    const lines = logLines();
    const failures = lines.filter((line) => line.includes('"event":"subscribe_proxy_failed"'));
    expect(failures.length).toBeGreaterThanOrEqual(1);
    expect(failures[0]).toMatch(/"level":("warn"|40)/);
    const all = lines.join('\n');
    for (const secret of [SECRET, `127.0.0.1:${backend.port}`, NURSE.email, 'Ward closed', 'icu-*', ...tokens]) {
      expect([secret.slice(0, 24), all.includes(secret)]).toEqual([secret.slice(0, 24), false]);
    }
  });

  it('refuses with proxy_unavailable while the backend is down (a closed port), on /ws and on the path endpoint', async () => {
    await backend.stop();
    const client = await ws(0);
    const channel = `ward:${fresh('open')}`;
    client.send({ type: 'subscribe', channel });
    expect((await errorFor(client, channel)).payload.code).toBe('proxy_unavailable');
    const refused = await refusal(d.ws(1, `/ws/chat/${fresh('open')}`), bearer({ sub: 'carol', role: 'user' }));
    expect([refused.status, refused.body.error, refused.headers['retry-after']]).toEqual([503, 'proxy_unavailable', '2']);
    expect(client.ws.readyState).toBe(client.ws.OPEN);
  });
});
