import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { EVENTS_OUT, type EventsOut } from '../../src/events/events-out';
import { Replica } from '../support/cluster';
import { connect } from '../support/clients';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { RedisProcess } from '../support/redis';
import { TcpProxy } from '../support/tcp-proxy';
import { token } from '../support/tokens';
import { WebhookReceiver } from '../support/webhook-receiver';

jest.setTimeout(60_000);

/** Debian's chromium; `.ci/run` installs it when missing (no browser download is possible here). */
const CHROMIUM = '/usr/bin/chromium';
/** Screenshots of each run, to look at (a laptop and a phone): SCREENSHOTS=<dir>, else a temp dir. */
const SHOTS = process.env.SCREENSHOTS ?? join(tmpdir(), 'realtime-gateway-screens');

describe('admin console in headless Chromium, two replicas', () => {
  let redis: RedisProcess;
  let a: Replica;
  let b: Replica;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    redis = await RedisProcess.start();
    [a, b] = await Promise.all([Replica.start('admin-a', redis.url), Replica.start('admin-b', redis.url)]);
    await eventually(async () => (await a.readyStatus()) === 200 && (await b.readyStatus()) === 200, 10_000, 'both replicas ready');
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  });
  afterAll(async () => {
    await browser?.close();
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
  });

  it('shows both replicas and the busiest rooms, publishes from the form, and disconnects a member with 4003', async () => {
    const ann = await connect(b.ws(`/ws/chat/ward-3?token=${token({ sub: 'ann', role: 'patient' })}`));
    const bob = await connect(a.ws(`/ws/chat/ward-3?token=${token({ sub: 'bob', role: 'doctor' })}`));
    await Promise.all([ann.ofType('welcome'), bob.ofType('welcome')]);
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(a.internal('/admin'));
    expect(await page.isHidden('#dev')).toBe(true); // a real key: no development tokens
    await page.fill('#token', token({ sub: 'ops', role: 'admin' }));
    await page.click('#use');

    // Both replicas, with their connections (presence heartbeats every PRESENCE_TTL_MS / 3).
    await page.waitForSelector('#nodes tr[data-node="admin-a"]');
    await page.waitForSelector('#nodes tr[data-node="admin-b"]');
    await page.waitForSelector('#channels tr[data-channel="chat:ward-3"] td:has-text("2")', { timeout: 15_000 });
    await page.waitForSelector('#status[data-state="live"]');
    expect(await page.isHidden('#webhooks')).toBe(true); // no WEBHOOK_URL: no webhooks panel

    // The room's members, from presence.
    await page.click('#channels a.channel:has-text("chat:ward-3")');
    await page.waitForSelector('#members tr[data-user="ann"] td:has-text("admin-b")');
    await page.waitForSelector('#members tr[data-user="bob"] td:has-text("admin-a")');

    // Publish from the form (the channel was filled in by the click): it reaches a member on the other replica.
    await page.fill('#pubData', '{"text": "rounds at 10"}');
    await page.click('#publish');
    await page.waitForSelector('#pubResult[data-ok="true"]');
    expect(await ann.ofType('publication')).toMatchObject({ channel: 'chat:ward-3', data: { text: 'rounds at 10' } });
    await page.screenshot({ path: join(SHOTS, 'admin-laptop.png'), fullPage: true });

    // Disconnect from the member list, after a confirmation that says what will happen: ann's socket on the
    // other replica closes with 4003.
    const asked: string[] = [];
    page.once('dialog', (dialog) => {
      asked.push(dialog.message());
      void dialog.accept();
    });
    await page.click('#members tr[data-user="ann"] button');
    expect(asked).toEqual(['Disconnect "ann" on every replica?']);
    await page.waitForSelector('#discResult[data-ok="true"]');
    expect(await ann.closed).toEqual({ code: 4003, reason: 'disconnected' });
    bob.send({ type: 'ping' });
    expect(await bob.ofType('pong')).toMatchObject({ type: 'pong' });

    // Revoke a sub with a trailing space, as typed: bob's connection stays, " bob "'s closes 4001 on the other replica.
    const spaced = await connect(b.ws(`/api/alerts/subscribe?token=${token({ sub: 'bob ', role: 'authority' })}`));
    await spaced.ofType('welcome');
    page.once('dialog', (dialog) => {
      asked.push(dialog.message());
      void dialog.accept();
    });
    await page.fill('#revUser', 'bob ');
    await page.click('#revoke');
    await page.waitForSelector('#revResult[data-ok="true"]');
    expect(asked[1]).toBe('Revoke the tokens of "bob " issued before now on every replica?');
    expect(await spaced.closed).toEqual({ code: 4001, reason: 'token revoked' });
    bob.send({ type: 'ping' });
    expect(await bob.ofType('pong')).toMatchObject({ type: 'pong' });

    // The rates are numbers once two samples are in; and the page reads on a phone.
    await page.waitForSelector('#msgRate:text-matches("^[0-9]+$")');
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: join(SHOTS, 'admin-phone.png'), fullPage: true });
    // The page itself never scrolls sideways (wide tables scroll inside their card).
    const overflow = await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth');
    expect(overflow).toBeLessThanOrEqual(0);
    await bob.close();
    await page.close();
  });

  it("shows an alert's receipts live: who got it, who acknowledged it, who is pending, from either replica", async () => {
    const ann = await connect(a.ws(`/api/alerts/subscribe?token=${token({ sub: 'rc-ann', role: 'authority' })}`));
    const bob = await connect(b.ws(`/api/alerts/subscribe?token=${token({ sub: 'rc-bob', role: 'authority' })}`));
    await Promise.all([ann.ofType('welcome'), bob.ofType('welcome')]);
    const published = await a.publish({ data: { text: 'oxygen alarm, ward 3' }, users: ['rc-ann', 'rc-bob', 'rc-cy'], ack: { within_s: 600 } });
    expect(published.status).toBe(202);
    const id = published.body.id as string;
    const annFrame = await ann.ofType('alert');
    await bob.ofType('alert');

    // An alert's page: the link opens it, on the other replica's console.
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(b.internal(`/admin#alert=${id}`));
    await page.fill('#token', token({ sub: 'ops', role: 'admin' }));
    await page.click('#use');
    await page.waitForSelector('#receipts tr[data-user="rc-ann"][data-state="pending"]');
    await page.waitForSelector('#receipts tr[data-user="rc-bob"][data-state="pending"]');
    // rc-cy has no connection: targeted, never got it.
    await page.waitForSelector('#receipts tr[data-user="rc-cy"][data-state="missed"] td:has-text("not yet")');
    expect(await page.textContent('#rcDelivered')).toBe('2');
    expect(await page.textContent('#rcPending')).toBe('3');

    // ann acknowledges on replica a: the page (served by b) shows it at its next refresh.
    ann.send({ type: 'ack', id: annFrame.id });
    await page.waitForSelector('#receipts tr[data-user="rc-ann"][data-state="acked"]', { timeout: 10_000 });
    await page.waitForSelector('#rcAcked:text("1")');
    await page.waitForSelector('#rcPending:text("2")');
    // Pending users first: who never got it, then who got it and has not acknowledged.
    expect(await page.$$eval('#receipts tbody tr', (rows) => rows.map((r) => r.getAttribute('data-user')))).toEqual(['rc-cy', 'rc-bob', 'rc-ann']);
    await page.screenshot({ path: join(SHOTS, 'admin-receipts.png'), fullPage: true });

    // An id that asked for no ack: the server's answer, said plainly.
    await page.fill('#alertId', '1-0');
    await page.click('#showAlert');
    await page.waitForSelector('#alertResult[data-ok="false"]:has-text("404 unknown_alert")');
    expect(await page.isHidden('#receipts')).toBe(true);
    await Promise.all([ann.close(), bob.close()]);
    await page.close();
  });

  it('watches a room live over /ws on the public port: publications, joins and leaves, a refused channel, a reconnect through a proxy, and stop', async () => {
    const carol = await connect(b.ws(`/ws/chat/ward-5?token=${token({ sub: 'carol', role: 'patient' })}`));
    await carol.ofType('welcome');
    const system = (event: string, user: string) => carol.take((f) => f.type === 'system' && f.event === event && f.user === user, 10_000);
    const publish = async (channel: string, data: Record<string, unknown>) => {
      const res = await fetch(b.internal('/api/publish'), {
        method: 'POST',
        headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' },
        body: JSON.stringify({ channel, data }),
      });
      expect(res.status).toBe(202);
    };
    const members = async (channel: string) => {
      const res = await fetch(b.internal(`/api/channels/${encodeURIComponent(channel)}/presence`), { headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}` } });
      return ((await res.json()) as { members: { user: string }[] }).members.map((m) => m.user);
    };
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    const sockets: string[] = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    const live = (kind: string, text: string) => page.waitForSelector(`#watchLog li[data-kind="${kind}"]:has-text(${JSON.stringify(text)})`);
    await page.goto(a.internal('/admin'));
    // The page is on the internal port; it learned the public one for its default address.
    expect(await page.inputValue('#wsUrl')).toBe(`ws://127.0.0.1:${a.process.port}/ws`);
    await page.fill('#token', token({ sub: 'ops-live', role: 'admin' }));
    await page.click('#use');

    // Selecting the room in the busiest channels only readies the live view (no socket yet, no join told); Watch
    // subscribes: on one socket whose URL carries no token (it went as the bearer subprotocol); a watcher is a
    // member, so carol (a path-endpoint member, on the other replica) sees the console join.
    await page.click('#channels a.channel:has-text("chat:ward-5")', { timeout: 15_000 });
    expect(await page.inputValue('#watchChannel')).toBe('chat:ward-5');
    expect(sockets).toEqual([]);
    await page.click('#watch');
    await page.waitForSelector('#watchState[data-state="subscribed"]:has-text("chat:ward-5")');
    expect(sockets).toEqual([`ws://127.0.0.1:${a.process.port}/ws`]);
    await system('join', 'ops-live');

    // A publication through the server API (on the other replica) appears live; so do a member's join and leave.
    await publish('chat:ward-5', { text: 'rounds at 11' });
    await live('publication', 'server: {"text":"rounds at 11"}');
    const dave = await connect(b.ws(`/ws/chat/ward-5?token=${token({ sub: 'dave', role: 'doctor' })}`));
    await live('join', 'dave joined');
    await dave.close();
    await live('leave', 'dave left');

    // A channel the admin role may not hold (signaling: claim + doctor/patient): the server's code and message,
    // and nothing else breaks. Switching left the room (carol sees the console leave).
    await page.fill('#watchChannel', 'signaling:c-7');
    await page.click('#watch');
    await page.waitForSelector('#watchState[data-state="refused"]:has-text("forbidden_channel on signaling:c-7 — ")');
    expect(await page.textContent('#watchState')).toMatch(/forbidden_channel on signaling:c-7 — \S/);
    await live('error', 'forbidden_channel');
    await system('leave', 'ops-live');
    await page.waitForSelector('#status[data-state="live"]');
    await page.fill('#watchChannel', 'chat:ward-5');
    await page.press('#watchChannel', 'Enter');
    await page.waitForSelector('#watchState[data-state="subscribed"]:has-text("chat:ward-5")');
    await publish('chat:ward-5', { text: 'after the refusal' });
    await live('publication', 'after the refusal');
    expect(sockets).toHaveLength(1); // the refusal closed nothing: still the same connection
    await page.screenshot({ path: join(SHOTS, 'admin-live.png'), fullPage: true });

    // Through a proxy (the address typed in the field, kept for the next visit): the link drops, the view says it
    // is reconnecting, and once back it resumes from its position: what was published meanwhile arrives.
    const proxy = await TcpProxy.start(a.process.port);
    try {
      const proxied = `ws://127.0.0.1:${proxy.port}/ws`;
      await page.fill('#wsUrl', proxied);
      await page.click('#watch');
      await page.waitForSelector('#watchState[data-state="subscribed"]:has-text("chat:ward-5")');
      expect(sockets).toEqual([expect.any(String), proxied]);
      proxy.cut();
      await page.waitForSelector('#watchState[data-state="reconnecting"]');
      await publish('chat:ward-5', { text: 'while away' });
      proxy.restore();
      await live('publication', 'while away');
      await live('resumed', 'nothing missed');
      await page.waitForSelector('#watchState[data-state="subscribed"]');

      // Stop watching: the socket closes, so the console is no longer a member of the room.
      await eventually(async () => (await members('chat:ward-5')).includes('ops-live'), 5000, 'the console to be a member of chat:ward-5 again');
      await page.click('#unwatch');
      await page.waitForSelector('#watchState[data-state="stopped"]:has-text("stopped watching chat:ward-5")');
      await eventually(async () => !(await members('chat:ward-5')).includes('ops-live'), 5000, 'the console to leave chat:ward-5');
    } finally {
      await proxy.stop();
    }
    await page.reload();
    expect(await page.inputValue('#wsUrl')).toBe(`ws://127.0.0.1:${proxy.port}/ws`);
    await page.fill('#wsUrl', '');
    await page.press('#wsUrl', 'Tab'); // cleared: back to the default
    expect(await page.inputValue('#wsUrl')).toBe(`ws://127.0.0.1:${a.process.port}/ws`);
    expect(errors).toEqual([]);
    await carol.close();
    await page.close();
  });

  it('says what is wrong with a token that cannot be used, instead of showing nothing', async () => {
    const p = await browser.newPage();
    await p.goto(b.internal('/admin'));
    await p.fill('#token', token({ sub: 'someone', role: 'authority' }));
    await p.click('#use');
    await p.waitForSelector('#status[data-state="error"]:has-text("403 forbidden_role")');
    expect(await p.getAttribute('body', 'data-stale')).toBe('true'); // what is shown is marked as old
    await p.close();
  });
});

