import { connect as netConnect } from 'node:net';
import { connect, refusal } from '../support/clients';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { token, unsignedToken } from '../support/tokens';

const ALERTS = '/api/alerts/subscribe';

/** The three documented places for a token, as a client would use them. */
const locations = {
  query: (t: string) => ({ path: `${ALERTS}?token=${encodeURIComponent(t)}`, options: {} }),
  header: (t: string) => ({ path: ALERTS, options: { headers: { Authorization: `Bearer ${t}` } } }),
  subprotocol: (t: string) => ({ path: ALERTS, options: { protocols: ['bearer', t] } }),
};

/** Sends raw bytes and returns the raw HTTP answer (for requests a WebSocket client would never make). */
function rawRequest(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1', () => socket.write(request));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk));
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}

describe('upgrade refusals (before the handshake)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ ALLOWED_ORIGINS: 'https://app.example.com', JWT_ISSUER: 'https://idp.test', JWT_AUDIENCE: 'gateway' });
  });
  afterAll(() => gw.close());

  const good = (claims = {}) => token(claims, { issuer: 'https://idp.test', audience: 'gateway' });

  describe.each(Object.entries(locations))('token in the %s', (_where, place) => {
    it('accepts a valid token of an allowed role', async () => {
      const { path, options } = place(good({ role: 'admin' }));
      const client = await connect(gw.ws(path), options);
      client.send({ type: 'ping' });
      expect(await client.ofType('pong')).toMatchObject({ type: 'pong', ts: expect.any(Number) });
      await client.close();
    });

    it('refuses an expired token with 401 token_expired and WWW-Authenticate', async () => {
      const { path, options } = place(token({}, { ttl: -60, issuer: 'https://idp.test', audience: 'gateway' }));
      const r = await refusal(gw.ws(path), options);
      expect(r.status).toBe(401);
      expect(r.body.error).toBe('token_expired');
      expect(r.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
    });

    it('refuses a bad signature with 401 token_invalid', async () => {
      const { path, options } = place(token({}, { secret: 'another-secret-another-secret-another', issuer: 'https://idp.test', audience: 'gateway' }));
      const r = await refusal(gw.ws(path), options);
      expect([r.status, r.body.error]).toEqual([401, 'token_invalid']);
      expect(r.body.message).toMatch(/signature/);
      expect(r.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
    });

    it('refuses alg none with 401 token_invalid', async () => {
      const { path, options } = place(unsignedToken());
      const r = await refusal(gw.ws(path), options);
      expect([r.status, r.body.error]).toEqual([401, 'token_invalid']);
      expect(r.body.message).toMatch(/none/);
    });

    it('refuses a malformed token with 401 token_invalid', async () => {
      const { path, options } = place('not-a-jwt');
      const r = await refusal(gw.ws(path), options);
      expect([r.status, r.body.error]).toEqual([401, 'token_invalid']);
    });

    it('refuses a role that may not subscribe with 403 forbidden_role', async () => {
      const { path, options } = place(good({ role: 'patient' }));
      const r = await refusal(gw.ws(path), options);
      expect([r.status, r.body.error]).toEqual([403, 'forbidden_role']);
      expect(r.body.message).toContain('authority, admin');
    });
  });

  it('refuses a missing token with 401 token_missing and says where to put one', async () => {
    const r = await refusal(gw.ws(ALERTS));
    expect([r.status, r.body.error]).toEqual([401, 'token_missing']);
    expect(r.body.message).toMatch(/\?token=.*Authorization: Bearer.*bearer/);
    expect(r.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
  });

  it('refuses the subprotocol bearer without a token, naming the problem', async () => {
    const r = await refusal(gw.ws(ALERTS), { protocols: ['bearer'] });
    expect([r.status, r.body.error]).toEqual([401, 'token_missing']);
    expect(r.body.message).toMatch(/followed by the token/);
  });

  it('refuses a wrong issuer and a wrong audience', async () => {
    const wrongIssuer = await refusal(gw.ws(locations.query(token({}, { issuer: 'https://evil', audience: 'gateway' })).path));
    expect([wrongIssuer.status, wrongIssuer.body.error, wrongIssuer.body.message]).toEqual([401, 'token_invalid', 'token issuer is not accepted']);
    const wrongAudience = await refusal(gw.ws(locations.query(token({}, { issuer: 'https://idp.test', audience: 'other' })).path));
    expect([wrongAudience.status, wrongAudience.body.message]).toEqual([401, 'token audience is not accepted']);
  });

  it('refuses a token without sub or role', async () => {
    const noRole = await refusal(gw.ws(locations.query(good({ role: undefined })).path));
    expect([noRole.status, noRole.body.error]).toEqual([401, 'token_invalid']);
    expect(noRole.body.message).toMatch(/"role"/);
    const noSub = await refusal(gw.ws(locations.query(good({ sub: '' })).path));
    expect(noSub.body.message).toMatch(/"sub"/);
  });

  it('selects the bearer subprotocol so browsers accept the handshake', async () => {
    const client = await connect(gw.ws(ALERTS), { protocols: ['bearer', good()] });
    expect(client.ws.protocol).toBe('bearer');
    await client.close();
  });

  it('refuses an Origin outside ALLOWED_ORIGINS with 403 forbidden_origin, and accepts a listed one', async () => {
    const r = await refusal(gw.ws(ALERTS), { protocols: ['bearer', good()], origin: 'https://evil.example.com' });
    expect([r.status, r.body.error]).toEqual([403, 'forbidden_origin']);
    const ok = await connect(gw.ws(ALERTS), { protocols: ['bearer', good()], origin: 'https://app.example.com' });
    await ok.close();
  });

  it('answers an unknown path with 404 unknown_path listing the known paths', async () => {
    const r = await refusal(gw.ws('/ws/nope'));
    expect([r.status, r.body.error]).toEqual([404, 'unknown_path']);
    expect(r.body.message).toContain('/api/alerts/subscribe');
  });

  it('names a doubled prefix in the 404', async () => {
    const r = await refusal(gw.ws('/api/api/alerts/subscribe'));
    expect(r.status).toBe(404);
    expect(r.body.message).toMatch(/repeats the prefix \/api .*did you mean \/api\/alerts\/subscribe/);
  });

  it('answers a request that is not a valid upgrade with 400 bad_request', async () => {
    const answer = await rawRequest(
      gw.port,
      `GET ${ALERTS} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toEqual({
      error: 'bad_request',
      message: 'missing or invalid Sec-WebSocket-Key',
    });
  });

  it('counts refusals in ws_upgrades_rejected_total with bounded labels', async () => {
    await refusal(gw.ws('/definitely/unknown'));
    expect(await gw.metric('ws_upgrades_rejected_total', { gateway: 'unknown', status: '404', error: 'unknown_path' })).toBeGreaterThanOrEqual(1);
    expect(await gw.metric('ws_upgrades_rejected_total', { gateway: 'alerts', status: '401', error: 'token_expired' })).toBeGreaterThanOrEqual(3);
  });

  it('never lets an unauthenticated socket reach the gateway', () => {
    const connects = gw.logs.filter((l) => l.event === 'connect');
    expect(connects.length).toBeGreaterThan(0);
    for (const line of connects) expect(['authority', 'admin']).toContain(line.role);
  });
});

describe('capacity limits', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ MAX_CONNECTIONS: '3', MAX_CONNECTIONS_PER_USER: '2' });
  });
  afterAll(() => gw.close());

  it('answers 429 too_many_connections past MAX_CONNECTIONS_PER_USER', async () => {
    const url = gw.ws(`${ALERTS}?token=${token({ sub: 'bob' })}`);
    const a = await connect(url);
    const b = await connect(url);
    const r = await refusal(url);
    expect([r.status, r.body.error]).toEqual([429, 'too_many_connections']);
    await a.close();
    await eventually(() => gw.connections.registry.ofUser('bob').size === 1, 5000, 'the server to drop the closed socket');
    const again = await connect(url);
    await Promise.all([b.close(), again.close()]);
  });

  it('answers 503 at_capacity with Retry-After past MAX_CONNECTIONS, and admits again once a slot frees', async () => {
    const clients = await Promise.all(['u1', 'u2', 'u3'].map((sub) => connect(gw.ws(`${ALERTS}?token=${token({ sub })}`))));
    const r = await refusal(gw.ws(`${ALERTS}?token=${token({ sub: 'u4' })}`));
    expect([r.status, r.body.error]).toEqual([503, 'at_capacity']);
    expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    await clients[0].close();
    await eventually(() => gw.connections.registry.size === 2, 5000, 'the server to drop the closed socket');
    const fourth = await connect(gw.ws(`${ALERTS}?token=${token({ sub: 'u4' })}`));
    await Promise.all([fourth.close(), clients[1].close(), clients[2].close()]);
  });
});
