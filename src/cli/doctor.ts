import { lookup } from 'node:dns/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { parseArgs } from 'node:util';
import 'reflect-metadata';
import WebSocket from 'ws';
import { claimAdmits } from '../channels/permissions';
import { loadConfig } from '../config/config';
import { builtInNamespaces, loadNamespaces, type NamespaceConfig } from '../config/namespaces';
import { routeTableOf } from '../upgrade/gateway-registry';
import { GATEWAYS } from '../gateways';
import { DOCTOR_USAGE as USAGE } from './doctor-usage';

const TIMEOUT_MS = 5000;
// Piped into `head`: the reader left, which is not a failure of the checks.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(problems > 0 ? 1 : 0);
  throw error;
});
const tty = process.stdout.isTTY === true;
const paint = (code: number, text: string) => (tty ? `\u001b[${code}m${text}\u001b[0m` : text);
let problems = 0;
const ok = (text: string) => console.log(`${paint(32, '✓')} ${text}`);
const info = (text: string) => console.log(`  ${text}`);
const warn = (text: string) => console.log(`${paint(33, '!')} ${text}`);
const bad = (text: string, fix?: string) => {
  problems++;
  console.log(`${paint(31, '✗')} ${text}`);
  if (fix) console.log(`  ${paint(36, '→')} ${fix}`);
};
/** More about the problem just reported (what GET /sse shows after a failed upgrade): the same cause, not another problem. */
const more = (text: string, fix?: string) => {
  info(text);
  if (fix) console.log(`  ${paint(36, '→')} ${fix}`);
};
/** Where the WebSocket endpoints are, for a URL whose port answers as something else. */
const CHECK_PORT = 'check the port: the WebSocket endpoints are on the public port (PORT, default 8080)';

/** Roles an endpoint admits, from the registered gateways (src/gateways.ts); undefined: any role. */
export function allowedRoles(pathname: string, modules = GATEWAYS): { roles?: string[]; endpoint: string } {
  const match = routeTableOf(modules).match(pathname);
  if (!match) return { endpoint: 'unknown' };
  const { name, roles, roleParam } = match.target;
  if (roleParam) return { roles: [match.params[roleParam]], endpoint: `${name} (your role must equal the ${roleParam} in the path)` };
  return { roles: roles.length ? [...roles] : undefined, endpoint: name };
}

/**
 * The namespace rules the doctor checks a token against: CHANNELS_FILE when this shell has it set (the gateway's
 * own file), otherwise the built-in ones. The doctor has no other way to know the remote gateway's configuration.
 */
function namespaces(): { list: NamespaceConfig[]; source: string } {
  // The service's own defaults (an empty environment), not a copy of them.
  const { historySize, historyTtlMs, maxPublishBytes } = loadConfig({}).config;
  const defaults = { historySize, historyTtlMs, maxPublishBytes };
  const file = process.env.CHANNELS_FILE;
  if (file) {
    const loaded = loadNamespaces(file, defaults);
    if (loaded.problems.length === 0) return { list: loaded.namespaces, source: `CHANNELS_FILE (${file})` };
    warn(`CHANNELS_FILE is set here but cannot be used (${loaded.problems[0].problem}); checking against the built-in namespaces`);
  }
  return { list: builtInNamespaces(defaults), source: 'the built-in namespaces (set CHANNELS_FILE to check against yours)' };
}

/** What a path endpoint's channel needs from the token beyond its role: the `channels` claim of `claim` namespaces. */
function checkChannel(pathname: string, claims: { sub?: unknown; channels?: unknown }): void {
  const match = routeTableOf(GATEWAYS).match(pathname);
  const channel = match?.target.channel?.(match.params);
  if (claims.channels !== undefined && (!Array.isArray(claims.channels) || !claims.channels.every((c) => typeof c === 'string' && c.length > 0 && c.length <= 256))) {
    bad('the token\'s "channels" claim is not an array of channel names (strings)', 'the server answers 401 token_invalid: issue it as e.g. ["signaling:c-123", "chat:ward-7-*"]');
    return;
  }
  if (!channel) return;
  const { list, source } = namespaces();
  const prefix = channel.includes(':') ? channel.slice(0, channel.indexOf(':')) : channel;
  const ns = list.find((n) => n.name === prefix);
  if (!ns || ns.subscribe.mode !== 'claim') return;
  if (claimAdmits(claims.channels as string[] | undefined, channel)) ok(`the token's channels claim names ${channel}`);
  else {
    bad(
      `the token's "channels" claim does not name ${channel}, and ${ns.name} channels need it (per ${source})`,
      `the server answers 403 forbidden_channel: get a token issued for this channel (development: npm run token -- --role <role> --channel ${channel})`,
    );
  }
}

