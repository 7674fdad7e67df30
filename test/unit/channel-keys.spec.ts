import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/config';
import { NamespaceRegistry } from '../../src/channels/namespaces';
import { channelKeys, channelOf } from '../../src/channels/redis/channel-keys';
import { ROOT } from '../support/process';

/**
 * The Redis names docs/cluster.md documents for other services, byte for byte. Which channel keeps the SPEC's
 * fixed layout is the namespaces' knowledge (`single: true`), passed in as RedisBroker passes it.
 */
const singlesOf = (registry: NamespaceRegistry) => new Set(registry.all().filter((ns) => ns.single).map((ns) => ns.name));
const SHA1_OF_RETRY_1 = 'd82ccfec4cec9d72247684f713269ac1ce503beb';

describe('channel keys (docs/cluster.md)', () => {
  const { config } = loadConfig({});
  const singles = singlesOf(new NamespaceRegistry(config));

  it('alerts, the one single namespace built in, keeps the SPEC fixed names and classic pub/sub', () => {
    expect([...singles]).toEqual(['alerts']);
    const keys = channelKeys('rt', 'alerts', singles.has('alerts'));
    expect({ stream: keys.stream, meta: keys.meta, live: keys.live, sharded: keys.sharded }).toEqual({
      stream: 'rt:alerts:stream',
      meta: '{rt:alerts:stream}:meta',
      live: 'rt:alerts',
      sharded: false,
    });
    expect(keys.idempotency('retry-1')).toBe(`{rt:alerts:stream}:idem:${SHA1_OF_RETRY_1}`);
  });

  it.each([
    ['rt', 'chat:lobby'],
    ['rt', 'user:bob'],
    ['tst', 'signaling:c1'],
    ['rt', 'control'],
  ])('%s / %s: one hash tag around the channel, a shard channel on Redis Cluster', (prefix, channel) => {
    const keys = channelKeys(prefix, channel, singles.has(channel));
    expect({ stream: keys.stream, meta: keys.meta, live: keys.live, sharded: keys.sharded }).toEqual({
      stream: `${prefix}:{${channel}}:stream`,
      meta: `${prefix}:{${channel}}:meta`,
      live: `${prefix}:{${channel}}`,
      sharded: true,
    });
    expect(keys.idempotency('retry-1')).toBe(`${prefix}:{${channel}}:idem:${SHA1_OF_RETRY_1}`);
  });

  it('maps each pub/sub channel back to its channel, and nothing else', () => {
    for (const channel of ['alerts', 'chat:lobby', 'user:a:b{c}', 'signaling:c1']) {
      expect(channelOf('rt', channelKeys('rt', channel, singles.has(channel)).live, singles)).toBe(channel);
    }
    expect(channelOf('rt', 'rt:{}', singles)).toBe('');
    for (const foreign of ['rt:chat:lobby', 'rt:{chat', 'rt:alerts:stream', 'other:alerts', 'other:{chat:lobby}', 'rt', 'alerts']) {
      expect(channelOf('rt', foreign, singles)).toBeUndefined();
    }
    // Without the namespaces' word, `rt:alerts` is not a channel's name.
    expect(channelOf('rt', 'rt:alerts', new Set())).toBeUndefined();
  });

  it('a CHANNELS_FILE namespace gets the hash-tag layout; a configured alerts stays single', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'rt-keys-')), 'channels.yaml');
    writeFileSync(path, 'namespaces:\n  ward: { history: { size: 50 } }\n  alerts: { history: { size: 10 } }\n');
    const configured = singlesOf(new NamespaceRegistry(loadConfig({ CHANNELS_FILE: path }).config));
    expect([...configured]).toEqual(['alerts']);
    expect(channelKeys('rt', 'ward:3', configured.has('ward:3')).stream).toBe('rt:{ward:3}:stream');
    expect(channelKeys('rt', 'alerts', configured.has('alerts')).stream).toBe('rt:alerts:stream');
  });

  it('names no channel itself: the layout is chosen by what it is told', () => {
    const source = readFileSync(join(ROOT, 'src/channels/redis/channel-keys.ts'), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    expect(source).not.toMatch(/alerts/);
  });
});
