import { connect, refusal } from '../support/clients';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { promtool } from '../support/promtool';
import { token, unsignedToken } from '../support/tokens';

describe('health, readiness, metrics and logs', () => {
  let gw: TestGateway;
  const secrets: string[] = [];
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(() => gw.close());

  it('answers /healthz and /readyz with 200', async () => {
    expect((await fetch(gw.http('/healthz'))).status).toBe(200);
    const ready = await fetch(gw.http('/readyz'));
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', mode: 'embedded' });
  });

  it('observes ws_delivery_seconds only for alerts that reached a socket', async () => {
    const publisher = token({ role: 'service' });
    const subscriber = token({ sub: 'delivery-user', role: 'authority' });
    secrets.push(publisher, subscriber);
    const post = (n: number) =>
      fetch(gw.internal('/api/alerts'), {
        method: 'POST',
        headers: { authorization: `Bearer ${publisher}`, 'content-type': 'application/json' },
        body: JSON.stringify({ data: { n } }),
      });
    expect((await post(1)).status).toBe(202); // nobody subscribed: not a delivery
    const client = await connect(gw.ws(`/api/alerts/subscribe?token=${subscriber}`));
    expect((await post(2)).status).toBe(202);
    expect((await client.ofType('alert')).data).toEqual({ n: 2 });
    expect(await gw.metric('ws_delivery_seconds_count')).toBe(1);
    await client.close();
    await eventually(async () => (await gw.metric('ws_connections_active', { gateway: 'alerts' })) === 0);
  });

  it('exposes every SPEC metric of the core with bounded labels', async () => {
    const good = token({ sub: 'metrics-user', role: 'authority' });
    secrets.push(good);
    const client = await connect(gw.ws(`/api/alerts/subscribe?token=${good}`));
    client.send({ type: 'ping' });
    await client.ofType('pong');
    const publisher = token({ role: 'service' });
    secrets.push(publisher);
    await fetch(gw.internal('/api/alerts'), {
      method: 'POST',
      headers: { authorization: `Bearer ${publisher}`, 'content-type': 'application/json' },
      body: '{"data":{"x":1}}',
    });
    await client.ofType('alert');
    const text = await gw.metrics();
    expect((await fetch(gw.internal('/metrics'))).headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    for (const name of [
      'ws_connections_active',
      'ws_connections_total',
      'ws_upgrades_rejected_total',
      'ws_closes_total',
      'ws_messages_received_total',
      'ws_messages_sent_total',
      'ws_frame_errors_total',
      'ws_bus_published_total',
      'ws_bus_received_total',
      'ws_bus_invalid_total',
      'ws_delivery_seconds',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_seconds',
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
    expect(await gw.metric('ws_connections_active', { gateway: 'alerts' })).toBe(1);
    expect(await gw.metric('ws_messages_received_total', { gateway: 'alerts' })).toBeGreaterThanOrEqual(1);
    expect(await gw.metric('ws_messages_sent_total', { gateway: 'alerts' })).toBeGreaterThanOrEqual(2);
    expect(await gw.metric('ws_bus_published_total', { channel: 'alerts' })).toBeGreaterThanOrEqual(1);
    expect(await gw.metric('ws_delivery_seconds_count')).toBeGreaterThanOrEqual(1);
    const closedBefore = await gw.metric('ws_closes_total', { gateway: 'alerts', code: '1000' });
    await client.close();
    await eventually(async () => (await gw.metric('ws_closes_total', { gateway: 'alerts', code: '1000' })) === (closedBefore ?? 0) + 1);
    // Each ws_* series carries exactly the SPEC's label set (histogram buckets add `le`).
    const specLabels: Record<string, string[]> = {
      ws_connections_active: ['gateway'],
      ws_connections_total: ['gateway'],
      ws_upgrades_rejected_total: ['error', 'gateway', 'status'],
      ws_closes_total: ['code', 'gateway'],
      ws_messages_received_total: ['gateway'],
      ws_messages_sent_total: ['gateway'],
      ws_frame_errors_total: ['error', 'gateway'],
      ws_bus_published_total: ['channel'],
      ws_bus_received_total: ['channel'],
      ws_bus_invalid_total: ['channel'],
      ws_subscriptions_active: ['channel'],
      ws_proxy_requests_total: ['result'],
      ws_push_sent_total: ['result'],
      ws_delivery_seconds_bucket: ['le'],
    };
    for (const line of text.split('\n').filter((l) => l.startsWith('ws_'))) {
      const name = line.slice(0, line.search(/[{ ]/));
      const labels = [...line.matchAll(/(\w+)="/g)].map((m) => m[1]).sort();
      expect([name, labels]).toEqual([name, specLabels[name] ?? []]);
    }
    for (const line of text.split('\n').filter((l) => /^ws_\w+\{/.test(l))) {
      expect(line).toMatch(/gateway="(alerts|signaling|chat|ws|sse|unknown)"|channel="\w+"|le="|^ws_push_sent_total\{result="(sent|retried|removed|failed|dropped)"\}/);
    }
  });

  it('serves an exposition that passes promtool check metrics', async () => {
    const { status, output } = promtool(['check', 'metrics'], await gw.metrics());
    expect([status, output.trim()]).toEqual([0, '']);
  });

  it('logs one JSON line per connect and per close (at debug), and never a token', async () => {
    const expired = token({ sub: 'late' }, { ttl: -10 });
    const none = unsignedToken();
    secrets.push(expired, none);
    await refusal(gw.ws(`/api/alerts/subscribe?token=${expired}`));
    await refusal(gw.ws('/api/alerts/subscribe'), { headers: { Authorization: `Bearer ${none}` } });
    await refusal(gw.ws('/api/api/alerts/subscribe'), { protocols: ['bearer', expired] });
    const connectLine = gw.logs.find((l) => l.event === 'connect' && l.sub === 'metrics-user');
    expect(connectLine).toMatchObject({ gateway: 'alerts', role: 'authority', conn: expect.any(String) });
    const closeLine = gw.logs.find((l) => l.event === 'close' && l.sub === 'metrics-user');
    expect(closeLine).toMatchObject({ gateway: 'alerts', code: 1000, conn: connectLine!.conn });
    const refusals = gw.logs.filter((l) => l.event === 'upgrade_refused');
    expect(refusals.map((l) => [l.status, l.error])).toEqual(expect.arrayContaining([[401, 'token_expired'], [401, 'token_invalid'], [404, 'unknown_path']]));
    const all = gw.rawLogs.join('\n');
    for (const secret of secrets) {
      expect(all).not.toContain(secret);
      expect(all).not.toContain(secret.split('.')[2] || secret.split('.')[1]);
    }
  });
});

describe('connection logs at the default level', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ LOG_LEVEL: 'info', CONNECTION_LOG_INTERVAL_MS: '300' });
  });
  afterAll(() => gw.close());

  it('writes one summary line per interval with the opens and the closes by code, and no line per connection', async () => {
    const clients = await Promise.all(['log-a', 'log-b', 'log-c'].map((sub) => connect(gw.ws(`/api/alerts/subscribe?token=${token({ sub, role: 'authority' })}`))));
    await clients[0].close(1000);
    await clients[1].close(4000);
    await eventually(async () => (await gw.metric('ws_connections_active', { gateway: 'alerts' })) === 1);
    const summaries = () => gw.logs.filter((l) => l.event === 'connections');
    await eventually(() => summaries().reduce((n, l) => n + (l.closed as number), 0) === 2, 5000, 'the summary lines of 3 opens and 2 closes');
    const lines = summaries();
    expect(lines.every((l) => l.level === 30)).toBe(true); // info
    expect(lines.reduce((n, l) => n + (l.opened as number), 0)).toBe(3);
    const byCode: Record<string, number> = {};
    for (const line of lines) for (const [code, n] of Object.entries(line.closes as Record<string, number>)) byCode[code] = (byCode[code] ?? 0) + n;
    expect(byCode).toEqual({ '1000': 1, '4000': 1 });
    expect(lines.at(-1)).toMatchObject({ open: 1, intervalMs: 300, msg: expect.stringMatching(/^connections: \+\d+ opened, -\d+ closed in the last 0\.3 s$/) });
    // The per-connection lines are at debug: none at info, and the metrics still count every close.
    expect(gw.logs.filter((l) => l.event === 'connect' || l.event === 'close')).toEqual([]);
    expect(await gw.metric('ws_closes_total', { gateway: 'alerts', code: '4000' })).toBe(1);
    await clients[2].close();
  });
});
