import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server as HttpServer } from 'node:http';
import { join } from 'node:path';
import { Server as SocketIoServer } from 'socket.io';
import { RedisProcess } from '../support/redis';

// A smoke test of the benchmark's own load side and counters (`npm run bench` itself is too long for CI): the
// figures in docs/benchmarks.md are only as true as these parts.
/* eslint-disable @typescript-eslint/no-require-imports */
const { measureFanout } = require('../../bench/fanout') as {
  measureFanout(peer: string, subscribers: number, opts: { redisUrl: string; targetDeliveries: number }): Promise<Record<string, { perCpuSec: number }>>;
};
const { measureSlowConsumer } = require('../../bench/slow-consumer') as {
  measureSlowConsumer(opts: Record<string, unknown>): Promise<{ stalledClosedByServer: number; stalledDialed: number; rounds: { alone: number; beside: number }[] }>;
};

const { measureRedisCost } = require('../../bench/topologies') as {
  measureRedisCost(url: string, ports: number[], replicas: number, messages: number, kind: string): Promise<{ callsPerMessage: Record<string, number>; bytesOutPerMessage: number; gatewayCpuUsPerMessage: number[]; cpuUsPerMessage: number }>;
};

const { measureWebhooks } = require('../../bench/webhooks') as {
  measureWebhooks(opts: Record<string, unknown>): Promise<{ rounds: { events: number; churnCpuOn: number; churnCpuOff: number; usPerEvent: number; fanoutOn: number; fanoutOff: number }[] }>;
};

const { measureReceipts } = require('../../bench/receipts') as {
  measureReceipts(opts: Record<string, unknown>): Promise<{ rounds: Record<string, { on: Record<string, number>; off: Record<string, number> }>[]; bytes: { recipients: number; delivered: number; deliveredBytes: number; ackedBytes: number; description: number } }>;
};

interface SseRound { ws: Record<string, number>; sse: Record<string, number> }
const { measureSse, sseTable } = require('../../bench/sse') as {
  measureSse(opts: Record<string, unknown>): Promise<{ rounds: SseRound[] }>;
  sseTable(result: { rounds: SseRound[] }): string;
};
const { sseCounter } = require('../../bench/load/sse-events') as { sseCounter(onEvent: () => void): (chunk: Buffer) => void };

interface HopStat { min: number; p50: number; p99: number; n: number }
const { measureLatency } = require('../../bench/cluster-latency') as {
  measureLatency(opts: Record<string, unknown>): Promise<{
    deliveries: number; expected: number; p50: number; hops: Record<string, HopStat | undefined>;
    cpu: { a: number; b: number }; stalls: Record<'a' | 'b', { loop: { p99: number }; gc: Record<string, { count: number }> }>;
  }>;
};

const SINK = join(__dirname, '..', '..', 'bench', 'load', 'sink.js');

function next(child: ChildProcess, type: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const on = (msg: Record<string, unknown>) => {
      if (msg.type !== type) return;
      child.off('message', on);
      resolve(msg);
    };
    child.on('message', on);
  });
}

