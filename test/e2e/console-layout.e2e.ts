import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jwt from 'jsonwebtoken';
import { chromium, type Browser, type Page } from 'playwright-core';
import { connect, type TestClient } from '../support/clients';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { token } from '../support/tokens';

jest.setTimeout(60_000);

/** Debian's chromium; `.ci/run` installs it when missing (no browser download is possible here). */
const CHROMIUM = '/usr/bin/chromium';
/** Screenshots of each run, to look at: SCREENSHOTS=<dir>, else a temp dir. */
const SHOTS = process.env.SCREENSHOTS ?? join(tmpdir(), 'realtime-gateway-screens');
/** A laptop and a phone (iPhone 12-15: 390 css px). */
const WIDTHS = [1280, 390];
/** What a replica is called in Kubernetes (NODE_ID is the pod name): a 35-character name, not "admin-a". */
const POD = 'rt-realtime-gateway-5f7d9c8b6-x2x7q';
/** A user id as identity providers issue them. */
const USER = 'patient-4f1c2a9e-b7d3-4e55-9a0c-1d2e3f4a5b6c';

/**
 * Everything that sticks out sideways, in the page as a person sees it: the document scrolling sideways, a
 * table or card wider than its box (its content clipped or scrolled away), an element reaching past the viewport.
 * Widths, not pixels.
 */
async function overflow(page: Page): Promise<string[]> {
  // A script string: the tests are compiled without the DOM's types.
  return page.evaluate(`(() => {
    const out = [];
    const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (typeof e.className === 'string' && e.className.trim() ? '.' + e.className.trim().split(/\\s+/).join('.') : '');
    const doc = document.documentElement;
    const width = doc.clientWidth;
    if (doc.scrollWidth > width) out.push('document: scrollWidth ' + doc.scrollWidth + ' > ' + width);
    for (const e of document.querySelectorAll('header, main, section, fieldset, table, .scroll, .card')) {
      if (e.getClientRects().length === 0) continue; // hidden
      if (e.scrollWidth > e.clientWidth + 1) out.push(name(e) + ': scrollWidth ' + e.scrollWidth + ' > clientWidth ' + e.clientWidth);
    }
    for (const e of document.body.querySelectorAll('*')) {
      const r = e.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      if (r.left < -0.5 || r.right > width + 0.5) out.push(name(e) + ': from ' + Math.round(r.left) + ' to ' + Math.round(r.right) + ', outside 0-' + width);
    }
    return out;
  })()`);
}

/** The page's icon: declared, and served as an image (no 404 in the console or the server's logs). */
async function favicon(page: Page): Promise<{ status: number; type: string | null }[]> {
  return page.evaluate(`(async () => {
    const link = document.querySelector('link[rel~="icon"]');
    const urls = [link ? link.href : '/no-link-rel-icon', '/favicon.ico'];
    return Promise.all(urls.map(async (url) => {
      const res = await fetch(url);
      return { status: res.status, type: res.headers.get('content-type') };
    }));
  })()`);
}

