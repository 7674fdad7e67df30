import { spawn, type ChildProcess } from 'node:child_process';
import { constants, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type JsonWebKey, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ROOT } from './process';

// ---------------------------------------------------------------------------------------------------------------
// Keys and compact JWS with node:crypto only
// ---------------------------------------------------------------------------------------------------------------

export type SigningAlg = 'RS256' | 'RS384' | 'ES256' | 'ES384' | 'EdDSA';

/** A public JWK as published in a JWKS (with kid, alg and use). */
export type PublicJwk = JsonWebKey & { kid: string; alg: string; use?: string };

export interface Jwks {
  keys: Array<Record<string, unknown>>;
}

export interface SigningKey {
  kid: string;
  alg: SigningAlg;
  privateKey: KeyObject;
  publicJwk: PublicJwk;
}

/** A fresh key pair for `alg` (RSA 2048, P-256, P-384 or Ed25519), its public half as a JWK with `kid`, `alg`, `use: 'sig'`. */
export function generateSigningKey(alg: SigningAlg, kid: string): SigningKey {
  const { privateKey, publicKey } =
    alg === 'RS256' || alg === 'RS384'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : alg === 'ES256'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : alg === 'ES384'
          ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
          : generateKeyPairSync('ed25519');
  return { kid, alg, privateKey, publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' } };
}

/** The JWKS document publishing these keys' public halves. */
export function jwksOf(...keys: SigningKey[]): Jwks {
  return { keys: keys.map((key) => ({ ...key.publicJwk })) };
}

const base64url = (value: object | Buffer) => (Buffer.isBuffer(value) ? value : Buffer.from(JSON.stringify(value))).toString('base64url');

function digestOf(alg: string): string | null {
  if (alg === 'EdDSA' || alg === 'Ed25519') return null;
  const bits = /^(?:RS|PS|ES)(256|384|512)$/.exec(alg)?.[1];
  if (!bits) throw new Error(`no digest for alg ${alg}`);
  return `sha${bits}`;
}

/**
 * A compact JWS over `claims` (taken as they are: add `exp`/`iat` yourself), header {alg, typ: 'JWT', kid} then
 * `headerExtras` (which may override any of them, e.g. `{ alg: 'none' }`, `{ kid: undefined }` to drop it, or
 * `{ typ: 'at+jwt' }`). The signature always uses `key`'s own algorithm. ES signatures are IEEE P1363 (r||s), as
 * JWS requires; EdDSA signs with crypto.sign(null, ...).
 */
export function signJwt(key: SigningKey, claims: Record<string, unknown>, headerExtras: Record<string, unknown> = {}): string {
  const header = { alg: key.alg, typ: 'JWT', kid: key.kid, ...headerExtras };
  const input = `${base64url(header)}.${base64url(claims)}`;
  const signature = key.alg.startsWith('ES')
    ? sign(digestOf(key.alg), Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' })
    : sign(digestOf(key.alg), Buffer.from(input), key.privateKey);
  return `${input}.${base64url(signature)}`;
}

/** Header and payload of a compact JWS, unverified. */
export function decodeJwt(token: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [header, payload] = token.split('.');
  if (!header || payload === undefined) throw new Error('not a compact JWS');
  return {
    header: JSON.parse(Buffer.from(header, 'base64url').toString()),
    payload: JSON.parse(Buffer.from(payload, 'base64url').toString()),
  };
}

/** Whether `token`'s signature verifies with the public `jwk`, by node:crypto alone, using the header's alg. */
export function verifyJwtSignature(token: string, jwk: JsonWebKey): boolean {
  const [header, payload, signature] = token.split('.');
  const { alg } = decodeJwt(token).header as { alg: string };
  const key = createPublicKey({ key: jwk, format: 'jwk' });
  const input = Buffer.from(`${header}.${payload}`);
  const bytes = Buffer.from(signature ?? '', 'base64url');
  if (alg.startsWith('PS')) {
    return verify(digestOf(alg), input, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(2)) / 8 }, bytes);
  }
  return alg.startsWith('ES') ? verify(digestOf(alg), input, { key, dsaEncoding: 'ieee-p1363' }, bytes) : verify(digestOf(alg), input, key, bytes);
}

/** The private KeyObject for a private JWK (as the provider script generates them). */
export const privateKeyOf = (jwk: JsonWebKey): KeyObject => createPrivateKey({ key: jwk, format: 'jwk' });

// ---------------------------------------------------------------------------------------------------------------
// Plain HTTP (agent: false, so no keep-alive socket outlives a test)
// ---------------------------------------------------------------------------------------------------------------

