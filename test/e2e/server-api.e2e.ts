import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import { Replica } from '../support/cluster';
import { connect, refusal, type TestClient } from '../support/clients';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { rawExchange } from '../support/raw-http';
import { ROOT, spawnGateway } from '../support/process';
import { RedisProcess } from '../support/redis';
import { TcpProxy } from '../support/tcp-proxy';
import { TEST_SECRET, token } from '../support/tokens';

// The server API (SPEC "Server API") on the internal port, in embedded mode and across two real replicas, and
// the split of the two ports.

const service = () => token({ sub: 'svc', role: 'service' });
const admin = () => token({ sub: 'ops', role: 'admin' });

interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, any>;
}

async function call(base: (path: string) => string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}, jwt = service()): Promise<Answer> {
  const res = await fetch(base(path), {
    method,
    headers: { authorization: `Bearer ${jwt}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, any> };
}

/** Retries an upgrade that a ban refuses until the ban ends (a few seconds here); the admitted client. */
async function admittedOnceTheBanEnds(url: string): Promise<TestClient> {
  let back: TestClient | undefined;
  await eventually(async () => {
    back = await connect(url).catch(() => undefined);
    return back !== undefined;
  }, 5000, 'the ban to end');
  return back!;
}

describe('server API, embedded mode', () => {
  let gw: TestGateway;
  const api = (path: string) => gw.internal(path);
  beforeAll(async () => {
    gw = await startTestGateway({ MAX_PUBLISH_BYTES: '4096' });
  });
  afterAll(() => gw.close());

  it('keeps the public port to WebSocket endpoints and health: everything else is a JSON 404 there', async () => {
    for (const [method, path] of [['GET', '/metrics'], ['POST', '/api/alerts'], ['POST', '/api/publish'], ['GET', '/api/nodes'], ['GET', '/api/openapi.json'], ['GET', '/admin'], ['GET', '/demo']]) {
      const res = await fetch(gw.http(path), { method, headers: { authorization: `Bearer ${admin()}` } });
      expect([method, path, res.status, ((await res.json()) as { error: string }).error]).toEqual([method, path, 404, 'unknown_path']);
    }
    for (const path of ['/healthz', '/readyz']) {
      expect([path, (await fetch(gw.http(path))).status, (await fetch(gw.internal(path))).status]).toEqual([path, 200, 200]);
    }
    expect((await fetch(gw.internal('/metrics'))).status).toBe(200);
    expect((await fetch(gw.internal('/demo'))).status).toBe(200);
    // The internal port's index points to what is there; the public one has no index.
    expect(await (await fetch(gw.internal('/'))).json()).toMatchObject({ admin: '/admin', demo: '/demo', metrics: '/metrics', openapi: '/api/openapi.json' });
    expect((await fetch(gw.http('/'))).status).toBe(404);
    // No WebSocket on the internal port: a JSON 404 that says where they are.
    const internalUpgrade = await refusal(`ws://127.0.0.1:${gw.internalPort}/api/alerts/subscribe?token=${token({ role: 'authority' })}`);
    expect([internalUpgrade.status, internalUpgrade.body.error]).toEqual([404, 'unknown_path']);
    expect(internalUpgrade.body.message).toMatch(/public port/);
  });

  it('publishes on every kind of channel, each arriving in its own frame', async () => {
    const chat = await connect(gw.ws(`/ws/chat/lobby?token=${token({ sub: 'reader', role: 'patient' })}`));
    const doctor = await connect(gw.ws(`/ws/signaling/c-7/doctor?token=${token({ sub: 'dr', role: 'doctor', channels: ['signaling:c-7'] })}`));
    const alerts = await connect(gw.ws(`/api/alerts/subscribe?token=${token({ sub: 'u-1', role: 'authority' })}`));
    await chat.ofType('welcome');
    await alerts.ofType('welcome');
    try {
      const toRoom = await call(api, 'POST', '/api/publish', { channel: 'chat:lobby', data: { text: 'rounds at 10' } });
      expect(toRoom).toMatchObject({ status: 202, body: { id: expect.stringMatching(/^\d+-\d+$/), ts: expect.any(Number) } });
      expect(await chat.ofType('publication')).toEqual({ type: 'publication', channel: 'chat:lobby', id: toRoom.body.id, data: { text: 'rounds at 10' }, ts: toRoom.body.ts });

      const toConsultation = await call(api, 'POST', '/api/publish', { channel: 'signaling:c-7', data: { notice: 'patient waiting' } });
      expect(toConsultation.status).toBe(202);
      expect(toConsultation.body.id).toBeUndefined(); // signaling keeps no history
      expect(await doctor.ofType('publication')).toMatchObject({ channel: 'signaling:c-7', data: { notice: 'patient waiting' } });

      const toUser = await call(api, 'POST', '/api/publish', { channel: 'user:u-1', data: { for: 'you' } });
      expect(toUser.status).toBe(202);
      expect(await alerts.ofType('alert')).toMatchObject({ id: toUser.body.id, data: { for: 'you' } });
      const toAll = await call(api, 'POST', '/api/publish', { channel: 'alerts', data: { for: 'all' } }, {}, admin());
      expect(await alerts.ofType('alert')).toMatchObject({ id: toAll.body.id, data: { for: 'all' } });
    } finally {
      await Promise.all([chat.close(), doctor.close(), alerts.close()]);
    }
  });

  it('answers bad requests with the documented error and nothing else, never a 500', async () => {
    const cases: [string, Answer, number, string][] = [
      ['unknown channel kind', await call(api, 'POST', '/api/publish', { channel: 'room:x', data: {} }), 400, 'unknown_channel'],
      ['room name too long', await call(api, 'POST', '/api/publish', { channel: `chat:${'r'.repeat(65)}`, data: {} }), 400, 'unknown_channel'],
      ['data not an object', await call(api, 'POST', '/api/publish', { channel: 'alerts', data: [1] }), 400, 'bad_request'],
      ['an extra field', await call(api, 'POST', '/api/publish', { channel: 'alerts', data: {}, extra: 1 }), 400, 'bad_request'],
      ['not JSON', await call(api, 'POST', '/api/publish', '{"channel":'), 400, 'bad_request'],
      ['no token', await call(api, 'POST', '/api/publish', { channel: 'alerts', data: {} }, { authorization: '' }), 401, 'token_missing'],
      ['no Authorization at all', await fetch(api('/api/nodes')).then(async (r) => ({ status: r.status, headers: r.headers, body: (await r.json()) as Record<string, any> })), 401, 'token_missing'],
      ['a client role', await call(api, 'POST', '/api/disconnect', { user: 'u' }, {}, token({ role: 'authority' })), 403, 'forbidden_role'],
      ['form encoded', await call(api, 'POST', '/api/publish', 'channel=alerts', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'unsupported_media_type'],
      ['over MAX_PUBLISH_BYTES', await call(api, 'POST', '/api/publish', { channel: 'alerts', data: { x: 'x'.repeat(5000) } }), 413, 'too_large'],
      ['ban too long', await call(api, 'POST', '/api/disconnect', { user: 'u', ban_seconds: 31 * 86_400 }), 400, 'bad_request'],
      ['reason too long', await call(api, 'POST', '/api/disconnect', { user: 'u', reason: 'é'.repeat(60) }), 400, 'bad_request'],
      ['presence of alerts', await call(api, 'GET', '/api/channels/alerts/presence'), 400, 'bad_request'],
      ['history of signaling', await call(api, 'GET', '/api/channels/signaling:c-1/history'), 400, 'bad_request'],
      ['history since not an id', await call(api, 'GET', '/api/channels/chat:lobby/history?since=yesterday'), 400, 'bad_request'],
      ['history limit 0', await call(api, 'GET', '/api/channels/chat:lobby/history?limit=0'), 400, 'bad_request'],
      ['history unknown parameter', await call(api, 'GET', '/api/channels/chat:lobby/history?from=1'), 400, 'bad_request'],
      ['a bad percent-encoding', await call(api, 'GET', '/api/channels/%E0%A4%A/history'), 400, 'bad_request'],
      ['a room named ..', await call(api, 'POST', '/api/publish', { channel: 'chat:..', data: {} }), 400, 'unknown_channel'],
      ['an empty channel', await call(api, 'POST', '/api/publish', { channel: '', data: {} }), 400, 'unknown_channel'],
      ['a lone surrogate', await call(api, 'POST', '/api/publish', { channel: 'user:\ud800', data: {} }), 400, 'bad_request'],
      ['a control character in users', await call(api, 'POST', '/api/alerts', { data: {}, users: ['a\u0000b'] }), 400, 'bad_request'],
      ['limit in hex', await call(api, 'GET', '/api/channels/chat:lobby/history?limit=0x10'), 400, 'bad_request'],
      ['limit given twice', await call(api, 'GET', '/api/channels/chat:lobby/history?limit=5000&limit=1'), 400, 'bad_request'],
      ['__proto__ as a parameter', await call(api, 'GET', '/api/channels/chat:lobby/history?__proto__=1'), 400, 'bad_request'],
      ['epoch without since', await call(api, 'GET', '/api/channels/chat:lobby/history?epoch=abc'), 400, 'bad_request'],
      ['JSON in UTF-16', await call(api, 'POST', '/api/publish', { channel: 'alerts', data: {} }, { 'content-type': 'application/json; charset=utf-16' }), 415, 'unsupported_media_type'],
      ['a json-seq body', await call(api, 'POST', '/api/publish', { channel: 'alerts', data: {} }, { 'content-type': 'application/json-seq' }), 415, 'unsupported_media_type'],
      ['a gzip body', await call(api, 'POST', '/api/publish', { channel: 'alerts', data: {} }, { 'content-encoding': 'gzip' }), 415, 'unsupported_media_type'],
      ['unknown path', await call(api, 'GET', '/api/nodez'), 404, 'unknown_path'],
      ['wrong method', await call(api, 'DELETE', '/api/nodes'), 405, 'method_not_allowed'],
    ];
    for (const [what, answer, status, error] of cases) {
      expect([what, answer.status, answer.body.error]).toEqual([what, status, error]);
      expect([what, Object.keys(answer.body).sort()]).toEqual([what, ['error', 'message']]);
    }
    expect(cases.find(([, answer]) => answer.status === 405)![1].headers.get('allow')).toBe('GET, HEAD');
    // No token: the message says how an HTTP caller sends one (no WebSocket subprotocols here).
    expect(cases.find(([what]) => what === 'no token')![1].body.message).toMatch(/Authorization/);
    expect(cases.find(([what]) => what === 'no Authorization at all')![1].body.message).toMatch(/Authorization: Bearer <jwt>/);
    expect(cases.find(([what]) => what === 'no Authorization at all')![1].body.message).not.toMatch(/subprotocol/);
    expect(gw.logs.filter((l) => l.level === 50)).toEqual([]); // nothing logged as an error
  });

  it('answers malformed HTTP on the internal port in JSON without counting it as a refused WebSocket upgrade', async () => {
    const counted = async () => (await gw.metric('ws_upgrades_rejected_total', { gateway: 'unknown', status: '400', error: 'bad_request' })) ?? 0;
    const before = await counted();
    const answer = await rawExchange(gw.internalPort, 'GET /api/nodes HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n');
    expect([answer.status, JSON.parse(answer.body).error]).toEqual([400, 'bad_request']);
    expect(await counted()).toBe(before);
    expect(gw.logs.filter((l) => l.event === 'upgrade_refused' && l.gateway === 'unknown')).toEqual([]);
  });

  it('returns the first answer for a retried publish with the same Idempotency-Key, and publishes once', async () => {
    const chat = await connect(gw.ws(`/ws/chat/idem?token=${token({ sub: 'r2', role: 'patient' })}`));
    await chat.ofType('welcome');
    try {
      const first = await call(api, 'POST', '/api/publish', { channel: 'chat:idem', data: { n: 1 } }, { 'idempotency-key': 'order-17' });
      const retry = await call(api, 'POST', '/api/publish', { channel: 'chat:idem', data: { n: 1 } }, { 'idempotency-key': 'order-17' });
      expect(retry.body).toEqual(first.body);
      const after = await call(api, 'POST', '/api/publish', { channel: 'chat:idem', data: { n: 2 } });
      expect((await chat.ofType('publication')).id).toBe(first.body.id);
      expect((await chat.ofType('publication')).id).toBe(after.body.id); // the retry delivered nothing
      // A key is per channel (as in cluster mode): the same key on another channel publishes there.
      const elsewhere = await call(api, 'POST', '/api/alerts', { data: { level: 'critical' } }, { 'idempotency-key': 'order-17' });
      expect(elsewhere.status).toBe(202);
      expect(elsewhere.body.id).not.toBe(first.body.id);
      const history = await call(api, 'GET', '/api/channels/alerts/history?limit=1000');
      expect(history.body.messages.map((m: { id: string }) => m.id)).toContain(elsewhere.body.id);
    } finally {
      await chat.close();
    }
  });

  it('reads a channel\'s history page by page, and says recovered:false for another epoch', async () => {
    const ids: string[] = [];
    for (let n = 1; n <= 5; n++) ids.push((await call(api, 'POST', '/api/publish', { channel: 'chat:ward-3', data: { n } })).body.id);
    const all = await call(api, 'GET', '/api/channels/chat:ward-3/history');
    expect(all.status).toBe(200);
    expect(all.body.messages.map((m: { id: string }) => m.id)).toEqual(ids);
    expect(all.body.messages[0]).toEqual({ id: ids[0], ts: expect.any(Number), data: { n: 1 } });
    expect(all.body.recovered).toBe(true);
    const page = await call(api, 'GET', `/api/channels/chat:ward-3/history?since=${ids[1]}&limit=2&epoch=${all.body.epoch}`);
    expect([page.body.messages.map((m: { id: string }) => m.id), page.body.recovered]).toEqual([[ids[2], ids[3]], true]);
    const other = await call(api, 'GET', `/api/channels/chat:ward-3/history?since=${ids[1]}&epoch=not-this-one`);
    expect(other.body.recovered).toBe(false);
  });

  it('lists the members of a room and of a consultation', async () => {
    const a = await connect(gw.ws(`/ws/chat/presence-room?token=${token({ sub: 'ann', role: 'patient' })}`));
    const b = await connect(gw.ws(`/ws/chat/presence-room?token=${token({ sub: 'bob', role: 'doctor' })}`));
    const dr = await connect(gw.ws(`/ws/signaling/c-42/doctor?token=${token({ sub: 'dr-who', role: 'doctor', channels: ['signaling:c-42'] })}`));
    try {
      await eventually(async () => (await call(api, 'GET', '/api/channels/chat:presence-room/presence')).body.members?.length === 2, 5000, 'both members');
      const room = await call(api, 'GET', '/api/channels/chat:presence-room/presence');
      expect(room.body).toEqual({ members: [{ user: 'ann', node: gw.config.nodeId, connections: 1 }, { user: 'bob', node: gw.config.nodeId, connections: 1 }] });
      await eventually(async () => (await call(api, 'GET', '/api/channels/signaling:c-42/presence')).body.members?.length === 1, 5000, 'the doctor');
      expect((await call(api, 'GET', '/api/channels/signaling:c-42/presence')).body.members).toEqual([{ user: 'doctor', node: gw.config.nodeId, connections: 1 }]);
    } finally {
      await Promise.all([a.close(), b.close(), dr.close()]);
    }
  });

  it('describes the node: version, uptime and connections per gateway', async () => {
    const alerts = await connect(gw.ws(`/api/alerts/subscribe?token=${token({ sub: 'n1', role: 'authority' })}`));
    try {
      const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
      const nodes = await call(api, 'GET', '/api/nodes');
      expect(nodes).toMatchObject({
        status: 200,
        body: { nodes: [{ id: gw.config.nodeId, version, uptime_s: expect.any(Number), connections: { alerts: 1, chat: 0, signaling: 0 }, channels: expect.arrayContaining([{ channel: 'alerts', members: 1 }]) }] },
      });
    } finally {
      await alerts.close();
    }
  });

  it('disconnects every connection of a user with 4003, and a ban refuses them with 403 until it ends', async () => {
    const url = (path: string, sub: string) => gw.ws(`${path}?token=${token({ sub, role: 'authority' })}`);
    const mine = [await connect(url('/api/alerts/subscribe', 'mallory')), await connect(url('/ws/chat/lobby', 'mallory'))];
    const bystander = await connect(url('/api/alerts/subscribe', 'alice'));
    await bystander.ofType('welcome');
    const banned = await call(api, 'POST', '/api/disconnect', { user: 'mallory', reason: 'account suspended', ban_seconds: 2 });
    expect(banned).toMatchObject({ status: 202, body: { user: 'mallory', banned_until: expect.any(Number) } });
    for (const client of mine) expect(await client.closed).toEqual({ code: 4003, reason: 'disconnected: account suspended' });
    const refused = await refusal(url('/ws/chat/lobby', 'mallory'));
    expect([refused.status, refused.body.error, Number(refused.headers['retry-after'])]).toEqual([403, 'banned', expect.any(Number)]);
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(2);
    // Alice saw none of it.
    bystander.send({ type: 'ping' });
    expect(await bystander.ofType('pong')).toMatchObject({ type: 'pong' });
    expect(await gw.metric('ws_closes_total', { gateway: 'chat', code: '4003' })).toBe(1);
    // The ban ends on its own.
    await Promise.all([(await admittedOnceTheBanEnds(url('/ws/chat/lobby', 'mallory'))).close(), bystander.close()]);
    // Without a ban: closed, and free to come back at once.
    const again = await connect(url('/ws/chat/lobby', 'mallory'));
    expect((await call(api, 'POST', '/api/disconnect', { user: 'mallory' })).body).toEqual({ user: 'mallory' });
    expect(await again.closed).toEqual({ code: 4003, reason: 'disconnected' });
    await (await connect(url('/ws/chat/lobby', 'mallory'))).close();
  });

  describe('the OpenAPI document', () => {
    let doc: { paths: Record<string, Record<string, any>> };
    beforeAll(async () => {
      const res = await fetch(gw.internal('/api/openapi.json'));
      expect(res.status).toBe(200);
      doc = (await res.json()) as typeof doc;
    });

    it('is valid OpenAPI 3.1 (checked by @seriousme/openapi-schema-validator)', () => {
      const file = join(mkdtempSync(join(tmpdir(), 'rg-openapi-')), 'openapi.json');
      writeFileSync(file, JSON.stringify(doc));
      const cli = join(ROOT, 'node_modules', '@seriousme', 'openapi-schema-validator', 'bin', 'validate-api-cli.js');
      const result = JSON.parse(execFileSync(process.execPath, [cli, file]).toString()) as { valid: boolean; errors?: unknown };
      expect(result).toEqual({ valid: true });
    });

    it('lists every route that answers, and every route it lists answers as documented', async () => {
      const listed = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`));
      expect(listed.sort()).toEqual(
        [
          'GET /api/alerts/{id}/receipts',
          'GET /api/channels/{channel}/history',
          'GET /api/channels/{channel}/presence',
          'GET /api/nodes',
          'GET /api/openapi.json',
          'GET /api/webhooks',
          'POST /api/alerts',
          'POST /api/disconnect',
          'POST /api/publish',
          'POST /api/revoke',
        ].sort(),
      );
      // Without a token each guarded route answers 401 (documented), never 404: it exists as listed.
      for (const entry of listed) {
        const [method, template] = entry.split(' ');
        const path = template.replace('{channel}', 'chat:lobby');
        const res = await fetch(gw.internal(path), { method, headers: method === 'POST' ? { 'content-type': 'application/json' } : {}, body: method === 'POST' ? '{}' : undefined });
        const op = doc.paths[template][method.toLowerCase()];
        expect([entry, Object.keys(op.responses)]).toEqual([entry, expect.arrayContaining([String(res.status)])]);
      }
    });

    it('accepts the request bodies of every curl example in docs/server-api.md, and they name listed routes', () => {
      const text = readFileSync(join(ROOT, 'docs', 'server-api.md'), 'utf8');
      // One curl per line: `curl ... -X METHOD "$INTERNAL/api/..." ... [-d '<json>']`.
      const examples = [...text.matchAll(/^curl .*?-X (POST|GET) "\$INTERNAL(\/api\/[^"?]+)[^"]*"(?:.*?-d '([^']+)')?/gm)];
      expect(examples.length).toBeGreaterThanOrEqual(6);
      const ajv = new Ajv2020({ strict: false });
      const seen = new Set<string>();
      for (const [, method, path, body] of examples) {
        const template = Object.keys(doc.paths).find((p) => new RegExp(`^${p.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path));
        expect([method, path, template]).toEqual([method, path, expect.any(String)]);
        const op = doc.paths[template!][method.toLowerCase()];
        expect(op).toBeDefined();
        seen.add(`${method} ${template}`);
        if (body) expect([path, ajv.validate(op.requestBody.content['application/json'].schema, JSON.parse(body)), ajv.errorsText()]).toEqual([path, true, 'No errors']);
      }
      // Every operation but the document itself has an example.
      const operations = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`));
      expect([...seen].sort()).toEqual(operations.filter((op) => op !== 'GET /api/openapi.json').sort());
    });
  });
});

describe('server API across two replicas (cluster mode)', () => {
  let redis: RedisProcess;
  let a: Replica;
  let b: Replica;
  const api = (replica: Replica) => (path: string) => replica.internal(path);
  beforeAll(async () => {
    redis = await RedisProcess.start();
    [a, b] = await Promise.all([Replica.start('api-a', redis.url, { PRESENCE_TTL_MS: '3000' }), Replica.start('api-b', redis.url, { PRESENCE_TTL_MS: '3000' })]);
    // Ready means subscribed to the command channel too: a disconnect sent earlier would miss a replica.
    await eventually(async () => (await a.readyStatus()) === 200 && (await b.readyStatus()) === 200, 10_000, 'both replicas ready');
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
  });

  it('lists both nodes from either', async () => {
    await eventually(async () => (await call(api(a), 'GET', '/api/nodes')).body.nodes?.length === 2, 5000, 'both nodes');
    const nodes = (await call(api(b), 'GET', '/api/nodes')).body.nodes as { id: string }[];
    expect(nodes.map((n) => n.id)).toEqual(['api-a', 'api-b']);
  });

  it('publishes through one replica to a room whose members are on the other, and reads its history on either', async () => {
    const member = await connect(b.ws(`/ws/chat/cross?token=${token({ sub: 'm1', role: 'patient' })}`));
    await member.ofType('welcome');
    try {
      const sent = await call(api(a), 'POST', '/api/publish', { channel: 'chat:cross', data: { hello: 'b' } });
      expect(await member.ofType('publication')).toMatchObject({ id: sent.body.id, data: { hello: 'b' } });
      const history = await call(api(b), 'GET', '/api/channels/chat:cross/history');
      expect(history.body.messages).toEqual([{ id: sent.body.id, ts: sent.body.ts, data: { hello: 'b' } }]);
      expect((await call(api(a), 'GET', '/api/channels/chat:cross/presence')).body.members).toEqual([{ user: 'm1', node: 'api-b', connections: 1 }]);
    } finally {
      await member.close();
    }
  });

  it('disconnects a user connected to both replicas, and the ban holds on both until it ends', async () => {
    const url = (replica: Replica, sub: string) => replica.ws(`/api/alerts/subscribe?token=${token({ sub, role: 'authority' })}`);
    const onA = await connect(url(a, 'eve'));
    const onB = await connect(url(b, 'eve'));
    const other = await connect(url(b, 'frank'));
    await other.ofType('welcome');
    expect((await call(api(a), 'POST', '/api/disconnect', { user: 'eve', ban_seconds: 2 })).status).toBe(202);
    expect(await onA.closed).toEqual({ code: 4003, reason: 'disconnected' });
    expect(await onB.closed).toEqual({ code: 4003, reason: 'disconnected' });
    for (const replica of [a, b]) expect((await refusal(url(replica, 'eve'))).body.error).toBe('banned');
    other.send({ type: 'ping' });
    expect(await other.ofType('pong')).toMatchObject({ type: 'pong' });
    await Promise.all([(await admittedOnceTheBanEnds(url(b, 'eve'))).close(), other.close()]);
  });

  it('a replica started after a ban learns it from Redis', async () => {
    expect((await call(api(a), 'POST', '/api/disconnect', { user: 'late', ban_seconds: 60 })).status).toBe(202);
    const c = await Replica.start('api-c', redis.url);
    try {
      await eventually(async () => (await refusal(c.ws(`/ws/chat/lobby?token=${token({ sub: 'late', role: 'patient' })}`)).catch(() => undefined))?.body.error === 'banned', 5000, 'the ban on the new replica');
    } finally {
      await c.stop();
    }
  });

  it('answers a frozen Redis link with 503 at once, never a 500, and works again after', async () => {
    const proxy = await TcpProxy.start(redis.port);
    const c = await Replica.start('api-frozen', `redis://127.0.0.1:${proxy.port}/0`, { REDIS_TIMEOUT_MS: '1000' });
    try {
      await eventually(async () => (await c.readyStatus()) === 200, 10_000, 'the replica behind the proxy ready');
      proxy.freeze();
      const statuses = new Set<number>();
      await eventually(async () => {
        for (const [method, path, body] of [['GET', '/api/nodes'], ['POST', '/api/disconnect', { user: 'frozen', ban_seconds: 5 }], ['GET', '/api/channels/chat:lobby/presence']] as const) {
          statuses.add((await call(api(c), method, path, body)).status);
        }
        return (await c.readyStatus()) === 503 && statuses.has(503);
      }, 10_000, 'the frozen link to be noticed');
      const after = await call(api(c), 'POST', '/api/disconnect', { user: 'frozen', ban_seconds: 5 });
      expect([after.status, after.body.error, after.headers.get('retry-after')]).toEqual([503, 'redis_unavailable', '2']);
      expect([...statuses].filter((s) => s >= 500 && s !== 503)).toEqual([]);
      proxy.restore();
      await eventually(async () => (await call(api(c), 'GET', '/api/nodes')).status === 200, 10_000, 'answers again');
    } finally {
      await c.stop();
      await proxy.stop();
    }
  });

  it('gives a Redis restarted empty its bans back from the replicas, so a replica started later still refuses', async () => {
    expect((await call(api(a), 'POST', '/api/disconnect', { user: 'phoenix', ban_seconds: 120 })).status).toBe(202);
    await redis.stop();
    await redis.restart(); // an empty Redis (it keeps nothing on disk): {rt}:bans is gone
    await eventually(async () => (await a.readyStatus()) === 200 && (await b.readyStatus()) === 200, 15_000, 'both replicas back');
    const late = await Replica.start('api-late', redis.url);
    try {
      await eventually(async () => (await refusal(late.ws(`/ws/chat/lobby?token=${token({ sub: 'phoenix', role: 'patient' })}`)).catch(() => undefined))?.body.error === 'banned', 10_000, 'the ban on a replica started after the restart');
    } finally {
      await late.stop();
    }
  });

  it('answers 503 redis_unavailable with Retry-After while Redis is down, and works again after', async () => {
    await redis.stop();
    try {
      await eventually(async () => (await call(api(a), 'GET', '/api/nodes')).status === 503, 5000, 'a 503');
      const down = await call(api(a), 'POST', '/api/publish', { channel: 'chat:lobby', data: {} });
      expect([down.status, down.body.error, down.headers.get('retry-after')]).toEqual([503, 'redis_unavailable', '2']);
      expect((await call(api(a), 'POST', '/api/disconnect', { user: 'x', ban_seconds: 5 })).status).toBe(503);
    } finally {
      await redis.restart();
    }
    await eventually(async () => (await call(api(a), 'POST', '/api/publish', { channel: 'chat:lobby', data: {} })).status === 202, 10_000, 'publishing again');
  });
});

describe('the two ports of a real process', () => {
  it('serves metrics on the internal port only, and says so in its listening line', async () => {
    const gw = await spawnGateway({ JWT_SECRET: TEST_SECRET });
    try {
      expect(JSON.parse(gw.stdout.find((l) => l.includes('"event":"listening"'))!)).toMatchObject({ port: gw.port, internal_port: gw.internalPort });
      const onPublic = await rawExchange(gw.port, 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      expect([onPublic.status, JSON.parse(onPublic.body).error]).toEqual([404, 'unknown_path']);
      const onInternal = await rawExchange(gw.internalPort, 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      expect(onInternal.status).toBe(200);
    } finally {
      gw.child.kill('SIGTERM');
      await gw.exited;
    }
  });
});
