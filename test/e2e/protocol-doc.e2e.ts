import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AlertInputSchema } from '../../src/alerts/alert';
import { ALERT_FRAMES } from '../../src/alerts/alert.frames';
import { ChannelHub } from '../../src/channels/channel-hub';
import { CHAT_FRAMES } from '../../src/chat/chat.frames';
import { SIGNALING_FRAMES } from '../../src/signaling/signaling.frames';
import { WS_FRAMES } from '../../src/ws/ws.frames';
import { connect, type TestClient } from '../support/clients';
import { sendFrame, SseClient } from '../support/sse-client';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { freePort, ROOT } from '../support/process';
import { token } from '../support/tokens';

/**
 * docs/protocol.md is checked against the code: every client example validates against the gateway's
 * schemas, and every server example has the shape (keys and value types) of a frame the gateway really sent
 * in the scenario below, which itself sends the documented client examples.
 */
interface Example {
  direction: 'client' | 'server';
  endpoint: string;
  frame: Record<string, unknown>;
}

const examples: Example[] = [...readFileSync(join(ROOT, 'docs', 'protocol.md'), 'utf8').matchAll(/```json (client|server) (\w+)\n([\s\S]*?)```/g)].map(
  ([, direction, endpoint, body]) => ({ direction: direction as Example['direction'], endpoint, frame: JSON.parse(body) }),
);
const clientExample = (endpoint: string, type: string) => examples.find((e) => e.direction === 'client' && e.endpoint === endpoint && e.frame.type === type)!.frame;

function shape(value: unknown): unknown {
  if (Array.isArray(value)) return value.length ? [shape(value[0])] : [];
  if (value && typeof value === 'object') return Object.fromEntries(Object.keys(value).sort().map((k) => [k, shape((value as Record<string, unknown>)[k])]));
  return typeof value;
}

/**
 * What identifies a kind of server frame: its type, plus the error code, system event, relay sender, the kind
 * of channel it names, whether a welcome names a personal channel (alerts) too, whether it names a session
 * (an SSE stream's welcome), and whether it asks for an ack.
 */
function kind(frame: Record<string, unknown>): string {
  const payload = frame.payload as { code?: string } | undefined;
  const channel = typeof frame.channel === 'string' ? frame.channel.split(':')[0] : '';
  const byMember = frame.type === 'publication' && typeof frame.user === 'string' ? 'by' : '';
  return [frame.type, frame.type === 'error' ? payload?.code : '', frame.event ?? '', frame.from ?? '', channel, 'user_epoch' in frame ? 'u' : '', 'session' in frame ? 's' : '', byMember, 'ack' in frame ? 'ack' : ''].join('/');
}

