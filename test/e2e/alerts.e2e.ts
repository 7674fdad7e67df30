import { connect, refusal, type TestClient } from '../support/clients';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { token } from '../support/tokens';

const service = () => token({ sub: 'svc', role: 'service' });

function post(gw: TestGateway, body: unknown, bearer: string | null = service(), headers: Record<string, string> = {}) {
  return fetch(gw.internal('/api/alerts'), {
    method: 'POST',
    headers: { ...(bearer ? { authorization: `Bearer ${bearer}` } : {}), 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function publish(gw: TestGateway, data: object, extra: object = {}): Promise<string> {
  const res = await post(gw, { data, ...extra });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

const subscribe = (gw: TestGateway, query = '', claims: object = {}) =>
  connect(gw.ws(`/api/alerts/subscribe?token=${token({ role: 'authority', ...claims })}${query}`));

async function alerts(client: TestClient, n: number) {
  const out: { id: string; data: { n: number } }[] = [];
  for (let i = 0; i < n; i++) out.push(await client.ofType('alert'));
  return out;
}

describe('POST /api/alerts', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(() => gw.close());

  it('answers 202 with the alert id and delivers the SPEC frame to subscribers', async () => {
    const client = await subscribe(gw);
    const before = Date.now();
    const res = await post(gw, { data: { level: 'red', text: 'flood warning' } });
    expect(res.status).toBe(202);
    const { id, ts } = (await res.json()) as { id: string; ts: number };
    expect(id).toMatch(/^\d+-\d+$/);
    const frame = await client.ofType('alert');
    expect(frame).toEqual({ type: 'alert', id, data: { level: 'red', text: 'flood warning' }, ts });
    expect(ts).toBeGreaterThanOrEqual(before);
    await client.close();
  });

  it('gives increasing ids', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await publish(gw, { i }));
    const key = (id: string) => id.split('-').map(Number);
    for (let i = 1; i < ids.length; i++) {
      const [a, b] = [key(ids[i - 1]), key(ids[i])];
      expect(b[0] > a[0] || (b[0] === a[0] && b[1] > a[1])).toBe(true);
    }
  });

  it.each([
    ['no token', null, 401, 'token_missing'],
    ['an expired token', token({ role: 'service' }, { ttl: -5 }), 401, 'token_expired'],
    ['a subscriber role', token({ role: 'authority' }), 403, 'forbidden_role'],
  ])('refuses %s', async (_what, bearer, status, error) => {
    const res = await post(gw, { data: {} }, bearer);
    expect(res.status).toBe(status);
    expect(await res.json()).toMatchObject({ error });
    if (status === 401) expect(res.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
  });

  it('accepts admin as publisher', async () => {
    expect((await post(gw, { data: { by: 'admin' } }, token({ role: 'admin' }))).status).toBe(202);
  });

  it.each([
    ['invalid JSON', '{"data":', /not valid JSON/],
    ['no data', { roles: ['authority'] }, /data/],
    ['data that is not an object', { data: [1, 2] }, /"data" must be a JSON object/],
    ['an unknown field', { data: {}, role: 'x' }, /role/],
    ['empty roles', { data: {}, roles: [] }, /roles/],
  ])('answers 400 bad_request for %s', async (_what, body, message) => {
    const res = await post(gw, body);
    expect(res.status).toBe(400);
    const json = (await res.json()) as { error: string; message: string };
    expect(json.error).toBe('bad_request');
    expect(json.message).toMatch(message);
  });

  it('answers 413 for a body over MAX_PUBLISH_BYTES and 415 for a body that is not JSON, and takes ?token= too', async () => {
    const big = await post(gw, { data: { blob: 'x'.repeat(65 * 1024) } });
    expect([big.status, await big.json()]).toEqual([413, { error: 'too_large', message: expect.stringContaining('MAX_PUBLISH_BYTES') }]);
    const form = await fetch(gw.internal('/api/alerts'), {
      method: 'POST',
      headers: { authorization: `Bearer ${service()}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'data=1',
    });
    expect([form.status, await form.json()]).toMatchObject([415, { error: 'unsupported_media_type' }]);
    const query = await fetch(gw.internal(`/api/alerts?token=${service()}`), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ data: { via: 'query' } }),
    });
    expect(query.status).toBe(202);
    // Another method on the path: 405 naming the one it answers; an unknown path under /api/: 404.
    const get = await fetch(gw.internal('/api/alerts'));
    expect([get.status, get.headers.get('allow'), ((await get.json()) as { error: string }).error]).toEqual([405, 'POST', 'method_not_allowed']);
    const unknown = await fetch(gw.internal('/api/alertz'), { method: 'POST' });
    expect([unknown.status, ((await unknown.json()) as { error: string }).error]).toEqual([404, 'unknown_path']);
  });

  it('delivers targeted alerts only to the listed roles or users', async () => {
    const authority = await subscribe(gw, '', { sub: 'a1', role: 'authority' });
    const admin = await subscribe(gw, '', { sub: 'boss', role: 'admin' });
    await publish(gw, { n: 1 }, { roles: ['admin'] });
    await publish(gw, { n: 2 }, { users: ['a1'] });
    await publish(gw, { n: 3 });
    expect((await alerts(admin, 2)).map((a) => a.data.n)).toEqual([1, 3]);
    expect((await alerts(authority, 2)).map((a) => a.data.n)).toEqual([2, 3]);
    await Promise.all([authority.close(), admin.close()]);
  });

  it("sends an alert for users only to those users' personal channels, not through alerts", async () => {
    const carol = await subscribe(gw, '', { sub: 'carol' });
    const dave = await subscribe(gw, '', { sub: 'dave' });
    const other = await subscribe(gw, '', { sub: 'erin' });
    const welcome = await other.ofType('welcome');
    const res = await post(gw, { data: { n: 'personal' }, users: ['carol', 'dave'] });
    expect(res.status).toBe(202);
    const body = (await res.json()) as { id: string; ids: Record<string, string> };
    expect(body).toMatchObject({ id: body.ids.carol, ids: { carol: expect.any(String), dave: expect.any(String) } });
    expect(await carol.ofType('alert')).toMatchObject({ channel: 'user:carol', id: body.ids.carol, data: { n: 'personal' } });
    expect(await dave.ofType('alert')).toMatchObject({ channel: 'user:dave', id: body.ids.dave, data: { n: 'personal' } });
    // Not on alerts: a subscriber resuming alerts from before it gets nothing replayed.
    const resumed = await subscribe(gw, `&since=${welcome.id}&epoch=${welcome.epoch}`, { sub: 'erin' });
    expect(await resumed.ofType('resumed')).toEqual({ type: 'resumed', recovered: true });
    expect(resumed.frames.filter((f) => (f as { type?: string }).type === 'alert')).toEqual([]);
    // A retry with the same Idempotency-Key publishes nothing new and answers the same ids.
    const first = await post(gw, { data: { n: 'once' }, users: ['carol'] }, service(), { 'idempotency-key': 'k-personal' });
    const again = await post(gw, { data: { n: 'once' }, users: ['carol'] }, service(), { 'idempotency-key': 'k-personal' });
    expect(((await again.json()) as { id: string }).id).toBe(((await first.json()) as { id: string }).id);
    await Promise.all([carol, dave, other, resumed].map((c) => c.close()));
  });
});

describe('resume with ?since=', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ ALERT_HISTORY_SIZE: '5' });
  });
  afterAll(() => gw.close());

  it('replays what was missed in order, says resumed, then continues live without a gap or a duplicate', async () => {
    const ids: string[] = [];
    for (let n = 1; n <= 4; n++) ids.push(await publish(gw, { n }));
    const client = await subscribe(gw, `&since=${ids[1]}`);
    // Publishing while the client connects must neither be lost nor delivered twice.
    const live = [publish(gw, { n: 5 }), publish(gw, { n: 6 })];
    await Promise.all(live);
    await publish(gw, { n: 7 });
    const sequence: string[] = [];
    expect(await client.next()).toEqual({ type: 'welcome', epoch: expect.any(String), id: ids[1], user_epoch: expect.any(String), user_id: '0-0' });
    for (;;) {
      const frame = await client.next<{ type: string; data?: { n: number }; recovered?: boolean }>();
      sequence.push(frame.type === 'alert' ? String(frame.data!.n) : `${frame.type}:${frame.recovered}`);
      if (frame.data?.n === 7) break;
    }
    // The replay (3, 4), `resumed`, then live; 5 and 6 raced the connect and may land on either side of
    // `resumed`, but every alert arrives exactly once and in order.
    expect(sequence.filter((s) => !s.startsWith('resumed'))).toEqual(['3', '4', '5', '6', '7']);
    expect(sequence.indexOf('resumed:true')).toBeGreaterThanOrEqual(2);
    await client.close();
    expect(client.frames).toEqual([]);
  });

  it('sends resumed before any live alert', async () => {
    const last = await publish(gw, { n: 100 });
    const client = await subscribe(gw, `&since=${last}`);
    await publish(gw, { n: 101 });
    expect(await client.next()).toMatchObject({ type: 'welcome' });
    expect(await client.next()).toEqual({ type: 'resumed', recovered: true });
    expect(await client.ofType('alert')).toMatchObject({ data: { n: 101 } });
    await client.close();
  });

  it('says recovered:false when the id is older than the history', async () => {
    const first = await publish(gw, { n: 200 });
    for (let n = 201; n <= 210; n++) await publish(gw, { n });
    const client = await subscribe(gw, `&since=${first}`);
    const got = await alerts(client, 5);
    expect(got.map((a) => a.data.n)).toEqual([206, 207, 208, 209, 210]);
    expect(await client.ofType('resumed')).toEqual({ type: 'resumed', recovered: false });
    await client.close();
  });

  it('says recovered:true for a resume from the position a welcome named on an empty channel', async () => {
    const first = await subscribe(gw, '', { sub: 'newcomer', role: 'authority' });
    const welcome = await first.ofType<{ user_epoch: string; user_id: string }>('welcome');
    expect(welcome.user_id).toBe('0-0');
    await first.close();
    const again = await subscribe(gw, `&user_since=${welcome.user_id}&user_epoch=${welcome.user_epoch}`, { sub: 'newcomer', role: 'authority' });
    expect(await again.ofType('resumed')).toEqual({ type: 'resumed', recovered: true });
    await again.close();
  });

  it('says recovered:false for an id from before this process started', async () => {
    const client = await subscribe(gw, '&since=1000-0');
    expect(await client.ofType('resumed')).toEqual({ type: 'resumed', recovered: false });
    await client.close();
  });

  it('refuses a since that is not an alert id with 400 bad_request', async () => {
    const r = await refusal(gw.ws(`/api/alerts/subscribe?token=${token()}&since=yesterday`));
    expect([r.status, r.body.error]).toEqual([400, 'bad_request']);
  });
});