export interface HttpResponse {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

export function httpFetch(url: string, options: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {}): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.setTimeout(options.timeoutMs ?? 5000, () => req.destroy(new Error(`${options.method ?? 'GET'} ${url} timed out`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

export async function getJson<T = Record<string, unknown>>(url: string): Promise<T> {
  const res = await httpFetch(url);
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${res.body}`);
  return JSON.parse(res.body) as T;
}

// ---------------------------------------------------------------------------------------------------------------
// A real OpenID Provider (oidc-provider, in a child process: test/support/oidc-provider.mjs)
// ---------------------------------------------------------------------------------------------------------------

export const OIDC_PROVIDER_SCRIPT = join(ROOT, 'test', 'support', 'oidc-provider.mjs');

export type ProviderAlg = 'RS256' | 'ES256' | 'EdDSA';

export interface OidcClient {
  id: string;
  secret: string;
  /** The token's `role` claim (omitted when undefined). */
  role?: string;
  /** The token's `sub`; by default the provider puts the client_id there. */
  sub?: string;
}

export interface OidcProviderOptions {
  /** The signing key's algorithm (default RS256); a key of that alg is generated at start and at each rotation. */
  alg?: ProviderAlg;
  /** The `aud` of the access tokens. */
  audience: string;
  clients: OidcClient[];
  /** Access token lifetime in seconds (default 3600). */
  ttl?: number;
  /** Also publish an RS256 key that signs nothing (beside an ES256/EdDSA one), so verifiers must pick by kid. */
  alsoRsa?: boolean;
}

export interface OidcProvider {
  /** `http://127.0.0.1:PORT`, no trailing slash; the same after rotations. */
  issuer: string;
  port: number;
  /** `${issuer}/.well-known/openid-configuration` */
  discoveryUrl: string;
  /** As the discovery document names it: `${issuer}/jwks`. */
  jwksUri: string;
  /** The kids published now, newest first, and the one tokens are signed with now. */
  kids: string[];
  signingKid: string;
  /**
   * An access token (a JWT, header typ `at+jwt`) from the provider's token endpoint, over HTTP: grant_type
   * client_credentials with the client's secret (client_secret_post, or basic) and a resource indicator for
   * `audience` (default: the provider's audience; any other gives a token for that audience).
   */
  token(clientId: string, options?: { audience?: string; auth?: 'post' | 'basic' }): Promise<string>;
  /** The raw token endpoint response, for error cases (wrong secret, unknown client...). */
  tokenResponse(clientId: string, secret: string, options?: { audience?: string; auth?: 'post' | 'basic' }): Promise<HttpResponse>;
  /**
   * A new signing key (of `alg`, default the current one). `rotate`: the old keys stay published; `replace`: only
   * the new key is. Resolves with the kids now published, newest first, once the provider serves them.
   */
  rotate(mode?: 'rotate' | 'replace', alg?: ProviderAlg): Promise<string[]>;
  /** What the provider wrote to stderr (oidc-provider's warnings, server errors). */
  stderr(): string;
  child: ChildProcess;
  /** Kills the child and waits for it to exit; idempotent. */
  stop(): Promise<void>;
}

type Message = Record<string, unknown>;

/**
 * Providers still running, killed if this process exits without stopping them. That is the second line: the
 * script also exits when its stdin closes, which the OS does when this process dies in any way (a crashed or
 * killed jest worker included). One set and one listener per process, however many test files load this module.
 */
const RUNNING = Symbol.for('realtime-gateway.test.oidc-providers');
const running: Set<ChildProcess> = ((process as unknown as Record<symbol, Set<ChildProcess>>)[RUNNING] ??= (() => {
  const set = new Set<ChildProcess>();
  process.once('exit', () => {
    for (const child of set) child.kill('SIGKILL');
  });
  return set;
})());

export async function startOidcProvider(opts: OidcProviderOptions): Promise<OidcProvider> {
  const alg = opts.alg ?? 'RS256';
  const clients = new Map(opts.clients.map((c) => [c.id, c]));
  const child = spawn(process.execPath, [OIDC_PROVIDER_SCRIPT], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      OIDC_ALG: alg,
      OIDC_AUDIENCE: opts.audience,
      OIDC_CLIENTS: JSON.stringify(opts.clients),
      OIDC_TOKEN_TTL: String(opts.ttl ?? 3600),
      OIDC_ALSO_RSA: opts.alsoRsa ? '1' : '',
    },
    // stdin stays a pipe: the script exits when it closes, so a jest worker that dies takes the provider with it.
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  running.add(child);
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  let stderr = '';
  const dump = (line: string) => process.env.DUMP_LOGS && appendFileSync(`${process.env.DUMP_LOGS}/oidc-provider-${child.pid}.log`, `${line}\n`);
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    dump(chunk.toString().trimEnd());
  });
  child.stdin!.on('error', () => undefined); // EPIPE after the child is gone

  // stdout: one JSON message a line, handed to whoever waits for the next one.
  const inbox: Message[] = [];
  const waiters: Array<(message: Message) => void> = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    dump(line);
    let message: Message;
    try {
      message = JSON.parse(line) as Message;
    } catch {
      return;
    }
    const waiter = waiters.shift();
    if (waiter) waiter(message);
    else inbox.push(message);
  });
  // The child and its pipes keep this process alive only while we wait on them (for a message, or for its exit in
  // stop()): a test that forgets stop() must not keep jest from exiting (then the exit hook and the closing stdin
  // end the provider).
  let holds = 0;
  const hold = <T>(promise: Promise<T>): Promise<T> => {
    if (holds++ === 0) setRef(child, true);
    return promise.finally(() => {
      if (--holds === 0) setRef(child, false);
    });
  };
  const nextMessage = (what: string): Promise<Message> => {
    const queued = inbox.shift();
    if (queued) return Promise.resolve(queued);
    return hold(
      Promise.race([
        new Promise<Message>((resolve) => waiters.push(resolve)),
        exited.then((code) => Promise.reject(new Error(`oidc-provider exited with ${code} before ${what}: ${stderr}`))),
      ]),
    );
  };

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await hold(exited);
    })());

  let ready: Message;
  try {
    ready = await nextMessage('it was ready');
  } catch (error) {
    await stop();
    throw error;
  }
  const issuer = ready.issuer as string;
  const discoveryUrl = `${issuer}/.well-known/openid-configuration`;
  let discovery: { jwks_uri: string; token_endpoint: string };
  try {
    discovery = await getJson(discoveryUrl);
  } catch (error) {
    await stop();
    throw error;
  }

  const tokenResponse: OidcProvider['tokenResponse'] = (clientId, secret, options = {}) => {
    const form = new URLSearchParams({ grant_type: 'client_credentials', resource: resourceFor(options.audience ?? opts.audience) });
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
    if (options.auth === 'basic') {
      // RFC 6749 §2.3.1: form-urlencode each part before base64.
      const part = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
      headers.authorization = `Basic ${Buffer.from(`${part(clientId)}:${part(secret)}`).toString('base64')}`;
    } else {
      form.set('client_id', clientId);
      form.set('client_secret', secret);
    }
    return httpFetch(discovery.token_endpoint, { method: 'POST', headers, body: form.toString() });
  };

  // Serialised: the script answers commands in order, one line each.
  let commands = Promise.resolve();
  const provider: OidcProvider = {
    issuer,
    port: ready.port as number,
    discoveryUrl,
    jwksUri: discovery.jwks_uri,
    kids: ready.kids as string[],
    signingKid: ready.signingKid as string,
    child,
    stderr: () => stderr,
    stop,
    tokenResponse,
    async token(clientId, options = {}) {
      const client = clients.get(clientId);
      if (!client) throw new Error(`no client ${clientId} was configured`);
      const res = await tokenResponse(clientId, client.secret, options);
      if (res.status !== 200) throw new Error(`token endpoint: ${res.status} ${res.body}\n${stderr}`);
      return (JSON.parse(res.body) as { access_token: string }).access_token;
    },
    rotate(mode = 'rotate', nextAlg) {
      const result = commands.then(async () => {
        child.stdin!.write(`${mode}${nextAlg ? ` ${nextAlg}` : ''}\n`);
        const answer = await nextMessage(`answering ${mode}`);
        if (!answer.rotated) throw new Error(`oidc-provider could not ${mode}: ${JSON.stringify(answer)}`);
        provider.kids = answer.kids as string[];
        provider.signingKid = answer.signingKid as string;
        return provider.kids;
      });
      commands = result.then(
        () => undefined,
        () => undefined,
      );
      return result;
    },
  };
  return provider;
}

