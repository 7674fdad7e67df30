import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../src/config/config';
import { NamespaceRegistry } from '../../src/channels/namespaces';
import { ChannelPermissions, ProxyQuestion, claimAdmits } from '../../src/channels/permissions';
import { cleanReason } from '../../src/channels/subscribe-proxy';

const dir = mkdtempSync(join(tmpdir(), 'rt-ns-'));
let n = 0;
function file(content: string, ext = 'yaml'): string {
  const path = join(dir, `channels-${++n}.${ext}`);
  writeFileSync(path, content);
  return path;
}
const problems = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).message.split('\n');
  }
  throw new Error('expected a ConfigError');
};

describe('CHANNELS_FILE', () => {
  it('without a file: the built-in namespaces, signaling by claim, alerts for authorities and admins', () => {
    const { config } = loadConfig({ HISTORY_SIZE: '500', HISTORY_TTL_MS: '60000' });
    const byName = Object.fromEntries(config.namespaces.map((ns) => [ns.name, ns]));
    expect(Object.keys(byName)).toEqual(['alerts', 'user', 'chat', 'signaling']);
    expect(byName.alerts).toMatchObject({ single: true, historySize: 500, historyTtlMs: 0, subscribe: { mode: 'any', roles: ['authority', 'admin'] }, publish: 'server' });
    expect(byName.chat).toMatchObject({ historySize: 500, historyTtlMs: 60000, presence: true, joinLeave: true, publish: 'members' });
    expect(byName.signaling).toMatchObject({ historySize: 0, subscribe: { mode: 'claim', roles: ['doctor', 'patient'] } });
  });

  it('adds a namespace from YAML and replaces a built-in one from JSON, keeping the others', () => {
    const yaml = file('namespaces:\n  ward:\n    history: { size: 50, ttl_s: 60 }\n    subscribe: { mode: claim, roles: [nurse] }\n    publish: members\n');
    const ward = loadConfig({ CHANNELS_FILE: yaml }).config.namespaces.find((ns) => ns.name === 'ward');
    expect(ward).toEqual({
      name: 'ward', single: false, historySize: 50, historyTtlMs: 60_000, presence: false, joinLeave: false,
      subscribe: { mode: 'claim', roles: ['nurse'] }, publish: 'members', maxMessageBytes: 65536,
    });
    const json = file(JSON.stringify({ namespaces: { chat: { history: { size: 5 }, subscribe: { mode: 'claim' } } } }), 'json');
    const names = loadConfig({ CHANNELS_FILE: json }).config.namespaces.map((ns) => `${ns.name}:${ns.subscribe.mode}:${ns.historySize}`);
    expect(names).toEqual(['alerts:any:10000', 'user:any:10000', 'chat:claim:5', 'signaling:claim:0']);
  });

  it('reports every problem at once, one line each, naming where it is', () => {
    const bad = file(
      [
        'namespaces:',
        '  ward:',
        '    history: { size: 10, ttl_s: 0.5 }',
        '    colour: blue',
        '    subscribe: { mode: maybe, roles: nurse }',
        '  Bad Name: {}',
        '  news:',
        '    join_leave: true',
        '    max_message_bytes: 99999999',
        '    publish: everyone',
        'extra: 1',
      ].join('\n'),
    );
    expect(problems({ CHANNELS_FILE: bad }).sort()).toEqual(
      [
        'CHANNELS_FILE: extra: unknown key (the file holds "namespaces")',
        'CHANNELS_FILE: namespaces.ward.history.ttl_s: must be a whole number between 1 and 2592000',
        'CHANNELS_FILE: namespaces.ward.colour: unknown option (known: history, presence, join_leave, subscribe, publish, max_message_bytes)',
        'CHANNELS_FILE: namespaces.ward.subscribe.mode: must be any, claim or proxy',
        'CHANNELS_FILE: namespaces.ward.subscribe.roles: must be a list of role names (letters, digits, _ . : -), e.g. [doctor, nurse]',
        'CHANNELS_FILE: namespaces.Bad Name: a namespace name is 1-32 lowercase letters, digits, _ or -, starting with a letter',
        'CHANNELS_FILE: namespaces.news.max_message_bytes: must be a whole number between 2 and 65536',
        'CHANNELS_FILE: namespaces.news.publish: must be server or members',
        'CHANNELS_FILE: namespaces.news.join_leave: needs presence: true (joins and leaves are changes of the member list)',
      ].sort(),
    );
  });

  it('takes ttl_s: 0 as never, and refuses members publishing on user:<sub> (nothing could deliver it)', () => {
    const ok = loadConfig({ CHANNELS_FILE: file('namespaces:\n  ward: { history: { size: 5, ttl_s: 0 } }\n') }).config.namespaces.find((ns) => ns.name === 'ward');
    expect(ok?.historyTtlMs).toBe(0);
    expect(problems({ CHANNELS_FILE: file('namespaces:\n  user: { publish: members }\n') })).toEqual(['CHANNELS_FILE: namespaces.user.publish: user:<sub> is published by the server only (server API, Redis)']);
  });

  it('names a missing or unparsable file without echoing its contents', () => {
    expect(problems({ CHANNELS_FILE: join(dir, 'nope.yaml') })).toEqual(['CHANNELS_FILE: cannot read the file (ENOENT); set it to a readable YAML or JSON file']);
    const [line] = problems({ CHANNELS_FILE: file('namespaces: { chat: [unclosed\nsecret-ish: x') });
    expect(line).toMatch(/^CHANNELS_FILE: is not valid YAML or JSON \(line \d+, column \d+\): [a-z ]+$/);
    expect(line).not.toContain('secret');
    expect(problems({ CHANNELS_FILE: file('[1, 2]') })[0]).toContain('must hold a "namespaces" map');
    expect(problems({ CHANNELS_FILE: file('namespaces:\n  ward: {}\n  ward: {}\n') })).toEqual(['CHANNELS_FILE: is not valid YAML or JSON (line 3, column 3): duplicated mapping key']);
    const many = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`ns${i}`, {}]));
    expect(problems({ CHANNELS_FILE: file(JSON.stringify({ namespaces: many }), 'json') })[0]).toMatch(/^CHANNELS_FILE: namespaces: at most 256 namespaces/);
  });

  it('refuses a proxy namespace while SUBSCRIBE_PROXY_URL is unset: one line per namespace, naming it', () => {
    const proxied = file('namespaces:\n  ward: { subscribe: { mode: proxy, roles: [nurse] } }\n  user: { subscribe: { mode: proxy } }\n  news: {}\n');
    expect(problems({ CHANNELS_FILE: proxied }).sort()).toEqual([
      'CHANNELS_FILE: namespaces.user.subscribe.mode: proxy needs SUBSCRIBE_PROXY_URL, which is not set; set SUBSCRIBE_PROXY_URL and PROXY_SECRET, or use mode any or claim',
      'CHANNELS_FILE: namespaces.ward.subscribe.mode: proxy needs SUBSCRIBE_PROXY_URL, which is not set; set SUBSCRIBE_PROXY_URL and PROXY_SECRET, or use mode any or claim',
    ]);
    const { config, warnings } = loadConfig({ CHANNELS_FILE: proxied, SUBSCRIBE_PROXY_URL: 'http://127.0.0.1:1/subscribe', PROXY_SECRET: 's3cret-value' });
    expect(config.namespaces.filter((ns) => ns.subscribe.mode === 'proxy').map((ns) => ns.name)).toEqual(['user', 'ward']);
    expect(warnings.join('\n')).not.toMatch(/PROXY/);
  });

  it('warns when signaling is opened to any token', () => {
    const { warnings } = loadConfig({ CHANNELS_FILE: file('namespaces:\n  signaling: { subscribe: { mode: any } }\n') });
    expect(warnings.join('\n')).toContain('any doctor or patient token can take a seat in any consultation');
  });
});

