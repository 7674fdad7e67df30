import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import pino from 'pino';
import { PassThrough } from 'node:stream';
import { createLogger, hotLine, jsonString, LineBatcher, stdoutDestination } from '../../src/logging/logger';

describe('LineBatcher (the log destination)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rg-log-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function setup(batchChars: number) {
    const path = join(dir, `${batchChars}-${Math.random()}.log`);
    const out = pino.destination({ fd: openSync(path, 'w'), sync: false });
    const batcher = new LineBatcher(out, batchChars);
    const lines = () => readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    return { out, batcher, lines, log: createLogger('info', 'n1', batcher) };
  }

  it('holds short lines until a flush, then writes them whole and in order', () => {
    const { batcher, lines, log } = setup(16_384);
    log.info({ event: 'connect', conn: 'a' }, 'one');
    log.info({ event: 'close', conn: 'a' }, 'two');
    expect(lines()).toEqual([]);
    batcher.flushSync();
    expect(lines().map((l) => [l.msg, l.conn, l.node, l.level])).toEqual([
      ['one', 'a', 'n1', 'info'],
      ['two', 'a', 'n1', 'info'],
    ]);
  });

  it('writes by itself once a batch is full', async () => {
    const { out, lines, log } = setup(1_000);
    const written = once(out, 'write');
    for (let i = 0; i < 20; i++) log.info({ event: 'connect', conn: String(i) }, 'connection opened');
    await written;
    const got = lines();
    expect(got.length).toBeGreaterThan(0);
    expect(got.length).toBeLessThan(20); // the tail of the last batch is still held
    expect(got.map((l) => l.conn)).toEqual(got.map((_, i) => String(i)));
  });

  it('redacts credential-bearing keys even if code passes them by mistake', () => {
    const { batcher, lines, log } = setup(16_384);
    log.info({ token: 'eyJhbGciOi.secret', headers: { authorization: 'Bearer x' } }, 'oops');
    batcher.flushSync();
    expect(JSON.stringify(lines())).not.toMatch(/secret|Bearer/);
  });
});

describe('hotLine (connect and close lines without pino\'s generic path)', () => {
  const strings = ['', 'alice', 'a"b', 'back\\slash', 'tab\there', 'new\nline', 'caf\u00e9 \u{1F600}', 'lone \ud800 surrogate', 'x'.repeat(100), 'y'.repeat(101) + '"', '\u0000', '\u007f\u2028'];

  function capture(level = 'info', bindings?: Record<string, unknown>) {
    const lines: string[] = [];
    let log = createLogger(level, 'node-"1"', { write: (line: string) => void lines.push(line) });
    if (bindings) log = log.child(bindings);
    return { log, lines };
  }

  it.each(strings)('writes what pino writes for %j', (value) => {
    const pinoOut = capture();
    const ours = capture();
    const line = hotLine(ours.log, 'info', 'connection closed')!;
    expect(line.enabled).toBe(true);
    pinoOut.log.info({ event: 'close', conn: value, gateway: 'alerts', sub: value, code: 1000, reason: value, durationMs: 12 }, 'connection closed');
    line.write(`,"event":"close","conn":${jsonString(value)},"gateway":${jsonString('alerts')},"sub":${jsonString(value)},"code":${1000},"reason":${jsonString(value)},"durationMs":${12}`);
    // Same bytes apart from the timestamp, which may tick between the two lines.
    const untimed = (l: string) => l.replace(/"time":"[^"]*"/, '"time":""');
    expect(untimed(ours.lines[0])).toBe(untimed(pinoOut.lines[0]));
  });

  it('follows bindings and level changes', () => {
    const { log, lines } = capture('info', { component: 'x' });
    const line = hotLine(log, 'info', 'connection opened')!;
    line.write(',"event":"connect"');
    expect(JSON.parse(lines[0])).toMatchObject({ level: 'info', node: 'node-"1"', component: 'x', event: 'connect', msg: 'connection opened' });
    log.level = 'warn';
    expect(line.enabled).toBe(false);
  });

  it('steps aside for pino features it does not reproduce', () => {
    const log = pino({ mixin: () => ({ extra: 1 }) }, { write: () => undefined });
    expect(hotLine(log, 'info', 'connection opened')).toBeUndefined();
  });
});

describe('stdout for people (a terminal, outside production)', () => {
  it('writes readable lines instead of JSON, with the same fields and the same redaction', () => {
    const terminal = new PassThrough();
    let text = '';
    terminal.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const log = createLogger('info', 'node-1', stdoutDestination('development', true, terminal));
    log.info({ event: 'listening', port: 8080, token: 'secret-token-value' }, 'realtime-gateway listening');
    expect(text).toMatch(/INFO.*realtime-gateway listening/);
    expect(text).toMatch(/event: "listening"/);
    expect(text).not.toMatch(/^\{/);
    expect(text).not.toContain('secret-token-value');
  });
});