function setRef(child: ChildProcess, ref: boolean): void {
  for (const handle of [child, child.stdin, child.stdout, child.stderr] as Array<{ ref?: () => void; unref?: () => void } | null>) {
    if (ref) handle?.ref?.();
    else handle?.unref?.();
  }
}

/** The resource indicator for an audience, as oidc-provider.mjs maps it back (it must be an absolute URI). */
function resourceFor(audience: string): string {
  return URL.canParse(audience) && !audience.includes('#') ? audience : `urn:x-test-audience:${encodeURIComponent(audience)}`;
}

// ---------------------------------------------------------------------------------------------------------------
// A plain JWKS endpoint (with a discovery document) the test controls
// ---------------------------------------------------------------------------------------------------------------

export interface JwksServer {
  /** `http://127.0.0.1:PORT` */
  url: string;
  port: number;
  /** The issuer the discovery document names (default: `url`). */
  issuer: string;
  /** `${url}/jwks.json` */
  jwksUri: string;
  /** `${url}/.well-known/openid-configuration` (issuer and jwks_uri). */
  discoveryUrl: string;
  /** GETs of /jwks.json so far, answered or not (a request made while down() counts too). */
  readonly fetches: number;
  /** The document served from now on. */
  set(jwks: Jwks | object): void;
  /** The Cache-Control header of JWKS responses from now on (undefined: none). */
  setCacheControl(value: string | undefined): void;
  /**
   * An outage of the whole server from now on: every request is answered with `status` (empty JSON body
   * `{"error":"down"}`), or left without any answer ('hang': headers never come, until up() or close()), or its
   * connection reset (TCP RST, 'reset').
   */
  down(mode: number | 'hang' | 'reset'): void;
  /** Serves again (and lets hung requests go: their sockets are destroyed). */
  up(): void;
  /** Resolves once the next GET of /jwks.json has been dealt with: answered, reset, or left hanging. */
  nextFetch(): Promise<void>;
  /** Resolves once `fetches` reaches `count` (at once if it already has). */
  untilFetches(count: number): Promise<void>;
  close(): Promise<void>;
}