describe('channel permissions', () => {
  const { config } = loadConfig({ CHANNELS_FILE: file('namespaces:\n  ward: { subscribe: { mode: claim, roles: [nurse] } }\n  news: {}\n') });
  const permissions = new ChannelPermissions(new NamespaceRegistry(config));
  /** These namespaces are all decided locally: the answer is never a promise. */
  const check = (user: Parameters<ChannelPermissions['check']>[0], channel: string) => {
    const answer = permissions.check(user, channel);
    if (answer instanceof Promise) throw new Error(`${channel}: a promise for a namespace decided locally`);
    return answer;
  };
  const nurse = { sub: 'n1', role: 'nurse', channels: ['ward:7-*', 'ward:icu'] };

  it('admits by exact name or by a prefix ending in *', () => {
    expect(claimAdmits(nurse.channels, 'ward:7-a')).toBe(true);
    expect(claimAdmits(nurse.channels, 'ward:icu')).toBe(true);
    expect(claimAdmits(nurse.channels, 'ward:icu2')).toBe(false);
    expect(claimAdmits(nurse.channels, 'ward:8')).toBe(false);
    expect(claimAdmits(undefined, 'ward:7-a')).toBe(false);
  });

  it('takes a prefix only within a namespace: "*" or "sig*" admits nothing, "signaling:*" every consultation', () => {
    for (const claim of ['*', 'sig*', 'signaling*', ':*']) expect([claim, claimAdmits([claim], 'signaling:c-1')]).toEqual([claim, false]);
    expect(claimAdmits(['signaling:*'], 'signaling:c-1')).toBe(true);
    expect(claimAdmits(['signaling:*'], 'ward:c-1')).toBe(false);
  });

  it('checks roles, then the claim; user:<sub> only for <sub>; unknown and malformed channels are unknown_channel', () => {
    expect(check(nurse, 'ward:7-a')).toBeUndefined();
    expect(check(nurse, 'ward:8')?.code).toBe('forbidden_channel');
    expect(check({ sub: 'd', role: 'doctor', channels: ['ward:*'] }, 'ward:8')?.code).toBe('forbidden_role');
    expect(check(nurse, 'news:today')).toBeUndefined();
    expect(check(nurse, 'user:n1')).toBeUndefined();
    expect(check(nurse, 'user:n2')?.code).toBe('forbidden_channel');
    for (const channel of ['nope:x', 'ward:', 'ward:..', 'ward:a/b', 'alerts:x', 'x'.repeat(300), '']) {
      expect([channel, check(nurse, channel)?.code]).toEqual([channel, 'unknown_channel']);
    }
  });
});

