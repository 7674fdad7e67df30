import { IdempotencyCache } from '../../src/channels/idempotency';
import { jsonDepthExceeds, MessageLimits } from '../../src/channels/message-limits';
import { MemoryHistory } from '../../src/channels/memory-history';
import { compareStreamIds, formatStreamId, parseStreamId, StreamIdGenerator } from '../../src/channels/stream-id';
import { closeCodeLabel } from '../../src/connection/close-codes';
import type { Connection } from '../../src/connection/connection';
import { ConnectionRegistry } from '../../src/connection/connection-registry';
import { TokenBucket } from '../../src/connection/token-bucket';

describe('TokenBucket', () => {
  it('allows a burst, then the rate, and counts refusals until the bucket is full again', () => {
    const bucket = new TokenBucket(10, 3, 0);
    expect([bucket.take(0), bucket.take(0), bucket.take(0), bucket.take(0)]).toEqual([true, true, true, false]);
    expect(bucket.dropped).toBe(1);
    expect(bucket.take(100)).toBe(true); // +1 token after 100 ms at 10/s
    expect(bucket.take(100)).toBe(false);
    expect(bucket.dropped).toBe(2);
    expect(bucket.take(1000)).toBe(true); // refilled to the burst: the slate is clean
    expect(bucket.dropped).toBe(0);
  });

  it('spends a start credit beyond the burst once, and never refills above the burst', () => {
    const bucket = new TokenBucket(10, 3, 0, 5);
    expect(Array.from({ length: 9 }, () => bucket.take(0))).toEqual([true, true, true, true, true, true, true, true, false]);
    expect(bucket.take(10_000)).toBe(true); // refilled: to the burst only
    expect([bucket.take(10_000), bucket.take(10_000), bucket.take(10_000)]).toEqual([true, true, false]);
    const unused = new TokenBucket(10, 3, 0, 5);
    expect(unused.take(60_000)).toBe(true); // time passing does not take the credit away
    expect(Array.from({ length: 8 }, () => unused.take(60_000)).filter(Boolean).length).toBe(7);
  });
});

describe('stream ids', () => {
  it('parse, compare and increase even if the clock steps back', () => {
    const ids = new StreamIdGenerator();
    const a = ids.next(1000);
    const b = ids.next(1000);
    const c = ids.next(900);
    const d = ids.next(2000);
    expect([a, b, c, d].map(formatStreamId)).toEqual(['1000-0', '1000-1', '1000-2', '2000-0']);
    expect(compareStreamIds(parseStreamId('5-1')!, parseStreamId('5-0')!)).toBeGreaterThan(0);
    expect(parseStreamId('5')).toBeUndefined();
    expect(parseStreamId('-1-0')).toBeUndefined();
  });
});

describe('MemoryHistory', () => {
  const store = (history: MemoryHistory, ms: number) => {
    const key = { ms, seq: 0 };
    history.append({ channel: 'alerts', id: formatStreamId(key), key, ts: ms, origin: 'n', data: { ms } }, ms);
  };

  it('returns the publications after an id, oldest first, and proves continuity only when it holds', () => {
    const history = new MemoryHistory('e1', 3, 1000);
    for (const ms of [1001, 1002, 1003, 1004]) store(history, ms); // 1001 is evicted
    expect(history.size).toBe(3);
    const after = (id: string, epoch?: string) => history.since({ id, epoch });
    expect(after('1002-0')).toMatchObject({ recovered: true, epoch: 'e1', top: '1004-0' });
    expect(after('1002-0').publications.map((p) => p.id)).toEqual(['1003-0', '1004-0']);
    expect(after('1001-0').publications.map((p) => p.id)).toEqual(['1002-0', '1003-0', '1004-0']);
    expect(after('1001-0').recovered).toBe(true);
    expect(after('1000-5').recovered).toBe(false); // 1001 was lost
    expect(after('1004-0')).toMatchObject({ publications: [], recovered: true });
    expect(after('999-0').recovered).toBe(false); // before this history began
    expect(after('1004-0', 'e1').recovered).toBe(true);
    expect(after('1004-0', 'other').recovered).toBe(false); // another epoch: that history is gone
    expect(after('9999999999999-0').recovered).toBe(false); // ahead of the channel
    expect(history.since({ id: '1002-0' }, 1).publications.map((p) => p.id)).toEqual(['1003-0']);
  });
});