function checkToken(token: string | undefined, pathname: string): void {
  if (!token) {
    warn('no --token given: the server will answer 401 token_missing');
    return;
  }
  const parts = token.split('.');
  if (parts.length !== 3) return bad('the token is not a JWT (expected three dot-separated parts)', 'pass the raw token, without "Bearer "');
  let claims: { sub?: unknown; role?: unknown; exp?: unknown; channels?: unknown };
  try {
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    return bad('the token payload is not JSON', 'get a fresh token from your issuer');
  }
  const now = Date.now() / 1000;
  if (typeof claims.exp === 'number') {
    if (claims.exp <= now) bad(`the token expired ${Math.round(now - claims.exp)} s ago`, 'get a fresh token (the server answers 401 token_expired)');
    else ok(`token expires in ${Math.round(claims.exp - now)} s`);
  } else {
    warn('the token has no exp: it never expires');
  }
  if (typeof claims.sub !== 'string' || !claims.sub) bad('the token has no "sub" claim', 'the gateway needs sub (the user id) and role');
  if (typeof claims.role !== 'string' || !claims.role) return bad('the token has no "role" claim', 'the gateway needs sub and role');
  const { roles, endpoint } = allowedRoles(pathname);
  if (roles && !roles.includes(claims.role)) {
    bad(`role "${claims.role}" may not use the ${endpoint} endpoint (allowed: ${roles.join(', ')})`, 'use a token with an allowed role');
  } else {
    ok(`token for sub "${String(claims.sub)}" with role "${claims.role}" (signature not checked here: the doctor has no key)`);
  }
  checkChannel(pathname, claims);
}

function reachable(host: string, port: number, secure: boolean): Promise<'ok' | 'refused' | 'timeout' | 'plain' | string> {
  return new Promise((resolve) => {
    const socket = secure ? tlsConnect({ host, port, servername: host, rejectUnauthorized: false }) : tcpConnect(port, host);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('timeout');
    }, TIMEOUT_MS);
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve('ok');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (error.code === 'ECONNREFUSED') resolve('refused');
      else if (secure && /wrong version number|packet length too long|EPROTO/i.test(`${error.code} ${error.message}`)) resolve('plain');
      else resolve(error.message);
    });
  });
}

/** What `ws` reports when an upgrade is cut before any answer (reset, closed) or never answered. */
const NO_ANSWER = /ECONNRESET|EPIPE|socket hang up|handshake has timed out/i;

interface Upgrade {
  ws?: WebSocket;
  status?: number;
  headers?: Record<string, unknown>;
  body?: { error?: string; message?: string };
  /** The answer was the gateway's JSON (every refusal of the gateway is): false for a proxy's own page. */
  json?: boolean;
  error?: string;
}

function upgrade(url: string, token: string | undefined): Promise<Upgrade> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, token ? ['bearer', token] : [], { handshakeTimeout: TIMEOUT_MS });
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (req, res) => {
      let raw = '';
      res.on('data', (chunk) => (raw += chunk));
      res.on('end', () => {
        let body: Upgrade['body'];
        try {
          body = JSON.parse(raw);
        } catch {
          // Not the gateway's: a proxy's page, never repeated (such pages quote the request URL, token and all).
          req.destroy();
          return resolve({ status: res.statusCode, headers: res.headers, json: false });
        }
        req.destroy();
        resolve({ status: res.statusCode, headers: res.headers, body, json: true });
      });
    });
    ws.once('error', (error) => resolve({ error: error.message }));
  });
}