describe('the consoles fit a laptop (1280 px) and a phone (390 px)', () => {
  let gw: TestGateway;
  let browser: Browser;
  let member: TestClient;
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    gw = await startTestGateway({ NODE_ID: POD });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    member = await connect(gw.ws(`/ws/chat/ward-3?token=${token({ sub: USER, role: 'patient' })}`));
    await member.ofType('welcome');
  });
  afterAll(async () => {
    await member?.close();
    await browser?.close();
    await gw?.close();
  });

  it('admin: the replicas, a room and its members, with nothing clipped or sticking out; a favicon', async () => {
    for (const width of WIDTHS) {
      const page = await browser.newPage({ viewport: { width, height: 900 } });
      await page.goto(gw.internal('/admin'));
      await page.fill('#token', token({ sub: 'ops', role: 'admin' }));
      await page.click('#use');
      await page.waitForSelector(`#nodes tr[data-node="${POD}"]`);
      await page.click('#channels a.channel:has-text("chat:ward-3")');
      await page.waitForSelector(`#members tr[data-user="${USER}"]`);
      await page.waitForSelector('#msgRate:text-matches("^[0-9]+$")');
      await page.screenshot({ path: join(SHOTS, `admin-${width}.png`), fullPage: true });
      expect([width, await overflow(page)]).toEqual([width, []]);
      // Every column of the replicas table is on screen: the counts too, not only the name.
      // Every cell inside the card's box, not scrolled or clipped out of it.
      const cells = await page.evaluate(`[...document.querySelectorAll('#nodes tr[data-node="${POD}"] td')].map((td) => {
        const r = td.getBoundingClientRect(), box = td.closest('section').getBoundingClientRect();
        return r.width > 0 && r.left >= box.left && r.right <= box.right;
      })`);
      expect([width, cells]).toEqual([width, [true, true, true, true, true, true]]);
      expect(await favicon(page)).toEqual([{ status: 200, type: expect.stringMatching(/^image\/svg\+xml/) }, { status: 200, type: expect.stringMatching(/^image\/svg\+xml/) }]);
      await page.close();
    }
  });

  it('demo: connected on /ws with a channel and its frames, with nothing sticking out; a favicon', async () => {
    for (const width of WIDTHS) {
      const page = await browser.newPage({ viewport: { width, height: 900 } });
      await page.goto(gw.internal('/demo'));
      await page.screenshot({ path: join(SHOTS, `demo-empty-${width}.png`), fullPage: true });
      expect([width, await overflow(page)]).toEqual([width, []]);
      await page.selectOption('#endpoint', 'ws');
      await page.fill('#token', token({ sub: USER, role: 'patient' }));
      await page.click('#connect');
      await page.waitForSelector('#state[data-state="open"]');
      await page.fill('#channel', 'chat:ward-3');
      await page.click('#subscribe');
      await page.waitForSelector('section[data-channel="chat:ward-3"][data-state="subscribed"]');
      await page.fill('#data', JSON.stringify({ text: 'a long line with no spaces: '.concat('x'.repeat(200)) }));
      await page.click('#publish');
      await page.waitForSelector('section[data-channel="chat:ward-3"] li[data-kind="publication"]');
      await page.screenshot({ path: join(SHOTS, `demo-${width}.png`), fullPage: true });
      expect([width, await overflow(page)]).toEqual([width, []]);
      expect(await favicon(page)).toEqual([{ status: 200, type: expect.stringMatching(/^image\/svg\+xml/) }, { status: 200, type: expect.stringMatching(/^image\/svg\+xml/) }]);
      await page.close();
    }
  });

  it('demo with a real key: no development-token button, and the empty state says how to get a token', async () => {
    const page = await browser.newPage();
    await page.goto(gw.internal('/demo'));
    expect(await page.isHidden('#dev')).toBe(true);
    expect(await page.textContent('#empty')).toMatch(/realtime-gateway token --role/);
    expect((await fetch(gw.internal('/demo/dev-token'), { method: 'POST', body: '{"role":"authority"}', headers: { 'content-type': 'application/json' } })).status).toBe(404);
    await page.close();
  });
});

describe('the demo on the development key', () => {
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

  it('says what to do before anything happens, and one click gets a token for the endpoint picked, which connects', async () => {
    const page = await browser.newPage();
    await page.goto(gw.internal('/demo'));
    // The empty state: what to do, in order, instead of an empty box.
    const empty = await page.textContent('#empty');
    expect(empty).toMatch(/Get a development token/);
    expect(empty).toMatch(/Connect/);
    const signed = async () => jwt.decode(await page.inputValue('#token')) as jwt.JwtPayload;
    for (const [endpoint, claims] of [
      ['alerts', { role: 'authority' }],
      ['chat', { role: 'patient' }],
      ['signaling-doctor', { role: 'doctor', channels: ['signaling:lobby'] }],
      ['ws', { role: 'authority', channels: ['signaling:*'] }],
    ] as const) {
      await page.selectOption('#endpoint', endpoint);
      await page.fill('#token', '');
      await page.click('#dev');
      await page.waitForFunction("document.querySelector('#token').value !== ''");
      expect([endpoint, await signed()]).toEqual([endpoint, expect.objectContaining(claims)]);
      await page.click('#connect');
      await page.waitForSelector('#state[data-state="open"]');
      expect(await page.isHidden('#empty')).toBe(true); // frames arrived: the log is no longer empty
      await page.click('#disconnect');
      await page.waitForSelector('#state[data-state="closed"]');
    }
    expect((await page.inputValue('#token')).length).toBeGreaterThan(20);
    await page.close();
  });

  it('never hands out development tokens in production, even with the demo switched on', async () => {
    const production = await startTestGateway({ JWT_SECRET: 'a-real-secret-of-at-least-32-bytes-long!', NODE_ENV: 'production', DEMO: 'on' });
    const page = await browser.newPage();
    try {
      await page.goto(production.internal('/demo'));
      expect(await page.isHidden('#dev')).toBe(true);
      expect((await fetch(production.internal('/demo/dev-token'), { method: 'POST', body: '{"role":"authority"}', headers: { 'content-type': 'application/json' } })).status).toBe(404);
    } finally {
      await page.close();
      await production.close();
    }
  });
});
