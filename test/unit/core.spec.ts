import { AlertHistory } from '../../src/alerts/alert-history';
import { encodeAlertFrame, type Alert } from '../../src/alerts/alert';
import { compareStreamIds, formatStreamId, parseStreamId, StreamIdGenerator } from '../../src/bus/stream-id';
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

describe('AlertHistory', () => {
  const store = (history: AlertHistory, ms: number) => {
    const key = { ms, seq: 0 };
    const alert: Alert = { id: formatStreamId(key), ts: ms, data: { ms } };
    history.append({ alert, key, frame: encodeAlertFrame(alert), publishedAt: ms });
  };

  it('returns the alerts after an id, oldest first, and says whether the history covered it', () => {
    const history = new AlertHistory(3, 1000);
    for (const ms of [1001, 1002, 1003, 1004]) store(history, ms); // 1001 is evicted
    expect(history.size).toBe(3);
    const after = (id: string) => history.since(parseStreamId(id)!);
    expect(after('1002-0')).toMatchObject({ recovered: true });
    expect(after('1002-0').alerts.map((a) => a.alert.id)).toEqual(['1003-0', '1004-0']);
    expect(after('1001-0').alerts.map((a) => a.alert.id)).toEqual(['1002-0', '1003-0', '1004-0']);
    expect(after('1001-0').recovered).toBe(true);
    expect(after('1000-5').recovered).toBe(false); // 1001 was lost
    expect(after('1004-0')).toEqual({ alerts: [], recovered: true });
    expect(after('999-0').recovered).toBe(false); // before this process started
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