function explainRefusal({ status, headers, body }: Upgrade, url: URL, port: number): void {
  const code = body?.error ? ` ${body.error}` : '';
  const message = body?.message ?? '';
  // The internal port's answer to any upgrade, naming the public port (src/app.ts): the path is fine, the port is not.
  const publicPort = /on the public port \(PORT, here (\d+)\)/.exec(message)?.[1];
  if (status === 404 && publicPort) {
    const right = new URL(url);
    right.port = publicPort;
    right.search = '';
    return bad(`the server refused the upgrade: HTTP ${status}${code}`, `${port} is the gateway's internal port (INTERNAL_PORT): use its public port, ${right.toString()}`);
  }
  bad(`the server refused the upgrade: HTTP ${status}${code}`);
  if (body?.message) info(body.message);
  const retry = `retry after ${headers?.['retry-after'] ?? '?'} s`;
  if (status === 404) {
    const known = /known WebSocket paths: ([^)]*)/.exec(message)?.[1];
    if (message.includes('repeats the prefix')) info('a doubled prefix: the base URL already ends in that prefix; drop one copy');
    else info(`fix the path${known ? `: the WebSocket paths are ${known}` : ' (see the server\'s message above)'}`);
  } else if (status === 401 && body?.error === 'token_revoked') {
    info('this token was revoked (POST /api/revoke, by its jti or its user): get a new one; a new one refused too means the user\'s tokens were revoked up to a time after it was issued');
  } else if (status === 401) info(body?.error === 'token_missing' ? 'pass --token (the doctor sends it as the bearer subprotocol)' : 'get a valid, unexpired token signed with the key the gateway uses');
  else if (status === 403 && body?.error === 'banned') info(`this user is banned (POST /api/disconnect with ban_seconds); ${retry}, or ask an admin to lift it`);
  else if (status === 403 && body?.error === 'forbidden_channel') info('the token may not open this channel: its "channels" claim must name it (or a prefix ending in *); get a token issued for it');
  else if (status === 403) info(body?.error === 'forbidden_origin' ? 'add your page origin to ALLOWED_ORIGINS' : 'use a token whose role may use this endpoint');
  else if (status === 409) info('another connection holds this seat or room membership; close it first');
  else if (status === 429 && body?.error === 'too_many_upgrades') {
    info(`too many connection attempts from your address (MAX_UPGRADES_PER_IP_PER_SEC); ${retry}`);
    info('behind a proxy or load balancer, set TRUSTED_PROXIES so the gateway limits each client, not the proxy\'s address');
  } else if (status === 429) info(`too many connections for this user (MAX_CONNECTIONS_PER_USER); ${retry}`);
  else if (status === 503 && body?.error === 'keys_unavailable') {
    info(`the gateway cannot reach its identity provider to check tokens: check JWT_JWKS_URL / OIDC_ISSUER_URL from the gateway's host; ${retry}`);
  } else if (status === 503) info(`the node is ${body?.error === 'draining' ? 'shutting down' : body?.error === 'redis_unavailable' ? 'cut off from Redis' : 'full'}; ${retry} (another replica should answer)`);
  else if (status === 426) info('the gateway got a plain HTTP request: something between you and it drops the Upgrade and Connection headers (nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade")');
  else if (status === 431) info('the request headers are over 16 KB: a shorter token (fewer claims) or fewer cookies');
  else if (status === 400) info('the request is not valid (see the server\'s message): a malformed since or epoch, or a broken upgrade request');
}

/** The channel a path endpoint serves (`alerts` for /api/alerts/subscribe), as a stream would ask for it. */
function endpointChannel(pathname: string): string | undefined {
  const match = routeTableOf(GATEWAYS).match(pathname);
  return match?.target.channel?.(match.params);
}

interface StreamCheck {
  /** ms from the request to the welcome; undefined when no welcome came. */
  welcomeMs?: number;
  channels?: string[];
  /** The error events that followed the welcome (refused channels). */
  refused?: { channel?: string; code?: string }[];
  status?: number;
  body?: { error?: string; message?: string };
  json?: boolean;
  notAStream?: boolean;
  error?: string;
}

