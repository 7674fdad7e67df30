import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Replica } from '../support/cluster';
import { connect } from '../support/clients';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { RedisProcess } from '../support/redis';
import { token } from '../support/tokens';

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
