import { createHmac, randomBytes } from 'node:crypto';
import { connect, type TestClient } from '../support/clients';
import { Coturn, uclient } from '../support/coturn';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { spawnGateway } from '../support/process';
import { TEST_SECRET, token } from '../support/tokens';

jest.setTimeout(60_000);

/**
 * The `ice-servers` frame against a real coturn (Debian's `turnserver`, `use-auth-secret`) on a free port:
 * the credential a signaling connection receives allocates relays with coturn's own client
 * (`turnutils_uclient`), over UDP and TCP; a forged one, one replayed under another user, and an expired one
 * are refused by coturn (401 in its log, no relay, non-zero exit).
 */
const SECRET = `turn-${randomBytes(24).toString('hex')}`;
const TTL_S = 600;

interface IceServersFrame {
  type: 'ice-servers';
  iceServers: { urls: string[]; username: string; credential: string }[];
  ttl_s: number;
}

/** The credential coturn expects, computed here with node:crypto directly (not with the gateway's code). */
const sign = (secret: string, username: string) => createHmac('sha1', secret).update(username).digest('base64');

describe('TURN credentials (ice-servers frame) against a real coturn', () => {
  let coturn: Coturn;
  let gw: TestGateway;
  const open: TestClient[] = [];
  const credentials: string[] = [];

  beforeAll(async () => {
    coturn = await Coturn.start(SECRET);
    gw = await startTestGateway({ TURN_SECRET: SECRET, TURN_URLS: `${coturn.url('udp')}, ${coturn.url('tcp')}`, TURN_TTL_S: String(TTL_S) });
  });
  afterAll(async () => {
    for (const client of open) client.ws.terminate();
    await gw?.close();
    await coturn?.stop();
  });

  async function seat(id: string, role: 'doctor' | 'patient', sub: string): Promise<TestClient> {
    const client = await connect(gw.ws(`/ws/signaling/${id}/${role}`), { protocols: ['bearer', token({ sub, role, channels: [`signaling:${id}`] })] });
    open.push(client);
    return client;
  }

  /** The first frame of a fresh signaling connection, which must be the ice-servers frame. */
  async function iceServers(client: TestClient): Promise<IceServersFrame> {
    const frame = await client.next<IceServersFrame>();
    expect(frame.type).toBe('ice-servers');
    credentials.push(...frame.iceServers.map((s) => s.credential));
    return frame;
  }

  it('sends ice-servers as the first frame (before peer-joined), with a credential coturn allocates relays for, over UDP and TCP', async () => {
    const before = Math.floor(Date.now() / 1000);
    const doctor = await seat('c-turn-1', 'doctor', 'dr-house');
    const doctorFrame = await iceServers(doctor);
    // A sub with a colon: coturn reads the expiry before the first one, and the HMAC covers the whole username.
    const patient = await seat('c-turn-1', 'patient', 'ward-7:patient-3');
    const patientFrame = await iceServers(patient);
    expect(await patient.next()).toEqual({ type: 'peer-joined', role: 'doctor' });
    expect(await doctor.next()).toEqual({ type: 'peer-joined', role: 'patient' });
    const after = Math.floor(Date.now() / 1000);

    for (const [frame, sub] of [[doctorFrame, 'dr-house'], [patientFrame, 'ward-7:patient-3']] as const) {
      expect(Object.keys(frame).sort()).toEqual(['iceServers', 'ttl_s', 'type']);
      expect(frame.ttl_s).toBe(TTL_S);
      expect(frame.iceServers).toHaveLength(1);
      const [server] = frame.iceServers;
      expect(server.urls).toEqual([coturn.url('udp'), coturn.url('tcp')]);
      const [expiry, ...rest] = server.username.split(':');
      expect(rest.join(':')).toBe(sub);
      expect(Number(expiry)).toBeGreaterThanOrEqual(before + TTL_S);
      expect(Number(expiry)).toBeLessThanOrEqual(after + TTL_S);
      expect(server.credential === sign(SECRET, server.username)).toBe(true);
    }

    // Every URL of both frames, with the frame's own username and credential: coturn allocates, and the two
    // uclient clients exchange messages through the relays.
    const runs = await Promise.all(
      [doctorFrame, patientFrame].flatMap((frame) => frame.iceServers[0].urls.map((url) => uclient(url, frame.iceServers[0].username, frame.iceServers[0].credential))),
    );
    for (const run of runs) {
      expect([run.code, run.output.match(/ERROR.*/g)]).toEqual([0, null]);
      expect(run.relays.length).toBeGreaterThan(0);
      for (const relay of run.relays) expect(relay).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(run.received).toBeGreaterThan(0);
    }
    // coturn's own account (its log file, written as it processes): each user authenticated and allocated.
    for (const frame of [doctorFrame, patientFrame]) {
      const line = `user <${frame.iceServers[0].username}>: incoming packet ALLOCATE processed, success`;
      await eventually(() => coturn.log().includes(line), 2000, `coturn's log to show ${line}`);
    }
  });

  it('is refused by coturn when forged (wrong secret), replayed under another user, or expired (right secret, expiry past)', async () => {
    const doctor = await seat('c-turn-2', 'doctor', 'dr-watson');
    const [server] = (await iceServers(doctor)).iceServers;
    const url = coturn.url('udp');
    const [expiry] = server.username.split(':');
    const now = Math.floor(Date.now() / 1000);
    const cases = {
      // The frame's username, signed with a secret coturn does not have.
      forged: { username: server.username, credential: sign(`not-${SECRET}`, server.username) },
      // The frame's credential under another user's name: the HMAC covers the sub.
      replayed: { username: `${expiry}:dr-moriarty`, credential: server.credential },
      // Signed with the right secret, expiry a minute ago.
      expired: { username: `${now - 60}:dr-watson-expired`, credential: sign(SECRET, `${now - 60}:dr-watson-expired`) },
      // The control for `expired`: the same signing, expiry ahead, is accepted.
      control: { username: `${now + 60}:dr-watson-control`, credential: sign(SECRET, `${now + 60}:dr-watson-control`) },
    };
    const [forged, replayed, expired, control] = await Promise.all(Object.values(cases).map((c) => uclient(url, c.username, c.credential)));

    for (const [name, run, { username }] of [['forged', forged, cases.forged], ['replayed', replayed, cases.replayed], ['expired', expired, cases.expired]] as const) {
      // turnutils_uclient retries the Allocate, then gives up: "ERROR: Cannot complete Allocation", exit 255.
      expect([name, run.code !== 0, run.relays, run.output.includes('ERROR: Cannot complete Allocation')]).toEqual([name, true, [], true]);
      // coturn's side: 401 for that user, and no allocation for it.
      const refusedLine = `user <${username}>: incoming packet message processed, error 401: Unauthorized`;
      await eventually(() => coturn.log().includes(refusedLine), 2000, `coturn's log to show ${name}: ${refusedLine}`);
      expect([name, coturn.log().includes(`user <${username}>: incoming packet ALLOCATE processed, success`)]).toEqual([name, false]);
    }
    expect([control.code, control.relays.length > 0]).toEqual([0, true]);
  });

  it('logs neither the TURN secret nor any credential it sent', () => {
    expect(credentials.length).toBeGreaterThanOrEqual(3);
    const logs = gw.rawLogs.join('\n');
    expect(logs.includes(SECRET)).toBe(false);
    for (const credential of credentials) expect(logs.includes(credential)).toBe(false);
  });
});