/**
 * `GET /sse` on the same host with the same token: does plain HTTP get through where the upgrade does not, and
 * does the stream start (its welcome, the first event)? Reads for at most TIMEOUT_MS, then hangs up.
 */
function tryStream(url: URL, token: string | undefined, channel: string | undefined): Promise<StreamCheck> {
  const secure = url.protocol === 'wss:';
  const target = new URL(`${secure ? 'https' : 'http'}://${url.host}/sse`);
  if (channel) target.searchParams.set('channel', channel);
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  if (token) headers.authorization = `Bearer ${token}`;
  const started = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    let res: IncomingMessage | undefined;
    const finish = (result: StreamCheck) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      res?.destroy();
      resolve(result);
    };
    const req = (secure ? httpsRequest : httpRequest)(target, { headers }, (answer) => {
      res = answer;
      let raw = '';
      answer.setEncoding('utf8');
      if (answer.statusCode !== 200) {
        answer.on('data', (chunk: string) => (raw += chunk));
        answer.on('end', () => {
          try {
            finish({ status: answer.statusCode, body: JSON.parse(raw), json: true });
          } catch {
            finish({ status: answer.statusCode, json: false });
          }
        });
        return;
      }
      if (!/^text\/event-stream/i.test(answer.headers['content-type'] ?? '')) return finish({ status: 200, notAStream: true });
      let welcome: StreamCheck | undefined;
      let more: NodeJS.Timeout | undefined;
      answer.on('data', (chunk: string) => {
        raw += chunk;
        let end: number;
        while ((end = raw.indexOf('\n\n')) !== -1) {
          const event = raw.slice(0, end);
          raw = raw.slice(end + 2);
          const data = event.split('\n').filter((line) => line.startsWith('data:')).map((line) => line.slice(5).replace(/^ /, '')).join('\n');
          if (!data) continue; // a comment (heartbeat)
          let frame: { type?: string; channels?: Record<string, unknown>; payload?: { code?: string; channel?: string } };
          try {
            frame = JSON.parse(data);
          } catch {
            continue;
          }
          if (!welcome) {
            if (frame.type !== 'welcome') return finish({ status: 200, notAStream: true });
            welcome = { welcomeMs: performance.now() - started, channels: Object.keys(frame.channels ?? {}), refused: [] };
            // A channel asked for and not admitted: its error event follows the welcome; wait for it briefly.
            if (!channel || welcome.channels!.includes(channel)) return finish(welcome);
            more = setTimeout(() => finish(welcome!), 1000);
          } else if (frame.type === 'error') {
            welcome.refused!.push({ channel: frame.payload?.channel, code: frame.payload?.code });
            clearTimeout(more);
            return finish(welcome);
          }
        }
      });
      answer.on('end', () => finish(welcome ?? { status: 200 }));
    });
    const timer = setTimeout(() => finish(res ? { status: res.statusCode } : { error: `no answer within ${TIMEOUT_MS / 1000} s` }), TIMEOUT_MS);
    req.on('error', (error: NodeJS.ErrnoException) => finish({ error: error.code ?? error.message }));
    req.end();
  });
}

/**
 * The upgrade cannot complete because of something between the client and the gateway: say whether Server-Sent
 * Events get through instead, which is what the SDK's `/ws` client falls back to by itself.
 */