describe('channel permissions of a proxy namespace', () => {
  const { config } = loadConfig({
    CHANNELS_FILE: file('namespaces:\n  ward: { subscribe: { mode: proxy, roles: [nurse] } }\n  user: { subscribe: { mode: proxy } }\n'),
    SUBSCRIBE_PROXY_URL: 'http://127.0.0.1:1/subscribe',
    PROXY_SECRET: 's3cret-value',
  });
  // No SubscribeProxy given: what the gateway checks itself is all this can show (the e2e asks a real backend).
  const permissions = new ChannelPermissions(new NamespaceRegistry(config));
  const nurse = { sub: 'n1', role: 'nurse' };

  it('answers roles and user:<sub> itself, synchronously, and leaves only what passes to the backend', () => {
    expect(permissions.checkLocally({ sub: 'd1', role: 'doctor' }, 'ward:icu')).toMatchObject({ status: 403, code: 'forbidden_role' });
    expect(permissions.checkLocally(nurse, 'user:n2')).toMatchObject({ status: 403, code: 'forbidden_channel' });
    expect(permissions.checkLocally(nurse, 'ward:..')).toMatchObject({ status: 400, code: 'unknown_channel' });
    expect(permissions.check({ sub: 'd1', role: 'doctor' }, 'ward:icu')).not.toBeInstanceOf(Promise);
    const question = permissions.checkLocally(nurse, 'ward:icu');
    expect(question).toBeInstanceOf(ProxyQuestion);
    expect(question).toMatchObject({ channel: 'ward:icu', namespace: 'ward', user: nurse });
    expect(permissions.checkLocally(nurse, 'user:n1')).toBeInstanceOf(ProxyQuestion);
  });

  it('never admits without a backend to ask', async () => {
    const answer = permissions.check(nurse, 'ward:icu');
    expect(answer).toBeInstanceOf(Promise);
    expect(await answer).toMatchObject({ status: 503, code: 'proxy_unavailable' });
  });

  it('shows a backend\'s reason without control or invisible characters, at most 200 characters', () => {
    expect(cleanReason('ward closed\r\nX-Injected: 1')).toBe('ward closed X-Injected: 1');
    expect(cleanReason('\u202egnp.exe\u200b ok\u0000')).toBe('gnp.exe ok');
    expect(cleanReason('  ')).toBeUndefined();
    expect(cleanReason(42)).toBeUndefined();
    const long = cleanReason('é'.repeat(150) + '😀'.repeat(100))!;
    expect(Array.from(long)).toHaveLength(200);
    expect(long.endsWith('😀…')).toBe(true); // cut between code points, never inside a surrogate pair
  });
});
