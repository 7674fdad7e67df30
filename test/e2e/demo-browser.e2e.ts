import { chromium, type Browser } from 'playwright-core';
import { vapidKeys } from '../../src/cli/vapid';
import { PUSH_SERVICE_UNREACHABLE } from '../../src/demo/demo-push';
import { Replica } from '../support/cluster';
import { ForwardProxy } from '../support/forward-proxy';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { freePort, spawnGateway, type GatewayProcess } from '../support/process';
import { RedisProcess } from '../support/redis';
import { TEST_SECRET, token } from '../support/tokens';

jest.setTimeout(60_000);

/** Debian's chromium; `.ci/run` installs it when missing (no browser download is possible here). */
const CHROMIUM = '/usr/bin/chromium';

describe('demo console in headless Chromium', () => {
  let redis: RedisProcess;
  let browser: Browser;
  let port: number;
  let served: GatewayProcess | undefined;
  let other: Replica;

  const start = () =>
    spawnGateway({ PORT: String(port), JWT_SECRET: TEST_SECRET, REDIS_URL: redis.url, NODE_ID: 'demo-a', DRAIN_WINDOW_MS: '0' });

  beforeAll(async () => {
    redis = await RedisProcess.start();
    port = await freePort();
    served = await start();
    other = await Replica.start('demo-b', redis.url);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  });
  afterAll(async () => {
    await browser?.close();
    served?.child.kill('SIGKILL');
    await other?.kill();
    await redis?.stop();
  });

  it('connects, shows an alert published over HTTP, explains the 1012 of a drain, and resumes without a gap', async () => {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${served!.internalPort}/demo`); // the page is internal; its client dials the public PORT
    await page.fill('#token', token({ sub: 'browser', role: 'authority' }));
    await page.selectOption('#endpoint', 'alerts');
    await page.click('#connect');
    await page.waitForSelector('#state[data-state="open"]');

    expect((await other.publish({ data: { step: 1 } })).status).toBe(202);
    await page.waitForSelector('#log li[data-kind="in"]:has-text("\\"step\\":1")');

    // Drain the replica that served the page; the page's client reconnects to it once it is back.
    served!.child.kill('SIGTERM');
    expect(await served!.exited).toBe(0);
    await page.waitForSelector('#log li[data-kind="close"]:has-text("1012 server restarting")');
    expect(await page.textContent('#state')).not.toBe('open');
    expect((await other.publish({ data: { step: 2 } })).status).toBe(202); // published while it is down
    served = await start();

    await page.waitForSelector('#log li[data-kind="in"]:has-text("\\"step\\":2")', { timeout: 20_000 });
    await page.waitForSelector('#log li[data-kind="in"]:has-text("\\"recovered\\":true")');
    await page.waitForSelector('#state[data-state="open"]');
    const alerts = await page.$$eval('#log li[data-kind="in"]', (items) => items.map((li) => li.textContent ?? '').filter((t) => t.includes('"type":"alert"')));
    expect(alerts).toHaveLength(2); // step 1 once, step 2 once

    // The send box goes through the same client.
    await page.fill('#outgoing', '{"type":"ping"}');
    await page.click('#send');
    await page.waitForSelector('#log li[data-kind="in"]:has-text("\\"type\\":\\"pong\\"")');
    await eventually(async () => (await page.$$('#codes tr')).length === 12, 1000, 'the close-code table'); // 4003 joined the SPEC's codes
    await page.close();
  });
});

describe('demo console: why an upgrade was refused (browsers hide the status)', () => {
  let browser: Browser;
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.close();
  });

  const rejected = async (error: string) => (await gw.metric('ws_upgrades_rejected_total', { gateway: 'alerts', status: '401', error })) ?? 0;

  async function refusedOnce(jwt: string, error: string, detail: RegExp): Promise<void> {
    const page = await browser.newPage();
    const sockets: string[] = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    const before = await rejected(error);
    await page.goto(gw.internal('/demo'));
    await page.fill('#token', jwt);
    await page.selectOption('#endpoint', 'alerts');
    await page.click('#connect');
    await page.waitForSelector(`#why:has-text("refused: 401 ${error}")`);
    expect(await page.textContent('#why')).toMatch(detail);
    expect(await page.textContent('#why')).not.toContain(jwt);
    await page.waitForSelector('#state[data-state="closed"]');
    await page.waitForSelector(`#log li[data-kind="error"]:has-text("refused: 401 ${error}")`);
    // Stopped: no second upgrade, however long we wait (the backoff would have retried within 1.5 s).
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(sockets).toHaveLength(1);
    expect(await rejected(error)).toBe(before + 2); // the upgrade, and the plain GET that asked why
    expect(await page.textContent('#state')).toBe('closed');
    expect(await page.$$eval('#log li[data-kind="close"]', (items) => items.map((li) => li.textContent ?? ''))).toEqual([
      expect.not.stringContaining('reconnecting'),
    ]);

    // A valid token still connects, and the refusal is no longer shown.
    await page.fill('#token', token({ sub: 'browser', role: 'authority' }));
    await page.click('#connect');
    await page.waitForSelector('#state[data-state="open"]');
    expect(await page.isHidden('#why')).toBe(true);
    expect(sockets).toHaveLength(2);
    await page.close();
  }

  it('an expired token: shows "refused: 401 token_expired" with the expiry, closed, no retry', async () => {
    await refusedOnce(token({ sub: 'browser', role: 'authority' }, { ttl: -30 }), 'token_expired', /— token expired at \d{4}-\d\d-\d\dT[\d:.]+Z; get a new one/);
  });

  it('a forged token: shows "refused: 401 token_invalid", closed, no retry', async () => {
    const forged = token({ sub: 'browser', role: 'authority' }, { secret: 'another-secret-of-at-least-32-bytes!!' });
    await refusedOnce(forged, 'token_invalid', /— /);
  });
});

describe('demo console on /ws: many channels on one connection', () => {
  let browser: Browser;
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ LOG_LEVEL: 'warn' });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.close();
  });

  it('subscribes to two channels, shows each one its own publications, publishes, refuses a channel, and unsubscribes', async () => {
    const page = await browser.newPage();
    const sockets: string[] = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    await page.goto(gw.internal('/demo'));
    await page.fill('#token', token({ sub: 'browser-ws', role: 'authority' }));
    await page.selectOption('#endpoint', 'ws');
    await page.click('#connect');
    await page.waitForSelector('#state[data-state="open"]');
    const channel = (name: string) => `.channel[data-channel="${name}"]`;
    for (const name of ['alerts', 'chat:demo-ws']) {
      await page.fill('#channel', name);
      await page.click('#subscribe');
      await page.waitForSelector(`${channel(name)}[data-state="subscribed"]`);
    }

    // A publication over HTTP reaches the alerts list only; one from the page reaches the room's.
    const res = await fetch(gw.internal('/api/alerts'), {
      method: 'POST',
      headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' },
      body: JSON.stringify({ data: { level: 'amber' } }),
    });
    const { id } = (await res.json()) as { id: string };
    await page.waitForSelector(`${channel('alerts')} li[data-kind="publication"]:has-text("amber")`);
    expect(await page.textContent(`${channel('alerts')} h3 span`)).toContain(`subscribed at ${id}`); // the alert is its position
    await page.fill('#channel', 'chat:demo-ws');
    await page.fill('#data', '{"text":"from the page"}');
    await page.click('#publish');
    await page.waitForSelector(`${channel('chat:demo-ws')} li[data-kind="publication"]:has-text("browser-ws")`);
    expect(await page.$$eval(`${channel('chat:demo-ws')} li[data-kind="publication"]`, (items) => items.map((li) => li.textContent ?? ''))).toEqual([
      expect.stringContaining('"data":{"text":"from the page"}'),
    ]);
    expect(await page.$$(`${channel('alerts')} li[data-kind="publication"]`)).toHaveLength(1);

    // A channel this token may not hold: its own error, not retried; the others stay subscribed.
    await page.fill('#channel', 'signaling:c-9');
    await page.click('#subscribe');
    await page.waitForSelector(`${channel('signaling:c-9')}[data-state="ended"] li[data-kind="error"]:has-text("forbidden_channel")`);
    await page.fill('#channel', 'chat:demo-ws');
    await page.click('#unsubscribe');
    await page.waitForSelector(`${channel('chat:demo-ws')}[data-state="ended"]`);
    expect(await page.getAttribute(channel('alerts'), 'data-state')).toBe('subscribed');
    expect(sockets).toEqual([expect.stringMatching(/\/ws$/)]); // all of it on one connection
    await page.close();
  });
});

