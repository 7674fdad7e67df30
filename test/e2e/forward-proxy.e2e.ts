import { request } from 'node:http';
import { chromium, type Browser } from 'playwright-core';
import { ForwardProxy } from '../support/forward-proxy';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { token } from '../support/tokens';

jest.setTimeout(60_000);

/** Debian's chromium; `.ci/run` installs it when missing (no browser download is possible here). */
const CHROMIUM = '/usr/bin/chromium';

interface Answer {
  status: number;
  headers: Record<string, unknown>;
  body: string;
  upgraded: boolean;
}

/** One request to the proxy as a forward proxy sees it (absolute URI, or CONNECT host:port). */
function viaProxy(proxy: ForwardProxy, init: { method?: string; path: string; headers?: Record<string, string> }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: proxy.port, method: init.method ?? 'GET', path: init.path, headers: init.headers });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '', upgraded: true });
    });
    req.on('connect', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '', upgraded: false });
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, upgraded: false }));
    });
    req.on('error', reject);
    req.end();
  });
}

const UPGRADE = { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' };

/** In a page: a WebSocket to `url` with the bearer subprotocols; resolves with `open` or the close code. */
async function tryWebSocket(browser: Browser, pageUrl: string, url: string, jwt: string): Promise<string> {
  const page = await browser.newPage();
  try {
    await page.goto(pageUrl);
    return await page.evaluate(
      ({ url, jwt }) =>
        new Promise<string>((resolve) => {
          const ws = new WebSocket(url, ['bearer', jwt]);
          ws.onopen = () => {
            ws.close();
            resolve('open');
          };
          ws.onclose = (event) => resolve(`close ${event.code}`);
        }),
      { url, jwt },
    );
  } finally {
    await page.close();
  }
}

describe('the test forward proxy (Debian squid) blocks WebSocket and passes plain HTTP', () => {
  let gw: TestGateway;
  let proxy: ForwardProxy;
  beforeAll(async () => {
    gw = await startTestGateway({ LOG_LEVEL: 'warn' });
    proxy = await ForwardProxy.start();
  });
  afterAll(async () => {
    await proxy?.stop();
    await gw?.close();
  });

  it('a plain GET goes through', async () => {
    const answer = await viaProxy(proxy, { path: gw.http('/healthz') });
    expect(answer.status).toBe(200);
    // squid writes a request's log line once the transaction is over, which may be just after the answer.
    await eventually(() => /TCP_MISS\/200 \d+ GET http:\/\/127\.0\.0\.1:\d+\/healthz/.test(proxy.accessLog().join('\n')), 5000, 'the GET in the access log');
  });

  it('an upgrade sent to it as an absolute-URI request arrives without Upgrade: the gateway answers 426, nothing is upgraded', async () => {
    const answer = await viaProxy(proxy, { path: gw.ws('/ws').replace('ws:', 'http:'), headers: { ...UPGRADE, Authorization: `Bearer ${token()}` } });
    expect(answer.upgraded).toBe(false);
    expect(answer.status).toBe(426);
    expect(JSON.parse(answer.body)).toMatchObject({ error: 'upgrade_required' });
  });

  it('a CONNECT tunnel (how a browser sends ws:// through an HTTP proxy) is refused by squid itself, not by the gateway', async () => {
    const answer = await viaProxy(proxy, { method: 'CONNECT', path: `127.0.0.1:${gw.port}` });
    expect(answer.status).toBe(403);
    expect(String(answer.headers['content-type'])).toMatch(/text\/html/); // squid's error page, not the gateway's JSON
    await eventually(() => proxy.accessLog().some((line) => line.includes(`TCP_DENIED/403`) && line.includes(`CONNECT 127.0.0.1:${gw.port}`)), 5000, 'the refused CONNECT in the access log');
  });
});

describe('Chromium through squid: what blocks its WebSocket is the refused CONNECT', () => {
  let gw: TestGateway;
  const proxies: ForwardProxy[] = [];
  const browsers: Browser[] = [];
  beforeAll(async () => {
    gw = await startTestGateway({ LOG_LEVEL: 'warn' });
  });
  afterAll(async () => {
    await Promise.all(browsers.map((browser) => browser.close()));
    await Promise.all(proxies.map((proxy) => proxy.stop()));
    await gw?.close();
  });
  const through = async (connect: 'deny' | 'allow') => {
    const proxy = await ForwardProxy.start({ connect });
    proxies.push(proxy);
    // `<-loopback>`: Chromium sends even 127.0.0.1 through the proxy (by default loopback bypasses it).
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', `--proxy-server=${proxy.url}`, '--proxy-bypass-list=<-loopback>'] });
    browsers.push(browser);
    return { proxy, browser };
  };

  it('CONNECT refused: the page loads through the proxy, its WebSocket never opens (1006)', async () => {
    const { proxy, browser } = await through('deny');
    expect(await tryWebSocket(browser, gw.http('/healthz'), gw.ws('/ws'), token())).toBe('close 1006');
    await eventually(() => proxy.accessLog().some((line) => line.includes(`CONNECT 127.0.0.1:${gw.port}`)), 5000, 'the CONNECT in the access log');
    const log = proxy.accessLog().join('\n');
    expect(log).toMatch(/TCP_MISS\/200 \d+ GET http:\/\/127\.0\.0\.1:\d+\/healthz/); // the page came through squid
    expect(log).toContain(`TCP_DENIED/403`);
    expect(log).toContain(`CONNECT 127.0.0.1:${gw.port}`);
  });

  it('control: the same squid allowing CONNECT lets the same WebSocket open, through a tunnel', async () => {
    const { proxy, browser } = await through('allow');
    expect(await tryWebSocket(browser, gw.http('/healthz'), gw.ws('/ws'), token())).toBe('open');
    const tunnel = new RegExp(`TCP_TUNNEL/200 \\d+ CONNECT 127\\.0\\.0\\.1:${gw.port}`);
    await eventually(() => tunnel.test(proxy.accessLog().join('\n')), 5000, 'the tunnel in the access log'); // logged once it closed
  });
});