describe('docs/protocol.md', () => {
  let gw: TestGateway;
  const seen: Record<string, unknown>[] = [];
  const clients: TestClient[] = [];
  const streams: SseClient[] = [];

  async function open(path: string, sub: string, role: string, claims: Record<string, unknown> = {}): Promise<TestClient> {
    const client = await connect(gw.ws(path), { protocols: ['bearer', token({ sub, role, ...claims })] });
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    // A `proxy` namespace whose backend is down (a closed port), for the proxy_unavailable example.
    const channelsFile = join(mkdtempSync(join(tmpdir(), 'rt-doc-')), 'channels.yaml');
    writeFileSync(channelsFile, 'namespaces:\n  ward: { subscribe: { mode: proxy } }\n');
    gw = await startTestGateway({
      LOG_LEVEL: 'warn',
      CHANNELS_FILE: channelsFile,
      SUBSCRIBE_PROXY_URL: `http://127.0.0.1:${await freePort()}/subscribe`,
      PROXY_SECRET: 'doc-proxy-secret',
      // TURN configured, so signaling connections send their ice-servers frame (no TURN server is needed to build it).
      TURN_SECRET: 'protocol-doc-turn-secret',
      TURN_URLS: 'turn:turn.example.com:3478?transport=udp',
    });
    const collect = async (client: TestClient, count: number) => {
      for (let i = 0; i < count; i++) seen.push(await client.next());
    };

    // Every endpoint: ping and a broken frame.
    const any = await open('/ws/chat/doc-any', 'pinger', 'user');
    await any.ofType('system');
    await any.ofType('welcome');
    any.send(clientExample('any', 'ping'));
    any.send('{broken');
    await collect(any, 2);

    // Alerts: one published with the documented body, then a resume.
    const subscriber = await open('/api/alerts/subscribe', 'auth', 'authority');
    seen.push(await subscriber.ofType('welcome'));
    const hub = gw.app.get(ChannelHub);
    await hub.publish('user:auth', { data: { text: 'your report was read' } });
    seen.push(await subscriber.take((f) => f.type === 'alert' && f.channel === 'user:auth'));
    const res = await fetch(gw.internal('/api/alerts'), {
      method: 'POST',
      headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...examples.find((e) => e.endpoint === 'http')!.frame, users: ['auth'] }),
    });
    expect(res.status).toBe(202);
    const alert = await subscriber.ofType<{ id: string }>('alert');
    seen.push(alert);
    const resumed = await open(`/api/alerts/subscribe?since=${alert.id}`, 'auth', 'authority');
    seen.push(await resumed.ofType('resumed'));

    // Acknowledgements: an alert asking for ack, the documented ack of it, and an ack of an unknown id.
    const acked = await fetch(gw.internal('/api/alerts'), {
      method: 'POST',
      headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' },
      body: JSON.stringify({ data: { level: 'red', text: 'oxygen supply alarm' }, roles: ['authority'], ack: { within_s: 600 } }),
    });
    expect(acked.status).toBe(202);
    const askingAck = await subscriber.take<{ id: string; ack?: boolean }>((f) => f.type === 'alert' && f.ack === true);
    seen.push(askingAck);
    subscriber.send({ ...clientExample('alerts', 'ack'), id: askingAck.id });
    subscriber.send({ ...clientExample('alerts', 'ack'), id: '1-0' });
    seen.push(await subscriber.ofType('error'));

    // Signaling: the ice-servers frame first, the documented offer, answer and candidate, relayed; then the peer leaves.
    const seatClaims = { channels: ['signaling:doc-1'] };
    const doctor = await open('/ws/signaling/doc-1/doctor', 'd', 'doctor', seatClaims);
    const first = await doctor.next();
    expect(first.type).toBe('ice-servers');
    seen.push(first);
    doctor.send(clientExample('signaling', 'offer'));
    seen.push(await doctor.ofType('error'));
    const patient = await open('/ws/signaling/doc-1/patient', 'p', 'patient', seatClaims);
    seen.push(await patient.ofType('peer-joined'), await doctor.ofType('peer-joined'));
    doctor.send(clientExample('signaling', 'offer'));
    seen.push(await patient.ofType('offer'));
    patient.send(clientExample('signaling', 'answer'));
    patient.send(clientExample('signaling', 'ice-candidate'));
    seen.push(await doctor.ofType('answer'), await doctor.ofType('ice-candidate'));
    await patient.close();
    seen.push(await doctor.ofType('peer-left'));

    // Chat: the documented message and private message, the errors, a leave.
    const alice = await open('/ws/chat/doc-room', 'alice', 'user');
    seen.push(await alice.ofType('welcome'));
    await alice.ofType('system');
    const bob = await open('/ws/chat/doc-room', 'bob', 'user');
    const { epoch } = await bob.ofType<{ epoch: string }>('welcome');
    seen.push(await alice.ofType('system'));
    alice.send(clientExample('chat', 'message'));
    const message = await bob.ofType<{ id: string }>('message');
    seen.push(message);
    await hub.publish('chat:doc-room', { data: { text: 'maintenance at 22:00' } });
    seen.push(await bob.ofType('publication'));
    await bob.close();
    await alice.take((f) => f.type === 'system' && f.event === 'leave');
    const back = await open(`/ws/chat/doc-room?since=${message.id}&epoch=${epoch}`, 'bob', 'user');
    seen.push(await back.ofType('resumed'));
    const bob2 = back;
    alice.send(clientExample('chat', 'private'));
    seen.push(await bob2.ofType('private'));
    alice.send({ type: 'message', message: 'x'.repeat(501) });
    alice.send({ type: 'private', to: 'dave', message: 'hi' });
    seen.push(await alice.ofType('error'), await alice.ofType('error'));
    await bob2.close();
    seen.push(await alice.take((f) => f.type === 'system' && f.event === 'leave'));

    // /ws: the documented subscribe (resuming from a real position), a member's publish, a join and a leave,
    // unsubscribe, and a refused channel.
    const before = await hub.publish('chat:lobby', { data: { text: 'before' } });
    const multi = await open('/ws', 'alice-ws', 'user');
    multi.send({ ...clientExample('ws', 'subscribe'), since: before.id, epoch: before.epoch });
    seen.push(await multi.ofType('subscribed'), await multi.ofType('resumed'));
    multi.send(clientExample('ws', 'publish'));
    seen.push(await multi.ofType('publication'));
    const lobby = await open('/ws/chat/lobby', 'bob', 'user');
    seen.push(await multi.ofType('join'));
    await lobby.close();
    seen.push(await multi.ofType('leave'));
    multi.send(clientExample('ws', 'unsubscribe'));
    seen.push(await multi.ofType('unsubscribed'));
    multi.send({ type: 'subscribe', channel: 'user:alice-ws' });
    await multi.take((f) => f.type === 'subscribed' && f.channel === 'user:alice-ws');
    const personalAck = await fetch(gw.internal('/api/alerts'), {
      method: 'POST',
      headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' },
      body: JSON.stringify({ data: { text: 'confirm you are on call' }, users: ['alice-ws'], ack: { within_s: 600 } }),
    });
    expect(personalAck.status).toBe(202);
    const wsAck = await multi.take<{ id: string }>((f) => f.type === 'publication' && f.channel === 'user:alice-ws');
    seen.push(wsAck);
    multi.send({ ...clientExample('ws', 'ack'), id: wsAck.id });
    const stranger = await connect(gw.ws('/ws'), { protocols: ['bearer', token({ sub: 'x', role: 'doctor' })] });
    clients.push(stranger);
    stranger.send({ type: 'subscribe', channel: 'signaling:c-123' });
    seen.push(await stranger.ofType('error'));
    stranger.send({ type: 'subscribe', channel: 'ward:icu-3' });
    seen.push(await stranger.ofType('error'));

    // SSE: a stream of alerts and chat:lobby (the welcome), the documented send on it, an operator's disconnect
    // (the close event), and last, a drain (the reconnect event) that ends every connection of this gateway.
    const streamToken = token({ sub: 'sse-reader', role: 'authority' });
    const stream = await SseClient.open(gw.http('/sse?channel=alerts&channel=chat:lobby'), { authorization: `Bearer ${streamToken}` });
    streams.push(stream);
    const welcome = await stream.ofType('welcome');
    seen.push(welcome.data);
    const documented = examples.find((e) => e.direction === 'client' && e.endpoint === 'sse')!.frame;
    expect((await sendFrame(gw.http('/sse/send'), streamToken, welcome.data.session, documented.frame)).status).toBe(202);
    expect((await stream.ofType('publication')).data).toMatchObject({ user: 'sse-reader', data: (documented.frame as { data: unknown }).data });
    const disconnect = await fetch(gw.internal('/api/disconnect'), {
      method: 'POST',
      headers: { authorization: `Bearer ${token({ sub: 'ops', role: 'admin' })}`, 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'sse-reader', reason: 'maintenance' }),
    });
    expect(disconnect.status).toBe(202);
    seen.push((await stream.ofType('close')).data);
    const drained = await SseClient.open(gw.http('/sse?channel=alerts'), { authorization: `Bearer ${token({ sub: 'sse-drained', role: 'authority' })}` });
    streams.push(drained);
    await drained.ofType('welcome');
    void gw.connections.drain();
    seen.push((await drained.ofType('reconnect')).data);
  });

  afterAll(async () => {
    for (const client of clients) client.ws.terminate();
    await Promise.all(streams.map((s) => s.close()));
    await gw.close();
  });

  it('has examples for every endpoint', () => {
    expect(new Set(examples.map((e) => `${e.direction} ${e.endpoint}`))).toEqual(
      new Set(['client any', 'server any', 'server alerts', 'client alerts', 'client http', 'client signaling', 'server signaling', 'client chat', 'server chat', 'client ws', 'server ws', 'client sse', 'server sse']),
    );
  });

  it('shows client frames that the schemas accept', () => {
    for (const { direction, endpoint, frame } of examples) {
      if (direction !== 'client') continue;
      const type = frame.type as string;
      const schema =
        endpoint === 'signaling'
          ? SIGNALING_FRAMES[type as keyof typeof SIGNALING_FRAMES]
          : endpoint === 'chat'
            ? CHAT_FRAMES[type as keyof typeof CHAT_FRAMES]
            : endpoint === 'ws'
              ? WS_FRAMES[type as keyof typeof WS_FRAMES]
              : endpoint === 'http'
                ? AlertInputSchema
                : endpoint === 'alerts'
                  ? ALERT_FRAMES[type as keyof typeof ALERT_FRAMES]
                  : undefined;
      if (endpoint === 'any') expect(frame).toEqual({ type: 'ping' });
      else if (endpoint === 'sse') {
        // A POST /sse/send body: the session of a welcome, and a /ws frame.
        const sent = frame.frame as { type: keyof typeof WS_FRAMES };
        expect([typeof frame.session, Object.keys(frame).sort(), WS_FRAMES[sent.type]?.safeParse(sent).success]).toEqual(['string', ['frame', 'session'], true]);
      } else expect([endpoint, type, schema?.safeParse(frame).success]).toEqual([endpoint, type, true]);
    }
  });

  it('shows server frames with the shape of what the gateway sends', () => {
    const real = new Map(seen.map((frame) => [kind(frame), frame]));
    for (const { direction, frame } of examples) {
      if (direction !== 'server') continue;
      const match = real.get(kind(frame));
      expect([kind(frame), match && shape(match)]).toEqual([kind(frame), shape(frame)]);
    }
  });
});
