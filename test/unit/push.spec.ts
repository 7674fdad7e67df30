import { spawnSync } from 'node:child_process';
import { createECDH, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { encrypt } from 'web-push';
import { vapidKeys } from '../../src/cli/vapid';
import { ConfigError, loadConfig, vapidProblems } from '../../src/config/config';
import { isPrivateAddress, parseSubscription, type StoredSubscription } from '../../src/push/subscription';
import { MemorySubscriptionStore } from '../../src/push/subscription-store';
import { backoffMs, MAX_PAYLOAD_BYTES, pushMessage, retryAfterMs } from '../../src/push/web-push-out';
import { ROOT } from '../support/process';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ece = require('http_ece') as { decrypt(buffer: Buffer, params: Record<string, unknown>): Buffer };

describe('the test push service decrypts as RFC 8291 says', () => {
  it('http_ece decrypts the example message of RFC 8291 Appendix A with the user agent\'s keys', () => {
    const ua = createECDH('prime256v1');
    ua.setPrivateKey(Buffer.from('q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94', 'base64url'));
    expect(ua.getPublicKey().toString('base64url')).toBe('BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4');
    const body = Buffer.from(
      'DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN',
      'base64url',
    );
    expect(ece.decrypt(body, { version: 'aes128gcm', privateKey: ua, authSecret: 'BTBZMqHH6r4Tts7J_aSIgg' }).toString()).toBe('When I grow up, I want to be a watermelon');
  });
});

describe('VAPID configuration', () => {
  const keys = vapidKeys();
  const subject = 'mailto:ops@example.com';

  it('takes none or all three, a matching pair and a mailto:/https: subject', () => {
    expect(vapidProblems(undefined, undefined, undefined)).toEqual([]);
    expect(vapidProblems(keys.publicKey, keys.privateKey, subject)).toEqual([]);
    expect(vapidProblems(keys.publicKey, keys.privateKey, 'https://ops.example.com/contact')).toEqual([]);
    // A trailing newline from a Secret file, or base64 padding, is tolerated.
    expect(vapidProblems(`${keys.publicKey}=\n`, `${keys.privateKey}\n`, subject)).toEqual([]);
    expect(vapidProblems(keys.publicKey, undefined, undefined).map((p) => p.variable)).toEqual(['VAPID_PRIVATE_KEY', 'VAPID_SUBJECT']);
    const other = vapidKeys();
    const problems = (pub: string, priv: string, sub: string) => vapidProblems(pub, priv, sub).map((p) => `${p.variable}: ${p.problem}`);
    expect(problems(keys.publicKey, other.privateKey, subject)).toEqual([expect.stringMatching(/^VAPID_PRIVATE_KEY: does not belong to VAPID_PUBLIC_KEY/)]);
    expect(problems(keys.publicKey.slice(0, 43), keys.privateKey, subject)).toEqual([expect.stringMatching(/^VAPID_PUBLIC_KEY: must be an uncompressed P-256 public key.*decodes to 32 bytes/)]);
    const offCurve = Buffer.from(keys.publicKey, 'base64url');
    offCurve[64] ^= 1;
    expect(problems(offCurve.toString('base64url'), keys.privateKey, subject)).toEqual([expect.stringMatching(/^VAPID_PUBLIC_KEY: is not a point on the P-256 curve/)]);
    expect(problems(keys.publicKey, keys.publicKey, subject)).toEqual([expect.stringMatching(/^VAPID_PRIVATE_KEY: must be a P-256 private key.*65 bytes/)]);
    for (const bad of ['ops@example.com', 'http://example.com', 'mailto:', 'https://']) expect([bad, problems(keys.publicKey, keys.privateKey, bad)]).toEqual([bad, [expect.stringMatching(/^VAPID_SUBJECT: must be a mailto: address or an https: URL/)]]);
  });

  it('stops the start with one line per bad variable, never showing a key', () => {
    let error: unknown;
    try {
      loadConfig({ VAPID_PUBLIC_KEY: keys.publicKey, VAPID_PRIVATE_KEY: `${keys.privateKey}xx`, VAPID_SUBJECT: 'nobody' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as ConfigError).message;
    expect(message.split('\n').map((line) => line.split(':')[0])).toEqual(['VAPID_PRIVATE_KEY', 'VAPID_SUBJECT']);
    expect(message).not.toContain(keys.privateKey);
    expect(message).not.toContain(keys.publicKey);
    expect(loadConfig({ ...{ VAPID_PUBLIC_KEY: keys.publicKey, VAPID_PRIVATE_KEY: keys.privateKey, VAPID_SUBJECT: subject } }).config.vapid).toEqual({ publicKey: keys.publicKey, privateKey: keys.privateKey, subject });
    expect(loadConfig({}).config.vapid).toBeUndefined();
  });

  it('`realtime-gateway vapid` and `npm run vapid` print a pair the service starts with', () => {
    for (const args of [[join(ROOT, 'dist', 'cli', 'realtime-gateway.js'), 'vapid'], [join(ROOT, 'dist', 'cli', 'vapid.js')]]) {
      const run = spawnSync(process.execPath, args, { encoding: 'utf8' });
      expect(run.status).toBe(0);
      const env = Object.fromEntries(run.stdout.trim().split('\n').map((line) => line.split('=', 2) as [string, string]));
      expect(Object.keys(env)).toEqual(['VAPID_PUBLIC_KEY', 'VAPID_PRIVATE_KEY']);
      expect(loadConfig({ ...env, VAPID_SUBJECT: subject }).config.vapid?.publicKey).toBe(env.VAPID_PUBLIC_KEY);
    }
    const json = JSON.parse(spawnSync(process.execPath, [join(ROOT, 'dist', 'cli', 'vapid.js'), '--json'], { encoding: 'utf8' }).stdout) as { publicKey: string; privateKey: string };
    expect(vapidProblems(json.publicKey, json.privateKey, subject)).toEqual([]);
  });
});

describe('push subscriptions', () => {
  it('knows the addresses no push service has', () => {
    for (const address of ['127.0.0.1', '10.0.0.1', '172.31.255.255', '192.168.0.1', '169.254.169.254', '100.64.1.1', '0.0.0.0', '224.0.0.1', '::1', '::', 'fd12::1', 'fe80::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:a00:1', 'ff02::1']) {
      expect([address, isPrivateAddress(address)]).toEqual([address, true]);
    }
    for (const address of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', 'not-an-address']) {
      expect([address, isPrivateAddress(address)]).toEqual([address, false]);
    }
  });

  it('normalises a subscription: the endpoint as a URL serialises it, keys without padding', () => {
    const ecdh = createECDH('prime256v1');
    ecdh.generateKeys();
    const auth = randomBytes(16);
    const parsed = parseSubscription({ endpoint: 'https://PUSH.example.net:443/a', keys: { p256dh: ecdh.getPublicKey().toString('base64'), auth: `${auth.toString('base64url')}==` }, expirationTime: null }, 'u1', true);
    expect(parsed).toEqual({ endpoint: 'https://push.example.net/a', p256dh: ecdh.getPublicKey().toString('base64url'), auth: auth.toString('base64url'), expirationTime: null, user: 'u1' });
  });

  it('memory store: the endpoint is the key, it moves between users, the oldest goes past the cap', async () => {
    const store = new MemorySubscriptionStore();
    const sub = (endpoint: string, user: string, p256dh = 'k'): StoredSubscription => ({ endpoint, user, p256dh, auth: 'a', expirationTime: null });
    expect(await store.add(sub('e1', 'u1'), 2)).toEqual({ created: true, count: 1, evicted: 0 });
    expect(await store.add(sub('e2', 'u1'), 2)).toEqual({ created: true, count: 2, evicted: 0 });
    // Registered again, e1 becomes the newest; e3 then drops e2.
    expect(await store.add(sub('e1', 'u1'), 2)).toEqual({ created: false, count: 2, evicted: 0 });
    expect(await store.add(sub('e3', 'u1'), 2)).toEqual({ created: true, count: 2, evicted: 1 });
    expect((await store.forUsers(['u1'])).map((s) => s.endpoint)).toEqual(['e1', 'e3']);
    expect(await store.add(sub('e1', 'u2'), 2)).toEqual({ created: false, count: 1, evicted: 0 });
    expect((await store.forUsers(['u1', 'u2', 'u1'])).map((s) => `${s.user}:${s.endpoint}`)).toEqual(['u1:e3', 'u2:e1']);
    expect(await store.remove('u1', 'e1')).toBe(false);
    await store.discard('e1', 'other-key');
    expect((await store.forUsers(['u2'])).length).toBe(1);
    await store.discard('e1', 'k');
    expect(await store.forUsers(['u2'])).toEqual([]);
    expect(await store.remove('u1', 'e3')).toBe(true);
    expect(await store.forUsers(['u1'])).toEqual([]);
  });
});

describe('push messages', () => {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const p256dh = ecdh.getPublicKey().toString('base64url');
  const auth = randomBytes(16).toString('base64url');

  it('an alert that fits 4096 encrypted bytes is sent whole; one byte more and it carries {type, id} only', () => {
    const base = JSON.stringify({ type: 'alert', id: '1-0', data: { t: '' } }).length;
    const fits = { type: 'alert' as const, id: '1-0', data: { t: 'x'.repeat(MAX_PAYLOAD_BYTES - base) } };
    expect(Buffer.byteLength(pushMessage(fits))).toBe(MAX_PAYLOAD_BYTES);
    expect(JSON.parse(pushMessage(fits))).toEqual(fits);
    // What web-push makes of the largest message: exactly the 4096 bytes a push service must accept (RFC 8030 §7.2).
    expect(encrypt(p256dh, auth, pushMessage(fits), 'aes128gcm').cipherText.length).toBe(4096);
    const over = { ...fits, data: { t: `${fits.data.t}x` } };
    expect(JSON.parse(pushMessage(over))).toEqual({ type: 'alert', id: '1-0' });
    // Multi-byte characters count in bytes.
    expect(JSON.parse(pushMessage({ type: 'alert', id: '2-0', data: { t: 'é'.repeat(2000) } }))).toEqual({ type: 'alert', id: '2-0' });
  });

  it('reads Retry-After in seconds or as a date, and backs off 1, 2, 4, 8 s without one', () => {
    expect(retryAfterMs('2')).toBe(2000);
    expect(retryAfterMs(' 120 ')).toBe(120_000);
    expect(retryAfterMs(new Date(Date.now() + 30_000).toUTCString())).toBeGreaterThan(28_000);
    expect(retryAfterMs('Wed, 21 Oct 2015 07:28:00 GMT')).toBe(0);
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(retryAfterMs(undefined)).toBeUndefined();
    expect([1, 2, 3, 4].map(backoffMs)).toEqual([1000, 2000, 4000, 8000]);
  });
});