describe('benchmark harness', () => {
  let redis: RedisProcess;
  beforeAll(async () => {
    redis = await RedisProcess.start();
  });
  afterAll(() => redis.stop());

  it('keeps Socket.IO sockets open through engine.io heartbeats (the sink answers pings)', async () => {
    const http: HttpServer = createServer();
    const io = new SocketIoServer(http, { transports: ['websocket'], pingInterval: 100, pingTimeout: 100 });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const { port } = http.address() as { port: number };
    const sockets = 10;
    let heartbeats = 0;
    let enough: () => void;
    let lost: (error: Error) => void;
    const answered = new Promise<void>((resolve, reject) => ((enough = resolve), (lost = reject)));
    io.engine.on('connection', (socket: { on(event: string, fn: (reason?: string) => void): void }) => {
      socket.on('heartbeat', () => {
        if (++heartbeats === sockets * 4) enough();
      });
      socket.on('close', (reason) => lost(new Error(`Socket.IO closed a sink socket: ${reason}`)));
    });
    const sink = fork(SINK, [`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, String(sockets), 'socketio'], { stdio: 'ignore' });
    try {
      await next(sink, 'ready');
      sink.send({ type: 'dial' });
      expect((await next(sink, 'dialed')).open).toBe(sockets);
      // Four pongs per socket span twice pingInterval + pingTimeout: an unanswered ping would have closed it.
      await answered;
      expect(io.engine.clientsCount).toBe(sockets);
    } finally {
      sink.kill('SIGKILL');
      await new Promise<void>((resolve) => io.close(() => resolve()));
    }
  });

  it('measures fan-out for the gateway and Socket.IO with every frame accounted for', async () => {
    for (const peer of ['gateway', 'socketio']) {
      const result = await measureFanout(peer, 50, { redisUrl: redis.url, targetDeliveries: 500 });
      expect(result.single.perCpuSec).toBeGreaterThan(0);
      expect(result.burst8.perCpuSec).toBeGreaterThan(0);
    }
  }, 60_000);

  it('measures webhooks with every event delivered to its receiver before the CPU is read', async () => {
    const { rounds } = await measureWebhooks({ rounds: 1, sockets: 50, subscribers: 50, deliveries: 500 });
    // Two churns of 50 sockets (warm-up and measured), each socket an opened and a closed event.
    expect(rounds[0].events).toBe(200);
    expect(rounds[0].churnCpuOn).toBeGreaterThan(0);
    expect(rounds[0].fanoutOn).toBeGreaterThan(0);
    expect(rounds[0].fanoutOff).toBeGreaterThan(0);
  }, 60_000);

  it('measures receipts: fan-out with and without ack in both modes, and the bytes of a receipt every recipient got', async () => {
    const result = await measureReceipts({ rounds: 1, subscribers: 50, deliveries: 500, redisUrl: redis.url });
    for (const peer of ['gateway', 'gateway-cluster']) {
      for (const side of ['on', 'off'] as const) expect([peer, side, result.rounds[0][peer][side].single > 0, result.rounds[0][peer][side].burst8 > 0]).toEqual([peer, side, true, true]);
    }
    // Every recipient's delivery was in Redis before the bytes were read.
    expect(result.bytes).toMatchObject({ recipients: 50, delivered: 50 });
    expect(result.bytes.deliveredBytes).toBeGreaterThan(50 * 10);
    expect(result.bytes.ackedBytes).toBeGreaterThan(50 * 10);
  }, 120_000);

  it('counts the stalled sockets the gateway closes on its own side', async () => {
    // 64 KB at 50/s fills a loopback socket's kernel buffer (4-6 MB) in about 2 s, then SLOW_CONSUMER_BYTES.
    const result = await measureSlowConsumer({
      peer: 'gateway', redisUrl: redis.url, rate: 50, bytes: 64 * 1024, seconds: 4, warmupSeconds: 0.5,
      healthy: 1, stalled: 3, pairs: 1, probeCount: 1,
    });
    expect(result.stalledDialed).toBe(3);
    expect(result.stalledClosedByServer).toBe(3);
    expect(result.rounds[0].alone).toBeGreaterThan(0);
  }, 60_000);

  it("reads Redis's own counters per published message (the figures docs/scaling.md is computed from)", async () => {
    // Two replicas on a chat-like channel: each message is one publish script (XADD and PUBLISH inside) and its
    // notice is written to both replicas, about 1 KB each.
    const port = Number(new URL(redis.url).port);
    const chat = await measureRedisCost(redis.url, [port], 2, 800, 'chat');
    expect(chat.callsPerMessage.evalsha).toBeCloseTo(1, 2);
    expect(chat.callsPerMessage.publish).toBeCloseTo(1, 2);
    expect(chat.callsPerMessage.xadd).toBeCloseTo(1, 2);
    expect(chat.bytesOutPerMessage).toBeGreaterThan(2 * 1000);
    expect(chat.gatewayCpuUsPerMessage).toHaveLength(2);
    // The alerts channel is tailed with XREAD instead: no PUBLISH at all.
    const alerts = await measureRedisCost(redis.url, [port], 1, 800, 'alerts');
    expect(alerts.callsPerMessage.publish).toBeUndefined();
    expect(alerts.callsPerMessage.xread).toBeGreaterThan(0);
  }, 60_000);

  it('counts SSE events exactly, however TCP splits the stream (the SSE sink)', () => {
    // Chunked framing, an id line, a comment, a JSON string holding "data:" and an event without a space after data:.
    const events = ['id: c1.YWxlcnRz~e~1-0\ndata: {"type":"welcome"}\n\n', ':\n\n', 'data: {"text":"data: not an event"}\n\n', 'data:{"n":2}\n\n'];
    const body = Buffer.from(events.map((e) => `${Buffer.byteLength(e).toString(16)}\r\n${e}\r\n`).join(''));
    for (let size = 1; size <= body.length; size++) {
      let counted = 0;
      const count = sseCounter(() => counted++);
      for (let at = 0; at < body.length; at += size) count(body.subarray(at, at + size));
      expect(counted).toBe(3);
    }
  });

  it('measures SSE against WebSocket on the same channel: fan-out with every event counted exactly, idle memory, latency', async () => {
    const result = await measureSse({
      rounds: 1, idle: 50, subscribers: 50, deliveries: 500, redisUrl: redis.url, latency: { rate: 200, seconds: 1, subscribers: 2 },
    });
    for (const transport of ['ws', 'sse'] as const) {
      const row = result.rounds[0][transport];
      expect(row.single).toBeGreaterThan(0);
      expect(row.burst8).toBeGreaterThan(0);
      expect(row.rss).toEqual(expect.any(Number));
      expect(row.heap).toBeGreaterThan(0);
      expect(row.deliveries).toBe(row.expected); // every publication reached every subscriber
      expect(row.p99).toBeGreaterThan(0);
    }
    // The table names each target, so the recorded run says whether it is met.
    const table = sseTable(result);
    expect(table.match(/≥ 0\.8: (met|\*\*not met\*\*)/g)).toHaveLength(2);
    expect(table).toMatch(/idle RSS per connection at 50, after GC .* ≤ 1\.5: /);
    expect(table).toMatch(/publish → delivery p50 \/ p99, 200\/s .* ≤ 1\.5: /);
  }, 90_000);

  it.each([
    ['gateway', ['post', 'publish', 'toB', 'woke', 'channel', 'socket']],
    ['socketio', ['post', 'publish', 'toB', 'socket']],
  ])('times each hop of a cross-replica alert (%s, --hops): every measured alert stamped at every hop', async (peer, hops) => {
    const result = await measureLatency({ peer, rate: 200, seconds: 1, subscribers: 2, redisUrl: redis.url, hops: true, watch: true });
    expect(result.deliveries).toBe(result.expected);
    expect(Object.keys(result.hops).sort()).toEqual([...hops].sort());
    for (const hop of hops) {
      const stat = result.hops[hop]!;
      // Every measured alert (200 of them; the last hop once per subscriber) found its stamps on both replicas.
      expect(stat.n).toBe(hop === 'socket' ? result.expected : result.expected / 2);
      expect(stat.p99).toBeGreaterThanOrEqual(stat.p50);
      // No hop's median is longer than the whole way's: the stamps are on one clock and in order.
      expect(stat.p50).toBeLessThanOrEqual(result.p50);
      // Within one process the stamps cannot go backwards (across two, their clocks may differ by a fraction of a ms).
      if (hop === 'publish' || hop === 'channel') expect(stat.min).toBeGreaterThanOrEqual(0);
    }
    expect(result.cpu.a).toBeGreaterThan(0);
    expect(result.cpu.b).toBeGreaterThan(0);
    expect(result.stalls.a.loop.p99).toBeGreaterThan(0);
  }, 60_000);
});

