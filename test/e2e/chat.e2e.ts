import { connect, refusal, type TestClient } from '../support/clients';
import { clusterDeployment, embeddedDeployment, type Deployment } from '../support/deployment';
import { token } from '../support/tokens';

jest.setTimeout(60_000);

const TTL_MS = 1500;
// Generous rate limits: the garbage test wants thousands of frames to reach validation, not the bucket.
const ENV = { PRESENCE_TTL_MS: String(TTL_MS), RATE_LIMIT_PER_SEC: '100000', RATE_LIMIT_BURST: '100000' };

const modes: [string, () => Promise<Deployment>][] = [
  ['embedded', () => embeddedDeployment(ENV)],
  ['cluster (two replicas, members spread over both)', () => clusterDeployment(ENV)],
];

interface System {
  type: 'system';
  event: 'join' | 'leave';
  user: string;
  users: string[];
}

describe.each(modes)('chat, %s', (_mode, deploy) => {
  let d: Deployment;
  const open: TestClient[] = [];
  let n = 0;

  beforeAll(async () => {
    d = await deploy();
  });
  afterAll(async () => {
    for (const client of open) client.ws.terminate();
    await d.close();
  });

  const freshRoom = () => `room-${++n}`;
  async function member(replica: number, room: string, sub: string): Promise<TestClient> {
    const client = await connect(d.ws(replica, `/ws/chat/${room}`), { protocols: ['bearer', token({ sub, role: 'user' })] });
    open.push(client);
    return client;
  }
  const system = (client: TestClient, event: 'join' | 'leave', user: string) =>
    client.take<System>((f) => f.type === 'system' && f.event === event && f.user === user);

  it('announces joins and leaves with the member list of the whole room', async () => {
    const room = freshRoom();
    const alice = await member(0, room, 'alice');
    expect(await system(alice, 'join', 'alice')).toEqual({ type: 'system', event: 'join', user: 'alice', users: ['alice'] });
    const bob = await member(1, room, 'bob');
    expect(await system(bob, 'join', 'bob')).toEqual({ type: 'system', event: 'join', user: 'bob', users: ['alice', 'bob'] });
    expect(await system(alice, 'join', 'bob')).toMatchObject({ users: ['alice', 'bob'] });
    await bob.close();
    expect(await system(alice, 'leave', 'bob')).toEqual({ type: 'system', event: 'leave', user: 'bob', users: ['alice'] });
  });

  it("keeps messages in the room's history: a member resuming with since and epoch (on the other replica) gets what it missed, then resumed", async () => {
    const room = freshRoom();
    const alice = await member(0, room, 'alice');
    const bob = await member(1, room, 'bob');
    const welcome = await bob.ofType<{ epoch: string; id: string }>('welcome');
    await system(alice, 'join', 'bob');
    alice.send({ type: 'message', message: 'one' });
    const one = await bob.take<{ id: string }>((f) => f.type === 'message' && f.message === 'one');
    await bob.close();
    await system(alice, 'leave', 'bob');
    for (const message of ['two', 'three']) alice.send({ type: 'message', message });
    await alice.take((f) => f.type === 'message' && f.message === 'three');
    // Bob's membership is released just after his leave is announced: a reconnect may meet 409 for a moment.
    let back: TestClient | undefined;
    for (let attempt = 0; !back; attempt++) {
      back = await connect(d.ws(0, `/ws/chat/${room}?since=${one.id}&epoch=${welcome.epoch}`), { protocols: ['bearer', token({ sub: 'bob', role: 'user' })] }).catch(
        (error: { status?: number }) => {
          if (error.status !== 409 || attempt > 50) throw error;
          return new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 20));
        },
      );
    }
    open.push(back);
    expect(await back.next()).toEqual({ type: 'welcome', epoch: welcome.epoch, id: one.id });
    expect(await back.next()).toMatchObject({ type: 'message', user: 'alice', message: 'two' });
    expect(await back.next()).toMatchObject({ type: 'message', user: 'alice', message: 'three' });
    expect(await back.next()).toEqual({ type: 'resumed', recovered: true });
    // With an epoch the room never had: told to refetch, no replay, live continues.
    const lost = await connect(d.ws(1, `/ws/chat/${room}?since=${one.id}&epoch=not-this-one`), { protocols: ['bearer', token({ sub: 'erin', role: 'user' })] });
    open.push(lost);
    expect(await lost.ofType('resumed')).toEqual({ type: 'resumed', recovered: false });
    alice.send({ type: 'message', message: 'four' });
    expect(await lost.ofType('message')).toMatchObject({ message: 'four' });
  });

  it('refuses the same user twice in a room (409 duplicate_user, also from the other replica) and bad room names', async () => {
    const room = freshRoom();
    await member(0, room, 'carol');
    const again = await refusal(d.ws(1, `/ws/chat/${room}`), { protocols: ['bearer', token({ sub: 'carol', role: 'user' })] });
    expect(again).toMatchObject({ status: 409, body: { error: 'duplicate_user' } });
    await member(1, freshRoom(), 'carol'); // another room is fine
    const bad = await refusal(d.ws(0, `/ws/chat/${'r'.repeat(65)}`), { protocols: ['bearer', token({ sub: 'x', role: 'user' })] });
    expect(bad).toMatchObject({ status: 400, body: { error: 'bad_request' } });
  });

  it('delivers messages to every member including the sender, and private messages to one member wherever connected', async () => {
    const room = freshRoom();
    const alice = await member(0, room, 'alice');
    const bob = await member(1, room, 'bob');
    const carol = await member(0, room, 'carol');
    await system(alice, 'join', 'carol');
    await system(bob, 'join', 'carol');

    alice.send({ type: 'message', message: 'hello all' });
    for (const client of [alice, bob, carol]) {
      expect(await client.ofType('message')).toEqual({ type: 'message', id: expect.any(String), user: 'alice', message: 'hello all', ts: expect.any(Number) });
    }
    alice.send({ type: 'message', message: 'x'.repeat(501) });
    expect(await alice.ofType('error')).toMatchObject({ payload: { code: 'message_too_long' } });

    alice.send({ type: 'private', to: 'bob', message: 'psst' });
    const received = await bob.ofType('private');
    expect(received).toEqual({ type: 'private', from: 'alice', to: 'bob', message: 'psst', ts: expect.any(Number) }); // no id: private messages are not kept, so nothing resumes from one (SPEC v3)
    expect(await alice.ofType('private')).toEqual(received); // the sender's echo
    alice.send({ type: 'private', to: 'dave', message: 'anyone?' });
    expect(await alice.ofType('error')).toMatchObject({ payload: { code: 'user_not_found' } });
    // carol saw neither private message.
    carol.send({ type: 'message', message: 'marker' });
    await carol.take((f) => f.type === 'message' && f.message === 'marker');
    expect(carol.frames.filter((f) => (f as { type?: string }).type === 'private')).toEqual([]);
  });

  it('announces the leave of a member whose connection dropped without a close frame', async () => {
    const room = freshRoom();
    const alice = await member(0, room, 'alice');
    const erin = await member(1, room, 'erin');
    await system(alice, 'join', 'erin');
    erin.ws.terminate(); // TCP gone, no close handshake
    expect(await system(alice, 'leave', 'erin')).toMatchObject({ users: ['alice'] });
  });

  it('keeps a conversation complete and in order while another member sends thousands of garbage frames', async () => {
    const room = freshRoom();
    const alice = await member(0, room, 'alice');
    const bob = await member(1, room, 'bob');
    const mallory = await member(0, room, 'mallory');
    await system(alice, 'join', 'mallory');
    await system(bob, 'join', 'mallory');

    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const garbage = [
      () => '{not json',
      () => JSON.stringify({ type: 'message', message: 42 }),
      () => JSON.stringify({ type: 'message' }),
      () => JSON.stringify({ type: 'private', to: '', message: 'x' }),
      () => JSON.stringify({ type: 'message', message: 'y'.repeat(501 + Math.floor(random() * 20_000)) }),
      () => JSON.stringify({ type: 'nonsense', n: random() }),
      () => JSON.stringify([1, 2, 3]),
      () => JSON.stringify({ type: 'private', to: 'nobody-here', message: 'x' }),
      () => String(random()),
    ];
    const GARBAGE = 3000;
    const TALK = 100;
    for (let i = 0; i < GARBAGE; i++) {
      mallory.send(garbage[Math.floor(random() * garbage.length)]());
      if (i % 30 === 0) {
        const k = i / 30;
        if (k < TALK) (k % 2 ? bob : alice).send({ type: 'message', message: `line ${k}` });
      }
    }
    const conversation = Array.from({ length: TALK }, (_, k) => `line ${k}`);
    for (const listener of [alice, bob]) {
      const lines: string[] = [];
      while (lines.length < TALK) lines.push((await listener.take<{ message: string }>((f) => f.type === 'message' && f.user !== 'mallory', 20_000)).message);
      // Each sender's lines arrive in the order sent; both senders' lines all arrive.
      for (const parity of [0, 1]) {
        expect(lines.filter((l) => Number(l.split(' ')[1]) % 2 === parity)).toEqual(conversation.filter((_, k) => k % 2 === parity));
      }
    }
    // Every garbage frame got an error frame; mallory is still connected.
    const errors: string[] = [];
    while (errors.length < GARBAGE) errors.push((await mallory.ofType<{ payload: { code: string } }>('error', 20_000)).payload.code);
    expect(new Set(errors)).toEqual(new Set(['invalid_json', 'invalid_message', 'message_too_long', 'unknown_type', 'user_not_found']));
    expect(mallory.ws.readyState).toBe(mallory.ws.OPEN);
    // Binary is a protocol error on these text endpoints: the documented close, and only for mallory.
    mallory.ws.send(Buffer.from([0xde, 0xad]));
    expect((await mallory.closed).code).toBe(1003);
    alice.send({ type: 'message', message: 'still here' });
    expect(await bob.take((f) => f.type === 'message' && f.message === 'still here')).toMatchObject({ user: 'alice' });
  });
});