export async function startJwksServer(initial: Jwks | object, options: { issuer?: string; cacheControl?: string } = {}): Promise<JwksServer> {
  let jwks = initial;
  let cacheControl = options.cacheControl;
  let outage: number | 'hang' | 'reset' | undefined;
  let fetches = 0;
  const fetchWaiters: Array<() => void> = [];
  const hung = new Set<ServerResponse>();
  const sockets = new Set<Socket>();
  let issuer = options.issuer ?? '';
  let url = '';

  const fetched = () => {
    for (const waiter of fetchWaiters.splice(0)) waiter();
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const isJwksGet = req.method === 'GET' && path === '/jwks.json';
    if (isJwksGet) fetches++;
    if (outage === 'hang') {
      hung.add(res);
      res.on('close', () => hung.delete(res));
      if (isJwksGet) fetched();
      return;
    }
    if (outage === 'reset') {
      req.socket.resetAndDestroy();
      if (isJwksGet) fetched();
      return;
    }
    if (isJwksGet) res.on('finish', fetched);
    if (outage !== undefined) return send(res, outage, { error: 'down' });
    if (req.method !== 'GET') return send(res, 405, { error: 'method not allowed' });
    if (path === '/jwks.json') return send(res, 200, jwks, cacheControl);
    if (path === '/.well-known/openid-configuration') return send(res, 200, { issuer, jwks_uri: `${url}/jwks.json` });
    return send(res, 404, { error: 'not found' });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = (server.address() as { port: number }).port;
  url = `http://127.0.0.1:${port}`;
  issuer ||= url;

  const releaseHung = () => {
    for (const res of hung) res.socket?.destroy();
    hung.clear();
  };

  return {
    url,
    port,
    issuer,
    jwksUri: `${url}/jwks.json`,
    discoveryUrl: `${url}/.well-known/openid-configuration`,
    get fetches() {
      return fetches;
    },
    set: (next) => void (jwks = next),
    setCacheControl: (value) => void (cacheControl = value),
    down: (mode) => void (outage = mode),
    up: () => {
      outage = undefined;
      releaseHung();
    },
    nextFetch: () => new Promise<void>((resolve) => fetchWaiters.push(resolve)),
    untilFetches(count) {
      return new Promise<void>((resolve) => {
        const check = () => (fetches >= count ? resolve() : fetchWaiters.push(check));
        check();
      });
    },
    async close() {
      releaseHung();
      const closed = once(server, 'close');
      server.close();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

function send(res: ServerResponse, status: number, body: object, cacheControl?: string): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...(cacheControl !== undefined ? { 'cache-control': cacheControl } : {}),
  });
  res.end(text);
}
