import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';
import { AuthError, type JwtVerifier, KeysUnavailableError, WWW_AUTHENTICATE } from '../auth/jwt-verifier';
import type { Principal } from '../auth/principal';
import { extractToken } from '../auth/token-extractor';
import { BrokerUnavailableError, NotReplicatedError } from '../channels/broker';
import type { MessageLimits } from '../channels/message-limits';
import type { Logger } from '../logging/logger';
import type { Denials } from '../presence/denials';

/** An answer other than success: `{"error":"<code>","message":"<text>"}` with this status and headers. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function reply(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const json = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(json), 'Cache-Control': 'no-store' });
  res.end(json);
}

function tooLarge(limit: number): HttpError {
  return new HttpError(413, 'too_large', `request body larger than ${limit} bytes (MAX_PUBLISH_BYTES)`);
}

/** The body, refused with 413 as soon as it (or its declared length) passes `limit`; the rest is read and dropped. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > limit) return reject(tooLarge(limit));
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      if (size > limit) return;
      size += chunk.length;
      if (size > limit) {
        chunks.length = 0;
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** A path parameter whose percent-encoding is broken: refused as 400 by the parameter's check. */
const BAD_ENCODING = '\u0000bad-encoding';

/** JSON, or a JSON-based type (`application/problem+json`), in UTF-8: how the body is read. */
const JSON_TYPE = /^application\/([\w.-]+\+)?json\s*(;\s*charset\s*=\s*"?utf-8"?\s*)?$/i;

/** Idempotency-Key values: printable ASCII, at most this long (they are hashed before they reach Redis). */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,256}$/;

export interface ApiRequest<B, Q> {
  caller: Principal;
  /** Path parameters, decoded (`/api/channels/:channel/history` → `{channel}`). */
  params: Record<string, string>;
  query: Q;
  body: B;
  /** The caller's `Idempotency-Key`, scoped to the caller (two services that pick the same key stay apart). */
  idempotencyKey?: string;
}

export interface ApiAnswer {
  status: number;
  body: unknown;
}

/**
 * One operation of the server API. The same zod schemas validate requests and describe them in the OpenAPI
 * document (`/api/openapi.json`), so the two cannot drift.
 */
export interface ApiRoute<B extends z.ZodType = z.ZodType, Q extends z.ZodType = z.ZodType> {
  method: 'GET' | 'POST';
  /** `/api/...`, with `:name` segments for path parameters. */
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  /** Path parameters: name → schema (every `:name` of the path). */
  params?: Record<string, z.ZodType<string>>;
  query?: Q;
  body?: B;
  /** The success status and its body's schema. */
  status: number;
  response: z.ZodType;
  /** Honours `Idempotency-Key`. */
  idempotent?: boolean;
  /** Roles that may call it (docs/server-api.md: `service` and `admin`). */
  roles: readonly string[];
  /** Error answers it may give besides the ones every route gives (400, 401, 403, 503 keys_unavailable). */
  errors?: readonly number[];
  /** What its own error answers mean, where the generic text does not say (404 `unknown_alert`). */
  errorText?: Readonly<Record<number, string>>;
  handle(request: ApiRequest<z.infer<B>, z.infer<Q>>): Promise<ApiAnswer>;
}

interface CompiledRoute {
  route: ApiRoute;
  segments: string[];
}

/** The first zod issue as one line a caller can act on. */
export function describeIssue(error: z.ZodError, expected?: string): string {
  const issue = error.issues[0];
  const where = issue.path.length ? `${issue.path.join('.')}: ` : '';
  return `${where}${issue.message}${expected ? ` (expected ${expected})` : ''}`;
}