describe('demo console behind a forward proxy that blocks WebSocket (squid, CONNECT refused)', () => {
  let gw: TestGateway;
  let proxy: ForwardProxy;
  let proxied: Browser;
  let direct: Browser;
  beforeAll(async () => {
    gw = await startTestGateway({ LOG_LEVEL: 'warn' });
    proxy = await ForwardProxy.start({ connect: 'deny' });
    // `<-loopback>`: even 127.0.0.1 goes through the proxy (Chromium bypasses it for loopback by default).
    proxied = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', `--proxy-server=${proxy.url}`, '--proxy-bypass-list=<-loopback>'] });
    direct = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  });
  afterAll(async () => {
    await proxied?.close();
    await direct?.close();
    await proxy?.stop();
    await gw?.close();
  });

  /** Opens the demo, connects to /ws with an authority token, subscribes to alerts and a room. */
  async function connected(browser: Browser, room: string, sub: string) {
    const page = await browser.newPage();
    await page.goto(gw.internal('/demo'));
    await page.fill('#token', token({ sub, role: 'authority' }));
    await page.selectOption('#endpoint', 'ws');
    await page.click('#connect');
    await page.waitForSelector('#state[data-state="open"]', { timeout: 15_000 });
    for (const name of ['alerts', room]) {
      await page.fill('#channel', name);
      await page.click('#subscribe');
      await page.waitForSelector(`.channel[data-channel="${name}"][data-state="subscribed"]`);
    }
    return page;
  }

  it('through the proxy: the page falls back to SSE by itself, shows it, receives an alert and sends a chat message', async () => {
    const page = await connected(proxied, 'chat:demo-sse', 'behind-proxy');
    expect(await page.textContent('#transport')).toBe('over sse');
    // Why it switched is in the log: the WebSocket never opened while plain HTTP reached the gateway.
    expect(await page.$$eval('#log li[data-kind="close"]', (items) => items.map((li) => li.textContent ?? '').join('\n'))).toContain('switching to SSE');

    const res = await fetch(gw.internal('/api/alerts'), {
      method: 'POST',
      headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' },
      body: JSON.stringify({ data: { level: 'red', ward: 'icu' } }),
    });
    expect(res.status).toBe(202);
    await page.waitForSelector('.channel[data-channel="alerts"] li[data-kind="publication"]:has-text("icu")');

    await page.fill('#channel', 'chat:demo-sse');
    await page.fill('#data', '{"text":"sent over POST /sse/send"}');
    await page.click('#publish');
    await page.waitForSelector('.channel[data-channel="chat:demo-sse"] li[data-kind="publication"]:has-text("behind-proxy")');
    expect(await page.textContent('.channel[data-channel="chat:demo-sse"] li[data-kind="publication"]')).toContain('"data":{"text":"sent over POST /sse/send"}');

    expect(await gw.metric('ws_connections_active', { gateway: 'sse' })).toBe(1);
    expect(await gw.metric('ws_connections_active', { gateway: 'ws' })).toBe(0);
    await page.close();

    // All of it went through squid: the page, the refused tunnels, the stream (logged once it ends, without its
    // query) and the sends, after one CORS preflight each for the stream and the sends.
    await eventually(() => proxy.accessLog().some((line) => line.includes(`GET http://127.0.0.1:${gw.port}/sse - `)), 5000, 'the stream in the access log');
    const log = proxy.accessLog().join('\n');
    expect(log).toMatch(/TCP_MISS\/200 \d+ GET http:\/\/127\.0\.0\.1:\d+\/demo /);
    expect(log).toContain(`TCP_DENIED/403`);
    expect(log).toContain(`CONNECT 127.0.0.1:${gw.port}`);
    expect(log).toMatch(new RegExp(`/200 \\d+ GET http://127\\.0\\.0\\.1:${gw.port}/sse - .* text/event-stream`));
    expect(proxy.accessLog().filter((line) => line.includes(`OPTIONS http://127.0.0.1:${gw.port}/sse/send`))).toHaveLength(1);
    expect(log).toMatch(new RegExp(`TCP_MISS/202 \\d+ POST http://127\\.0\\.0\\.1:${gw.port}/sse/send`));
  });

  it('without the proxy the same page uses WebSocket', async () => {
    const page = await connected(direct, 'chat:demo-direct', 'direct');
    expect(await page.textContent('#transport')).toBe('over websocket');
    expect(await page.$$eval('#log li[data-kind="close"]', (items) => items.length)).toBe(0);
    await page.close();
  });
});