describe('signaling without TURN configuration', () => {
  it('sends no ice-servers frame: peer-joined is the first frame, as before', async () => {
    const gw = await startTestGateway({ LOG_LEVEL: 'warn' });
    const clients: TestClient[] = [];
    try {
      const open = async (role: 'doctor' | 'patient') => {
        const client = await connect(gw.ws(`/ws/signaling/c-plain/${role}`), { protocols: ['bearer', token({ sub: role, role, channels: ['signaling:c-plain'] })] });
        clients.push(client);
        return client;
      };
      const doctor = await open('doctor');
      const patient = await open('patient');
      expect(await patient.next()).toEqual({ type: 'peer-joined', role: 'doctor' });
      expect(await doctor.next()).toEqual({ type: 'peer-joined', role: 'patient' });
    } finally {
      for (const client of clients) client.ws.terminate();
      await gw.close();
    }
  });
});

describe('TURN configuration of the built service', () => {
  it.each([
    [{ TURN_SECRET: SECRET }, /^realtime-gateway: invalid configuration: TURN_URLS: is required when TURN_SECRET is set/],
    [{ TURN_URLS: 'turn:turn.example.com:3478' }, /^realtime-gateway: invalid configuration: TURN_SECRET: is required when TURN_URLS is set/],
    [{ TURN_SECRET: SECRET, TURN_URLS: 'turn://turn.example.com' }, /^realtime-gateway: invalid configuration: TURN_URLS: .*no \/\/ after the scheme/],
  ])('refuses to start with half or a broken TURN setup, in one line naming the variable, never the secret (%#)', async (env, message) => {
    const gw = await spawnGateway({ JWT_SECRET: TEST_SECRET, ...env }, { waitForListening: false });
    expect(await gw.exited).toBe(1);
    const lines = gw.stderr().trim().split('\n');
    expect(lines).toEqual([expect.stringMatching(message)]);
    expect(gw.stderr().includes(SECRET)).toBe(false);
  });
});