describe('admin console on the development key', () => {
  let gw: TestGateway;
  let browser: Browser;
  beforeAll(async () => {
    gw = await startTestGateway({ JWT_SECRET: '' });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.close();
  });

  it('hands out an admin token with one click, and never in production', async () => {
    const page = await browser.newPage();
    await page.goto(gw.internal('/admin'));
    await page.click('#dev');
    await page.waitForSelector(`#nodes tr[data-node="${gw.config.nodeId}"]`);
    await page.close();
    const production = await startTestGateway({ JWT_SECRET: 'a-real-secret-of-at-least-32-bytes-long!', NODE_ENV: 'production' });
    try {
      expect((await fetch(production.internal('/admin/dev-token'), { method: 'POST' })).status).toBe(404);
      expect((await fetch(production.internal('/demo'))).status).toBe(404); // DEMO is off in production
      expect((await fetch(production.internal('/admin'))).status).toBe(200);
    } finally {
      await production.close();
    }
  });
});

describe('admin console, the webhooks panel', () => {
  let gw: TestGateway;
  let receiver: WebhookReceiver;
  let browser: Browser;
  beforeAll(async () => {
    receiver = await WebhookReceiver.start();
    gw = await startTestGateway(receiver.env());
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.close();
    await receiver?.stop();
  });

  it('shows the queue and the recent failed deliveries, with the receiver\'s answer', async () => {
    receiver.answer = () => 400;
    gw.app.get<EventsOut>(EVENTS_OUT).emit('token.revoked', { user: 'mallory', by: 'ops' });
    await receiver.until(() => receiver.received.length === 1);
    const page = await browser.newPage();
    await page.goto(gw.internal('/admin'));
    await page.fill('#token', token({ sub: 'ops', role: 'admin' }));
    await page.click('#use');
    await page.waitForSelector(`#whFailures tr[data-id="${receiver.received[0].id}"] td:has-text("400")`);
    const shown = await page.textContent('#whFailures tbody');
    expect(shown).toContain('token.revoked');
    expect(shown).toContain(receiver.received[0].id); // whole, to search the receiver's logs for
    await page.waitForSelector('#whQueue:has-text("0")');
    await page.screenshot({ path: join(SHOTS, 'admin-webhooks.png'), fullPage: true });
    await page.close();
  });
});