async function checkStream(url: URL, token: string | undefined, stream?: StreamCheck): Promise<void> {
  const channel = endpointChannel(url.pathname);
  stream ??= await tryStream(url, token, channel);
  if (stream.welcomeMs !== undefined) {
    const refused = stream.refused?.[0];
    if (channel && !stream.channels?.includes(channel)) {
      bad(`GET /sse streams, but refused ${channel}: ${refused?.code ?? 'not admitted'}`, 'the token may not read that channel (see the messages above); over SSE the same permissions hold as over WebSocket');
      return;
    }
    ok(`GET /sse streams: its welcome arrived in ${Math.round(stream.welcomeMs)} ms${channel ? `, with ${channel}` : ''}: Server-Sent Events get through where WebSocket does not`);
    info(
      `the SDK's /ws client switches to SSE by itself (client.transport says "sse") and tries WebSocket again later: connect it to ${url.protocol}//${url.host}/ws` +
        (channel && url.pathname !== '/ws' ? ` and subscribe to ${channel} (path endpoints such as ${url.pathname} are WebSocket only)` : ''),
    );
    info('to get WebSocket itself back, the proxy or firewall on the way must pass Upgrade and Connection (docs/deploy.md, "Load balancers, proxies and Ingress")');
    return;
  }
  // What follows explains the upgrade's failure just reported: the same cause, so no second problem is counted.
  if (stream.error !== undefined) return more(`GET /sse failed too (${stream.error}): plain HTTP to the gateway does not get through either`, 'check the network path to the gateway: a proxy or firewall that lets nothing through to it');
  if (stream.notAStream) return more('GET /sse answered 200, but not with an event stream: this is not a realtime-gateway (or something on the way rewrote the answer)');
  if (stream.status === 200) return more(`GET /sse opened, but no event arrived within ${TIMEOUT_MS / 1000} s: something on the way buffers the stream`, 'turn response buffering off for /sse on the proxy (docs/deploy.md, "Load balancers, proxies and Ingress")');
  if (stream.json && stream.body?.error) {
    more(`GET /sse was refused too: HTTP ${stream.status} ${stream.body.error}`);
    if (stream.body.message) info(stream.body.message);
    return;
  }
  more(`GET /sse was answered HTTP ${stream.status} by something that is not the gateway: plain HTTP to /sse is blocked too`, 'ask whoever runs the proxy to let /sse and /sse/send through, or to pass WebSocket upgrades');
}

async function pingRoundTrip(ws: WebSocket): Promise<number[]> {
  const rtts: number[] = [];
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    const answered = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no pong within 5 s')), TIMEOUT_MS);
      const onMessage = (data: WebSocket.RawData) => {
        if (data.toString() !== 'pong') return;
        clearTimeout(timer);
        ws.off('message', onMessage);
        resolve();
      };
      ws.on('message', onMessage);
    });
    ws.send('ping');
    await answered;
    rtts.push(performance.now() - started);
  }
  return rtts;
}