/**
 * The server API's one piece of code for what every operation shares: the route match (404 `unknown_path`,
 * 405 with `Allow`), the bearer token and the role, `Content-Type`, the body (size, JSON, depth, schema),
 * `Idempotency-Key`, and the errors (Redis down: 503 + `Retry-After`; anything unexpected: a logged 500 that
 * names nothing). Served straight from the HTTP server's request event: publishing is a hot path (thousands
 * per second from other services), and Express and Nest's per-request work made its p99 five times
 * Socket.IO's (docs/benchmarks.md).
 */
export class JsonApi {
  private readonly compiled: CompiledRoute[] = [];
  /** Routes without path parameters by path: the publish routes are matched with one Map lookup. */
  private readonly exact = new Map<string, ApiRoute[]>();

  constructor(
    private readonly verifier: JwtVerifier,
    private readonly limits: MessageLimits,
    private readonly log: Logger,
    /** A revoked service or admin token is refused here as at the WebSocket door: a stolen one stops working. */
    private readonly denials?: Pick<Denials, 'revoked'>,
  ) {}

  add<B extends z.ZodType = z.ZodUndefined, Q extends z.ZodType = z.ZodUndefined>(route: ApiRoute<B, Q>): void {
    this.compiled.push({ route: route as unknown as ApiRoute, segments: route.path.split('/') });
    if (!route.path.includes(':')) this.exact.set(route.path, [...(this.exact.get(route.path) ?? []), route as unknown as ApiRoute]);
  }

  routes(): ApiRoute[] {
    return this.compiled.map((c) => c.route);
  }

  /** Requests under `/api/` other than the OpenAPI document (served by its own handler) are this API's. */
  handles(req: IncomingMessage): boolean {
    const url = req.url ?? '';
    return url.startsWith('/api/') && !url.startsWith('/api/openapi.json');
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    this.serve(req).then(
      (answer) => reply(res, answer.status, answer.body),
      (error: unknown) => {
        if (error instanceof HttpError) return reply(res, error.status, { error: error.code, message: error.message }, error.headers);
        this.log.error({ err: error, method: req.method }, 'unhandled error in the server API');
        reply(res, 500, { error: 'internal_error', message: 'unexpected server error; it is logged on the gateway' });
      },
    );
  }

  private match(method: string, pathname: string): { route: ApiRoute; params: Record<string, string> } {
    for (const route of this.exact.get(pathname) ?? []) if (route.method === method) return { route, params: {} };
    const parts = pathname.split('/');
    const allowed: string[] = [];
    for (const { route, segments } of this.compiled) {
      if (segments.length !== parts.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < segments.length && ok; i++) {
        if (segments[i].startsWith(':')) {
          try {
            params[segments[i].slice(1)] = decodeURIComponent(parts[i]);
          } catch {
            params[segments[i].slice(1)] = BAD_ENCODING;
          }
          if (parts[i] === '') ok = false;
        } else ok = segments[i] === parts[i];
      }
      if (!ok) continue;
      if (route.method === method || (method === 'HEAD' && route.method === 'GET')) return { route, params };
      allowed.push(...(route.method === 'GET' ? ['GET', 'HEAD'] : [route.method]));
    }
    if (allowed.length) throw new HttpError(405, 'method_not_allowed', `this path answers ${allowed.join(', ')}`, { Allow: allowed.join(', ') });
    throw new HttpError(404, 'unknown_path', 'no such endpoint; the server API is listed at /api/openapi.json');
  }

