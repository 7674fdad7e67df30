import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import pino from 'pino';
import { createLogger, LineBatcher } from '../../src/logging/logger';

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