describe('chat when a member replica dies (cluster)', () => {
  it('tells the others that its members left, after about the presence TTL', async () => {
    const d = await clusterDeployment({ PRESENCE_TTL_MS: String(TTL_MS) });
    try {
      const alice = await connect(d.ws(0, '/ws/chat/lobby'), { protocols: ['bearer', token({ sub: 'alice', role: 'user' })] });
      await connect(d.ws(1, '/ws/chat/lobby'), { protocols: ['bearer', token({ sub: 'bob', role: 'user' })] });
      await alice.take((f) => f.type === 'system' && f.user === 'bob');
      await d.replicas[1].kill();
      expect(await alice.take((f) => f.type === 'system' && f.event === 'leave', TTL_MS * 5)).toEqual({
        type: 'system',
        event: 'leave',
        user: 'bob',
        users: ['alice'],
      });
      // bob may come back (on the surviving replica) without a 409.
      const bob = await connect(d.ws(0, '/ws/chat/lobby'), { protocols: ['bearer', token({ sub: 'bob', role: 'user' })] });
      expect(await alice.take((f) => f.type === 'system' && f.event === 'join' && f.user === 'bob')).toMatchObject({ users: ['alice', 'bob'] });
      alice.ws.terminate();
      bob.ws.terminate();
    } finally {
      await d.close();
    }
  });
});