describe('MessageLimits', () => {
  it('measures JSON depth without parsing, ignoring brackets inside strings', () => {
    expect(jsonDepthExceeds('{"a":{"b":[1]}}', 3)).toBe(false);
    expect(jsonDepthExceeds('{"a":{"b":[1]}}', 2)).toBe(true);
    expect(jsonDepthExceeds('{"a":"[[[[{{{{\\"[[["}', 1)).toBe(false);
    expect(jsonDepthExceeds('['.repeat(100_000), 32)).toBe(true);
  });

  it('refuses what is too large (413), too deep, not JSON or not an object (400)', () => {
    const limits = new MessageLimits(100, 4);
    expect(limits.parseObject('{"data":{"x":1}}')).toEqual({ ok: true, value: { data: { x: 1 } } });
    expect(limits.parseObject(`{"data":"${'x'.repeat(100)}"}`)).toMatchObject({ ok: false, status: 413 });
    expect(limits.parseObject('{"a":{"b":{"c":{"d":{}}}}}')).toMatchObject({ ok: false, status: 400, reason: expect.stringContaining('MAX_JSON_DEPTH') });
    expect(limits.parseObject('{"a":')).toMatchObject({ ok: false, status: 400, reason: 'not valid JSON' });
    expect(limits.parseObject('[1]')).toMatchObject({ ok: false, status: 400, reason: 'not a JSON object' });
  });
});

describe('ConnectionRegistry', () => {
  const conn = (id: string, sub: string, gateway = 'chat') => ({ id, gateway, user: { sub, role: 'r' } }) as unknown as Connection;

  it('indexes by id, gateway, user and room, and removes every trace', () => {
    const registry = new ConnectionRegistry();
    const a = conn('1', 'alice');
    const b = conn('2', 'alice');
    registry.add(a);
    registry.add(b);
    expect(registry.join(a, 'chat:lobby')).toBe(true);
    expect(registry.join(b, 'chat:lobby')).toBe(false);
    expect(registry.ofUser('alice').size).toBe(2);
    expect(registry.inRoom('chat:lobby').size).toBe(2);
    expect(registry.remove(a)).toEqual([]);
    expect(registry.remove(b)).toEqual(['chat:lobby']);
    expect(registry.stats()).toEqual({ connections: 0, gateways: 0, users: 0, rooms: 0 });
    expect(registry.remove(b)).toEqual([]);
  });

  it('reports when the last local member leaves a room', () => {
    const registry = new ConnectionRegistry();
    const a = conn('1', 'a');
    registry.add(a);
    registry.join(a, 'r');
    expect(registry.leave(a, 'r')).toBe(true);
    expect(registry.leave(a, 'r')).toBe(false);
  });
});

describe('close code labels', () => {
  it('keeps the SPEC codes and collapses anything else', () => {
    expect(['1000', '1006', '1013', '4001']).toEqual([1000, 1006, 1013, 4001].map(closeCodeLabel));
    expect(closeCodeLabel(4567)).toBe('other');
    expect(closeCodeLabel(999)).toBe('invalid');
  });
});

describe('IdempotencyCache', () => {
  it('keeps first answers for the TTL and at most maxEntries, oldest first out', () => {
    const cache = new IdempotencyCache<string>(1000, 2);
    cache.set('a', 'first', 0);
    expect(cache.get('a', 999)).toBe('first');
    expect(cache.get('a', 1000)).toBeUndefined();
    cache.set('b', 'b', 2000);
    cache.set('c', 'c', 2001);
    cache.set('d', 'd', 2002);
    expect([cache.get('b', 2003), cache.get('c', 2003), cache.get('d', 2003)]).toEqual([undefined, 'c', 'd']);
  });
});