  private async serve(req: IncomingMessage): Promise<ApiAnswer> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const pathname = q === -1 ? url : url.slice(0, q);
    const search = new URLSearchParams(q === -1 ? '' : url.slice(q + 1));
    const { route, params } = this.match(req.method ?? 'GET', pathname);
    const caller = await this.authenticate(req, search);
    if (!route.roles.includes(caller.role)) {
      throw new HttpError(403, 'forbidden_role', `role "${caller.role}" may not call this endpoint (allowed: ${route.roles.join(', ')})`);
    }
    for (const [name, schema] of Object.entries(route.params ?? {})) {
      if (params[name] === BAD_ENCODING) throw new HttpError(400, 'bad_request', `${name}: not valid percent-encoding`);
      const parsed = schema.safeParse(params[name]);
      if (!parsed.success) throw new HttpError(400, 'bad_request', `${name}: ${parsed.error.issues[0].message}`);
    }
    let query: unknown = undefined;
    if (route.query) {
      // A null-prototype object: `?__proto__=1` is an unknown parameter like any other, refused by the schema.
      const raw = Object.create(null) as Record<string, string>;
      for (const [key, value] of search) {
        if (key === 'token') continue;
        if (key in raw) throw new HttpError(400, 'bad_request', `${key}: given more than once`);
        raw[key] = value;
      }
      const parsed = route.query.safeParse({ ...raw });
      if (!parsed.success) throw new HttpError(400, 'bad_request', describeIssue(parsed.error));
      query = parsed.data;
    }
    let idempotencyKey: string | undefined;
    if (route.idempotent) {
      const header = req.headers['idempotency-key'];
      if (header !== undefined && (typeof header !== 'string' || !IDEMPOTENCY_KEY.test(header))) {
        throw new HttpError(400, 'bad_request', 'Idempotency-Key must be 1-256 printable ASCII characters');
      }
      if (header !== undefined) idempotencyKey = `${caller.sub}\u0000${header}`;
    }
    let body: unknown = undefined;
    if (route.body) {
      const type = req.headers['content-type'] ?? '';
      if (!JSON_TYPE.test(type)) throw new HttpError(415, 'unsupported_media_type', 'send the body as application/json (UTF-8)');
      const encoding = req.headers['content-encoding'];
      if (encoding !== undefined && encoding.toLowerCase() !== 'identity') throw new HttpError(415, 'unsupported_media_type', 'send the body uncompressed (no Content-Encoding)');
      const verdict = this.limits.parseObject(await readBody(req, this.limits.maxBytes));
      if (!verdict.ok) {
        if (verdict.status === 413) throw tooLarge(this.limits.maxBytes);
        throw new HttpError(400, 'bad_request', `request body is ${verdict.reason}`);
      }
      const parsed = route.body.safeParse(verdict.value);
      if (!parsed.success) throw new HttpError(400, 'bad_request', describeIssue(parsed.error, route.body.description));
      body = parsed.data;
    }
    try {
      return await route.handle({ caller, params, query, body, idempotencyKey });
    } catch (error) {
      // Fail fast: what cannot be stored durably is refused, never queued in memory.
      if (error instanceof NotReplicatedError) {
        throw new HttpError(503, 'redis_unavailable', `the message was ${error.message}; retry with the same Idempotency-Key (it publishes nothing new)`, { 'Retry-After': '2' });
      }
      if (error instanceof BrokerUnavailableError) {
        throw new HttpError(503, 'redis_unavailable', 'Redis is unreachable; retry shortly', { 'Retry-After': '2' });
      }
      throw error;
    }
  }

  private async authenticate(req: IncomingMessage, query: URLSearchParams): Promise<Principal> {
    const found = extractToken(req.headers, query);
    try {
      // The hint names WebSocket subprotocols, which HTTP calls do not have.
      if (found.token === undefined) throw new AuthError('token_missing', found.hint.startsWith('pass it as') ? 'no token: send "Authorization: Bearer <jwt>" (a token with role service or admin)' : `no token: ${found.hint}`);
      const caller = await this.verifier.verifyOrRefresh(found.token);
      if (this.denials?.revoked(caller)) throw new AuthError('token_revoked', 'this token was revoked; get a new one');
      return caller;
    } catch (error) {
      if (error instanceof KeysUnavailableError) throw new HttpError(503, 'keys_unavailable', error.message, { 'Retry-After': '2' });
      if (!(error instanceof AuthError)) throw error;
      throw new HttpError(401, error.code, error.message, { 'WWW-Authenticate': WWW_AUTHENTICATE });
    }
  }
}