describe('demo console: Web Push in Chromium (service worker, subscribe, a push shown)', () => {
  let browser: Browser;
  let gw: TestGateway;
  const vapid = vapidKeys();
  beforeAll(async () => {
    gw = await startTestGateway({ VAPID_PUBLIC_KEY: vapid.publicKey, VAPID_PRIVATE_KEY: vapid.privateKey, VAPID_SUBJECT: 'mailto:ops@example.com' });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.close();
  });

  it('registers its service worker, subscribes or says the push service is unreachable, and lists a push delivered to the worker', async () => {
    const context = await browser.newContext();
    const origin = new URL(gw.internal('/')).origin;
    // As a person who allowed notifications: what remains between the page and a subscription is the push service.
    await context.grantPermissions(['notifications'], { origin });
    const page = await context.newPage();
    await page.goto(gw.internal('/demo'));
    await page.waitForSelector('#push[data-worker="ready"]');
    await page.waitForSelector('#push-log li[data-kind="worker"]:has-text("service worker registered")');

    await page.fill('#token', token({ sub: 'browser-push', role: 'authority' }));
    await page.click('#push-enable');
    await page.waitForSelector('#push-state[data-state="subscribed"], #push-state[data-state="failed"]', { timeout: 30_000 });
    if ((await page.getAttribute('#push-state', 'data-state')) === 'subscribed') {
      // A browser that reached its push service: the gateway took the subscription (201 shown).
      await page.waitForSelector('#push-log li[data-kind="subscribed"]:has-text("(201)")');
    } else {
      // No Internet here: Chromium cannot reach Google's push service, and the page says exactly that.
      expect(await page.textContent('#push-why')).toContain(PUSH_SERVICE_UNREACHABLE);
      expect(await page.getAttribute('#push', 'data-unreachable')).toBe('true');
    }

    // A push delivered to the page's service worker through the DevTools protocol, as a push service would hand
    // it over (decrypted): the worker posts it to the page, which lists it.
    const cdp = await context.newCDPSession(page);
    const registrations: { registrationId: string; scopeURL: string; isDeleted: boolean }[] = [];
    cdp.on('ServiceWorker.workerRegistrationUpdated', (event: { registrations: typeof registrations }) => registrations.push(...event.registrations));
    await cdp.send('ServiceWorker.enable');
    await eventually(() => registrations.some((r) => r.scopeURL === `${origin}/demo` && !r.isDeleted), 5000, 'the /demo registration');
    const { registrationId } = registrations.find((r) => r.scopeURL === `${origin}/demo`)!;
    const payload = { type: 'alert', id: '1795280574760-0', data: { text: 'Ward 3: oxygen supply alarm' } };
    await cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId, data: JSON.stringify(payload) });
    await page.waitForSelector('#push-log li[data-kind="push"]:has-text("Ward 3: oxygen supply alarm")');
    expect(JSON.parse((await page.textContent('#push-log li[data-kind="push"]'))!.replace(/^\S+ push /, ''))).toEqual(payload);
    await context.close();
  });
});
