import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, refusal, type TestClient } from '../support/clients';
import { clusterDeployment, embeddedDeployment, type Deployment } from '../support/deployment';
import { token } from '../support/tokens';

jest.setTimeout(60_000);

/**
 * Permissions per channel (SPEC v3 "Namespaces and permissions"): a token opens only the consultations and
 * rooms its `channels` claim names where the namespace says `claim`, permission comes before occupancy, and a
 * malformed claim is an invalid token. Each test failed on the code before namespaces (any doctor token took
 * any empty seat; chat rooms were open to every token).
 */
function channelsFile(content: object): string {
  const file = join(mkdtempSync(join(tmpdir(), 'rt-channels-')), 'channels.json');
  writeFileSync(file, JSON.stringify(content));
  return file;
}

const CLAIMED_CHAT = { namespaces: { chat: { history: { size: 100 }, presence: true, join_leave: true, subscribe: { mode: 'claim' }, publish: 'members' } } };

const modes: [string, (env: Record<string, string>) => Promise<Deployment>][] = [
  ['embedded', (env) => embeddedDeployment(env)],
  ['cluster', (env) => clusterDeployment(env)],
];

describe.each(modes)('permissions per channel, %s', (_mode, deploy) => {
  let d: Deployment;
  const open: TestClient[] = [];
  let n = 0;
  beforeAll(async () => {
    d = await deploy({ CHANNELS_FILE: channelsFile(CLAIMED_CHAT), LOG_LEVEL: 'debug' });
  });
  afterAll(async () => {
    for (const client of open) client.ws.terminate();
    await d.close();
  });
  const fresh = (prefix: string) => `${prefix}-${++n}-${Date.now()}`;
  const bearer = (claims: Record<string, unknown>) => ({ protocols: ['bearer', token(claims)] });
  async function open_(url: string, claims: Record<string, unknown>): Promise<TestClient> {
    const client = await connect(url, bearer(claims));
    open.push(client);
    return client;
  }

  it("refuses a consultation the token does not name with 403 forbidden_channel, even at an empty seat, and admits the one it names", async () => {
    const mine = fresh('c');
    const theirs = fresh('c');
    const doctor = { sub: 'dr-who', role: 'doctor', channels: [`signaling:${mine}`] };
    const refused = await refusal(d.ws(0, `/ws/signaling/${theirs}/doctor`), bearer(doctor));
    expect(refused.status).toBe(403);
    expect(refused.body.error).toBe('forbidden_channel');
    expect(JSON.stringify(refused.body)).not.toContain('eyJ'); // no token echoed
    // No claim at all: refused as well (signaling is `claim` by default).
    expect((await refusal(d.ws(1, `/ws/signaling/${theirs}/patient`), bearer({ sub: 'pat', role: 'patient' }))).body.error).toBe('forbidden_channel');
    await open_(d.ws(0, `/ws/signaling/${mine}/doctor`), doctor);
  });

  it('answers forbidden_channel before role_taken: an occupied seat tells a stranger nothing about its occupant', async () => {
    const id = fresh('c');
    await open_(d.ws(0, `/ws/signaling/${id}/patient`), { sub: 'p1', role: 'patient', channels: [`signaling:${id}`] });
    const stranger = await refusal(d.ws(1, `/ws/signaling/${id}/patient`), bearer({ sub: 'p2', role: 'patient', channels: ['signaling:other'] }));
    expect([stranger.status, stranger.body.error]).toEqual([403, 'forbidden_channel']);
    const claimed = await refusal(d.ws(1, `/ws/signaling/${id}/patient`), bearer({ sub: 'p3', role: 'patient', channels: [`signaling:${id}`] }));
    expect([claimed.status, claimed.body.error]).toEqual([409, 'role_taken']);
  });

  it('admits by prefix: "signaling:ward-7-*" opens every consultation starting with ward-7-', async () => {
    const id = `ward-7-${fresh('c')}`;
    await open_(d.ws(1, `/ws/signaling/${id}/doctor`), { sub: 'dr-ward', role: 'doctor', channels: ['signaling:ward-7-*'] });
    const other = await refusal(d.ws(1, `/ws/signaling/ward-8-x/doctor`), bearer({ sub: 'dr-ward', role: 'doctor', channels: ['signaling:ward-7-*'] }));
    expect(other.body.error).toBe('forbidden_channel');
  });

  it('keeps a claim-mode chat room and its history closed to a token without the claim', async () => {
    const room = fresh('room');
    const member = await open_(d.ws(0, `/ws/chat/${room}`), { sub: 'alice', role: 'user', channels: [`chat:${room}`] });
    await member.ofType('welcome');
    member.send({ type: 'message', message: 'secret' });
    await member.ofType('message');
    const stranger = await refusal(d.ws(1, `/ws/chat/${room}?since=0-0`), bearer({ sub: 'eve', role: 'user' }));
    expect([stranger.status, stranger.body.error]).toEqual([403, 'forbidden_channel']);
    expect(stranger.body.message).not.toContain('secret');
  });

  it('never writes a token or a claim set to a log line (embedded: the logs are captured)', async () => {
    if (d.mode !== 'embedded') return expect(d.mode).toBe('cluster');
    const secretClaim = `signaling:claim-${fresh('s')}`;
    const jwt = token({ sub: 'dr-log', role: 'doctor', channels: [secretClaim] });
    await refusal(d.ws(0, '/ws/signaling/not-mine/doctor'), { protocols: ['bearer', jwt] });
    const raw = (d as unknown as { gateway: { rawLogs: string[] } }).gateway.rawLogs.join('\n');
    expect(raw).toContain('forbidden_channel'); // the refusal is logged ...
    expect(raw).not.toContain(jwt); // ... without the token
    expect(raw).not.toContain(secretClaim); // ... or the claims
  });

  it('refuses a token whose channels claim is not an array of strings with 401 token_invalid', async () => {
    for (const channels of ['signaling:c1', [1, 2], [{}], 'x'.repeat(10)]) {
      const refused = await refusal(d.ws(0, `/ws/chat/lobby`), bearer({ sub: 'alice', role: 'user', channels }));
      expect([refused.status, refused.body.error]).toEqual([401, 'token_invalid']);
    }
  });
});