export async function doctor(raw: string, token: string | undefined): Promise<number> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    bad(`"${raw}" is not a URL`, 'use e.g. ws://localhost:8080/api/alerts/subscribe');
    return 1;
  }
  if (url.protocol === 'http:' || url.protocol === 'https:') {
    warn(`${url.protocol}// is for the HTTP endpoints; WebSockets use ${url.protocol === 'https:' ? 'wss' : 'ws'}:// (checking that instead)`);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  } else if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    bad(`unsupported scheme ${url.protocol}`, 'use ws:// or wss://');
    return 1;
  }
  if (url.searchParams.has('token')) warn('the token is in the URL (?token=): it may end up in proxy logs; prefer the subprotocol');
  token ??= url.searchParams.get('token') ?? undefined;
  const secure = url.protocol === 'wss:';
  const port = Number(url.port || (secure ? 443 : 80));
  console.log(`Checking ${url.protocol}//${url.host}${url.pathname}`);

  checkToken(token, url.pathname);

  try {
    const { address } = await lookup(url.hostname);
    ok(`DNS: ${url.hostname} is ${address}`);
  } catch {
    bad(`DNS: cannot resolve "${url.hostname}"`, 'check the host name (typo? VPN? /etc/hosts?)');
    return 1;
  }

  const tcp = await reachable(url.hostname, port, secure);
  if (tcp === 'refused') {
    bad(`nothing is listening on ${url.hostname}:${port} (connection refused)`, `is the gateway running, and is ${port} its public port? (npm start listens on PORT, default 8080)`);
    return 1;
  }
  if (tcp === 'timeout') {
    bad(`no answer from ${url.hostname}:${port} within ${TIMEOUT_MS / 1000} s`, 'a firewall or a wrong host; check the port is reachable from here');
    return 1;
  }
  if (tcp === 'plain') {
    bad(`wss:// to ${url.hostname}:${port}, but that port speaks plain HTTP (no TLS)`, `use ws://${url.host}${url.pathname}, or put a TLS-terminating proxy in front`);
    return 1;
  }
  if (tcp !== 'ok') {
    bad(`cannot connect to ${url.hostname}:${port}: ${tcp}`);
    return 1;
  }
  ok(`${secure ? 'TLS' : 'TCP'} connection to ${url.hostname}:${port}`);

  const upgraded = await upgrade(url.toString(), token);
  if (upgraded.status !== undefined && upgraded.json === false) {
    // Every answer of the gateway is JSON: this one came from something else. When GET /sse is not the gateway's
    // either, nothing on this port is: a wrong port (one cause), not a proxy that blocks WebSocket.
    const stream = await tryStream(url, token, endpointChannel(url.pathname));
    if (stream.notAStream || (stream.status !== undefined && stream.status !== 200 && !stream.json)) {
      bad(`${url.hostname}:${port} is not the gateway: the upgrade got HTTP ${upgraded.status} and GET /sse HTTP ${stream.status}, neither the gateway's JSON`, `${CHECK_PORT}; behind a proxy, it passes neither WebSocket nor /sse to the gateway`);
      return 1;
    }
    bad(`the upgrade was answered HTTP ${upgraded.status} by something that is not the gateway (its answers are JSON): a proxy or firewall on the way refuses WebSocket`);
    await checkStream(url, token, stream);
    return 1;
  }
  if (upgraded.status !== undefined) {
    explainRefusal(upgraded, url, port);
    // 426: something on the way dropped Upgrade; a stream is a plain request and may well get through.
    if (upgraded.status === 426) await checkStream(url, token);
    return 1;
  }
  if (!upgraded.ws && NO_ANSWER.test(upgraded.error ?? '')) {
    bad(`the WebSocket upgrade got no HTTP answer (${upgraded.error}): something between you and the gateway (a proxy, a firewall) may block WebSocket`);
    await checkStream(url, token);
    return 1;
  }
  if (!upgraded.ws && /Parse Error/i.test(upgraded.error ?? '')) {
    // Node's HTTP parser could not read the answer: what listens there speaks another protocol (Redis, SSH, ...).
    bad(`${url.hostname}:${port} does not answer HTTP (${upgraded.error}): it is not the gateway`, CHECK_PORT);
    return 1;
  }
  if (!upgraded.ws) {
    bad(`the WebSocket handshake failed: ${upgraded.error ?? 'unknown error'}`, 'is this a realtime-gateway endpoint (and not another HTTP service)?');
    return 1;
  }
  const ws = upgraded.ws;
  ok(`WebSocket open (subprotocol "${ws.protocol || 'none'}")`);
  try {
    const rtts = await pingRoundTrip(ws);
    ok(`ping round trip ${rtts.map((r) => `${r.toFixed(1)} ms`).join(', ')}`);
  } catch (error) {
    bad((error as Error).message, 'the connection opened but does not answer: a proxy buffering WebSocket frames?');
  }
  const closed = await new Promise<number>((resolve) => {
    ws.once('close', (code) => resolve(code));
    ws.close(1000, 'doctor done');
  });
  if (closed === 1000) ok('closed cleanly (1000)');
  else bad(`the close ended with ${closed} instead of 1000`);
  return problems ? 1 : 0;
}

export async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({ allowPositionals: true, options: { token: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  } catch (error) {
    process.stderr.write(`doctor: ${(error as Error).message}\n\n${USAGE}\n`);
    process.exit(2);
  }
  if (parsed.values.help || parsed.positionals.length !== 1) {
    (parsed.values.help ? process.stdout : process.stderr).write(`${USAGE}\n`);
    process.exit(parsed.values.help ? 0 : 2);
  }
  const code = await doctor(parsed.positionals[0], parsed.values.token);
  console.log(code === 0 ? paint(32, 'healthy') : paint(31, `${problems} problem${problems === 1 ? '' : 's'} found`));
  process.exit(code);
}

if (require.main === module) void main();
